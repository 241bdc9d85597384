"""The report's plots as inline SVG, drawn with matplotlib's object API (no pyplot, no backend
switch, no change to the process's rcParams)."""

from __future__ import annotations

import io
from typing import Any

__all__ = ["draw_plots"]


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


def draw_plots(summary: dict[str, Any], metrics: Any, tiles: list[int]) -> dict[str, str]:
    """SVG plots of the summary (task timeline, tiles per slide, steps per stage, cost curve),
    by name; those without data are left out."""
    plots: dict[str, str] = {}
    colours = {"tiles": "#4c72b0", "features": "#dd8452"}
    rows = metrics[metrics["run_id"] == summary["run_id"]]
    if len(rows):
        t0 = rows["start"].min()
        workers = sorted(rows["worker"].unique())
        fig, ax = _figure(9, 0.4 * len(workers) + 1.5)
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
        fig, ax = _figure(6, 3)
        ax.hist(tiles, bins=min(30, max(5, len(tiles) // 2)), color="#4c72b0")
        ax.set_xlabel("tiles per slide")
        ax.set_ylabel("slides")
        ax.set_title("Tiles per slide")
        plots["tiles_per_slide"] = _svg(fig)
    stages = summary["stages"]
    if stages:
        fig, ax = _figure(6, 3)
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
        fig, ax = _figure(6, 3.5)
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
