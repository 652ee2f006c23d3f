"""bench/decode_profile.py: the difference of two profiled generations is the decode steps'
work, per step. On the CPU the profile records CPU ops, so a fake generation whose prefill
and decode steps run known ops checks the arithmetic."""

from __future__ import annotations

import pytest
import torch

from bench import decode_profile as dprof


def _fake_generate(prompts, n):
    """Prefill: one cumsum over the prompt; each of the n - 1 decode steps: one mm and two mul."""
    x = torch.randn(64, 64)
    torch.cumsum(torch.tensor(prompts[0], dtype=torch.float32), 0)
    for _ in range(n - 1):
        y = x @ x
        y = y * 0.5
        y * 2.0
    return n


@pytest.mark.parametrize("new_tokens", [2, 9])
def test_per_step_calls_are_the_decode_steps_ops(new_tokens):
    profile = dprof.decode_profile(_fake_generate, [[1, 2, 3]], new_tokens, cuda=False, step_ms=None)
    rows = {r["kernel"]: r for r in profile["kernels"]}
    assert profile["decode_steps"] == new_tokens - 1
    assert rows["aten::mm"]["calls_per_step"] == pytest.approx(1.0)
    assert rows["aten::mul"]["calls_per_step"] == pytest.approx(2.0)
    assert "aten::cumsum" not in rows  # prefill only: it cancels out
    assert profile["busy_us_per_step"] == pytest.approx(sum(r["us_per_step"] for r in profile["kernels"])
                                                        + profile["other"]["us_per_step"])
    assert abs(sum(r["share"] for r in profile["kernels"]) - 1.0) < 1e-9 or profile["other"]["kernels"]
    assert profile["step_us"] is None and profile["outside_kernels_share"] is None


def test_step_time_gives_the_share_outside_kernels():
    profile = dprof.decode_profile(_fake_generate, [[1]], 5, cuda=False, step_ms=1e6)  # a 1000 s "step"
    assert profile["step_us"] == 1e9 and 0.99 < profile["outside_kernels_share"] <= 1.0
    lines = dprof.markdown(profile, "fp32:torch")
    assert any(line.startswith("| `aten::mm` | 1.0 |") for line in lines)
    assert "CPU ops a step" in lines[-1] and "outside kernels" not in lines[-1]  # no gap figure off a GPU
    gpu_lines = dprof.markdown({**profile, "cuda": True}, "bf16+cg:triton")
    assert "launches a step" in gpu_lines[-1] and "of the step is outside kernels" in gpu_lines[-1]
    with pytest.raises(ValueError, match="new_tokens >= 2"):
        dprof.decode_profile(_fake_generate, [[1]], 1, cuda=False, step_ms=None)


def test_short_names_cut_templates_only_when_long():
    assert dprof.short_name("_add_rmsnorm_kernel") == "_add_rmsnorm_kernel"
    long = "void at::native::vectorized_elementwise_kernel<4, at::native::FillFunctor<float>, " + "x" * 80 + ">(int)"
    assert dprof.short_name(long) == "at::native::vectorized_elementwise_kernel"
    assert len(dprof.short_name("k" * 200)) == dprof.NAME_CHARS
