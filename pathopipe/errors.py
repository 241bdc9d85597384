"""The whole pathopipe exception hierarchy.

Each class also inherits the built-in type callers already catch, so ``except OSError``
around slide access or ``except ValueError`` around configuration keep working.
"""

from __future__ import annotations

from collections.abc import Mapping


class PathopipeError(Exception):
    """Base class of every error pathopipe raises on purpose."""


class ConfigError(PathopipeError, ValueError):
    """A configuration value, file or command-line override is invalid."""


class SlideOpenError(PathopipeError, OSError):
    """No slide backend could open a file; carries each backend's reason."""

    def __init__(self, path: str, causes: Mapping[str, str]) -> None:
        self.path = path
        self.causes = dict(causes)
        reasons = "; ".join(f"{name}: {why}" for name, why in self.causes.items()) or "no backend tried"
        super().__init__(f"cannot open slide {path!r} ({reasons})")


class SlideReadError(PathopipeError, OSError):
    """A slide opened but a region could not be read (truncated or corrupt tile data)."""


class SlideMetadataError(PathopipeError, ValueError):
    """A slide lacks metadata the run needs (e.g. microns per pixel)."""


class TilingError(PathopipeError, ValueError):
    """The requested tile geometry does not fit the slide."""


class StoreError(PathopipeError, OSError):
    """A slide store is missing, incomplete, or was written with another configuration."""


class CorruptShardError(StoreError):
    """A shard's index fails its checksum, or points past the shard's data."""


class IncompleteStoreError(StoreError, RuntimeError):
    """A stage's tasks did not write every row of its output, which is left incomplete."""


class RunLockedError(PathopipeError, RuntimeError):
    """Another run holds the output folder."""


class WeightsError(PathopipeError, OSError):
    """Model weights are missing (offline) or do not fit the model."""


class BackendUnavailableError(PathopipeError, ImportError):
    """An optional dependency is missing; the message names the extra to install."""


class NotFoundError(PathopipeError, KeyError):
    """Something asked for by name is not there (a slide, a model's features in a run); the
    message says what is there instead."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class UnknownNameError(NotFoundError):
    """A name is not in a registry; the message lists the known names."""


class ClusterLostError(PathopipeError, RuntimeError):
    """The connection to the Dask scheduler was lost mid-run (the run, not a slide, failed)."""


class MissingProgramError(PathopipeError, OSError):
    """An external program a command needs is not installed (headless Chromium for ``--pdf``);
    the message names it and how to install or point to it."""


class RenderError(PathopipeError, RuntimeError):
    """An external renderer ran but did not produce its output (the message carries its own)."""


class RegionsError(PathopipeError, ValueError):
    """An annotations file is missing, of an unknown format or malformed; the message names
    the file and what is wrong."""
