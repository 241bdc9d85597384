"""The cohort: every slide's features for one model as one lazy array, and ``OUT/cohort.zarr``.

``pack_run`` concatenates the features (and coords) of all complete slides per model into
sharded arrays with an ``offsets`` array: slide ``i`` owns rows ``offsets[i]:offsets[i+1]``.
Each slide's entry records a stamp of its feature group's metadata, so a later extraction
(or a new slide) makes the packed cohort out of date and readers fall back to the stores.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import zarr

from pathopipe import storage
from pathopipe.errors import StoreError
from pathopipe.loader._rows import ShardedRows
from pathopipe.store.layout import check_codecs, open_store_array, open_store_group

if TYPE_CHECKING:
    import dask.array as da

    from pathopipe.loader._run import Run

COHORT = "cohort.zarr"
COHORT_SCHEMA_VERSION = 1
FEATURES, COORDS, OFFSETS = "features", "coords", "offsets"


def feature_stamp(store: str | Path, model: str, options: storage.Options = None) -> str:
    """Identity of one slide's finished features: a hash of their group metadata (which holds
    the config hash and the timings of the run that wrote them)."""
    meta = storage.read_bytes(storage.join(store, FEATURES, model, "zarr.json"), options)
    return hashlib.sha256(meta).hexdigest()[:16]


@dataclass
class Cohort:
    """Features of many slides for one model: ``features`` (rows, D) and ``coords`` (rows, 2)
    are lazy dask arrays; slide ``i`` owns rows ``offsets[i]:offsets[i + 1]``."""

    model: str
    slide_ids: tuple[str, ...]
    offsets: np.ndarray
    features: da.Array
    coords: da.Array
    source: str  # "packed" (cohort.zarr) or "stores" (per-slide stores)
    _paths: tuple[str, ...] = field(repr=False, default=())  # packed: (features, coords); else stores
    _open: dict[str, Any] = field(repr=False, default_factory=dict, compare=False)
    _options: dict[str, Any] = field(repr=False, default_factory=dict, compare=False)  # object storage

    def __len__(self) -> int:
        return len(self.slide_ids)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_open": {}}  # zarr handles are reopened in each process

    @property
    def n_rows(self) -> int:
        return int(self.offsets[-1])

    @property
    def slide_index(self) -> da.Array:
        """(rows,) int32: the slide (index into ``slide_ids``) of every row, computed lazily."""
        import dask.array as dsa

        offsets = self.offsets
        rows = dsa.arange(self.n_rows, chunks=self.features.chunks[0], dtype=np.int64)
        return rows.map_blocks(lambda r: (np.searchsorted(offsets, r, side="right") - 1).astype(np.int32),
                               dtype=np.int32)  # fmt: skip

    def slide_of(self, rows: np.ndarray | int) -> np.ndarray:
        """Index into ``slide_ids`` of the slide each row belongs to."""
        rows = np.asarray(rows)
        if rows.size and (rows.min() < 0 or rows.max() >= self.n_rows):
            raise IndexError(f"rows must be in [0, {self.n_rows}), got {rows.min()}..{rows.max()}")
        return np.searchsorted(self.offsets, rows, side="right") - 1

    def index(self, slide: str | int) -> int:
        if isinstance(slide, int | np.integer):
            return int(slide)
        try:
            return self.slide_ids.index(slide)
        except ValueError:
            raise KeyError(f"slide {slide!r} is not in this cohort of {len(self)} slides") from None

    def rows(self, slide: str | int) -> slice:
        i = self.index(slide)
        return slice(int(self.offsets[i]), int(self.offsets[i + 1]))

    def _array(self, path: str) -> zarr.Array:
        array = self._open.get(path)
        if array is None:
            array = zarr.open_array(storage.zarr_store(path, self._options), mode="r")
            array = self._open[path] = check_codecs(array, path)
        return array

    def _rows_of(self, path: str, rows: slice) -> np.ndarray:
        """Rows of a packed array: straight from its shards when the layout allows, else zarr."""
        key = f"rows:{path}"
        if key not in self._open:
            self._open[key] = None if storage.is_url(path) else ShardedRows.open(path)
        reader = self._open[key]
        return reader.read(rows.start, rows.stop) if reader is not None else self._array(path)[rows]

    def bag(self, slide: str | int) -> tuple[np.ndarray, np.ndarray]:
        """One slide's (features (N, D), coords (N, 2)) as numpy arrays, read directly."""
        i = self.index(slide)
        if self.source == "packed":
            rows = self.rows(i)
            return self._rows_of(self._paths[0], rows), self._rows_of(self._paths[1], rows)
        store = self._paths[i]
        return (self._array(f"{store}/{FEATURES}/{self.model}/{FEATURES}")[:],
                self._array(f"{store}/{COORDS}")[:])  # fmt: skip


def _lazy(array: zarr.Array, name: str) -> da.Array:
    import dask.array as dsa

    return dsa.from_array(array, chunks=array.chunks, name=name, asarray=True)


def cohort_from_stores(
    stores: list[Path | str], slide_ids: list[str], model: str, options: storage.Options = None
) -> Cohort:
    """The cohort read from per-slide stores (one dask piece per slide)."""
    import dask.array as dsa

    features, coords, counts = [], [], []
    for store in stores:
        fa = open_store_array(store, f"{FEATURES}/{model}/{FEATURES}", options)
        ca = open_store_array(store, COORDS, options)
        if fa.shape[0] != ca.shape[0]:
            raise StoreError(f"{store}: {fa.shape[0]} feature rows for {ca.shape[0]} coords")
        features.append(_lazy(fa, f"pathopipe-features-{store}-{model}"))
        coords.append(_lazy(ca, f"pathopipe-coords-{store}"))
        counts.append(fa.shape[0])
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return Cohort(model, tuple(slide_ids), offsets, dsa.concatenate(features), dsa.concatenate(coords),
                  "stores", tuple(str(s) for s in stores), _options=dict(options or {}))  # fmt: skip


def open_packed_cohort(packed: str | Path, model: str, options: storage.Options = None) -> Cohort:
    group = open_store_group(storage.join(packed, model), options)
    attrs = dict(group.attrs)
    features = check_codecs(group[FEATURES], storage.join(packed, model, FEATURES))
    coords = check_codecs(group[COORDS], storage.join(packed, model, COORDS))
    slide_ids = tuple(entry["slide_id"] for entry in attrs["slides"])
    return Cohort(model, slide_ids, group[OFFSETS][:], _lazy(features, f"pathopipe-cohort-{packed}-{model}"),
                  _lazy(coords, f"pathopipe-cohort-coords-{packed}-{model}"), "packed",
                  (storage.join(packed, model, FEATURES), storage.join(packed, model, COORDS)),
                  _options=dict(options or {}))  # fmt: skip


def packed_is_current(run: Run, model: str) -> bool:
    """The packed cohort holds exactly the slides whose features are complete now, unchanged."""
    packed = storage.join(run.path, COHORT)
    try:
        root = open_store_group(packed, run.options)
        if root.attrs.get("complete") is not True:
            return False
        entries = open_store_group(storage.join(packed, model), run.options).attrs["slides"]
    except (FileNotFoundError, KeyError, zarr.errors.NodeNotFoundError):
        return False
    current = run.slides_with(model)
    if [e["slide_id"] for e in entries] != current:
        return False
    return all(feature_stamp(run.store(e["slide_id"]), model, run.options) == e["stamp"] for e in entries)


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
    from pathopipe.loader._run import feature_attrs, open_run

    if storage.is_url(out):
        raise StoreError(
            f"{out}: pack writes cohort.zarr beside the stores, on a local output folder only; "
            "object-storage runs are read per slide (open_run(...).cohort(model))"
        )
    run = open_run(out, use_cohort="never")
    models = list(models) if models else run.models
    unknown = [m for m in models if m not in run.models]
    if unknown:
        raise KeyError(f"no complete features for {unknown} in {run.path} (models: {run.models})")
    if not models:
        raise StoreError(f"{run.path} has no complete features to pack; run `pathopipe extract` first")
    path = Path(run.path)
    target = path / COHORT
    tmp = path / f".{COHORT}.tmp-{os.getpid()}"
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
        first = open_store_array(run.store(slides[0]), f"{FEATURES}/{model}/{FEATURES}")
        dim, dtype = first.shape[1], first.dtype
        counts = []
        for s in slides:
            n = open_store_array(run.store(s), f"{FEATURES}/{model}/{FEATURES}").shape[0]
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
            fa = open_store_array(store, f"{FEATURES}/{model}/{FEATURES}")
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
    old = path / f".{COHORT}.old-{os.getpid()}"
    if target.exists():
        os.replace(target, old)
    os.replace(tmp, target)
    shutil.rmtree(old, ignore_errors=True)
    return target
