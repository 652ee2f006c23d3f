"""The Llama decoder and generation, on the CPU: the torch backend against transformers'
LlamaForCausalLM (logits and greedy tokens, plain and llama3-scaled rope), batched equal to
one-by-one, the triton backend (interpreter) against the torch one, quantized weights
within measured bounds of the float model, and sampling.

Seeds are fixed here (not the per-run `seed` fixture): greedy tokens are compared exactly,
and a fresh random model now and then has two logits closer than the compared paths'
rounding, which would flip a token without any bug.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from runtime.errors import InvalidSampling, InvalidWorkload, PromptTooLong
from runtime.generate import Sampling, generate, next_tokens
from runtime.llama import LlamaModel, rope_tables, synthetic_weights, weight_shapes
from runtime.model_config import ModelConfig
from runtime.presets import get_preset

transformers = pytest.importorskip("transformers")

SMALL = ModelConfig(family="llama", hidden=64, intermediate=96, layers=2, heads=4, kv_heads=2, head_dim=16,
                    vocab=101, max_positions=128, norm_eps=1e-6, act="silu", tied_embeddings=False,
                    rope_theta=10000.0)
LLAMA3_SCALING = (("factor", 8.0), ("high_freq_factor", 4.0), ("low_freq_factor", 1.0),
                  ("original_max_position_embeddings", 16), ("rope_type", "llama3"))
PROMPTS = [[5, 17, 3, 99, 42, 7, 7, 60, 1], [33, 2], [11, 12, 13, 14, 15]]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These models are tiny: torch's intra-op threads only add waits (a 16-token generation
    took 3.3 s with 2 threads on a loaded 2-CPU machine, 15 ms with 1)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _weights(config: ModelConfig, seed: int, std: float = 0.1) -> dict[str, torch.Tensor]:
    """synthetic_weights with the linear layers scaled from std 0.02 to `std`: at 0.02 a
    2-layer model's logits are nearly flat and greedy decoding repeats one token, which
    would hide errors in the cache and positions."""
    return {k: (v * (std / 0.02) if v.dim() == 2 else v) for k, v in synthetic_weights(config, seed).items()}


def _hf_model(config: ModelConfig, weights: dict[str, torch.Tensor]):
    scaling = dict(config.rope_scaling) if config.rope_scaling else None
    hc = transformers.LlamaConfig(
        hidden_size=config.hidden, intermediate_size=config.intermediate, num_hidden_layers=config.layers,
        num_attention_heads=config.heads, num_key_value_heads=config.kv_heads, head_dim=config.head_dim,
        vocab_size=config.vocab, max_position_embeddings=config.max_positions, rms_norm_eps=config.norm_eps,
        rope_theta=config.rope_theta, rope_scaling=scaling, tie_word_embeddings=config.tied_embeddings)
    model = transformers.LlamaForCausalLM._from_config(hc, attn_implementation="eager", dtype=torch.float32).eval()
    names = {"embed": "model.embed_tokens.weight", "norm": "model.norm.weight", "lm_head": "lm_head.weight"}
    sub = {"attn_norm": "input_layernorm", "q": "self_attn.q_proj", "k": "self_attn.k_proj",
           "v": "self_attn.v_proj", "o": "self_attn.o_proj", "ffn_norm": "post_attention_layernorm",
           "gate": "mlp.gate_proj", "up": "mlp.up_proj", "down": "mlp.down_proj"}
    state = {}
    for name, tensor in weights.items():
        if name.startswith("layers."):
            _, i, part = name.split(".")
            state[f"model.layers.{i}.{sub[part]}.weight"] = tensor
        else:
            state[names[name]] = tensor
    if config.tied_embeddings:
        state["lm_head.weight"] = weights["embed"]
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected and all("rotary" in m for m in missing), (missing, unexpected)
    return model


def _padded(prompts):
    S = max(map(len, prompts))
    tokens = torch.zeros(len(prompts), S, dtype=torch.long)
    for b, p in enumerate(prompts):
        tokens[b, :len(p)] = torch.tensor(p)
    return tokens, [len(p) for p in prompts]


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).abs().max() / b.double().abs().max()).item()


@pytest.mark.parametrize("tied, scaling", [(False, None), (True, None), (False, LLAMA3_SCALING)])
def test_torch_backend_matches_transformers(tied, scaling):
    config = dataclasses.replace(SMALL, tied_embeddings=tied, rope_scaling=scaling)
    weights = _weights(config, seed=1)
    ours = LlamaModel(config, weights, ("fp32", None))
    hf = _hf_model(config, weights)
    tokens, lengths = _padded(PROMPTS)
    got = ours.prefill(tokens, lengths)
    with torch.no_grad():
        for b, p in enumerate(PROMPTS):
            want = hf(torch.tensor([p])).logits[0, -1]
            assert _rel(got[b], want) < 1e-4
        # 20 greedy tokens, past original_max_position_embeddings=16 of the scaled rope
        prompt = PROMPTS[0]
        want = hf.generate(torch.tensor([prompt]), max_new_tokens=20, do_sample=False, pad_token_id=0,
                           eos_token_id=None)[0, len(prompt):].tolist()
        # every position's logits through decode steps, past the scaled rope's 16 positions
        # (greedy text of a random model soon repeats one token, so take seeded random text)
        text = torch.randint(0, config.vocab, (40,), generator=torch.Generator().manual_seed(1)).tolist()
        want_lp = torch.log_softmax(hf(torch.tensor([text])).logits[0, :-1], -1)
    assert generate(ours, [prompt], 20).tokens == [want]
    assert _rel(_teacher_forced(ours, text), want_lp) < 1e-4


def test_llama3_rope_scaling_matches_transformers_inv_freq():
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
    config = get_preset("llama-3.2-1b").config
    hc = transformers.LlamaConfig(hidden_size=config.hidden, num_attention_heads=config.heads,
                                  head_dim=config.head_dim, rope_theta=config.rope_theta,
                                  rope_scaling=dict(config.rope_scaling))
    inv_freq, factor = ROPE_INIT_FUNCTIONS["llama3"](hc, "cpu")
    cos, sin = rope_tables(config, 2, "cpu")
    assert factor == 1.0
    ours = torch.atan2(sin[1].double(), cos[1].double())  # the angle at position 1 is inv_freq
    assert torch.allclose(ours, inv_freq.double(), rtol=1e-6, atol=0)


@pytest.mark.parametrize("dtype, tol", [("fp32", 1e-5), ("fp16", 2e-2)])
def test_batched_generation_equals_one_by_one(dtype, tol):
    weights = _weights(SMALL, seed=2)
    model = LlamaModel(SMALL, weights, (dtype, None))
    tokens, lengths = _padded(PROMPTS)
    batched = model.prefill(tokens, lengths)
    for b, p in enumerate(PROMPTS):
        alone = model.prefill(torch.tensor([p]), [len(p)])
        assert _rel(batched[b].float(), alone[0].float()) < tol
    if dtype == "fp32":
        together = generate(model, PROMPTS, 12).tokens
        assert together == [generate(model, [p], 12).tokens[0] for p in PROMPTS]


def _teacher_forced(model: LlamaModel, sequence: list[int]) -> torch.Tensor:
    """fp32 log-probabilities [len - 1, vocab] of each next token, through prefill + decode."""
    cache = model.new_cache(1, len(sequence))
    rows = [model.prefill(torch.tensor([sequence[:1]]), [1], cache)[0]]
    for t in sequence[1:-1]:
        rows.append(model.decode(torch.tensor([t]), cache)[0])
    return torch.log_softmax(torch.stack(rows).float(), -1)


def test_decode_equals_prefill():
    """Position n's logits are the same whether the token came in the prompt or a decode step."""
    model = LlamaModel(SMALL, _weights(SMALL, seed=3), ("fp32", None))
    seq = PROMPTS[0]
    stepped = _teacher_forced(model, seq + [0])
    for n in range(1, len(seq) + 1):
        full = torch.log_softmax(model.prefill(torch.tensor([seq[:n]]), [n])[0], -1)
        assert _rel(stepped[n - 1], full) < 1e-5


# Measured on this test's model (hidden 128, 2 layers, weights std 0.05; seeds 0-9) over 63
# positions of text the float model sampled: mean KL(float || quantized) in nats, and the
# perplexity ratio quantized / float. int8 per-channel: KL 2.4e-5..5.7e-5, ratio within
# 1 +- 0.0033. int4-g32: KL 7.3e-3..1.4e-2, ratio 1 +- 0.05. int4-g128 (one or two groups
# per row at these K): KL 9.4e-3..1.9e-2, ratio 1 +- 0.076. A broken int4 quantizer (its
# scales doubled) gave KL 0.136..0.18. Bounds: KL about 3-5x the worst seen (so 0.04 for
# int4-g32 still catches the broken one, asserted below); the ratio, noisier over 63
# tokens, 2.5-6x its worst spread.
QUANT_BOUNDS = {"int8": (3e-4, 0.02), "int4-g32": (0.04, 0.15), "int4-g128": (0.06, 0.2)}
QUANT_CONFIG = dataclasses.replace(SMALL, hidden=128, intermediate=192, head_dim=32)


def _kl_and_ppl_ratio(reference: LlamaModel, other: LlamaModel, text: list[int]) -> tuple[float, float]:
    ref_lp, lp = _teacher_forced(reference, text), _teacher_forced(other, text)
    kl = (ref_lp.exp() * (ref_lp - lp)).sum(-1).mean().item()
    targets = torch.tensor(text[1:])[:, None]
    return kl, math.exp(ref_lp.gather(1, targets).mean().item() - lp.gather(1, targets).mean().item())


@pytest.mark.parametrize("scheme", sorted(QUANT_BOUNDS))
def test_quantized_weights_stay_close(scheme):
    weights = _weights(QUANT_CONFIG, seed=4, std=0.05)
    reference = LlamaModel(QUANT_CONFIG, weights, ("fp32", None))
    quantized = LlamaModel(QUANT_CONFIG, weights, ("fp32", scheme))
    assert quantized.lm_head.scheme == "none" and quantized.layers[0]["down"].scheme == scheme
    text = PROMPTS[0] + generate(reference, [PROMPTS[0]], 56, Sampling(temperature=1.0, seed=4)).tokens[0]
    kl, ratio = _kl_and_ppl_ratio(reference, quantized, text)
    kl_bound, ratio_bound = QUANT_BOUNDS[scheme]
    assert 1e-6 < kl < kl_bound, kl
    assert abs(ratio - 1) < ratio_bound, ratio
    if scheme == "int4-g32":  # the bound still catches a broken quantizer
        for layer in quantized.layers:
            for role in ("qkv", "o", "gate_up", "down"):
                layer[role].quant.scale.mul_(2)
        assert _kl_and_ppl_ratio(reference, quantized, text)[0] > kl_bound


def test_plan_overrides_the_variant_per_layer():
    model = LlamaModel(SMALL, _weights(SMALL, seed=5), ("fp16", "int8"),
                       plan={"layers.1.down": "int4-g32", "lm_head": "int8", "layers.0.qkv": "none"})
    assert model.layers[1]["down"].scheme == "int4-g32" and model.layers[0]["down"].scheme == "int8"
    assert model.layers[0]["qkv"].scheme == "none" and model.lm_head.scheme == "int8"
    from runtime.plan import Plan
    planned = LlamaModel(SMALL, _weights(SMALL, seed=5), ("fp32", None),
                         plan=Plan(default="int4-g128", layers={"layers.*.down": "int8", "layers.0.o": "none"}))
    assert [planned.layers[i][r].scheme for i in (0, 1) for r in ("qkv", "o", "down")] == [
        "int4-g128", "none", "int8", "int4-g128", "int4-g128", "int8"]
    assert planned.lm_head.scheme == "none"  # a plan's default leaves lm_head float
    with pytest.raises(InvalidWorkload, match="unknown layer"):
        LlamaModel(SMALL, _weights(SMALL, seed=5), ("fp32", None), plan={"layers.9.down": "int8"})


def test_synthetic_weights_and_shapes():
    config = get_preset("llama-3-8b").config
    shapes = weight_shapes(config)
    assert shapes["layers.0.k"] == (1024, 4096) and shapes["lm_head"] == (128256, 4096)
    assert "lm_head" not in weight_shapes(get_preset("llama-3.2-1b").config)
    a, b = synthetic_weights(SMALL, 7), synthetic_weights(SMALL, 7)
    assert all(torch.equal(a[k], b[k]) for k in a) and not torch.equal(a["embed"], synthetic_weights(SMALL, 8)["embed"])
    assert abs(a["layers.0.gate"].std().item() - 0.02) < 0.002 and abs(a["norm"].mean().item() - 1) < 0.01
    model = LlamaModel(dataclasses.replace(SMALL, tied_embeddings=True),
                       synthetic_weights(dataclasses.replace(SMALL, tied_embeddings=True), 7), ("fp16", None))
    assert model.embed is model.lm_head.weight


# -- the triton backend (interpreter) against the torch one ---------------------------------
TINY = ModelConfig(family="llama", hidden=32, intermediate=48, layers=1, heads=2, kv_heads=1, head_dim=16,
                   vocab=37, max_positions=32, norm_eps=1e-5, act="silu", rope_theta=10000.0)


@pytest.mark.parametrize("dtype, tol", [("fp32", 1e-4), ("fp16", 2e-2)])
def test_triton_backend_matches_torch(dtype, tol):
    weights = _weights(TINY, seed=6, std=0.3)
    ref = LlamaModel(TINY, weights, (dtype, None, "torch"))
    ours = LlamaModel(TINY, weights, (dtype, None, "triton"))
    prompts = [[3, 1, 4, 1, 5], [9, 2]]
    tokens, lengths = _padded(prompts)
    _close = lambda a, b: _rel(a.float(), b.float()) < tol  # noqa: E731
    assert _close(ours.prefill(tokens, lengths), ref.prefill(tokens, lengths))
    want = generate(ref, prompts, 4).tokens
    assert generate(ours, prompts, 4).tokens == want
    rect = torch.tensor([[3, 1, 4], [2, 7, 1]])  # equal lengths: the varlen=0 launch
    assert _close(ours.prefill(rect, [3, 3]), ref.prefill(rect, [3, 3]))


# -- sampling, EOS, limits --------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_model():
    return LlamaModel(SMALL, _weights(SMALL, seed=8), ("fp32", None))


def test_sampling_is_seeded(small_model):
    hot = Sampling(temperature=1.5, top_p=0.95, seed=1)
    first = generate(small_model, PROMPTS, 16, hot).tokens
    assert generate(small_model, PROMPTS, 16, hot).tokens == first
    assert generate(small_model, PROMPTS, 16, dataclasses.replace(hot, seed=2)).tokens != first
    greedy = generate(small_model, PROMPTS, 16).tokens
    assert generate(small_model, PROMPTS, 16, Sampling(temperature=0.7, top_k=1, seed=3)).tokens == greedy


def test_top_k_and_top_p_cut_the_distribution():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    gen = torch.Generator().manual_seed(0)
    draws = lambda s: set(next_tokens(logits.expand(400, 4), s, gen).tolist())  # noqa: E731
    assert draws(Sampling(temperature=1.0, top_p=0.5)) == {0}  # token 0 alone reaches 0.5
    assert draws(Sampling(temperature=1.0, top_p=0.7)) == {0, 1}
    assert draws(Sampling(temperature=1.0, top_k=3)) == {0, 1, 2}
    assert draws(Sampling(temperature=1.0)) == {0, 1, 2, 3}
    assert next_tokens(logits, Sampling(), None).tolist() == [0]


@pytest.mark.parametrize("kwargs", [{"temperature": -1.0}, {"temperature": float("nan")},
                                    {"temperature": float("inf")}, {"top_k": -1}, {"top_p": 0.0},
                                    {"top_p": 1.5}, {"temperature": True}])
def test_sampling_is_validated(kwargs):
    with pytest.raises(InvalidSampling) as exc:
        Sampling(**kwargs)
    assert "\n" not in str(exc.value)


def test_eos_stops_one_sequence_and_not_the_others(small_model):
    free = generate(small_model, PROMPTS, 12).tokens
    eos = free[1][3]  # the 4th token of the second sequence
    assert eos not in free[0][:12] or eos not in free[2][:12], "pick other prompts: the EOS is everywhere"
    stopped = generate(small_model, PROMPTS, 12, eos_ids=[eos])
    for got, full in zip(stopped.tokens, free):
        cut = full.index(eos) + 1 if eos in full else len(full)
        assert got == full[:cut]
    assert stopped.tokens[1] == free[1][:free[1].index(eos) + 1]
    assert stopped.decode_tokens == sum(map(len, stopped.tokens)) - len(PROMPTS)
    assert stopped.prefill_tokens == sum(map(len, PROMPTS))
    assert stopped.prefill_seconds > 0 and stopped.decode_tokens_per_s > 0


def test_eos_ending_every_sequence_costs_at_most_one_step_more(small_model, monkeypatch):
    """generate queues step i+1 before reading step i's tokens: when EOS ends the last
    sequence, one step more may have run. Its tokens are dropped; the steps stop there."""
    free = generate(small_model, PROMPTS[:1], 12).tokens[0]
    eos = free[3]
    calls = []
    decode = small_model.decode
    monkeypatch.setattr(small_model, "decode", lambda *a: calls.append(1) or decode(*a))
    stopped = generate(small_model, PROMPTS[:1], 12, eos_ids=[eos])
    assert stopped.tokens[0] == free[:free.index(eos) + 1]
    assert stopped.decode_tokens == free.index(eos)
    assert stopped.decode_tokens <= len(calls) <= stopped.decode_tokens + 1


def test_too_long_prompts_and_bad_requests_raise_one_line(small_model):
    for prompts, limit, error in [([[1] * 129], 1, PromptTooLong), ([[1] * 100], 29, PromptTooLong),
                                  ([[]], 1, InvalidWorkload), ([[101]], 1, InvalidWorkload),
                                  ([[1]], 0, InvalidWorkload)]:
        with pytest.raises(error) as exc:
            generate(small_model, prompts, limit)
        assert "\n" not in str(exc.value)
    assert len(generate(small_model, [[1] * 100], 28).tokens[0]) == 28  # exactly the context: fine
    cache = small_model.new_cache(1, 3)
    small_model.prefill(torch.tensor([[1, 2, 3]]), [3], cache)
    with pytest.raises(PromptTooLong):
        small_model.decode(torch.tensor([4]), cache)
    with pytest.raises(PromptTooLong):
        small_model.prefill(torch.tensor([[1] * 4]), [4], cache)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_cuda_graph_decode_matches_eager(backend):
    from runtime.variant import Variant
    weights = _weights(SMALL, seed=9)
    eager = LlamaModel(SMALL, weights, Variant("fp16", None, backend), device="cuda")
    graphed = LlamaModel(SMALL, weights, Variant("fp16", None, backend, cuda_graphs=True), device="cuda")
    want = generate(eager, PROMPTS, 24)
    got = generate(graphed, PROMPTS, 24)
    assert got.tokens == want.tokens and got.capture_seconds > 0
