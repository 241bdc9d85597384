"""``OUT/manifest.csv``: one row per slide, rewritten atomically as slides finish."""

from __future__ import annotations

import csv
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Literal

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


MANIFEST_COLUMNS = [f.name for f in fields(SlideRecord)]


def _manifest_path(out: str | Path) -> Path:
    """``out`` itself when it names a .csv file, else ``out/manifest.csv``."""
    path = Path(out)
    return path if path.suffix == ".csv" else path / "manifest.csv"


def write_manifest(out: str | Path, records: list[SlideRecord]) -> Path:
    """Write the manifest (``OUT/manifest.csv`` or a .csv path) atomically: temporary file, rename."""
    path = _manifest_path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=MANIFEST_COLUMNS)
        writer.writeheader()
        for record in records:
            row = asdict(record)
            if isinstance(row["seconds"], float):
                row["seconds"] = f"{row['seconds']:.3f}"
            writer.writerow(row)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path


def read_manifest(out: str | Path) -> list[dict[str, str]]:
    with _manifest_path(out).open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def read_manifest_records(out: str | Path) -> list[SlideRecord]:
    """The manifest as records; empty when there is none yet."""
    if not _manifest_path(out).exists():
        return []
    records = []
    for row in read_manifest(out):
        values: dict = {name: row.get(name, "") for name in MANIFEST_COLUMNS}
        for name in ("n_tiles", "bytes", "source_bytes"):
            values[name] = int(values[name]) if values[name] not in ("", None) else None
        values["seconds"] = float(values["seconds"]) if values["seconds"] not in ("", None) else None
        records.append(SlideRecord(**values))
    return records
