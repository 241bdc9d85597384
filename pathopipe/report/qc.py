"""QC pictures: tissue mask and tile grid over the thumbnail, feature maps, per-tile score heatmaps.

Every picture is an (H, W, 3) uint8 RGB array at the thumbnail's resolution (the image the
tissue mask was computed from); ``write_qc`` saves them as PNG under ``OUT/report/qc/``.

>>> image = heatmap(run, "slide-1", attention_scores)   # doctest: +SKIP
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from pathopipe.errors import StoreError
from pathopipe.store.layout import COORDS, MASK, THUMBNAIL, attrs_of, open_store_array, read_array

if TYPE_CHECKING:
    from pathopipe.loader import Run

__all__ = ["feature_map", "heatmap", "overview", "pca_colours", "write_qc"]

logger = logging.getLogger(__name__)

MASK_TINT = np.array([0, 160, 90], np.float32)  # green over tissue
GRID_COLOUR = (20, 60, 200)  # blue tile outlines
REGION_COLOURS = [(230, 30, 30), (250, 160, 0), (150, 40, 200), (0, 170, 170), (120, 90, 40)]  # by class


def _thumbnail(run: Run, slide_id: str) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
    store = run.store(slide_id)
    thumbnail = open_store_array(store, THUMBNAIL)
    dsx, dsy = attrs_of(thumbnail)["downsample"]
    mask = read_array(open_store_array(store, MASK))
    return read_array(thumbnail), mask, (float(dsx), float(dsy))


def _tile_boxes(run: Run, slide_id: str, downsample: tuple[float, float]) -> np.ndarray:
    """(N, 4) int boxes x0, y0, x1, y1 of the tiles on the thumbnail (at least one pixel)."""
    coords = read_array(open_store_array(run.store(slide_id), COORDS)).astype(np.float64)
    size = float(run.slide_attrs(slide_id)["tile_size_level0"])
    dsx, dsy = downsample
    x0, y0 = np.floor(coords[:, 0] / dsx), np.floor(coords[:, 1] / dsy)
    x1 = np.maximum(x0 + 1, np.ceil((coords[:, 0] + size) / dsx))
    y1 = np.maximum(y0 + 1, np.ceil((coords[:, 1] + size) / dsy))
    return np.stack([x0, y0, x1, y1], axis=1).astype(np.int64)


def _outlines(image: np.ndarray, regions: Any, downsample: tuple[float, float]) -> None:
    """Draw each class's region outlines (polygons, or a label mask's borders) onto ``image``."""
    dsx, dsy = downsample
    for i, name in enumerate(regions.classes):
        colour = REGION_COLOURS[i % len(REGION_COLOURS)]
        if regions.mask is not None:
            values = [v for v, n in regions.mask.names.items() if n == name]
            inside = np.isin(regions.mask.labels, values).astype(np.uint8)
            scaled = cv2.resize(inside, image.shape[1::-1], interpolation=cv2.INTER_NEAREST)
            contours, _ = cv2.findContours(scaled, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
            cv2.drawContours(image, contours, -1, colour, 2)
            continue
        for shape in regions.polygons.get(name, []):
            polygons = getattr(shape, "geoms", [shape])
            for polygon in polygons:
                for ring in [polygon.exterior, *polygon.interiors] if hasattr(polygon, "exterior") else []:
                    xy = np.asarray(ring.coords)[:, :2] / (dsx, dsy)
                    cv2.polylines(image, [xy.round().astype(np.int32)], True, colour, 2)


def _regions_of(run: Run, slide_id: str) -> Any:
    """The slide's annotations as recorded in its store, None without (or when unreadable now)."""
    from pathopipe.errors import RegionsError
    from pathopipe.regions import load_regions

    attrs = run.slide_attrs(slide_id)
    path = (attrs.get("slide_settings") or {}).get("annotations")
    if not path:
        return None
    try:
        return load_regions(path, tuple(attrs["dimensions"]))
    except RegionsError as err:
        logger.warning("QC of %s without its regions: %s", slide_id, err)
        return None


def overview(run: Run, slide_id: str, *, grid: bool = True) -> np.ndarray:
    """The thumbnail with the tissue mask tinted green, the kept tiles outlined and the
    annotated regions drawn (one colour per class)."""
    thumbnail, mask, downsample = _thumbnail(run, slide_id)
    image = thumbnail.astype(np.float32)
    if mask.shape != image.shape[:2]:
        mask = cv2.resize(mask.astype(np.uint8), image.shape[1::-1], interpolation=cv2.INTER_NEAREST) > 0
    image[mask] = 0.6 * image[mask] + 0.4 * MASK_TINT
    out = np.ascontiguousarray(image.round().clip(0, 255).astype(np.uint8))
    if grid:
        for x0, y0, x1, y1 in _tile_boxes(run, slide_id, downsample):
            cv2.rectangle(out, (int(x0), int(y0)), (int(x1) - 1, int(y1) - 1), GRID_COLOUR, 1)
    regions = _regions_of(run, slide_id)
    if regions is not None:
        _outlines(out, regions, downsample)
    return out


def _paint_tiles(base: np.ndarray, boxes: np.ndarray, colours: np.ndarray, alpha: float) -> np.ndarray:
    layer = base.copy()
    covered = np.zeros(base.shape[:2], bool)
    for (x0, y0, x1, y1), colour in zip(boxes, colours, strict=True):
        layer[y0:y1, x0:x1] = colour
        covered[y0:y1, x0:x1] = True
    out = base.astype(np.float32)
    out[covered] = (1 - alpha) * out[covered] + alpha * layer[covered].astype(np.float32)
    return out.round().clip(0, 255).astype(np.uint8)


def pca_colours(features: np.ndarray) -> np.ndarray:
    """(N, 3) uint8: the first three principal components, each scaled by its 1st-99th percentile."""
    x = np.asarray(features, dtype=np.float64)
    x = x - x.mean(axis=0)
    if len(x) < 2:
        return np.full((len(x), 3), 128, np.uint8)
    _, vectors = np.linalg.eigh(x.T @ x)
    comps = x @ vectors[:, ::-1][:, :3]
    if comps.shape[1] < 3:
        comps = np.pad(comps, ((0, 0), (0, 3 - comps.shape[1])))
    lo, hi = np.percentile(comps, 1, axis=0), np.percentile(comps, 99, axis=0)
    scaled = (comps - lo) / np.where(hi > lo, hi - lo, 1.0)
    return (scaled.clip(0, 1) * 255).round().astype(np.uint8)


def feature_map(run: Run, slide_id: str, model: str) -> np.ndarray:
    """Each tile coloured by the first three PCA components of its features, on white."""
    thumbnail, _, downsample = _thumbnail(run, slide_id)
    features = run.features(slide_id, model)["features"].values
    canvas = np.full_like(thumbnail, 255)
    return _paint_tiles(canvas, _tile_boxes(run, slide_id, downsample), pca_colours(features), alpha=1.0)


def heatmap(
    run: Run,
    slide_id: str,
    scores: np.ndarray,
    *,
    cmap: str = "viridis",
    alpha: float = 0.6,
    vmin: float | None = None,
    vmax: float | None = None,
) -> np.ndarray:
    """Any per-tile score (attention, prediction...; one per row of the slide's coords) drawn
    over the thumbnail with a matplotlib colormap."""
    from matplotlib import colormaps

    thumbnail, _, downsample = _thumbnail(run, slide_id)
    boxes = _tile_boxes(run, slide_id, downsample)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(scores) != len(boxes):
        raise ValueError(
            f"{len(scores)} scores for {len(boxes)} tiles of slide {slide_id!r}; give one per tile"
        )
    lo = float(np.nanmin(scores)) if vmin is None else vmin
    hi = float(np.nanmax(scores)) if vmax is None else vmax
    normed = (scores - lo) / (hi - lo) if hi > lo else np.zeros_like(scores)
    colours = (colormaps[cmap](np.nan_to_num(normed.clip(0, 1)))[:, :3] * 255).round().astype(np.uint8)
    return _paint_tiles(thumbnail, boxes, colours, alpha=alpha)


def _save(path: Path, image: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {path}")
    return path


def write_qc(
    run: Run, *, models: list[str] | None = None, slide_ids: list[str] | None = None, out: Path | None = None
) -> list[Path]:
    """Write ``<slide>.overview.png`` and ``<slide>.features-<model>.png`` for every slide
    (under ``OUT/report/qc`` by default). Returns the files written."""
    if out is None and isinstance(run.path, str):
        raise StoreError(f"{run.path}: QC pictures of an object-storage run need a local folder (out=...)")
    target = out or Path(run.layout.qc)
    chosen = run.models if models is None else [m for m in models if m in run.models]
    having = {model: set(run.slides_with(model)) for model in chosen}
    written = []
    for slide_id in slide_ids or run.slide_ids:
        written.append(_save(target / f"{slide_id}.overview.png", overview(run, slide_id)))
        for model in chosen:
            if slide_id in having[model]:
                image = feature_map(run, slide_id, model)
                written.append(_save(target / f"{slide_id}.features-{model}.png", image))
    logger.info("wrote %d QC pictures under %s", len(written), target)
    return written
