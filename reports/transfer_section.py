"""The report's "Warm start and transfer" section: for an autotune run, which problems started
from known-good configs (`--warm-start`: how many were enqueued, the trial that found the
best) and, for `autotune --confirm-transferred`, each transferred record measured here (its
time on the source GPU, here, the default here, the config kept and the verdict). Reads
run.json's tuning entries ("warm_started") and "confirm_transferred" only."""

from __future__ import annotations

from typing import Any

from .formatting import config_text


def _cfg(config: Any) -> str:
    return config_text(config if isinstance(config, dict) else None, ", ")


def _ms(value: Any) -> str:
    return f"{value:.4g} ms" if isinstance(value, (int, float)) and not isinstance(value, bool) else "-"


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def transfer_section(runs: list[Any], section: type, table: type, note: type) -> Any:
    """The section (built with reports.document's Section, Table and Note, passed in: document
    imports this module), or None when no run warm-started a search or confirmed transfers."""
    warm = [(r, t) for r in runs for t in (r.data.get("tuning") or [])
            if isinstance(t, dict) and _count(t.get("warm_started"))]
    confirmed = [(r, row) for r in runs for row in (r.data.get("confirm_transferred") or []) if isinstance(row, dict)]
    if not warm and not confirmed:
        return None
    sec = section("transfer", "Warm start and transfer")
    if warm:
        sec.blocks.append(note("Warm start: the best configs of the nearest records of another GPU or another "
                               "batch size ran right after the default (trials 2 onward)."))
        sec.blocks.append(table("warm-started searches", ["run", "kernel", "problem", "warm configs", "trials",
                                                          "best at trial", "best config"],
                                [[r.label, str(t.get("kernel") or "-"), str(t.get("problem") or "-"),
                                  str(_count(t.get("warm_started"))), str(t.get("trials_run") or "-"),
                                  str(t.get("trials_to_best") or "-"), _cfg(t.get("best_config"))]
                                 for r, t in warm]))
    if confirmed:
        sec.blocks.append(note("Transferred records (copied from another GPU by `infertune db transfer`) measured "
                               "on this device; the measured record replaced each one."))
        sec.blocks.append(table("transferred records measured here",
                                ["run", "kernel", "problem", "from", "there", "here", "default here", "kept config",
                                 "verdict"],
                                [[r.label, str(row.get("kernel") or "-"), str(row.get("problem") or "-"),
                                  str(row.get("from") or "-"), _ms(row.get("transferred_ms_at_source")),
                                  _ms(row.get("transferred_ms")), _ms(row.get("default_ms")),
                                  _cfg(row.get("chosen_config")), str(row.get("verdict") or "-")]
                                 for r, row in confirmed]))
    return sec
