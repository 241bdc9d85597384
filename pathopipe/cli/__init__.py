"""The ``pathopipe`` command line: thin commands over the library."""

from pathopipe.cli.app import app, main

__all__ = ["app", "main"]
