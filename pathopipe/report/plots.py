"""The report's plots as inline SVG, drawn with matplotlib's object API (no pyplot, no backend
switch, no change to the process's rcParams): annual cost per option against slides per day,
hardware against slides per day, where the time of a slide goes, the task timeline per worker
and tiles per slide. Each plot's data is in ``summary.json`` or in a CSV beside the report."""

from __future__ import annotations

import io
from typing import Any

from pathopipe.report.decision import OPTION_NAMES

__all__ = ["PLOTS", "draw_plots"]

PLOTS = ("costs", "hardware", "steps", "timeline", "tiles_per_slide")  # every plot, by name
STAGE_COLOURS = {"tiles": "#4c72b0", "features": "#dd8452"}
OPTION_STYLES = {"buy": "-.", "rent": "--", "own": "-"}
PROFILE_COLOURS = ["#2a6f97", "#c44e52", "#55a868", "#8172b2"]


def _svg(fig: Any) -> str:
    import matplotlib

    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none"}):  # text stays text (searchable, small)
        fig.savefig(buffer, format="svg", bbox_inches="tight")
    text = buffer.getvalue()
    return text[text.index("<svg") :]


def _figure(width: float, height: float) -> tuple[Any, Any]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    return fig, fig.subplots()


def _cost_plot(summary: dict[str, Any]) -> str:
    costs = summary["costs"]
    fig, ax = _figure(7, 3.6)
    for i, (name, cost) in enumerate(costs.items()):
        colour = PROFILE_COLOURS[i % len(PROFILE_COLOURS)]
        x = [p["slides_per_day"] for p in cost["curve"]]
        for option, style in OPTION_STYLES.items():
            y = [p[option] for p in cost["curve"]]
            if any(v is None for v in y):
                continue
            ax.plot(x, y, style, color=colour, label=f"{OPTION_NAMES[option]} ({name})")
        for b in cost["break_evens"]:
            if b["slides_per_day"] is not None:
                ax.axvline(b["slides_per_day"], color=colour, linestyle=":", linewidth=0.8)
                ax.annotate(
                    f"{b['options'][0]}={b['options'][1]}",
                    (b["slides_per_day"], 0.02),
                    xycoords=("data", "axes fraction"),
                    rotation=90,
                    fontsize=7,
                    color=colour,
                )
    target = summary["sizing"]["slides_per_day"]
    ax.axvline(target, color="black", linewidth=1.2)
    ax.annotate(" target", (target, 0.92), xycoords=("data", "axes fraction"), fontsize=8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("slides per day")
    currencies = " / ".join(sorted({c["currency"] for c in costs.values()}))
    ax.set_ylabel(f"cost per year ({currencies})")
    example = any(c["example_prices"] for c in costs.values())
    ax.set_title("Cost per year of each option" + (" (EXAMPLE prices)" if example else ""))
    ax.legend(fontsize=7)
    return _svg(fig)


def _hardware_plot(summary: dict[str, Any]) -> str:
    sizing = summary["sizing"]
    curve = sizing["hardware_curve"]
    fig, ax = _figure(7, 3.2)
    x = [p["slides_per_day"] for p in curve]
    suffix = " (ESTIMATE)" if sizing["scenario"] == "gpu_estimate" else ""
    ax.step(x, [max(p["cpu_cores"], 0.5) for p in curve], where="post", label="CPU cores", color="#4c72b0")
    if any(p["gpus"] for p in curve):
        ax.step(x, [max(p["gpus"], 0.5) for p in curve], where="post", label="GPUs" + suffix, color="#dd8452")
    ax.axvline(sizing["slides_per_day"], color="black", linewidth=1.2)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("slides per day")
    ax.set_ylabel("needed (at the peak)")
    ax.set_title("Hardware the load needs" + suffix)
    ax.legend(fontsize=8)
    return _svg(fig)


def _steps_plot(summary: dict[str, Any]) -> str:
    stages = summary["stages"]
    fig, ax = _figure(7, 3)
    names = list(stages)
    per_slide = [max(1, stages[n]["slides"]) for n in names]
    left = [0.0] * len(names)
    steps = sorted({s for st in stages.values() for s in st["steps_seconds"]})
    for step in steps:
        values = [
            stages[n]["steps_seconds"].get(step, 0.0) / k for n, k in zip(names, per_slide, strict=True)
        ]
        ax.barh(names, values, left=left, label=step.replace("_", " "))
        left = [a + v for a, v in zip(left, values, strict=True)]
    ax.set_xlabel("seconds per slide, summed over its tasks")
    ax.set_title("Where the time of a slide goes, per stage")
    ax.legend(fontsize=7, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.25))
    return _svg(fig)


def _timeline_plot(summary: dict[str, Any], metrics: Any) -> str | None:
    rows = metrics[metrics["run_id"] == summary["run_id"]]
    if not len(rows):
        return None
    t0 = rows["start"].min()
    workers = sorted(rows["worker"].unique())
    fig, ax = _figure(9, 0.4 * min(len(workers), 40) + 1.5)
    for i, worker in enumerate(workers[:40]):
        for stage, group in rows[rows["worker"] == worker].groupby("stage"):
            spans = list(zip(group["start"] - t0, group["seconds"], strict=True))
            ax.broken_barh(
                spans, (i - 0.4, 0.8), color=STAGE_COLOURS.get(str(stage), "grey"), label=str(stage)
            )
    handles = {h.get_label(): h for h in ax.get_legend_handles_labels()[0]}
    ax.legend(handles.values(), handles.keys(), loc="upper right")
    ax.set_yticks(range(len(workers[:40])), workers[:40])
    ax.set_xlabel("seconds since the first task (gaps: a worker slot idle)")
    ax.set_title(
        "Tasks per worker over time" + (f" (first 40 of {len(workers)} workers)" if len(workers) > 40 else "")
    )
    return _svg(fig)


def draw_plots(summary: dict[str, Any], metrics: Any, tiles: list[int]) -> dict[str, str]:
    """SVG plots of the summary by name (see :data:`PLOTS`); those without data are left out."""
    plots: dict[str, str] = {}
    if summary.get("costs"):
        plots["costs"] = _cost_plot(summary)
    if summary.get("sizing"):
        plots["hardware"] = _hardware_plot(summary)
    if summary["stages"]:
        plots["steps"] = _steps_plot(summary)
    timeline = _timeline_plot(summary, metrics)
    if timeline:
        plots["timeline"] = timeline
    if tiles:
        fig, ax = _figure(6, 2.6)
        ax.hist(tiles, bins=min(30, max(5, len(tiles) // 2)), color="#4c72b0")
        ax.set_xlabel("tiles per slide")
        ax.set_ylabel("slides")
        ax.set_title("Tiles per slide")
        plots["tiles_per_slide"] = _svg(fig)
    return plots
