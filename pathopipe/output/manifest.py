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


MANIFEST_COLUMNS = [f.name for f in fields(SlideRecord)]


def write_manifest(out: str | Path, records: list[SlideRecord]) -> Path:
    """Write the manifest to a temporary file and rename it over the old one."""
    path = Path(out) / "manifest.csv"
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
    with (Path(out) / "manifest.csv").open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def read_manifest_records(out: str | Path) -> list[SlideRecord]:
    """The manifest as records; empty when there is none yet."""
    if not (Path(out) / "manifest.csv").exists():
        return []
    records = []
    for row in read_manifest(out):
        values: dict = {name: row.get(name, "") for name in MANIFEST_COLUMNS}
        for name in ("n_tiles", "bytes", "source_bytes"):
            values[name] = int(values[name]) if values[name] not in ("", None) else None
        values["seconds"] = float(values["seconds"]) if values["seconds"] not in ("", None) else None
        records.append(SlideRecord(**values))
    return records
