"""Quantization plan search: which linear layers of a decoder may be quantized how far.

`infertune autotune --model smollm2-135m --quant-plan --trials 60 [--max-ppl-increase 2%]`

An Optuna multi-objective study over per-layer weight schemes (float, int8, int4 g32/g64/
g128) with objectives

- quality loss: mean KL divergence of the next-token distributions against the unquantized
  model over the built-in text (runtime/sample_text.py), minimized; perplexity on the same
  text is recorded with every trial and decides the pick;
- weight bytes of the quantized layers (scales and zero points included), minimized;
- on a GPU also decode latency (batch 1, ms per token), minimized.

Search parameters are one scheme per (linear role, block of consecutive layers): 4 roles x
up to 6 blocks, 24 categorical parameters instead of 120 per-layer ones for SmolLM2's 30
layers (TPE needs tens of trials per dozen parameters; neighbouring layers tend to share
sensitivity). The plan it writes still names every layer. All-int8 and all-int4 anchors are
measured first. Quantized weights are made once per (layer, scheme) and swapped into one
model per trial (quantizing 135M parameters to int4 takes seconds; a swap takes nothing).

Output, in the run directory (`--out DIR`, default `runs/<time>-quant-plan-<model>/`):
`front.json` (every Pareto-optimal plan with its KL, perplexity, bytes and latency),
`plan.json`, the smallest front plan whose perplexity rises at most `--max-ppl-increase`
over the float model's, which `infertune generate --plan DIR/plan.json` loads, and run.json.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import optuna
import torch

from runtime.linear import LinearWeight, make_linear
from runtime.llama import LAYER_LINEARS, LlamaModel, layer_weight
from runtime.plan import Plan
from runtime.sample_text import SAMPLE_TEXT
from tuner.location import sqlalchemy_url

CHOICES = ("none", "int8", "int4-g32", "int4-g64", "int4-g128")
PLAN_SAMPLERS = ("tpe", "random")
MAX_BLOCKS = 6
SEQ = 128  # tokens per evaluation sequence


def blocks(layers: int, max_blocks: int = MAX_BLOCKS) -> list[range]:
    """Split layers 0..layers-1 into at most `max_blocks` contiguous, near-equal blocks. Pure."""
    n = min(layers, max_blocks)
    edges = [round(i * layers / n) for i in range(n + 1)]
    return [range(edges[i], edges[i + 1]) for i in range(n)]


def plan_of(params: dict[str, str], layers: int) -> dict[str, str]:
    """Per-layer schemes from the search's per-(role, block) parameters. Pure."""
    out = {}
    for b, block in enumerate(blocks(layers)):
        for role in LAYER_LINEARS:
            for i in block:
                out[f"layers.{i}.{role}"] = params[f"{role}.b{b}"]
    return out


def sequence_logprobs(model, tokens: torch.Tensor) -> torch.Tensor:
    """Log-probabilities of every position of full-length sequences `tokens` [n, S], fp32 on the CPU."""
    with torch.no_grad():
        logits = model.prefill(tokens, [tokens.shape[1]] * tokens.shape[0], all_logits=True)
    return torch.log_softmax(logits.float(), dim=-1).cpu()


def perplexity(logp: torch.Tensor, tokens: torch.Tensor) -> float:
    """exp(mean next-token NLL) of `tokens` under `logp` [n, S, vocab]. Pure."""
    return math.exp(-logp[:, :-1].gather(-1, tokens[:, 1:, None].cpu()).mean().item())


def kl_divergence(ref: torch.Tensor, logp: torch.Tensor) -> float:
    """Mean KL(ref || logp) per position, nats (clipped at 0 against rounding). Pure."""
    return max(0.0, (ref.exp() * (ref - logp)).sum(-1).mean().item())


@dataclass
class Quality:
    kl: float        # mean KL(float || quantized) per position, nats
    ppl: float       # perplexity of the quantized model on the text
    bytes: int       # bytes of the linear layers' weights
    latency_ms: float | None = None


@dataclass
class PlanSearchResult:
    model: str
    trials: int
    float_ppl: float
    float_bytes: int
    front: list[dict[str, Any]] = field(default_factory=list)
    chosen: dict[str, Any] | None = None
    max_ppl_increase: float = 0.02
    device: str = ""
    objectives: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "trials": self.trials, "float_ppl": self.float_ppl,
                "float_bytes": self.float_bytes, "max_ppl_increase": self.max_ppl_increase,
                "objectives": self.objectives, "device": self.device, "front": self.front, "chosen": self.chosen}


class PlanEvaluator:
    """Scores plans on one model: quantized layers cached per (layer, scheme), swapped in."""

    def __init__(self, config, weights, dtype: str, device: torch.device, tokens: torch.Tensor,
                 time_decode: bool) -> None:
        self.model = LlamaModel(config, weights, (dtype, None, "triton" if time_decode else "torch"), device,
                                max_positions=tokens.shape[1] + 16)
        self.weights = weights
        self.tokens = tokens.to(device)
        self.time_decode = time_decode
        self._cache: dict[tuple[str, str], LinearWeight] = {}
        self._float = {f"layers.{i}.{r}": layer[r] for i, layer in enumerate(self.model.layers) for r in LAYER_LINEARS}
        self.ref_logp = sequence_logprobs(self.model, self.tokens)
        self.float_ppl = perplexity(self.ref_logp, self.tokens)
        self.float_bytes = sum(lw.nbytes for lw in self._float.values())

    def _linear(self, name: str, scheme: str) -> LinearWeight:
        if scheme == "none":
            return self._float[name]
        key = (name, scheme)
        if key not in self._cache:
            _, i, role = name.split(".")
            w = layer_weight(self.weights, int(i), role)
            self._cache[key] = make_linear(w, None, scheme, self.model.dtype, self.model.device)
        return self._cache[key]

    def score(self, schemes: dict[str, str]) -> Quality:
        for name, scheme in schemes.items():
            _, i, role = name.split(".")
            self.model.layers[int(i)][role] = self._linear(name, scheme)
        logp = sequence_logprobs(self.model, self.tokens)
        nbytes = sum(self.model.layers[int(n.split('.')[1])][n.split('.')[2]].nbytes for n in schemes)
        latency = self._decode_ms() if self.time_decode else None
        return Quality(kl=kl_divergence(self.ref_logp, logp), ppl=perplexity(logp, self.tokens), bytes=nbytes,
                       latency_ms=latency)

    def _decode_ms(self) -> float:
        # Batch 1, 16 steps after a short prefill; median of per-step times.
        cache = self.model.new_cache(1, 48)
        self.model.prefill(self.tokens[:1, :16], [16], cache)
        token = self.tokens[:1, 16]
        times = []
        for _ in range(16):
            torch.cuda.synchronize()
            start = time.perf_counter()
            token = self.model.decode(token, cache).argmax(-1)
            torch.cuda.synchronize()
            times.append((time.perf_counter() - start) * 1e3)
        return sorted(times)[len(times) // 2]


def sample_tokens(tokenizer, max_sequences: int = 4) -> torch.Tensor:
    """The built-in text as [n, SEQ] token ids (whole sequences only)."""
    ids = tokenizer.encode(SAMPLE_TEXT, add_special_tokens=False)
    n = max(1, min(max_sequences, len(ids) // SEQ))
    return torch.tensor(ids[:n * SEQ], dtype=torch.long).view(n, SEQ)


def pareto(points: list[tuple[int, tuple[float, ...]]]) -> list[int]:
    """Indices of the points no other point beats on every objective (minimized). Pure."""
    front = []
    for i, values in points:
        if not any(all(o <= v for o, v in zip(other, values)) and other != values for _, other in points):
            front.append(i)
    return front


def plan_sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    """The Optuna sampler of the plan search called `name` (PLAN_SAMPLERS), seeded. Raises ValueError."""
    if name == "tpe":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=10)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise ValueError(f"the plan search runs --sampler {' or '.join(PLAN_SAMPLERS)}, not {name}")


def search_plan(name: str, config, weights, tokens: torch.Tensor, *, dtype: str, device: torch.device,
                trials: int, seed: int, max_ppl_increase: float, storage: str | None, sampler: str = "tpe",
                on_trial: Callable[[int, Quality], None] | None = None) -> tuple[PlanSearchResult, Plan | None]:
    """Run the search (see the module docstring); returns the result and the chosen plan.

    storage: Optuna storage URL of the study (None: in memory); a stored study is continued,
        `trials` more trials each call. sampler: one of PLAN_SAMPLERS (ValueError otherwise).
    """
    time_decode = device.type == "cuda"
    evaluator = PlanEvaluator(config, weights, dtype, device, tokens, time_decode)
    n_blocks = len(blocks(config.layers))
    names = [f"{role}.b{b}" for role in LAYER_LINEARS for b in range(n_blocks)]
    objectives = ["kl", "bytes"] + (["decode_ms"] if time_decode else [])
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=f"quant-plan|{name}|{dtype}|{device.type}",
                                storage=sqlalchemy_url(storage) if storage else None,
                                directions=["minimize"] * len(objectives), sampler=plan_sampler(sampler, seed),
                                load_if_exists=True)
    done = {t.number for t in study.get_trials(deepcopy=False) if t.state.is_finished()}
    if not done:
        for anchor in ("int8", "int4-g128", "int4-g32"):
            study.enqueue_trial({n: anchor for n in names})
    for step in range(trials):
        trial = study.ask()
        params = {n: trial.suggest_categorical(n, CHOICES) for n in names}
        quality = evaluator.score(plan_of(params, config.layers))
        for key, value in (("kl", quality.kl), ("ppl", quality.ppl), ("bytes", quality.bytes),
                           ("decode_ms", quality.latency_ms)):
            trial.set_user_attr(key, value)
        values = [quality.kl, float(quality.bytes)] + ([quality.latency_ms] if time_decode else [])
        study.tell(trial, values)
        if on_trial is not None:
            on_trial(step + 1, quality)
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
    front_ids = pareto([(t.number, tuple(t.values)) for t in complete])
    by_number = {t.number: t for t in complete}
    result = PlanSearchResult(model=name, trials=len(complete), float_ppl=evaluator.float_ppl,
                              float_bytes=evaluator.float_bytes, max_ppl_increase=max_ppl_increase,
                              device=str(device), objectives=objectives)
    for number in sorted(front_ids, key=lambda n: by_number[n].user_attrs["bytes"]):
        t = by_number[number]
        result.front.append({"trial": number, "kl": t.user_attrs["kl"], "ppl": t.user_attrs["ppl"],
                             "ppl_increase": t.user_attrs["ppl"] / evaluator.float_ppl - 1.0,
                             "bytes": t.user_attrs["bytes"], "decode_ms": t.user_attrs.get("decode_ms"),
                             "params": dict(t.params)})
    meeting = [p for p in result.front if p["ppl_increase"] <= max_ppl_increase]
    if not meeting:
        return result, None
    result.chosen = min(meeting, key=lambda p: (p["bytes"], p["kl"]))
    plan = Plan(default=None, layers=plan_of(result.chosen["params"], config.layers), model=name,
                notes={k: result.chosen[k] for k in ("kl", "ppl", "ppl_increase", "bytes")}
                | {"float_ppl": evaluator.float_ppl, "float_bytes": evaluator.float_bytes})
    return result, plan
