"""Stable, safe slide ids: derived from file names, or given by a slide list."""

from __future__ import annotations

import hashlib
import os
import re
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from pathopipe.fileio import is_url

__all__ = ["DICOM_SUFFIXES", "SAFE_ID", "assign_ids", "is_safe_id", "slide_ids"]

DICOM_SUFFIXES = (".dcm", ".dicom")  # a DICOM WSI is a series of files: one slide per series
_MULTI_SUFFIXES = (".ome.tif", ".ome.tiff")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
SAFE_ID = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,119}$")  # letters, digits, . _ -; no leading dot


def is_safe_id(text: str) -> bool:
    """Whether ``text`` can name a store under ``OUT/slides`` (it cannot escape the folder)."""
    return bool(SAFE_ID.match(text)) and text not in (".", "..")


def _stem(path: Path) -> str:
    name = path.name
    if name.lower().endswith(DICOM_SUFFIXES) and path.parent.name:
        return path.parent.name  # a DICOM slide is its series, named by its folder
    for suffix in _MULTI_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem if path.suffix else name


def _sanitise(stem: str) -> str:
    safe = _UNSAFE.sub("_", stem).strip("._-")
    return safe[:120] or "slide"


def _digest(path: str | os.PathLike[str]) -> str:
    full = os.fspath(path)
    full = full if is_url(full) else os.fspath(Path(full).absolute())
    return hashlib.sha1(full.encode()).hexdigest()[:8]


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
                ids[i] = f"{base[i]}-{_digest(paths[i])}"
    return ids


def assign_ids(paths: Sequence[str | os.PathLike[str]], given: Sequence[str | None]) -> list[str]:
    """Ids for ``paths``: the ``given`` one where there is one (checked safe and unique by the
    slide list), else derived as :func:`slide_ids` does, with a hash suffix where a derived id
    would equal a given one."""
    derived = slide_ids(paths)
    taken = {g.lower() for g in given if g}
    ids = []
    for path, mine, fallback in zip(paths, given, derived, strict=True):
        if mine:
            ids.append(mine)
        elif fallback.lower() in taken:
            ids.append(f"{fallback}-{_digest(path)}")
        else:
            ids.append(fallback)
    return ids
