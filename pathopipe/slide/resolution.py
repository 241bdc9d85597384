"""A slide's level-0 resolution (µm per pixel) from its metadata, trusting only what is plausible.

Order: the vendor's own field (Aperio ``MPP``, Hamamatsu, DICOM pixel spacing, MIRAX, OME
``PhysicalSizeX``, ... as the backend reports it in ``<prefix>.mpp-x``), then the TIFF
resolution tags. A TIFF tag is taken only with a physical unit (centimetre or inch) and when
it is not one of the placeholders image software writes (72, 96 or 300 dpi, in inches or
centimetres); for slides whose backend derives its mpp from those tags (generic TIFF), the
same rules apply to the backend's mpp. Any value outside :data:`PLAUSIBLE_MPP` is refused too.
A refused value is kept in words (:attr:`Resolution.rejected`) for the error that asks for
``slide.assume_mpp``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "PLACEHOLDER_DPI",
    "PLAUSIBLE_MPP",
    "MppSource",
    "Resolution",
    "ome_resolution",
    "parse_float",
    "read_resolution",
]

MppSource = Literal["read", "given", "assumed"]  # the slide's metadata, the slide list, the whole run

PLAUSIBLE_MPP = (0.05, 20.0)  # µm/px: 0.05 is beyond any optical scanner, 20 a 0.5x overview
PLACEHOLDER_DPI = (72.0, 96.0, 300.0)  # what image software writes when it knows no resolution
MICRONS_PER = {"centimeter": 1e4, "inch": 25_400.0}
# vendors whose mpp OpenSlide / tiffslide compute from the TIFF resolution tags
TIFF_TAG_VENDORS = frozenset({"generic-tiff", "generic", "", "none"})


@dataclass(frozen=True)
class Resolution:
    mpp_x: float | None
    mpp_y: float | None
    source: MppSource | None
    rejected: str | None = None  # a value found and not used, and why


def parse_float(value: object) -> float | None:
    """A positive finite float from a property value, else None."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number > 0 else None


def _plausible(mx: float, my: float) -> bool:
    lo, hi = PLAUSIBLE_MPP
    return lo <= mx <= hi and lo <= my <= hi


def _tiff_tags(props: Mapping[str, Any]) -> Resolution:
    unit = str(props.get("tiff.ResolutionUnit") or "").lower()
    xres, yres = parse_float(props.get("tiff.XResolution")), parse_float(props.get("tiff.YResolution"))
    if not (xres and yres):
        return Resolution(None, None, None)
    if unit not in MICRONS_PER:
        return Resolution(
            None, None, None, f"TIFF resolution {xres:g} with no physical unit ({unit or 'none'})"
        )
    per = MICRONS_PER[unit]
    mx, my = per / xres, per / yres
    dpi = xres * 25_400.0 / per  # the tag as dots per inch
    if any(abs(dpi - p) <= 0.005 * p for p in PLACEHOLDER_DPI) and abs(xres - yres) <= 1e-6 * xres:
        return Resolution(None, None, None, f"TIFF resolution {dpi:.0f} dpi ({mx:.1f} µm/px), a placeholder")
    if not _plausible(mx, my):
        return Resolution(None, None, None, f"TIFF resolution {mx:.4g} µm/px, outside {_range()}")
    return Resolution(mx, my, "read")


def _range() -> str:
    lo, hi = PLAUSIBLE_MPP
    return f"the plausible {lo:g}-{hi:g} µm/px"


def read_resolution(props: Mapping[str, Any], prefix: str) -> Resolution:
    """The level-0 mpp from a backend's properties, whose own keys start with ``prefix``
    (``openslide`` or ``tiffslide``); see the module's docstring for the rules."""
    vendor = str(props.get(f"{prefix}.vendor") or "").lower()
    mx, my = parse_float(props.get(f"{prefix}.mpp-x")), parse_float(props.get(f"{prefix}.mpp-y"))
    if vendor in TIFF_TAG_VENDORS:
        return _tiff_tags(props)  # the backend's mpp is the tag's: the tag's rules decide
    if mx and my:
        if _plausible(mx, my):
            return Resolution(mx, my, "read")
        return Resolution(None, None, None, f"{vendor} metadata says {mx:.4g} µm/px, outside {_range()}")
    return _tiff_tags(props)


MICRONS = {"µm": 1.0, "um": 1.0, "nm": 1e-3, "mm": 1e3, "cm": 1e4, "m": 1e6, "Å": 1e-4}


def ome_resolution(xml: str | None) -> dict[str, Any]:
    """tiffslide-style properties of an OME-TIFF's first image: vendor ``ome`` and its
    ``PhysicalSizeX/Y`` in µm (absent when the OME-XML gives none or an unknown unit)."""
    import xml.etree.ElementTree as ET

    found: dict[str, Any] = {"tiffslide.vendor": "ome"}
    try:
        root = ET.fromstring(xml or "")
    except ET.ParseError:
        return found
    pixels = next((e for e in root.iter() if e.tag.endswith("}Pixels") or e.tag == "Pixels"), None)
    if pixels is None:
        return found
    for axis in ("X", "Y"):
        size, unit = pixels.get(f"PhysicalSize{axis}"), pixels.get(f"PhysicalSize{axis}Unit", "µm")
        if size is not None and unit in MICRONS:
            try:
                found[f"tiffslide.mpp-{axis.lower()}"] = float(size) * MICRONS[unit]
            except ValueError:
                continue
    return found
