"""Stage functions without Dask: an unfinished store is never marked complete."""

import numpy as np
import pytest
import zarr

import pathopipe.stages.tiling as tiling
from pathopipe.config import load_config
from pathopipe.slide import open_slide
from pathopipe.stages.tiling import SlideJob, finish_slide, prepare_slide, write_tile_shard
from pathopipe.store import read_status


def test_missing_shard_leaves_store_incomplete(tmp_path, aperio_slide):
    cfg = load_config(
        None, ["store.tiles_per_shard=8", "tiling.target_mpp=1.0", "tiling.min_tissue_fraction=0.1"]
    )
    job = SlideJob("aperio", str(aperio_slide.path), str(tmp_path / "aperio.zarr"))
    plan = prepare_slide(job, cfg, "hash")
    shards = plan.ranges()
    assert len(shards) >= 2
    results = [write_tile_shard(plan, start, stop) for start, stop in shards[:-1]]
    with pytest.raises(RuntimeError, match="incomplete"):
        finish_slide(plan, results)
    assert read_status(job.store).complete is False
    results.append(write_tile_shard(plan, *shards[-1]))
    summary = finish_slide(plan, results)
    status = read_status(job.store)
    assert status.complete and status.config_hash == "hash" and status.n_tiles == plan.n_tiles
    assert summary["bytes"] > 0
    assert zarr.open_group(job.store, mode="r")["tiles"].shape[0] == plan.n_tiles


def _tile_store(job: SlideJob, cfg) -> tuple[zarr.Group, tiling.TilePlan]:
    plan = prepare_slide(job, cfg, "hash")
    finish_slide(plan, [write_tile_shard(plan, start, stop) for start, stop in plan.ranges()])
    return zarr.open_group(job.store, mode="r"), plan


def test_shards_read_in_batches_hold_the_same_tiles(tmp_path, aperio_slide, monkeypatch):
    """A shard is read and encoded READ_BATCH tiles at a time; batches that cut shards anywhere
    store exactly the tiles the whole shard read at once stores, and those are the slide's."""
    cfg = load_config(
        None, ["store.tiles_per_shard=32", "tiling.target_mpp=0.5", "tiling.min_tissue_fraction=0.1"]
    )
    monkeypatch.setattr(tiling, "READ_BATCH", 5)
    batched, plan = _tile_store(SlideJob("a", str(aperio_slide.path), str(tmp_path / "batched.zarr")), cfg)
    monkeypatch.setattr(tiling, "READ_BATCH", 10**6)
    whole, _ = _tile_store(SlideJob("a", str(aperio_slide.path), str(tmp_path / "whole.zarr")), cfg)
    assert batched["tiles"].shape[0] > 32  # several shards, none a multiple of the batch
    np.testing.assert_array_equal(batched["coords"][:], whole["coords"][:])
    np.testing.assert_array_equal(batched["tiles"][:], whole["tiles"][:])
    with open_slide(aperio_slide.path) as slide:  # decoded tiles within JPEG q90 of the slide's
        direct = tiling.read_tiles(slide, plan.spec, batched["coords"][:])
    assert np.abs(direct.astype(int) - batched["tiles"][:]).mean() < 3


def test_a_store_made_anew_is_not_read_through_the_old_plan(tmp_path, aperio_slide):
    """Tasks keep a store's coordinates open per plan: a store made again in the same place with
    other coordinates (another run's settings) gets its own tiles, not the first plan's."""
    job = SlideJob("a", str(aperio_slide.path), str(tmp_path / "a.zarr"))
    base = ["store.tiles_per_shard=16", "tiling.target_mpp=1.0"]
    first, _ = _tile_store(job, load_config(None, [*base, "tiling.min_tissue_fraction=0.9"]))
    n_first = first["coords"].shape[0]
    again, plan = _tile_store(job, load_config(None, [*base, "tiling.min_tissue_fraction=0.05"]))
    coords = again["coords"][:]
    assert len(coords) > n_first
    with open_slide(aperio_slide.path) as slide:
        direct = tiling.read_tiles(slide, plan.spec, coords)
    assert np.abs(direct.astype(int) - again["tiles"][:]).mean() < 3
