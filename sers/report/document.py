"""A small document model for `sers report`, rendered twice: self-contained HTML and Markdown.

The report is built once as sections of blocks (paragraphs, tables, figures, code);
:func:`render_html` and :func:`render_markdown` turn the same blocks into the two files,
so the HTML page and its Markdown twin cannot disagree. Every string is escaped here,
at the last moment, because most of them come from files (method names, paths, commands).
"""
from __future__ import annotations

import base64
import html
import os
import re
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Paragraph:
    text: str
    muted: bool = False


@dataclass
class Bullets:
    items: list[str]


@dataclass
class KeyValues:
    """Two-column facts ("model", "microsoft/wavlm-large"): a small table in HTML, a list in Markdown."""
    pairs: list[tuple[str, str]]


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]
    strong: set[tuple[int, int]] = field(default_factory=set)  # (row, column) cells set in bold
    caption: str | None = None
    css_class: str = ""


@dataclass
class Figure:
    path: Path          # a PNG file; embedded in HTML, linked from Markdown
    caption: str
    width: int | None = None  # display width in CSS pixels (None: natural size, at most the page)


@dataclass
class Figures:
    """Figures side by side (they wrap onto the next line when the page is narrow)."""
    items: list[Figure]


@dataclass
class Code:
    text: str
    summary: str | None = None  # with a summary, a collapsible <details> in HTML


@dataclass
class Section:
    title: str
    blocks: list = field(default_factory=list)


@dataclass
class Document:
    title: str
    subtitle: str
    sections: list[Section]


# -- HTML ---------------------------------------------------------------------------------------

_CSS = """
body { font: 15px/1.5 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color: #1f2328; background: #fff; max-width: 1080px; margin: 2em auto; padding: 0 1.5em; }
h1 { font-size: 1.7em; margin-bottom: 0.1em; }
h2 { font-size: 1.3em; border-bottom: 1px solid #d0d7de; padding-bottom: 0.2em; margin-top: 1.8em; }
h3 { font-size: 1.05em; margin: 1.2em 0 0.4em; }
.subtitle, .muted { color: #656d76; }
.subtitle { margin-top: 0; }
table { border-collapse: collapse; margin: 0.6em 0 1em; font-size: 0.92em; }
th, td { border: 1px solid #d0d7de; padding: 4px 9px; text-align: left; vertical-align: top; }
th { background: #f6f8fa; font-weight: 600; white-space: nowrap; }
td:first-child, table.results td:last-child { white-space: nowrap; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr:nth-child(even) td { background: #fbfcfd; }
table.facts th { background: none; font-weight: 600; border: none; padding: 1px 14px 1px 0; }
table.facts td { border: none; padding: 1px 0; background: none; }
caption { caption-side: top; text-align: left; font-weight: 600; padding-bottom: 4px; white-space: nowrap; }
.figures { display: flex; flex-wrap: wrap; gap: 14px; align-items: flex-start; margin: 0.6em 0; }
figure { margin: 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eaeef2; }
figcaption { font-size: 0.85em; color: #656d76; margin-top: 2px; }
pre { background: #f6f8fa; border: 1px solid #eaeef2; border-radius: 4px; padding: 8px 10px;
      font-size: 0.82em; white-space: pre-wrap; overflow-wrap: anywhere; }
details { margin: 0.4em 0; }
summary { cursor: pointer; color: #0969da; }
footer { margin-top: 3em; font-size: 0.8em; color: #656d76; }
"""


def render_html(document: Document) -> str:
    esc = html.escape
    parts = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>{esc(document.title)}</title>", f"<style>{_CSS}</style>", "</head>", "<body>",
             f"<h1>{esc(document.title)}</h1>", f'<p class="subtitle">{esc(document.subtitle)}</p>']
    for section in document.sections:
        parts.append(f"<h2>{esc(section.title)}</h2>")
        parts += [_html_block(block) for block in section.blocks]
    parts += ["<footer>Written by <code>sers report</code>; self-contained: "
              "images are embedded, nothing is loaded from elsewhere.</footer>", "</body>", "</html>"]
    return "\n".join(parts) + "\n"


def _html_block(block) -> str:
    esc = html.escape
    if isinstance(block, Paragraph):
        return f'<p{" class=muted" if block.muted else ""}>{esc(block.text)}</p>'
    if isinstance(block, Bullets):
        return "<ul>" + "".join(f"<li>{esc(item)}</li>" for item in block.items) + "</ul>"
    if isinstance(block, KeyValues):
        rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in block.pairs)
        return f'<table class="facts">{rows}</table>'
    if isinstance(block, Table):
        numeric = _numeric_columns(block)
        caption = f"<caption>{esc(block.caption)}</caption>" if block.caption else ""
        head = "<tr>" + "".join(f"<th>{esc(h)}</th>" for h in block.header) + "</tr>"
        body = []
        for r, row in enumerate(block.rows):
            cells = []
            for c, cell in enumerate(row):
                text = esc(cell)
                if (r, c) in block.strong:
                    text = f"<strong>{text}</strong>"
                cells.append(f'<td class="num">{text}</td>' if numeric[c] else f"<td>{text}</td>")
            body.append("<tr>" + "".join(cells) + "</tr>")
        css = f' class="{esc(block.css_class)}"' if block.css_class else ""
        return f"<table{css}>{caption}<thead>{head}</thead><tbody>{''.join(body)}</tbody></table>"
    if isinstance(block, Figures):
        return '<div class="figures">' + "".join(_html_figure(f) for f in block.items) + "</div>"
    if isinstance(block, Figure):
        return '<div class="figures">' + _html_figure(block) + "</div>"
    if isinstance(block, Code):
        pre = f"<pre>{esc(block.text)}</pre>"
        return f"<details><summary>{esc(block.summary)}</summary>{pre}</details>" if block.summary else pre
    if isinstance(block, Section):  # a subsection
        return f"<h3>{esc(block.title)}</h3>" + "\n".join(_html_block(b) for b in block.blocks)
    raise TypeError(f"unknown report block {type(block).__name__}")


def _html_figure(figure: Figure) -> str:
    data = base64.b64encode(Path(figure.path).read_bytes()).decode("ascii")
    # a figure as wide as its image, so that a long caption wraps under it
    width = f' width="{int(figure.width)}"' if figure.width else ""
    style = f' style="width: {int(figure.width)}px"' if figure.width else ""
    caption = html.escape(figure.caption)
    return (f'<figure{style}><img src="data:image/png;base64,{data}" alt="{caption}"{width}>'
            f"<figcaption>{caption}</figcaption></figure>")


# "12", "0.0103", "1e-05", "61.20 ± 1.05" (not "2.13.0+cpu", a version)
_NUMBER = re.compile(r"^[-+]?(\d+(\.\d+)?(e[-+]?\d+)?|nan|inf)( ± \d+(\.\d+)?)?$", re.IGNORECASE)


def _numeric_columns(table: Table) -> list[bool]:
    """Columns whose filled cells are all numbers are right-aligned."""
    flags = []
    for c in range(len(table.header)):
        cells = [row[c] for row in table.rows if row[c] not in ("", "-")]
        flags.append(bool(cells) and all(_NUMBER.match(cell) for cell in cells))
    return flags


# -- Markdown -----------------------------------------------------------------------------------

def render_markdown(document: Document, markdown_path) -> str:
    """GitHub-flavoured Markdown; figures are linked relative to ``markdown_path``'s folder."""
    folder = Path(markdown_path).resolve().parent
    parts = [f"# {_md(document.title)}", "", f"_{_md(document.subtitle)}_", ""]
    for section in document.sections:
        parts += [f"## {_md(section.title)}", ""]
        for block in section.blocks:
            parts += [_md_block(block, folder), ""]
    return "\n".join(parts).rstrip() + "\n"


def _md_block(block, folder: Path) -> str:
    if isinstance(block, Paragraph):
        return f"_{_md(block.text)}_" if block.muted else _md(block.text)
    if isinstance(block, Bullets):
        return "\n".join(f"- {_md(item)}" for item in block.items)
    if isinstance(block, KeyValues):
        return "\n".join(f"- **{_md(k)}**: {_md(v)}" for k, v in block.pairs)
    if isinstance(block, Table):
        def cell(r, c, text):
            text = _md(text)
            return f"**{text}**" if (r, c) in block.strong and text else text
        numeric = _numeric_columns(block)
        lines = [f"**{_md(block.caption)}**", ""] if block.caption else []
        lines.append("| " + " | ".join(_md(h) for h in block.header) + " |")
        lines.append("|" + "".join("---:|" if n else "---|" for n in numeric))
        lines += ["| " + " | ".join(cell(r, c, t) for c, t in enumerate(row)) + " |"
                  for r, row in enumerate(block.rows)]
        return "\n".join(lines)
    if isinstance(block, (Figures, Figure)):
        items = block.items if isinstance(block, Figures) else [block]
        return "\n".join(f"![{_md(f.caption)}]({_relative_url(f.path, folder)})" for f in items)
    if isinstance(block, Code):
        fence = "````" if "```" in block.text else "```"
        code = f"{fence}\n{block.text.rstrip()}\n{fence}"
        if not block.summary:
            return code
        # GitHub and most Markdown viewers fold <details>; others show the summary and the code
        return f"<details><summary>{html.escape(block.summary)}</summary>\n\n{code}\n\n</details>"
    if isinstance(block, Section):
        return f"### {_md(block.title)}\n\n" + "\n\n".join(_md_block(b, folder) for b in block.blocks)
    raise TypeError(f"unknown report block {type(block).__name__}")


_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|#])")


def _md(text: str) -> str:
    """Text from files, made inert in Markdown (and in the HTML that Markdown may carry)."""
    return _MD_SPECIAL.sub(r"\\\1", str(text)).replace("\n", " ")


def _relative_url(path, folder: Path) -> str:
    relative = os.path.relpath(Path(path).resolve(), folder)
    return "/".join(part.replace(" ", "%20").replace("(", "%28").replace(")", "%29")
                    for part in Path(relative).parts)
