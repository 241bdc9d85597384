"""The report's sections as one self-contained ``report.html`` (plots as inline SVG, no
scripts, no external files)."""

from __future__ import annotations

import html

from pathopipe.report.document import Section, format_number

__all__ = ["render_html"]

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
