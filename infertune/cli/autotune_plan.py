"""`infertune autotune --model NAME --quant-plan`: the per-layer quantization plan search,
its front and the chosen plan on disk."""

from __future__ import annotations

import json
from pathlib import Path

from rich.table import Table

from kernels.device import DeviceInfo
from runtime import store
from runtime.presets import get_preset

from ..autotune import studies_storage
from ..errors import UsageError
from ..quant_plan import PLAN_SAMPLERS, sample_tokens, search_plan
from .autotune_shared import check_destinations
from .common import console, print_json


def parse_fraction(text: str) -> float:
    """"2%" -> 0.02, "0.02" -> 0.02; UsageError otherwise."""
    raw = text.strip()
    try:
        value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        value = -1.0
    if not 0 <= value < 10:
        raise UsageError(f"malformed --max-ppl-increase {text!r}; expected a percentage such as 2% or a fraction such as 0.02")
    return value


def tune_plan(model: str, *, trials: int, sampler: str, seed: int, dtype: str | None, max_ppl_increase: str,
              out: str | None, db: str, storage: str | None, device: DeviceInfo, json_output: bool) -> None:
    """Search `model`'s per-layer plan; the study lives in `storage`, default beside the
    database `db` (<db>.studies.db), so that running the same command again continues it."""
    limit = parse_fraction(max_ppl_increase)
    if sampler not in PLAN_SAMPLERS:
        raise UsageError(f"--quant-plan searches with --sampler {' or '.join(PLAN_SAMPLERS)}, not {sampler}")
    dtype = dtype or ("bf16" if device.kind == "cuda" else "fp32")
    preset = get_preset(model)
    if preset.synthetic or preset.config.family != "llama":
        raise UsageError(f"--quant-plan scores a built-in decoder with real weights and a tokenizer on the built-in "
                         f"text; {model} is {'synthetic' if preset.synthetic else 'an encoder'}")
    files = store.load(model)
    tokens = sample_tokens(store.load_tokenizer(model))
    storage = storage or studies_storage(db)
    # The study storage and the run directory checked and made before the first trial (the
    # database is not written; a --db that is a directory is refused all the same).
    folder = check_destinations(db=db, save=False, storage=storage, out=out, run_dir_name=f"quant-plan-{model}")

    def progress(step, quality):
        if not json_output:
            console.print(f"[dim]trial {step}/{trials}: KL {quality.kl:.4g}, ppl {quality.ppl:.3f}, "
                          f"{quality.bytes / 2**20:.1f} MiB[/]")

    result, plan = search_plan(model, files.config, files.tensors, tokens, dtype=dtype, device=device.torch_device,
                               trials=trials, sampler=sampler, seed=seed, max_ppl_increase=limit, storage=storage,
                               on_trial=progress)
    (folder / "front.json").write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    if plan is not None:
        plan.save(folder / "plan.json")
    _write_run(folder, model, result, plan is not None)
    if json_output:
        print_json({**result.to_dict(), "front_file": str(folder / "front.json"),
                    "plan_file": str(folder / "plan.json") if plan else None})
        return
    table = Table(title=f"{model}: quantization plans on the Pareto front ({result.trials} trials; float perplexity "
                        f"{result.float_ppl:.3f}, linear weights {result.float_bytes / 2**20:.1f} MiB)")
    for col in ("trial", "KL", "ppl", "ppl +%", "MiB", "decode ms", "chosen"):
        table.add_column(col, justify="right")
    for p in result.front:
        table.add_row(str(p["trial"]), f"{p['kl']:.4g}", f"{p['ppl']:.3f}", f"{100 * p['ppl_increase']:.2f}",
                      f"{p['bytes'] / 2**20:.1f}", f"{p['decode_ms']:.3f}" if p["decode_ms"] else "-",
                      "yes" if result.chosen and p["trial"] == result.chosen["trial"] else "")
    console.print(table)
    console.print(f"front: {folder / 'front.json'}")
    if plan is not None:
        console.print(f"plan (smallest within +{100 * limit:g}% perplexity): {folder / 'plan.json'}; "
                      f"run it with: infertune generate --model {model} --plan {folder / 'plan.json'}")
    else:
        console.print(f"[red]no plan on the front stays within +{100 * limit:g}% perplexity; front.json has them all[/]")
    if device.kind != "cuda":
        console.print("[yellow]no GPU: the search minimized quality loss and weight bytes only (decode latency "
                      "is an objective on a GPU)[/]")


def _write_run(folder: Path, model: str, result, has_plan: bool) -> None:
    import sys

    from ..environment import collect_environment
    from ..rundir import skeleton, write_run

    run = skeleton("autotune", f"quant-plan-{model}", ["infertune", *sys.argv[1:]], collect_environment().to_dict())
    run["tuning"] = [{"quant_plan": result.to_dict()}]
    run["artifacts"] = ["front.json"] + (["plan.json"] if has_plan else [])
    write_run(folder, run)
