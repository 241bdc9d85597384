"""Pipeline stages as plain functions on plain values; they know nothing about Dask."""

from __future__ import annotations

import importlib

# imported lazily by the stages' first task in a worker; importing them up front keeps that
# one-off cost out of the first tasks' measured time (and so out of forecasts fitted on them)
WARM_MODULES = (
    "pathopipe.stages.tiling",
    "tiffslide",
    "tifffile",
    "imagecodecs",
    "openslide",
    "zarr.storage",
)


def warm_up() -> list[str]:
    """Import the modules the stages use in this (worker) process; returns those found."""
    found = []
    for name in WARM_MODULES:
        try:
            importlib.import_module(name)
            found.append(name)
        except ImportError:
            pass
    return found
