"""Stable, safe slide ids derived from file names, and slide discovery."""

from __future__ import annotations

import hashlib
import os
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

from pathopipe.errors import ConfigError

SLIDE_SUFFIXES = (
    ".svs", ".tif", ".tiff", ".ndpi", ".vms", ".vmu", ".scn", ".mrxs", ".bif", ".svslide", ".qptiff",
)  # fmt: skip
_MULTI_SUFFIXES = (".ome.tif", ".ome.tiff")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _stem(path: Path) -> str:
    name = path.name
    for suffix in _MULTI_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem if path.suffix else name


def _sanitise(stem: str) -> str:
    safe = _UNSAFE.sub("_", stem).strip("._-")
    return safe[:120] or "slide"


def slide_ids(paths: Sequence[str | os.PathLike[str]]) -> list[str]:
    """One id per path: the sanitised file stem, made unique deterministically.

    Ids only contain ``[A-Za-z0-9._-]`` and never start with a dot, so they cannot escape
    the output folder. Paths sharing a stem each get a suffix from a hash of their full path.
    """
    base = [_sanitise(_stem(Path(p))) for p in paths]
    groups: dict[str, list[int]] = defaultdict(list)
    for i, b in enumerate(base):
        groups[b.lower()].append(i)  # case-insensitive file systems collide too
    ids = list(base)
    for members in groups.values():
        if len(members) > 1:
            for i in members:
                digest = hashlib.sha1(os.fspath(Path(paths[i]).absolute()).encode()).hexdigest()[:8]
                ids[i] = f"{base[i]}-{digest}"
    return ids


def find_slides(inputs: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Files given directly, plus slide files found (recursively) in given folders, sorted.

    Hidden files and folders are skipped; files given directly are taken whatever their
    suffix, so that a bad file named on the command line fails visibly.
    """
    found: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            for root, dirs, files in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(files):
                    if not name.startswith(".") and name.lower().endswith(SLIDE_SUFFIXES):
                        found.append(Path(root) / name)
        elif path.exists():
            found.append(path)
        else:
            raise ConfigError(f"input {os.fspath(path)!r} does not exist")
    unique = sorted({p.absolute(): p for p in found})
    if not unique:
        listed = ", ".join(map(str, inputs))
        raise ConfigError(f"no slides found in {listed} (looked for {', '.join(SLIDE_SUFFIXES)})")
    return unique
