"""Hostile inputs: a corpus of broken and unusual files runs as one batch; every file ends as
expected, failures name the file, the rest finishes; ids stay inside OUT; decompression bombs
are refused before any pixel is read."""

from __future__ import annotations

from pathlib import Path

import pytest

from pathopipe.config import load_config
from pathopipe.discovery import find_slides
from pathopipe.errors import ConfigError
from pathopipe.ids import slide_ids
from pathopipe.output import read_manifest_records
from pathopipe.output.verify import verify_run
from pathopipe.parallel.workflow import run_workflow
from pathopipe.testing import write_bad_slides, write_synthetic_slide

SMALL = [
    "tiling.target_mpp=0.5",
    "tiling.tile_size=64",
    "tiling.min_tissue_fraction=0.3",
    "cluster.dashboard=false",
]


def test_the_bad_input_corpus_runs_as_one_batch(tmp_path, dask_client):
    corpus = write_bad_slides(tmp_path / "corpus")
    out = tmp_path / "out"
    result = run_workflow([tmp_path / "corpus"], out, load_config(None, SMALL), client=dask_client)
    by_source = {Path(r.source).name: r for r in result.records}
    listed = {b.path.name for b in corpus if not b.path.is_dir()}  # a folder is searched, not a slide
    assert set(by_source) == listed
    for bad in corpus:
        if bad.path.is_dir():
            continue
        record = by_source[bad.path.name]
        assert record.status == bad.expected, f"{bad.path.name} ({bad.why}): {record.status} {record.error}"
        if bad.expected == "failed":
            assert bad.path.name in record.error, record.error  # the message names the file
    assert "samples per pixel" in by_source["fluorescence-5ch.tif"].error
    assert "does not decode" in by_source["corrupt-jpeg-tiles.svs"].error
    assert by_source["rgba.tif"].n_tiles and by_source["rgb-16bit.tif"].n_tiles
    manifest = {r.slide_id: r.status for r in read_manifest_records(out)}
    assert sorted(manifest.values()) == sorted(r.status for r in result.records)
    assert verify_run(out).ok  # what is marked done is complete and decodes


def test_a_decompression_bomb_is_refused_before_reading(tmp_path, dask_client):
    slide = write_synthetic_slide(
        tmp_path / "big.svs", width=3000, height=2000, seed=4, downsamples=(4,), workers=1
    )
    cfg = load_config(None, [*SMALL, "slide.max_pixels=5000000"])
    (record,) = run_workflow([slide.path], tmp_path / "out", cfg, client=dask_client).records
    assert record.status == "failed"
    assert (
        "3000 x 2000 px" in record.error and "slide.max_pixels" in record.error and "big.svs" in record.error
    )


def test_slide_ids_never_leave_out_and_never_collide(tmp_path):
    for folder in ("a", "b", "a/..weird", "c d"):
        (tmp_path / folder).mkdir(parents=True, exist_ok=True)
    paths = [tmp_path / "a" / "x.svs", tmp_path / "b" / "x.svs", tmp_path / "a/..weird" / "..x.svs",
             tmp_path / "c d" / "X.svs", tmp_path / "c d" / "é 中 ../.svs"]  # fmt: skip
    ids = slide_ids(paths)
    assert len(set(ids)) == len(ids) and len({i.lower() for i in ids}) == len(ids)
    assert ids == slide_ids(paths)  # deterministic
    for slide_id in ids:
        assert slide_id and "/" not in slide_id and "\\" not in slide_id and not slide_id.startswith(".")
        target = (tmp_path / "out" / "slides" / f"{slide_id}.zarr").resolve()
        assert target.is_relative_to((tmp_path / "out" / "slides").resolve())


def test_csv_slide_lists_are_validated_before_the_run(tmp_path, caplog):
    (tmp_path / "a.svs").write_bytes(b"x")
    listing = tmp_path / "list.csv"
    listing.write_text("path\na.svs\n/nonexistent/slide.svs\na.svs\n")
    with caplog.at_level("WARNING", logger="pathopipe.slide_list"):
        found = find_slides([listing])
    assert found == sorted([tmp_path / "a.svs", Path("/nonexistent/slide.svs")])  # each once
    assert "list.csv:3: /nonexistent/slide.svs" in caplog.text and "missing or unreadable" in caplog.text
    assert "list.csv:4" in caplog.text and "listed again (first on line 2)" in caplog.text
    nameless = tmp_path / "nameless.csv"
    nameless.write_text("file,label\na.svs,1\n")
    with pytest.raises(ConfigError, match="path, source, slide"):
        find_slides([nameless])
