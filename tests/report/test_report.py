"""`pathopipe report`: the decision summary and every figure behind it, checked against the
metrics, the manifest and the bytes on disk, in both documents."""

from __future__ import annotations

import copy
import csv
import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pathopipe.cli.app import app
from pathopipe.config import load_config
from pathopipe.fileio import total_bytes as store_bytes
from pathopipe.output.metrics import read_metrics
from pathopipe.parallel.workflow import run_workflow
from pathopipe.report import SizingAssumptions, format_number, load_costs, write_report
from pathopipe.report.costs import annual_costs
from pathopipe.report.labels import label_for, shown
from pathopipe.report.sizing import hardware_for
from pathopipe.testing import write_synthetic_slide

REPO = Path(__file__).resolve().parents[2]
CLOUD = REPO / "configs" / "costs" / "example-cloud.yaml"
HOSPITAL = REPO / "configs" / "costs" / "example-hospital.yaml"
BOTH_PROFILES = ("--costs", str(CLOUD), "--costs", str(HOSPITAL))
SERIES = (("costs", "*", "curve"), ("sizing", "hardware_curve"))  # in CSV files, not in the documents


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, dask_client) -> Path:
    """Three slides with tiles and resnet18 features (random weights, CPU) and one file that is
    not a slide."""
    root = tmp_path_factory.mktemp("report")
    for i in range(3):
        write_synthetic_slide(
            root / "slides" / f"r{i}.svs",
            width=1800 + 400 * i,
            height=1400,
            seed=40 + i,
            downsamples=(4,),
            workers=1,
        )
    (root / "slides" / "broken.svs").write_text("not a slide\n")
    cfg = load_config(
        None,
        [
            "tiling.target_mpp=0.5",
            "tiling.min_tissue_fraction=0.3",
            "features.models=[timm/resnet18]",
            "features.weights=random",
            "features.device=cpu",
        ],
    )
    result = run_workflow([root / "slides"], root / "out", cfg, client=dask_client, perf_report=True)
    assert sorted(r.status for r in result.records) == ["done", "done", "done", "failed"]
    return root / "out"


@pytest.fixture(scope="module")
def tiles_run(tmp_path_factory, dask_client) -> Path:
    """Tiles only, on two slides, beside 32 files that are not slides."""
    root = tmp_path_factory.mktemp("tiles-report")
    for i in range(2):
        write_synthetic_slide(
            root / "slides" / f"t{i}.svs", width=2000, height=1500, seed=50 + i, downsamples=(4,), workers=1
        )
    for i in range(32):
        (root / "slides" / f"bad{i:02d}.svs").write_text(f"not a slide either ({i})\nsecond line\n")
    cfg = load_config(None, ["tiling.target_mpp=0.5", "tiling.min_tissue_fraction=0.3"])
    result = run_workflow([root / "slides"], root / "out", cfg, client=dask_client)
    assert sum(r.status == "failed" for r in result.records) == 32
    return root / "out"


def _report(out: Path, *args: str) -> dict:
    result = CliRunner().invoke(app, ["report", str(out), *args])
    assert result.exit_code == 0, result.output
    return json.loads((out / "report" / "summary.json").read_text())


def _leaves(value, path=()):
    if isinstance(value, dict):
        for key, sub in value.items():
            yield from _leaves(sub, (*path, key))
    elif isinstance(value, list):
        for i, sub in enumerate(value):
            yield from _leaves(sub, (*path, i))
    else:
        yield path, value


def _is_series(path) -> bool:
    return any(
        len(path) >= len(s) and all(a in ("*", b) for a, b in zip(s, path, strict=False)) for s in SERIES
    )


def _text_of_html(page: str) -> str:
    body = page.split("<body>", 1)[1]
    body = re.sub(r"<svg.*?</svg>", " ", body, flags=re.S)  # plots: their own labels
    body = re.sub(r"<code>.*?</code>", " ", body, flags=re.S)  # commands and config keys, as code
    return re.sub(r"<[^>]+>", " ", body)


def test_dask_performance_report_is_saved(finished_run):
    page = (finished_run / "report" / "dask-performance.html").read_text()
    assert page.lstrip().lower().startswith("<!doctype html") or "<html" in page.lower()
    assert "Task Stream" in page and "Worker Profile" in page


def test_report_numbers_match_metrics_and_disk(finished_run):
    summary = _report(finished_run, "--costs", str(CLOUD), "--slides-per-day", "500")
    assert summary["schema_version"] == 1
    metrics = read_metrics(finished_run / "metrics.parquet")
    for stage in ("tiles", "features"):
        rows = metrics[metrics["stage"] == stage]
        tiles = rows.loc[rows["role"] == "work", "tiles"].sum()
        figures = summary["stages"][stage]
        startup = rows["step_model_build"].fillna(0).sum() if "step_model_build" in rows else 0.0
        assert figures["tiles"] == tiles > 0
        assert figures["startup_seconds"] == pytest.approx(startup)
        assert figures["tiles_per_busy_second"] == pytest.approx(tiles / (rows["seconds"].sum() - startup))
    features_rows = metrics[metrics["stage"] == "features"]
    assert (features_rows.loc[features_rows["role"] == "work", "background_core_seconds"] > 0).all()
    expected = (
        features_rows["seconds"] * features_rows["threads"] + features_rows["background_core_seconds"]
    ).sum()
    assert summary["stages"]["features"]["core_seconds"] == pytest.approx(expected)
    assert summary["stages"]["features"]["startup_seconds"] > 0  # the model builds, left out of the rates
    stores = sorted((finished_run / "slides").glob("*.zarr"))
    on_disk = sum(store_bytes(s) for s in stores)
    storage = summary["storage"]
    assert storage["stored_bytes_total"] == on_disk and len(stores) == 3
    features = sum(store_bytes(s / "features") for s in stores)
    assert storage["tile_store_bytes_total"] == on_disk - features
    model_bytes = sum(store_bytes(s / "features" / "timm-resnet18") for s in stores)
    assert storage["feature_bytes_per_slide"]["timm-resnet18"] * 3 == pytest.approx(model_bytes)
    sizing = summary["sizing"]
    assert sizing["storage"]["bytes_per_year"] == pytest.approx(
        sizing["per_slide"]["stored_bytes"] * 500 * 365
    )
    assert sizing["per_slide"]["stored_bytes"] == pytest.approx(on_disk / 3)
    # features ran on CPU: the GPU figures are the labelled estimate, the CPU run kept beside it
    assert sizing["scenario"] == "gpu_estimate" and sizing["per_slide"]["gpu_seconds"] > 0
    assert sizing["hardware_as_measured"]["gpus"] == 0
    assumptions = SizingAssumptions()
    assert sizing["hardware"] == hardware_for(500, sizing["per_slide"], assumptions)
    cost = summary["costs"]["example-cloud"]
    expected_costs = annual_costs(500, sizing["per_slide"], load_costs(CLOUD), assumptions)
    assert cost["example_prices"] is True and cost["per_year"] == pytest.approx(expected_costs)
    assert cost["per_year"]["buy"] == pytest.approx(max(8.0 * 500 * 365, 25000))
    assert summary["workflow"]["models"][0]["gflops"] == pytest.approx(3.63, rel=0.01)
    assert summary["what_if"]["estimate"] is True
    # the curves are in CSV files beside the report, every row of them
    with (finished_run / "report" / "cost_curve.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [float(r["slides_per_day"]) for r in rows] == [p["slides_per_day"] for p in cost["curve"]]
    assert float(rows[-1]["own_per_year"]) == pytest.approx(cost["curve"][-1]["own"])


def test_every_figure_is_labelled_and_printed_in_both_documents(finished_run, tiles_run):
    summary = _report(
        finished_run,
        *BOTH_PROFILES,
        "--slides-per-day",
        "200",
        "--against",
        str(tiles_run),
    )
    markdown = (finished_run / "report" / "report.md").read_text()
    page = _text_of_html((finished_run / "report" / "report.html").read_text())
    unlabelled, missing_md, missing_html = [], [], []
    for path, value in _leaves({k: v for k, v in summary.items() if k != "decision"}):
        if _is_series(path) or not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        if label_for(path) is None:
            unlabelled.append(".".join(map(str, path)))
            continue
        text = shown(path, value)
        if f"| {text} |" not in markdown:
            missing_md.append((".".join(map(str, path)), text))
        if f" {text} " not in page:
            missing_html.append((".".join(map(str, path)), text))
    assert not unlabelled
    assert not missing_md  # every figure of summary.json is printed in report.md, in a table
    assert not missing_html


def test_decision_rows_equal_the_figures_of_the_summary(finished_run):
    summary = _report(
        finished_run, "--costs", str(CLOUD), "--costs", str(HOSPITAL), "--slides-per-day", "500"
    )
    decision = summary["decision"]
    markdown = (finished_run / "report" / "report.md").read_text()
    first = markdown.split("\n## ")[1]  # the decision summary is the first section
    assert first.startswith("Decision summary") and decision["question"] in first
    rows = decision["hardware"] + decision["storage"] + decision["capacity"]
    checked = 0
    for row in rows:
        if row["source"] is None:
            continue
        value = summary
        for key in row["source"].split("/"):
            value = value[key]
        assert row["value"] == value, row["label"]
        assert (
            f"| {row['label']} | {format_number(value * row['scale'] if row['scale'] != 1 else value)} |"
            in first
        )
        checked += 1
    assert checked >= 8
    assert {r["key"] for r in rows} >= {
        "gpus",
        "cpu_cores",
        "storage_year",
        "storage_retained",
        "run_capacity",
    }
    for row in decision["costs"]["rows"]:
        for profile, value in row["values"].items():
            expected = summary
            for key in row["source"].replace("*", profile).split("/"):
                expected = expected[int(key)] if isinstance(expected, list) else expected[key]
            assert value == expected, (row["label"], profile)
    assert summary["costs"]["example-cloud"]["per_slide"]["rent"] == pytest.approx(
        summary["costs"]["example-cloud"]["per_year"]["rent"] / (500 * 365)
    )
    # two profiles: two named columns, with their own figures where their prices differ
    assert [p["name"] for p in decision["costs"]["profiles"]] == ["example-cloud", "example-hospital"]
    assert "| Per option | example-cloud (USD) | example-hospital (USD) | Unit | Provenance |" in first
    own = next(r for r in decision["costs"]["rows"] if r["key"] == "own_per_year")["values"]
    assert own["example-cloud"] > own["example-hospital"]  # dearer power and storage
    assert all(
        r["provenance"] in ("measured", "derived", "estimate", "assumed", "example price") for r in rows
    )
    assert "Confidence: low" in first  # small slides, GPU estimated, few tasks, example prices


def test_no_flattened_keys_in_the_documents(finished_run, tiles_run):
    _report(
        finished_run,
        *BOTH_PROFILES,
        "--slides-per-day",
        "500",
        "--against",
        str(tiles_run),
    )
    markdown = re.sub(r"`[^`]*`", " ", (finished_run / "report" / "report.md").read_text())
    page = _text_of_html((finished_run / "report" / "report.html").read_text())
    files = r"(?:html|md|json|csv|parquet|yaml|zarr|png|pdf|svs|py)\b"
    flattened = re.compile(rf"\b[A-Za-z_]\w*(?:\[\d+\])?\.(?!{files})[A-Za-z_]\w*|\w+\[\d+\]")
    snake = re.compile(r"\b[a-z]+_[a-z_]+\b")  # machine keys (tiles_per_second) show as labels
    for text in (markdown, page):
        text = re.sub(r"\([^)]*\.(?:csv|json)\)", " ", text)  # link targets
        assert not flattened.findall(text)
        assert not [w for w in snake.findall(text) if w not in ("example_prices",)]


def test_warnings_appear_when_they_apply_and_not_otherwise(finished_run, tiles_run):
    summary = _report(finished_run, "--costs", str(CLOUD), "--slides-per-day", "500")
    codes = {w["code"] for w in summary["decision"]["warnings"]}
    assert {"random_weights", "small_slides", "gpu_estimated", "failed_slides", "example_prices"} <= codes
    small = summary["small_slides"]
    assert small["small"] and small["median_tiles"] == summary["slides"]["tiles_per_slide"]["median"]
    markdown = (finished_run / "report" / "report.md").read_text()
    assert f"median {small['median_tiles']:,.0f} tiles per slide" in markdown and "--cohort" in markdown
    assert "random weights" in markdown and "ESTIMATE" in markdown
    assert "unlike_the_card" not in codes  # timm/resnet18 recommends no tiles
    # features of a model whose card recommends 224 px tiles at 0.5 µm/px, on other tiles
    from pathopipe.features import resolve_model
    from pathopipe.report.checks import find_warnings

    unlike = copy.deepcopy(summary)
    unlike["workflow"]["models"][0]["spec"] = resolve_model("h-optimus-0").model_dump(mode="json")
    unlike["workflow"] |= {"tile_size": 256, "target_mpp": 1.0}
    (card,) = [w for w in find_warnings(unlike) if w["code"] == "unlike_the_card"]
    assert "tiles of 256 px; its model card recommends 224 px" in card["text"]
    assert "tiles at 1 µm/px; its model card recommends 0.5 µm/px" in card["text"]
    # blank slides only (no tiles): the warning says the figures are fixed costs alone
    blank = copy.deepcopy(summary)
    blank["small_slides"]["median_tiles"] = 0
    (small_warning,) = [w for w in find_warnings(blank) if w["code"] == "small_slides"]
    assert "gave no tiles (median 0 tiles per slide" in small_warning["text"]
    assert "fixed costs alone" in small_warning["text"] and "--cohort" in small_warning["text"]
    # a clinical slide as small as these: no small-slide warning; no prices: no example prices
    written = write_report(
        finished_run, slides_per_day=500, assumptions=SizingAssumptions(clinical_tissue_cm2=0.001)
    )
    codes = {w["code"] for w in written.summary["decision"]["warnings"]}
    assert "small_slides" not in codes and "example_prices" not in codes and "random_weights" in codes
    # tiles only: no model, so neither random weights nor a GPU estimate
    tiles = _report(tiles_run, "--slides-per-day", "500")
    codes = {w["code"] for w in tiles["decision"]["warnings"]}
    assert not codes & {"random_weights", "gpu_estimated", "example_prices"}
    assert "failed_slides" in codes and tiles["sizing"]["scenario"] == "as_measured"
    assert tiles["sizing"]["hardware"]["gpus"] == 0 and tiles["sizing"]["bottleneck"]["resource"] == "CPU"


def test_failed_slides_are_listed_with_their_errors(tiles_run):
    summary = _report(tiles_run)
    failures = summary["failures"]
    assert len(failures) == 32 and all(f["error"] and "\n" not in f["error"] for f in failures)
    markdown = (tiles_run / "report" / "report.md").read_text()
    section = markdown.split("## Failed slides")[1].split("\n## ")[0]
    listed = [line for line in section.splitlines() if line.startswith("| bad")]
    assert len(listed) == 30  # no table longer than 30 rows
    for f, line in zip(failures, listed, strict=False):
        assert line.startswith(f"| {f['slide_id']} | {f['stage']} | {f['error'][:40]}")
    assert "and 2 more rows in [failures.csv](failures.csv)" in section
    with (tiles_run / "report" / "failures.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert sorted(r["slide_id"] for r in rows) == sorted(f["slide_id"] for f in failures)
    assert all("second line" not in f["error"] for f in failures)  # the first line only in the table


def test_cohort_sizes_for_its_tile_counts(finished_run, tmp_path, dask_client):
    from pathopipe.parallel.plan import plan_workflow
    from pathopipe.report.forecast import calibrate

    measured = _report(finished_run, "--slides-per-day", "1000")
    cfg = load_config(None, ["tiling.target_mpp=0.5", "tiling.min_tissue_fraction=0.3"])
    slides = sorted((finished_run.parent / "slides").glob("r*.svs"))
    plan = plan_workflow(slides, cfg, client=dask_client)  # the same slides, surveyed
    (tmp_path / "same.json").write_text(json.dumps(plan, default=str))
    same = _report(finished_run, "--slides-per-day", "1000", "--cohort", str(tmp_path / "same.json"))
    assert same["sizing"]["basis"]["kind"] == "in the cohort plan"
    assert same["sizing"]["per_slide"]["tiles"] == pytest.approx(measured["sizing"]["per_slide"]["tiles"])
    for key in ("core_seconds", "stored_bytes"):  # fitted on these slides: close to their measured mean
        assert same["sizing"]["per_slide"][key] == pytest.approx(
            measured["sizing"]["per_slide"][key], rel=0.3
        )
    # a cohort of slides 20 times larger: the per-tile lines of each stage, 20 times the tiles
    big = {
        "per_slide": [
            {"slide_id": f"s{i}", "n_tiles": 20 * row["n_tiles"]} for i, row in enumerate(plan["per_slide"])
        ]
    }
    (tmp_path / "big.json").write_text(json.dumps(big))
    cohort = _report(finished_run, "--slides-per-day", "1000", "--cohort", str(tmp_path / "big.json"))
    sized = cohort["sizing"]
    assert "small_slides" not in {w["code"] for w in cohort["decision"]["warnings"]}  # sized for the cohort
    assert "small_slides" in {w["code"] for w in measured["decision"]["warnings"]}
    calibration = calibrate(finished_run)
    tiles = [row["n_tiles"] for row in big["per_slide"]]
    assert sized["per_slide"]["tiles"] == pytest.approx(sum(tiles) / len(tiles))
    expected_bytes = sum(calibration.bytes(t) for t in tiles) / len(tiles)
    assert sized["per_slide"]["stored_bytes"] == pytest.approx(expected_bytes)
    assert sized["per_slide"]["core_seconds"] > 5 * same["sizing"]["per_slide"]["core_seconds"]
    assert sized["hardware"] == hardware_for(1000, sized["per_slide"], SizingAssumptions())
    assert sized["hardware"]["cpu_cores"] >= same["sizing"]["hardware"]["cpu_cores"]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"per_slide": [{"slide_id": "x", "n_tiles": -3}]}))
    refused = CliRunner().invoke(
        app, ["report", str(finished_run), "--slides-per-day", "10", "--cohort", str(bad)]
    )
    assert refused.exit_code == 2 and "per_slide[0].n_tiles" in refused.output and str(bad) in refused.output


def test_against_shows_the_runs_side_by_side(finished_run, tiles_run):
    summary = _report(
        finished_run, "--slides-per-day", "500", "--costs", str(CLOUD), "--against", str(tiles_run)
    )
    runs = summary["comparison"]["runs"]
    assert [r["out"] for r in runs] == [str(finished_run), str(tiles_run)]
    assert runs[0]["name"] != runs[1]["name"] and not runs[1]["same_workflow"]
    assert runs[1]["stages"]["tiles"]["tiles_per_busy_second"] == pytest.approx(
        json.loads((tiles_run / "report" / "summary.json").read_text())["stages"]["tiles"][
            "tiles_per_busy_second"
        ]
    )
    for run in runs:
        assert run["hardware_needed"] == hardware_for(500, run["per_slide"], SizingAssumptions())
        assert set(run["cost_per_slide"]["example-cloud"]) == {"buy", "rent", "own"}
    assert runs[0]["per_slide"]["core_seconds"] > runs[1]["per_slide"]["core_seconds"]  # no model to run
    markdown = (finished_run / "report" / "report.md").read_text()
    section = markdown.split("## Runs side by side")[1].split("\n## ")[0]
    assert f"| Figure | {runs[0]['name']} | {runs[1]['name']} | Unit | Provenance |" in section
    assert "ran other stages or models" in section


def test_report_errors(tmp_path, finished_run):
    missing = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert missing.exit_code == 2 and "no run.json" in missing.output
    bad = tmp_path / "costs.yaml"
    bad.write_text("rent: {gpu_hour: -1}\n")
    wrong = CliRunner().invoke(
        app, ["report", str(finished_run), "--costs", str(bad), "--slides-per-day", "10"]
    )
    assert wrong.exit_code == 2 and "rent.gpu_hour" in wrong.output
    old = tmp_path / "old.yaml"
    old.write_text(CLOUD.read_text() + "peak_factor: 3\n")
    moved = CliRunner().invoke(
        app, ["report", str(finished_run), "--costs", str(old), "--slides-per-day", "10"]
    )
    assert moved.exit_code == 2 and "--peak-factor" in moved.output
    unpriced = CliRunner().invoke(app, ["report", str(finished_run), "--costs", str(CLOUD)])
    assert unpriced.exit_code == 2 and "--slides-per-day" in unpriced.output
    twice = CliRunner().invoke(
        app,
        ["report", str(finished_run), "--costs", str(CLOUD), "--costs", str(CLOUD), "--slides-per-day", "10"],
    )
    assert twice.exit_code == 2 and "share a name" in twice.output


def _chromium() -> str | None:
    import os
    import shutil

    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found and os.environ.get("PATHOPIPE_REQUIRE_CHROMIUM") == "1":
        pytest.fail("chromium is not installed (.ci/run installs Debian's chromium)")
    return found


def test_report_renders_in_headless_chromium_and_prints_a_pdf(finished_run, tmp_path):
    import subprocess

    from PIL import Image

    from pathopipe.report.pdf import browser_flags
    from pathopipe.report.plots import PLOTS
    from pathopipe.report.to_html import DECISION_BORDER

    chromium = _chromium()
    if chromium is None:
        pytest.skip("no chromium here")
    made = CliRunner().invoke(
        app, ["report", str(finished_run), "--costs", str(HOSPITAL), "--slides-per-day", "200", "--pdf"]
    )
    assert made.exit_code == 0, made.output
    page = (finished_run / "report" / "report.html").as_uri()
    flags = [chromium, *browser_flags(tmp_path / "profile"), "--enable-logging=stderr", "--v=0"]
    # the first screen, 1280 x 900: the decision summary's frame is drawn whole (top and bottom)
    shot = tmp_path / "first-screen.png"
    ran = subprocess.run(
        [*flags, "--window-size=1280,900", f"--screenshot={shot}", page],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert not [line for line in ran.stderr.splitlines() if "CONSOLE" in line]  # no console errors
    image = Image.open(shot).convert("RGB")
    border = tuple(int(DECISION_BORDER[i : i + 2], 16) for i in (1, 3, 5))
    pixels = image.load()
    lines = [y for y in range(image.height) if sum(pixels[x, y] == border for x in range(image.width)) > 600]
    assert lines and min(lines) < 120 and max(lines) > min(lines) + 400  # top and bottom edges on screen
    # the whole page at 1280 px: every plot drawn
    dom = subprocess.run(
        [*flags, "--window-size=1280,9000", "--dump-dom", page], capture_output=True, text=True, timeout=120
    ).stdout
    assert dom.count("<svg") == len(PLOTS) and "Decision summary" in dom
    tall = tmp_path / "page.png"
    subprocess.run(
        [*flags, "--window-size=1280,9000", f"--screenshot={tall}", page], capture_output=True, timeout=120
    )
    colours = {colour for _, colour in Image.open(tall).convert("RGB").getcolors(maxcolors=1 << 22)}
    assert (76, 114, 176) in colours and (221, 132, 82) in colours  # the timeline's tiles and features bars
    pdf = (finished_run / "report" / "report.pdf").read_bytes()
    assert pdf.startswith(b"%PDF") and pdf.count(b"/Type /Page") - pdf.count(b"/Type /Pages") >= 2


def test_pdf_without_a_browser_is_a_clear_error(finished_run, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no browser on it
    monkeypatch.delenv("PATHOPIPE_CHROMIUM", raising=False)
    result = CliRunner().invoke(app, ["report", str(finished_run), "--pdf"])
    assert (
        result.exit_code == 2
        and "headless Chromium" in result.output
        and "apt-get install chromium" in result.output
    )
    monkeypatch.setenv("PATHOPIPE_CHROMIUM", str(tmp_path / "no-such-browser"))
    named = CliRunner().invoke(app, ["report", str(finished_run), "--pdf"])
    assert named.exit_code == 2 and "no-such-browser" in named.output
