"""Stage functions without Dask: an unfinished store is never marked complete."""

import pytest
import zarr

from pathopipe.config import load_config
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
