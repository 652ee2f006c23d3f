"""The report's "Serving load" section: for each run of `infertune profile serve` (kind
"profile-serve", run.json "serving"), its levels (a request rate or a concurrency each) as a
throughput table and a latency table, a one-line finding (saturation throughput and the p99
TTFT at about half of it), the charts (latency against throughput, TTFT / ITL distributions
per level) and, with two or more runs of the same endpoint kind, the levels side by side
(reports.compare.SERVING_RULE). Embedding runs have no TTFT / ITL: e2e latency stands in.
Reads run.json's "serving" only; cells are plain strings (the renderers escape them)."""

from __future__ import annotations

from itertools import pairwise
from typing import Any

from . import compare
from .formatting import num

# the latency columns: (header, metric, statistic); units in the header, values in ms
GENERATION_LATENCY = (("TTFT p50", "ttft_ms", "p50"), ("TTFT p99", "ttft_ms", "p99"), ("ITL p50", "itl_ms", "p50"),
                      ("ITL p99", "itl_ms", "p99"), ("TPOT p50", "tpot_ms", "p50"), ("e2e p50", "e2e_ms", "p50"),
                      ("e2e p99", "e2e_ms", "p99"))
EMBEDDING_LATENCY = (("e2e p50", "e2e_ms", "p50"), ("e2e p90", "e2e_ms", "p90"), ("e2e p99", "e2e_ms", "p99"))
METRIC_NAMES = {"ttft_ms": "TTFT", "itl_ms": "ITL", "tpot_ms": "TPOT", "e2e_ms": "e2e"}


# --------------------------------------------------------------------------- reading a run


def serving_runs(runs: list[Any]) -> list[Any]:
    return [r for r in runs if r.data.get("serving")]


def is_embedding(serving: dict[str, Any]) -> bool:
    return serving.get("endpoint") == "embeddings"


def names(runs: list[Any]) -> dict[str, str]:
    """run label -> the name its traces and tables carry: serving.label (tuned, heuristic,
    vllm ...), with the run directory's name added where two runs share a label."""
    wanted = {r.label: str(r.data["serving"].get("label") or r.label) for r in serving_runs(runs)}
    counts: dict[str, int] = {}
    for name in wanted.values():
        counts[name] = counts.get(name, 0) + 1
    return {label: name if counts[name] == 1 or name == label else f"{name} ({label})"
            for label, name in wanted.items()}


def level_value(serving: dict[str, Any], level: dict[str, Any]) -> str:
    value = level.get("rate") if serving.get("mode", "rate") == "rate" else level.get("concurrency")
    return num(value)


def level_text(serving: dict[str, Any], level: dict[str, Any]) -> str:
    """"rate 2 req/s" / "concurrency 4"."""
    if serving.get("mode", "rate") == "rate":
        return f"rate {num(level.get('rate'))} req/s"
    return f"concurrency {num(level.get('concurrency'))}"


def level_header(serving: dict[str, Any]) -> str:
    return "rate (req/s)" if serving.get("mode", "rate") == "rate" else "concurrency"


def stat(level: dict[str, Any] | None, metric: str, key: str) -> float | None:
    value = (level or {}).get(metric)
    return value.get(key) if isinstance(value, dict) else None


def errors_text(errors: dict[str, int] | None) -> str:
    """"http_429 30, timeout 10" (most frequent first); "0" for none."""
    items = sorted(((k, v) for k, v in (errors or {}).items() if v), key=lambda kv: (-kv[1], kv[0]))
    return ", ".join(f"{k} {v}" for k, v in items) or "0"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def has_slo(serving: dict[str, Any]) -> bool:
    return bool(serving.get("slo"))


def slo_text(slo: dict[str, Any] | None) -> str:
    if not slo:
        return "no SLO set (goodput not computed)"
    parts = [f"{METRIC_NAMES.get(k, k.removesuffix('_ms'))} <= {num(v)} ms" for k, v in slo.items()]
    return "SLO " + ", ".join(parts)


# --------------------------------------------------------------------------- the finding


def saturation_index(serving: dict[str, Any]) -> int | None:
    """The saturation level: the run's own `saturation.level` where it names a level, else the
    level of the highest request throughput; None when no level completed anything."""
    levels = serving.get("levels") or []
    given = (serving.get("saturation") or {}).get("level")
    if isinstance(given, int) and 0 <= given < len(levels):
        return given
    done = [i for i, lv in enumerate(levels) if (lv.get("completed") or 0) > 0 and lv.get("request_throughput")]
    return max(done, key=lambda i: levels[i]["request_throughput"]) if done else None


def at_half_saturation(serving: dict[str, Any], metric: str) -> tuple[float, str] | None:
    """The p99 of `metric` at half the saturation throughput, and how it was found: linear in
    achieved request throughput between the two levels (up to saturation) that bracket it, or
    the nearest level when none does. None when no level up to saturation has that p99."""
    sat = saturation_index(serving)
    if sat is None:
        return None
    levels = serving["levels"]
    target = levels[sat]["request_throughput"] / 2
    points = sorted(((lv["request_throughput"], stat(lv, metric, "p99"), lv) for lv in levels[:sat + 1]
                     if (lv.get("completed") or 0) > 0 and lv.get("request_throughput") is not None
                     and stat(lv, metric, "p99") is not None), key=lambda p: p[0])
    if not points:
        return None
    for (x0, y0, a), (x1, y1, b) in pairwise(points):
        if x0 <= target <= x1 and x1 > x0:
            y = y0 + (y1 - y0) * (target - x0) / (x1 - x0)
            return y, (f"interpolated between {level_text(serving, a)} ({num(x0)} req/s, {num(y0)} ms) and "
                       f"{level_text(serving, b)} ({num(x1)} req/s, {num(y1)} ms)")
    x, y, lv = min(points, key=lambda p: abs(p[0] - target))
    return y, f"the nearest level, {level_text(serving, lv)} ({num(x)} req/s achieved)"


def finding(name: str, serving: dict[str, Any]) -> str:
    """One line: the saturation throughput and the p99 TTFT (e2e for embeddings) at about half of it."""
    sat = saturation_index(serving)
    if sat is None:
        return f"{name}: no level completed a request; no saturation throughput."
    levels = serving["levels"]
    lv = levels[sat]
    text = f"{name}: saturation {num(lv['request_throughput'])} req/s"
    if not is_embedding(serving):
        text += f" ({num(lv.get('output_token_throughput'))} output tok/s)"
    text += f" at {level_text(serving, lv)}"
    if sat == len(levels) - 1:
        text += " (the highest level swept: the server may go further)"
    metric = "e2e_ms" if is_embedding(serving) else "ttft_ms"
    half = at_half_saturation(serving, metric)
    target = num(lv["request_throughput"] / 2)
    if half is None:
        return text + f"; no p99 {METRIC_NAMES[metric]} at half of it ({target} req/s)."
    value, how = half
    return text + f"; p99 {METRIC_NAMES[metric]} at half of it ({target} req/s): {num(value)} ms, {how}."


# --------------------------------------------------------------------------- tables


def _right_aligned(table: Any, text_columns: int = 1) -> Any:
    """Mark every column after the first `text_columns` as numbers (`align`, right-aligned by a
    renderer that reads it; one that does not shows them left-aligned, nothing else changes)."""
    table.align = ["left"] * text_columns + ["right"] * (len(table.columns) - text_columns)
    return table


def _throughput_table(name: str, serving: dict[str, Any], Table: type) -> Any:
    slo = has_slo(serving)
    embed = is_embedding(serving)
    cols = [level_header(serving), "done / sent", "errors", "req/s"]
    cols += [] if embed else ["out tok/s"]
    cols += ["goodput (req/s)", "SLO met"] if slo else []
    rows = []
    for lv in serving.get("levels") or []:
        row = [level_value(serving, lv), f"{num(lv.get('completed'))} / {num(lv.get('requests'))}",
               errors_text(lv.get("errors")), num(lv.get("request_throughput"))]
        row += [] if embed else [num(lv.get("output_token_throughput"))]
        row += [num(lv.get("goodput")), _pct(lv.get("slo_attainment"))] if slo else []
        rows.append(row)
    table = _right_aligned(Table(f"{name}: throughput per level", cols, rows), 0)
    table.align[2] = "left"  # errors: "http_429 30, timeout 10"
    return table


def _latency_table(name: str, serving: dict[str, Any], Table: type) -> Any:
    columns = EMBEDDING_LATENCY if is_embedding(serving) else GENERATION_LATENCY
    rows = [[level_value(serving, lv), *(num(stat(lv, metric, key)) for _h, metric, key in columns)]
            for lv in serving.get("levels") or []]
    return _right_aligned(Table(f"{name}: latency per level (ms)",
                                [level_header(serving), *(f"{h} (ms)" for h, _m, _k in columns)], rows), 0)


def _describe(name: str, label: str, serving: dict[str, Any]) -> str:
    server = serving.get("server") or {}
    where = f"{serving.get('endpoint', '-')} at {serving.get('url', '-')}, model {serving.get('model', '-')}"
    if server.get("variant"):
        where += f", server variant {server['variant']}"
    per_level = ""
    if serving.get("requests_per_level"):
        per_level = f" of {num(serving['requests_per_level'])} requests per level"
    elif serving.get("duration_per_level_s"):
        per_level = f" of {num(serving['duration_per_level_s'])} s per level"
    return (f"{name} (run {label}): {where}; {serving.get('mode', 'rate')} sweep{per_level}, "
            f"input {serving.get('input_len', '-')}"
            f", output {serving.get('output_len', '-')}, seed {num(serving.get('seed'))}; "
            f"{slo_text(serving.get('slo'))}.")


def _change_cell(ch: compare.Change) -> str:
    if ch.status == compare.MISSING or ch.ratio is None:
        return "-"
    mark = {compare.REGRESSION: " REGRESSION", compare.IMPROVEMENT: " IMPROVEMENT"}.get(ch.status, "")
    return f"{ch.ratio:.2f}x{mark}"


def _worst(changes: list[compare.Change]) -> str:
    statuses = {c.status for c in changes}
    if compare.REGRESSION in statuses:
        return compare.REGRESSION
    return compare.IMPROVEMENT if compare.IMPROVEMENT in statuses else ""


def comparison_groups(runs: list[Any]) -> list[list[Any]]:
    """Serving runs grouped by endpoint kind (embeddings apart from generation), in order; only
    groups of two or more runs are compared."""
    gen = [r for r in serving_runs(runs) if not is_embedding(r.data["serving"])]
    emb = [r for r in serving_runs(runs) if is_embedding(r.data["serving"])]
    return [g for g in (gen, emb) if len(g) >= 2]


def comparison_metrics(serving: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    """(metric, column name) compared for a group whose reference is `serving`."""
    if is_embedding(serving):
        return (("request_throughput", "req/s"), ("e2e_ms", "e2e p99"))
    return (("request_throughput", "req/s"), ("ttft_ms", "TTFT p99"), ("itl_ms", "ITL p99"))


def _comparison(group: list[Any], name_of: dict[str, str], Table: type, Note: type) -> list[Any]:
    """One row per (level, run) that both the reference and the run measured: ratios to the
    reference (long rather than wide, so three runs still fit 80 columns)."""
    ref = group[0]
    ref_serving = ref.data["serving"]
    matched = compare.match_serving([r.data["serving"] for r in group])
    metrics = comparison_metrics(ref_serving)
    cols = ["level", "run", *(f"{col} ratio" for _m, col in metrics)]
    rows, flags = [], []
    shared = [False] * (len(group) - 1)
    for m in matched:
        if m.rows[0] is None:
            continue
        for i, r in enumerate(group[1:]):
            if m.rows[i + 1] is None:
                continue
            shared[i] = True
            changes = [m.changes[metric][i] for metric, _col in metrics]
            rows.append([level_text(ref_serving, m.rows[0]), name_of[r.label], *(_change_cell(c) for c in changes)])
            flags.append(_worst(changes))
    blocks: list[Any] = []
    if rows:
        blocks.append(_right_aligned(Table(f"Serving levels side by side: ratio to {name_of[ref.label]} (reference)",
                                           cols, rows, flags), 2))
    for i, r in enumerate(group[1:]):
        if not shared[i]:
            blocks.append(Note(f"{name_of[r.label]} shares no level with {name_of[ref.label]} "
                               f"(a {r.data['serving'].get('mode')} sweep against a {ref_serving.get('mode')} "
                               f"sweep): nothing to compare.", "warning"))
    return blocks


# --------------------------------------------------------------------------- the section


def serving_section(runs: list[Any], Section: type, Table: type, Note: type, Chart: type) -> Any:
    """The section, built with the block types reports.document passes in (it imports this
    module, so this module does not import it), or None when no run is a serving run."""
    found = serving_runs(runs)
    if not found:
        return None
    name_of = names(runs)
    sec = Section("serving", "Serving load")
    for r in found:
        s = r.data["serving"]
        name = name_of[r.label]
        sec.blocks.append(Note(_describe(name, r.label, s)))
        sec.blocks.append(_throughput_table(name, s, Table))
        sec.blocks.append(_latency_table(name, s, Table))
        for lv in s.get("levels") or []:
            if not lv.get("completed"):
                sec.blocks.append(Note(f"{name}: {level_text(s, lv)} completed nothing of {num(lv.get('requests'))} "
                                       f"requests ({errors_text(lv.get('errors'))}).", "warning"))
        sec.blocks.append(Note(finding(name, s)))
    labels = [r.label for r in found]
    generating = [r.label for r in found if not is_embedding(r.data["serving"])]
    embedding = [r.label for r in found if is_embedding(r.data["serving"])]
    sec.blocks.append(Chart("serving-latency", "Latency against throughput (p50 solid, p99 dashed)",
                            "serving_latency", {"runs": labels}))
    if generating:
        sec.blocks.append(Chart("serving-ttft", "TTFT distribution per level", "serving_distribution",
                                {"runs": generating, "metric": "ttft_ms"}))
        sec.blocks.append(Chart("serving-itl", "ITL distribution per level", "serving_distribution",
                                {"runs": generating, "metric": "itl_ms"}))
    if embedding:
        sec.blocks.append(Chart("serving-e2e", "End-to-end latency distribution per level (embeddings)",
                                "serving_distribution", {"runs": embedding, "metric": "e2e_ms"}))
    groups = comparison_groups(runs)
    if groups:
        sec.blocks.append(Note(f"Rule: {compare.SERVING_RULE}. Why: a request rate's throughput is one figure per "
                               f"level, held to the same {compare.SERVING_THRESHOLD:.0%} bar as the models' tokens/s; a p99 from a few hundred "
                               f"requests is close to their maximum and moves by tens of percent between identical "
                               f"runs, so a p99 must also leave its own confidence interval."))
        for group in groups:
            sec.blocks += _comparison(group, name_of, Table, Note)
    return sec
