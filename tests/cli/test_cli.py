"""The command line, end to end (each tile command starts its own LocalCluster)."""

import itertools
import json

import zarr
from typer.testing import CliRunner

from pathopipe.cli import app
from pathopipe.output import RunLock, read_manifest

runner = CliRunner()


def test_info_json(aperio_slide):
    result = runner.invoke(app, ["info", str(aperio_slide.path), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["vendor"] == "aperio" and data["mpp"] == 0.25 and data["level_dimensions"][2] == [375, 250]


def test_info_table_and_bad_file(aperio_slide, not_a_slide):
    result = runner.invoke(app, ["info", str(aperio_slide.path)])
    assert result.exit_code == 0 and "aperio" in result.output
    result = runner.invoke(app, ["info", str(not_a_slide)])
    assert result.exit_code == 2 and "cannot open slide" in result.output


def test_tile_folder_with_a_bad_slide(tmp_path, slide_dir, generic_slide, blank_slide, not_a_slide):
    folder = tmp_path / "in"
    folder.mkdir()
    for src in (generic_slide.path, blank_slide.path, not_a_slide):
        (folder / src.name).symlink_to(src)
    out = tmp_path / "out"
    args = [
        "tile",
        str(folder),
        "--out",
        str(out),
        "--workers",
        "1",
        "--no-progress",
        "--set",
        "tiling.target_mpp=1",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output  # one slide failed
    rows = {row["slide_id"]: row for row in read_manifest(out)}
    assert rows["generic"]["status"] == "done" and int(rows["generic"]["n_tiles"]) > 0
    assert rows["blank"]["status"] == "done" and rows["blank"]["n_tiles"] == "0"
    assert rows["notes"]["status"] == "failed" and "notes.svs" in rows["notes"]["error"]
    assert zarr.open_group(out / "slides" / "generic.zarr", mode="r").attrs["complete"] is True
    run = json.loads((out / "run.json").read_text())
    assert run["status_counts"] == {"done": 2, "skipped": 0, "failed": 1}
    assert run["cluster"]["workers"] == 1 and run["config"]["tiling"]["target_mpp"] == 1.0


def test_config_errors_exit_2(tmp_path, generic_slide):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("tiling:\n  tile_szie: 256\n")
    result = runner.invoke(
        app, ["tile", str(generic_slide.path), "--out", str(tmp_path / "o"), "-c", str(cfg)]
    )
    assert result.exit_code == 2
    assert "tiling.tile_szie" in result.output and "tiling.tile_size" in result.output
    result = runner.invoke(app, ["tile", str(tmp_path / "nothing"), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "does not exist" in result.output


def test_second_run_on_same_out_is_refused(tmp_path, generic_slide):
    with RunLock(tmp_path):
        result = runner.invoke(app, ["tile", str(generic_slide.path), "--out", str(tmp_path)])
    assert result.exit_code == 3 and "in use by another pathopipe run" in result.output


def test_a_preset_is_pretrained_by_default_and_refused_offline_without_its_weights(
    tmp_path, generic_slide, monkeypatch
):
    from huggingface_hub import constants

    cache = tmp_path / "empty-hub-cache"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    out = tmp_path / "out"
    tiled = runner.invoke(app, ["tile", str(generic_slide.path), "--out", str(out), "--workers", "1",
                                "--no-progress", "--set", "tiling.target_mpp=1"])  # fmt: skip
    assert tiled.exit_code == 0, tiled.output
    before = sorted(p.name for p in out.iterdir())
    refused = runner.invoke(app, ["extract", str(out), "--model", "uni", "--no-progress"])
    text = " ".join(refused.output.split())  # rich wraps long lines
    assert refused.exit_code == 2, refused.output
    expected = ["MahmoodLab/uni", str(cache), "huggingface-cli download MahmoodLab/uni",
              "https://huggingface.co/MahmoodLab/uni", "CC-BY-NC-ND-4.0", "--weights random"]  # fmt: skip
    for needed in expected:
        assert needed in text, (needed, text)
    assert sorted(p.name for p in out.iterdir()) == before  # nothing written
    group = zarr.open_group(out / "slides" / "generic.zarr", mode="r")
    assert "features" not in group


def test_models_and_extract_commands(tmp_path, generic_slide):
    result = runner.invoke(app, ["models"])
    assert result.exit_code == 0 and "resnet50_trunc" in result.output and "uni" in result.output
    out = tmp_path / "out"
    tiled = runner.invoke(
        app, ["tile", str(generic_slide.path), "--out", str(out), "--workers", "1", "--no-progress",
              "--set", "tiling.target_mpp=1"],
    )  # fmt: skip
    assert tiled.exit_code == 0, tiled.output
    args = ["extract", str(out), "-m", "timm/resnet18", "-m", "noop", "--weights", "random",
            "--device", "cpu", "--workers", "1", "--no-progress", "--dtype", "float32"]  # fmt: skip
    extracted = runner.invoke(app, args)
    assert extracted.exit_code == 0, extracted.output
    group = zarr.open_group(out / "slides" / "generic.zarr", mode="r")
    n = group["coords"].shape[0]
    assert group["features/timm-resnet18/features"].shape == (n, 512)
    assert group["features/noop/features"].shape == (n, 3)
    assert read_manifest(out / "features-timm-resnet18+noop.csv")[0]["status"] == "done"
    shown = runner.invoke(app, ["status", str(out)])  # random weights said wherever features are
    assert shown.exit_code == 0 and "random weights" in shown.output and "timm-resnet18" in shown.output
    assert "noop" not in shown.output.split("random weights")[1]  # no model, no weights
    bad = runner.invoke(app, ["extract", str(out), "-m", "resnet50_trnc"])
    assert bad.exit_code == 2 and "did you mean 'resnet50_trunc'" in bad.output
    # options taken as tile and run take them: a config's features:, then --set, then the flags
    workflow = tmp_path / "features.yaml"
    workflow.write_text("features:\n  models: [noop]\n  device: cpu\n  dtype: float32\n")
    again = runner.invoke(app, ["extract", str(out), "-c", str(workflow), "--set", "features.batch_size=8",
                                "--no-progress", "--force"])  # fmt: skip
    assert again.exit_code == 0, again.output
    assert read_manifest(out / "features-noop.csv")[0]["status"] == "done"
    none = runner.invoke(app, ["extract", str(out), "--no-progress"])
    assert none.exit_code == 2 and "give the models" in none.output


def test_backends_lists_every_registry_with_what_each_needs():
    result = runner.invoke(app, ["backends"], terminal_width=200)
    assert result.exit_code == 0, result.output
    for kind, name in [("slide backend", "tiff"), ("tissue detector", "otsu"), ("tile codec", "zstd"),
                       ("cluster kind", "slurm"), ("cluster profile", "local-cuda"),
                       ("model preset", "resnet50_trunc")]:  # fmt: skip
        assert any(kind in line and name in line for line in result.output.splitlines()), (kind, name)
    assert "[slurm] extra" in result.output and "auto: #1" in result.output


def test_the_command_list_wraps_each_summary_to_the_terminal():
    """Docstrings break lines where the source did; the command list must not show those breaks:
    at 80 columns a summary's line ends only where its next word would not fit."""
    result = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "80"}, terminal_width=80)
    assert result.exit_code == 0
    box = result.output.split("Commands")[1].splitlines()[1:]
    summaries: list[list[str]] = []
    for line in box:
        if not line.startswith("│"):
            break
        inner = line.strip("│").rstrip()
        if inner[1:2].strip():  # a command's name starts a summary
            summaries.append([])
        summaries[-1].append(inner)
    assert len(summaries) >= 10
    for rows in summaries:
        for row, after in itertools.pairwise(rows):
            assert len(row) + 1 + len(after.split()[0]) > 70, "\n".join(rows)


def test_the_slide_table_keeps_every_column_at_80_columns():
    """A long failure note is cut to fit; the status, tiles, MB and seconds stay whole."""
    from rich.console import Console

    from pathopipe.cli._common import summary_table
    from pathopipe.output import SlideRecord

    records = [
        SlideRecord("a-long-slide-name-0001", "x.svs", status="failed", seconds=0.12,
                    error="tiles prepare: TilingError: slide 'x.svs' is scanned at 16.78 µm/px, " * 3),
        SlideRecord("b", "b.svs", status="done", n_tiles=12_345, bytes=98_700_000, seconds=61.0),
    ]  # fmt: skip
    console = Console(width=80, record=True, color_system=None)
    console.print(summary_table(records))
    lines = console.export_text().splitlines()
    assert all(len(line) <= 80 for line in lines)
    header = lines[1]
    for name in ("slide", "status", "tiles", "stored MB", "seconds", "note"):
        assert f" {name} " in header, (name, header)
    rows = [line for line in lines if line.startswith("│")]
    assert len(rows) == 2  # one line per slide
    assert "failed" in rows[0] and "0.1" in rows[0] and rows[0].rstrip("│ ").endswith("…")
    assert "12,345" in rows[1] and "98.7" in rows[1] and "61.0" in rows[1]
