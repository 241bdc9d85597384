"""Slide access: one interface over every slide backend (``pathopipe backends`` lists them).

>>> with open_slide("slide.svs") as slide:          # doctest: +SKIP
...     tile = slide.read_region((0, 0), 0, (224, 224))
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping
from typing import Any

import cv2
import numpy as np

from pathopipe._process import lru_entry, thread_dict
from pathopipe.errors import ConfigError, SlideMetadataError, SlideOpenError
from pathopipe.fileio import is_url
from pathopipe.slide import _openslide as _openslide
from pathopipe.slide import _tiff as _tiff
from pathopipe.slide import _tiffslide as _tiffslide
from pathopipe.slide._base import SlideInfo, SlideReader
from pathopipe.slide._reasons import plain_reason
from pathopipe.slide._registry import auto_order, backend_options, slide_backends

__all__ = [
    "SlideInfo",
    "SlideReader",
    "cached_slide",
    "is_url",
    "list_backends",
    "open_slide",
    "read_downsampled",
    "require_mpp",
    "slide_backends",
]

logger = logging.getLogger(__name__)


def list_backends() -> list[str]:
    """Names of the registered slide backends."""
    return slide_backends.names()


def open_slide(
    path: str | os.PathLike[str],
    *,
    backend: str = "auto",
    assume_mpp: float | None = None,
    options: Mapping[str, Mapping[str, Any]] | None = None,
) -> SlideReader:
    """Open a slide with ``backend`` (``"auto"``: the first backend that opens it, by priority).

    ``assume_mpp`` is used only when the slide carries no resolution; it is then recorded
    as assumed. ``options`` maps a backend name to that backend's options, e.g.
    ``{"tiff": {"cache_mb": 64}}``. Raises :class:`SlideOpenError` naming the file and each
    backend's reason.
    """
    path = os.fspath(path)
    if path.startswith("file://"):
        path = path[len("file://") :]
    if not is_url(path):
        if not os.path.exists(path):
            raise SlideOpenError(path, {"file": "no such file"})
        if os.path.isdir(path):
            raise SlideOpenError(path, {"file": "is a directory, not a slide file"})
        if path.lower().endswith(".vsi"):
            raise SlideOpenError(path, {"format": VSI_REFUSAL})
        refused = _unsupported_samples(path)
        if refused:
            raise SlideOpenError(path, {"pixels": refused})
    remote = is_url(path)
    names = auto_order(url=remote) if backend == "auto" else [slide_backends.entry(backend).name]
    options = options or {}
    causes: dict[str, str] = {}
    for name in names:
        cls = slide_backends.get(name)
        try:
            reader = cls(path, options=backend_options(name, options.get(name)))  # type: ignore[call-arg]
        except ConfigError:
            raise
        except Exception as err:  # noqa: BLE001 - every backend failure is reported to the user
            causes[name] = plain_reason(err)
            continue
        if reader.info.mpp is None and assume_mpp is not None:
            reader.info = reader.info.with_assumed_mpp(float(assume_mpp))
        return reader
    raise SlideOpenError(path, causes)


SUPPORTED_SAMPLES = (1, 3, 4)  # gray, RGB, RGBA: brightfield images


VSI_REFUSAL = (
    "an Olympus VSI, whose TIFF page is only an overview (the image is in the .ets files of its "
    "_name_ folder, which no backend here reads): convert it to OME-TIFF (bfconvert -pyramid-resolutions ...)"
)
AXIS_NAMES = {"C": "channels", "Z": "z-planes", "T": "time points", "I": "images", "Q": "planes"}


def _unsupported_samples(path: str) -> str | None:
    """Why a TIFF's main image is not brightfield (a multi-channel fluorescence or multiplex
    image, a z-stack, a time series), else None.

    Checked before any backend opens the file, since some would read the first channels as
    RGB (or the first channel as gray). Files tifffile cannot parse are left to the backends,
    which report their own reason.
    """
    try:
        with open(path, "rb") as fh:
            if fh.read(4) not in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
                return None
        import tifffile

        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            samples = int(series.keyframe.samplesperpixel)
            axes, shape = str(series.axes), tuple(series.shape)
    except Exception:  # noqa: BLE001 - unparseable files are reported by the backends
        return None
    extra = [
        f"{n} {AXIS_NAMES.get(a, a)}" for a, n in zip(axes, shape, strict=False) if a not in "YXS" and n > 1
    ]
    if extra:
        return (
            f"an image of {', '.join(extra)} (axes {axes}): pathopipe tiles brightfield images (gray, RGB or "
            "RGBA), not multi-channel fluorescence, multiplex, z-stacks or time series"
        )
    if samples in SUPPORTED_SAMPLES:
        return None
    return (
        f"{samples} samples per pixel: pathopipe tiles brightfield images (gray, RGB or RGBA), "
        "not multi-channel fluorescence"
    )


def require_mpp(info: SlideInfo) -> float:
    """The level-0 mpp, or a clear error telling how to provide one."""
    if info.mpp is None:
        found = f" ({info.mpp_rejected})" if info.mpp_rejected else ""
        raise SlideMetadataError(
            f"slide {info.path!r} has no usable resolution metadata (microns per pixel){found}; "
            "set slide.assume_mpp (e.g. --set slide.assume_mpp=0.25) to tile it anyway"
        )
    return info.mpp


CACHE_SIZE = 4  # open readers per task thread (pathopipe._process "open-slides")


def cached_slide(
    path: str,
    *,
    backend: str = "auto",
    assume_mpp: float | None = None,
    options: Mapping[str, Mapping[str, Any]] | None = None,
) -> SlideReader:
    """A reader from a small per-thread cache: tasks on one worker thread reuse open handles
    (and the tiff backend's decoded tiles). A local file changed on disk is reopened."""
    cache: dict[tuple[Any, ...], SlideReader] = thread_dict("open-slides")  # least recently used first
    stamp = None
    if not is_url(path):
        stat = os.stat(path)
        stamp = (stat.st_mtime_ns, stat.st_size)
    frozen = repr(sorted((k, sorted(v.items())) for k, v in (options or {}).items()))
    key = (path, backend, assume_mpp, frozen, stamp)

    def opened() -> SlideReader:
        return open_slide(path, backend=backend, assume_mpp=assume_mpp, options=options)

    return lru_entry(cache, key, opened, CACHE_SIZE, drop=lambda reader: reader.close())


def _dct_shrink(reader: SlideReader, level: int, ratio: float) -> int:
    """2 where ``level``'s tiles decode pre-scaled by 2 (``downscale_method`` "jpeg-dct") and
    ``ratio`` (level px per output px) is at least 2 (levels' downsamples are often a little off
    the whole number: up to 2 % under it; the resize after then enlarges by as much); else 1.
    Larger factors are not used: at 1/8 the real Aperio sample's tissue mask moved by 1.3 % of
    its pixels against area averaging, at 1/2 the benchmark slide's by 0.02 %."""
    if ratio * 1.02 >= 2 and reader.downscale_method(level, 2) == "jpeg-dct":
        return 2
    return 1


def read_downsampled(
    reader: SlideReader, downsample: float, *, max_strip_pixels: int = 1 << 24
) -> tuple[np.ndarray, tuple[float, float]]:
    """The whole slide at ``downsample`` (level-0 px per output px), read in strips.

    Uses the coarsest level not coarser than ``downsample`` and resizes with area
    averaging, strip by strip, so memory stays bounded for any slide size. Where that level's
    JPEG tiles decode pre-scaled by 2 (where the shrink left is at least 2) they are read so
    (~40 % less decoding) and the last partial block of level pixels at the right and
    bottom edges is left out (under one output pixel). Returns the image and its (x, y)
    downsample relative to level 0.
    """
    info = reader.info
    width, height = info.dimensions
    out_w = max(1, round(width / downsample))
    out_h = max(1, round(height / downsample))
    candidates = [i for i, d in enumerate(info.level_downsamples) if d <= downsample * 1.0001]
    level = max(candidates, key=lambda i: info.level_downsamples[i]) if candidates else 0
    lw, lh = info.level_dimensions[level]
    level_ds = info.level_downsamples[level]
    factor = _dct_shrink(reader, level, min(lw / out_w, lh / out_h))
    sw, sh = lw // factor, lh // factor  # the level as read (decoded pre-scaled by factor)
    fy = sh / out_h  # read rows per output row
    rows_per_strip = max(1, int(max_strip_pixels // max(1, sw) / max(fy, 1.0)))
    out = np.empty((out_h, out_w, 3), dtype=np.uint8)
    for r0 in range(0, out_h, rows_per_strip):
        r1 = min(out_h, r0 + rows_per_strip)
        y0 = math.floor(r0 * fy)
        y1 = min(sh, max(y0 + 1, math.ceil(r1 * fy)))
        location = (0, round(y0 * factor * level_ds))
        if factor == 1:
            strip = reader.read_region(location, level, (sw, y1 - y0))
        else:
            strip = reader.read_regions_downscaled(
                [location], level, (sw * factor, (y1 - y0) * factor), factor
            )[0]
        interpolation = cv2.INTER_AREA if sw >= out_w else cv2.INTER_LINEAR
        out[r0:r1] = cv2.resize(strip, (out_w, r1 - r0), interpolation=interpolation)
    return out, (width / out_w, height / out_h)
