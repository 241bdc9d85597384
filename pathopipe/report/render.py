"""``pathopipe report``: the summary of a run as ``summary.json``, ``report.md`` and one
self-contained ``report.html`` under ``OUT/report/``.

Every number of ``summary.json`` is printed in both documents with
:func:`~pathopipe.report.document.format_number`, next to a label saying what it is; the plots
show the same data.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pathopipe import fileio
from pathopipe.output.layout import RunLayout
from pathopipe.output.manifest import read_manifest_records
from pathopipe.output.metrics import read_metrics
from pathopipe.report.document import Section, build_sections
from pathopipe.report.plots import draw_plots
from pathopipe.report.summary import build_summary
from pathopipe.report.to_html import render_html
from pathopipe.report.to_markdown import render_markdown

__all__ = ["write_report"]


def write_report(
    out: str | Path,
    *,
    costs: Any = None,
    slides_per_day: float | None = None,
    options: fileio.Options = None,
) -> dict[str, Path | str]:
    """Build the summary of the run in ``out`` (a folder or a URL); write summary.json,
    report.md and report.html under ``OUT/report/``."""
    layout = RunLayout(out)
    summary = build_summary(out, costs=costs, slides_per_day=slides_per_day, options=options)
    metrics = read_metrics(layout.metrics, options)
    records = read_manifest_records(out, options)
    tiles = [r.n_tiles or 0 for r in records if r.status in ("done", "skipped")]
    sections = build_sections(summary, draw_plots(summary, metrics, tiles))
    qc = [name for name in fileio.list_names(layout.qc, options) if name.endswith(".png")]
    if qc:
        sections.append(
            Section(
                "QC pictures",
                "Per slide: tissue mask and tile grid over the thumbnail, and feature maps "
                "(first three PCA components as RGB). Made by `pathopipe qc`.",
                links=[(name.removesuffix(".png"), f"{RunLayout.QC}/{name}") for name in qc],
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
    return paths
