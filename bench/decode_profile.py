"""Where a decode step's device time goes, kernel by kernel, CUDA-graph replays included.

The runtime figure says how far batch-1 decode is from the bandwidth roofline; this says
why. torch.profiler (Kineto over CUPTI) records every kernel the GPU runs, those a CUDA
graph replays too, with its device time. Two profiled generations of the same prompts: one
of `new_tokens` tokens and one of a single token (prefill and choosing the first token, no
decode step); their difference, per kernel name, is what the `new_tokens - 1` decode steps
ran. Per step: calls and microseconds of each kernel, their sum (the GPU busy time), and
against the step's wall time from the unprofiled runs, the share of the step the GPU spent
between kernels (launch gaps, tails, host work).

On the CPU (the --smoke run) there are no device kernels: the profile records CPU ops (self
time) instead, which checks the plumbing and means nothing for a GPU.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import torch

# Kernel names are long C++ templates for torch's own kernels; a row shows this much.
NAME_CHARS = 72
TOP = 12  # kernels listed; the rest is one "other" row


def _kernels(run, cuda: bool) -> dict[str, tuple[int, float]]:
    """{name: (calls, microseconds)} of what `run()` ran: device kernels (and copies) on a GPU,
    CPU ops' self time elsewhere. Ranges (our NVTX ranges are record_functions while the
    profiler records) are left out: they hold kernels and would count them twice."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    activity = ProfilerActivity.CUDA if cuda else ProfilerActivity.CPU
    with profile(activities=[activity]) as prof:
        run()
        if cuda:
            torch.cuda.synchronize()
    want = DeviceType.CUDA if cuda else DeviceType.CPU
    out: dict[str, tuple[int, float]] = {}
    for event in prof.events():
        if event.device_type != want or getattr(event, "is_user_annotation", False):
            continue
        us = float(event.time_range.elapsed_us()) if cuda else float(event.self_cpu_time_total)
        if us > 0:
            calls, total = out.get(event.name, (0, 0.0))
            out[event.name] = (calls + 1, total + us)
    return out


def short_name(name: str) -> str:
    """A kernel name a table can hold: torch's templates cut at their argument list."""
    name = re.sub(r"^void ", "", name)
    name = name.split("<", 1)[0] if "<" in name and len(name) > NAME_CHARS else name
    return name if len(name) <= NAME_CHARS else name[:NAME_CHARS - 1] + "…"


def decode_profile(generate_fn, prompts: Sequence[Sequence[int]], new_tokens: int, *, cuda: bool,
                   step_ms: float | None) -> dict[str, Any]:
    """Profile `generate_fn(prompts, n)` at n = new_tokens and n = 1; return per-step kernel rows.

    step_ms: the wall time of one decode step from unprofiled runs (None: no gap figure)."""
    if new_tokens < 2:
        raise ValueError("a decode profile needs new_tokens >= 2 (one decode step at least)")
    full = _kernels(lambda: generate_fn(prompts, new_tokens), cuda)
    first = _kernels(lambda: generate_fn(prompts, 1), cuda)
    steps = new_tokens - 1
    rows = []
    for name, (calls, us) in full.items():
        calls0, us0 = first.get(name, (0, 0.0))
        d_calls, d_us = calls - calls0, us - us0
        if d_calls > 0 and d_us > 0:
            rows.append({"kernel": short_name(name), "calls_per_step": d_calls / steps, "us_per_step": d_us / steps})
    rows.sort(key=lambda r: -r["us_per_step"])
    busy_us = sum(r["us_per_step"] for r in rows)
    for r in rows:
        r["share"] = r["us_per_step"] / busy_us if busy_us else 0.0
    out: dict[str, Any] = {
        "clock": "cupti (torch.profiler), device time" if cuda else "cpu ops, self time (no GPU: plumbing only)",
        "decode_steps": steps, "kernels": rows[:TOP],
        "other": {"kernels": len(rows[TOP:]), "calls_per_step": sum(r["calls_per_step"] for r in rows[TOP:]),
                  "us_per_step": sum(r["us_per_step"] for r in rows[TOP:])},
        "launches_per_step": sum(r["calls_per_step"] for r in rows),
        "busy_us_per_step": busy_us, "step_us": None, "outside_kernels_share": None, "cuda": cuda,
    }
    if step_ms:
        out["step_us"] = step_ms * 1e3
        out["outside_kernels_share"] = max(0.0, 1.0 - busy_us / out["step_us"])
    return out


def markdown(profile: dict[str, Any], variant: str) -> list[str]:
    """The section's lines: a table of the top kernels and the busy / gap line."""
    lines = [f"Batch-1 decode step of {variant}, kernel by kernel ({profile['clock']}; {profile['decode_steps']} "
             "steps: a profiled generation minus one of a single token).", "",
             "| kernel | calls / step | µs / step | share |", "|---|---:|---:|---:|"]
    for r in profile["kernels"]:
        lines.append(f"| `{r['kernel']}` | {r['calls_per_step']:.1f} | {r['us_per_step']:.1f} | {r['share']:.0%} |")
    other = profile["other"]
    if other["kernels"]:
        busy = profile["busy_us_per_step"] or 1.0
        lines.append(f"| {other['kernels']} others | {other['calls_per_step']:.1f} | {other['us_per_step']:.1f} | "
                     f"{other['us_per_step'] / busy:.0%} |")
    what = "launches" if profile["cuda"] else "CPU ops"
    line = (f"{profile['launches_per_step']:.0f} {what} a step, {profile['busy_us_per_step']:.1f} µs "
            f"{'of device time' if profile['cuda'] else 'of self time'}")
    if profile["step_us"] and profile["cuda"]:  # CPU ops' self times overlap threads: no gap figure
        line += (f" in a step of {profile['step_us']:.1f} µs (unprofiled median): "
                 f"{profile['outside_kernels_share']:.0%} of the step is outside kernels (gaps, host work)")
    return lines + ["", line + "."]
