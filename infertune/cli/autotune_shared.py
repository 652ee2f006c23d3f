"""What the `autotune` modules share: the progress console, which flags each mode takes, and
the destinations (database, study storage, run directory) checked before the first trial.

A module of its own so that autotune_cmd, autotune_quant and autotune_plan do not import
each other.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from rich.console import Console

from ..errors import UsageError

status = Console(stderr=True, highlight=False)  # progress and warnings; tables and JSON go to stdout


def given_flags(ctx, names: Iterable[str]) -> list[str]:
    """The parameters of `names` the user set (on the command line or by environment),
    as opposed to left at their defaults; `ctx` is the command's click/typer Context."""
    given = []
    for name in names:
        source = ctx.get_parameter_source(name)
        if source is not None and source.name != "DEFAULT":
            given.append(name)
    return given


def refuse_flags(ctx, flags: Mapping[str, str], mode: str) -> None:
    """UsageError naming the first of `flags` (parameter name -> its spelling, e.g.
    {"retime": "--retime"}) that the user gave: `mode` does not use it."""
    given = given_flags(ctx, flags)
    if given:
        spelled = ", ".join(flags[name] for name in given)
        raise UsageError(f"{mode} does not use {spelled}; leave {'it' if len(given) == 1 else 'them'} out")


def check_destinations(*, db: str | None, save: bool, storage: str | None, out: str | None,
                       run_dir_name: str) -> Path:
    """Make sure every place this tuning run writes to can be written, before any trial runs:
    the database `db` (opened, and created when `save`), the Optuna `storage` (opened, its
    tables created) and the run directory (`out`, else runs/<time>-<run_dir_name>/, created).
    Returns the run directory. Raises UsageError, or tuner.database.DatabaseError (from
    check_storage / check_destination), in one line.
    """
    from tuner.database import check_destination, check_storage

    if db is not None and "://" not in db and Path(db).expanduser().is_dir():
        raise UsageError(f"--db {db!r} is a directory; give a database file such as {str(Path(db) / 'tuning.db')!r}")
    if out is not None:
        _check_out(out)
    if storage is not None:
        check_storage(storage)
    if db is not None and save:
        check_destination(db)
    from ..rundir import new_run_dir

    try:
        return new_run_dir(out, run_dir_name)
    except OSError as exc:
        raise UsageError(f"cannot create the run directory {str(out or exc.filename)!r}: {exc.strerror}") from None


def drop_if_empty(run_dir: Path) -> None:
    """Remove the run directory check_destinations made when nothing was written to it
    (the search stopped before its first result); a directory with anything in it stays."""
    try:
        run_dir.rmdir()
    except OSError:
        pass  # not empty, or already gone


def _check_out(out: str) -> None:
    # The nearest existing ancestor must be a directory (and `out` itself, if it exists).
    path = Path(out).expanduser()
    if path.exists() and not path.is_dir():
        raise UsageError(f"--out {out!r} exists and is not a directory")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UsageError(f"--out {out!r}: {str(parent)!r} is not a directory")
            break
