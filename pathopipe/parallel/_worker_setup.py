"""Set-up of the worker processes pathopipe starts itself (local clusters), as a Dask preload.

- Imports the modules the run's stages need (``pathopipe.warm-modules`` in the Dask config,
  set by the run) on a background thread as the worker starts, so that torch and timm load
  while the driver is still starting and the first slides are being tiled, not ahead of the
  first feature task.
- Routes Python warnings (a backend's) to the slide being read, for its manifest row, or to
  the quiet logger, never raw onto the terminal (:mod:`pathopipe._warnings`).
- Once the start-up imports are done (and again when a run has warmed the worker, see
  :func:`warm_worker`), freezes the objects alive then out of the garbage collector's reach:
  the first tasks' collections would otherwise walk every object the imports created (a full
  collection of tiling's imports cost the first slide 30-50 ms; torch's cost more).
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
from pathopipe.stages import warm_up

WARM_MODULES_KEY = "pathopipe.warm-modules"
logger = logging.getLogger(__name__)


_started_here = threading.Event()  # set in the worker processes pathopipe starts


def _import_all(modules: list[str]) -> None:
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as err:  # noqa: BLE001 - a task importing it reports the failure
            logger.debug("warm import of %s failed: %s", name, err)
    gc.freeze()


def warm_worker() -> list[str]:
    """What a run does on each worker before its first task: import the stages' modules
    (:func:`pathopipe.stages.warm_up`) and, in a worker pathopipe started, freeze the objects
    alive then out of the garbage collector's reach. Returns the modules found."""
    found = warm_up()
    if _started_here.is_set():
        gc.freeze()
    return found


def dask_setup(worker: Any) -> None:
    """Dask's preload hook, called in the worker process as it starts."""
    _started_here.set()
    atexit.register(gc.freeze)
    route_warnings()
    modules = list(dask.config.get(WARM_MODULES_KEY, default=None) or [])
    threading.Thread(target=_import_all, args=(modules,), name="pathopipe-warm", daemon=True).start()
