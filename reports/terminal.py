"""The terminal summary (no -o): the report's tables and notes printed with rich; charts are
left to the HTML report. Strings from run files are printed as text, never as rich markup, and
their control characters escaped (`\x1b` shows as text: no run can colour, move or hyperlink
the terminal)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table as RichTable
from rich.text import Text

from .document import Chart, Document, Folded, Links, Note, Table
from .runfile import one_line


def _text(value: str, style: str | None = None) -> Text:
    return Text(one_line(str(value)), style=style or "")


def render(doc: Document, console: Console | None = None) -> None:
    console = console or Console()
    console.print(_text(doc.title, "bold"))
    charts = 0
    for s in doc.sections:
        console.rule(_text(s.title))
        for b in s.blocks:
            if isinstance(b, Table):
                table = RichTable(title=_text(b.title), show_lines=False)
                align = b.align or ["left"] * len(b.columns)
                for c, a in zip(b.columns, align):
                    table.add_column(_text(c), overflow="fold", justify="right" if a == "right" else "left")
                flags = b.flags or [""] * len(b.rows)
                for row, flag in zip(b.rows, flags):
                    style = {"regression": "red", "improvement": "green"}.get(flag)
                    table.add_row(*[_text(c) for c in row], style=style)
                console.print(table)
            elif isinstance(b, Note):
                console.print(_text(b.text, "yellow" if b.level == "warning" else "dim"))
            elif isinstance(b, Links):
                for link in b.items:
                    console.print(_text(f"{link.text}: {link.target}" + (f" ({link.note})" if link.note else "")))
            elif isinstance(b, Chart):
                charts += 1
            elif isinstance(b, Folded):  # its summary line only: the detail is in the HTML report
                console.print(_text("+ " + b.summary, "dim"))
                charts += sum(isinstance(c, Chart) for c in b.blocks)
    if charts:
        console.print(Text(f"{charts} chart(s) are in the HTML report: infertune report RUN_DIR ... -o report.html",
                           style="dim"))
