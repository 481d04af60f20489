"""Reports: one builder writes Markdown and a self-contained HTML page (images inlined)."""

from __future__ import annotations

import base64
import html
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from underfire.core import io as _io


@dataclass
class _Block:
    kind: str  # "section" | "text" | "table" | "figure"
    payload: Any


def _format(value: Any, decimals: int | None = None) -> str:
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return str(value)
        return f"{value:.{decimals}f}" if decimals is not None else f"{value:.4g}"
    return str(value)


def _column_decimals(rows: Sequence[dict[str, Any]], col: str) -> int | None:
    """One number of decimals per numeric column, so that a column's figures line up:
    three significant digits for its largest magnitude (0.912, 12.3, 1234), at most 4."""
    values = [r[col] for r in rows if isinstance(r.get(col), float) and math.isfinite(r[col])]
    if not values:
        return None
    largest = max(abs(v) for v in values)
    if largest == 0:
        return 3
    return max(0, min(4, 2 - math.floor(math.log10(largest))))


def _is_text_column(rows: Sequence[dict[str, Any]], col: str) -> bool:
    """A column without a single number is text: left-aligned, where numbers align right."""
    return not any(
        isinstance(r.get(col), int | float) and not isinstance(r.get(col), bool) for r in rows
    )


def _formatted_rows(cols: Sequence[str], rows: Sequence[dict[str, Any]]) -> list[list[str]]:
    decimals = {c: _column_decimals(rows, c) for c in cols}
    return [[_format(r.get(c, ""), decimals[c]) for c in cols] for r in rows]


class Report:
    """Accumulates sections, text, tables and figures; :meth:`write` renders both formats.

    Figures are referenced by path; the Markdown links them relative to the output folder and
    the HTML embeds them as base64, so the page can be mailed or archived alone.
    """

    def __init__(self, title: str) -> None:
        self.title = title
        self.blocks: list[_Block] = []

    def section(self, title: str, level: int = 2) -> Report:
        self.blocks.append(_Block("section", (title, max(2, min(level, 4)))))
        return self

    def text(self, markdown: str) -> Report:
        self.blocks.append(_Block("text", markdown.strip()))
        return self

    def table(self, rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> Report:
        rows = list(rows)
        if not rows:
            return self
        cols = list(columns) if columns else list(dict.fromkeys(k for r in rows for k in r))
        self.blocks.append(_Block("table", (cols, rows)))
        return self

    def figure(self, path: str | Path, caption: str = "") -> Report:
        self.blocks.append(_Block("figure", (Path(path), caption)))
        return self

    def to_markdown(self, base: Path) -> str:
        out = [f"# {self.title}", ""]
        for block in self.blocks:
            if block.kind == "section":
                title, level = block.payload
                out += ["#" * level + " " + title, ""]
            elif block.kind == "text":
                out += [block.payload, ""]
            elif block.kind == "table":
                cols, rows = block.payload
                out.append("| " + " | ".join(cols) + " |")
                out.append("|" + "---|" * len(cols))
                out += ["| " + " | ".join(cells) + " |" for cells in _formatted_rows(cols, rows)]
                out.append("")
            elif block.kind == "figure":
                path, caption = block.payload
                rel = path.relative_to(base) if path.is_relative_to(base) else path
                out += [f"![{caption}]({rel.as_posix()})", f"*{caption}*" if caption else "", ""]
        return "\n".join(out).rstrip() + "\n"

    def to_html(self) -> str:
        body = [f"<h1>{html.escape(self.title)}</h1>"]
        for block in self.blocks:
            if block.kind == "section":
                title, level = block.payload
                body.append(f"<h{level}>{html.escape(title)}</h{level}>")
            elif block.kind == "text":
                body.append(_markdown_paragraphs(block.payload))
            elif block.kind == "table":
                cols, rows = block.payload
                align = ["" if not _is_text_column(rows, c) else ' class="text"' for c in cols]
                head = "".join(
                    f"<th{a}>{html.escape(c)}</th>" for c, a in zip(cols, align, strict=True)
                )
                lines = [
                    "<tr>"
                    + "".join(
                        f"<td{a}>{html.escape(cell)}</td>"
                        for cell, a in zip(cells, align, strict=True)
                    )
                    + "</tr>"
                    for cells in _formatted_rows(cols, rows)
                ]
                body.append(
                    f'<div class="table"><table><thead><tr>{head}</tr></thead>'
                    f"<tbody>{''.join(lines)}</tbody></table></div>"
                )
            elif block.kind == "figure":
                path, caption = block.payload
                if path.exists():
                    data = base64.b64encode(path.read_bytes()).decode("ascii")
                    img = f'<img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
                else:
                    img = f"<p><em>missing figure {html.escape(str(path))}</em></p>"
                body.append(
                    f"<figure>{img}<figcaption>{html.escape(caption)}</figcaption></figure>"
                )
        return _HTML.format(title=html.escape(self.title), body="\n".join(body))

    def write(self, out_dir: str | Path, stem: str = "report") -> tuple[Path, Path]:
        """Write ``stem.md`` and ``stem.html`` into ``out_dir`` atomically; returns both paths."""
        out = Path(out_dir)
        md = _io.write_text(
            out / f"{stem}.md", self.to_markdown(out.resolve() if out.is_absolute() else out)
        )
        page = _io.write_text(out / f"{stem}.html", self.to_html())
        return md, page


# *emphasis*: the opening star is not preceded, and the closing star not followed, by a
# letter or digit (so 2*3*4 stays arithmetic); neither touches a space on its inner side.
_EMPHASIS = re.compile(r"(?<![\w*])\*(?![\s*])(.+?)(?<![\s*])\*(?![\w*])")
_CODE = re.compile(r"`([^`]+)`")


def _inline(s: str) -> str:
    """`code`, **bold** and *emphasis* of one paragraph as HTML (nothing inside `code`)."""
    codes: list[str] = []

    def hold(match: re.Match[str]) -> str:
        codes.append(f"<code>{html.escape(match.group(1))}</code>")
        return f"\x00{len(codes) - 1}\x00"

    s = html.escape(_CODE.sub(hold, s))
    s = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", s)
    s = _EMPHASIS.sub(r"<em>\1</em>", s)
    return re.sub("\x00(\\d+)\x00", lambda m: codes[int(m.group(1))], s)


def _markdown_paragraphs(text: str) -> str:
    """Just enough Markdown for report prose: paragraphs, bullet lists, **bold**,
    *emphasis*, `code`."""
    parts = []
    for para in re.split(r"\n\s*\n", text):
        lines = para.splitlines()
        if lines and all(line.lstrip().startswith(("- ", "* ")) for line in lines):
            items = "".join(f"<li>{_inline(line.lstrip()[2:])}</li>" for line in lines)
            parts.append(f"<ul>{items}</ul>")
        else:
            parts.append(f"<p>{_inline(' '.join(lines))}</p>")
    return "\n".join(parts)


_HTML = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; color: #222; }}
table {{ border-collapse: collapse; margin: 1rem 0; }}
div.table {{ overflow-x: auto; }}
th, td {{ border: 1px solid #ccc; padding: .25rem .6rem; text-align: right; }}
th.text, td.text {{ text-align: left; }}
th {{ background: #f3f3f3; }}
img {{ max-width: 100%; }}
figcaption {{ color: #555; font-size: .9rem; }}
code {{ background: #f3f3f3; padding: 0 .2rem; }}
</style></head>
<body>
{body}
</body></html>
"""
