"""Worker memory is bounded by configuration, not by slide size (the small-scale check; the
100,000 x 80,000 px figure is benchmarks/memory.py)."""

from __future__ import annotations

import pytest

from pathopipe.config import ClusterConfig, load_config
from pathopipe.output.metrics import read_metrics
from pathopipe.parallel import local_client
from pathopipe.parallel.workflow import run_workflow
from pathopipe.testing import write_synthetic_slide


def _largest_worker_peak(slide, out) -> tuple[int, int]:
    overrides = ["tiling.target_mpp=0.5", "tiling.min_tissue_fraction=0.3", "store.tiles_per_shard=64",
                 "features.models=[noop]", "features.device=cpu"]  # fmt: skip
    cfg = load_config(None, overrides)
    with local_client(ClusterConfig(n_workers=1, dashboard=False)) as client:  # a fresh worker: its own peak
        (record,) = run_workflow([slide], out, cfg, client=client).records
    assert record.status == "done", record.error
    return int(read_metrics(out / "metrics.parquet")["peak_rss_bytes"].max()), record.n_tiles


@pytest.mark.slow
def test_worker_peak_memory_does_not_grow_with_the_slide(tmp_path):
    small = write_synthetic_slide(tmp_path / "small.svs", width=2_000, height=2_000, seed=11, workers=2)
    large = write_synthetic_slide(tmp_path / "large.svs", width=14_000, height=12_000, seed=11, workers=2)
    small_peak, small_tiles = _largest_worker_peak(small.path, tmp_path / "out-small")
    large_peak, large_tiles = _largest_worker_peak(large.path, tmp_path / "out-large")
    assert large_tiles > 10 * small_tiles  # the large slide is far more work
    # one level-0 copy of the large slide alone would be 504 MB; the worker stays within 1.25x
    print(f"worker peaks: small {small_peak / 2**20:.0f} MiB ({small_tiles} tiles), "
          f"large {large_peak / 2**20:.0f} MiB ({large_tiles} tiles)")  # fmt: skip
    assert large_peak <= 1.25 * small_peak, (large_peak / 2**20, small_peak / 2**20)
