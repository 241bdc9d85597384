"""One small generic registry for every pluggable kind (slide backends, tissue detectors, ...)."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pathopipe.errors import UnknownNameError

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    """A registered item with its metadata (kept here, not set onto the class)."""

    name: str
    obj: T
    description: str = ""
    extra: str | None = None  # pip extra that provides its dependencies, if any
    metadata: dict[str, Any] = field(default_factory=dict)


class Registry(Generic[T]):
    """Name -> object mapping with decorator registration and helpful unknown-name errors."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def register(
        self, name: str, *, description: str = "", extra: str | None = None, **metadata: Any
    ) -> Callable[[T], T]:
        """Decorator registering ``obj`` under ``name``."""

        def decorator(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._entries[name] = Entry(name, obj, description, extra, dict(metadata))
            return obj

        return decorator

    def entry(self, name: str) -> Entry[T]:
        """Return the entry for ``name``, or raise listing the known names and close matches."""
        try:
            return self._entries[name]
        except KeyError:
            known = sorted(self._entries)
            close = difflib.get_close_matches(name, known, n=3)
            hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
            raise UnknownNameError(f"unknown {self.kind} {name!r}; known: {', '.join(known)}{hint}") from None

    def get(self, name: str) -> T:
        return self.entry(name).obj

    def names(self) -> list[str]:
        return list(self._entries)

    def __iter__(self) -> Iterator[Entry[T]]:
        return iter(self._entries.values())

    def __contains__(self, name: object) -> bool:
        return name in self._entries
