"""Features exported for existing MIL code: one file per slide in the layout CLAM or TRIDENT
training code reads, so a group can switch to pathopipe without rewriting its training code.

Formats (the registry ``export_formats``):

- ``clam-h5``: CLAM's ``h5_files/<slide>.h5`` (datasets ``features`` (N, D) float32 and
  ``coords`` (N, 2) level-0 top-left x, y, as CLAM's ``extract_features_fp.py`` writes them;
  ``coords`` carries CLAM's patching attributes ``patch_size``, ``patch_level``,
  ``downsample``, ``level_dim``, ``downsampled_level_dim``, ``name``) and ``pt_files/<slide>.pt``
  (the features as a float32 tensor, what CLAM's training datasets load);
- ``trident-h5``: TRIDENT's ``<slide>.h5`` (``features`` with attributes ``name``,
  ``savetodir``; ``coords`` with ``patch_size``, ``patch_size_level0``,
  ``level0_magnification``, ``target_magnification``, ``overlap``, ``name``, ``savetodir``);
- ``pt``: ``<slide>.pt``, the features as a float32 tensor (TRIDENT's ``--saveas pt``).

Only slides whose features are complete are exported. Magnifications are the objective power
the slide records, or 10 / µm per px where it records none.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from pathopipe._registry import Registry, did_you_mean
from pathopipe.errors import ConfigError
from pathopipe.loader._run import Run, open_run
from pathopipe.output.layout import RunLayout

__all__ = ["export_features", "export_formats"]

Writer = Callable[[Path, str, np.ndarray, np.ndarray, dict[str, Any]], list[Path]]
export_formats: Registry[Writer] = Registry("export format")


def _magnifications(attrs: dict[str, Any]) -> tuple[float, float]:
    """(level-0, target) magnification: the objective power the slide records, else 10 / mpp."""
    mpp0 = float(attrs["mpp"])
    level0 = float(attrs.get("objective_power") or 10.0 / mpp0)
    target_mpp = float(attrs.get("effective_mpp") or attrs.get("target_mpp") or mpp0)
    return level0, level0 * mpp0 / target_mpp


def _save_pt(path: Path, features: np.ndarray) -> Path:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    torch.save(torch.from_numpy(np.ascontiguousarray(features)), partial)
    os.replace(partial, path)
    return path


def _save_h5(path: Path, features: np.ndarray, coords: np.ndarray, coords_attrs: dict[str, Any],
             features_attrs: dict[str, Any] | None = None) -> Path:  # fmt: skip
    import h5py

    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    with h5py.File(partial, "w") as h5:
        h5.create_dataset("features", data=features)
        h5.create_dataset("coords", data=coords)
        h5["coords"].attrs.update(coords_attrs)
        h5["features"].attrs.update(features_attrs or {})
    os.replace(partial, path)  # never a half-written file under the final name
    return path


@export_formats.register(
    "clam-h5", description="CLAM: h5_files/<slide>.h5 (features, coords) + pt_files/<slide>.pt"
)
def _clam(
    dest: Path, slide_id: str, features: np.ndarray, coords: np.ndarray, attrs: dict[str, Any]
) -> list[Path]:
    level = int(attrs.get("read_level") or 0)
    downsample = float(attrs.get("read_level_downsample") or 1.0)
    dims = attrs.get("level_dimensions") or [attrs.get("dimensions")]
    coords_attrs = {
        "patch_size": int(attrs["tile_size"]),  # the stored tile (a resized read when mpp asked for it)
        "patch_level": level,
        "downsample": [downsample, downsample],
        "level_dim": list(dims[level]),
        "downsampled_level_dim": list(dims[level]),
        "name": slide_id,
    }
    h5 = _save_h5(dest / "h5_files" / f"{slide_id}.h5", features, coords, coords_attrs)
    return [h5, _save_pt(dest / "pt_files" / f"{slide_id}.pt", features)]


@export_formats.register(
    "trident-h5", description="TRIDENT: <slide>.h5 (features, coords with its attributes)"
)
def _trident(
    dest: Path, slide_id: str, features: np.ndarray, coords: np.ndarray, attrs: dict[str, Any]
) -> list[Path]:
    level0, target = _magnifications(attrs)
    size, size0 = int(attrs["tile_size"]), int(attrs.get("tile_size_level0") or attrs["tile_size"])
    stride = int(attrs.get("stride") or size)
    coords_attrs = {"patch_size": size, "patch_size_level0": size0, "level0_magnification": level0,
                    "target_magnification": target, "overlap": max(0, size - stride), "name": slide_id,
                    "savetodir": str(dest)}  # fmt: skip
    features_attrs = {"name": slide_id, "savetodir": str(dest)}
    return [_save_h5(dest / f"{slide_id}.h5", features, coords, coords_attrs, features_attrs)]


@export_formats.register("pt", description="<slide>.pt: the features as a float32 torch tensor")
def _pt(
    dest: Path, slide_id: str, features: np.ndarray, coords: np.ndarray, attrs: dict[str, Any]
) -> list[Path]:
    return [_save_pt(dest / f"{slide_id}.pt", features)]


def _model_of(run: Run, model: str | None) -> str:
    models = run.models
    if model is None:
        if len(models) != 1:
            raise ConfigError(
                f"{run.path} has features of {len(models)} models ({', '.join(models) or 'none'}); "
                "choose one with --model KEY"
            )
        return models[0]
    if model not in models:
        hint = did_you_mean(model, models)
        raise ConfigError(
            f"{run.path} has no features of {model!r}{hint}; it has: {', '.join(models) or 'none'}"
        )
    return model


def export_features(
    out: str | Path, fmt: str, *, model: str | None = None, dest: str | Path | None = None
) -> list[Path]:
    """Write the complete features of one model in ``out`` as ``fmt`` (``export_formats``) under
    ``dest`` (default ``OUT/export/<fmt>/<model>``); returns the files written."""
    writer = export_formats.get(fmt)
    run = open_run(out)
    key = _model_of(run, model)
    target = Path(dest if dest is not None else RunLayout(out).export_folder(fmt, key))
    written: list[Path] = []
    for slide_id in run.slides_with(key):
        dataset = run.features(slide_id, key)
        features = np.asarray(dataset["features"].values, dtype=np.float32)
        coords = run.coords(slide_id)
        written += writer(target, slide_id, features, coords, run.slide_attrs(slide_id))
    return written
