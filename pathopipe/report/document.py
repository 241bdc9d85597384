"""The report as a document: titled sections of labelled tables, plots, notes and links, built
from ``summary.json`` alone. :mod:`pathopipe.report.to_markdown` and
:mod:`pathopipe.report.to_html` render the same sections, so both show every figure.

The first section is the decision summary (:func:`decision_section`); the detail sections
behind it, and the whole list, come from :mod:`pathopipe.report.sections`. No table holds more than
:data:`MAX_ROWS` rows: longer series are written as CSV files beside the report and linked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pathopipe.report.decision import OPTION_NAMES
from pathopipe.report.labels import label_for, scaled
from pathopipe.report.numbers import format_number

__all__ = [
    "MAX_ROWS",
    "Section",
    "Table",
    "capped",
    "decision_section",
    "figure_rows",
    "format_number",
    "scaled",
    "value_at",
]

MAX_ROWS = 30
TITLE = "pathopipe report: what this workload needs and costs"


@dataclass
class Table:
    header: list[str]
    rows: list[list[Any]]
    provenance: list[str] | None = None  # per row, shown as a last column
    csv: str | None = None  # the whole series, relative to the report
    more: int = 0  # rows left out here (in the CSV)
    caption: str = ""


@dataclass
class Section:
    title: str
    anchor: str
    text: str = ""
    tables: list[Table] = field(default_factory=list)
    plots: list[str] = field(default_factory=list)  # SVG markup
    notes: list[str] = field(default_factory=list)  # one line each
    warnings: list[str] = field(default_factory=list)
    links: list[tuple[str, str]] = field(default_factory=list)  # label, path relative to the report
    lead: str = ""  # an emphasised first paragraph
    callout: str = ""  # an emphasised line before the warnings (the confidence)
    answer: str = ""  # the decision in one sentence, after the text
    decision: bool = False  # the first-screen summary (its own look)


def value_at(summary: dict[str, Any], path: tuple[Any, ...]) -> Any:
    """The value at ``path`` (keys and list indices) in ``summary``; None where a key is absent."""
    value: Any = summary
    for key in path:
        if isinstance(value, list):
            value = value[key] if isinstance(key, int) and key < len(value) else None
        elif isinstance(value, dict):
            value = value.get(key)
        else:
            return None
    return value


def figure_rows(
    summary: dict[str, Any],
    paths: list[tuple[Any, ...]],
    *,
    header: str = "Figure",
    provenance: str | None = None,
) -> Table:
    """A Figure / Value / Unit table of the figures at ``paths`` (those absent left out),
    labelled, scaled and tagged with their provenance by :mod:`pathopipe.report.labels`
    (or all with ``provenance``)."""
    rows, tags = [], []
    for path in paths:
        value = scaled(path, value_at(summary, path))
        label = label_for(path)
        if label is None:
            raise KeyError(f"no label for summary key {'.'.join(map(str, path))}")
        if value is None and path[-1] not in ("gpu_idle_fraction",):
            continue
        rows.append([label.text, value, label.unit])
        tags.append(provenance or label.provenance)
    return Table([header, "Value", "Unit"], rows, tags)


def capped(table: Table, csv: str | None) -> Table:
    """At most MAX_ROWS rows; the rest counted and left to ``csv``."""
    if len(table.rows) > MAX_ROWS:
        table.more = len(table.rows) - MAX_ROWS
        table.rows = table.rows[:MAX_ROWS]
        table.provenance = table.provenance[:MAX_ROWS] if table.provenance else None
    table.csv = csv
    return table


def _decision_rows(rows: list[dict[str, Any]]) -> Table:
    body = []
    for row in rows:
        value = row["value"]
        if isinstance(value, (int, float)) and not isinstance(value, bool) and row["scale"] != 1:
            value = value * row["scale"]
        body.append([row["label"], value, row["unit"]])
    return Table(["Figure", "Value", "Unit"], body, [r["provenance"] for r in rows])


def _cost_table(costs: dict[str, Any]) -> Table:
    profiles = costs["profiles"]
    header = ["Per option", *(f"{p['name']} ({p['currency']})" for p in profiles), "Unit"]
    body, tags = [], []
    for row in costs["rows"]:
        values = [row["values"][p["name"]] for p in profiles]
        if row["scale"] != 1:
            values = [v * row["scale"] if isinstance(v, (int, float)) else v for v in values]
        if row["key"] == "cheapest":
            values = [OPTION_NAMES.get(v, "-") if v else "-" for v in values]
        body.append([row["label"], *values, row["unit"]])
        distinct = sorted(set(row["provenance"].values()))
        tags.append(" / ".join(distinct))
    return Table(header, body, tags)


def decision_section(summary: dict[str, Any]) -> Section:
    """The first screen: the question, the answer per option, confidence and warnings."""
    decision = summary["decision"]
    section = Section(
        "Decision summary", "decision", lead=decision["question"], text=decision["basis"], decision=True
    )
    section.answer = decision.get("answer", "")
    hardware = decision.get("hardware", []) + decision.get("storage", []) + decision["capacity"]
    section.tables.append(_decision_rows(hardware))
    section.tables[-1].caption = "Hardware and storage the load needs"
    if decision.get("costs"):
        section.tables.append(_cost_table(decision["costs"]))
        section.tables[-1].caption = "Cost per option, for each cost profile"
    if decision.get("assumptions"):
        section.notes.append(f"Assumed: {decision['assumptions']}.")
    section.notes += decision.get("break_evens", [])
    section.callout = f"Confidence: {decision['confidence']['text']}."
    section.warnings = [w["text"] for w in decision["warnings"]]
    return section
