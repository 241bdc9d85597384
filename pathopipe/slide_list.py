"""Slide lists: a CSV file naming the slides of a run, with per-slide settings.

Columns: ``path`` (or ``source`` / ``slide``; relative paths are taken from the CSV's folder),
and optionally ``slide_id`` (the store's name), ``mpp`` (the slide's µm per pixel, used instead
of its metadata and recorded as ``given``), ``annotations`` (a regions file, relative paths
from the CSV's folder), ``label`` and any other column, kept as text. Values are checked with
the row, the column and the value in the message; every setting reaches the manifest and the
slide's store. A pathopipe manifest works as a slide list (its own columns are not settings).
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pathopipe.errors import ConfigError
from pathopipe.ids import is_safe_id
from pathopipe.output.manifest import MANIFEST_COLUMNS
from pathopipe.slide.resolution import PLAUSIBLE_MPP

__all__ = [
    "IDENTITY_SETTINGS",
    "PATH_COLUMNS",
    "SlideEntry",
    "read_slide_list",
    "settings_identity",
    "settings_json",
]

logger = logging.getLogger(__name__)

PATH_COLUMNS = ("path", "source", "slide")
IDENTITY_SETTINGS = ("mpp", "annotations")  # settings that change a slide's tiles: part of its identity
NOT_SETTINGS = frozenset(MANIFEST_COLUMNS) - {"slide_id"}  # a manifest's own columns


@dataclass(frozen=True)
class SlideEntry:
    """One slide to process: its file, its id if the list gives one, its per-slide settings."""

    path: Path | str
    slide_id: str | None = None
    settings: Mapping[str, Any] = field(default_factory=dict)
    where: str = ""  # "list.csv:4", for messages

    @property
    def mpp(self) -> float | None:
        value = self.settings.get("mpp")
        return float(value) if value is not None else None


def settings_json(settings: Mapping[str, Any]) -> str:
    """Settings as compact JSON (the manifest's ``settings`` column); empty when there are none."""
    return (
        json.dumps(dict(settings), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        if settings
        else ""
    )


def _mpp(text: str, where: str) -> float:
    lo, hi = PLAUSIBLE_MPP
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (lo <= value <= hi):
        raise ConfigError(
            f"{where}, column mpp: {text!r} is not a resolution in µm per pixel ({lo:g} to {hi:g})"
        )
    return value


def _entry(csv_path: Path, line: int, row: Mapping[str, str | None], column: str) -> SlideEntry:
    where = f"{csv_path}:{line}"
    raw = Path(str(row[column]).strip())
    path = raw if raw.is_absolute() else csv_path.parent / raw
    settings: dict[str, Any] = {}
    slide_id = (row.get("slide_id") or "").strip() or None
    if slide_id is not None and not is_safe_id(slide_id):
        raise ConfigError(
            f"{where}, column slide_id: {slide_id!r} is not a safe id (letters, digits, '.', '_', '-'; "
            "not starting with '.'; at most 120 characters)"
        )
    carried = (row.get("settings") or "").strip()  # a pathopipe manifest's settings column
    if carried:
        try:
            settings.update(json.loads(carried))
        except (ValueError, TypeError):
            raise ConfigError(
                f"{where}, column settings: {carried!r} is not the JSON of a manifest"
            ) from None
    for name, value in row.items():
        text = (value or "").strip() if isinstance(value, str) else ""
        if name in (column, "slide_id", None) or name in NOT_SETTINGS or not text:
            continue
        if name == "mpp":
            settings["mpp"] = _mpp(text, where)
        elif name == "annotations":
            found = Path(text)
            settings["annotations"] = os.fspath(found if found.is_absolute() else csv_path.parent / found)
        else:
            settings[name] = text
    return SlideEntry(path, slide_id, settings, where)


def read_slide_list(csv_path: Path) -> list[SlideEntry]:
    """The slides of a CSV slide list, checked (see the module's docstring)."""
    with csv_path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        column = next((c for c in PATH_COLUMNS if c in (reader.fieldnames or [])), None)
        if column is None:
            raise ConfigError(
                f"{csv_path}: a slide list needs a column named one of {', '.join(PATH_COLUMNS)}; "
                f"found {reader.fieldnames}"
            )
        entries = [
            _entry(csv_path, line, row, column)
            for line, row in enumerate(reader, start=2)
            if (row.get(column) or "").strip()
        ]
    ids: dict[str, str] = {}
    for entry in entries:
        if entry.slide_id is None:
            continue
        first = ids.setdefault(entry.slide_id.lower(), entry.where)
        if first != entry.where:
            raise ConfigError(
                f"{entry.where}, column slide_id: {entry.slide_id!r} is already used on {first}"
            )
    # reported before the run starts; each such slide then fails in its own manifest row
    seen: dict[Path, str] = {}
    for entry in entries:
        path = Path(entry.path).absolute()
        if path in seen:
            logger.warning("%s: %s is listed again (first on line %s); it runs once",
                           entry.where, entry.path, seen[path].rsplit(":", 1)[-1])  # fmt: skip
        seen.setdefault(path, entry.where)
    unreadable = [f"{e.where}: {e.path}" for e in entries if not os.access(e.path, os.R_OK)]
    if unreadable:
        logger.warning("%d listed slide(s) missing or unreadable (they will fail): %s",
                       len(unreadable), "; ".join(unreadable[:10]))  # fmt: skip
    return entries


def settings_identity(settings: Mapping[str, Any]) -> str | None:
    """A short hash of the settings that change a slide's tiles (its given mpp; the bytes of its
    annotations file), recorded in its store: a store made with other ones is redone. None
    when the slide has none of them (stores made before slide lists had settings match)."""
    import hashlib

    parts: dict[str, Any] = {}
    if settings.get("mpp") is not None:
        parts["mpp"] = float(settings["mpp"])
    if settings.get("annotations"):
        try:
            parts["annotations"] = hashlib.sha256(Path(settings["annotations"]).read_bytes()).hexdigest()
        except OSError:
            parts["annotations"] = f"unreadable:{settings['annotations']}"
    if not parts:
        return None
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]
