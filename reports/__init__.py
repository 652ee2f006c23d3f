"""Profile and tuning reports (HTML, Markdown, terminal) built from run directories.

reports/ reads run files and imports nothing else of ours: runfile (read and validate
run.json), load (gather runs), compare (match rows across runs, flag changes beyond the
noise), document (the report as tables, notes, charts, links), charts (plotly figures),
html / markdown / terminal (renderers). `write_report` is what `infertune report` calls."""

from __future__ import annotations

from pathlib import Path

SUFFIXES = (".html", ".htm", ".md")


def write_report(run_dirs: list[str | Path], output: str | Path | None = None, console=None) -> Path | None:
    """Build the report of `run_dirs` (the first is the comparison's reference) into `output`
    (.html / .htm / .md), or print a terminal summary when `output` is None. Raises
    reports.runfile.RunDirError for a bad run directory, ValueError for an unknown suffix."""
    from .document import build
    from .load import load_runs

    if output is not None:
        out = Path(output)
        if out.suffix.lower() not in SUFFIXES:
            raise ValueError(f"unknown report format {out.suffix or '(no suffix)'!r} for {out}; "
                             f"expected one of {', '.join(SUFFIXES)}")
    runs = load_runs(list(run_dirs))
    if output is None:
        from . import terminal

        terminal.render(build(runs), console)
        return None
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = build(runs, link_base=out.parent.resolve())
    if out.suffix.lower() == ".md":
        from . import markdown

        return markdown.write(doc, out)
    from . import html

    return html.write(doc, out)
