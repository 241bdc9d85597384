"""The report as a document: titled sections of labelled figures, tables, plots and links,
built from a run's summary (``summary.json``). :mod:`pathopipe.report.to_markdown` and
:mod:`pathopipe.report.to_html` render the same sections, so both show every figure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pathopipe.output.layout import RunLayout

__all__ = ["Section", "build_sections", "format_number"]


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


def _flat(value: Any, prefix: str = "") -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = []
    _flatten(prefix, value, rows)
    return rows


def build_sections(summary: dict[str, Any], plots: dict[str, str]) -> list[Section]:
    run = summary["run"]
    sections = [
        Section(
            "Run",
            f"Output folder `{summary['out']}`, run `{summary['run_id']}` (the latest run in "
            f"{RunLayout.METRICS}; a resumed run reports its own tasks).",
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
