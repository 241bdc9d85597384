"""``open_run``: a finished (or running) pathopipe output as lazy arrays.

>>> run = open_run("OUT")                                     # doctest: +SKIP
>>> run.features(run.slide_ids[0], "resnet50_trunc")          # xarray.Dataset, dask-backed
>>> cohort = run.cohort("resnet50_trunc")                     # every slide, one lazy array
"""

from __future__ import annotations

import json
import logging
import os
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import zarr

from pathopipe import fileio
from pathopipe.errors import NotFoundError, StoreError
from pathopipe.loader._cohort import Cohort, cohort_from_stores, open_packed_cohort, packed_is_current
from pathopipe.output.layout import RunLayout
from pathopipe.output.manifest import read_manifest_records
from pathopipe.store.layout import (
    COORDS,
    FEATURES,
    METADATA,
    TILES,
    TISSUE_FRACTION,
    feature_array,
    feature_group,
    metadata_path,
    open_store_array,
    read_array,
    read_attrs,
)
from pathopipe.store.shards import read_tiles

if TYPE_CHECKING:
    import dask.array as da
    import pandas as pd
    import xarray as xr

logger = logging.getLogger(__name__)

FINISHED = ("done", "skipped")
UseCohort = Literal["auto", "always", "never"]


def feature_attrs(store: str | Path, model: str, options: fileio.Options = None) -> dict[str, Any]:
    """Attributes of ``features/<model>`` in a slide store ({} when absent)."""
    return read_attrs(feature_group(store, model), options)


class Run:
    """A pathopipe output directory: manifest, slide stores, features, and the packed cohort.

    Holds only the path and small tables, so it pickles cheaply into DataLoader workers and
    Dask tasks; arrays are opened where they are read. ``path`` may be a URL (``s3://...``),
    reached with ``storage_options`` (default: the environment and ``~/.aws``).
    """

    def __init__(
        self, path: str | Path, *, use_cohort: UseCohort = "auto", storage_options: fileio.Options = None
    ) -> None:
        self.path: str | Path = os.fspath(path) if fileio.is_url(path) else Path(path)
        self.layout = RunLayout(self.path)
        self.options = dict(storage_options or {})
        if not fileio.exists(self.layout.manifest, self.options) and not fileio.exists(
            self.layout.slides, self.options
        ):
            raise StoreError(
                f"{self.path} is not a pathopipe output (no {RunLayout.MANIFEST} or {RunLayout.SLIDES}/); "
                "give the --out directory of `pathopipe run` or `pathopipe tile`"
            )
        if use_cohort not in ("auto", "always", "never"):
            raise ValueError(f"use_cohort must be 'auto', 'always' or 'never', not {use_cohort!r}")
        self.use_cohort = use_cohort

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r}, slides={len(self.slide_ids)}, models={self.models})"

    # -- tables ----------------------------------------------------------------------------

    @property
    def manifest(self) -> pd.DataFrame:
        """``manifest.csv`` as a DataFrame (one row per slide, every status)."""
        import pandas as pd

        records = read_manifest_records(self.path, self.options)
        return pd.DataFrame([vars(r) for r in records]) if records else pd.DataFrame()

    @cached_property
    def slide_ids(self) -> list[str]:
        """Slides whose tile store is complete, in manifest order."""
        records = read_manifest_records(self.path, self.options)
        if records:
            candidates = [r.slide_id for r in records if r.status in FINISHED]
        else:  # a manifest-less output (e.g. stores copied elsewhere): every store on disk
            names = fileio.glob_names(self.layout.slides, f"*{RunLayout.STORE_SUFFIX}", self.options)
            candidates = [s for s in map(RunLayout.slide_id_of, names) if s is not None]
        return [s for s in candidates if self.slide_attrs(s).get("complete") is True]

    @cached_property
    def models(self) -> list[str]:
        """Model keys with complete features on at least one slide."""
        found: dict[str, None] = {}
        for slide_id in self.slide_ids:
            features = fileio.join(self.store(slide_id), FEATURES)
            for group in fileio.glob_names(features, f"*/{METADATA}", self.options):
                key = group.split("/")[0]
                if key not in found and self.feature_attrs(slide_id, key).get("complete") is True:
                    found[key] = None
        return list(found)

    def slides_with(self, model: str) -> list[str]:
        """Slides whose features for ``model`` are complete."""
        return [s for s in self.slide_ids if self.feature_attrs(s, model).get("complete") is True]

    def store(self, slide_id: str) -> Path | str:
        """A slide's store: a ``Path`` for a local run, a URL on object storage."""
        path = self.layout.slide_store(slide_id)
        return path if fileio.is_url(path) else Path(path)

    def slide_attrs(self, slide_id: str) -> dict[str, Any]:
        """The slide store's attributes (mpp, tile geometry, source, config...)."""
        return read_attrs(self.store(slide_id), self.options)

    def feature_attrs(self, slide_id: str, model: str) -> dict[str, Any]:
        """Attributes of a slide's ``features/<model>`` group ({} when absent)."""
        return feature_attrs(self.store(slide_id), model, self.options)

    def _array(self, slide_id: str, name: str) -> zarr.Array[Any]:
        return open_store_array(self.store(slide_id), name, self.options)

    def _require_slide(self, slide_id: str) -> Path | str:
        if slide_id not in self.slide_ids:
            known = ", ".join(self.slide_ids[:5]) + (" ..." if len(self.slide_ids) > 5 else "")
            raise NotFoundError(
                f"no complete slide {slide_id!r} in {self.path} (complete slides: {known or 'none'})"
            )
        return self.store(slide_id)

    def _require_model(self, slide_id: str, model: str) -> dict[str, Any]:
        self._require_slide(slide_id)
        attrs = self.feature_attrs(slide_id, model)
        if attrs.get("complete") is not True:
            state = "incomplete" if attrs else "absent"
            raise NotFoundError(
                f"features {model!r} of slide {slide_id!r} are {state} in {self.path} "
                f"(models here: {', '.join(self.models) or 'none'}); compute them with `pathopipe extract`"
            )
        return attrs

    # -- arrays ----------------------------------------------------------------------------

    def coords(self, slide_id: str) -> np.ndarray:
        """(N, 2) int64 level-0 (x, y) of each tile's top-left corner."""
        self._require_slide(slide_id)
        return read_array(self._array(slide_id, COORDS))

    def features(self, slide_id: str, model: str) -> xr.Dataset:
        """Features of one slide as an ``xarray.Dataset`` backed lazily by dask.

        Variables: ``features`` (tile, feature); coordinates ``x``, ``y`` (level-0 px of the
        tile's top-left corner), ``x_um``, ``y_um`` (µm), ``tissue_fraction``.
        """
        import dask.array as da
        import xarray as xr

        feature_meta = self._require_model(slide_id, model)
        store = self.store(slide_id)
        attrs = self.slide_attrs(slide_id)
        array = self._array(slide_id, feature_array(model))
        lazy = da.from_array(
            array, chunks=array.chunks, name=f"pathopipe-features-{store}-{model}", asarray=True
        )
        xy = read_array(self._array(slide_id, COORDS))
        fraction = read_array(self._array(slide_id, TISSUE_FRACTION))
        mpp = float(attrs["mpp"])
        return xr.Dataset(
            {"features": (("tile", "feature"), lazy)},
            coords={
                "x": ("tile", xy[:, 0]),
                "y": ("tile", xy[:, 1]),
                "x_um": ("tile", xy[:, 0] * mpp),
                "y_um": ("tile", xy[:, 1] * mpp),
                "tissue_fraction": ("tile", fraction),
            },
            attrs={
                "slide_id": slide_id,
                "model": model,
                "mpp": mpp,
                "effective_mpp": attrs.get("effective_mpp"),
                "tile_size": attrs.get("tile_size"),
                "tile_size_level0": attrs.get("tile_size_level0"),
                "embedding_dim": feature_meta.get("embedding_dim"),
                "feature_dtype": feature_meta.get("feature_dtype"),
                "config_hash": feature_meta.get("config_hash"),
                "weights": json.dumps(feature_meta.get("weights")),
                "source_path": attrs.get("source_path"),
            },
        )

    def tiles(self, slide_id: str) -> da.Array:
        """(N, T, T, 3) uint8 tiles as a dask array, one chunk per shard file."""
        import dask.array as da

        store = self._require_slide(slide_id)
        if not fileio.exists(metadata_path(fileio.join(store, TILES)), self.options):
            raise NotFoundError(
                f"slide {slide_id!r} has no stored tiles (store.codec: none); "
                "read them from the slide with pathopipe.tiling.read_tiles instead"
            )
        array = self._array(slide_id, TILES)
        per_chunk = (array.shards or array.chunks)[0]
        n = array.shape[0]
        rows = tuple(min(per_chunk, n - a) for a in range(0, n, per_chunk)) or (0,)
        chunks = (rows, *((s,) for s in array.shape[1:]))
        options = self.options

        def load(block_info: dict[Any, Any] | None = None) -> np.ndarray:
            (start, stop), *_ = block_info[None]["array-location"]  # type: ignore[index]
            return read_tiles(open_store_array(store, TILES, options), start, stop)

        return da.map_blocks(
            load,
            dtype=np.uint8,
            chunks=chunks,
            name=f"pathopipe-tiles-{store}",
            meta=np.empty((0, 0, 0, 0), np.uint8),
        )

    def cohort(self, model: str) -> Cohort:
        """All slides' features for ``model`` as one lazy array with a slide index and offsets.

        Uses ``OUT/cohort.zarr`` (``pathopipe pack``) when it is current, else the per-slide
        stores (the same values; the packed store reads much faster for large cohorts).
        """
        packed = self.layout.cohort
        if self.use_cohort != "never" and fileio.exists(fileio.join(packed, model), self.options):
            if self.use_cohort == "always" or packed_is_current(self, model):
                return open_packed_cohort(packed, model, self.options)
            logger.info(
                "%s/%s is out of date; reading per-slide stores (run `pathopipe pack`)", packed, model
            )
        elif self.use_cohort == "always":
            raise StoreError(f"{packed} has no model {model!r}; run `pathopipe pack {self.path}`")
        slides = self.slides_with(model)
        if not slides:
            raise NotFoundError(
                f"no slide in {self.path} has complete features {model!r} (models: {self.models})"
            )
        return cohort_from_stores([self.store(s) for s in slides], slides, model, self.options)


def open_run(
    path: str | Path, *, use_cohort: UseCohort = "auto", storage_options: fileio.Options = None
) -> Run:
    """Open a pathopipe output directory (``--out`` of ``pathopipe run``/``tile``), local or a
    URL (``s3://bucket/run/``; ``storage_options`` as for fsspec, default the environment).

    ``use_cohort``: ``"auto"`` reads ``cohort.zarr`` when it is up to date with the slide
    stores, ``"always"`` trusts it without checking, ``"never"`` ignores it.
    """
    return Run(path, use_cohort=use_cohort, storage_options=storage_options)
