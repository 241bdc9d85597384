"""One small generic registry for every pluggable kind: slide backends, tissue detectors, tile
codecs, cluster kinds and model presets.

Entries are registered by decorator in the module that defines them, with their metadata kept
in the entry (not set onto the object). A registry may name an entry-point group: installed
packages then add entries (``[project.entry-points."pathopipe.slide_backends"]``, ...); each
entry point names an object registered under the entry point's name, or a module that registers
its entries itself when imported. They are loaded the first time the registry is listed or an
unknown name is looked up.
"""

from __future__ import annotations

import difflib
import logging
import types
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pathopipe.errors import UnknownNameError

__all__ = ["Entry", "Registry", "did_you_mean"]

T = TypeVar("T")
logger = logging.getLogger(__name__)


def did_you_mean(name: str, known: Iterable[str], *, n: int = 3, show: Callable[[str], str] = repr) -> str:
    """``"; did you mean 'x', 'y'?"`` for the (at most ``n``) close matches of ``name`` among
    ``known``, or ``""``: the one way pathopipe suggests a name."""
    close = difflib.get_close_matches(name, list(known), n=n)
    return f"; did you mean {', '.join(map(show, close))}?" if close else ""


@dataclass(frozen=True)
class Entry(Generic[T]):
    """A registered item with its metadata (kept here, not set onto the object)."""

    name: str
    obj: T
    description: str = ""
    extra: str | None = None  # pip extra that provides its dependencies, if any
    metadata: dict[str, Any] = field(default_factory=dict)
    plugin: str | None = None  # the distribution that added it through an entry point


class Registry(Generic[T]):
    """Name -> object mapping with decorator registration and helpful unknown-name errors."""

    def __init__(self, kind: str, *, entry_point_group: str | None = None) -> None:
        self.kind = kind
        self.entry_point_group = entry_point_group
        self._entries: dict[str, Entry[T]] = {}
        self._plugins_loaded = entry_point_group is None

    def register(
        self, name: str, *, description: str = "", extra: str | None = None, **metadata: Any
    ) -> Callable[[T], T]:
        """Decorator registering ``obj`` under ``name``."""

        def decorator(obj: T) -> T:
            self.add(name, obj, description=description, extra=extra, **metadata)
            return obj

        return decorator

    def add(
        self,
        name: str,
        obj: T,
        *,
        description: str = "",
        extra: str | None = None,
        plugin: str | None = None,
        **metadata: Any,
    ) -> Entry[T]:
        """Register ``obj`` under ``name`` (a second entry of the same name is an error)."""
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        entry = Entry(name, obj, description, extra, dict(metadata), plugin)
        self._entries[name] = entry
        return entry

    def load_plugins(self) -> None:
        """Add the entries of installed packages' entry points (once; a broken plug-in is logged
        and skipped, never fatal)."""
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        from importlib.metadata import entry_points

        for point in entry_points(group=str(self.entry_point_group)):
            if point.name in self._entries:
                continue
            try:
                obj = point.load()
            except Exception as err:  # noqa: BLE001 - a broken plug-in must not break pathopipe
                logger.warning("cannot load %s plug-in %r (%s): %s", self.kind, point.name, point.value, err)
                continue
            if point.name not in self._entries and not isinstance(obj, types.ModuleType):
                distribution = getattr(point.dist, "name", None)
                description = (getattr(obj, "__doc__", None) or "").strip().split("\n")[0]
                self.add(point.name, obj, description=description, plugin=distribution)

    def entry(self, name: str) -> Entry[T]:
        """Return the entry for ``name``, or raise listing the known names and close matches."""
        if name not in self._entries:
            self.load_plugins()
        try:
            return self._entries[name]
        except KeyError:
            known = sorted(self._entries)
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}; known: {', '.join(known)}{did_you_mean(name, known)}"
            ) from None

    def get(self, name: str) -> T:
        return self.entry(name).obj

    def names(self) -> list[str]:
        self.load_plugins()
        return list(self._entries)

    def __iter__(self) -> Iterator[Entry[T]]:
        self.load_plugins()
        return iter(list(self._entries.values()))

    def __contains__(self, name: object) -> bool:
        if name not in self._entries:
            self.load_plugins()
        return name in self._entries
