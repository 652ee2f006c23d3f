"""The default step timer of end-to-end confirmation on a real (tiny) model: a one-layer Llama
written as a Hugging Face directory, loaded by runtime.loading.load_model on the triton
backend, its decode step timed through the CPU interpreter with the old and the new
configs. What is checked is the plumbing (the model launches exactly the planned problems,
the B source really hands the kernel the new config, the verdict's evidence is sane), not
a speed: interpreter times say nothing about a GPU."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

import kernels
from infertune.confirm import CPU_NOTE, NOT_EXERCISED, confirm_records
from infertune.confirm_timer import ModelStepTimer, confirm_variant
from infertune.errors import UsageError
from infertune.settings import Settings
from kernels.device import current_device
from kernels.spec import Config
from runtime.hf_loader import llama_name
from runtime.llama import synthetic_weights
from runtime.model_config import ModelConfig

from .db_records import make_record

TINY = ModelConfig(family="llama", hidden=32, intermediate=48, layers=1, heads=2, kv_heads=1, head_dim=16,
                   vocab=37, max_positions=64, norm_eps=1e-5, act="silu", rope_theta=10000.0)
_HF_LAYER = {"attn_norm": "input_layernorm", "q": "self_attn.q_proj", "k": "self_attn.k_proj",
             "v": "self_attn.v_proj", "o": "self_attn.o_proj", "ffn_norm": "post_attention_layernorm",
             "gate": "mlp.gate_proj", "up": "mlp.up_proj", "down": "mlp.down_proj"}
_HF_GLOBAL = {"embed": "model.embed_tokens.weight", "norm": "model.norm.weight", "lm_head": "lm_head.weight"}


def _write_llama(directory, seed: int):
    state = {}
    for name, tensor in synthetic_weights(TINY, seed).items():
        if name.startswith("layers."):
            _, i, part = name.split(".")
            hf = f"model.layers.{i}.{_HF_LAYER[part]}.weight"
        else:
            hf = _HF_GLOBAL[name]
        assert llama_name(hf) == name
        state[hf] = tensor.contiguous()
    directory.mkdir()
    save_file(state, str(directory / "model.safetensors"))
    (directory / "config.json").write_text(json.dumps({
        "architectures": ["LlamaForCausalLM"], "hidden_size": TINY.hidden, "intermediate_size": TINY.intermediate,
        "num_hidden_layers": TINY.layers, "num_attention_heads": TINY.heads, "num_key_value_heads": TINY.kv_heads,
        "head_dim": TINY.head_dim, "vocab_size": TINY.vocab, "max_position_embeddings": TINY.max_positions,
        "rms_norm_eps": TINY.norm_eps, "rope_theta": TINY.rope_theta, "tie_word_embeddings": False}))
    return directory


class Checked:
    """The real timer, and after each call: no launch the list did not plan, and which config
    the record's problem got."""

    def __init__(self, inner: ModelStepTimer, key: tuple[str, str]) -> None:
        self.inner, self.key, self.seen = inner, key, []

    def __call__(self, step, source) -> float:
        ms = self.inner(step, source)
        assert source.unplanned == {}, source.unplanned
        self.seen.append(next(str(r.config) for (name, problem), r in source.table.items()
                              if (name, kernels.get(name).shape_key(problem)) == self.key))
        return ms


def test_real_step_timer_on_a_tiny_model(tmp_path, seed):
    device = current_device()
    path = _write_llama(tmp_path / "tiny-llama", seed)
    spec = kernels.get("matmul")
    shape = {"M": 1, "N": TINY.qkv_dim, "K": TINY.hidden}  # the decode step's qkv projection
    problem = spec.problem(shape, "fp32")
    heuristic = spec.heuristic(problem, device)
    new = next(c for c in spec.sample_configs(problem, device, 4, seed) if c != heuristic)
    record = make_record("matmul", shape, "fp32", device=device, config=dict(new))
    elsewhere = make_record("matmul", {"M": 512, "N": TINY.qkv_dim, "K": TINY.hidden}, "fp32", device=device)
    settings = Settings(warmup_ms=0.0, rep_ms=0.0, min_reps_cpu=1)
    timer = Checked(ModelStepTimer(str(path), device, dtype="fp32", quant=None, seed=seed, settings=settings),
                    (record.kernel, record.problem_key))
    report = confirm_records(str(path), [record, elsewhere], db=str(tmp_path / "absent.db"), device=device,
                             batches=[1], seq=4, gen=3, dtype="fp32", quant=None, seed=seed, settings=settings,
                             rounds=2, step_timer=timer)
    timed, skipped = report.results
    assert timed.steps == ("decode b=1",) and timed.rounds == 2
    assert timed.ratio > 0 and timed.ci[0] <= timed.ratio <= timed.ci[1] and timed.old_ms > 0 and timed.new_ms > 0
    assert skipped.verdict == NOT_EXERCISED
    # the mirrored order, twice: old (heuristic), new, new, old
    h, n = str(heuristic), str(Config(new))
    assert timer.seen == [h, n, n, h] * 2
    assert CPU_NOTE in report.notes


def test_variant_of_a_confirmation():
    device = current_device()
    assert str(confirm_variant("fp32", "w4g128", device)).startswith("fp32+w4g128")
    assert confirm_variant("fp32", None, device).backend == "triton"
    with pytest.raises(UsageError, match="no variant with weights"):
        confirm_variant("bf16", "int4-g128-asym", device)


def test_tiny_model_weights_roundtrip(tmp_path):
    """The directory the timer test loads is the model synthetic_weights made."""
    from runtime.hf_loader import load_hf_dir

    loaded = load_hf_dir(_write_llama(tmp_path / "m", 3))
    assert loaded.config == TINY
    assert torch.equal(loaded.tensors["layers.0.down"], synthetic_weights(TINY, 3)["layers.0.down"])
