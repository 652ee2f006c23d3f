"""`infertune profile serve`: load an OpenAI-compatible endpoint at a sweep of rates or
concurrencies; print a table per run (a row per level) and write a run directory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from ..serve_profile import DEFAULT_INPUT, DEFAULT_OUTPUT, DEFAULT_TIMEOUT, preset_token_counter, profile_serving
from .common import console, path_text, seed_option, user_errors

progress = Console(stderr=True, highlight=False)


@user_errors
def serve(
    url: str = typer.Option(..., "--url", help="The server, e.g. http://127.0.0.1:8000 (a trailing /v1 is fine)."),
    model: str = typer.Option(..., "--model", help="The model name the server serves (GET /v1/models)."),
    endpoint: str = typer.Option("completions", "--endpoint", help="completions, chat or embeddings."),
    rate: str = typer.Option(None, "--rate", help="Open loop: Poisson arrivals at these requests/s, e.g. 1,2,4,8 "
                             "(the default)."),
    concurrency: str = typer.Option(None, "--concurrency", help="Closed loop instead: this many workers, e.g. 1,4,16."),
    requests: int = typer.Option(None, "--requests", min=1, help="Requests per level (default 50)."),
    duration: float = typer.Option(None, "--duration", help="Seconds per level instead of --requests."),
    input_len: str = typer.Option(DEFAULT_INPUT, "--input-len", help="Prompt tokens: N, uniform:A,B, normal:MEAN,STD "
                                  "or lognormal:MEDIAN,SIGMA."),
    output_len: str = typer.Option(DEFAULT_OUTPUT, "--output-len", help="Output tokens (max_tokens with ignore_eos), "
                                   "same forms."),
    prompts: str = typer.Option(None, "--prompts", help="Prompts file: JSONL (strings or {\"prompt\": ...}) or text "
                                "lines; replaces the synthetic prompts."),
    slo: str = typer.Option(None, "--slo", help="Service-level objectives for goodput, e.g. ttft=200ms,itl=50ms "
                            "(keys ttft, itl, tpot, e2e; units ms, s)."),
    out: str = typer.Option(None, "--out", help="Run directory (default runs/<time>-<model>/)."),
    seed: int = seed_option("the arrivals, lengths and prompts"),
    label: str = typer.Option(None, "--label", help="Name of this run in reports (default: the server's "
                              "x-infertune-variant, else 'server')."),
    timeout: float = typer.Option(DEFAULT_TIMEOUT, "--timeout", help="Seconds one request may take (default 60)."),
) -> None:
    """Profile an OpenAI-compatible server under load: TTFT, ITL, TPOT, e2e, throughput, goodput."""
    total = len((rate or concurrency or "1,2,4,8").split(","))

    def on_level(i: int, level: dict[str, Any]) -> None:
        name = f"rate {level['rate']:g}/s" if level["rate"] is not None else f"concurrency {level['concurrency']}"
        errors = sum(level["errors"].values())
        progress.print(f"level {i + 1}/{total} ({name}): {level['completed']}/{level['requests']} completed, "
                       f"{errors} errors, {level['duration_s']:.1f} s")

    path = profile_serving(url, model, endpoint=endpoint, rates=rate, concurrencies=concurrency, requests=requests,
                           duration=duration, input_len=input_len, output_len=output_len, prompts=prompts, slo=slo,
                           seed=seed, label=label, out=out, timeout=timeout,
                           count_tokens=preset_token_counter(model), on_level=on_level)
    run = json.loads((path / "run.json").read_text())
    print_serving(run, path)


def _pair(summary: dict[str, float] | None, scale: float = 1.0) -> str:
    if not summary:
        return "-"
    return f"{_num(summary['p50'] * scale)}/{_num(summary['p99'] * scale)}"


def _num(x: float) -> str:
    if x >= 100:
        return f"{x:,.0f}"
    return f"{x:.3g}"


def print_serving(run: dict[str, Any], path: Path) -> None:
    """The run's table (a row per level, readable at 80 columns), its errors, notes and path."""
    s = run["serving"]
    by_rate = s["mode"] == "rate"
    table = Table(title=f"{s['model']} at {s['url']} ({s['endpoint']}, {s['label']})", box=box.SIMPLE_HEAD,
                  title_justify="left", pad_edge=False)
    # e2e in ms while every p99 is under 10 s: "18.4/35.7" fits its column, "0.0184/0.0357" folds
    e2e_ms = all((level["e2e_ms"] or {}).get("p99", 0) < 10_000 for level in s["levels"])
    e2e_scale = 1.0 if e2e_ms else 1e-3
    for col in ("rate/s" if by_rate else "conc.", "ok", "req/s", "tok/s", "TTFT ms", "ITL ms",
                "e2e ms" if e2e_ms else "e2e s", "goodput"):
        table.add_column(col, justify="right", overflow="fold")
    for level in s["levels"]:
        good = "-" if level["goodput"] is None else f"{_num(level['goodput'])} ({level['slo_attainment']:.0%})"
        table.add_row(f"{level['rate']:g}" if by_rate else str(level["concurrency"]),
                      f"{level['completed']}/{level['requests']}", _num(level["request_throughput"]),
                      _num(level["output_token_throughput"] if s["endpoint"] != "embeddings"
                           else level["input_token_throughput"]),
                      _pair(level["ttft_ms"]), _pair(level["itl_ms"]), _pair(level["e2e_ms"], e2e_scale), good)
    console.print(table)
    tokens = "input" if s["endpoint"] == "embeddings" else "output"
    slos = ", ".join(f"{k[:-3]} {v:g} ms" for k, v in s["slo"].items()) or "no SLO given"
    console.print(f"p50/p99; tok/s: {tokens}; goodput: req/s within every SLO ({slos})")
    for level in s["levels"]:
        if level["errors"]:
            name = f"rate {level['rate']:g}/s" if by_rate else f"concurrency {level['concurrency']}"
            console.print(f"errors at {name}: " + ", ".join(f"{k} x{v}" for k, v in level["errors"].items()))
    sat = s.get("saturation")
    if sat and len(s["levels"]) > 1:
        console.print(f"highest throughput: {_num(sat['request_throughput'])} req/s, "
                      f"{_num(sat['output_token_throughput'])} output tok/s (level {sat['level'] + 1})")
    for note in run["notes"]:
        console.print(f"[yellow]{note}[/]")
    console.print(f"run directory: {path_text(path)}", soft_wrap=True, markup=False)  # one line: users copy it
