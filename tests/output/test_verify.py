"""``pathopipe verify``: a clean run passes untouched; each kind of damage is found and named."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr
from typer.testing import CliRunner

from pathopipe.cli.app import app
from pathopipe.config import load_config
from pathopipe.output.verify import verify_run
from pathopipe.parallel.workflow import run_workflow
from pathopipe.testing import write_synthetic_slide

runner = CliRunner()


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory, dask_client) -> Path:
    folder = tmp_path_factory.mktemp("verify-slides")
    for i in range(2):
        write_synthetic_slide(
            folder / f"v{i}.svs", width=1400, height=1100, seed=100 + i, downsamples=(4,), workers=1
        )
    out = tmp_path_factory.mktemp("verify") / "out"
    cfg = load_config(
        None,
        ["tiling.target_mpp=0.5", "tiling.tile_size=64", "tiling.min_tissue_fraction=0.3",
         "store.min_shards_per_slide=4", "store.tiles_per_shard=32", "features.models=[noop]",
         "features.device=cpu"],
    )  # fmt: skip
    result = run_workflow([folder], out, cfg, client=dask_client)
    assert [r.status for r in result.records] == ["done", "done"]
    return out


def _tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}  # fmt: skip


@pytest.fixture
def damaged(clean_run, tmp_path) -> Path:
    copy = tmp_path / "out"
    shutil.copytree(clean_run, copy)
    return copy


def _store(out: Path, slide_id: str = "v0") -> Path:
    return out / "slides" / f"{slide_id}.zarr"


def _shards(out: Path) -> list[Path]:
    files = [p for p in (_store(out) / "tiles" / "c").glob("*/0/0/0") if p.is_file()]
    return sorted(files, key=lambda p: int(p.parts[-4]))  # c/<shard>/0/0/0


def test_a_clean_run_passes_and_is_left_untouched(clean_run):
    before = _tree_digest(clean_run)
    report = verify_run(clean_run)
    assert report.ok, report.problems
    assert report.slides == 2 and report.arrays == 2 * 4  # coords, fractions, tiles, features
    result = runner.invoke(app, ["verify", str(clean_run)])
    assert result.exit_code == 0 and "ok" in result.stdout
    assert _tree_digest(clean_run) == before


def _problems(out: Path) -> list[str]:
    report = verify_run(out)
    assert not report.ok
    result = runner.invoke(app, ["verify", str(out)])
    assert result.exit_code == 1
    return [str(p) for p in report.problems]


def test_a_missing_tile_shard(damaged):
    shard = _shards(damaged)[1]
    shard.unlink()
    (found,) = _problems(damaged)
    assert found.startswith("v0: tiles:") and "shard 1" in found and "missing" in found and "white" in found


def test_a_truncated_shard(damaged):
    shard = _shards(damaged)[0]
    shard.write_bytes(shard.read_bytes()[:-100])
    (found,) = _problems(damaged)
    assert "shard 0" in found and "checksum" in found


def test_a_tile_that_does_not_decode(damaged):
    shard = _shards(damaged)[0]
    data = bytearray(shard.read_bytes())
    data[0:64] = b"\0" * 64  # the first tile's JPEG header
    shard.write_bytes(bytes(data))
    (found,) = _problems(damaged)
    assert "tile 0 does not decode" in found


def test_missing_feature_chunk_and_non_finite_features(damaged):
    features = _store(damaged) / "features" / "noop" / "features"
    chunk = next(p for p in sorted((features / "c").rglob("*")) if p.is_file())
    chunk.unlink()
    array = zarr.open_array(_store(damaged, "v1") / "features" / "noop" / "features", mode="r+")
    array[3] = np.nan
    found = _problems(damaged)
    assert any(p.startswith("v0: features/noop") and "missing" in p for p in found)
    assert any(p.startswith("v1: features/noop") and "NaN" in p and "row 3" in p for p in found)


def test_coords_outside_the_slide_and_a_store_not_complete(damaged):
    coords = zarr.open_array(_store(damaged) / "coords", mode="r+")
    coords[0] = [99_999, 0]
    group = zarr.open_group(_store(damaged, "v1"), mode="r+")
    group.update_attributes({"complete": False})
    found = _problems(damaged)
    assert any(p.startswith("v0: coords") and "outside" in p for p in found)
    assert any(p.startswith("v1: attrs.complete") for p in found)


def test_no_manifest_is_reported(tmp_path):
    report = verify_run(tmp_path)
    assert not report.ok and "no manifest" in str(report.problems[0])


@pytest.mark.filterwarnings("ignore:Numcodecs codecs are not in the Zarr version 3")
def test_a_store_naming_a_foreign_codec_is_never_decoded(damaged):
    """Stores are data: an array whose metadata names a codec pathopipe does not write (here
    numcodecs.lz4, harmless but foreign; a pickle codec would run code) is refused before any
    chunk is decoded, by the loader and by verify (the stages open arrays the same way)."""
    import json

    from pathopipe import open_run
    from pathopipe.errors import StoreError

    meta = _store(damaged) / "coords" / "zarr.json"
    data = json.loads(meta.read_text())
    data["codecs"] = [{"name": "bytes", "configuration": {"endian": "little"}},
                      {"name": "numcodecs.lz4", "configuration": {"acceleration": 1}}]  # fmt: skip
    meta.write_text(json.dumps(data))
    run = open_run(damaged)
    with pytest.raises(StoreError, match=r"numcodecs\.lz4 are not among those pathopipe reads"):
        run.coords("v0")
    with pytest.raises(StoreError, match="refused before decoding anything"):
        run.cohort("noop")
    np.testing.assert_array_equal(run.coords("v1"), open_run(damaged).coords("v1"))  # others read
    report = verify_run(damaged)
    assert not report.ok
    assert any(p.slide_id == "v0" and "numcodecs.lz4" in p.message for p in report.problems)
