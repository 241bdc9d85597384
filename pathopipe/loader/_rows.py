"""Fast row reads of the cohort store's 2-D sharded arrays, without zarr's per-call overhead.

zarr-python answers each read through its async pipeline (several milliseconds per call, more
than reading and decompressing a bag). The cohort arrays have the one shard layout pathopipe
reads itself (:mod:`pathopipe.store.sharding`: row chunks inside shards, ``bytes`` + optional
``zstd``), so a bag is read here with one positioned read per chunk. Any other layout is left to
zarr. Values equal ``array[start:stop]`` (tests check it).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from zarr.core.metadata import ArrayV3Metadata

from pathopipe.store.sharding import EMPTY, ShardBytes, ShardIndex, ShardLayout


class ShardedRows:
    """Rows ``[start, stop)`` of one sharded 2-D array read straight from its shard files."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            metadata = ArrayV3Metadata.from_dict(json.loads((self.path / "zarr.json").read_text()))
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{self.path}: unreadable array metadata ({err})") from err
        layout = ShardLayout.of(metadata)
        if layout is None or len(layout.shape) != 2:
            raise ValueError(f"{self.path}: not a layout ShardedRows reads; use zarr")
        self.layout = layout
        self.shape: tuple[int, int] = (int(layout.shape[0]), int(layout.shape[1]))
        self.dtype: np.dtype = layout.dtype.newbyteorder("<")
        self.chunk_rows = layout.chunk_rows
        self.chunks_per_shard = layout.chunks_per_shard
        self.fill = layout.fill_value
        self._decode = layout.decoder()
        self._bytes = ShardBytes(self.path)
        self._indexes: dict[int, ShardIndex | None] = {}  # shard -> its index (None: absent)

    @classmethod
    def open(cls, path: str | Path) -> ShardedRows | None:
        """A reader, or None when the array's layout is not one this reads."""
        try:
            return cls(path)
        except (OSError, ValueError):
            return None

    def _index(self, shard: int) -> ShardIndex | None:
        if shard not in self._indexes:
            self._indexes[shard] = self._bytes.index(self.layout.shard_key(shard), self.chunks_per_shard)
        return self._indexes[shard]

    def read(self, start: int, stop: int) -> np.ndarray:
        n, dim = self.shape
        start, stop = max(0, start), min(stop, n)
        out = np.empty((max(0, stop - start), dim), dtype=self.dtype)
        if stop <= start:
            return out
        chunk = np.empty((self.chunk_rows, dim), dtype=self.dtype)
        for number in range(start // self.chunk_rows, (stop - 1) // self.chunk_rows + 1):
            shard, inner = divmod(number, self.chunks_per_shard)
            a, b = max(start, number * self.chunk_rows), min(stop, (number + 1) * self.chunk_rows)
            index = self._index(shard)
            offset, length = index.chunk(inner) if index is not None else (EMPTY, 0)
            if offset == EMPTY:
                out[a - start : b - start] = self.fill
                continue
            self._decode(self._bytes.read(self.layout.shard_key(shard), offset, offset + length), chunk)
            out[a - start : b - start] = chunk[a - number * self.chunk_rows : b - number * self.chunk_rows]
        return out
