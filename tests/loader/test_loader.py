"""open_run, the cohort and its packed store, torch datasets, QC pictures, and the plain-zarr
recipes of docs/data-format.md, on a real run (tiles + features of two models)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr
from torch.utils.data import DataLoader
from typer.testing import CliRunner

import pathopipe
from pathopipe.cli.app import app
from pathopipe.config import load_config
from pathopipe.loader import open_run, pack_run
from pathopipe.loader.torch import FeatureBagDataset, TileDataset
from pathopipe.output.layout import RunLayout
from pathopipe.parallel.workflow import run_workflow
from pathopipe.report.qc import feature_map, heatmap, overview, pca_colours, write_qc
from pathopipe.testing import write_synthetic_slide

REPO = Path(__file__).resolve().parents[2]
MODELS = ("noop", "timm-resnet18")
runner = CliRunner()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, dask_client) -> Path:
    """Four slides plus one corrupt file, tiled and featurised by two models."""
    folder = tmp_path_factory.mktemp("loader-slides")
    for i in range(4):  # 25 to 38 tiles each
        write_synthetic_slide(
            folder / f"s{i}.svs", width=1400, height=1100, seed=100 + i, downsamples=(4,), workers=1
        )
    (folder / "broken.svs").write_text("not a slide\n")
    workflow = tmp_path_factory.mktemp("wf") / "workflow.yaml"
    workflow.write_text(
        "tiling: {target_mpp: 0.5, tile_size: 64, min_tissue_fraction: 0.3}\n"
        "features: {models: [noop, timm/resnet18], weights: random, device: cpu, batch_size: 16}\n"
        "cluster: {n_workers: 2, dashboard: false}\n"
    )
    out = tmp_path_factory.mktemp("loader-run") / "out"
    result = run_workflow([folder], out, load_config(workflow), client=dask_client)
    assert sorted(r.status for r in result.records) == ["done"] * 4 + ["failed"]
    assert all(r.n_tiles for r in result.records if r.status == "done")
    return out


def _raw(out: Path, slide_id: str, path: str) -> np.ndarray:
    return zarr.open_array(out / "slides" / f"{slide_id}.zarr" / path, mode="r")[:]


def test_open_run_lists_slides_and_models_and_features_equal_the_raw_arrays(run_dir):
    run = pathopipe.open_run(run_dir)
    assert run.slide_ids == ["s0", "s1", "s2", "s3"]  # the broken file failed and is not listed
    assert set(run.manifest["status"]) == {"done", "failed"}
    assert run.models == list(MODELS)
    for slide_id in run.slide_ids:
        ds = run.features(slide_id, "timm-resnet18")
        assert ds["features"].dims == ("tile", "feature") and ds.sizes["feature"] == 512
        assert ds["features"].chunks is not None  # dask-backed, not loaded
        raw = _raw(run_dir, slide_id, "features/timm-resnet18/features")
        np.testing.assert_array_equal(ds["features"].values, raw)
        xy = _raw(run_dir, slide_id, "coords")
        np.testing.assert_array_equal(np.stack([ds["x"], ds["y"]], axis=1), xy)
        np.testing.assert_allclose(ds["x_um"], xy[:, 0] * ds.attrs["mpp"])
        assert ds.attrs["tile_size"] == 64 and ds.attrs["model"] == "timm-resnet18"
        tiles = run.tiles(slide_id)
        assert tiles.shape == (len(xy), 64, 64, 3) and tiles.dtype == np.uint8
        np.testing.assert_array_equal(tiles[1:3].compute(), _raw(run_dir, slide_id, "tiles")[1:3])
    with pytest.raises(KeyError, match="broken"):
        run.features("broken", "noop")
    with pytest.raises(KeyError, match="models here: noop, timm-resnet18"):
        run.features("s0", "vit_huge")


def test_cohort_offsets_map_rows_back_to_their_slide(run_dir):
    run = open_run(run_dir, use_cohort="never")
    cohort = run.cohort("noop")
    counts = [len(_raw(run_dir, s, "coords")) for s in run.slide_ids]
    assert cohort.source == "stores" and cohort.features.shape == (sum(counts), 3)
    assert list(np.diff(cohort.offsets)) == counts
    index = cohort.slide_index.compute()
    for i, slide_id in enumerate(run.slide_ids):
        rows = cohort.rows(slide_id)
        np.testing.assert_array_equal(
            cohort.features[rows].compute(), _raw(run_dir, slide_id, "features/noop/features")
        )
        np.testing.assert_array_equal(cohort.coords[rows].compute(), _raw(run_dir, slide_id, "coords"))
        assert (index[rows] == i).all()
        assert (cohort.slide_of(np.arange(rows.start, rows.stop)) == i).all()
    with pytest.raises(IndexError):
        cohort.slide_of(cohort.n_rows)


def test_pack_then_open_run_gives_identical_arrays_until_a_slide_changes(run_dir):
    before = {m: open_run(run_dir, use_cohort="never").cohort(m) for m in MODELS}
    path = pack_run(run_dir, chunk_rows=32)
    assert path == run_dir / RunLayout.COHORT and zarr.open_group(path, mode="r").attrs["complete"] is True
    run = open_run(run_dir)
    for model in MODELS:
        packed = run.cohort(model)
        assert packed.source == "packed" and packed.slide_ids == before[model].slide_ids
        np.testing.assert_array_equal(packed.offsets, before[model].offsets)
        np.testing.assert_array_equal(packed.features.compute(), before[model].features.compute())
        np.testing.assert_array_equal(packed.coords.compute(), before[model].coords.compute())
        for slide_id in packed.slide_ids:
            for a, b in zip(packed.bag(slide_id), before[model].bag(slide_id), strict=True):
                np.testing.assert_array_equal(a, b)
    # features rewritten on one slide (another run): the packed cohort is out of date
    group = zarr.open_group(run_dir / "slides" / "s1.zarr" / "features" / "noop", mode="r+")
    group.update_attributes({"seconds_model": 1.5})
    assert open_run(run_dir).cohort("noop").source == "stores"
    assert open_run(run_dir).cohort("timm-resnet18").source == "packed"
    assert open_run(run_dir, use_cohort="always").cohort("noop").source == "packed"
    result = runner.invoke(app, ["pack", str(run_dir)])
    assert result.exit_code == 0, result.output
    assert "noop: 4 slides" in result.stdout and "(packed)" in result.stdout
    assert open_run(run_dir).cohort("noop").source == "packed"


def test_direct_row_reads_equal_zarr(tmp_path):
    from pathopipe.loader._rows import ShardedRows

    rng = np.random.default_rng(1)
    for dtype, compressors in (("float16", "auto"), ("int64", None)):
        data = rng.normal(size=(1000, 5)).astype(dtype)
        array = zarr.create_array(tmp_path / f"{dtype}.zarr", shape=data.shape, dtype=dtype, chunks=(64, 5),
                                  shards=(256, 5), compressors=compressors)  # fmt: skip
        array[:900] = data[:900]  # the last rows never written: read as the fill value
        expected = array[:]
        reader = ShardedRows.open(tmp_path / f"{dtype}.zarr")
        assert reader is not None
        for start, stop in [(0, 1000), (0, 1), (63, 65), (250, 770), (899, 1000), (999, 1000), (10, 10)]:
            np.testing.assert_array_equal(reader.read(start, stop), expected[start:stop])
    plain = zarr.create_array(tmp_path / "plain.zarr", shape=(10, 2), dtype="int64", chunks=(5, 2))
    assert ShardedRows.open(tmp_path / "plain.zarr") is None and plain.shape == (10, 2)


def test_feature_bags_in_a_dataloader_with_two_workers(run_dir, tmp_path):
    labels = tmp_path / "labels.csv"
    labels.write_text("slide_id,label\ns0,1\ns1,0\ns2,1\ns3,0\nnot-in-run,1\n")
    bags = FeatureBagDataset(run_dir, "timm-resnet18", labels=labels)
    loader = DataLoader(bags, batch_size=None, shuffle=True, num_workers=2)
    seen = {}
    for bag in loader:
        assert bag["slide_id"] not in seen
        seen[bag["slide_id"]] = bag
        raw = _raw(run_dir, bag["slide_id"], "features/timm-resnet18/features")
        assert bag["features"].dtype == torch.float32 and bag["features"].shape == raw.shape
        np.testing.assert_array_equal(bag["features"].numpy(), raw.astype(np.float32))
        assert bag["coords"].shape == (len(raw), 2)
    assert {s: int(b["label"]) for s, b in seen.items()} == {"s0": 1, "s1": 0, "s2": 1, "s3": 0}
    # labels for some slides only: the others are left out; max_tiles draws reproducibly
    sub = FeatureBagDataset(
        open_run(run_dir), "noop", labels={"s1": "tumour", "s3": "normal"}, max_tiles=5, seed=7
    )
    assert sub.slide_ids == ["s1", "s3"] and len(sub) == 2
    first, again = sub[0], sub[0]
    assert first["features"].shape == (5, 3) and first["label"] == "tumour"
    np.testing.assert_array_equal(first["coords"], again["coords"])
    sub.set_epoch(1)
    assert not np.array_equal(first["coords"], sub[0]["coords"])


def test_tile_dataset_yields_every_tile(run_dir):
    tiles = TileDataset(run_dir, transform=lambda t: torch.from_numpy(t).float().mean())
    counts = [len(_raw(run_dir, s, "coords")) for s in open_run(run_dir).slide_ids]
    assert len(tiles) == sum(counts)
    loader = DataLoader(tiles, batch_size=64, num_workers=2)
    total = sum(len(batch["image"]) for batch in loader)
    assert total == len(tiles)
    item = TileDataset(run_dir)[counts[0] + 2]  # the third tile of the second slide
    assert item["slide_id"] == "s1" and item["index"] == 2
    np.testing.assert_array_equal(item["image"].permute(1, 2, 0).numpy(), _raw(run_dir, "s1", "tiles")[2])
    one = TileDataset(run_dir, slide_ids=["s1"], transform=lambda t: t)
    np.testing.assert_array_equal(
        np.stack([one[i]["image"] for i in range(len(one))]), _raw(run_dir, "s1", "tiles")
    )


def test_qc_pictures(run_dir):
    run = open_run(run_dir)
    thumb = _raw(run_dir, "s1", "thumbnail")
    mask = _raw(run_dir, "s1", "mask")
    picture = overview(run, "s1", grid=False)
    assert picture.shape == thumb.shape
    assert mask.any() and (~mask).any()
    changed = np.any(picture != thumb, axis=2)
    assert changed[mask].mean() > 0.9 and changed[~mask].mean() < 0.01  # tinted where tissue is
    gridded = overview(run, "s1")
    assert np.any(gridded != picture)  # tile outlines drawn
    fmap = feature_map(run, "s1", "timm-resnet18")
    assert fmap.shape == thumb.shape and len(np.unique(fmap.reshape(-1, 3), axis=0)) > 10
    colours = pca_colours(np.random.default_rng(0).normal(size=(50, 8)))
    assert colours.shape == (50, 3) and colours.dtype == np.uint8
    n = len(_raw(run_dir, "s1", "coords"))
    hot = heatmap(run, "s1", np.linspace(0, 1, n))
    assert hot.shape == thumb.shape and np.any(hot != thumb)
    with pytest.raises(ValueError, match="one per tile"):
        heatmap(run, "s1", np.zeros(n + 1))
    written = write_qc(run)
    assert len(written) == 4 * (1 + len(MODELS)) and all(p.stat().st_size > 0 for p in written)
    result = runner.invoke(app, ["qc", str(run_dir), "--slide", "nope"])
    assert result.exit_code == 2 and "nope" in result.output


def test_data_format_doc_code_runs_against_a_real_store(run_dir, tmp_path, monkeypatch):
    """Every ```python block of docs/data-format.md, run in order with OUT set to this run."""
    if not (run_dir / RunLayout.COHORT).exists():
        pack_run(run_dir)
    text = (REPO / "docs" / "data-format.md").read_text()
    settings = 'out = "OUT"'
    assert settings in text
    text = text.replace(settings, f"out = {str(run_dir)!r}").replace('slide_id = "S"', 'slide_id = "s1"')
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 5
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, "docs/data-format.md", "exec"), namespace)


def test_export_writes_what_clam_and_trident_training_code_reads(run_dir, tmp_path):
    import h5py
    import torch

    several = runner.invoke(app, ["export", str(run_dir), "--format", "pt"])
    assert several.exit_code == 2 and "choose one with --model" in several.output
    wrong = runner.invoke(app, ["export", str(run_dir), "--format", "clam", "--model", "timm-resnet18"])
    assert wrong.exit_code == 2 and "clam-h5" in wrong.output  # did you mean
    for fmt in ("clam-h5", "trident-h5", "pt"):
        done = runner.invoke(app, ["export", str(run_dir), "--format", fmt, "--model", "timm-resnet18",
                                   "--to", str(tmp_path / fmt)])  # fmt: skip
        assert done.exit_code == 0, done.output
    for slide_id in ["s0", "s1", "s2", "s3"]:
        stored = _raw(run_dir, slide_id, "features/timm-resnet18/features").astype(np.float32)
        coords = _raw(run_dir, slide_id, "coords")
        attrs = zarr.open_group(run_dir / "slides" / f"{slide_id}.zarr", mode="r").attrs
        # CLAM: h5_files/<slide>.h5 (features, coords) and pt_files/<slide>.pt (a float32 tensor)
        with h5py.File(tmp_path / "clam-h5" / "h5_files" / f"{slide_id}.h5", "r") as h5:
            np.testing.assert_array_equal(h5["features"][:], stored)
            np.testing.assert_array_equal(h5["coords"][:], coords)
            assert h5["coords"].attrs["patch_size"] == 64 and h5["coords"].attrs["name"] == slide_id
            assert h5["coords"].attrs["patch_level"] == attrs["read_level"]
        pt = torch.load(tmp_path / "clam-h5" / "pt_files" / f"{slide_id}.pt", weights_only=True)
        assert pt.dtype == torch.float32 and np.array_equal(pt.numpy(), stored)
        # TRIDENT: <slide>.h5 with the coords attributes its slide encoders read
        with h5py.File(tmp_path / "trident-h5" / f"{slide_id}.h5", "r") as h5:
            np.testing.assert_array_equal(h5["features"][:], stored)
            np.testing.assert_array_equal(h5["coords"][:], coords)
            meta = dict(h5["coords"].attrs)
            assert meta["patch_size"] == 64 and meta["patch_size_level0"] == attrs["tile_size_level0"]
            assert meta["target_magnification"] == pytest.approx(10 / attrs["effective_mpp"], rel=0.02)
            assert meta["overlap"] == 0 and h5["features"].attrs["name"] == slide_id
        assert np.array_equal(
            torch.load(tmp_path / "pt" / f"{slide_id}.pt", weights_only=True).numpy(), stored
        )
    default = runner.invoke(app, ["export", str(run_dir), "--format", "pt", "--model", "noop"])
    assert default.exit_code == 0 and len(list((run_dir / "export" / "pt" / "noop").glob("*.pt"))) == 4
