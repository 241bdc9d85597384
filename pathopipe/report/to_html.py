"""The report's sections as one self-contained ``report.html`` (plots as inline SVG, no
scripts, no external files). The decision summary is laid out to fit one 1280 x 900 screen;
``@media print`` keeps tables and plots whole on the pages of ``report.pdf``."""

from __future__ import annotations

import html
import re

from pathopipe.report.document import TITLE, Section, Table, format_number

__all__ = ["DECISION_BORDER", "render_html"]

DECISION_BORDER = "#1f4e79"  # the decision summary's frame (a test finds it on the first screen)
_CSS = """body{font-family:system-ui,sans-serif;max-width:1200px;margin:12px auto;padding:0 16px;color:#222;
font-size:14px}h1{font-size:20px;margin:4px 0 8px}h2{font-size:17px;margin:22px 0 6px}
table{border-collapse:collapse;margin:4px 0 10px}td,th{border:1px solid #ccc;padding:1px 7px;text-align:left;
font-size:13px;vertical-align:top}td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
caption{text-align:left;font-weight:600;font-size:13px;padding:2px 0}
figure{margin:8px 0}svg{max-width:100%;height:auto}code{background:#f0f0f0;padding:0 3px;font-size:12px}
.tag{font-size:11px;padding:0 4px;border-radius:3px;white-space:nowrap}.measured{background:#e3efe3}
.derived{background:#e3eaf5}.estimate{background:#efe3f5}.assumed{background:#f7ecd9}.example{background:#f7dcdc}
.given{background:#eee}
section.decision{border:3px solid BORDER;border-radius:6px;padding:4px 14px 8px;margin-bottom:16px}
section.decision h2{margin-top:6px}.lead{font-size:15px;font-weight:600;margin:2px 0}
.grid{display:grid;grid-template-columns:minmax(0,1fr) minmax(0,1fr);gap:16px}.grid table{width:100%}
.warnings{background:#fff4d6;border-left:4px solid #d9a400;padding:3px 10px;margin:6px 0}
.warnings ul{margin:2px 0;padding-left:18px}.callout{font-weight:600;margin:4px 0}
.answer{font-size:15px;background:#eef4fa;padding:3px 8px;margin:4px 0}
section.decision td:first-child{width:42%}section.decision td,section.decision th{padding:1px 5px}
.notes{margin:4px 0;padding-left:18px}p{margin:4px 0}
@page{size:A4 landscape;margin:10mm}
@media print{body{max-width:none;margin:0;font-size:12px}table,figure,.warnings{break-inside:avoid}
h2{break-after:avoid}svg{max-height:120mm}section.decision,section.decision td,section.decision th,
section.decision .lead,section.decision .answer,section.decision code{font-size:9.5px}}
""".replace("BORDER", DECISION_BORDER)


def _inline(text: str) -> str:
    """Escaped text with `code` spans."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


def _cell(value: object) -> str:
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    return (
        f"<td class='n'>{html.escape(format_number(value))}</td>"
        if numeric
        else f"<td>{_inline(format_number(value))}</td>"
    )


def _tag(provenance: str) -> str:
    classes = " ".join(sorted({p.split()[0] for p in provenance.split(" / ")}))
    return f"<td><span class='tag {classes}'>{html.escape(provenance)}</span></td>"


def _table(table: Table) -> str:
    header = [*table.header, "Provenance"] if table.provenance else table.header
    parts = ["<table>"]
    if table.caption:
        parts.append(f"<caption>{_inline(table.caption)}</caption>")
    parts.append("<tr>" + "".join(f"<th>{_inline(h)}</th>" for h in header) + "</tr>")
    for i, row in enumerate(table.rows):
        tag = _tag(table.provenance[i]) if table.provenance else ""
        parts.append("<tr>" + "".join(_cell(v) for v in row) + tag + "</tr>")
    parts.append("</table>")
    if table.more:
        where = f" in <a href='{html.escape(table.csv)}'>{html.escape(table.csv)}</a>" if table.csv else ""
        parts.append(f"<p>... and {table.more:,} more rows{where}.</p>")
    elif table.csv:
        parts.append(f"<p>Also as CSV: <a href='{html.escape(table.csv)}'>{html.escape(table.csv)}</a></p>")
    return "".join(parts)


def _section(section: Section) -> str:
    kind = " class='decision'" if section.decision else ""
    parts = [f"<section id='{section.anchor}'{kind}><h2>{html.escape(section.title)}</h2>"]
    if section.lead:
        parts.append(f"<p class='lead'>{_inline(section.lead)}</p>")
    if section.text:
        parts.append(f"<p>{_inline(section.text)}</p>")
    if section.answer:
        parts.append(f"<p class='answer'>{_inline(section.answer)}</p>")
    tables = [_table(t) for t in section.tables]
    if section.decision and len(tables) > 1:
        parts.append(
            "<div class='grid'><div>" + tables[0] + "</div><div>" + "".join(tables[1:]) + "</div></div>"
        )
    else:
        parts += tables
    if section.notes:
        parts.append(
            "<ul class='notes'>" + "".join(f"<li>{_inline(n)}</li>" for n in section.notes) + "</ul>"
        )
    if section.callout:
        parts.append(f"<p class='callout'>{_inline(section.callout)}</p>")
    if section.warnings:
        items = "".join(f"<li>{_inline(w)}</li>" for w in section.warnings)
        parts.append(f"<div class='warnings'><strong>Warnings</strong><ul>{items}</ul></div>")
    parts += [f"<figure class='plot'>{svg}</figure>" for svg in section.plots]
    if section.links:
        parts.append(
            "<ul>"
            + "".join(
                f"<li><a href='{html.escape(href)}'>{_inline(label)}</a></li>"
                for label, href in section.links
            )
            + "</ul>"
        )
    parts.append("</section>")
    return "\n".join(parts)


def render_html(sections: list[Section]) -> str:
    nav = " · ".join(f"<a href='#{s.anchor}'>{html.escape(s.title)}</a>" for s in sections[1:])
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{html.escape(TITLE)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(TITLE)}</h1>",
    ]
    parts.append(_section(sections[0]))
    parts.append(f"<p>Details: {nav}</p>")
    parts += [_section(s) for s in sections[1:]]
    parts.append("</body></html>")
    return "\n".join(parts)
