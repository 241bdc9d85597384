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
    "simplejpeg",  # pre-scaled JPEG decoding (thumbnails, resampled tiles)
    "openslide",
    "zarr.storage",
)

LAZY_CODECS = ("jpeg8_decode", "jpeg8_encode")  # imagecodecs functions the tile stages call


def warm_up() -> list[str]:
    """Import the modules the stages use in this (worker) process, and look up the plug-ins of
    the registries they use (an entry-point scan, ~0.1 s the first time); returns the modules
    found."""
    found = []
    for name in WARM_MODULES:
        try:
            importlib.import_module(name)
            found.append(name)
        except ImportError:
            pass
    from pathopipe.slide import slide_backends
    from pathopipe.store.tile_codecs import tile_codecs
    from pathopipe.tissue import tissue_detectors

    for registry in (slide_backends, tissue_detectors, tile_codecs):
        registry.load_plugins()
    if "imagecodecs" in found:  # it loads each codec's extension on first use (~4 ms for JPEG)
        import imagecodecs

        for codec in LAZY_CODECS:
            getattr(imagecodecs, codec, None)
    return found
