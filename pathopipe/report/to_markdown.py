"""The report's sections as ``report.md``."""

from __future__ import annotations

from pathopipe.report.document import Section, format_number

__all__ = ["render_markdown"]


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
