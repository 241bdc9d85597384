"""Python warnings raised while a slide is read, kept for the slide's manifest row.

Backends warn through :mod:`warnings` (tiffslide: "hamamatsu-format metadata parsing only
partially implemented!"). In worker processes pathopipe starts, :func:`route_warnings` (called
by the worker set-up) sends every warning to the list of the thread collecting them
(:func:`collected_warnings`), else to the ``py.warnings`` logger at debug level, never raw
onto the terminal. Elsewhere (a user's process) warnings are left alone and the lists stay
empty.
"""

from __future__ import annotations

import logging
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

__all__ = ["collected_warnings", "route_warnings"]

_collecting = threading.local()


@contextmanager
def collected_warnings() -> Iterator[list[str]]:
    """The warnings this thread raises in the block, once each, as ``Category: message``."""
    found: list[str] = []
    previous = getattr(_collecting, "found", None)
    _collecting.found = found
    try:
        yield found
    finally:
        _collecting.found = previous


def _show(
    message: Warning | str, category: type[Warning], filename: str, lineno: int,
    file: TextIO | None = None, line: str | None = None,
) -> None:  # fmt: skip
    text = f"{category.__name__}: {message}"
    found: list[str] | None = getattr(_collecting, "found", None)
    if found is None:
        logging.getLogger("py.warnings").debug("%s (%s:%s)", text, filename, lineno)
    elif text not in found:
        found.append(text)


def route_warnings() -> None:
    """In a process pathopipe owns (its workers): every warning, each time it is raised, to the
    collecting thread's list or to logging. Changes the process's warnings state: call it only
    where pathopipe started the process."""
    warnings.simplefilter("always")
    warnings.showwarning = _show
