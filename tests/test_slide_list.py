"""CSV slide lists with per-slide settings: checked with row, column and value; recorded in the
manifest and the stores; a changed mpp redoes that slide only."""

from __future__ import annotations

import csv
import json

import pytest
import zarr
from typer.testing import CliRunner

from pathopipe.cli.app import app
from pathopipe.discovery import find_slide_entries
from pathopipe.errors import ConfigError
from pathopipe.testing import write_synthetic_slide

TILE = ["--workers", "1", "--set", "tiling.tile_size=128", "--set", "tiling.min_tissue_fraction=0.3"]


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("a.svs,A,abc", "list.csv:2, column mpp: 'abc' is not a resolution in µm per pixel"),
        ("a.svs,A,0", "column mpp: '0'"),
        ("a.svs,A,500", "column mpp: '500'"),
        ("a.svs,../up,0.5", "list.csv:2, column slide_id: '../up' is not a safe id"),
        ("a.svs,.hidden,0.5", "column slide_id: '.hidden'"),
    ],
)
def test_bad_values_name_the_row_column_and_value(tmp_path, row, message):
    (tmp_path / "a.svs").write_bytes(b"x")
    (tmp_path / "list.csv").write_text(f"path,slide_id,mpp\n{row}\n")
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        find_slide_entries([tmp_path / "list.csv"])


def test_a_slide_id_used_twice_is_refused(tmp_path):
    for name in ("a.svs", "b.svs"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "list.csv").write_text("path,slide_id\na.svs,case1\nb.svs,CASE1\n")
    with pytest.raises(
        ConfigError, match=r"list\.csv:3, column slide_id: 'CASE1' is already used on .*list\.csv:2"
    ):
        find_slide_entries([tmp_path / "list.csv"])


def _rows(out):
    with (out / "manifest.csv").open() as fh:
        return {r["slide_id"]: r for r in csv.DictReader(fh)}


def test_settings_reach_the_manifest_and_the_stores_and_a_changed_mpp_redoes_that_slide(tmp_path):
    write_synthetic_slide(
        tmp_path / "plain.svs", width=2400, height=1800, seed=31, downsamples=(4,), workers=1
    )
    write_synthetic_slide(
        tmp_path / "nompp.svs", width=2400, height=1800, seed=32, mpp=None, downsamples=(4,), workers=1
    )
    listing = tmp_path / "cohort.csv"
    listing.write_text(
        "path,slide_id,mpp,label,site\n"
        "plain.svs,case-001,,tumour,Leeds\n"
        "nompp.svs,case-002,0.3,normal,Basel\n"
    )
    out = tmp_path / "out"
    first = CliRunner().invoke(app, ["tile", str(listing), "--out", str(out), *TILE])
    assert first.exit_code == 0, first.output
    rows = _rows(out)
    assert set(rows) == {"case-001", "case-002"}  # the list's ids
    assert json.loads(rows["case-001"]["settings"]) == {"label": "tumour", "site": "Leeds"}
    assert json.loads(rows["case-002"]["settings"]) == {"label": "normal", "mpp": 0.3, "site": "Basel"}
    attrs = zarr.open_group(out / "slides" / "case-002.zarr", mode="r").attrs
    assert attrs["mpp_source"] == "given" and attrs["mpp"] == 0.3
    assert attrs["slide_settings"] == {"label": "normal", "mpp": 0.3, "site": "Basel"}
    plain = zarr.open_group(out / "slides" / "case-001.zarr", mode="r").attrs
    assert plain["mpp_source"] == "read" and plain["slide_identity"] is None
    tiles_before = int(attrs["n_tiles"])
    # the same list again: both skipped; a changed mpp: that slide redone, the other kept
    again = CliRunner().invoke(app, ["tile", str(listing), "--out", str(out), *TILE])
    assert again.exit_code == 0 and {r["status"] for r in _rows(out).values()} == {"skipped"}
    listing.write_text(listing.read_text().replace(",0.3,", ",0.4,"))
    changed = CliRunner().invoke(app, ["tile", str(listing), "--out", str(out), *TILE])
    assert changed.exit_code == 0, changed.output
    rows = _rows(out)
    assert (rows["case-001"]["status"], rows["case-002"]["status"]) == ("skipped", "done")
    redone = zarr.open_group(out / "slides" / "case-002.zarr", mode="r").attrs
    assert (
        redone["mpp"] == 0.4 and int(redone["n_tiles"]) > tiles_before
    )  # more µm per pixel: more tiles at 0.5
    # a given mpp that disagrees with the slide's metadata is used, and said
    listing.write_text("path,mpp\nplain.svs,0.3\n")
    told = CliRunner().invoke(app, ["tile", str(listing), "--out", str(tmp_path / "told"), *TILE])
    assert told.exit_code == 0, told.output
    warning = _rows(tmp_path / "told")["plain"]["warnings"]
    assert "the slide list's mpp 0.3 µm/px used; the slide's metadata says 0.25" in warning
