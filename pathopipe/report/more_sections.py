"""The sections a report has only sometimes: runs side by side (``--against``), the
calibration trials of a ``pathopipe bench`` run, and what-if estimates for models not run."""

from __future__ import annotations

from typing import Any

from pathopipe.report.document import Section, Table, capped, figure_rows, scaled, value_at
from pathopipe.report.labels import humanize, label_for

__all__ = ["bench_section", "comparison_section", "what_if_section"]


def comparison_section(summary: dict[str, Any]) -> Section | None:
    comparison = summary.get("comparison")
    if not comparison:
        return None
    runs = comparison["runs"]
    section = Section(
        "Runs side by side",
        "comparison",
        text=(
            f"Each run sized for the same slides ({comparison['reference']}, median "
            f"{comparison['median_tiles']:,} "
            "tiles) from its own measured tasks, under the same assumptions and prices."
        ),
    )
    rows: list[list[Any]] = [
        ["Sized", *(r["sized"] for r in runs), ""],
        ["CPU", *(", ".join(r["hardware"]["cpu_models"]) for r in runs), ""],
        ["GPU", *(", ".join(r["hardware"]["gpu_models"]) or "none" for r in runs), ""],
    ]
    tags = ["derived", "measured", "measured"]

    def add(path: tuple[Any, ...], unit: str | None = None, tag: str | None = None) -> None:
        values = [value_at(r, path) for r in runs]
        if all(v is None for v in values):
            return
        full: tuple[Any, ...] = ("comparison", "runs", 0, *path)
        label = label_for(full)
        assert label is not None, path
        rows.append([label.text, *(scaled(full, v) for v in values), unit or label.unit])
        tags.append(tag or label.provenance)

    for key in ("workers", "cpu_cores", "gpus"):
        add(("hardware", key))
    stages = sorted({s for r in runs for s in r["stages"]})
    for stage in stages:
        rows.append(
            [f"{stage}: device", *((r["stages"].get(stage) or {}).get("device") or "-" for r in runs), ""]
        )
        tags.append("measured")
        for key in ("tiles_per_busy_second", "tiles_per_core_second", "tiles_per_gpu_second"):
            add(("stages", stage, key))
    for key in ("core_seconds", "gpu_seconds", "stored_bytes", "tiles"):
        add(("per_slide", key))
    add(("capacity_slides_per_day",))
    for key in ("cpu_cores", "gpus"):
        add(("hardware_needed", key))
    for name, cost in (summary.get("costs") or {}).items():
        tag = "example price" if cost["example_prices"] else "derived"
        for option in ("buy", "rent", "own"):
            add(("cost_per_slide", name, option), f"{cost['currency']} a slide", tag)
    section.tables.append(Table(["Figure", *(r["name"] for r in runs), "Unit"], rows, tags))
    differing = [r["name"] for r in runs if not r["same_workflow"]]
    if differing:
        section.warnings.append(
            f"{', '.join(differing)} ran other stages or models than {runs[0]['name']}: "
            "their figures measure other work."
        )
    return section


def bench_section(summary: dict[str, Any]) -> Section | None:
    bench = summary.get("bench")
    if not bench:
        return None
    section = Section(
        "Calibration (pathopipe bench)",
        "bench",
        text=(
            "Generated slides; each trial ran the workflow on the first of them on a fresh cluster; "
            "tiles per second "
            "from its first task to its last. The best trial's settings ran the whole workflow this "
            "report describes."
        ),
    )
    best = [[humanize(k), v] for k, v in bench["best"].items()]
    generated = [[humanize(k), v] for k, v in bench["generated_slides"].items()]
    section.tables.append(
        Table(["Best trial", "Value"], [*best, ["Slides each trial ran", bench["trial_slides"]]])
    )
    section.tables.append(Table(["Generated slides", "Value"], generated))
    header = ["workers", "threads_per_worker", "batch_size", "tiles", "seconds", "tiles_per_second", "error"]
    rows = [[t.get(h) for h in header] for t in bench["trials"]]
    section.tables.append(capped(Table([humanize(h) for h in header], rows), None))
    return section


def what_if_section(summary: dict[str, Any]) -> Section | None:
    what_if = summary.get("what_if")
    if not what_if:
        return None
    section = Section("What-if for models not run (ESTIMATE)", "what-if", text=what_if["formula"] + ".")
    section.tables.append(
        figure_rows(
            summary,
            [("what_if", "measured_gflops"), ("what_if", "measured_tiles_per_busy_second")],
            header=f"Measured: {what_if['measured_model']} on {what_if['device']}",
        )
    )
    rows = [
        [name, what_if["gflops"][name], rate]
        for name, rate in what_if["estimated_tiles_per_busy_second"].items()
    ]
    section.tables.append(
        Table(
            ["Model family", "GFLOPs per tile", "Tiles per second of one slot"],
            rows,
            ["estimate"] * len(rows),
        )
    )
    return section
