"""`infertune generate`: text from a built-in (or local) decoder, with tokens/s and where each
kernel's config came from."""

from __future__ import annotations

import random

import typer
from rich.table import Table

from kernels.device import current_device
from runtime.configs import sources_text
from runtime.generate import Sampling
from runtime.loading import default_variant_text, load_model
from runtime.plan import load_plan
from runtime.presets import PRESETS
from runtime.variant import parse_variant

from ..errors import UsageError
from ..inference import run_generate
from ..problems import given, given_db
from ..profiling import check_lengths
from ..settings import Settings
from .common import console, path_text, print_json, seed_option, user_errors


@user_errors
def generate(
    model: str = typer.Option("smollm2-135m", "--model", help="Built-in model (`infertune models`), an HF directory or a .gguf file."),
    prompt: list[str] = typer.Option(None, "--prompt", help="Prompt text; repeat for a batch."),
    variant: str = typer.Option(None, "--variant", help="e.g. bf16, bf16+w8, bf16+w4g128, fp16+w8:torch "
                                "(default: bf16 on a GPU, fp32 on the torch backend elsewhere)."),
    max_new_tokens: int = typer.Option(64, "--gen", "--max-new-tokens", min=1,
                                       help="Tokens generated per sequence (--max-new-tokens: the same)."),
    temperature: float = typer.Option(0.0, "--temperature", min=0.0, help="0 is greedy."),
    top_k: int = typer.Option(0, "--top-k", min=0, help="Keep the k most likely tokens (0: off)."),
    top_p: float = typer.Option(1.0, "--top-p", help="Nucleus sampling mass (1: off)."),
    seed: int = seed_option("the sampling and a tokenizer-less model's prompt"),  # noqa: B008 - a typer.Option
    raw: bool = typer.Option(False, "--raw", help="Do not wrap the prompt in the model's chat template."),
    prompt_len: int = typer.Option(32, "--prompt-len", min=1,
                                   help="Prompt tokens per sequence, for a model without a tokenizer (random tokens)."),
    plan: str = typer.Option(None, "--plan", help="Per-layer quantization plan (JSON from `autotune --quant-plan`)."),
    db: str = typer.Option(None, "--db", help="Tuned config database (default INFERTUNE_DB, else per-user)."),
    json_output: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Generate text; prints it, then prefill and decode tokens/s and the kernel configs' sources."""
    for value, flag in ((variant, "--variant"), (plan, "--plan"), (model, "--model")):
        given(value, flag)
    given_db(db)
    preset = next((p for p in PRESETS if p.name == model), None)
    if preset is not None and preset.synthetic:  # its prompt is --prompt-len tokens: checked before loading
        check_lengths(model, preset.config, prompt_len=prompt_len, gen=max_new_tokens)
    device = current_device()
    chosen = parse_variant(variant or default_variant_text(device), gpu=device.kind == "cuda")
    layer_plan = load_plan(plan) if plan else None
    sampling = Sampling(temperature=temperature, top_k=top_k, top_p=top_p, seed=seed)
    loaded = load_model(model, chosen, device, plan=layer_plan)
    if loaded.family != "llama":
        raise UsageError(f"{loaded.name} is an encoder: use `infertune embed --model {loaded.name} TEXT ...`")
    tok = loaded.tokenizer
    if tok is None:  # a synthetic model, or weights without a tokenizer: seeded random prompt tokens
        if prompt:
            raise UsageError(f"{loaded.name} has no tokenizer (synthetic or no tokenizer.json): "
                             "give --prompt-len, not --prompt")
        gen = random.Random(seed)
        prompts = [[gen.randrange(loaded.config.vocab) for _ in range(prompt_len)]]
    else:
        if not prompt:
            raise UsageError("give --prompt TEXT (repeat it for a batch)")
        chat = bool(tok.chat_template) and not raw
        texts = [tok.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True) if chat else p
                 for p in prompt]
        # a rendered template carries its own special tokens
        prompts = [tok.encode(t, add_special_tokens=not chat) for t in texts]
    result, report = run_generate(loaded, device, prompts, max_new_tokens=max_new_tokens, sampling=sampling,
                                  db=db or Settings.from_env().db)
    outputs = [tok.decode(ids) if tok is not None else None for ids in result.tokens]
    data = {"model": loaded.name, "variant": str(chosen), "plan": plan, "device": device.label, "seed": seed,
            "outputs": [{"prompt": p, "text": t, "tokens": ids} for p, t, ids in
                        zip(prompt or [None] * len(prompts), outputs, result.tokens)],
            "prefill": {"tokens": result.prefill_tokens, "seconds": result.prefill_seconds,
                        "tokens_per_s": result.prefill_tokens_per_s},
            "decode": {"tokens": result.decode_tokens, "seconds": result.decode_seconds,
                       "tokens_per_s": result.decode_tokens_per_s, "capture_seconds": result.capture_seconds},
            "weight_bytes": loaded.model.nbytes, "configs": report.to_dict(), "interpreter": device.interpreter}
    if json_output:
        print_json(data)
        return
    for item in data["outputs"]:
        console.print(item["text"] if item["text"] is not None else f"tokens: {item['tokens']}", markup=False)
        console.print()
    console.print(f"{loaded.name} ({chosen}{', plan ' + plan if plan else ''}) on {device.label}: prefill {result.prefill_tokens} tokens at "
                  f"{result.prefill_tokens_per_s:,.1f} tok/s; decode {result.decode_tokens} tokens at "
                  f"{result.decode_tokens_per_s:,.1f} tok/s")
    _print_configs(report)
    if device.interpreter and chosen.uses_kernels:
        console.print("[yellow]our kernels ran through the Triton CPU interpreter: these speeds say nothing "
                      "about GPU speed.[/]")


def configs_line(report) -> str:
    """"kernel configs: 9 database (7 confirmed, 2 unconfirmed), 8 heuristic (database PATH)"."""
    summary = report.summary or {}
    return ("kernel configs: " + sources_text(summary.get("by_source"), summary.get("marks_by_source"))
            + (f" (database {path_text(report.database)})" if report.database else ""))


def _print_configs(report) -> None:
    if report.warning:
        console.print(f"[yellow]warning: {report.warning}[/]")
    if report.backend == "torch":
        console.print("kernel configs: none (torch backend)")
        return
    console.print(configs_line(report), markup=False)
    table = Table(show_header=True)
    for col in ("kernel", "problem", "source", "config"):
        table.add_column(col, overflow="fold")
    for row in report.summary.get("launches", []):
        marks = row.get("marks") or []
        table.add_row(row["kernel"], row["problem"], row["source"] + (f" ({', '.join(marks)})" if marks else ""),
                      row["config"])
    console.print(table)
