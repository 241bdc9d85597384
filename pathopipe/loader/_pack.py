"""``pathopipe pack``: ``OUT/cohort.zarr``, every complete slide's features per model in one
sharded array, with row offsets and a slide table (see :mod:`pathopipe.loader._cohort`)."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np
import zarr

from pathopipe import fileio
from pathopipe.errors import NotFoundError, StoreError
from pathopipe.loader._cohort import COHORT_SCHEMA_VERSION, feature_stamp
from pathopipe.loader._run import feature_attrs, open_run
from pathopipe.output.layout import RunLayout
from pathopipe.store.layout import COORDS, FEATURES, OFFSETS, feature_array, open_store_array

__all__ = ["pack_run"]


def _shard_rows(dim: int, itemsize: int, chunk_rows: int, shard_bytes: int) -> int:
    rows = max(chunk_rows, shard_bytes // max(1, dim * itemsize))
    return max(chunk_rows, rows // chunk_rows * chunk_rows)


def pack_run(
    out: str | Path,
    models: list[str] | None = None,
    *,
    chunk_rows: int = 1024,
    shard_bytes: int = 64 << 20,
) -> Path:
    """Write ``OUT/cohort.zarr``: per model, all complete slides' features and coords
    concatenated (sharded, ``chunk_rows`` rows per chunk), ``offsets`` and a slide table.

    Written beside the old one and swapped in when complete, so readers never see half a
    cohort. Returns its path.
    """
    if fileio.is_url(out):
        raise StoreError(
            f"{out}: pack writes {RunLayout.COHORT} beside the stores, on a local output folder only; "
            "object-storage runs are read per slide (open_run(...).cohort(model))"
        )
    run = open_run(out, use_cohort="never")
    models = list(models) if models else run.models
    unknown = [m for m in models if m not in run.models]
    if unknown:
        raise NotFoundError(f"no complete features for {unknown} in {run.path} (models: {run.models})")
    if not models:
        raise StoreError(f"{run.path} has no complete features to pack; run `pathopipe extract` first")
    path = Path(run.path)
    target = path / RunLayout.COHORT
    tmp = path / f".{RunLayout.COHORT}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    root = zarr.open_group(tmp, mode="w", zarr_format=3)
    root.update_attributes({"schema_version": COHORT_SCHEMA_VERSION, "complete": False, "models": models})
    for model in models:
        slides = run.slides_with(model)
        metas = [feature_attrs(run.store(s), model) for s in slides]
        hashes = {m.get("config_hash") for m in metas}
        if len(hashes) > 1:
            by_hash: dict[str, list[str]] = {}
            for s, m in zip(slides, metas, strict=True):
                by_hash.setdefault(str(m.get("config_hash")), []).append(s)
            detail = "; ".join(
                f"{h}: {', '.join(v[:3])}{' ...' if len(v) > 3 else ''}" for h, v in by_hash.items()
            )
            raise StoreError(
                f"features {model!r} were computed with different settings across slides ({detail}); "
                "re-extract them with one configuration (pathopipe extract --force) before packing"
            )
        first = open_store_array(run.store(slides[0]), feature_array(model))
        dim, dtype = first.shape[1], first.dtype
        counts = []
        for s in slides:
            n = open_store_array(run.store(s), feature_array(model)).shape[0]
            counts.append(n)
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        total = int(offsets[-1])
        shard = _shard_rows(dim, dtype.itemsize, chunk_rows, shard_bytes)
        group = root.create_group(model)
        features = group.create_array(FEATURES, shape=(total, dim), dtype=dtype, chunks=(chunk_rows, dim),
                                      shards=(shard, dim), dimension_names=("row", "feature"))  # fmt: skip
        coords = group.create_array(COORDS, shape=(total, 2), dtype="int64", chunks=(chunk_rows, 2),
                                    shards=(shard, 2), dimension_names=("row", "axis"))  # fmt: skip
        group.create_array(OFFSETS, shape=offsets.shape, dtype="int64", dimension_names=("slide",))[...] = (
            offsets
        )
        buffer_f = np.empty((shard, dim), dtype=dtype)
        buffer_c = np.empty((shard, 2), dtype=np.int64)
        written = filled = 0
        for s, n in zip(slides, counts, strict=True):
            store = run.store(s)
            fa = open_store_array(store, feature_array(model))
            ca = open_store_array(store, COORDS)
            done = 0
            while done < n:  # copy into whole shards, so each shard is written once
                take = min(n - done, shard - filled)
                buffer_f[filled : filled + take] = fa[done : done + take]
                buffer_c[filled : filled + take] = ca[done : done + take]
                filled, done = filled + take, done + take
                if filled == shard:
                    features[written : written + shard] = buffer_f
                    coords[written : written + shard] = buffer_c
                    written, filled = written + shard, 0
        if filled:
            features[written : written + filled] = buffer_f[:filled]
            coords[written : written + filled] = buffer_c[:filled]
        entries = [
            {"slide_id": s, "source": run.slide_attrs(s).get("source_path"), "n_tiles": n,
             "offset": int(o), "stamp": feature_stamp(run.store(s), model)}
            for s, n, o in zip(slides, counts, offsets[:-1], strict=True)
        ]  # fmt: skip
        keep = ("config_hash", "model", "weights", "embedding_dim", "feature_dtype", "input_size",
                "normalisation", "precision")  # fmt: skip
        group.update_attributes(
            {"slides": entries, "n_rows": total, "feature": {k: metas[0].get(k) for k in keep}}
        )
    root.update_attributes({"complete": True, "packed_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    old = path / f".{RunLayout.COHORT}.old-{os.getpid()}"
    if target.exists():
        os.replace(target, old)
    os.replace(tmp, target)
    shutil.rmtree(old, ignore_errors=True)
    return target
