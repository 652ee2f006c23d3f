"""The report's "Traffic-aware buckets" section: for a run of `autotune --model NAME --traffic
FILE`, the buckets chosen per (kernel, family) group and the expected latency per forward
pass under the traffic for the three plans (heuristic, power-of-two buckets, traffic buckets).
Reads run.json's "traffic" (reports/run_schema.json, $defs/traffic) only."""

from __future__ import annotations

from typing import Any

from .formatting import config_text, ms, num

PLANS = ("heuristic", "pow2", "traffic")


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a is not None and b else "-"


def _span(low: int, high: int) -> str:
    return str(low) if low == high else f"{low}-{high}"


def traffic_section(runs: list[Any], Section: type, Table: type, Note: type) -> Any:
    """The section, built with the block types reports.document passes in (it imports this
    module, so this module does not import it), or None when no run has a traffic section."""
    with_traffic = [r for r in runs if r.data.get("traffic")]
    if not with_traffic:
        return None
    sec = Section("traffic", "Traffic-aware buckets")
    for r in with_traffic:
        t = r.data["traffic"]
        load = t["traffic"]
        source = (f"{num(load.get('requests'))} requests in batches of up to {num(load.get('max_batch'))}"
                  if load["kind"] == "lengths" else "a histogram of tokens per pass")
        sec.blocks.append(Note(f"{r.label}: {t['model']} under {num(load['passes'])} forward passes ({source}), "
                               f"at most {t['buckets']} buckets per group."))
        totals = t["expected_ms"]
        sec.blocks.append(Table(f"{r.label}: expected latency per forward pass",
                                ["plan", "ms per pass", "vs traffic buckets"],
                                [[name, ms(totals[name]), _ratio(totals[name], totals["traffic"])] for name in PLANS]))
        rows = []
        for g in t["groups"]:
            e = g["expected_ms"]
            rows.append([g["kernel"], g["family"], ", ".join(g.get("roles") or []), num(g["launches_per_pass"]),
                         g["buckets_text"], str(g.get("pow2_buckets") if g.get("pow2_buckets") is not None else "-"),
                         *(ms(e[name]) for name in PLANS), _ratio(e["pow2"], e["traffic"])])
        sec.blocks.append(Table(f"{r.label}: buckets per group",
                                ["kernel", "family", "layers", "launches/pass", "traffic buckets", "pow2 buckets",
                                 "heuristic", "pow2", "traffic", "pow2 / traffic"], rows))
        configs = [[g["kernel"], g["family"], _span(b["low"], b["high"]), config_text(b["config"])]
                   for g in t["groups"] for b in g.get("buckets") or []]
        if configs:
            sec.blocks.append(Table(f"{r.label}: the config of each traffic bucket (the last also serves larger M)",
                                    ["kernel", "family", "M", "config"], configs))
        for note in t.get("notes") or []:
            sec.blocks.append(Note(f"{r.label}: {note}"))
    return sec
