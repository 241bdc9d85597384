"""The report's long series as CSV files beside it (``OUT/report/*.csv``, named by
:attr:`~pathopipe.output.layout.RunLayout.REPORT_SERIES`): cost and hardware curves, failures,
tiles per slide and worker utilisation. The documents link them instead of long tables."""

from __future__ import annotations

import csv
import io
from typing import Any

from pathopipe import fileio
from pathopipe.output.layout import RunLayout
from pathopipe.output.manifest import SlideRecord

__all__ = ["write_series"]


def _rows(
    summary: dict[str, Any], records: list[SlideRecord]
) -> dict[str, tuple[list[str], list[list[Any]]]]:
    series: dict[str, tuple[list[str], list[list[Any]]]] = {}
    if summary.get("costs"):
        header = [
            "profile",
            "currency",
            "example_prices",
            "slides_per_day",
            "buy_per_year",
            "rent_per_year",
            "own_per_year",
        ]
        rows = [
            [name, c["currency"], c["example_prices"], p["slides_per_day"], p["buy"], p["rent"], p["own"]]
            for name, c in summary["costs"].items()
            for p in c["curve"]
        ]
        series["cost_curve"] = (header, rows)
    if summary.get("sizing"):
        curve = summary["sizing"]["hardware_curve"]
        header = ["slides_per_day", "peak_slides_per_hour", "cpu_cores", "gpus"]
        series["hardware_curve"] = (header, [[p[h] for h in header] for p in curve])
    failed = [r for r in records if r.status == "failed"]
    if failed:
        series["failures"] = (
            ["slide_id", "stage", "source", "error"],
            [[r.slide_id, r.stage, r.source, r.error] for r in failed],
        )
    if records:
        series["tiles_per_slide"] = (
            ["slide_id", "status", "tiles"],
            [[r.slide_id, r.status, r.n_tiles] for r in records],
        )
    if summary["utilisation"]:
        series["workers"] = (["worker", "busy_share"], [[w, u] for w, u in summary["utilisation"].items()])
    return series


def write_series(
    out: str, summary: dict[str, Any], records: list[SlideRecord], options: fileio.Options = None
) -> dict[str, str]:
    """Write every series that has data; their paths relative to the report, by name."""
    layout = RunLayout(out)
    written = {}
    for name, (header, rows) in _rows(summary, records).items():
        buffer = io.StringIO(newline="")
        writer = csv.writer(buffer)
        writer.writerow(header)
        writer.writerows(["" if v is None else v for v in row] for row in rows)
        filename = RunLayout.REPORT_SERIES[name]
        fileio.write_bytes(layout.report_file(filename), buffer.getvalue().encode("utf-8"), options)
        written[name] = filename
    return written
