"""``pathopipe bench``: calibration on generated slides, trials recorded, the fastest kept."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from pathopipe.cli.app import app


@pytest.mark.slow
def test_bench_tries_layouts_and_batch_sizes_and_reports_the_best(tmp_path):
    out = tmp_path / "calibration"
    result = CliRunner().invoke(app, [
        "bench", "--out", str(out), "--slides", "2", "--trial-slides", "1", "--size", "4000x3000",
        "--layouts", "1x1,2x1", "--batch-sizes", "8,16",
        "--set", "features.models=[noop]", "--set", "cluster.dashboard=false",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    record = json.loads((out / "bench.json").read_text())
    trials = record["trials"]
    assert [(t["workers"], t["threads_per_worker"], t["batch_size"]) for t in trials] == [
        (1, 1, 8), (1, 1, 16), (2, 1, 8), (2, 1, 16)
    ]  # fmt: skip
    assert all(t["tiles"] > 0 and t["seconds"] > 0 and not t["error"] for t in trials)
    fastest = max(trials, key=lambda t: t["tiles_per_second"])
    assert record["best"]["tiles_per_second"] == fastest["tiles_per_second"]
    assert (record["best"]["workers"], record["best"]["batch_size"]) == (
        fastest["workers"],
        fastest["batch_size"],
    )
    # the final run used the best settings on every generated slide, and is an ordinary run
    run = json.loads((out / "run.json").read_text())
    assert run["config"]["cluster"]["n_workers"] == fastest["workers"]
    assert run["config"]["features"]["batch_size"] == fastest["batch_size"]
    assert run["status_counts"]["done"] == 2 and record["final"]["tiles"] > trials[0]["tiles"]
    summary = json.loads((out / "report" / "summary.json").read_text())
    assert summary["bench"]["best"] == record["best"]
    markdown = (out / "report" / "report.md").read_text()
    assert "## Calibration (pathopipe bench)" in markdown
