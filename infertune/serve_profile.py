"""`infertune profile serve`: load an OpenAI-compatible endpoint at a sweep of request rates
(open loop) or concurrencies (closed loop) and write a run directory of kind "profile-serve".

The measuring is profilers/serving (arrivals, lengths, the streaming client, the statistics);
this module checks the user's input, asks the server what it serves (GET /v1/models) before
any load, builds the requests, runs the levels and writes run.json's "serving" section and the
requests.jsonl artifact (one line per request, times in seconds from its level's start).

Seeds: request i has the same prompt and lengths at every level (derived from --seed and i),
and the arrival pattern is the same at every rate, scaled (derived from --seed): levels differ
only in load."""

from __future__ import annotations

import asyncio
import json
import math
import random
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from profilers.serving.client import ENDPOINTS, Request, Result
from profilers.serving.lengths import LengthDist, LengthError, parse_length
from profilers.serving.load import Level, Target, derive, run_level
from profilers.serving.prompts import PromptError, read_prompts, token_prompt, word_prompt
from profilers.serving.stats import SLO_KEYS, level_figures, saturation

from .errors import UsageError
from .rundir import make_dir, run_dir_path, skeleton, write_run

KIND = "profile-serve"
DEFAULT_RATES = (1.0, 2.0, 4.0, 8.0)
DEFAULT_REQUESTS = 50
DEFAULT_INPUT = "fixed:128"
DEFAULT_OUTPUT = "fixed:64"
DEFAULT_TIMEOUT = 60.0
MAX_LEVELS = 32
MAX_LEVEL_REQUESTS = 100_000
MAX_DURATION_S = 24 * 3600
MAX_RATE = 100_000.0     # requests/s: past this the client, not the server, is measured
MAX_CONCURRENCY = 4096
PREFLIGHT_TIMEOUT = 10.0
SLO_UNITS = {"ms": 1.0, "s": 1e3, "us": 1e-3}


# -- parsing the user's input (each error one line, UsageError) --------------------------------

def _number(text: str, flag: str) -> float:
    t = text.strip()
    try:
        if not t.isascii():
            raise ValueError
        value = float(t)
    except ValueError:
        raise UsageError(f"{flag}: {t[:40]!r} is not a number") from None
    if not math.isfinite(value):
        raise UsageError(f"{flag}: {t[:40]!r} is not a finite number")
    return value


def _items(text: str, flag: str) -> list[str]:
    items = [p.strip() for p in text.split(",")]
    if not text.strip() or any(not p for p in items):
        raise UsageError(f"{flag} {text[:60]!r}: want comma-separated values, e.g. {flag} 1,2,4")
    if len(items) > MAX_LEVELS:
        raise UsageError(f"{flag}: at most {MAX_LEVELS} levels, got {len(items)}")
    return items


def parse_rates(text: str) -> list[float]:
    """"1,2,4.5" -> [1.0, 2.0, 4.5] requests/s, each > 0 and finite."""
    out = []
    for item in _items(text, "--rate"):
        value = _number(item, "--rate")
        if not 0 < value <= MAX_RATE:
            raise UsageError(f"--rate: {item!r} must be > 0 and <= {MAX_RATE:,.0f} requests/s "
                             "(for a burst, use --concurrency)")
        out.append(value)
    return out


def parse_concurrencies(text: str) -> list[int]:
    """"1,4,16" -> [1, 4, 16] workers, each 1..MAX_CONCURRENCY."""
    out = []
    for item in _items(text, "--concurrency"):
        if not (item.isascii() and item.isdigit()) or not 1 <= int(item[:6]) <= MAX_CONCURRENCY or len(item) > 6:
            raise UsageError(f"--concurrency: {item[:40]!r} must be a whole number 1 to {MAX_CONCURRENCY}")
        out.append(int(item))
    return out


def parse_slo(text: str) -> dict[str, float]:
    """"ttft=200ms,itl=50ms" -> {"ttft_ms": 200.0, "itl_ms": 50.0}. Keys ttft, itl, tpot, e2e;
    units ms, s or us (a bare number is ms)."""
    out: dict[str, float] = {}
    keys = [k.removesuffix("_ms") for k in SLO_KEYS]
    for item in _items(text, "--slo"):
        key, sep, value = (p.strip() for p in item.partition("="))
        key = key.lower()
        if not sep or key not in keys:
            raise UsageError(f"--slo: {item[:40]!r} is not KEY=VALUE with KEY one of {', '.join(keys)} "
                             "(e.g. --slo ttft=200ms,itl=50ms)")
        unit = next((u for u in ("ms", "us", "s") if value.lower().endswith(u)), "")
        number = _number(value[: len(value) - len(unit)] if unit else value, "--slo")
        if number <= 0:
            raise UsageError(f"--slo: {item[:40]!r} must be > 0")
        if f"{key}_ms" in out:
            raise UsageError(f"--slo: {key} given twice")
        out[f"{key}_ms"] = number * SLO_UNITS[unit.lower() or "ms"]
    return out


def parse_lengths(text: str, flag: str) -> LengthDist:
    try:
        return parse_length(text)
    except LengthError as exc:
        raise UsageError(f"{flag} {exc}") from None


def base_url(url: str) -> str:
    """The server's base URL: http(s)://host[:port][/prefix], without a trailing /v1."""
    text = url.strip()
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"--url {url[:80]!r} is not an http:// or https:// URL (e.g. http://127.0.0.1:8000)")
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number or out of range
    except ValueError:
        raise UsageError(f"--url {url[:80]!r}: the port is not a number 0 to 65535") from None
    path = parts.path.rstrip("/")
    path = path.removesuffix("/v1")
    return f"{parts.scheme}://{parts.netloc}{path}"


# -- the server --------------------------------------------------------------------------------

def preflight(url: str, model: str, *, timeout: float = PREFLIGHT_TIMEOUT) -> dict[str, Any]:
    """GET {url}/v1/models and check `model` is served. Returns what the server says of itself:
    {"variant": x-infertune-variant, "owned_by": ...} (keys only where told). Raises UsageError
    (one line) when the server cannot be reached, does not speak the API or lacks the model."""
    where = f"{url}/v1/models"
    try:
        with httpx.Client(timeout=timeout, trust_env=False) as client:
            response = client.get(where)
    except httpx.ConnectError as exc:
        raise UsageError(f"cannot reach {url}: {_short(exc) or 'connection refused'}") from None
    except httpx.TimeoutException:
        raise UsageError(f"{where} did not answer within {timeout:g} s") from None
    except httpx.HTTPError as exc:
        raise UsageError(f"cannot read {where}: {_short(exc)}") from None
    if response.status_code != 200:
        raise UsageError(f"{where} answered HTTP {response.status_code}: is this an OpenAI-compatible server?")
    try:
        data = response.json()["data"]
        served = [m["id"] for m in data if isinstance(m, dict) and isinstance(m.get("id"), str)]
    except (ValueError, KeyError, TypeError):
        raise UsageError(f"{where} is not an OpenAI model list: is this an OpenAI-compatible server?") from None
    if model not in served:
        listed = ", ".join(served[:10]) + (f" and {len(served) - 10} more" if len(served) > 10 else "")
        raise UsageError(f"model {model!r} is not served at {url}; it serves: {listed or 'nothing'}")
    info: dict[str, Any] = {}
    variant = response.headers.get("x-infertune-variant")
    if variant:
        info["variant"] = variant
    owner = next((m.get("owned_by") for m in data if isinstance(m, dict) and m.get("id") == model), None)
    if isinstance(owner, str):
        info["owned_by"] = owner
    return info


def _short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200]


# -- requests ----------------------------------------------------------------------------------

def request_factory(endpoint: str, input_len: LengthDist, output_len: LengthDist, seed: int, *,
                    prompts: Sequence[str] | None = None,
                    count_tokens: Callable[[str], int] | None = None) -> Callable[[int], Request]:
    """Request i (the same at every level): token ids for completions, words for chat and
    embeddings, or a line of `prompts` (a seeded order, cycling) with the drawn output length."""
    order = list(range(len(prompts))) if prompts else []
    random.Random(derive(seed, "prompt-order")).shuffle(order)

    def make(i: int) -> Request:
        rng = random.Random(derive(seed, "request", i))
        n_out = output_len.draw(1, derive(seed, "output", i))[0]
        if prompts:
            text = prompts[order[i % len(order)]]
            n_in = count_tokens(text) if count_tokens else len(text.split())
            return Request(i, text, n_out, n_in)
        n_in = input_len.draw(1, derive(seed, "input", i))[0]
        prompt = token_prompt(n_in, rng) if endpoint == "completions" else word_prompt(n_in, rng)
        return Request(i, prompt, n_out, n_in)

    return make


def request_record(level: int, r: Result, start: float) -> dict[str, Any]:
    """One line of requests.jsonl: times in seconds from the level's start (microseconds)."""
    def rel(t: float | None) -> float | None:
        return None if t is None else round(t - start, 6)

    return {"level": level, "index": r.index, "sent": rel(r.sent),
            "ttft_s": None if r.first is None or r.sent is None else round(r.first - r.sent, 6),
            "token_times_s": [rel(t) for t in r.token_times], "end_s": rel(r.end),
            "prompt_tokens": r.prompt_tokens, "completion_tokens": r.completion_tokens, "status": r.status,
            "error": r.error, "detail": r.detail}


# -- the sweep ---------------------------------------------------------------------------------

def profile_serving(url: str, model: str, *, endpoint: str = "completions",
                    rates: Sequence[float] | str | None = None, concurrencies: Sequence[int] | str | None = None,
                    requests: int | None = None, duration: float | None = None,
                    input_len: LengthDist | str = DEFAULT_INPUT, output_len: LengthDist | str = DEFAULT_OUTPUT,
                    prompts: str | Path | None = None, slo: dict[str, float] | str | None = None, seed: int = 0,
                    label: str | None = None, out: str | Path | None = None, timeout: float = DEFAULT_TIMEOUT,
                    count_tokens: Callable[[str], int] | None = None, ignore_eos: bool = True,
                    command: list[str] | None = None,
                    on_level: Callable[[int, dict[str, Any]], None] | None = None) -> Path:
    """Profile the server at `url` serving `model` and write a run directory; returns its path.

    One of `rates` (requests/s, open loop; default 1,2,4,8) or `concurrencies` (closed loop);
    per level `requests` (default 50) or `duration` seconds. `input_len` / `output_len`:
    LengthDist or its text; `prompts`: a file of prompts (then `input_len` is unused); `slo`:
    {"ttft_ms": ..} or its text "ttft=200ms,itl=50ms"; `timeout`: seconds per request;
    `count_tokens`: counts output tokens when the server reports no usage; `on_level(i, level)`
    is called as each level ends. `out`: the run directory (default runs/<time>-<model>/).
    Raises UsageError (one line) for bad input, an unreachable server or a model it lacks."""
    if endpoint not in ENDPOINTS:
        raise UsageError(f"--endpoint {endpoint!r}: use one of {', '.join(ENDPOINTS)}")
    if rates is not None and concurrencies is not None:
        raise UsageError("give --rate or --concurrency, not both")
    if requests is not None and duration is not None:
        raise UsageError("give --requests or --duration, not both")
    rate_list = parse_rates(rates) if isinstance(rates, str) else list(rates) if rates is not None else None
    conc_list = (parse_concurrencies(concurrencies) if isinstance(concurrencies, str)
                 else list(concurrencies) if concurrencies is not None else None)
    if rate_list is None and conc_list is None:
        rate_list = list(DEFAULT_RATES)
    if rate_list is not None and not all(0 < r <= MAX_RATE for r in rate_list):
        raise UsageError(f"rates must be > 0 and <= {MAX_RATE:,.0f} requests/s")
    if conc_list is not None and not all(isinstance(c, int) and 1 <= c <= MAX_CONCURRENCY for c in conc_list):
        raise UsageError(f"concurrencies must be whole numbers 1 to {MAX_CONCURRENCY}")
    if not (rate_list or conc_list):
        raise UsageError("give at least one level")
    if duration is None and requests is None:
        requests = DEFAULT_REQUESTS
    if requests is not None and not 1 <= requests <= MAX_LEVEL_REQUESTS:
        raise UsageError(f"--requests must be 1 to {MAX_LEVEL_REQUESTS:,}")
    if duration is not None and not (math.isfinite(duration) and 0 < duration <= MAX_DURATION_S):
        raise UsageError(f"--duration must be > 0 and <= {MAX_DURATION_S} seconds")
    if not (math.isfinite(timeout) and timeout > 0):
        raise UsageError("--timeout must be a number of seconds > 0")
    in_dist = parse_lengths(input_len, "--input-len") if isinstance(input_len, str) else input_len
    out_dist = parse_lengths(output_len, "--output-len") if isinstance(output_len, str) else output_len
    slo_ms = parse_slo(slo) if isinstance(slo, str) else dict(slo or {})
    if set(slo_ms) - set(SLO_KEYS):
        raise UsageError(f"unknown SLO keys {sorted(set(slo_ms) - set(SLO_KEYS))}; keys: {', '.join(SLO_KEYS)}")
    if endpoint == "embeddings" and set(slo_ms) - {"e2e_ms"}:
        raise UsageError("--slo: embeddings have no tokens streamed: only e2e applies")
    server = base_url(url)
    target_dir = run_dir_path(None if out is None else str(out), model)  # checked writable before any load
    texts = None
    if prompts is not None:
        try:
            texts = read_prompts(prompts)
        except PromptError as exc:
            raise UsageError(str(exc)) from None
    info = preflight(server, model, timeout=min(timeout, PREFLIGHT_TIMEOUT))
    label = label or info.get("variant") or "server"

    from .environment import collect_environment  # torch: imported only once the input is good

    path = make_dir(*target_dir)
    run = skeleton(KIND, model, command or ["infertune", *sys.argv[1:]], collect_environment().to_dict())
    run["variants"] = [label]
    run["artifacts"] = ["requests.jsonl"]
    mode = "rate" if rate_list is not None else "concurrency"
    levels = [Level(rate=r) for r in rate_list] if rate_list is not None else [Level(concurrency=c) for c in conc_list]
    run["serving"] = {
        "url": server, "model": model, "endpoint": endpoint, "label": label, "server": info, "mode": mode, "seed": seed,
        "input_len": f"prompts:{Path(prompts).name}" if texts else in_dist.text, "output_len": out_dist.text,
        "slo": slo_ms, "requests_per_level": requests, "duration_per_level_s": duration, "timeout_s": timeout,
        "ignore_eos": ignore_eos, "levels": [], "saturation": None,
    }
    target = Target(server, model, endpoint, timeout=timeout, ignore_eos=ignore_eos)
    make = request_factory(endpoint, in_dist, out_dist, seed, prompts=texts, count_tokens=count_tokens)
    counted = 0
    with open(path / "requests.jsonl", "w") as log:
        for i, level in enumerate(levels):
            results, start, wall = asyncio.run(run_level(target, level, make, seed=derive(seed, "arrivals"),
                                                         requests=requests, duration=duration,
                                                         count_tokens=count_tokens))
            for r in results:
                log.write(json.dumps(request_record(i, r, start)) + "\n")
            log.flush()
            counted += sum(r.ok and not r.usage_reported for r in results)
            figures = level_figures(results, duration_s=wall, slo=slo_ms, seed=derive(seed, "samples", i))
            row = {"rate": level.rate, "concurrency": level.concurrency, **figures}
            if endpoint == "embeddings":
                row["ttft_ms"] = row["itl_ms"] = row["tpot_ms"] = None
            run["serving"]["levels"].append(row)
            run["serving"]["saturation"] = saturation(run["serving"]["levels"])
            write_run(path, _with_notes(run, counted, count_tokens, endpoint))  # readable if a later level is cut
            if on_level:
                on_level(i, row)
    return path


def _with_notes(run: dict[str, Any], counted: int, count_tokens, endpoint: str) -> dict[str, Any]:
    notes = [n for n in run["notes"] if not n.startswith("completion tokens of ")]
    if counted and endpoint != "embeddings":
        how = "with the model's tokenizer" if count_tokens else "one per streamed chunk (no tokenizer here)"
        notes.append(f"completion tokens of {counted} requests counted {how}: the server reported no usage")
    run["notes"] = notes
    return run


def preset_token_counter(model: str) -> Callable[[str], int] | None:
    """Counts tokens with a built-in model's tokenizer when `model` names one whose files are
    here (for servers that report no usage); None otherwise."""
    from runtime.errors import ModelError
    from runtime.presets import names
    from runtime.store import load_tokenizer

    if model not in names():
        return None
    try:
        tokenizer = load_tokenizer(model)
    except (ModelError, OSError):
        return None
    return lambda text: len(tokenizer.encode(text, add_special_tokens=False))
