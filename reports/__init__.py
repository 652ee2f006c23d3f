"""Profile and tuning reports (HTML, Markdown, terminal) built from run directories.

reports/ reads run files and imports nothing else of ours: runfile (read and validate
run.json), load (gather runs), compare (match rows across runs, flag changes beyond the
noise), document (the report as tables, notes, charts, links), charts (plotly figures),
html / markdown / terminal (renderers). `make_report` is what `infertune report` calls;
`write_report` is the same, returning only the path written."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .runfile import RunDirError, quote

SUFFIXES = (".html", ".htm", ".md")


class ReportError(ValueError):
    """A report that cannot be written where asked (bad suffix, unwritable place); one line."""

    def __init__(self, message: str) -> None:
        from .runfile import one_line

        super().__init__(one_line(str(message)))


@dataclass
class Report:
    written: Path | None  # None: the terminal summary
    format: str  # "html" / "markdown" / "terminal"
    runs: list[Any]  # reports.load.Run, the first is the reference

    def summary(self) -> dict[str, Any]:
        """What `infertune report --json` prints."""
        return {"written": None if self.written is None else str(self.written), "format": self.format,
                "runs": [{"path": str(r.path), "label": r.label, "kind": r.kind, "name": r.data["name"],
                          "created": r.data["created"], "device": r.device.get("label"),
                          "measurements": len(r.data.get("measurements") or []),
                          "models": len(r.data.get("models") or []), "tuning": len(r.data.get("tuning") or []),
                          "artifacts": len(r.data.get("artifacts") or [])} for r in self.runs]}


def check_output(output: str | Path) -> Path:
    """The report file `output` names, once it is known to be writable: a known suffix, not a
    directory, under a folder that is (or can be made) a writable directory. Nothing is created.
    Raises ReportError, one line."""
    out = Path(output)
    if out.suffix.lower() not in SUFFIXES:
        raise ReportError(f"unknown report format {out.suffix or '(no suffix)'!r} for {quote(output)}; "
                          f"expected one of {', '.join(SUFFIXES)}")
    try:
        if out.is_dir():
            raise ReportError(f"cannot write the report to {quote(output)}: it is a directory")
        if out.exists() and not out.is_file():
            raise ReportError(f"cannot write the report to {quote(output)}: it is not a regular file")
        folder = out.absolute().parent
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        if not folder.is_dir():
            raise ReportError(f"cannot write the report to {quote(output)}: {quote(folder)} is not a directory")
        if out.exists() and not os.access(out, os.W_OK):
            raise ReportError(f"cannot write the report to {quote(output)}: the file is read-only")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise ReportError(f"cannot write the report to {quote(output)}: {quote(folder)} is not writable")
    except (OSError, ValueError) as exc:
        if isinstance(exc, ReportError):
            raise
        raise ReportError(f"cannot write the report to {quote(output)}: {getattr(exc, 'strerror', None) or exc}"
                          ) from None
    return out


class _Destination:
    """The report file, opened before any run is read: missing folders made and a temp file
    created beside `out` (the real test of writability, root and read-only mounts included).
    `commit` writes and renames it into place (no half report is ever seen); `abort` removes
    the temp file and the folders made for it."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.made: list[Path] = []
        self.tmp: Path | None = None
        try:
            missing, folder = [], out.absolute().parent
            while not folder.exists():
                missing.append(folder)
                folder = folder.parent
            for folder in reversed(missing):
                folder.mkdir()
                self.made.append(folder)
            fd, tmp = tempfile.mkstemp(dir=out.absolute().parent, prefix=f".{out.name}.", suffix=".tmp")
            os.close(fd)
            self.tmp = Path(tmp)
        except (OSError, ValueError) as exc:
            self.abort()
            raise ReportError(f"cannot write the report to {quote(out)}: {getattr(exc, 'strerror', None) or exc}"
                              ) from None

    def commit(self, text: str) -> Path:
        assert self.tmp is not None
        try:
            self.tmp.write_text(text, encoding="utf-8")
            self.tmp.chmod(0o644)
            os.replace(self.tmp, self.out)
            self.tmp, self.made = None, []
        except OSError as exc:
            self.abort()
            raise ReportError(f"cannot write the report to {quote(self.out)}: {exc.strerror or exc}") from None
        return self.out

    def abort(self) -> None:
        if self.tmp is not None:
            self.tmp.unlink(missing_ok=True)
            self.tmp = None
        for folder in reversed(self.made):
            try:
                folder.rmdir()
            except OSError:
                break
        self.made = []


def make_report(run_dirs: list[str | Path], output: str | Path | None = None, console=None, *,
                quiet: bool = False) -> Report:
    """Build the report of `run_dirs` (the first is the comparison's reference) into `output`
    (.html / .htm / .md), or print a terminal summary when `output` is None (nothing printed
    when `quiet`). The destination is checked, and opened, before any run is read. Raises
    RunDirError for a bad run directory, ReportError for a destination that cannot be written."""
    from .document import build
    from .load import load_runs

    if output is None:
        runs = load_runs(list(run_dirs))
        if not quiet:
            from . import terminal

            terminal.render(build(runs), console)
        return Report(None, "terminal", runs)
    out = check_output(output)
    dest = _Destination(out)
    try:
        runs = load_runs(list(run_dirs))
        try:
            base = out.absolute().parent.resolve()
        except (OSError, RuntimeError) as exc:
            raise ReportError(f"cannot write the report to {quote(out)}: {exc}") from None
        doc = build(runs, link_base=base)
        if out.suffix.lower() == ".md":
            from . import markdown

            return Report(dest.commit(markdown.render(doc)), "markdown", runs)
        from . import html

        return Report(dest.commit(html.render(doc)), "html", runs)
    finally:
        dest.abort()  # after a commit, nothing is left to remove


def write_report(run_dirs: list[str | Path], output: str | Path | None = None, console=None) -> Path | None:
    """make_report, returning the path written (None for the terminal summary)."""
    return make_report(run_dirs, output, console).written


__all__ = ["SUFFIXES", "Report", "ReportError", "RunDirError", "check_output", "make_report", "write_report"]
