"""The cohort: every slide's features for one model as one lazy array, read from the per-slide
stores or from ``OUT/cohort.zarr`` (written by :func:`pathopipe.loader.pack_run`).

In the packed cohort slide ``i`` owns rows ``offsets[i]:offsets[i+1]``; each slide's entry
records a stamp of its feature group's metadata, so a later extraction (or a new slide) makes
the packed cohort out of date and readers fall back to the stores.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import zarr

from pathopipe import fileio
from pathopipe.errors import NotFoundError, StoreError
from pathopipe.loader._rows import ShardedRows
from pathopipe.store.layout import (
    COORDS,
    FEATURES,
    OFFSETS,
    attrs_of,
    check_codecs,
    child_array,
    feature_array,
    feature_group,
    metadata_path,
    open_store_array,
    open_store_group,
    read_array,
)

if TYPE_CHECKING:
    import dask.array as da

    from pathopipe.loader._run import Run

COHORT_SCHEMA_VERSION = 1


def feature_stamp(store: str | Path, model: str, options: fileio.Options = None) -> str:
    """Identity of one slide's finished features: a hash of their group metadata (which holds
    the config hash and the timings of the run that wrote them)."""
    meta = fileio.read_bytes(metadata_path(feature_group(store, model)), options)
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
            raise NotFoundError(f"slide {slide!r} is not in this cohort of {len(self)} slides") from None

    def rows(self, slide: str | int) -> slice:
        i = self.index(slide)
        return slice(int(self.offsets[i]), int(self.offsets[i + 1]))

    def _array(self, path: str) -> zarr.Array[Any]:
        array = self._open.get(path)
        if array is None:
            array = zarr.open_array(fileio.zarr_store(path, self._options), mode="r")
            array = self._open[path] = check_codecs(array, path)
        return array

    def _rows_of(self, path: str, rows: slice) -> np.ndarray:
        """Rows of a packed array: straight from its shards when the layout allows, else zarr."""
        key = f"rows:{path}"
        if key not in self._open:
            self._open[key] = None if fileio.is_url(path) else ShardedRows.open(path)
        reader = self._open[key]
        return (
            reader.read(rows.start, rows.stop) if reader is not None else read_array(self._array(path), rows)
        )

    def bag(self, slide: str | int) -> tuple[np.ndarray, np.ndarray]:
        """One slide's (features (N, D), coords (N, 2)) as numpy arrays, read directly."""
        i = self.index(slide)
        if self.source == "packed":
            rows = self.rows(i)
            return self._rows_of(self._paths[0], rows), self._rows_of(self._paths[1], rows)
        store = self._paths[i]
        return (read_array(self._array(fileio.join(store, feature_array(self.model)))),
                read_array(self._array(fileio.join(store, COORDS))))  # fmt: skip


def _lazy(array: zarr.Array[Any], name: str) -> da.Array:
    import dask.array as dsa

    return dsa.from_array(array, chunks=array.chunks, name=name, asarray=True)


def cohort_from_stores(
    stores: list[Path | str], slide_ids: list[str], model: str, options: fileio.Options = None
) -> Cohort:
    """The cohort read from per-slide stores (one dask piece per slide)."""
    import dask.array as dsa

    features, coords, counts = [], [], []
    for store in stores:
        fa = open_store_array(store, feature_array(model), options)
        ca = open_store_array(store, COORDS, options)
        if fa.shape[0] != ca.shape[0]:
            raise StoreError(f"{store}: {fa.shape[0]} feature rows for {ca.shape[0]} coords")
        features.append(_lazy(fa, f"pathopipe-features-{store}-{model}"))
        coords.append(_lazy(ca, f"pathopipe-coords-{store}"))
        counts.append(fa.shape[0])
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return Cohort(model, tuple(slide_ids), offsets, dsa.concatenate(features), dsa.concatenate(coords),
                  "stores", tuple(str(s) for s in stores), _options=dict(options or {}))  # fmt: skip


def open_packed_cohort(packed: str | Path, model: str, options: fileio.Options = None) -> Cohort:
    group = open_store_group(fileio.join(packed, model), options)
    attrs = attrs_of(group)
    features = check_codecs(child_array(group, FEATURES), fileio.join(packed, model, FEATURES))
    coords = check_codecs(child_array(group, COORDS), fileio.join(packed, model, COORDS))
    slide_ids = tuple(str(entry["slide_id"]) for entry in attrs["slides"])
    return Cohort(model, slide_ids, read_array(child_array(group, OFFSETS)),
                  _lazy(features, f"pathopipe-cohort-{packed}-{model}"),
                  _lazy(coords, f"pathopipe-cohort-coords-{packed}-{model}"), "packed",
                  (fileio.join(packed, model, FEATURES), fileio.join(packed, model, COORDS)),
                  _options=dict(options or {}))  # fmt: skip


def packed_is_current(run: Run, model: str) -> bool:
    """The packed cohort holds exactly the slides whose features are complete now, unchanged."""
    packed = run.layout.cohort
    try:
        root = open_store_group(packed, run.options)
        if root.attrs.get("complete") is not True:
            return False
        entries: list[dict[str, Any]] = attrs_of(open_store_group(fileio.join(packed, model), run.options))[
            "slides"
        ]
    except (FileNotFoundError, KeyError, zarr.errors.NodeNotFoundError):
        return False
    current = run.slides_with(model)
    if [e["slide_id"] for e in entries] != current:
        return False
    return all(feature_stamp(run.store(e["slide_id"]), model, run.options) == e["stamp"] for e in entries)
