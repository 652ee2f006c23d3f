"""The report's "Winners you can trust" section: for each tuned problem of an autotune run,
the race among its best configs (rounds, each contender's mean and 95% interval, spread and
verdict) and what the NVML noise guard saw (measurements flagged, measured again, kept still
flagged; or why the guard was off). Reads run.json's tuning entries ("race", "retimed",
"noise": reports/run_schema.json, $defs/tuning_entry) only."""

from __future__ import annotations

from typing import Any

from .formatting import config_text

STOPPED = {"separated": "separated", "rounds": "round budget ended", "seconds": "time budget ended"}


def _cfg(config: Any) -> str:
    return config_text(config if isinstance(config, dict) else None, ", ")


def _ms(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, (int, float)) else "-"


def _interval(pair: Any) -> str:
    if isinstance(pair, list) and len(pair) == 2 and all(isinstance(v, (int, float)) for v in pair):
        return f"[{pair[0]:.4g}, {pair[1]:.4g}]"
    return "-"


def _race_rows(entry: dict[str, Any]) -> list[list[str]]:
    rows = []
    for c in entry.get("retimed") or []:
        pooled = c.get("retimed") or {}
        spread = c.get("spread")
        rows.append([_cfg(c.get("config")) + (" (default)" if c.get("default") else ""), _ms(c.get("study_ms")),
                     str(c.get("rounds") if c.get("rounds") is not None else len(c.get("rounds_ms") or [])),
                     _ms(pooled.get("median_ms")), _interval(c.get("interval_ms")),
                     f"{spread:.1%}" if isinstance(spread, (int, float)) else "-",
                     c.get("verdict") or c.get("failure") or "-"])
    return rows


def trust_section(runs: list[Any], section: type, table: type, note: type) -> Any:
    """The section (built with reports.document's Section, Table and Note, passed in: document
    imports this module), or None when no tuning entry has a race or noise counts."""
    entries = [(r, t) for r in runs for t in (r.data.get("tuning") or [])
               if isinstance(t, dict) and (t.get("race") or t.get("noise"))]
    if not entries:
        return None
    sec = section("trust", "Winners you can trust")
    sec.blocks.append(note("Each winner was raced against the next best configs and the default: re-timed "
                           "interleaved until its 95% interval separated from every other's or the budget ended; "
                           "a near-tie goes to the default, else to the lower spread (p90 - p10) / p50."))
    noise_rows: list[list[str]] = []
    off: dict[str, str] = {}
    for r, t in entries:
        title = f"{r.label}: {t.get('kernel')} {t.get('problem')}"
        race = t.get("race") or {}
        if race:
            stopped = STOPPED.get(race.get("stopped"), race.get("stopped") or "-")
            seconds = race.get("seconds")
            sec.blocks.append(table(
                f"{title}: the race ({race.get('rounds')} rounds, {stopped}"
                + (f", {seconds:.3g} s" if isinstance(seconds, (int, float)) else "") + ")",
                ["config", "search ms", "rounds", "race mean ms", "95% interval", "spread", "verdict"],
                _race_rows(t)))
        noise = t.get("noise") or {}
        if noise.get("guard"):
            examples = "; ".join(noise.get("examples") or []) or "-"
            noise_rows.append([title, str(noise.get("flagged", 0)), str(noise.get("remeasured", 0)),
                               str(noise.get("still_flagged", 0)), examples])
        elif noise:
            off.setdefault(r.label, noise.get("reason") or "off")
    if noise_rows:
        sec.blocks.append(table("NVML noise guard: measurements under another process, a low SM clock or a "
                                "throttle reason", ["problem", "flagged", "measured again", "kept flagged",
                                                    "examples"], noise_rows))
    for label, reason in off.items():
        sec.blocks.append(note(f"{label}: noise guard {reason}"))
    return sec
