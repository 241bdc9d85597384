"""Where the tiff backend reads source-tile bytes: positioned reads of a local file, or range
requests over fsspec; nearby tiles are coalesced into one read."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from pathopipe import fileio

COALESCE_GAP = 64 << 10  # merge reads of tiles less than this many bytes apart
COALESCE_MAX = 16 << 20


def coalesce(spans: Sequence[tuple[int, int]]) -> list[tuple[int, int, list[int]]]:
    """Group (offset, length) spans, sorted by offset, into reads of nearby bytes.

    Returns (start, stop, members) per read, members indexing ``spans``.
    """
    order = sorted(range(len(spans)), key=lambda i: spans[i][0])
    reads: list[tuple[int, int, list[int]]] = []
    for i in order:
        offset, length = spans[i]
        if reads:
            start, stop, members = reads[-1]
            if offset - stop <= COALESCE_GAP and offset + length - start <= COALESCE_MAX:
                reads[-1] = (start, max(stop, offset + length), [*members, i])
                continue
        reads.append((offset, offset + length, [i]))
    return reads


class LocalBytes:
    """Positioned reads from a local file (os.pread: no shared file position, thread-safe)."""

    def __init__(self, path: str) -> None:
        self._fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))

    def read(self, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        out = []
        for start, stop in ranges:
            data = os.pread(self._fd, stop - start, start)
            if len(data) != stop - start:
                raise OSError(f"file ends at byte {start + len(data)}, tile data runs to {stop}")
            out.append(data)
        return list(out)

    def close(self) -> None:
        os.close(self._fd)


class FsspecBytes:
    """Range reads over fsspec (object storage: concurrent requests where the filesystem can)."""

    def __init__(self, url: str, storage_options: dict[str, Any]) -> None:
        self._fs, self._path = fileio.filesystem(url, storage_options)

    def read(self, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        starts = [a for a, _ in ranges]
        stops = [b for _, b in ranges]
        out = self._fs.cat_ranges([self._path] * len(ranges), starts, stops)
        for data, start, stop in zip(out, starts, stops, strict=True):
            if isinstance(data, Exception):
                raise data
            if len(data) != stop - start:
                raise OSError(f"object ends at byte {start + len(data)}, tile data runs to {stop}")
        return list(out)

    def close(self) -> None:
        pass
