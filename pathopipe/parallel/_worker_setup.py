"""Set-up of the worker processes pathopipe starts itself (local clusters), as a Dask preload.

- Imports the modules the run's stages need (``pathopipe.warm-modules`` in the Dask config,
  set by the run) on a background thread as the worker starts, so that torch and timm load
  while the driver is still starting and the first slides are being tiled, not ahead of the
  first feature task.
- Routes Python warnings (a backend's) to the slide being read, for its manifest row, or to
  the quiet logger, never raw onto the terminal (:mod:`pathopipe._warnings`).
- At exit, freezes the garbage collector's generations: the interpreter's last collections
  otherwise walk every object torch and timm created, ~1 s of a worker's shutdown. Exit
  handlers still run; only those collections are skipped.

Workers started elsewhere (``dask worker``, SLURM, Kubernetes) are left as they are.
"""

from __future__ import annotations

import atexit
import gc
import importlib
import logging
import threading
from typing import Any

import dask

from pathopipe._warnings import route_warnings

WARM_MODULES_KEY = "pathopipe.warm-modules"
logger = logging.getLogger(__name__)


def _import_all(modules: list[str]) -> None:
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as err:  # noqa: BLE001 - a task importing it reports the failure
            logger.debug("warm import of %s failed: %s", name, err)


def dask_setup(worker: Any) -> None:
    """Dask's preload hook, called in the worker process as it starts."""
    atexit.register(gc.freeze)
    route_warnings()
    modules = list(dask.config.get(WARM_MODULES_KEY, default=None) or [])
    if modules:
        threading.Thread(target=_import_all, args=(modules,), name="pathopipe-warm", daemon=True).start()
