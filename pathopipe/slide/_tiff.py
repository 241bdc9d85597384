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

Regions shrunk by 2, 4 or 8 (``read_regions_downscaled``) decode JPEG source tiles directly at
that scale (libjpeg-turbo's DCT scaling, through simplejpeg): the entropy decoding is the same,
the inverse DCT and colour conversion run on a quarter (or less) of the pixels, and the region
is assembled at the output resolution. The result differs from averaging the full-resolution
pixels (INTER_AREA) by a mean under 0.5 grey levels (tests/slide/test_downscaled.py has the
tolerance): a different low-pass filter, not an error.
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Sequence
from dataclasses import replace

import numpy as np
from pydantic import Field

from pathopipe import fileio
from pathopipe._process import decode_pool
from pathopipe.slide._base import BACKGROUND_VALUE, SlideReader, info_from_handle
from pathopipe.slide._byte_sources import FsspecBytes, LocalBytes, coalesce
from pathopipe.slide._registry import RemoteOptions, slide_backends
from pathopipe.slide._tiff_jpeg import (
    DCT_FACTORS,
    decode_jpeg_scaled,
    have_simplejpeg,
)
from pathopipe.slide._tiff_levels import Geometry, Level, read_level
from pathopipe.slide._tile_cache import shared_cache
from pathopipe.slide.resolution import ome_resolution

# TIFF compression codes decoded here; anything else falls back to another backend
VENDORS = (None, "generic", "aperio", "ome")  # vendor names whose levels match OpenSlide's (ome: ours)
DEFAULT_CACHE_MB = 256


class TiffOptions(RemoteOptions):
    """Options of the tiff backend."""

    cache_mb: float = Field(
        DEFAULT_CACHE_MB, gt=0, description="the process-wide decoded-tile LRU it uses (MiB)"
    )
    threads: int = Field(0, ge=0, description="decode threads for batch reads (0: min(4, CPUs))")


def default_threads() -> int:
    return max(1, min(4, os.cpu_count() or 1))


# tifffile's flags of TIFF vendors this reader leaves to OpenSlide (OME-TIFF: read by no backend yet)
OTHER_VENDORS = {"ndpi": "a Hamamatsu NDPI", "philips": "a Philips TIFF", "scn": "a Leica SCN",
                 "bif": "a Ventana BIF", "qpi": "a PerkinElmer QPI"}  # fmt: skip


def _refuse_other_vendors(path: str) -> None:
    """Refuse a local TIFF of a vendor this reader leaves to others, from its first page."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        found = [name for name in OTHER_VENDORS if getattr(tif, f"is_{name}", False)]
    if found:
        raise ValueError(f"{OTHER_VENDORS[found[0]]} file, which this reader leaves to the others")


@slide_backends.register(
    "tiff",
    description="source-tile reader for TIFF pyramids (Aperio, generic): each tile decoded once",
    priority=10,  # first: fast, and exact for the pyramids it accepts (others go on to openslide)
    urls=True,
    options=TiffOptions,
)
class TiffTileReader(SlideReader):
    """Reads regions from the source tiles of a TIFF pyramid (options: :class:`TiffOptions`)."""

    backend = "tiff"

    def __init__(self, path: str, *, options: TiffOptions | None = None) -> None:
        import tiffslide

        options = options or TiffOptions()
        cache_mb = options.cache_mb
        self.threads = options.threads or default_threads()
        storage_options, block_size = dict(options.storage_options), options.block_size
        remote = fileio.is_url(path)
        if not remote:
            _refuse_other_vendors(path)  # before tiffslide parses (and warns about) what it left partial
        # over a URL the header is parsed through a block cache; tile bytes are read below
        self._file = fileio.open_file(path, storage_options, block_size=block_size) if remote else None
        try:
            self._slide = tiffslide.TiffSlide(self._file or path)
        except Exception:
            if self._file is not None:
                self._file.close()
            raise
        try:
            props = dict(self._slide.properties)
            tif = self._slide.ts_tifffile
            if (
                tif.is_ome
            ):  # brightfield OME-TIFF pyramids (SubIFDs): the OME pixel size is the vendor's field
                props |= ome_resolution(tif.ome_metadata)
            vendor = props.get("tiffslide.vendor")
            if vendor not in VENDORS:
                raise ValueError(f"vendor {vendor!r} is left to openslide (here: aperio, generic TIFF)")
            if props.get("tiffslide.series-axes") != "YXS":
                raise ValueError(f"image axes {props.get('tiffslide.series-axes')!r} (need RGB pages, YXS)")
            series = self._slide.ts_tifffile.series[props["tiffslide.series-index"]]
            self._levels = tuple(read_level(series, i) for i in range(len(series.levels)))
            info = info_from_handle(path, self.backend, self._slide, props, "tiffslide")
            info = replace(info, vendor=info.vendor or "generic-tiff")  # OpenSlide's name for it
            if tif.is_ome and info.mpp is None:
                found = f"; {info.mpp_rejected}" if info.mpp_rejected else ""
                info = replace(info, mpp_rejected=f"an OME-TIFF without PhysicalSizeX/Y{found}")
            self._bytes = FsspecBytes(path, storage_options) if remote else LocalBytes(path)
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
        self._methods: dict[tuple[int, int], str] = {}  # (level, factor) -> downscale method

    # -- geometry --------------------------------------------------------------------------

    def _level_origin(self, location: tuple[int, int], level: int) -> tuple[int, int]:
        """Level pixel of a level-0 location: exact on level 0, nearest pixel elsewhere."""
        x, y = int(location[0]), int(location[1])
        if level == 0:
            return x, y
        ds = self.info.level_downsamples[level]
        return round(x / ds), round(y / ds)

    def _tiles_of(self, lv: Level | Geometry, x: int, y: int, w: int, h: int) -> list[int]:
        x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, lv.width), min(y + h, lv.height)
        if x0 >= x1 or y0 >= y1:
            return []
        tx0, tx1 = x0 // lv.tile_width, (x1 - 1) // lv.tile_width
        ty0, ty1 = y0 // lv.tile_height, (y1 - 1) // lv.tile_height
        return [ty * lv.across + tx for ty in range(ty0, ty1 + 1) for tx in range(tx0, tx1 + 1)]

    # -- decoding --------------------------------------------------------------------------

    def _cache_key(self, level: int, index: int, factor: int = 1) -> Hashable:
        return (self._key, level, index) if factor == 1 else (self._key, level, index, factor)

    def _decode_one(
        self, lv: Level, index: int, data: bytes, out: np.ndarray | None, factor: int = 1
    ) -> np.ndarray:
        shape = (lv.tile_height // factor, lv.tile_width // factor, 3)
        try:
            if factor > 1:
                tile = decode_jpeg_scaled(lv.jpeg_prefix, data, shape, out)
            elif lv.jpeg_colorspaces is not None:
                import imagecodecs

                colorspace, outcolorspace = lv.jpeg_colorspaces
                tile = imagecodecs.jpeg8_decode(data, tables=lv.jpegtables, colorspace=colorspace,
                                                outcolorspace=outcolorspace, out=out)  # fmt: skip
            else:
                segment = lv.decode(data, index, jpegtables=lv.jpegtables)[0]
                tile = segment.reshape(segment.shape[-3:]) if segment is not None else None  # type: ignore[assignment]
        except Exception as err:
            raise ValueError(
                f"source tile {index} (offset {int(lv.offsets[index])}, {len(data)} bytes) does not "
                f"decode: {type(err).__name__}: {err}"
            ) from err
        if tile is None or tile.shape != shape or tile.dtype != np.uint8:
            got = "nothing" if tile is None else f"{tile.shape} {tile.dtype}"
            raise ValueError(f"source tile {index} decoded to {got}, expected {shape} uint8")
        return tile

    def _white_tile(self, shape: tuple[int, int]) -> np.ndarray:
        tile = self._white.get(shape)
        if tile is None:
            tile = self._white[shape] = np.full((*shape, 3), BACKGROUND_VALUE, np.uint8)
        return tile

    def _ensure(
        self,
        level: int,
        indices: Sequence[int],
        direct: dict[int, np.ndarray] | None = None,
        factor: int = 1,
    ) -> None:
        """Read and decode the tiles of ``indices`` not in the cache (threads for several).

        Tiles in ``direct`` are decoded straight into the array given for them (a region that
        is exactly that tile and the only one needing it) instead of into the cache. With
        ``factor`` > 1 tiles are decoded at 1/factor scale (JPEG levels that allow it).
        """
        lv = self._levels[level]
        direct = direct or {}
        missing = [
            i
            for i in dict.fromkeys(indices)
            if i in direct or self.cache.get(self._cache_key(level, i, factor)) is None
        ]
        if not missing:
            return
        geometry = lv.geometry(factor)
        present = [i for i in missing if lv.counts[i] > 0]
        for i in missing:
            if lv.counts[i] <= 0:  # a tile the scanner never wrote: background
                if i in direct:
                    direct[i].fill(BACKGROUND_VALUE)
                else:
                    white = self._white_tile((geometry.tile_height, geometry.tile_width))
                    self.cache.put(self._cache_key(level, i, factor), white, shared=True)
        if not present:
            return
        spans = [(int(lv.offsets[i]), int(lv.counts[i])) for i in present]
        reads = coalesce(spans)
        blocks = self._bytes.read([(start, stop) for start, stop, _ in reads])
        data: list[bytes] = [b""] * len(present)
        for (start, _stop, members), block in zip(reads, blocks, strict=True):
            view = memoryview(block)
            for m in members:
                begin = spans[m][0] - start
                data[m] = block if len(members) == 1 else view[begin : begin + spans[m][1]].tobytes()
        shape = (geometry.tile_height, geometry.tile_width, 3)
        # into the caller's array, or into an evicted tile's memory (fresh memory page-faults)
        buffers = [direct[i] if i in direct else self.cache.recycled(shape) for i in present]
        jobs = [(i, d, b, factor) for i, d, b in zip(present, data, buffers, strict=True)]
        if len(present) == 1 or self.threads == 1:
            tiles = [self._decode_one(lv, *job) for job in jobs]
        else:
            tiles = list(decode_pool(self.threads).map(lambda job: self._decode_one(lv, *job), jobs))
        self.decoded += len(present)
        for i, tile in zip(present, tiles, strict=True):
            if i in direct:
                if tile is not direct[i]:
                    direct[i][...] = tile
            else:
                self.cache.put(self._cache_key(level, i, factor), tile)

    def _paint(self, level: int, x: int, y: int, out: np.ndarray, factor: int = 1) -> None:
        """Copy the pixels of the region at (x, y) of the level decoded at 1/factor into
        ``out`` (H, W, 3)."""
        lv = self._levels[level].geometry(factor)
        h, w = out.shape[:2]
        x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, lv.width), min(y + h, lv.height)
        if (x0, y0, x1, y1) != (x, y, x + w, y + h):
            out.fill(BACKGROUND_VALUE)
        if x0 >= x1 or y0 >= y1:
            return
        tw, th, across = lv.tile_width, lv.tile_height, lv.across
        prefix = (self._key, level)
        with self.cache.lock:  # no cached tile is recycled while it is copied from
            peek = self.cache.peek
            ty, sy = divmod(y0, th)
            while y0 < y1:
                rows = min(th - sy, y1 - y0)
                tx, sx = divmod(x0, tw)
                cx = x0
                while cx < x1:
                    cols = min(tw - sx, x1 - cx)
                    index = ty * across + tx
                    tile = peek((*prefix, index) if factor == 1 else (*prefix, index, factor))
                    if tile is None:  # evicted since planned (another thread, or a tiny cache)
                        self._ensure(level, [index], factor=factor)
                        tile = peek(self._cache_key(level, index, factor))
                    target = out[y0 - y : y0 - y + rows, cx - x : cx - x + cols]
                    target[...] = tile[sy : sy + rows, sx : sx + cols]  # type: ignore[index]
                    cx, tx, sx = cx + cols, tx + 1, 0
                y0, ty, sy = y0 + rows, ty + 1, 0

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
        origins = [self._level_origin(loc, level) for loc in locations]
        self._read_steps(level, origins, size, out, range(len(origins)))
        return out

    def _read_steps(
        self,
        level: int,
        origins: list[tuple[int, int]],
        size: tuple[int, int],
        out: np.ndarray,
        regions: Sequence[int],
        factor: int = 1,
    ) -> None:
        """Read ``regions`` (indices into ``origins`` and ``out``; origins and size in pixels of
        the level decoded at 1/factor) in steps whose source tiles fit a share of the cache."""
        lv = self._levels[level]
        geometry = lv.geometry(factor)
        region_tiles = {i: self._tiles_of(geometry, *origins[i], *size) for i in regions}
        tile_bytes = geometry.tile_width * geometry.tile_height * 3
        budget = max(1, self.cache.limit // 4 // tile_bytes)  # tiles per step (threads share the cache)
        start = 0
        while start < len(regions):
            uses: dict[int, int] = {}  # source tile -> regions of this step needing it
            stop = start
            while stop < len(regions):
                more = region_tiles[regions[stop]]
                if stop > start and len(uses) + len(more) > budget:
                    break
                for t in more:
                    uses[t] = uses.get(t, 0) + 1
                stop += 1
            step = regions[start:stop]
            direct = {}
            if factor == 1:
                direct = self._direct_regions(level, origins, size, region_tiles, step, uses, out)
            self._ensure(level, list(uses), {tile: out[i] for tile, i in direct.items()}, factor)
            painted = set(direct.values())
            for i in step:
                if i not in painted:
                    self._paint(level, *origins[i], out[i], factor)
            start = stop

    def _direct_regions(
        self,
        level: int,
        origins: list[tuple[int, int]],
        size: tuple[int, int],
        region_tiles: dict[int, list[int]],
        step: Sequence[int],
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
                if uses[tile] == 1 and self._cache_key(level, tile) not in self.cache:
                    direct[tile] = i
        return direct

    # -- downscaled reads ------------------------------------------------------------------

    def downscale_method(self, level: int, factor: int) -> str:
        """ "jpeg-dct" where the level's tiles decode at 1/factor exactly as they do whole (checked
        once per level on a real tile: colour space and tables included), else "area"."""
        key = (level, factor)
        method = self._methods.get(key)
        if method is None:
            method = self._methods[key] = "jpeg-dct" if self._dct_decodes(level, factor) else "area"
        return method

    def _dct_decodes(self, level: int, factor: int) -> bool:
        lv = self._levels[level]
        if factor not in DCT_FACTORS or lv.tile_width % factor or lv.tile_height % factor:
            return False
        if lv.jpeg_prefix is None or not have_simplejpeg():
            return False
        written = np.flatnonzero(lv.counts > 0)
        if len(written) == 0:
            return False
        index = int(written[np.argmax(lv.counts[written[:64]])])  # a tile with content
        try:  # a read or decode failure here surfaces, with the slide named, when tiles are read
            data = self._bytes.read([(int(lv.offsets[index]), int(lv.offsets[index] + lv.counts[index]))])[0]
            whole = decode_jpeg_scaled(lv.jpeg_prefix, data, (lv.tile_height, lv.tile_width, 3), None)
            scaled = decode_jpeg_scaled(lv.jpeg_prefix, data, lv.geometry(factor).tile_shape(), None)
            reference = self._decode_one(lv, index, data, None)
        except Exception:  # noqa: BLE001 - any decoder complaint: this level is averaged instead
            return False
        return scaled.shape == lv.geometry(factor).tile_shape() and np.array_equal(whole, reference)

    def _read_regions_downscaled(
        self, locations: np.ndarray, level: int, size: tuple[int, int], factor: int, out: np.ndarray
    ) -> np.ndarray:
        if self.downscale_method(level, factor) != "jpeg-dct":
            return super()._read_regions_downscaled(locations, level, size, factor, out)
        lv = self._levels[level]
        origins = [self._level_origin(loc, level) for loc in locations]
        # regions on the scaled pixel grid and inside the level's whole scaled pixels
        inside_x, inside_y = lv.width // factor * factor, lv.height // factor * factor
        scaled: list[int] = []
        whole: list[int] = []
        for i, (x, y) in enumerate(origins):
            on_grid = x >= 0 and y >= 0 and x % factor == 0 and y % factor == 0
            (scaled if on_grid and x + size[0] <= inside_x and y + size[1] <= inside_y else whole).append(i)
        if scaled:
            small = [(x // factor, y // factor) for x, y in origins]
            self._read_steps(level, small, (size[0] // factor, size[1] // factor), out, scaled, factor)
        if whole:  # regions crossing the border (edge="pad") or off the grid: full size, averaged
            part = super()._read_regions_downscaled(locations[whole], level, size, factor, out[whole])
            out[whole] = part
        return out

    def close(self) -> None:  # decoded tiles stay in the process cache for the next reader
        self._bytes.close()
        self._slide.close()
        if self._file is not None:
            self._file.close()
