"""The report as a list of blocks, rendered to Markdown and to one HTML file.

Both renderings come from the same blocks, so ``report.md`` and ``report.html``
say the same thing. The HTML embeds every figure as a base64 ``data:`` URI and
carries its own small stylesheet: it opens offline, with no scripts or fonts.
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Heading:
    level: int
    text: str
    anchor: str


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Bullets:
    items: tuple[str, ...]


@dataclass(frozen=True)
class Table:
    caption: str
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class Figure:
    caption: str
    png: Path  # relative to the report folder
    alt: str


Block = Heading | Paragraph | Bullets | Table | Figure


class Document:
    """Blocks in reading order."""

    def __init__(self) -> None:
        self.blocks: list[Block] = []

    def heading(self, level: int, text: str) -> None:
        self.blocks.append(Heading(level, text, slug(text)))

    def paragraph(self, text: str) -> None:
        self.blocks.append(Paragraph(text))

    def bullets(self, items: list[str]) -> None:
        if items:
            self.blocks.append(Bullets(tuple(items)))

    def table(self, caption: str, header: list[str], rows: list[list[str]]) -> None:
        self.blocks.append(Table(caption, tuple(header),
                                 tuple(tuple(r) for r in rows)))

    def figure(self, caption: str, png: Path, alt: str) -> None:
        self.blocks.append(Figure(caption, png, alt))


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def to_markdown(doc: Document) -> str:
    """The blocks as Markdown. Text from the log files (paths, error messages,
    names) is untrusted: every ``<`` and ``&`` is escaped and every ``[`` /
    ``]`` outside the report's own ``[text](#anchor)`` links is backslashed, so no
    raw HTML, link or image can come from it; a code span that holds ``<`` or
    ``&`` is written as an escaped ``<code>`` element (:func:`_md_inline`)."""
    out: list[str] = []
    for block in doc.blocks:
        if isinstance(block, Heading):
            out.append(f"{'#' * block.level} {_md_inline(block.text)}")
        elif isinstance(block, Paragraph):
            out.append(_md_inline(block.text))
        elif isinstance(block, Bullets):
            out.append("\n".join(f"- {_md_inline(item)}" for item in block.items))
        elif isinstance(block, Table):
            lines = [f"*{_md_inline(block.caption)}*", "",
                     "| " + " | ".join(_md_cell(h) for h in block.header) + " |",
                     "|" + "---|" * len(block.header)]
            lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |"
                      for row in block.rows]
            out.append("\n".join(lines))
        elif isinstance(block, Figure):
            out.append(f"![{_md_escape(block.alt)}]({block.png.as_posix()})\n\n"
                       f"*{_md_inline(block.caption)}*")
    return "\n\n".join(out) + "\n"


def to_html(doc: Document, folder: Path, title: str) -> str:
    body: list[str] = []
    for block in doc.blocks:
        if isinstance(block, Heading):
            body.append(f'<h{block.level} id="{block.anchor}">{_inline(block.text)}'
                        f"</h{block.level}>")
        elif isinstance(block, Paragraph):
            body.append(f"<p>{_inline(block.text)}</p>")
        elif isinstance(block, Bullets):
            items = "".join(f"<li>{_inline(i)}</li>" for i in block.items)
            body.append(f"<ul>{items}</ul>")
        elif isinstance(block, Table):
            head = "".join(f"<th>{_inline(h)}</th>" for h in block.header)
            rows = "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row)
                           + "</tr>" for row in block.rows)
            body.append(f'<table><caption>{_inline(block.caption)}</caption>'
                        f"<thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif isinstance(block, Figure):
            data = base64.b64encode((folder / block.png).read_bytes()).decode("ascii")
            body.append(f'<figure><img src="data:image/png;base64,{data}" '
                        f'alt="{html.escape(block.alt)}">'
                        f"<figcaption>{_inline(block.caption)}</figcaption></figure>")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head>\n<body>\n"
        + "\n".join(body) + "\n</body></html>\n"
    )


_CSS = (
    "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;"
    "line-height:1.45;color:#222}"
    "table{border-collapse:collapse;margin:1em 0;font-size:.85em}"
    "caption{text-align:left;font-style:italic;margin-bottom:.3em}"
    "th,td{border:1px solid #ccc;padding:.2em .5em;text-align:left;"
    "vertical-align:top}th{background:#f2f2f2}"
    "figure{margin:1.5em 0}img{max-width:100%;height:auto}"
    "figcaption{font-size:.9em;color:#444}code{background:#f5f5f5;padding:0 .2em}"
)


def _md_cell(text: str) -> str:
    return _md_inline(text).replace("|", "\\|")


# the report's own inline markup: `code` spans and [text](#anchor) links
_MD_TOKEN = re.compile(r"`([^`]+)`|\[([^\]]+)\]\((#[a-z0-9-]+)\)")


def _md_inline(text: str) -> str:
    """``text`` safe for Markdown: untrusted parts escaped (see to_markdown)."""
    text = text.replace("\r", " ").replace("\n", " ")
    out, start = [], 0
    for match in _MD_TOKEN.finditer(text):
        out.append(_md_escape(text[start:match.start()]))
        code = match.group(1)
        if code is None:
            out.append(f"[{_md_escape(match.group(2))}]({match.group(3)})")
        elif "<" in code or "&" in code:
            out.append(f"<code>{html.escape(code, quote=False)}</code>")
        else:
            out.append(f"`{code}`")
        start = match.end()
    out.append(_md_escape(text[start:]))
    return "".join(out)


def _md_escape(text: str) -> str:
    """No raw HTML (``&`` and ``<`` as entities: with no ``<`` no tag can open, so
    ``>`` stays readable), no link or image brackets."""
    text = text.replace("&", "&amp;").replace("<", "&lt;")
    return re.sub(r"([\[\]])", r"\\\1", text)


def _inline(text: str) -> str:
    """Escape, then turn `code` spans and [text](#anchor) links into HTML."""
    escaped = html.escape(text, quote=False)
    escaped = re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped)
    escaped = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", escaped)
    return re.sub(r"\[([^\]]+)\]\((#[a-z0-9-]+)\)", r'<a href="\2">\1</a>', escaped)
