"""Regions of interest: annotations of a slide (QuPath GeoJSON, ASAP / CAMELYON XML, label
masks; in level-0 pixels) and how much of each tile every class covers.

>>> regions = load_regions("a.geojson", (80_000, 60_000))          # doctest: +SKIP
>>> fractions = class_fractions(regions, ["tumour"], coords, 448)  # (N, 1), exact areas
>>> keep = kept_fractions(regions, ["tumour"], ["pen"], coords, 448) >= 0.5

Polygons are intersected with each tile's square exactly (shapely); label masks are
integrated exactly as piecewise-constant images (the tissue fractions' way). A tile's *kept*
fraction is its share inside the union of the included classes (the whole slide when none is
listed) less the union of the excluded ones: exclusions cut holes in inclusions.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pathopipe.errors import RegionsError
from pathopipe.regions._readers import UNCLASSIFIED, LabelMask, Polygons, annotation_readers
from pathopipe.tiling import tissue_fractions

__all__ = [
    "UNCLASSIFIED",
    "RegionTiles",
    "Regions",
    "annotation_readers",
    "annotation_suffixes",
    "apply_regions",
    "class_fractions",
    "find_annotations",
    "kept_fractions",
    "load_regions",
    "missing_classes",
    "slide_regions",
]


@dataclass(frozen=True)
class Regions:
    """A slide's annotations: polygons by class, or a label mask."""

    source: str
    polygons: Polygons | None = None
    mask: LabelMask | None = None

    @property
    def classes(self) -> list[str]:
        """The classes found, sorted."""
        if self.mask is not None:
            return sorted(self.mask.names.values(), key=lambda n: (len(n), n))
        return sorted(self.polygons or {})


def annotation_suffixes() -> list[str]:
    return [s for entry in annotation_readers for s in entry.metadata["suffixes"]]


def load_regions(path: str | os.PathLike[str], dimensions: tuple[int, int]) -> Regions:
    """Read an annotations file (format by suffix) for a slide of level-0 ``dimensions``;
    :class:`RegionsError` names the file and what is wrong with it."""
    path = Path(path)
    reader = next((e.obj for e in annotation_readers if path.suffix.lower() in e.metadata["suffixes"]), None)
    if reader is None:
        raise RegionsError(
            f"annotations {path}: unknown format {path.suffix!r} (known: {', '.join(annotation_suffixes())})"
        )
    if not path.is_file():
        raise RegionsError(f"annotations {path}: no such file")
    found = reader(path, dimensions)
    if isinstance(found, LabelMask):
        return Regions(str(path), mask=found)
    return Regions(str(path), polygons=found)


def find_annotations(
    source: str, slide_id: str, settings: Mapping[str, Any], folder: str | os.PathLike[str] | None
) -> str | None:
    """The annotations file of a slide: the slide list's ``annotations``, else the file in
    ``folder`` named like the slide file's stem or the slide id, with a known suffix."""
    if settings.get("annotations"):
        return str(settings["annotations"])
    if folder is None:
        return None
    stem = Path(source).name.split(".")[0]
    for name in dict.fromkeys((stem, Path(source).stem, slide_id)):
        for suffix in annotation_suffixes():
            candidate = Path(folder) / f"{name}{suffix}"
            if candidate.is_file():
                return str(candidate)
    return None


def _boxes(coords: np.ndarray, size: float) -> Any:
    import shapely

    x0, y0 = coords[:, 0].astype(np.float64), coords[:, 1].astype(np.float64)
    return shapely.box(x0, y0, x0 + size, y0 + size)


def _area_fractions(geometry: Any, coords: np.ndarray, size: float) -> np.ndarray:
    """Share of each tile's square inside ``geometry`` (exact)."""
    import shapely

    out = np.zeros(len(coords), np.float32)
    if geometry is None or geometry.is_empty or not len(coords):
        return out
    boxes = _boxes(coords, size)
    shapely.prepare(geometry)
    hit = shapely.intersects(geometry, boxes)
    if hit.any():
        out[hit] = shapely.area(shapely.intersection(boxes[hit], geometry)) / (size * size)
    return np.clip(out, 0.0, 1.0)


def _union(regions: Regions, names: Sequence[str]) -> Any:
    import shapely

    shapes = [g for name in names for g in (regions.polygons or {}).get(name, [])]
    return shapely.union_all(shapes) if shapes else None


def _mask_of(regions: Regions, names: Sequence[str]) -> np.ndarray:
    assert regions.mask is not None
    values = [v for v, n in regions.mask.names.items() if n in names]
    return np.isin(regions.mask.labels, values)


def class_fractions(regions: Regions, classes: Sequence[str], coords: np.ndarray, size: float) -> np.ndarray:
    """(N, K) float32: the share of each tile's square (level-0 ``coords``, side ``size``)
    covered by each of ``classes`` (0 for a class the slide does not have)."""
    columns = []
    for name in classes:
        if regions.mask is not None:
            columns.append(tissue_fractions(_mask_of(regions, [name]), regions.mask.downsample, coords, size))
        else:
            columns.append(_area_fractions(_union(regions, [name]), coords, size))
    return np.stack(columns, axis=1) if columns else np.zeros((len(coords), 0), np.float32)


def kept_fractions(
    regions: Regions, include: Sequence[str], exclude: Sequence[str], coords: np.ndarray, size: float
) -> np.ndarray:
    """(N,) float32: the share of each tile inside the included classes (the whole slide when
    ``include`` is empty) and outside the excluded ones."""
    if regions.mask is not None:
        inside = _mask_of(regions, include) if include else np.ones_like(regions.mask.labels, bool)
        kept = inside & ~_mask_of(regions, exclude)
        return tissue_fractions(kept, regions.mask.downsample, coords, size)
    if include:
        included, cut = _union(regions, include), _union(regions, exclude)
        geometry = included.difference(cut) if included is not None and cut is not None else included
        return _area_fractions(geometry, coords, size)
    return np.clip(1.0 - _area_fractions(_union(regions, exclude), coords, size), 0.0, 1.0).astype(np.float32)


def missing_classes(regions: Regions, include: Sequence[str]) -> str | None:
    """A warning when the slide has none of the included classes (it then keeps no tile)."""
    if include and not set(include) & set(regions.classes):
        return (
            f"none of the included classes {list(include)} is in {regions.source} "
            f"(its classes: {', '.join(regions.classes) or 'none'}): no tile kept"
        )
    return None


@dataclass(frozen=True)
class RegionTiles:
    """Regions applied to a slide's candidate tiles: which pass, and each kept tile's coverage
    of every class (``fractions`` (N_kept, K), columns ``classes``)."""

    passed: np.ndarray  # bool, one per candidate
    classes: list[str]
    fractions: np.ndarray
    warnings: list[str]


def apply_regions(
    regions: Regions,
    include: Sequence[str],
    exclude: Sequence[str],
    min_fraction: float,
    coords: np.ndarray,
    size: float,
) -> RegionTiles:
    """Filter candidate tiles (level-0 ``coords``, side ``size``) by their kept fraction when
    ``include`` or ``exclude`` is given, and measure every class over those kept. The classes
    are ``include`` then ``exclude`` when given (the same columns for every slide), else every
    class the slide has."""
    warnings = [w for w in [missing_classes(regions, include)] if w]
    passed = np.ones(len(coords), bool)
    if include or exclude:
        passed = kept_fractions(regions, include, exclude, coords, size) >= min_fraction
    classes = list(dict.fromkeys([*include, *exclude])) if include or exclude else regions.classes
    return RegionTiles(passed, classes, class_fractions(regions, classes, coords[passed], size), warnings)


def slide_regions(
    source: str, settings: Mapping[str, Any], dimensions: tuple[int, int], config: Any
) -> Regions | None:
    """A slide's annotations (its ``annotations`` setting: the slide list's, or the file found
    in ``regions.folder`` when the jobs were planned), None without; an error when
    ``config.include`` (a :class:`~pathopipe.config.RegionsConfig`) needs them."""
    path = settings.get("annotations")
    if not path:
        if config.include:
            where = f" or in {config.folder}" if config.folder else ""
            raise RegionsError(
                f"slide {source!r} has no annotations (no 'annotations' in its slide-list row{where}), and "
                f"regions.include {config.include} keeps tiles only inside annotated regions"
            )
        return None
    return load_regions(path, dimensions)
