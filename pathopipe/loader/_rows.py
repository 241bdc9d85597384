"""Fast row reads of the cohort store's 2-D sharded arrays, without zarr's per-call overhead.

zarr-python answers each read through its async pipeline (several milliseconds per call, more
than reading and decompressing a bag). The cohort arrays have one known layout (row chunks
inside shards, ``bytes`` + optional ``zstd``, index at the end with CRC32C, default chunk
keys), so a bag is read here with one positioned read per chunk. Any other layout is left to
zarr. Values equal ``array[start:stop]`` (tests check it).
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any

import google_crc32c
import numpy as np

EMPTY = 2**64 - 1


def _layout(meta: dict[str, Any]) -> dict[str, Any] | None:
    """The parameters of a supported layout, else None."""
    try:
        if meta["chunk_key_encoding"] != {"name": "default", "configuration": {"separator": "/"}}:
            return None
        (sharding,) = meta["codecs"]
        if sharding["name"] != "sharding_indexed":
            return None
        conf = sharding["configuration"]
        inner = conf["codecs"]
        index = conf["index_codecs"]
        if conf.get("index_location", "end") != "end" or [c["name"] for c in index] != ["bytes", "crc32c"]:
            return None
        if index[0].get("configuration", {}).get("endian", "little") != "little":
            return None
        names = [c["name"] for c in inner]
        if names not in (["bytes"], ["bytes", "zstd"]) or inner[0]["configuration"]["endian"] != "little":
            return None
        if len(meta["shape"]) != 2 or conf["chunk_shape"][1] != meta["shape"][1]:
            return None
        shard_rows = meta["chunk_grid"]["configuration"]["chunk_shape"][0]
        chunk_rows = conf["chunk_shape"][0]
        return {"shard_rows": shard_rows, "chunk_rows": chunk_rows, "zstd": names == ["bytes", "zstd"],
                "dtype": np.dtype(meta["data_type"]).newbyteorder("<"), "shape": tuple(meta["shape"]),
                "fill": meta.get("fill_value", 0)}  # fmt: skip
    except (KeyError, TypeError, ValueError):
        return None


class ShardedRows:
    """Rows ``[start, stop)`` of one sharded 2-D array read straight from its shard files."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        layout = _layout(json.loads((self.path / "zarr.json").read_text()))
        if layout is None:
            raise ValueError(f"{self.path}: not a layout ShardedRows reads; use zarr")
        self.shape: tuple[int, int] = layout["shape"]
        self.dtype: np.dtype = layout["dtype"]
        self.chunk_rows: int = layout["chunk_rows"]
        self.chunks_per_shard = layout["shard_rows"] // self.chunk_rows
        self.fill = layout["fill"]
        self._zstd = None
        if layout["zstd"]:
            import numcodecs

            self._zstd = numcodecs.Zstd()
        self._indexes: dict[int, np.ndarray | None] = {}  # shard -> (chunks, 2) offsets/lengths

    @classmethod
    def open(cls, path: str | Path) -> ShardedRows | None:
        """A reader, or None when the array's layout is not one this reads."""
        try:
            return cls(path)
        except (OSError, ValueError):
            return None

    def _index(self, shard: int) -> tuple[np.ndarray | None, Path]:
        path = self.path / "c" / str(shard) / "0"
        if shard not in self._indexes:
            try:
                with path.open("rb") as fh:
                    size = self.chunks_per_shard * 16
                    fh.seek(-(size + 4), os.SEEK_END)
                    tail = fh.read(size + 4)
            except FileNotFoundError:
                self._indexes[shard] = None
                return None, path
            if struct.pack("<I", google_crc32c.value(tail[:-4])) != tail[-4:]:
                raise OSError(f"{path}: shard index checksum mismatch (corrupt or truncated)")
            self._indexes[shard] = np.frombuffer(tail[:-4], dtype="<u8").reshape(-1, 2)
        return self._indexes[shard], path

    def read(self, start: int, stop: int) -> np.ndarray:
        n, dim = self.shape
        start, stop = max(0, start), min(stop, n)
        out = np.empty((max(0, stop - start), dim), dtype=self.dtype)
        if stop <= start:
            return out
        chunk_bytes = self.chunk_rows * dim * self.dtype.itemsize
        for chunk in range(start // self.chunk_rows, (stop - 1) // self.chunk_rows + 1):
            shard, inner = divmod(chunk, self.chunks_per_shard)
            a, b = max(start, chunk * self.chunk_rows), min(stop, (chunk + 1) * self.chunk_rows)
            index, path = self._index(shard)
            offset, length = (int(v) for v in index[inner]) if index is not None else (EMPTY, 0)
            if offset == EMPTY:
                out[a - start : b - start] = self.fill
                continue
            with path.open("rb") as fh:
                data = os.pread(fh.fileno(), length, offset)
            raw = self._zstd.decode(data) if self._zstd is not None else data
            if len(raw) != chunk_bytes:
                raise OSError(f"{path}: chunk {inner} holds {len(raw)} bytes, expected {chunk_bytes}")
            rows = np.frombuffer(raw, dtype=self.dtype).reshape(self.chunk_rows, dim)
            out[a - start : b - start] = rows[a - chunk * self.chunk_rows : b - chunk * self.chunk_rows]
        return out
