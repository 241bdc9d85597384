"""Finding slides: files, folders (searched recursively; DICOM files once per series), glob
patterns, CSV slide lists (with per-slide settings, :mod:`pathopipe.slide_list`) and URLs."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pathopipe.errors import ConfigError
from pathopipe.fileio import is_url
from pathopipe.ids import DICOM_SUFFIXES
from pathopipe.slide_list import SlideEntry, read_slide_list

__all__ = [
    "SLIDE_SUFFIXES",
    "dicom_series",
    "find_remote_slides",
    "find_slide_entries",
    "find_slides",
    "source_bytes",
]

logger = logging.getLogger(__name__)

SLIDE_SUFFIXES = (
    ".svs", ".tif", ".tiff", ".ndpi", ".vms", ".vmu", ".scn", ".mrxs", ".bif", ".svslide", ".qptiff",
    *DICOM_SUFFIXES, ".vsi",  # found to be refused by name: an Olympus VSI's TIFF is only an overview
)  # fmt: skip
_GLOB_CHARS = frozenset("*?[")


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


def source_bytes(path: str | Path, options: Mapping[str, Any] | None = None) -> int:
    """Bytes of a slide with every file it is made of: a DICOM file's whole series (the files of
    its folder with its SeriesInstanceUID), a MIRAX ``.mrxs`` with its data folder; one file
    otherwise (and for URLs)."""
    from pathopipe import fileio

    if fileio.is_url(path):
        return fileio.size(path, options)
    path = Path(path)
    if _is_dicom(path.name):
        return sum(member.stat().st_size for member in _series_members(path))
    data = path.with_suffix("")
    if path.suffix.lower() == ".mrxs" and data.is_dir():
        return path.stat().st_size + fileio.total_bytes(data)
    return path.stat().st_size


def _series_members(path: Path) -> list[Path]:
    """The DICOM files of ``path``'s folder in its series (``path`` alone when unreadable)."""
    import pydicom

    def uid(file: Path) -> str | None:
        try:
            header = pydicom.dcmread(file, stop_before_pixels=True, specific_tags=["SeriesInstanceUID"])
        except Exception:  # noqa: BLE001 - not readable DICOM: not a member
            return None
        found = header.get("SeriesInstanceUID")
        return str(found) if found else None

    own = uid(path)
    if own is None:
        return [path]
    return [f for f in sorted(path.parent.iterdir()) if f.is_file() and _is_dicom(f.name) and uid(f) == own]


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


def find_slide_entries(
    inputs: Iterable[str | os.PathLike[str]], storage_options: Mapping[str, Any] | None = None
) -> list[SlideEntry]:
    """Slides from files, folders (searched recursively), glob patterns, CSV slide lists (with
    their per-slide settings) and URLs (``s3://bucket/prefix/``: every slide object under it),
    sorted by path; a path found twice counts once (its first entry). In a folder, DICOM files
    (``.dcm``, ``.dicom``) count once per series (:func:`dicom_series`).

    Hidden files and folders are skipped; files given directly or listed in a CSV are taken
    whatever their suffix, so that a bad file named on purpose fails visibly (in its slide's row).
    """
    import glob

    found: list[SlideEntry] = []
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
                found.extend(SlideEntry(Path(root) / n) for n in names if not _is_dicom(n))
                dicom = [Path(root) / n for n in names if _is_dicom(n)]
                if dicom:
                    found.extend(SlideEntry(p) for p in dicom_series(dicom))
        elif path.suffix.lower() == ".csv" and path.is_file():
            found.extend(read_slide_list(path))
        elif path.exists():
            found.append(SlideEntry(path))
        elif _GLOB_CHARS & set(os.fspath(path)):
            matches = sorted(glob.glob(os.fspath(path), recursive=True))
            if not matches:
                raise ConfigError(f"pattern {os.fspath(path)!r} matches no file")
            found.extend(SlideEntry(Path(m)) for m in matches if Path(m).is_file())
        else:
            raise ConfigError(f"input {os.fspath(path)!r} does not exist")
    unique: dict[Path, SlideEntry] = {}
    for entry in found:
        unique.setdefault(Path(entry.path).absolute(), entry)
    entries = [unique[key] for key in sorted(unique)] + [SlideEntry(url) for url in sorted(set(urls))]
    if not entries:
        listed = ", ".join(map(str, inputs))
        raise ConfigError(f"no slides found in {listed} (looked for {', '.join(SLIDE_SUFFIXES)})")
    return entries


def find_slides(
    inputs: Iterable[str | os.PathLike[str]], storage_options: Mapping[str, Any] | None = None
) -> list[Path | str]:
    """The paths of :func:`find_slide_entries`."""
    return [entry.path for entry in find_slide_entries(inputs, storage_options)]
