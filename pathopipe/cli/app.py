"""The ``pathopipe`` command line: thin commands over the library, one module per group.

Exit codes: 0 success, 1 some slides failed, 2 bad input, 3 output locked, 4 scheduler lost,
130 interrupted (documented in README.md).
"""

from __future__ import annotations

from pathopipe.cli import _inspect, _planning, _results, _runs
from pathopipe.cli._common import app

__all__ = ["app", "main"]

_COMMANDS = (_inspect, _runs, _results, _planning)  # importing them registers their commands


def main() -> None:
    app()
