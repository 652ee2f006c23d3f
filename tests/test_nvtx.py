"""NVTX ranges: no-ops without the nvtx package or without a profiler attached (and cheap:
the overhead is measured), recorded with the right message / category / color when a tool
listens (a fake domain stands in for Nsight Systems), around kernel launches, tuning trials
and model phases, with the kernels' results unchanged."""

from __future__ import annotations

import time

import pytest
import torch

import kernels
from kernels import _nvtx as kernel_nvtx
from profilers import nvtx as prof_nvtx


class FakeDomain:
    """What nvtx.get_domain returns when a tool is attached, recording push / pop."""

    handle = object()

    def __init__(self) -> None:
        self.events: list[tuple] = []
        self.categories: dict[str, int] = {}

    def get_category_id(self, name):
        return self.categories.setdefault(name, len(self.categories) + 1)

    def get_event_attributes(self, message=None, color=None, category=None, payload=None):
        return (message, color, category)

    def push_range(self, attributes):
        self.events.append(("push", *attributes))

    def pop_range(self):
        self.events.append(("pop",))

    def pushed(self, category=None) -> list[str]:
        return [e[1] for e in self.events if e[0] == "push" and (category is None or e[3] == category)]


class FakeNvtx:
    def __init__(self) -> None:
        self.domain = FakeDomain()
        self.asked: list[str] = []

    def get_domain(self, name):
        self.asked.append(name)
        return self.domain


@pytest.fixture
def recording():
    """Both shims see a fake nvtx module with a tool attached; restored afterwards."""
    fake = FakeNvtx()
    saved = (kernel_nvtx._nvtx_module, prof_nvtx._nvtx_module)
    kernel_nvtx.reset(fake)
    prof_nvtx.reset(fake)
    yield fake.domain
    kernel_nvtx.reset(saved[0])
    prof_nvtx.reset(saved[1])


@pytest.fixture
def absent():
    """The nvtx package missing (the modules' handle set to None); restored afterwards."""
    saved = (kernel_nvtx._nvtx_module, prof_nvtx._nvtx_module)
    kernel_nvtx.reset(None)
    prof_nvtx.reset(None)
    yield
    kernel_nvtx.reset(saved[0])
    prof_nvtx.reset(saved[1])


def test_the_two_shims_agree_on_domain_categories_and_colors():
    assert kernel_nvtx.DOMAIN == prof_nvtx.DOMAIN == "infertune"
    assert kernel_nvtx.CATEGORIES == prof_nvtx.CATEGORIES == ("kernel", "trial", "model")
    assert kernel_nvtx.COLORS == prof_nvtx.COLORS
    assert len(set(prof_nvtx.COLORS.values())) == 3
    assert kernels.nvtx_range is kernel_nvtx.nvtx_range
    assert prof_nvtx.range is prof_nvtx.annotate


def test_without_the_nvtx_package_ranges_are_no_ops(absent):
    assert not prof_nvtx.available() and not prof_nvtx.active() and not kernel_nvtx.active()
    with prof_nvtx.annotate("x", "trial") as r:
        assert r is prof_nvtx.NO_RANGE
    with kernels.nvtx_range("y", "model", 3) as r:
        assert r is kernel_nvtx.NO_RANGE
    with pytest.raises(KeyError), prof_nvtx.annotate("z", "kernel"):
        raise KeyError("exceptions pass through")
    with pytest.raises(ValueError, match="unknown NVTX category"):
        prof_nvtx.annotate("z", "nonsense")


def test_with_the_package_but_no_tool_attached_ranges_are_no_ops():
    pytest.importorskip("nvtx")
    prof_nvtx.reset()
    kernel_nvtx.reset()
    assert prof_nvtx.available()
    # No Nsight tool injected in the test process: nvtx hands back its dummy domain.
    assert not prof_nvtx.active() and not kernel_nvtx.active()
    with prof_nvtx.range("trial matmul", "trial"), kernels.nvtx_range("matmul", "kernel", "BLOCK_M=16"):
        pass


def test_recorded_ranges_carry_message_category_and_color(recording):
    with prof_nvtx.annotate("trial", "trial", detail="matmul BLOCK_M=16"):
        with kernels.nvtx_range("matmul", "kernel", "BLOCK_M=16"):
            pass
    with pytest.raises(RuntimeError), kernels.nvtx_range("layer", "model", 0):
        raise RuntimeError("popped anyway")
    assert recording.events == [
        ("push", "trial matmul BLOCK_M=16", prof_nvtx.COLORS["trial"], "trial"),
        ("push", "matmul BLOCK_M=16", prof_nvtx.COLORS["kernel"], "kernel"),
        ("pop",), ("pop",),
        ("push", "layer 0", prof_nvtx.COLORS["model"], "model"),
        ("pop",),
    ]
    # Categories named once, in the fixed order (ids 1, 2, 3 in every process).
    assert recording.categories == {"kernel": 1, "trial": 2, "model": 3}


def _median_pair_us(factory, pairs: int = 2000, batches: int = 25) -> float:
    per_pair = []
    for _ in range(batches):
        t0 = time.perf_counter()
        for _ in range(pairs):
            with factory():
                pass
        per_pair.append((time.perf_counter() - t0) / pairs * 1e6)
    per_pair.sort()
    return per_pair[len(per_pair) // 2]


def test_overhead_without_a_profiler_is_about_a_microsecond():
    """Median cost of one enter/exit pair with no tool attached, through both shims, with
    the message's detail given (formatted only when recorded). The bound is generous for CI
    noise; the figure is printed (and recorded in docs/ARCHITECTURE.md, "Profilers")."""
    prof_nvtx.reset()
    kernel_nvtx.reset()
    config = kernels.get("matmul").heuristic  # any object: never formatted here
    prof_us = _median_pair_us(lambda: prof_nvtx.annotate("trial", "trial", detail=config))
    kern_us = _median_pair_us(lambda: kernels.nvtx_range("matmul", "kernel", config))
    empty_us = _median_pair_us(lambda: kernel_nvtx.NO_RANGE)
    print(f"\nNVTX range, no profiler: profilers.nvtx {prof_us:.3f} µs, kernels.nvtx_range {kern_us:.3f} µs "
          f"(a bare no-op with-block {empty_us:.3f} µs)")
    assert prof_us < 20 and kern_us < 20


def test_kernel_launches_are_ranged_and_still_correct(recording):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(5, 48, generator=gen)
    w = torch.randn(48, generator=gen)
    out = kernels.rmsnorm(x, w, 1e-6)
    ref = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * w
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)
    a = torch.randn(7, 32, generator=gen)
    b = torch.randn(32, 24, generator=gen)
    torch.testing.assert_close(kernels.matmul(a, b), a @ b, rtol=1e-3, atol=1e-3)
    pushed = recording.pushed("kernel")
    assert len(pushed) == 2 and recording.events.count(("pop",)) == 2
    assert pushed[0].startswith("rmsnorm ") and "BLOCK" in pushed[0]
    assert pushed[1].startswith("matmul ") and "BLOCK_M=" in pushed[1]


def test_a_tuning_trial_is_one_trial_range(recording):
    from kernels.device import current_device
    from tuner.worker import TimingPolicy, _evaluate, _Session, problem_to_dict

    spec = kernels.get("rmsnorm")
    problem = spec.problem(dict(zip(spec.dims, (4, 64))), "fp32")
    config = spec.heuristic(problem, current_device())
    policy = TimingPolicy(warmup_ms=0, rep_ms=0, min_reps=1, max_reps=1).to_dict()
    request = {"kernel": "rmsnorm", "problem": problem_to_dict(problem), "seed": 0, "timing": policy,
               "op": "evaluate", "config": dict(config), "stop_above_ms": None}
    outcome = _evaluate(_Session(), request)
    assert outcome.status == "ok", outcome
    assert recording.pushed("trial") == [f"trial rmsnorm {config}"]
    assert recording.events[0][0] == "push" and recording.events[-1] == ("pop",)


def test_llama_phases_layers_attention_and_mlp_are_ranged(recording):
    from runtime.llama import LlamaModel, synthetic_weights
    from runtime.model_config import ModelConfig

    config = ModelConfig(family="llama", hidden=64, intermediate=96, layers=2, heads=4, kv_heads=2, head_dim=16,
                         vocab=101, max_positions=64, norm_eps=1e-6, act="silu", tied_embeddings=False,
                         rope_theta=10000.0)
    model = LlamaModel(config, synthetic_weights(config, 0), ("fp32", None))
    cache = model.new_cache(1, 8)
    model.prefill(torch.tensor([[5, 6, 7]]), [3], cache)
    before = len(recording.events)
    model.decode(torch.tensor([8]), cache)
    model_ranges = recording.pushed("model")
    assert model_ranges[:6] == ["prefill B=1 S=3", "layer 0", "attention", "mlp", "layer 1", "attention"]
    decode = [e[1] for e in recording.events[before:] if e[0] == "push"]
    assert decode == ["decode step B=1", "layer 0", "attention", "mlp", "layer 1", "attention", "mlp"]
    pushes = sum(1 for e in recording.events if e[0] == "push")
    assert pushes == recording.events.count(("pop",))


def test_bert_forward_is_ranged(recording):
    transformers = pytest.importorskip("transformers")
    from runtime.bert import BertModel, bert_weights_from_hf_state_dict
    from runtime.model_config import ModelConfig

    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=64, max_position_embeddings=32, type_vocab_size=2)
    ref = transformers.BertModel(cfg, add_pooling_layer=False).eval()
    config = ModelConfig.from_hf_config({"architectures": ["BertModel"], **cfg.to_dict()})
    model = BertModel(config, bert_weights_from_hf_state_dict(ref.state_dict()), ("fp32", None))
    model(torch.tensor([[1, 2, 3, 4]]))
    assert recording.pushed("model") == ["prefill B=1 S=4", "layer 0", "attention", "mlp",
                                         "layer 1", "attention", "mlp"]
