"""``OUT/manifest.csv``: one row per slide, rewritten atomically as slides finish."""

from __future__ import annotations

import csv
import io
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal

from pathopipe import fileio
from pathopipe.output.layout import RunLayout

Status = Literal["pending", "running", "done", "failed", "skipped"]


@dataclass
class SlideRecord:
    slide_id: str
    source: str
    status: Status = "pending"
    error: str = ""
    n_tiles: int | None = None
    bytes: int | None = None
    source_bytes: int | None = None
    seconds: float | None = None
    config_hash: str = ""
    warnings: str = ""
    stage: str = ""  # the stage that failed, or the last one reached
    timings: str = ""  # seconds per stage that ran, e.g. "tiles=3.10s features=12.40s"
    settings: str = ""  # the slide list's per-slide settings, as JSON (mpp, annotations, label, ...)


MANIFEST_COLUMNS = [f.name for f in fields(SlideRecord)]


def _manifest_path(out: str | Path) -> str:
    """``out`` itself when it names a .csv file, else ``out/manifest.csv`` (a path or a URL)."""
    text = os.fspath(out)
    return text if text.endswith(".csv") else RunLayout(text).manifest


def write_manifest(out: str | Path, records: list[SlideRecord], options: fileio.Options = None) -> str:
    """Write the manifest (``OUT/manifest.csv`` or a .csv path) atomically (see
    :func:`pathopipe.storage.write_bytes`)."""
    path = _manifest_path(out)
    fh = io.StringIO(newline="")
    writer = csv.DictWriter(fh, fieldnames=MANIFEST_COLUMNS)
    writer.writeheader()
    for record in records:
        row = asdict(record)
        if isinstance(row["seconds"], float):
            row["seconds"] = f"{row['seconds']:.3f}"
        writer.writerow(row)
    fileio.write_bytes(path, fh.getvalue().encode("utf-8"), options)
    return path


def read_manifest(out: str | Path, options: fileio.Options = None) -> list[dict[str, str]]:
    text = fileio.read_bytes(_manifest_path(out), options).decode("utf-8")
    return list(csv.DictReader(io.StringIO(text, newline="")))


def read_manifest_records(out: str | Path, options: fileio.Options = None) -> list[SlideRecord]:
    """The manifest as records; empty when there is none yet."""
    try:
        rows = read_manifest(out, options)
    except FileNotFoundError:
        return []
    records = []
    for row in rows:
        values: dict[str, Any] = {name: row.get(name, "") for name in MANIFEST_COLUMNS}
        for name in ("n_tiles", "bytes", "source_bytes"):
            values[name] = int(values[name]) if values[name] not in ("", None) else None
        values["seconds"] = float(values["seconds"]) if values["seconds"] not in ("", None) else None
        records.append(SlideRecord(**values))
    return records
