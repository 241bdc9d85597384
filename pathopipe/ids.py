"""Stable, safe slide ids derived from file names, and slide discovery."""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pathopipe.errors import ConfigError
from pathopipe.fileio import is_url

logger = logging.getLogger(__name__)

SLIDE_SUFFIXES = (
    ".svs", ".tif", ".tiff", ".ndpi", ".vms", ".vmu", ".scn", ".mrxs", ".bif", ".svslide", ".qptiff",
    ".dcm", ".dicom",
)  # fmt: skip
DICOM_SUFFIXES = (".dcm", ".dicom")  # a DICOM WSI is a series of files: one slide per series
_MULTI_SUFFIXES = (".ome.tif", ".ome.tiff")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


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
                full = os.fspath(paths[i])
                full = full if is_url(full) else os.fspath(Path(full).absolute())
                digest = hashlib.sha1(full.encode()).hexdigest()[:8]
                ids[i] = f"{base[i]}-{digest}"
    return ids


_GLOB_CHARS = frozenset("*?[")
SLIDE_LIST_COLUMNS = ("path", "source", "slide")


def read_slide_list(csv_path: Path) -> list[Path]:
    """Slide paths from a CSV file with a ``path`` (or ``source``/``slide``) column; relative
    paths are taken from the CSV's folder. A pathopipe manifest works too."""
    import csv

    with csv_path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        column = next((c for c in SLIDE_LIST_COLUMNS if c in (reader.fieldnames or [])), None)
        if column is None:
            raise ConfigError(
                f"{csv_path}: a slide list needs a column named one of {', '.join(SLIDE_LIST_COLUMNS)}; "
                f"found {reader.fieldnames}"
            )
        rows = [
            (line, row[column].strip())
            for line, row in enumerate(reader, start=2)
            if (row.get(column) or "").strip()
        ]
    paths = [
        (line, p if p.is_absolute() else csv_path.parent / p) for line, p in ((n, Path(r)) for n, r in rows)
    ]
    # reported before the run starts; each such slide then fails in its own manifest row
    seen: dict[Path, int] = {}
    for line, path in paths:
        if path.absolute() in seen:
            logger.warning("%s:%d: %s is listed again (first on line %d); it runs once",
                           csv_path, line, path, seen[path.absolute()])  # fmt: skip
        seen.setdefault(path.absolute(), line)
    unreadable = [f"{csv_path.name}:{line}: {path}" for line, path in paths if not os.access(path, os.R_OK)]
    if unreadable:
        logger.warning("%d listed slide(s) missing or unreadable (they will fail): %s",
                       len(unreadable), "; ".join(unreadable[:10]))  # fmt: skip
    return [path for _, path in paths]


def _is_slide_name(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(SLIDE_SUFFIXES)


def _is_dicom(name: str) -> bool:
    return name.lower().endswith(DICOM_SUFFIXES)


def dicom_series(files: Sequence[Path]) -> list[Path]:
    """One file per DICOM series among ``files`` (of one folder), which OpenSlide opens as the
    whole series (it reads the rest of the series from the same folder): a VOLUME image where
    there is one. Files that are not readable DICOM stay slides of their own (they fail in
    their own manifest row)."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    series: dict[str, list[tuple[bool, Path]]] = {}
    for path in sorted(files):
        try:
            header = pydicom.dcmread(
                path, stop_before_pixels=True, specific_tags=["SeriesInstanceUID", "ImageType"]
            )
        except (InvalidDicomError, OSError, ValueError, EOFError):
            series[f"unreadable:{path}"] = [(True, path)]
            continue
        uid = str(header.get("SeriesInstanceUID") or f"no-series:{path}")
        kind = [str(k).upper() for k in (header.get("ImageType") or [])]
        series.setdefault(uid, []).append(("VOLUME" in kind, path))
    return sorted(min(members, key=lambda m: (not m[0], m[1]))[1] for members in series.values())


def find_remote_slides(url: str, options: Mapping[str, Any] | None = None) -> list[str]:
    """Slides under a URL: one object, every slide object under a prefix, or a glob's matches."""
    from pathopipe import fileio

    fileio.check_bucket(url, options, write=False)  # endpoint, bucket and credentials, clearly
    fs, inner = fileio.filesystem(url, options)
    protocol = url.split("://", 1)[0]
    if _GLOB_CHARS & set(inner):
        names = sorted(fs.glob(inner))
        if not names:
            raise ConfigError(f"pattern {url!r} matches no object")
    elif fs.isfile(inner):
        names = [inner]
    else:
        names = [
            name for name in sorted(fs.find(inner))
            if _is_slide_name(name.rsplit("/", 1)[-1]) and "/." not in name[len(inner):]
        ]  # fmt: skip
        # DICOM objects: one slide per folder (their headers are not read over the network)
        first = {name.rsplit("/", 1)[0]: name for name in reversed(names) if _is_dicom(name)}
        names = [n for n in names if not _is_dicom(n) or first[n.rsplit("/", 1)[0]] == n]
    return [f"{protocol}://{name}" for name in names]


def find_slides(
    inputs: Iterable[str | os.PathLike[str]], storage_options: Mapping[str, Any] | None = None
) -> list[Path | str]:
    """Slides from files, folders (searched recursively), glob patterns, CSV slide lists and URLs
    (``s3://bucket/prefix/``: every slide object under it), sorted. In a folder, DICOM files
    (``.dcm``, ``.dicom``) count once per series (:func:`dicom_series`).

    Hidden files and folders are skipped; files given directly or listed in a CSV are taken
    whatever their suffix, so that a bad file named on purpose fails visibly (in its slide's row).
    """
    import glob

    found: list[Path] = []
    urls: list[str] = []
    for item in inputs:
        if is_url(item):
            urls.extend(find_remote_slides(os.fspath(item), storage_options))
            continue
        path = Path(item)
        if path.is_dir():
            for root, dirs, files in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                names = sorted(n for n in files if _is_slide_name(n))
                found.extend(Path(root) / n for n in names if not _is_dicom(n))
                dicom = [Path(root) / n for n in names if _is_dicom(n)]
                if dicom:
                    found.extend(dicom_series(dicom))
        elif path.suffix.lower() == ".csv" and path.is_file():
            found.extend(read_slide_list(path))
        elif path.exists():
            found.append(path)
        elif _GLOB_CHARS & set(os.fspath(path)):
            matches = sorted(glob.glob(os.fspath(path), recursive=True))
            if not matches:
                raise ConfigError(f"pattern {os.fspath(path)!r} matches no file")
            found.extend(Path(m) for m in matches if Path(m).is_file())
        else:
            raise ConfigError(f"input {os.fspath(path)!r} does not exist")
    unique: list[Path | str] = [*sorted({p.absolute(): p for p in found}), *sorted(set(urls))]
    if not unique:
        listed = ", ".join(map(str, inputs))
        raise ConfigError(f"no slides found in {listed} (looked for {', '.join(SLIDE_SUFFIXES)})")
    return unique
