"""Write a synthetic scene as a pyramidal, tiled, JPEG-compressed TIFF (Aperio SVS or generic)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import cv2
import imagecodecs
import numpy as np
import tifffile

from pathopipe.testing._scene import FIELD_DOWNSAMPLE, TissueScene

Layout = Literal["aperio", "generic"]
APERIO_HEADER = "Aperio Image Library v12.0.15 \r\n"

_worker_scene: TissueScene | None = None


@dataclass(frozen=True)
class SyntheticSlide:
    """What was written, with the ground truth that tests check against."""

    path: Path
    width: int
    height: int
    mpp: float | None
    tile_size: int
    level_dimensions: tuple[tuple[int, int], ...]
    truth_mask: np.ndarray  # bool, one pixel per `truth_downsample` level-0 pixels
    truth_downsample: int


def _encode(tile: np.ndarray, quality: int) -> bytes:
    # RGB-coded JPEG (Adobe marker, no YCbCr transform), as Aperio writes it: OpenSlide
    # decodes tiles by the TIFF Photometric tag, which is RGB.
    return bytes(imagecodecs.jpeg8_encode(tile, level=quality, colorspace="RGB", outcolorspace="RGB"))


def _init_worker(scene: TissueScene) -> None:
    global _worker_scene
    _worker_scene = scene


def _render_row(args: tuple[int, int, int, int, int]) -> tuple[list[bytes], np.ndarray]:
    row, n_cols, tile, quality, first_downsample = args
    assert _worker_scene is not None
    # render in blocks: OpenCV's remap takes images narrower than 32767 px
    block = max(1, 4096 // tile)
    strip = np.concatenate(
        [
            _worker_scene.render(c * tile, row * tile, min(block, n_cols - c) * tile, tile)
            for c in range(0, n_cols, block)
        ],
        axis=1,
    )
    encoded = [
        _encode(np.ascontiguousarray(strip[:, i * tile : (i + 1) * tile]), quality) for i in range(n_cols)
    ]
    small = cv2.resize(
        strip,
        (strip.shape[1] // first_downsample, tile // first_downsample),
        interpolation=cv2.INTER_AREA,
    )
    return encoded, small


class _InlineExecutor(Executor):
    def map(
        self,
        fn: Callable[..., Any],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
    ) -> Iterator[Any]:
        return map(fn, *iterables)


def _tiles_of(image: np.ndarray, tile: int, quality: int) -> Iterator[bytes]:
    h, w = image.shape[:2]
    for y in range(0, h, tile):
        for x in range(0, w, tile):
            block = image[y : y + tile, x : x + tile]
            if block.shape[:2] != (tile, tile):
                padded = np.zeros((tile, tile, 3), dtype=np.uint8)
                padded[: block.shape[0], : block.shape[1]] = block
                block = padded
            yield _encode(np.ascontiguousarray(block), quality)


def write_synthetic_slide(
    path: str | os.PathLike[str],
    *,
    width: int,
    height: int,
    mpp: float | None = 0.25,
    objective_power: int | None = None,
    tile_size: int = 256,
    downsamples: Sequence[int] = (4, 16),
    layout: Layout = "aperio",
    islands: int | None = None,
    seed: int = 0,
    jpeg_quality: int = 90,
    workers: int | None = None,
) -> SyntheticSlide:
    """Write a realistic synthetic whole-slide image, tile by tile.

    ``islands=0`` makes a blank slide (background only); ``mpp=None`` omits resolution
    metadata; ``layout="generic"`` writes a plain pyramidal TIFF without Aperio metadata.
    Level ``k`` has size ``level0 // downsamples[k-1]``, so sizes that are not multiples of
    the downsample give the non-integer downsamples real scanners produce. Memory stays
    bounded by one row of tiles plus the first reduced level, kept in a temporary memmap.
    """
    path = Path(path)
    if layout not in ("aperio", "generic"):
        raise ValueError(f"layout must be 'aperio' or 'generic', not {layout!r}")
    ds = list(downsamples)
    steps_ok = all(b > a and b % a == 0 for a, b in zip([1, *ds], ds, strict=False))
    if not steps_ok or (ds and (tile_size % ds[0] or tile_size % (ds[-1] // ds[0] if len(ds) > 1 else 1))):
        raise ValueError(f"downsamples must be increasing multiples of each other, got {ds}")
    scene = TissueScene.create(width, height, seed=seed, islands=islands)
    if objective_power is None and mpp is not None:
        objective_power = max(1, round(10.0 / mpp))
    n_cols = -(-width // tile_size)
    n_rows = -(-height // tile_size)
    level_dims = [(width, height)] + [(max(1, width // d), max(1, height // d)) for d in ds]
    workers = workers if workers is not None else min(4, os.cpu_count() or 1)
    bigtiff = width * height * 3 // 8 > 2**31
    path.parent.mkdir(parents=True, exist_ok=True)

    tiff_opts: dict[str, Any] = {"photometric": "rgb", "metadata": None}
    if layout == "generic" and mpp is not None:
        tiff_opts |= {"resolution": (1e4 / mpp, 1e4 / mpp), "resolutionunit": "CENTIMETER"}

    def description(level: int) -> str | None:
        if layout != "aperio":
            return None
        w, h = level_dims[level]
        head = f"{APERIO_HEADER}{width}x{height} [0,0 {width}x{height}] ({tile_size}x{tile_size})"
        if level:
            return f"{head} -> {w}x{h} JPEG/RGB Q={jpeg_quality}"
        fields = [f"{head} JPEG/RGB Q={jpeg_quality}"]
        if objective_power is not None:
            fields.append(f"AppMag = {objective_power}")
        fields += ["StripeWidth = 2040", "ScanScope ID = SYNTH", f"Filename = {path.stem}"]
        fields += ["Date = 11/28/26", "Time = 12:00:00", "User = pathopipe-synthetic"]
        if mpp is not None:
            fields.append(f"MPP = {mpp:.4f}")
        return "|".join(fields)

    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".synthetic-") as tmp:
        reduced: np.ndarray | None = None
        if ds:
            reduced = np.lib.format.open_memmap(
                Path(tmp) / "level1.npy",
                mode="w+",
                dtype=np.uint8,
                shape=(n_rows * tile_size // ds[0], n_cols * tile_size // ds[0], 3),
            )
        executor: Executor
        if workers > 1:
            executor = ProcessPoolExecutor(workers, initializer=_init_worker, initargs=(scene,))
        else:
            _init_worker(scene)
            executor = _InlineExecutor()

        def level0_tiles() -> Iterator[bytes]:
            jobs = ((r, n_cols, tile_size, jpeg_quality, ds[0] if ds else 1) for r in range(n_rows))
            for row, (encoded, small) in enumerate(executor.map(_render_row, jobs, chunksize=2)):
                if reduced is not None:
                    step = tile_size // ds[0]
                    reduced[row * step : (row + 1) * step] = small
                yield from encoded

        partial = Path(tmp) / path.name  # renamed into place when complete: no half-written slides
        with executor, tifffile.TiffWriter(partial, bigtiff=bigtiff) as tif:
            common = dict(
                dtype=np.uint8,
                tile=(tile_size, tile_size),
                compression="jpeg",
                # keep Photometric=RGB: tifffile would otherwise tag the page YCbCr
                compressionargs={"outcolorspace": "RGB"},
                subsampling=(1, 1),
                **tiff_opts,
            )
            tif.write(level0_tiles(), shape=(height, width, 3), description=description(0), **common)
            levels: list[np.ndarray] = []
            if reduced is not None:
                current = np.asarray(reduced[: level_dims[1][1], : level_dims[1][0]])
                levels.append(current)
                for k in range(2, len(level_dims)):
                    factor = ds[k - 1] // ds[k - 2]
                    current = cv2.resize(
                        levels[-1][
                            : (levels[-1].shape[0] // factor) * factor,
                            : (levels[-1].shape[1] // factor) * factor,
                        ],
                        level_dims[k],
                        interpolation=cv2.INTER_AREA,
                    )
                    levels.append(current)
            if layout == "aperio":
                source = levels[-1] if levels else scene.render(0, 0, width, height)
                scale = min(1.0, 768 / max(source.shape[:2]))
                thumb = cv2.resize(
                    source,
                    (max(1, round(source.shape[1] * scale)), max(1, round(source.shape[0] * scale))),
                    interpolation=cv2.INTER_AREA,
                )
                thumb_desc = f"{APERIO_HEADER}{width}x{height} -> {thumb.shape[1]}x{thumb.shape[0]} - "
                tif.write(thumb, compression="zlib", subfiletype=0, description=thumb_desc, **tiff_opts)
            for k, image in enumerate(levels, start=1):
                tif.write(
                    _tiles_of(image, tile_size, jpeg_quality),
                    shape=image.shape,
                    description=description(k),
                    subfiletype=0 if layout == "aperio" else 1,
                    **common,
                )
        os.replace(partial, path)
    return SyntheticSlide(
        path=path,
        width=width,
        height=height,
        mpp=mpp,
        tile_size=tile_size,
        level_dimensions=tuple(level_dims),
        truth_mask=scene.truth_mask(),
        truth_downsample=FIELD_DOWNSAMPLE,
    )
