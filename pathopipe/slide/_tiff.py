"""Source-tile backend for TIFF pyramids (Aperio SVS, generic tiled TIFF).

A region is assembled from the source tiles it covers: their bytes come from one positioned
read each (neighbours coalesced into one read), tifffile's decoder for the page turns them into
pixels (imagecodecs: JPEG with its tables and colour space, LZW, deflate, raw), and decoded tiles
are kept in a bounded LRU so that output tiles sharing a source tile decode it once. Batch reads
plan the source tiles of many regions at once and decode them on threads (imagecodecs releases
the GIL).

Positions on levels with a non-integer downsample are rounded to the nearest level pixel;
OpenSlide instead resamples the region by the fraction of a pixel (bilinear), so there the two
differ by that sub-pixel shift. Everywhere else the pixels are identical to OpenSlide's.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from pathopipe import storage
from pathopipe.slide._base import BACKGROUND_VALUE, SlideReader, info_from_handle
from pathopipe.slide._registry import slide_backends

# TIFF compression codes decoded here; anything else falls back to another backend
COMPRESSIONS = {1: "none", 5: "lzw", 7: "jpeg", 8: "deflate", 32946: "deflate"}
PHOTOMETRICS = {2: "rgb", 6: "ycbcr"}  # ycbcr only inside JPEG, where the decoder converts it
VENDORS = (None, "generic", "aperio")  # tiffslide's vendor names whose levels match OpenSlide's
DEFAULT_CACHE_MB = 128
COALESCE_GAP = 64 << 10  # merge reads of tiles less than this many bytes apart
COALESCE_MAX = 16 << 20

_pools: dict[int, ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()


def _decode_pool(threads: int) -> ThreadPoolExecutor:
    """A process-wide pool per size, made on first use (in the worker process that decodes)."""
    with _pools_lock:
        pool = _pools.get(threads)
        if pool is None:
            pool = _pools[threads] = ThreadPoolExecutor(threads, thread_name_prefix="pathopipe-tiff")
        return pool


def default_threads() -> int:
    return max(1, min(4, os.cpu_count() or 1))


@dataclass(frozen=True)
class _Level:
    """Where one pyramid level's source tiles are and how to decode them."""

    width: int
    height: int
    tile_width: int
    tile_height: int
    across: int
    offsets: np.ndarray
    counts: np.ndarray
    decode: Callable[..., Any]
    jpegtables: bytes | None
    jpeg_colorspaces: tuple[Any, Any] | None  # (colorspace, outcolorspace) when JPEG


def _check_page(page: Any, level: int) -> None:
    """Refuse layouts this backend does not decode exactly (another backend then opens the slide)."""
    problems = []
    if not page.is_tiled:
        problems.append("not tiled (stripped pages)")
    if page.compression not in COMPRESSIONS:
        problems.append(f"compression {int(page.compression)} (supported: {sorted(COMPRESSIONS)})")
    if page.photometric not in PHOTOMETRICS or (page.photometric == 6 and page.compression != 7):
        problems.append(f"photometric {int(page.photometric)} with compression {int(page.compression)}")
    if page.samplesperpixel != 3 or page.bitspersample != 8 or page.planarconfig != 1:
        problems.append(
            f"{page.samplesperpixel} samples of {page.bitspersample} bits, planar config "
            f"{int(page.planarconfig)} (need 3 x 8-bit interleaved RGB)"
        )
    if getattr(page, "imagedepth", 1) != 1:
        problems.append("volumetric tiles")
    if problems:
        raise ValueError(f"level {level}: " + "; ".join(problems))


def _jpeg_colorspaces(page: Any) -> tuple[Any, Any] | None:
    """JPEG colour spaces exactly as tifffile decodes the page (Aperio's RGB-tagged JPEG included),
    so that JPEG tiles can be decoded straight into recycled buffers."""
    if page.compression != 7:
        return None
    try:
        from tifffile.tifffile import jpeg_decode_colorspace
    except ImportError:  # tifffile moved it: decode through page.decode instead
        return None
    photometric, planar = int(page.photometric), int(page.planarconfig)
    return jpeg_decode_colorspace(photometric, planar, page.extrasamples, page.is_jfif)


def _coalesce(spans: Sequence[tuple[int, int]]) -> list[tuple[int, int, list[int]]]:
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


class _LocalBytes:
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
        return out

    def close(self) -> None:
        os.close(self._fd)


class _FsspecBytes:
    """Range reads over fsspec (object storage: concurrent requests where the filesystem can)."""

    def __init__(self, url: str, storage_options: dict[str, Any]) -> None:
        self._fs, self._path = storage.filesystem(url, storage_options)

    def read(self, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        starts = [a for a, _ in ranges]
        stops = [b for _, b in ranges]
        out = self._fs.cat_ranges([self._path] * len(ranges), starts, stops)
        for data, start, stop in zip(out, starts, stops, strict=True):
            if isinstance(data, Exception):
                raise data
            if len(data) != stop - start:
                raise OSError(f"object ends at byte {start + len(data)}, tile data runs to {stop}")
        return out

    def close(self) -> None:
        pass


class TileCache:
    """Decoded source tiles, least recently used first out, bounded in bytes; thread-safe.

    One cache per worker process (per size) is shared by every reader, so memory is bounded per
    process whatever the number of threads and open slides. Evicted tiles' arrays are kept (a
    few) for the next decodes to write into: fresh memory costs a page fault per 4 KiB on first
    touch, about as much as decoding the tile. Readers copy out of cached tiles while holding
    ``lock``, so a recycled array is never still being read.
    """

    def __init__(self, max_bytes: int, *, keep_free: int = 64) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self.lock = threading.RLock()
        self._tiles: OrderedDict[Hashable, np.ndarray] = OrderedDict()
        self._free: list[np.ndarray] = []
        self._keep_free = keep_free
        self._shared: set[int] = set()  # ids of arrays shared between keys (never recycled)

    def get(self, key: Hashable) -> np.ndarray | None:
        with self.lock:
            tile = self._tiles.get(key)
            if tile is not None:
                self._tiles.move_to_end(key)
            return tile

    def __contains__(self, key: Hashable) -> bool:
        with self.lock:
            return key in self._tiles

    def put(self, key: Hashable, tile: np.ndarray, *, shared: bool = False) -> None:
        with self.lock:
            if shared:
                self._shared.add(id(tile))
            old = self._tiles.pop(key, None)
            if old is not None:
                self.bytes -= old.nbytes
            self._tiles[key] = tile
            self.bytes += tile.nbytes
            while self.bytes > self.max_bytes and len(self._tiles) > 1:
                _, dropped = self._tiles.popitem(last=False)
                self.bytes -= dropped.nbytes
                if len(self._free) < self._keep_free and id(dropped) not in self._shared:
                    self._free.append(dropped)

    def recycled(self, shape: tuple[int, ...]) -> np.ndarray | None:
        """An evicted tile's array of ``shape`` to decode into, if one is free."""
        with self.lock:
            for i in range(len(self._free) - 1, -1, -1):
                if self._free[i].shape == shape:
                    return self._free.pop(i)
            return None

    def clear(self) -> None:
        with self.lock:
            self._tiles.clear()
            self._free.clear()
            self.bytes = 0


_caches: dict[int, TileCache] = {}


def clear_caches() -> None:
    """Forget every decoded tile of this process (tests; freeing memory)."""
    with _pools_lock:
        for cache in _caches.values():
            cache.clear()


def shared_cache(max_bytes: int) -> TileCache:
    """This process's tile cache of ``max_bytes`` (made on first use, in the worker)."""
    with _pools_lock:
        cache = _caches.get(max_bytes)
        if cache is None:
            cache = _caches[max_bytes] = TileCache(max_bytes)
        return cache


@slide_backends.register(
    "tiff", description="source-tile reader for TIFF pyramids (Aperio, generic): each tile decoded once"
)
class TiffTileReader(SlideReader):
    """Options: ``cache_mb`` (the process-wide decoded-tile LRU this reader uses, default 128),
    ``threads`` (decode threads for batch reads, default min(4, CPUs)), ``storage_options``
    (fsspec, for URLs)."""

    backend = "tiff"

    def __init__(self, path: str, *, options: dict[str, Any] | None = None) -> None:
        import tiffslide

        options = dict(options or {})
        cache_mb = float(options.pop("cache_mb", DEFAULT_CACHE_MB))
        self.threads = int(options.pop("threads", 0)) or default_threads()
        storage_options = dict(options.pop("storage_options", None) or {})
        block_size = int(options.pop("block_size", 1 << 20))
        if options:
            allowed = "cache_mb, threads, storage_options, block_size"
            raise TypeError(f"unknown tiff backend options {sorted(options)}; allowed: {allowed}")
        remote = storage.is_url(path)
        # over a URL the header is parsed through a block cache; tile bytes are read below
        self._file = storage.open_file(path, storage_options, block_size=block_size) if remote else None
        try:
            self._slide = tiffslide.TiffSlide(self._file or path)
        except Exception:
            if self._file is not None:
                self._file.close()
            raise
        try:
            props = dict(self._slide.properties)
            vendor = props.get("tiffslide.vendor")
            if vendor not in VENDORS:
                raise ValueError(f"vendor {vendor!r} is left to openslide (here: aperio, generic TIFF)")
            if props.get("tiffslide.series-axes") != "YXS":
                raise ValueError(f"image axes {props.get('tiffslide.series-axes')!r} (need RGB pages, YXS)")
            series = self._slide.ts_tifffile.series[props["tiffslide.series-index"]]
            self._levels = tuple(self._level(series, i) for i in range(len(series.levels)))
            info = info_from_handle(path, self.backend, self._slide, props, "tiffslide")
            info = replace(info, vendor=info.vendor or "generic-tiff")  # OpenSlide's name for it
            self._bytes = _FsspecBytes(path, storage_options) if remote else _LocalBytes(path)
        except Exception:
            self._slide.close()
            if self._file is not None:
                self._file.close()
            raise
        super().__init__(path, info)
        self.cache = shared_cache(int(cache_mb * (1 << 20)))
        # cache keys: this file as it is now (a rewritten file gets new keys), level, tile index
        stamp = None if remote else os.stat(path).st_mtime_ns
        self._key = (path, stamp)
        self.decoded = 0  # source tiles this reader decoded (into the cache or an output)
        self._white: dict[tuple[int, int], np.ndarray] = {}

    @staticmethod
    def _level(series: Any, index: int) -> _Level:
        level = series.levels[index]
        if len(level.pages) != 1:
            raise ValueError(f"level {index} has {len(level.pages)} pages (need one page per level)")
        page = level.pages[0]
        _check_page(page, index)
        return _Level(
            width=int(page.imagewidth),
            height=int(page.imagelength),
            tile_width=int(page.tilewidth),
            tile_height=int(page.tilelength),
            across=-(-int(page.imagewidth) // int(page.tilewidth)),
            offsets=np.asarray(page.dataoffsets, dtype=np.int64),
            counts=np.asarray(page.databytecounts, dtype=np.int64),
            decode=page.decode,
            jpegtables=page.jpegtables,
            jpeg_colorspaces=_jpeg_colorspaces(page),
        )

    # -- geometry --------------------------------------------------------------------------

    def _level_origin(self, location: tuple[int, int], level: int) -> tuple[int, int]:
        """Level pixel of a level-0 location: exact on level 0, nearest pixel elsewhere."""
        x, y = int(location[0]), int(location[1])
        if level == 0:
            return x, y
        ds = self.info.level_downsamples[level]
        return round(x / ds), round(y / ds)

    def _tiles_of(self, lv: _Level, x: int, y: int, w: int, h: int) -> range | list[int]:
        x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, lv.width), min(y + h, lv.height)
        if x0 >= x1 or y0 >= y1:
            return []
        tx0, tx1 = x0 // lv.tile_width, (x1 - 1) // lv.tile_width
        ty0, ty1 = y0 // lv.tile_height, (y1 - 1) // lv.tile_height
        return [ty * lv.across + tx for ty in range(ty0, ty1 + 1) for tx in range(tx0, tx1 + 1)]

    # -- decoding --------------------------------------------------------------------------

    def _decode_one(self, lv: _Level, index: int, data: bytes, out: np.ndarray | None) -> np.ndarray:
        try:
            if lv.jpeg_colorspaces is not None:
                import imagecodecs

                colorspace, outcolorspace = lv.jpeg_colorspaces
                tile = imagecodecs.jpeg8_decode(data, tables=lv.jpegtables, colorspace=colorspace,
                                                outcolorspace=outcolorspace, out=out)  # fmt: skip
            else:
                segment = lv.decode(data, index, jpegtables=lv.jpegtables)[0]
                tile = segment.reshape(segment.shape[-3:]) if segment is not None else None
        except Exception as err:
            raise ValueError(
                f"source tile {index} (offset {int(lv.offsets[index])}, {len(data)} bytes) does not "
                f"decode: {type(err).__name__}: {err}"
            ) from err
        if tile is None or tile.shape != (lv.tile_height, lv.tile_width, 3) or tile.dtype != np.uint8:
            got = "nothing" if tile is None else f"{tile.shape} {tile.dtype}"
            raise ValueError(
                f"source tile {index} decoded to {got}, expected ({lv.tile_height}, {lv.tile_width}, 3) uint8"
            )
        return tile

    def _white_tile(self, lv: _Level) -> np.ndarray:
        key = (lv.tile_height, lv.tile_width)
        tile = self._white.get(key)
        if tile is None:
            tile = self._white[key] = np.full((*key, 3), BACKGROUND_VALUE, np.uint8)
        return tile

    def _ensure(
        self, level: int, indices: Sequence[int], direct: dict[int, np.ndarray] | None = None
    ) -> None:
        """Read and decode the tiles of ``indices`` not in the cache (threads for several).

        Tiles in ``direct`` are decoded straight into the array given for them (a region that
        is exactly that tile and the only one needing it) instead of into the cache.
        """
        lv = self._levels[level]
        direct = direct or {}
        missing = [
            i for i in dict.fromkeys(indices) if i in direct or self.cache.get((self._key, level, i)) is None
        ]
        if not missing:
            return
        present = [i for i in missing if lv.counts[i] > 0]
        for i in missing:
            if lv.counts[i] <= 0:  # a tile the scanner never wrote: background
                if i in direct:
                    direct[i].fill(BACKGROUND_VALUE)
                else:
                    self.cache.put((self._key, level, i), self._white_tile(lv), shared=True)
        if not present:
            return
        spans = [(int(lv.offsets[i]), int(lv.counts[i])) for i in present]
        reads = _coalesce(spans)
        blocks = self._bytes.read([(start, stop) for start, stop, _ in reads])
        data: list[bytes] = [b""] * len(present)
        for (start, _stop, members), block in zip(reads, blocks, strict=True):
            view = memoryview(block)
            for m in members:
                begin = spans[m][0] - start
                data[m] = block if len(members) == 1 else view[begin : begin + spans[m][1]].tobytes()
        shape = (lv.tile_height, lv.tile_width, 3)
        # into the caller's array, or into an evicted tile's memory (fresh memory page-faults)
        buffers = [direct[i] if i in direct else self.cache.recycled(shape) for i in present]
        jobs = list(zip(present, data, buffers, strict=True))
        if len(present) == 1 or self.threads == 1:
            tiles = [self._decode_one(lv, *job) for job in jobs]
        else:
            tiles = list(_decode_pool(self.threads).map(lambda job: self._decode_one(lv, *job), jobs))
        self.decoded += len(present)
        for i, tile in zip(present, tiles, strict=True):
            if i in direct:
                if tile is not direct[i]:
                    direct[i][...] = tile
            else:
                self.cache.put((self._key, level, i), tile)

    def _paint(self, level: int, x: int, y: int, out: np.ndarray) -> None:
        """Copy the level's pixels of the region at level pixel (x, y) into ``out`` (H, W, 3)."""
        lv = self._levels[level]
        h, w = out.shape[:2]
        x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, lv.width), min(y + h, lv.height)
        if (x0, y0, x1, y1) != (x, y, x + w, y + h):
            out.fill(BACKGROUND_VALUE)
        if x0 >= x1 or y0 >= y1:
            return
        tw, th = lv.tile_width, lv.tile_height
        with self.cache.lock:  # no cached tile is recycled while it is copied from
            for ty in range(y0 // th, (y1 - 1) // th + 1):
                sy0, sy1 = max(y0, ty * th), min(y1, (ty + 1) * th)
                for tx in range(x0 // tw, (x1 - 1) // tw + 1):
                    sx0, sx1 = max(x0, tx * tw), min(x1, (tx + 1) * tw)
                    key = (self._key, level, ty * lv.across + tx)
                    tile = self.cache.get(key)
                    if tile is None:  # evicted since planned (another thread, or a tiny cache)
                        self._ensure(level, [key[2]])
                        tile = self.cache.get(key)
                    out[sy0 - y : sy1 - y, sx0 - x : sx1 - x] = tile[  # type: ignore[index]
                        sy0 - ty * th : sy1 - ty * th, sx0 - tx * tw : sx1 - tx * tw
                    ]

    # -- SlideReader -----------------------------------------------------------------------

    def _read_region(
        self, location: tuple[int, int], level: int, size: tuple[int, int], out: np.ndarray | None
    ) -> np.ndarray:
        if out is None:
            out = np.empty((size[1], size[0], 3), dtype=np.uint8)
        x, y = self._level_origin(location, level)
        self._ensure(level, self._tiles_of(self._levels[level], x, y, *size))
        self._paint(level, x, y, out)
        return out

    def _read_regions(
        self, locations: np.ndarray, level: int, size: tuple[int, int], out: np.ndarray
    ) -> np.ndarray:
        lv = self._levels[level]
        origins = [self._level_origin(loc, level) for loc in locations]
        region_tiles = [self._tiles_of(lv, *origin, *size) for origin in origins]
        tile_bytes = lv.tile_width * lv.tile_height * 3
        budget = max(1, self.cache.max_bytes // 4 // tile_bytes)  # tiles per step (threads share the cache)
        start = 0
        while start < len(origins):
            uses: dict[int, int] = {}  # source tile -> regions of this step needing it
            stop = start
            while stop < len(origins):
                more = region_tiles[stop]
                if stop > start and len(uses) + len(more) > budget:
                    break
                for t in more:
                    uses[t] = uses.get(t, 0) + 1
                stop += 1
            direct = self._direct_regions(level, origins, size, region_tiles, range(start, stop), uses, out)
            self._ensure(level, list(uses), {tile: out[i] for tile, i in direct.items()})
            painted = set(direct.values())
            for i in range(start, stop):
                if i not in painted:
                    self._paint(level, *origins[i], out[i])
            start = stop
        return out

    def _direct_regions(
        self,
        level: int,
        origins: list[tuple[int, int]],
        size: tuple[int, int],
        region_tiles: list[Sequence[int]],
        step: range,
        uses: dict[int, int],
        out: np.ndarray,
    ) -> dict[int, int]:
        """Regions of ``step`` that are exactly one whole source tile, not cached and needed by
        no other region of the step: tile index -> region index (decoded straight into out)."""
        lv = self._levels[level]
        if size != (lv.tile_width, lv.tile_height) or not out[0].flags.c_contiguous:
            return {}
        direct: dict[int, int] = {}
        for i in step:
            x, y = origins[i]
            inside = x + size[0] <= lv.width and y + size[1] <= lv.height
            if x >= 0 and y >= 0 and x % lv.tile_width == 0 and y % lv.tile_height == 0 and inside:
                tile = region_tiles[i][0]
                if uses[tile] == 1 and (self._key, level, tile) not in self.cache:
                    direct[tile] = i
        return direct

    def close(self) -> None:  # decoded tiles stay in the process cache for the next reader
        self._bytes.close()
        self._slide.close()
        if self._file is not None:
            self._file.close()
