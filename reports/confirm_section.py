"""The report's "End-to-end confirmation" section: for `autotune --model NAME --confirm`, each
new record's step time old -> new, ratio with its interval and verdict, and the steps'
headline; for `profile model` runs, how many configs came from confirmed / unconfirmed /
transferred records. Reads run.json's "confirmation" and models[].config_marks only
(reports/run_schema.json).

reports.document builds the blocks' types and imports this module, so they are handed in
(`section`, `table`, `note`) rather than imported back: no two modules import each other.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

SOURCE_ORDER = ("database", "bucket", "nearest", "heuristic", "caller")
MARK_ORDER = ("confirmed", "unconfirmed", "transferred")


def _num(value: Any, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}g}"


def _ranked(names, order) -> list[str]:
    return sorted(names, key=lambda n: (order.index(n) if n in order else len(order), n))


def sources_text(by_source: dict | None, marks: dict | None) -> str:
    """"9 database (7 confirmed, 2 unconfirmed), 8 heuristic" (runtime.configs.sources_text's
    words; reports/ reads run files only, so it is written here again)."""
    if not by_source:
        return "-"
    marks = marks or {}
    parts = []
    for source in _ranked(by_source, SOURCE_ORDER):
        got = marks.get(source) or {}
        shown = ", ".join(f"{got[m]} {m}" for m in _ranked(got, MARK_ORDER))
        parts.append(f"{by_source[source]} {source}" + (f" ({shown})" if shown else ""))
    return ", ".join(parts)


def confirmation_section(runs: list[Any], section: Callable, table: Callable, note: Callable) -> Any:
    """The section, or None when no run confirmed records nor counted marked configs."""
    confirming = [r for r in runs if isinstance(r.data.get("confirmation"), dict)]
    marked = [r for r in runs if any(m.get("config_marks") for m in r.data.get("models") or [])]
    if not confirming and not marked:
        return None
    sec = section("confirmation", "End-to-end confirmation")
    for r in confirming:
        c = r.data["confirmation"]
        counts = c.get("counts") or {}
        rows, flags = [], []
        for rec in c.get("records") or []:
            ci = rec.get("ci")
            rows.append([rec.get("kernel", ""), rec.get("problem", ""), " + ".join(rec.get("steps") or []) or "-",
                         f"{_num(rec.get('old_ms'))} -> {_num(rec.get('new_ms'))}" if rec.get("old_ms") else "-",
                         f"{rec['ratio']:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]" if ci and rec.get("ratio") else "-",
                         rec.get("verdict", ""), rec.get("reason", "")])
            flags.append("improvement" if rec.get("verdict") == "confirmed" else
                         "regression" if ci and ci[0] > 1 else "")
        title = (f"{r.label}: {c.get('model', '')} on {c.get('device', '')}, {c.get('rounds', '?')} rounds: "
                 f"{counts.get('confirmed', 0)} confirmed, {counts.get('unconfirmed', 0)} unconfirmed, "
                 f"{counts.get('not exercised', 0)} not exercised")
        sec.blocks.append(table(title, ["kernel", "problem", "steps", "step ms old -> new", "ratio [95% CI]",
                                        "verdict", "why"], rows, flags))
        steps = [[s.get("name", ""), str(s.get("records", "")), f"{_num(s.get('old_ms'))} -> {_num(s.get('new_ms'))}",
                  f"{s['ratio']:.3f} [{s['ci'][0]:.3f}, {s['ci'][1]:.3f}]" if s.get("ci") else "-"]
                 for s in c.get("steps") or []]
        if steps:
            sec.blocks.append(table(f"{r.label}: each step with all its new records", ["step", "records", "ms old -> new",
                                                                                       "ratio [95% CI]"], steps))
        for text in c.get("notes") or []:
            sec.blocks.append(note(f"{r.label}: {text}", "warning" if "GPU speed" in text else "info"))
        sec.blocks.append(note("A record is confirmed when the step-time ratio's interval lies below 1 by more than "
                               f"{(c.get('min_gain') or 0) * 100:g}%; unconfirmed ones are stored marked so."))
    for r in marked:
        rows = [[m.get("variant", ""), str(m.get("batch", "")), sources_text(m.get("config_sources"), m.get("config_marks"))]
                for m in r.data.get("models") or []]
        sec.blocks.append(table(f"{r.label}: where each run's kernel configs came from", ["variant", "batch", "configs"],
                                rows))
    return sec
