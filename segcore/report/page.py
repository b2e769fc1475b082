"""The HTML page: one self-contained file (styles inline, figures embedded, no scripts)."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

CSS = """
body { font-family: system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif; margin: 2rem auto; max-width: 1200px;
       color: #222; padding: 0 1rem; }
h1 { border-bottom: 2px solid #444; padding-bottom: .3rem; }
h2 { margin-top: 2.5rem; border-bottom: 1px solid #bbb; }
nav a { margin-right: 1rem; }
table.results { border-collapse: collapse; margin: .5rem 0 1.5rem; font-size: .9rem; }
table.results th, table.results td { border: 1px solid #ccc; padding: .25rem .6rem; text-align: right; }
table.results th[scope=row], table.results thead th:first-child { text-align: left; }
table.results thead th { background: #f0f0f0; }
table.results strong { color: #0b5394; }
p.note { color: #555; font-size: .85rem; margin: .2rem 0; }
figure { margin: 1rem 0 2rem; }
figure img { max-width: 100%; height: auto; border: 1px solid #ddd; }
figcaption { color: #444; font-size: .9rem; }
details { margin: 1rem 0; }
table.tidy { border-collapse: collapse; font-size: .75rem; }
table.tidy td, table.tidy th { border: 1px solid #ddd; padding: .1rem .4rem; }
"""


def figure_html(png: Path, caption: str, svg_href: str | None = None) -> str:
    """A figure with the PNG embedded (base64), so the page is one self-contained file."""
    data = base64.b64encode(png.read_bytes()).decode("ascii")
    link = f' (<a href="{html.escape(svg_href)}">SVG</a>)' if svg_href else ""
    return (
        f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{html.escape(caption)}{link}</figcaption></figure>"
    )


def tidy_html(tidy: pd.DataFrame, max_rows: int) -> str:
    """The tidy table as HTML (values as Python's shortest exact float text)."""
    e = html.escape
    shown = tidy if len(tidy) <= max_rows else tidy.iloc[:max_rows]
    head = "".join(f"<th>{e(c)}</th>" for c in tidy.columns)
    body = []
    for row in shown.itertuples(index=False):
        cells = [repr(float(v)) if isinstance(v, float) else str(v) for v in row]
        body.append("<tr>" + "".join(f"<td>{e(c)}</td>" for c in cells) + "</tr>")
    note = (
        ""
        if len(shown) == len(tidy)
        else f'<p class="note">First {max_rows} of {len(tidy)} rows; all rows are in metrics_tidy.csv.</p>'
    )
    return (
        f"<details><summary>Every number ({len(tidy)} rows: metrics_tidy.csv, metrics_tidy.parquet)</summary>{note}"
        f'<table class="tidy" id="tidy"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></details>'
    )


def page_html(title: str, intro: str, sections: Sequence[tuple[str, str, str]], tidy_block: str) -> str:
    """The whole page: ``sections`` are (anchor, heading, inner HTML), then the tidy table when
    given. No scripts, no external stylesheets, fonts or images."""
    e = html.escape
    if tidy_block:
        sections = [*sections, ("data", "All numbers", tidy_block)]
    nav = " ".join(f'<a href="#{e(a)}">{e(h)}</a>' for a, h, _ in sections)
    body = "\n".join(f'<section id="{e(a)}"><h2>{e(h)}</h2>\n{inner}\n</section>' for a, h, inner in sections)
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{e(title)}</title><style>{CSS}</style></head><body>\n<h1>{e(title)}</h1>\n"
        f"<p>{e(intro)}</p>\n<nav>{nav}</nav>\n{body}\n</body></html>\n"
    )
