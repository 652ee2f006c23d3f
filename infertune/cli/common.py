"""What every command shares: one-line errors with exit code 2, JSON output, the console."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console

from kernels.errors import KernelError
from reports.runfile import RunDirError
from runtime.errors import ModelError
from tuner.database import DatabaseError

from ..errors import KernelFailed, UsageError
from ..jsonio import dumps
from ..settings import SettingError

F = TypeVar("F", bound=Callable[..., Any])

USER_ERRORS = (KernelError, UsageError, SettingError, DatabaseError, ModelError, RunDirError)

console = Console(highlight=False)


def click_exceptions():
    """The click exceptions module typer uses: typer >= 0.22 vendors click as typer._click."""
    try:
        from typer._click import exceptions
    except ImportError:
        from click import exceptions
    return exceptions


def single_line(message: str) -> str:
    """`message` on one line: line breaks (a path with a newline in it, a library's multi-line
    message) are written as the escapes \\n and \\r, so a reader of stderr sees one line."""
    text = str(message).strip().replace("\r\n", "\n")
    return text.replace("\r", "\\r").replace("\n", "\\n")


def path_text(path: object) -> str:
    """A path as output shows it: as it is when every character prints, else quoted like a
    Python string, so a name with a line break or an escape code stays one visible line."""
    text = str(path)
    return text if text.isprintable() else repr(text)


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print `error: message` on one line to stderr (line breaks escaped); return the Exit to raise."""
    typer.echo(f"error: {single_line(message)}", err=True)
    return typer.Exit(code)


def user_errors(fn: F) -> F:
    """Turn bad input raised by the libraries into one line on stderr and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except USER_ERRORS as exc:
            raise fail(str(exc)) from None
        except KernelFailed as exc:  # not bad input: the kernel broke; one line, exit 1
            raise fail(str(exc), code=1) from None
        except OSError as exc:
            # A file the user named (or its folder) that cannot be read or written, found only
            # once the command ran (a full disk, permissions changed): one line, the path quoted.
            if exc.filename is None:
                raise
            raise fail(f"{exc.strerror or type(exc).__name__}: {str(exc.filename)!r}") from None

    return wrapper  # type: ignore[return-value]


# One range and one default (0) for every --seed: torch takes 64 bits, but numpy and Optuna's
# samplers (autotune) take 0 to 2**32-1, so that is the range everywhere.
SEED_MAX = 2**32 - 1


def seed_option(what: str = "the random inputs") -> Any:
    """The --seed option every command shares: default 0, 0 to 2**32-1 (outside: exit 2)."""
    return typer.Option(0, "--seed", min=0, max=SEED_MAX, help=f"Seed of {what} (default 0; 0 to 2**32-1).")


def print_json(data: Any) -> None:
    typer.echo(dumps(data))


def fmt_ms(ms: float) -> str:
    if ms >= 1000:
        return f"{ms / 1e3:.2f} s"
    if ms >= 1:
        return f"{ms:.3g} ms"
    return f"{ms * 1e3:.3g} µs"


def fmt_num(x: float) -> str:
    """Three significant digits, no exponent; tiny CPU-interpreter rates show as <0.001."""
    if not math.isfinite(x):
        return "-"
    if 0 < abs(x) < 1e-3:
        return "<0.001"
    return f"{x:,.3g}" if abs(x) < 1000 else f"{x:,.0f}"
