"""The Markdown report: the same tables as the HTML one (no charts), for pull requests and
issue threads. Cells are escaped for GitHub-flavoured Markdown: `|`, backslashes and brackets
(no link syntax gets through), `&`, `<`, `>` as entities (no raw HTML gets through), newlines
folded. An artifact is a link only when it is a file inside its run directory; any other name
is an inline code span, which GFM never turns into a link."""

from __future__ import annotations

import html
import re
from pathlib import Path

from .document import Chart, Document, Folded, Link, Links, Note, Table
from .runfile import one_line
from .table_layout import alignment

_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}


def escape(text: str) -> str:
    out = "".join(_ENTITIES.get(ch, ch) for ch in " ".join(str(text).split()))
    out = one_line(out)  # control characters (a terminal escape in a name) as visible escapes
    for ch in "\\|`*_[]":  # the backslash first, so the escapes added after it stay single
        out = out.replace(ch, "\\" + ch)
    return " ".join(out.split())


def _table(t: Table) -> list[str]:
    lines = [f"**{escape(t.title)}**", ""]
    lines.append("| " + " | ".join(escape(c) or " " for c in t.columns) + " |")
    align = alignment(t.columns, t.rows, t.align)  # number columns right (---:), as in the HTML
    lines.append("|" + "|".join("---:" if a == "right" else "---" for a in align) + "|")
    flags = t.flags or [""] * len(t.rows)
    for row, flag in zip(t.rows, flags):
        cells = [escape(c) for c in row]
        if flag == "regression":
            cells[0] = "🔴 " + cells[0]
        elif flag == "improvement":
            cells[0] = "🟢 " + cells[0]
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def code(text: str) -> str:
    """`text` as an inline code span: shown verbatim, never a link, HTML or emphasis (GFM does
    not autolink inside code). The fence is one backtick longer than any run of them inside."""
    text = one_line(" ".join(str(text).split()))
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or not text.strip() else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _link(link: Link) -> str:
    if link.href:  # percent-encoded by reports.document: no space, parenthesis or scheme left in it
        return f"- [{escape(link.text)}]({link.href})"
    return f"- {code(link.text)}" + (f" ({escape(link.note)})" if link.note else "")


def render(doc: Document) -> str:
    lines = [f"# {escape(doc.title)}", ""]
    for s in doc.sections:
        lines += [f"## {escape(s.title)}", ""]
        for b in s.blocks:
            if isinstance(b, Folded):  # GitHub folds a <details>
                # inside HTML GitHub reads no Markdown escapes: the summary is HTML-escaped instead
                summary = html.escape(one_line(" ".join(b.summary.split())))
                lines += ["<details>", f"<summary>{summary}</summary>", ""]
                lines += _blocks(b.blocks)
                lines += ["</details>", ""]
            else:
                lines += _blocks([b])
    return "\n".join(lines).rstrip() + "\n"


def _blocks(blocks: list) -> list[str]:
    lines: list[str] = []
    for b in blocks:
        if isinstance(b, Table):
            lines += _table(b)
        elif isinstance(b, Note):
            lines += [("> **Warning:** " if b.level == "warning" else "") + escape(b.text), ""]
        elif isinstance(b, Links):
            lines += [f"**{escape(b.title)}**", ""]
            lines += [_link(link) for link in b.items]
            lines.append("")
        elif isinstance(b, Chart):
            continue  # charts are in the HTML report
    return lines


def write(doc: Document, path: Path) -> Path:
    path.write_text(render(doc), encoding="utf-8")
    return path
