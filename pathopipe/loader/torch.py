"""PyTorch datasets over a run: bags of features per slide (MIL) and tiles (tile-level training).

Both pickle as paths and small tables, and open their arrays lazily in each DataLoader worker
process, so ``DataLoader(dataset, num_workers=8)`` works without sharing file handles.

>>> from torch.utils.data import DataLoader                            # doctest: +SKIP
>>> bags = FeatureBagDataset("OUT", "resnet50_trunc", labels="labels.csv")
>>> for bag in DataLoader(bags, batch_size=None, shuffle=True, num_workers=4): ...
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import zarr
from torch.utils.data import Dataset

from pathopipe.loader import Cohort, Run, open_run
from pathopipe.store.layout import COORDS, TILES, check_codecs, open_store_array
from pathopipe.store.shards import read_tiles

__all__ = ["FeatureBagDataset", "TileDataset", "read_labels"]

logger = logging.getLogger(__name__)

Labels = str | Path | Mapping[str, Any]


def read_labels(
    labels: Labels, *, id_column: str = "slide_id", label_column: str = "label"
) -> dict[str, Any]:
    """Labels per slide id from a mapping or a CSV file with ``id_column`` and ``label_column``."""
    if isinstance(labels, Mapping):
        return dict(labels)
    path = Path(labels)
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        columns = reader.fieldnames or []
        missing = [c for c in (id_column, label_column) if c not in columns]
        if missing:
            raise ValueError(f"{path}: no column {missing} (columns: {columns}); set id_column/label_column")
        table: dict[str, Any] = {}
        for line, row in enumerate(reader, start=2):
            slide_id = row[id_column]
            if slide_id in table:
                raise ValueError(f"{path}:{line}: slide {slide_id!r} has a second label")
            table[slide_id] = _parse_label(row[label_column])
    return table


def _parse_label(value: str) -> Any:
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def _as_run(run: Run | str | Path) -> Run:
    return run if isinstance(run, Run) else open_run(run)


class FeatureBagDataset(Dataset[dict[str, Any]]):
    """One bag per slide: ``{"features": (N, D) float32, "coords": (N, 2) int64, "label", "slide_id"}``.

    ``labels`` (a CSV path or a mapping) selects the slides that have one; slides without a
    label are left out (logged). ``max_tiles`` draws at most that many tiles per bag, without
    replacement, reproducibly from ``seed`` and the slide (call ``set_epoch`` for new draws).
    Reads the packed cohort when it is current, else the per-slide stores.
    """

    def __init__(
        self,
        run: Run | str | Path,
        model: str,
        *,
        labels: Labels | None = None,
        max_tiles: int | None = None,
        seed: int = 0,
        id_column: str = "slide_id",
        label_column: str = "label",
    ) -> None:
        self.cohort: Cohort = _as_run(run).cohort(model)
        self.labels = read_labels(labels, id_column=id_column, label_column=label_column) if labels else None
        indices = list(range(len(self.cohort)))
        if self.labels is not None:
            unlabelled = [s for s in self.cohort.slide_ids if s not in self.labels]
            if unlabelled:
                logger.warning(
                    "%d slides have no label and are left out: %s", len(unlabelled), unlabelled[:5]
                )
            indices = [i for i, s in enumerate(self.cohort.slide_ids) if s in self.labels]
        self.indices = indices
        if max_tiles is not None and max_tiles < 1:
            raise ValueError(f"max_tiles must be at least 1 or None, not {max_tiles}")
        self.max_tiles = max_tiles
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    @property
    def slide_ids(self) -> list[str]:
        return [self.cohort.slide_ids[i] for i in self.indices]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, item: int) -> dict[str, Any]:
        index = self.indices[item]
        slide_id = self.cohort.slide_ids[index]
        features, coords = self.cohort.bag(index)
        if self.max_tiles is not None and len(features) > self.max_tiles:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            keep = np.sort(rng.choice(len(features), self.max_tiles, replace=False))
            features, coords = features[keep], coords[keep]
        bag = {
            "features": torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32)),
            "coords": torch.from_numpy(np.ascontiguousarray(coords, dtype=np.int64)),
            "slide_id": slide_id,
        }
        if self.labels is not None:
            bag["label"] = self.labels[slide_id]
        return bag


class TileDataset(Dataset[dict[str, Any]]):
    """Every stored tile of the run's slides: ``{"image", "slide_id", "index", "coords"}``.

    ``image`` is ``transform(tile)`` for an (H, W, 3) uint8 numpy tile, or by default a
    (3, H, W) uint8 tensor. Slides stored without tiles (``store.codec: none``) are skipped.
    """

    def __init__(
        self,
        run: Run | str | Path,
        *,
        slide_ids: list[str] | None = None,
        transform: Callable[[np.ndarray], Any] | None = None,
    ) -> None:
        run = _as_run(run)
        chosen = slide_ids if slide_ids is not None else run.slide_ids
        stored = [s for s in chosen if Path(run.store(s), TILES).exists()]
        self.stores = [str(run.store(s)) for s in stored]
        self.slide_ids = stored
        counts = [open_store_array(store, COORDS).shape[0] for store in self.stores]
        self.offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self.transform = transform
        self._open: dict[str, Any] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_open": {}}

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def _array(self, path: str) -> zarr.Array[Any]:
        array = self._open.get(path)
        if array is None:
            array = self._open[path] = check_codecs(zarr.open_array(path, mode="r"), path)
        return array

    def __getitem__(self, item: int) -> dict[str, Any]:
        if not 0 <= item < len(self):
            raise IndexError(f"tile {item} out of range (dataset of {len(self)} tiles)")
        slide = int(np.searchsorted(self.offsets, item, side="right") - 1)
        row = item - int(self.offsets[slide])
        store = self.stores[slide]
        # just this tile's bytes of the shard: its index entry, then its range (3x zarr's a[row])
        tile = read_tiles(self._array(f"{store}/{TILES}"), row, row + 1)[0]
        coords = self._array(f"{store}/{COORDS}")[row]
        image = (
            self.transform(tile) if self.transform else torch.from_numpy(tile).permute(2, 0, 1).contiguous()
        )
        return {"image": image, "slide_id": self.slide_ids[slide], "index": row,
                "coords": torch.as_tensor(coords, dtype=torch.int64)}  # fmt: skip
