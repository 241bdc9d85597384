"""Render a summary as ``report.md``, ``summary.json`` and one self-contained ``report.html``
(plots as inline SVG, no scripts, no external files).

Every number of ``summary.json`` is printed in both documents with :func:`format_number`, next
to a label saying what it is; the plots show the same data.
"""

from __future__ import annotations

import html
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pathopipe import storage
from pathopipe.report.summary import build_summary

REPORT_DIR = "report"


def format_number(value: Any) -> str:
    """One way to print a number everywhere in the report (and in its tests)."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value != value:  # NaN
            return "nan"
        magnitude = abs(value)
        if magnitude >= 1000:
            return f"{value:,.0f}"
        if magnitude >= 1 or magnitude == 0:
            return f"{value:.2f}"
        return f"{value:.3g}"
    return str(value)


@dataclass
class Section:
    title: str
    text: str = ""
    rows: list[tuple[str, Any]] = field(default_factory=list)  # label, value
    table: tuple[list[str], list[list[Any]]] | None = None  # header, rows
    plot: str | None = None  # SVG markup
    links: list[tuple[str, str]] = field(default_factory=list)  # label, path relative to the report


def _flatten(prefix: str, value: Any, rows: list[tuple[str, Any]]) -> None:
    if isinstance(value, dict):
        for key, sub in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), sub, rows)
    elif isinstance(value, list):
        for i, sub in enumerate(value):
            _flatten(f"{prefix}[{i}]", sub, rows)
    else:
        rows.append((prefix, value))


def _svg(fig: Any) -> str:
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    text = buffer.getvalue()
    return text[text.index("<svg") :]


def _plots(summary: dict[str, Any], metrics: Any, tiles: list[int]) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams["svg.fonttype"] = "none"
    plots: dict[str, str] = {}
    colours = {"tiles": "#4c72b0", "features": "#dd8452"}
    rows = metrics[metrics["run_id"] == summary["run_id"]]
    if len(rows):
        t0 = rows["start"].min()
        workers = sorted(rows["worker"].unique())
        fig, ax = plt.subplots(figsize=(9, 0.4 * len(workers) + 1.5))
        for i, worker in enumerate(workers):
            for stage, group in rows[rows["worker"] == worker].groupby("stage"):
                spans = list(zip(group["start"] - t0, group["seconds"], strict=True))
                ax.broken_barh(spans, (i - 0.4, 0.8), color=colours.get(str(stage), "grey"), label=str(stage))
        handles = {h.get_label(): h for h in ax.get_legend_handles_labels()[0]}
        ax.legend(handles.values(), handles.keys(), loc="upper right")
        ax.set_yticks(range(len(workers)), workers)
        ax.set_xlabel("seconds since the first task")
        ax.set_title("Tasks per worker over time")
        plots["timeline"] = _svg(fig)
    if tiles:
        fig, ax = plt.subplots(figsize=(6, 3))
        ax.hist(tiles, bins=min(30, max(5, len(tiles) // 2)), color="#4c72b0")
        ax.set_xlabel("tiles per slide")
        ax.set_ylabel("slides")
        ax.set_title("Tiles per slide")
        plots["tiles_per_slide"] = _svg(fig)
    stages = summary["stages"]
    if stages:
        fig, ax = plt.subplots(figsize=(6, 3))
        names = list(stages)
        bottom = [0.0] * len(names)
        step_names = sorted({s for st in stages.values() for s in st["steps_seconds"]})
        for step in step_names:
            values = [stages[n]["steps_seconds"].get(step, 0.0) for n in names]
            ax.bar(names, values, bottom=bottom, label=step)
            bottom = [b + v for b, v in zip(bottom, values, strict=True)]
        ax.set_ylabel("seconds (summed over tasks)")
        ax.set_title("Where each stage spends its time")
        ax.legend(fontsize=7)
        plots["steps"] = _svg(fig)
    costs = summary.get("costs")
    if costs:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        curve = costs["curve"]
        x = [p["slides_per_day"] for p in curve]
        ax.plot(x, [p["rent"] for p in curve], label="rent")
        ax.plot(x, [p["own"] for p in curve], label="own")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("slides per day")
        ax.set_ylabel(f"cost per year ({costs['currency']})")
        ax.set_title("Annual cost" + (" (EXAMPLE prices)" if costs["example_prices"] else ""))
        ax.legend()
        plots["costs"] = _svg(fig)
    return plots


def _sections(summary: dict[str, Any], plots: dict[str, str]) -> list[Section]:
    run = summary["run"]
    sections = [
        Section(
            "Run",
            f"Output folder `{summary['out']}`, run `{summary['run_id']}` (the latest run in "
            "metrics.parquet; a resumed run reports its own tasks).",
            [(k, v) for k, v in _flat(run)],
        )
    ]
    stage_text = (
        "Busy seconds: summed wall time of a stage's tasks. Core-seconds: busy seconds x the cores "
        "a task keeps busy (1 for tiling, the torch threads of a CPU model). Tiles per busy second: "
        "the rate of one task slot. Tiles per second: tiles over the stage's wall-clock span."
    )
    for name, stage in summary["stages"].items():
        sections.append(Section(f"Stage `{name}`", stage_text, [(k, v) for k, v in _flat(stage)]))
    sections.append(
        Section(
            "Bottleneck and utilisation",
            "The bottleneck is the stage with the most busy seconds. Utilisation: a worker's busy "
            "seconds over the run's span x its threads. GPU idle fraction: 1 - time in model calls / "
            "(span x GPUs), on CUDA only.",
            [
                ("bottleneck_stage", summary["bottleneck_stage"]),
                ("gpu_idle_fraction", summary["gpu_idle_fraction"]),
                *_flat(summary["utilisation"], "utilisation"),
            ],
            plot=plots.get("timeline"),
        )
    )
    sections.append(Section("Slides", "", list(_flat(summary["slides"])), plot=plots.get("tiles_per_slide")))
    sections.append(
        Section(
            "Storage",
            "Bytes on disk of the complete slide stores: tiles (everything but features) and each "
            "model's features; growth per year = stored bytes per slide x slides per day x 365.",
            list(_flat(summary["storage"])),
        )
    )
    if summary.get("object_storage"):
        sections.append(
            Section(
                "Object storage",
                "Requests and bytes each slide exchanged with object storage (S3), counted by the "
                "workers on every request: slide reads, store writes, metadata. Price egress with "
                "bytes read and requests with the request counts.",
                list(_flat(summary["object_storage"])),
            )
        )
    sections.append(
        Section(
            "Per slide",
            "Core-seconds and GPU-seconds per slide summed over the stages; stored bytes per slide.",
            list(_flat(summary["per_slide"])),
            plot=plots.get("steps"),
        )
    )
    if summary.get("capacity"):
        sections.append(Section("Capacity", summary["capacity"]["formula"], list(_flat(summary["capacity"]))))
    if summary.get("costs"):
        costs = summary["costs"]
        note = (
            "EXAMPLE prices (configs/costs/), to be replaced by real ones. "
            if costs["example_prices"]
            else ""
        )
        curve = costs["curve"]
        sections.append(
            Section(
                "Build versus buy",
                note + " ".join(f"{k}: {v}." for k, v in costs["formulas"].items()),
                [
                    (k, v)
                    for k, v in _flat({k: v for k, v in costs.items() if k not in ("curve", "formulas")})
                ],
                table=(
                    ["slides per day", "rent per year", "own per year"],
                    [[p["slides_per_day"], p["rent"], p["own"]] for p in curve],
                ),
                plot=plots.get("costs"),
            )
        )
    if summary.get("bench"):
        bench = summary["bench"]
        sections.append(
            Section(
                "Calibration (pathopipe bench)",
                "Generated slides; each trial ran the workflow on the first trial_slides of them on a "
                "fresh cluster; tiles per second from its first task to its last. The best trial's "
                "settings ran the whole workflow this report describes.",
                [(k, v) for k, v in _flat({k: v for k, v in bench.items() if k != "trials"})],
                table=(
                    ["workers", "threads per worker", "batch size", "tiles", "seconds", "tiles/s", "error"],
                    [
                        [
                            t["workers"],
                            t["threads_per_worker"],
                            t["batch_size"],
                            t["tiles"],
                            t["seconds"],
                            t["tiles_per_second"],
                            t["error"],
                        ]
                        for t in bench["trials"]
                    ],
                ),
            )
        )
    if summary.get("what_if"):
        what_if = summary["what_if"]
        sections.append(
            Section(
                "What-if for models not run (ESTIMATE)",
                what_if["formula"],
                [(k, v) for k, v in _flat({k: v for k, v in what_if.items() if k != "formula"})],
            )
        )
    return sections


def _flat(value: Any, prefix: str = "") -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = []
    _flatten(prefix, value, rows)
    return rows


def render_markdown(sections: list[Section]) -> str:
    lines = ["# pathopipe throughput and capacity report", ""]
    for section in sections:
        lines += [f"## {section.title}", ""]
        if section.text:
            lines += [section.text, ""]
        if section.rows:
            lines += ["| figure | value |", "|---|---|"]
            lines += [f"| {label} | {format_number(value)} |" for label, value in section.rows]
            lines.append("")
        if section.table:
            header, rows = section.table
            lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            lines += ["| " + " | ".join(format_number(v) for v in row) + " |" for row in rows]
            lines.append("")
        if section.links:
            lines += [f"- [{label}]({href})" for label, href in section.links]
            lines.append("")
    return "\n".join(lines)


_CSS = """body{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:0.5em 0 1.5em}td,th{border:1px solid #ccc;padding:2px 8px;
text-align:left;font-size:13px}td:last-child{text-align:right;font-variant-numeric:tabular-nums}
figure{margin:1em 0}svg{max-width:100%;height:auto}code{background:#f3f3f3;padding:0 3px}"""


def render_html(sections: list[Section]) -> str:
    parts = ["<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
             "<title>pathopipe report</title>", f"<style>{_CSS}</style></head><body>",
             "<h1>pathopipe throughput and capacity report</h1>"]  # fmt: skip
    for section in sections:
        parts.append(f"<h2>{html.escape(section.title)}</h2>")
        if section.text:
            parts.append(f"<p>{html.escape(section.text)}</p>")
        if section.plot:
            parts.append(f"<figure class='plot'>{section.plot}</figure>")
        if section.rows:
            parts.append("<table><tr><th>figure</th><th>value</th></tr>")
            parts += [f"<tr><td>{html.escape(label)}</td><td>{html.escape(format_number(value))}</td></tr>"
                      for label, value in section.rows]  # fmt: skip
            parts.append("</table>")
        if section.table:
            header, rows = section.table
            parts.append("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>")
            parts += ["<tr>" + "".join(f"<td>{html.escape(format_number(v))}</td>" for v in row) + "</tr>"
                      for row in rows]  # fmt: skip
            parts.append("</table>")
        if section.links:
            parts.append("<ul>")
            parts += [
                f"<li><a href='{html.escape(href)}'>{html.escape(label)}</a></li>"
                for label, href in section.links
            ]
            parts.append("</ul>")
    parts.append("</body></html>")
    return "\n".join(parts)


QC_DIR = "qc"  # under OUT/report/, written by `pathopipe qc`


def write_report(
    out: str | Path,
    *,
    costs: Any = None,
    slides_per_day: float | None = None,
    options: storage.Options = None,
) -> dict[str, Path | str]:
    """Build the summary of the run in ``out`` (a folder or a URL); write summary.json,
    report.md and report.html under ``OUT/report/``."""
    from pathopipe.output.manifest import read_manifest_records
    from pathopipe.output.metrics import METRICS_NAME, read_metrics

    summary = build_summary(out, costs=costs, slides_per_day=slides_per_day, options=options)
    metrics = read_metrics(storage.join(out, METRICS_NAME), options)
    records = read_manifest_records(storage.join(out, "manifest.csv"), options)
    tiles = [r.n_tiles or 0 for r in records if r.status in ("done", "skipped")]
    plots = _plots(summary, metrics, tiles)
    sections = _sections(summary, plots)
    target = storage.join(out, REPORT_DIR)
    qc = [name for name in storage.list_names(storage.join(target, QC_DIR), options) if name.endswith(".png")]
    if qc:
        sections.append(
            Section(
                "QC pictures",
                "Per slide: tissue mask and tile grid over the thumbnail, and feature maps "
                "(first three PCA components as RGB). Made by `pathopipe qc`.",
                links=[(name.removesuffix(".png"), f"{QC_DIR}/{name}") for name in qc],
            )
        )
    texts = {
        "json": ("summary.json", json.dumps(summary, indent=2)),
        "md": ("report.md", render_markdown(sections)),
        "html": ("report.html", render_html(sections)),
    }
    paths: dict[str, Path | str] = {}
    for kind, (name, text) in texts.items():
        path = storage.join(target, name)
        storage.write_bytes(path, text.encode("utf-8"), options)  # atomic: a reader never sees half
        paths[kind] = path if storage.is_url(path) else Path(path)
    return paths
