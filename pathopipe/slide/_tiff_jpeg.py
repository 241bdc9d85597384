"""JPEG source tiles of TIFF pyramids: the colour spaces tifffile decodes them in, and decoding
them at 1/2, 1/4 or 1/8 scale with libjpeg-turbo's DCT scaling (through simplejpeg)."""

from __future__ import annotations

from typing import Any

import numpy as np

DCT_FACTORS = (2, 4, 8)  # scales libjpeg decodes in the DCT domain that we use
_ADOBE = b"\xff\xee\x00\x0eAdobe\x00\x64\x00\x00\x00\x00"  # APP14, + the transform byte
_JCS_RGB, _JCS_YCBCR = 2, 3  # libjpeg colour spaces (imagecodecs' JPEG8.CS values)


def jpeg_colorspaces(page: Any) -> tuple[Any, Any] | None:
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


def jpeg_prefix(jpegtables: bytes | None, colorspaces: tuple[Any, Any] | None) -> bytes | None:
    """What replaces a tile's SOI to make it a complete JPEG that any libjpeg decodes in the
    colour space tifffile decodes the page in: SOI, an Adobe marker naming the colour transform
    when tifffile sets one (Aperio's RGB-coded tiles), the page's tables. None unless the level
    is JPEG decoded to RGB."""
    if colorspaces is None or colorspaces[1] is None or int(colorspaces[1]) != _JCS_RGB:
        return None
    colorspace = colorspaces[0]
    if colorspace is None:  # libjpeg's own detection (JFIF, component ids), as imagecodecs does
        adobe = b""
    elif int(colorspace) in (_JCS_RGB, _JCS_YCBCR):
        adobe = _ADOBE + bytes([0 if int(colorspace) == _JCS_RGB else 1])
    else:
        return None
    tables = jpegtables[2:-2] if jpegtables else b""
    return b"\xff\xd8" + adobe + tables


def have_simplejpeg() -> bool:
    try:
        import simplejpeg  # noqa: F401
    except ImportError:
        return False
    return True


def decode_jpeg_scaled(
    prefix: bytes | None, data: bytes, shape: tuple[int, int, int], out: np.ndarray | None
) -> np.ndarray:
    """Decode one abbreviated JPEG tile to ``shape`` (its size divided by 1, 2, 4 or 8) with
    libjpeg-turbo's DCT-domain scaling."""
    import simplejpeg

    if prefix is None or data[:2] != b"\xff\xd8":
        raise ValueError("not a JPEG tile of an RGB/YCbCr JPEG level")
    buffer = out if out is not None and out.shape == shape and out.flags.c_contiguous else None
    # strict=False: libjpeg's warnings (e.g. a tile cut short) pass, as they do in imagecodecs'
    # full-size decode, so both resample modes accept and refuse the same tiles
    return simplejpeg.decode_jpeg(prefix + data[2:], colorspace="RGB", min_height=shape[0],
                                  min_width=shape[1], buffer=buffer, strict=False)  # fmt: skip
