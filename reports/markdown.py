"""The Markdown report: the same tables as the HTML one (no charts), for pull requests and
issue threads. Cells are escaped for GitHub-flavoured Markdown: `|` and backslashes,
`&`, `<`, `>` as entities (no raw HTML gets through), newlines folded."""

from __future__ import annotations

from pathlib import Path

from .document import Chart, Document, Links, Note, Table

_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}


def escape(text: str) -> str:
    out = "".join(_ENTITIES.get(ch, ch) for ch in str(text))
    out = out.replace("\\", "\\\\").replace("|", "\\|").replace("`", "\\`").replace("*", "\\*").replace("_", "\\_")
    return " ".join(out.split())


def _table(t: Table) -> list[str]:
    lines = [f"**{escape(t.title)}**", ""]
    lines.append("| " + " | ".join(escape(c) or " " for c in t.columns) + " |")
    lines.append("|" + "|".join("---" for _ in t.columns) + "|")
    flags = t.flags or [""] * len(t.rows)
    for row, flag in zip(t.rows, flags):
        cells = [escape(c) for c in row]
        if flag == "regression":
            cells[0] = "🔴 " + cells[0]
        elif flag == "improvement":
            cells[0] = "🟢 " + cells[0]
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def render(doc: Document) -> str:
    lines = [f"# {escape(doc.title)}", ""]
    for s in doc.sections:
        lines += [f"## {escape(s.title)}", ""]
        for b in s.blocks:
            if isinstance(b, Table):
                lines += _table(b)
            elif isinstance(b, Note):
                lines += [("> **Warning:** " if b.level == "warning" else "") + escape(b.text), ""]
            elif isinstance(b, Links):
                lines += [f"**{escape(b.title)}**", ""]
                lines += [f"- {escape(text)}" + ("" if exists else " (not in the run directory)")
                          for text, _target, exists in b.items]
                lines.append("")
            elif isinstance(b, Chart):
                continue  # charts are in the HTML report
    return "\n".join(lines).rstrip() + "\n"


def write(doc: Document, path: Path) -> Path:
    path.write_text(render(doc), encoding="utf-8")
    return path
