"""Annotation file readers, one per format, registered by file suffix: QuPath GeoJSON, ASAP /
CAMELYON XML (polygons in level-0 pixels, by class) and label-mask images (one class per pixel
value, at any scale of the slide)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from pathopipe._registry import Registry
from pathopipe.errors import RegionsError

__all__ = ["UNCLASSIFIED", "LabelMask", "Polygons", "annotation_readers"]

UNCLASSIFIED = "unclassified"
Polygons = dict[str, list[Any]]  # class name -> shapely polygons (level-0 px)


class LabelMask:
    """A label image: pixel value v > 0 is class ``names[v]``; ``downsample`` (x, y) maps its
    pixels to level-0 pixels."""

    def __init__(self, labels: np.ndarray, names: dict[int, str], downsample: tuple[float, float]) -> None:
        self.labels, self.names, self.downsample = labels, names, downsample


Reader = Callable[[Path, tuple[int, int]], "Polygons | LabelMask"]
annotation_readers: Registry[Reader] = Registry("annotation format")


def _polygon(rings: list[Any], where: str) -> Any:
    from shapely.geometry import Polygon
    from shapely.validation import make_valid

    try:
        shell, *holes = [[(float(x), float(y)) for x, y, *_ in ring] for ring in rings]
        polygon = Polygon(shell, holes)
    except (TypeError, ValueError) as err:
        raise RegionsError(f"{where}: a polygon's coordinates are not [x, y] pairs ({err})") from None
    return polygon if polygon.is_valid else make_valid(polygon)


def _add(shapes: Polygons, name: str, geometry: Any) -> None:
    if not geometry.is_empty and geometry.area > 0:
        shapes.setdefault(name, []).append(geometry)


def _geojson_class(properties: dict[str, Any]) -> str:
    classification = properties.get("classification")
    if isinstance(classification, dict):
        return str(classification.get("name") or UNCLASSIFIED)
    if isinstance(classification, str) and classification:
        return classification
    return UNCLASSIFIED


def _features(data: Any) -> Iterable[dict[str, Any]]:
    if isinstance(data, list):
        return data
    if isinstance(data, dict) and data.get("type") == "FeatureCollection":
        return list(data.get("features") or [])
    if isinstance(data, dict) and data.get("type") == "Feature":
        return [data]
    raise ValueError("not a FeatureCollection, a Feature or a list of features")


@annotation_readers.register("geojson", suffixes=(".geojson", ".json"), description="QuPath GeoJSON")
def read_geojson(path: Path, dimensions: tuple[int, int]) -> Polygons:
    """Polygons and multipolygons of a QuPath GeoJSON export, by ``classification.name``."""
    try:
        features = _features(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, UnicodeDecodeError) as err:
        raise RegionsError(f"annotations {path}: not QuPath GeoJSON ({err})") from None
    shapes: Polygons = {}
    for i, feature in enumerate(features):
        geometry = (feature or {}).get("geometry") or {}
        name = _geojson_class((feature or {}).get("properties") or {})
        where = f"annotations {path}, feature {i}"
        if geometry.get("type") == "Polygon":
            _add(shapes, name, _polygon(geometry.get("coordinates") or [], where))
        elif geometry.get("type") == "MultiPolygon":
            for rings in geometry.get("coordinates") or []:
                _add(shapes, name, _polygon(rings, where))
    return shapes


@annotation_readers.register("asap", suffixes=(".xml",), description="ASAP / CAMELYON XML")
def read_asap(path: Path, dimensions: tuple[int, int]) -> Polygons:
    """Polygon, spline and rectangle annotations of an ASAP XML file, by ``PartOfGroup``."""
    import xml.etree.ElementTree as ET

    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as err:
        raise RegionsError(f"annotations {path}: not ASAP XML ({err})") from None
    shapes: Polygons = {}
    for i, annotation in enumerate(root.iter("Annotation")):
        if annotation.get("Type", "Polygon") not in ("Polygon", "Spline", "Rectangle"):
            continue  # dots and point sets cover no area
        group = annotation.get("PartOfGroup") or UNCLASSIFIED
        points = sorted(annotation.iter("Coordinate"), key=lambda c: float(c.get("Order", 0)))
        ring = [(c.get("X"), c.get("Y")) for c in points]
        if len(ring) >= 3:
            _add(shapes, "unclassified" if group == "None" else group,
                 _polygon([ring], f"annotations {path}, annotation {i}"))  # fmt: skip
    return shapes


@annotation_readers.register("label-mask", suffixes=(".png", ".tif", ".tiff"), description="label-mask image")
def read_label_mask(path: Path, dimensions: tuple[int, int]) -> LabelMask:
    """A label image over the whole slide, at any scale keeping its aspect ratio; class names
    are the pixel values."""
    import tifffile

    try:
        if path.suffix.lower() == ".png":
            import cv2

            labels = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
            if labels is None:
                raise ValueError("cannot decode the image")
        else:
            labels = tifffile.imread(path)
    except (ValueError, OSError, tifffile.TiffFileError) as err:
        raise RegionsError(f"annotations {path}: not a label image ({err})") from None
    if labels.ndim != 2:
        raise RegionsError(
            f"annotations {path}: a label mask has one channel, this image has shape {labels.shape}"
        )
    width, height = dimensions
    dsx, dsy = width / labels.shape[1], height / labels.shape[0]
    if not math.isclose(dsx, dsy, rel_tol=0.02):
        raise RegionsError(
            f"annotations {path}: a {labels.shape[1]} x {labels.shape[0]} mask does not cover the "
            f"{width} x {height} slide at one scale (x {dsx:.3g}, y {dsy:.3g})"
        )
    values = [int(v) for v in np.unique(labels) if v > 0]
    return LabelMask(labels, {v: str(v) for v in values}, (dsx, dsy))
