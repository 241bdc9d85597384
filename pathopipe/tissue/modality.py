"""Brightfield or fluorescence: what a slide looks like, what the run expects (``slide.modality``),
and the image tissue detection sees.

A brightfield slide shows tissue on bright glass; a fluorescence slide shows bright signal on
a dark background. A slide is taken as fluorescence when the median brightness (the largest of
R, G, B) of its low-resolution image is under :data:`DARK_BACKGROUND`; vendor metadata naming
an excitation filter is reported beside it. A brightfield run refuses such a slide with what was
found; a fluorescence run detects tissue on the signal's brightness (mapped to saturation, so
every detector applies unchanged) and refuses bright-background slides the same way.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Literal

import numpy as np

from pathopipe.errors import SlideMetadataError

__all__ = ["DARK_BACKGROUND", "Modality", "check_modality", "detection_image", "looks_fluorescent"]

Modality = Literal["brightfield", "fluorescence"]
DARK_BACKGROUND = 50  # median max(R, G, B) of the low-resolution image, 0-255
_EXCITATION = re.compile(r"excitation\w*\s*=?\s*([^;|,]*)", re.IGNORECASE)


def _brightness(image: np.ndarray) -> np.ndarray:
    if image.ndim != 3:
        return image
    # the channel maximum, pairwise: a reduction over the last axis of 3 is ~10x slower
    brightest = np.maximum(image[..., 0], image[..., 1])
    for channel in range(2, image.shape[2]):
        np.maximum(brightest, image[..., channel], out=brightest)
    return brightest


def _median_u8(values: np.ndarray) -> float:
    """``np.median`` of uint8 values from their histogram (~5x faster than a partition)."""
    counts = np.cumsum(np.bincount(values.ravel(), minlength=256))
    n = int(counts[-1])
    lower = int(np.searchsorted(counts, (n - 1) // 2, side="right"))  # sorted value at (n-1)//2
    upper = int(np.searchsorted(counts, n // 2, side="right"))  # and at n//2
    return (lower + upper) / 2


def _metadata_hint(properties: Mapping[str, str]) -> str | None:
    """An excitation filter named in the vendor metadata (Hamamatsu shading data, ...)."""
    for key, value in properties.items():
        if key.startswith("tiff."):
            continue
        found = _EXCITATION.search(str(value))
        if found:
            name = found.group(1).strip()
            named = f" ({name})" if name else ""
            return f"its {key.split('.', 1)[0]} metadata names an excitation filter{named}"
    return None


def looks_fluorescent(image: np.ndarray, properties: Mapping[str, str]) -> tuple[bool, str]:
    """Whether the slide looks like fluorescence (a dark background), and the findings in words."""
    median = _median_u8(_brightness(image))
    dark = median < DARK_BACKGROUND
    findings = [f"{'a dark' if dark else 'a bright'} background (median brightness {median:.0f} of 255)"]
    hint = _metadata_hint(properties)
    if hint:
        findings.append(hint)
    return dark, "; ".join(findings)


def check_modality(
    image: np.ndarray, path: str, properties: Mapping[str, str], modality: Modality
) -> list[str]:
    """Refuse a slide of the other modality (:class:`SlideMetadataError` with the findings);
    return warnings for the manifest (metadata that disagrees with the content)."""
    fluorescent, findings = looks_fluorescent(image, properties)
    if modality == "brightfield" and fluorescent:
        raise SlideMetadataError(
            f"slide {path!r} looks like fluorescence, not brightfield ({findings}); pathopipe tiles "
            "brightfield slides unless the run says otherwise: set slide.modality: fluorescence for a "
            "fluorescence cohort"
        )
    if modality == "fluorescence" and not fluorescent:
        raise SlideMetadataError(
            f"slide {path!r} looks like brightfield ({findings}) in a run set to slide.modality: "
            "fluorescence; tile it in a brightfield run"
        )
    if modality == "brightfield" and _metadata_hint(properties):
        return [f"bright background but {_metadata_hint(properties)}: tiled as brightfield"]
    return []


DENSITY_UM = 64.0  # fluorescence: the signal is averaged over this window (sparse nuclei -> tissue)


def detection_image(image: np.ndarray, modality: Modality, mpp: float) -> np.ndarray:
    """The image tissue detection runs on (``mpp``: its µm per pixel): the slide's own for
    brightfield; for fluorescence, the signal's local density (its brightness averaged over
    :data:`DENSITY_UM`, scaled to its 99th percentile, then its cube root so that sparse
    nuclei weigh like dense ones) as the saturation of an RGB image (255, 255 - d, 255), so that
    detectors made for stained tissue on glass find the tissue the signal spans on the dark
    background."""
    if modality == "brightfield":
        return image
    import cv2

    value = _brightness(image).astype(np.float32)
    size = max(1, round(DENSITY_UM / mpp))
    density = cv2.blur(value, (size, size))
    top = float(np.percentile(density, 99)) or 1.0
    scaled = np.clip(255.0 * np.cbrt(density / top), 0, 255).astype(np.uint8)
    full = np.full_like(scaled, 255)
    return np.stack([full, 255 - scaled, full], axis=-1)
