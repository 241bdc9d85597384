"""The ``pathopipe`` command line: thin commands over the library, one module per group.

Exit codes: 0 success, 1 some slides failed, 2 bad input, 3 output locked, 4 scheduler lost,
130 interrupted (documented in README.md).
"""

from __future__ import annotations

import atexit
import logging
import os
import sys

from pathopipe.cli import _inspect, _planning, _results, _runs
from pathopipe.cli._common import app

__all__ = ["app", "main"]

_COMMANDS = (_inspect, _runs, _results, _planning)  # importing them registers their commands

# the command list shows each docstring's first paragraph; as one line, so that it wraps to the
# terminal instead of breaking where the source did
for _command in app.registered_commands:
    _doc = _command.callback.__doc__ if _command.callback is not None else None
    if _command.short_help is None and _doc:
        _command.short_help = " ".join(_doc.strip().split("\n\n")[0].split())


def main() -> None:
    """Run the command, then end the process without the interpreter's teardown.

    Freeing every module (numpy, zarr, distributed, ...) at exit took ~0.2 s, as much as a small
    slide's tiling. By then every file is written and closed and the cluster is shut down; the
    exit handlers (temporary folders, child processes) still run and the output is flushed.
    """
    try:
        app()
        code: object = 0
    except SystemExit as done:
        code = done.code
    if not isinstance(code, int):  # sys.exit("message") or sys.exit(None)
        if code is not None:
            print(code, file=sys.stderr)
        code = 0 if code is None else 1
    atexit._run_exitfuncs()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # closed, or a broken pipe (| head)
            pass
    os._exit(code)
