"""`infertune tuner compare`: compare search strategies on a replay file, without running kernels."""

from __future__ import annotations

import typer
from rich.table import Table

import kernels as kernel_library
from tuner.replay import THRESHOLDS, ReplayError, load, median_trials
from tuner.replay import compare as compare_samplers
from tuner.samplers import SAMPLERS

from ..errors import UsageError
from .common import console, print_json, user_errors

app = typer.Typer(help="Study the tuner itself: search strategies compared on recorded measurements.",
                  no_args_is_help=True)


@app.command("compare")
@user_errors
def compare(
    replay: str = typer.Option(..., "--replay", help="A replay file written by `infertune autotune --sampler grid --record FILE`."),
    samplers: str = typer.Option("tpe,random,qmc", "--samplers", help=f"Comma-separated, of: {', '.join(SAMPLERS)}."),
    seeds: int = typer.Option(5, "--seeds", min=1, help="Seeds per sampler (0..N-1)."),
    trials: int = typer.Option(None, "--trials", min=1, help="Budget per run (default: the number of valid configs)."),
    json_output: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Per sampler and seed, the trials needed to come within 1%, 3% and 5% of the recorded best."""
    names = [s.strip() for s in samplers.split(",") if s.strip()]
    unknown = [s for s in names if s not in SAMPLERS]
    if unknown or not names:
        raise UsageError(f"unknown sampler {unknown[0] if unknown else samplers!r}; known samplers: {', '.join(SAMPLERS)}")
    try:
        spec, recording = load(replay, kernel_library.get)
        rows = compare_samplers(spec, recording, names, list(range(seeds)), trials)
    except ReplayError as exc:
        raise UsageError(str(exc)) from None
    if json_output:
        print_json({"kernel": spec.name, "problem": spec.shape_key(recording.problem), "best_ms": recording.best_ms,
                    "configs": len(recording.outcomes), "runs": [r.to_dict() for r in rows],
                    "median": {s: {f"{t:.0%}": median_trials(rows, s, t) for t in THRESHOLDS} for s in names}})
        return
    table = Table(title=f"{spec.name} {spec.shape_key(recording.problem)}: {len(recording.outcomes)} recorded configs, "
                        f"best {recording.best_ms:.4g} ms")
    for col in ("sampler", "seed", "trials", *(f"to {t:.0%}" for t in THRESHOLDS)):
        table.add_column(col, justify="left" if col == "sampler" else "right")
    for r in rows:
        table.add_row(r.sampler, str(r.seed), str(r.trials), *(str(r.to_within[t] or "-") for t in THRESHOLDS))
    for s in names:
        table.add_row(f"{s} median", "", "", *(_fmt(median_trials(rows, s, t)) for t in THRESHOLDS), style="bold")
    console.print(table)


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:g}"
