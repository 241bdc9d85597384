"""`pathopipe report`: numbers checked against the metrics and the bytes on disk."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pathopipe.cli.app import app
from pathopipe.config import load_config
from pathopipe.fileio import total_bytes as store_bytes
from pathopipe.output.metrics import read_metrics
from pathopipe.parallel.workflow import run_workflow
from pathopipe.report import format_number, load_costs
from pathopipe.report.costs import annual_own, annual_rent
from pathopipe.testing import write_synthetic_slide

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, dask_client) -> Path:
    root = tmp_path_factory.mktemp("report")
    for i in range(3):
        write_synthetic_slide(root / "slides" / f"r{i}.svs", width=1800 + 400 * i, height=1400, seed=40 + i,
                              downsamples=(4,), workers=1)  # fmt: skip
    cfg = load_config(None, ["tiling.target_mpp=0.5", "tiling.min_tissue_fraction=0.3",
                             "features.models=[timm/resnet18]", "features.device=cpu"])  # fmt: skip
    result = run_workflow([root / "slides"], root / "out", cfg, client=dask_client, perf_report=True)
    assert all(r.status == "done" for r in result.records)
    return root / "out"


def test_dask_performance_report_is_saved(finished_run):
    page = (finished_run / "report" / "dask-performance.html").read_text()
    assert page.lstrip().lower().startswith("<!doctype html") or "<html" in page.lower()
    assert "Task Stream" in page and "Worker Profile" in page


def _numbers(value, found):
    if isinstance(value, dict):
        for sub in value.values():
            _numbers(sub, found)
    elif isinstance(value, list):
        for sub in value:
            _numbers(sub, found)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        found.append(value)
    return found


def test_report_numbers_match_metrics_and_disk(finished_run):
    costs = REPO / "configs" / "costs" / "example-cloud.yaml"
    result = CliRunner().invoke(
        app, ["report", str(finished_run), "--costs", str(costs), "--slides-per-day", "500"]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((finished_run / "report" / "summary.json").read_text())
    metrics = read_metrics(finished_run / "metrics.parquet")
    for stage in ("tiles", "features"):
        rows = metrics[metrics["stage"] == stage]
        tiles = rows.loc[rows["role"] == "work", "tiles"].sum()
        figures = summary["stages"][stage]
        assert figures["tiles"] == tiles > 0
        assert figures["tiles_per_busy_second"] == pytest.approx(tiles / rows["seconds"].sum())
    features_rows = metrics[metrics["stage"] == "features"]
    expected = (features_rows["seconds"] * features_rows["threads"]).sum()
    assert summary["stages"]["features"]["core_seconds"] == pytest.approx(expected)
    stores = sorted((finished_run / "slides").glob("*.zarr"))
    on_disk = sum(store_bytes(s) for s in stores)
    storage = summary["storage"]
    assert storage["stored_bytes_total"] == on_disk
    features = sum(store_bytes(s / "features") for s in stores)
    assert storage["tile_store_bytes_total"] == on_disk - features
    model_bytes = sum(store_bytes(s / "features" / "timm-resnet18") for s in stores)
    assert storage["feature_bytes_per_slide"]["timm-resnet18"] * 3 == pytest.approx(model_bytes)
    assert storage["growth_bytes_per_year"] == pytest.approx(on_disk / 3 * 500 * 365)
    costs_summary = summary["costs"]
    profile = load_costs(costs)
    assert costs_summary["example_prices"] is True
    assert costs_summary["rent_per_year"] == pytest.approx(annual_rent(500, summary["per_slide"], profile))
    assert costs_summary["own_per_year"] == pytest.approx(annual_own(500, summary["per_slide"], profile))
    assert summary["what_if"]["estimate"] is True and summary["what_if"]["measured_gflops"] == pytest.approx(
        3.63, rel=0.01
    )
    markdown = (finished_run / "report" / "report.md").read_text()
    missing = [n for n in _numbers(summary, []) if format_number(n) not in markdown]
    assert not missing  # every figure of summary.json is printed in report.md
    page = (finished_run / "report" / "report.html").read_text()
    assert page.count("<svg") == 4 and "http" not in page.split("<body>")[0]  # plots inline, nothing fetched
    assert "EXAMPLE prices" in markdown and "ESTIMATE" in markdown


def test_report_errors(tmp_path, finished_run):
    missing = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert missing.exit_code == 2 and "no run.json" in missing.output
    bad = tmp_path / "costs.yaml"
    bad.write_text("rent: {gpu_hour: -1}\n")
    wrong = CliRunner().invoke(
        app, ["report", str(finished_run), "--costs", str(bad), "--slides-per-day", "10"]
    )
    assert wrong.exit_code == 2 and "rent.gpu_hour" in wrong.output


def _chromium() -> str | None:
    import os
    import shutil

    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found and os.environ.get("PATHOPIPE_REQUIRE_CHROMIUM") == "1":
        pytest.fail("chromium is not installed (.ci/run installs Debian's chromium)")
    return found


def test_report_html_renders_in_headless_chromium(finished_run, tmp_path):
    import subprocess

    from PIL import Image

    chromium = _chromium()
    if chromium is None:
        pytest.skip("no chromium here")
    costs = REPO / "configs" / "costs" / "example-hospital.yaml"
    made = CliRunner().invoke(
        app, ["report", str(finished_run), "--costs", str(costs), "--slides-per-day", "200"]
    )
    assert made.exit_code == 0, made.output
    page = (finished_run / "report" / "report.html").as_uri()
    flags = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0",
             "--window-size=1200,9000", f"--user-data-dir={tmp_path / 'profile'}"]  # fmt: skip
    shot = tmp_path / "report.png"
    ran = subprocess.run([*flags, f"--screenshot={shot}", page], capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0, ran.stderr[-2000:]
    console = [line for line in ran.stderr.splitlines() if "CONSOLE" in line]
    assert not console, console  # no console messages (errors included)
    dom = subprocess.run([*flags, "--dump-dom", page], capture_output=True, text=True, timeout=120).stdout
    assert dom.count("<svg") == 4 and "pathopipe throughput and capacity report" in dom
    image = Image.open(shot).convert("RGB")
    colours = {colour for _, colour in image.getcolors(maxcolors=1 << 20)}
    assert (76, 114, 176) in colours and (221, 132, 82) in colours  # the timeline's tiles and features bars
