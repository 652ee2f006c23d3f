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
from .table_layout import alignment, column_groups, fit, vertical, wrap


def _text(value: str, style: str | None = None) -> Text:
    return Text(one_line(str(value)), style=style or "")


_FLAG_STYLE = {"regression": "red", "improvement": "green"}


def _table(b: Table, console: Console) -> None:
    """A table that fits the terminal without breaking a word: cells wrapped by us at spaces and
    after `,`/`|` into widths from table_layout.fit, or, when the longest words do not fit side
    by side (a wide table at 80 columns), one "column  value" block per row."""
    columns = [one_line(" ".join(str(c).split())) for c in b.columns]
    rows = [[one_line(" ".join(str(c).split())) for c in row] for row in b.rows]
    flags = b.flags or [""] * len(rows)
    width = console.width
    layout = fit(columns, rows, width)
    groups = column_groups(columns, rows, width) if layout.layout == "vertical" else None
    if groups:
        for k, group in enumerate(groups):
            title = b.title + (f" ({k + 1}/{len(groups)})" if len(groups) > 1 else "")
            _table(Table(title, [columns[i] for i in group], [[r[i] for i in group] for r in rows], b.flags,
                         [b.align[i] for i in group] if b.align else None), console)
        return
    if layout.layout == "vertical":
        console.print(Text(one_line(b.title), style="bold"), no_wrap=False)
        for row, flag in zip(rows, flags):  # indented under the title: the blocks read as its rows
            lines = vertical(columns, row, width - 2)
            console.print(Text("  " + lines[0], style=_FLAG_STYLE.get(flag, "bold")), no_wrap=True,
                          overflow="ignore")
            for line in lines[1:]:
                console.print(Text("  " + line, style=_FLAG_STYLE.get(flag) or ""), no_wrap=True, overflow="ignore")
        return
    table = RichTable(title=_text(b.title), show_lines=False)
    align = alignment(columns, rows, b.align)
    for c, a, w in zip(columns, align, layout.widths):
        table.add_column(Text("\n".join(wrap(c, w))), width=w, no_wrap=True, overflow="ignore",
                         justify="right" if a == "right" else "left")
    for row, flag in zip(rows, flags):
        table.add_row(*[Text("\n".join(wrap(c, w))) for c, w in zip(row, layout.widths)],
                      style=_FLAG_STYLE.get(flag))
    console.print(table)


def render(doc: Document, console: Console | None = None) -> None:
    console = console or Console()
    console.print(_text(doc.title, "bold"))
    charts = 0
    for s in doc.sections:
        console.rule(_text(s.title))
        for b in s.blocks:
            if isinstance(b, Table):
                _table(b, console)
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
