"""pathopipe: whole-slide images to tiles and features in Zarr, as one Dask computation."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "open_run", "pack_run"]


def __getattr__(name: str) -> Any:  # heavy imports only when used
    if name in ("open_run", "pack_run"):
        from pathopipe import loader

        return getattr(loader, name)
    raise AttributeError(f"module 'pathopipe' has no attribute {name!r}")
