"""The report's sections as ``report.md``."""

from __future__ import annotations

from pathopipe.report.document import TITLE, Section, Table, format_number

__all__ = ["render_markdown"]


def _cell(value: object) -> str:
    return format_number(value).replace("|", "\\|").replace("\n", " ")


def _table(table: Table) -> list[str]:
    header = [*table.header, "Provenance"] if table.provenance else table.header
    lines = [f"*{table.caption}*", ""] if table.caption else []
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for i, row in enumerate(table.rows):
        cells = [_cell(v) for v in row] + ([table.provenance[i]] if table.provenance else [])
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    if table.more:
        where = f" in [{table.csv}]({table.csv})" if table.csv else ""
        lines += [f"... and {table.more:,} more rows{where}.", ""]
    elif table.csv:
        lines += [f"Also as CSV: [{table.csv}]({table.csv})", ""]
    return lines


def _section(section: Section) -> list[str]:
    lines = [f"## {section.title}", ""]
    if section.lead:
        lines += [f"**{section.lead}**", ""]
    if section.text:
        lines += [section.text, ""]
    if section.answer:
        lines += [f"**{section.answer}**", ""]
    for table in section.tables:
        lines += _table(table)
    if section.notes:
        lines += [f"- {note}" for note in section.notes] + [""]
    if section.callout:
        lines += [f"**{section.callout}**", ""]
    if section.warnings:
        lines += ["> **Warnings**", ">"] + [f"> - {w}" for w in section.warnings] + [""]
    if section.plots:
        lines += [
            f"({len(section.plots)} plot{'s' if len(section.plots) > 1 else ''}: see the HTML report)",
            "",
        ]
    if section.links:
        lines += [f"- [{label}]({href})" for label, href in section.links] + [""]
    return lines


def render_markdown(sections: list[Section]) -> str:
    lines = [f"# {TITLE}", ""]
    for section in sections:
        lines += _section(section)
    return "\n".join(lines)
