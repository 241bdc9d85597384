"""`pathopipe plan`: tile counts equal what the run tiles; the forecast follows its formula."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from pathopipe.cli.app import app
from pathopipe.config import load_config
from pathopipe.fileio import total_bytes as store_bytes
from pathopipe.parallel.plan import plan_workflow
from pathopipe.parallel.workflow import run_workflow
from pathopipe.report.forecast import calibrate, fit_line
from pathopipe.testing import write_synthetic_slide

SETTINGS = ["tiling.target_mpp=0.5", "tiling.min_tissue_fraction=0.3", "cluster.n_workers=2",
            "cluster.dashboard=false"]  # fmt: skip


def test_fit_line():
    line = fit_line([10, 20, 30], [3.0, 5.0, 7.0])
    assert line.intercept == pytest.approx(1.0) and line.slope == pytest.approx(0.2)
    assert fit_line([5, 5], [1.0, 2.0]).slope == pytest.approx(0.3)  # one tile count: a rate
    assert fit_line([10, 20], [5.0, 5.5]).intercept >= 0


def test_open_cost_is_taken_from_the_tasks_own_timing_when_they_record_it():
    import pandas as pd

    from pathopipe.report.forecast import fit_work_tasks

    # two workers, each task 10 ms + 2 ms/tile; a worker's first task of the slide opens it (50 ms)
    tiles = [32, 30, 32, 31, 32, 28]
    first = pd.Series([True, True, False, False, False, False])
    opened = [0.05 if f else 0.0 for f in first]
    seconds = [0.01 + 0.002 * n + o for n, o in zip(tiles, opened, strict=True)]
    work = pd.DataFrame({"tiles": tiles, "step_open_slide": opened, "work_seconds": seconds})
    line, opening = fit_work_tasks(work, first)
    assert opening == pytest.approx(0.05)
    assert line.intercept == pytest.approx(0.01) and line.slope == pytest.approx(0.002)
    # metrics without the step (older runs): both fitted, the open cost as the first tasks' excess
    line, opening = fit_work_tasks(work.drop(columns="step_open_slide"), first)
    assert opening == pytest.approx(0.05) and line.slope == pytest.approx(0.002)


def test_simulated_span_follows_the_driver_order():
    from pathopipe.report.forecast import simulate_span

    one_stage = [[(1.0, [2.0, 2.0], 0.5)]]  # prepare, two work tasks, finish
    assert simulate_span(one_stage, 1) == pytest.approx(5.5)  # serial
    assert simulate_span(one_stage, 2) == pytest.approx(3.5)  # the work tasks side by side
    two_slides = [[(1.0, [2.0], 1.0)], [(1.0, [2.0], 1.0)]]
    assert simulate_span(two_slides, 2) == pytest.approx(4.0)
    # two stages: the second stage's tasks go first once ready (the driver's priority)
    chained = [[(1.0, [1.0], 1.0), (1.0, [], 1.0)], [(1.0, [1.0], 1.0), (1.0, [], 1.0)]]
    assert simulate_span(chained, 1) == pytest.approx(10.0)
    assert simulate_span(chained, 2) == pytest.approx(5.0)
    # a model build (3 s) in each slot's first prepare of stage 1, while the other slot goes on
    assert simulate_span(chained, 1, {1: 3.0}) == pytest.approx(13.0)  # one slot builds once
    assert simulate_span(chained, 2, {1: 3.0}) == pytest.approx(8.0)


def test_plan_counts_tiles_and_forecasts_from_a_calibration(tmp_path, dask_client):
    for i, (w, h) in enumerate([(1400, 1100), (2000, 1500), (2600, 1800), (3000, 2200)]):
        write_synthetic_slide(tmp_path / "cal" / f"c{i}.svs", width=w, height=h, seed=60 + i,
                              downsamples=(4,), workers=1)  # fmt: skip
    for i, (w, h) in enumerate([(1800, 1300), (2800, 2000)]):
        write_synthetic_slide(tmp_path / "new" / f"n{i}.svs", width=w, height=h, seed=70 + i,
                              downsamples=(4,), workers=1)  # fmt: skip
    cfg = load_config(None, SETTINGS)
    run_workflow([tmp_path / "cal"], tmp_path / "cal-out", cfg, client=dask_client)
    calibration = calibrate(tmp_path / "cal-out")
    assert set(calibration.stages) == {"tiles"} and calibration.bytes.slope > 0
    planned = plan_workflow([tmp_path / "new"], cfg, calibration=tmp_path / "cal-out", client=dask_client)
    result = run_workflow([tmp_path / "new"], tmp_path / "new-out", cfg, client=dask_client)
    assert planned["per_slide"][0]["n_tiles"] == result.records[0].n_tiles  # the survey is the run's
    assert planned["tiles"] == sum(r.n_tiles for r in result.records)
    expected_bytes = sum(calibration.bytes(t) for t in planned["tiles_per_slide"])
    assert planned["predicted_bytes"] == pytest.approx(expected_bytes)
    actual = sum(store_bytes(p) for p in (tmp_path / "new-out" / "slides").glob("*.zarr"))
    assert planned["predicted_bytes"] == pytest.approx(actual, rel=0.25)  # loose: 4 small slides calibrate it
    busy = sum(planned["predicted_slot_seconds"].values())
    simulated = planned["simulated_span_seconds"]
    assert busy / 2 <= simulated + 1e-9 and simulated <= busy + 1e-9  # between perfect packing and serial
    expected_wall = simulated + calibration.unexplained_seconds
    assert planned["predicted_wall_seconds"] == pytest.approx(expected_wall)
    fixed = calibration.command_startup_seconds + calibration.command_shutdown_seconds
    assert calibration.command_startup_seconds > 0  # recorded by the calibration run
    assert planned["predicted_command_seconds"] == pytest.approx(expected_wall + fixed)
    shown = CliRunner().invoke(app, ["plan", str(tmp_path / "wf.yaml"), "--slides", str(tmp_path / "new"),
                                     "--json"])  # fmt: skip
    assert shown.exit_code == 2 and "config file not found" in shown.output
    workflow = "tiling: {target_mpp: 0.5, min_tissue_fraction: 0.3}\n"
    workflow += "features: {models: [noop], device: cpu}\n"
    (tmp_path / "wf.yaml").write_text(workflow + "cluster: {n_workers: 1}\n")
    mismatch = CliRunner().invoke(app, ["plan", str(tmp_path / "wf.yaml"), "--slides", str(tmp_path / "new"),
                                        "--calibration", str(tmp_path / "cal-out"), "--json"])  # fmt: skip
    assert mismatch.exit_code == 2 and "same workflow" in mismatch.output
    counted = CliRunner().invoke(app, ["plan", str(tmp_path / "wf.yaml"), "--slides", str(tmp_path / "new"),
                                       "--json"])  # fmt: skip
    assert counted.exit_code == 0, counted.output
    assert json.loads(counted.stdout)["tiles"] == planned["tiles"]  # stdout is only the JSON
    # priced: the forecast's slot-seconds at the profile's prices (tiling: one core per task)
    from pathlib import Path

    from pathopipe.report import load_costs

    costs = Path(__file__).resolve().parents[2] / "configs" / "costs" / "example-cloud.yaml"
    (tmp_path / "tiles.yaml").write_text("tiling: {target_mpp: 0.5, min_tissue_fraction: 0.3}\n")
    priced = CliRunner().invoke(app, ["plan", str(tmp_path / "tiles.yaml"), "--slides", str(tmp_path / "new"),
                                      "--calibration", str(tmp_path / "cal-out"), "--costs", str(costs),
                                      "--json", "--set", "cluster.n_workers=2"])  # fmt: skip
    assert priced.exit_code == 0, priced.output
    result = json.loads(priced.stdout)
    cost, prices = result["predicted_cost"], load_costs(costs).rent
    core_hours = sum(result["predicted_slot_seconds"].values()) / 3600
    assert cost["core_hours"] == pytest.approx(core_hours) and cost["gpu_hours"] == 0
    assert cost["compute"] == pytest.approx(core_hours * prices.core_hour)
    assert cost["storage_per_month"] == pytest.approx(result["predicted_bytes"] / 1e12 * prices.tb_month)
    assert cost["estimate"] is True and cost["example_prices"] is True
    tiles_yaml, new = str(tmp_path / "tiles.yaml"), str(tmp_path / "new")
    unpriced = CliRunner().invoke(app, ["plan", tiles_yaml, "--slides", new, "--costs", str(costs)])
    assert unpriced.exit_code == 2 and "needs --calibration" in unpriced.output
