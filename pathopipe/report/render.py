"""``pathopipe report``: the summary of a run as ``summary.json``, ``report.md`` and one
self-contained ``report.html`` under ``OUT/report/`` (with ``pdf``: ``report.pdf`` too), and
the long series beside them as CSV files.

Every figure of ``summary.json`` is printed in both documents with its label, unit and
provenance (:mod:`pathopipe.report.labels`), except the long series, which are in the CSVs;
the plots show the same data.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pathopipe import fileio
from pathopipe.output.layout import RunLayout
from pathopipe.output.manifest import read_manifest_records
from pathopipe.output.metrics import read_metrics
from pathopipe.report.costs import CostProfile
from pathopipe.report.document import Section
from pathopipe.report.plots import draw_plots
from pathopipe.report.sections import build_sections
from pathopipe.report.series import write_series
from pathopipe.report.sizing import SizingAssumptions
from pathopipe.report.summary import Cohort, build_summary
from pathopipe.report.to_html import render_html
from pathopipe.report.to_markdown import render_markdown

__all__ = ["Report", "write_report"]

SERIES_TITLES = {
    "cost_curve": "Yearly cost of each option against slides per day",
    "hardware_curve": "Hardware against slides per day",
    "failures": "Failed slides with their whole errors",
    "tiles_per_slide": "Tiles of every slide",
    "workers": "Busy share of every worker",
}


@dataclass(frozen=True)
class Report:
    """What ``pathopipe report`` wrote: the files by kind (json, md, html, pdf) and the summary."""

    paths: dict[str, Path | str]
    summary: dict[str, Any]


def _pdf(layout: RunLayout, page: str, options: fileio.Options) -> Path | str:
    from pathopipe.report.pdf import print_pdf

    target = layout.report_file(RunLayout.REPORT_PDF)
    if not fileio.is_url(target):
        return print_pdf(page, target)
    with tempfile.TemporaryDirectory(prefix="pathopipe-report-") as folder:
        local = Path(folder) / RunLayout.REPORT_HTML
        local.write_bytes(fileio.read_bytes(page, options))
        printed = print_pdf(local, Path(folder) / RunLayout.REPORT_PDF)
        fileio.write_bytes(target, printed.read_bytes(), options)
    return target


def write_report(
    out: str | Path,
    *,
    costs: CostProfile | list[CostProfile] | None = None,
    slides_per_day: float | None = None,
    assumptions: SizingAssumptions | None = None,
    cohort: Cohort | None = None,
    against: list[str | Path] | None = None,
    pdf: bool = False,
    options: fileio.Options = None,
) -> Report:
    """Build the summary of the run in ``out`` (a folder or a URL); write summary.json,
    report.md, report.html and the CSV series under ``OUT/report/`` (and report.pdf with
    ``pdf``)."""
    layout = RunLayout(out)
    profiles = [costs] if isinstance(costs, CostProfile) else list(costs or [])
    summary = build_summary(
        out,
        costs=profiles,
        slides_per_day=slides_per_day,
        assumptions=assumptions,
        cohort=cohort,
        against=against,
        options=options,
    )
    metrics = read_metrics(layout.metrics, options)
    records = read_manifest_records(out, options)
    files = write_series(layout.root, summary, records, options)
    tiles = [r.n_tiles or 0 for r in records if r.status in ("done", "skipped")]
    sections = build_sections(summary, draw_plots(summary, metrics, tiles), files)
    qc = [name for name in fileio.list_names(layout.qc, options) if name.endswith(".png")]
    if qc:
        sections.append(
            Section(
                "QC pictures",
                "qc",
                text="Per slide: tissue mask and tile grid over the thumbnail, and feature "
                "maps (first three PCA components as RGB). Made by `pathopipe qc`.",
                links=[(name.removesuffix(".png"), f"{RunLayout.QC}/{name}") for name in qc],
            )
        )
    sections.append(
        Section(
            "Files beside this report",
            "files",
            text="The long series behind the plots and tables, and the "
            "summary every figure here comes from (machine keys, `schema_version`).",
            links=[(f"{SERIES_TITLES[name]} (CSV)", path) for name, path in files.items()]
            + [("Every figure, machine-readable (JSON)", RunLayout.SUMMARY_JSON)],
        )
    )
    texts = {
        "json": (RunLayout.SUMMARY_JSON, json.dumps(summary, indent=2)),
        "md": (RunLayout.REPORT_MD, render_markdown(sections)),
        "html": (RunLayout.REPORT_HTML, render_html(sections)),
    }
    paths: dict[str, Path | str] = {}
    for kind, (name, text) in texts.items():
        path = layout.report_file(name)
        fileio.write_bytes(path, text.encode("utf-8"), options)  # atomic: a reader never sees half
        paths[kind] = path if fileio.is_url(path) else Path(path)
    if pdf:
        paths["pdf"] = _pdf(layout, layout.report_file(RunLayout.REPORT_HTML), options)
    return Report(paths, summary)
