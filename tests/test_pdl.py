"""kernels/pdl.py: when a launch asks for programmatic dependent launch. No GPU needed; the
sm_90 compile of the decode path with PDL is tests/test_sm90_compile.py's."""

from __future__ import annotations

import pytest
import torch

from kernels import pdl
from kernels.errors import InvalidProblem


def test_pdl_is_off_unless_asked_and_refuses_other_values(monkeypatch):
    monkeypatch.delenv(pdl.PDL_ENV, raising=False)
    assert pdl.wanted() is False
    for value, expected in (("0", False), ("1", True), (" 1 ", True), ("", False)):
        monkeypatch.setenv(pdl.PDL_ENV, value)
        assert pdl.wanted() is expected
    monkeypatch.setenv(pdl.PDL_ENV, "yes")
    with pytest.raises(InvalidProblem, match="^INFERTUNE_PDL must be 0 or 1; got 'yes'$"):
        pdl.wanted()


def test_the_constexpr_and_the_launch_option_go_together(monkeypatch):
    x = torch.zeros(4)
    monkeypatch.setenv(pdl.PDL_ENV, "1")
    # Here: a CPU tensor (and the interpreter), so never, asked or not.
    assert pdl.launch_kwargs(x) == {"USE_GDC": False}
    # A device that runs it, compiled (not interpreted): both keywords.
    monkeypatch.setattr(pdl, "supported", lambda device: True)
    monkeypatch.setattr(pdl, "interpreter_enabled", lambda: False)
    assert pdl.launch_kwargs(x) == {"USE_GDC": True, "launch_pdl": True}
    monkeypatch.setenv(pdl.PDL_ENV, "0")
    assert pdl.launch_kwargs(x) == {"USE_GDC": False}
    # ...and the interpreter never, even asked, on a device that could.
    monkeypatch.setenv(pdl.PDL_ENV, "1")
    monkeypatch.setattr(pdl, "interpreter_enabled", lambda: True)
    assert pdl.launch_kwargs(x) == {"USE_GDC": False}


def test_only_cuda_devices_of_compute_capability_9_run_it(monkeypatch):
    assert pdl.supported(torch.device("cpu")) is False
    pdl.supported.cache_clear()
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))
    assert pdl.supported(torch.device("cuda", 0)) is False
    pdl.supported.cache_clear()
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    assert pdl.supported(torch.device("cuda", 0)) is True
    pdl.supported.cache_clear()


def test_decode_path_kernels_give_the_same_values_with_pdl_asked(monkeypatch):
    """Under the interpreter PDL never runs, but every decode-path launcher still passes its
    USE_GDC: with INFERTUNE_PDL=1 the kernels give the values they give without it."""
    import kernels

    results = {}
    for value in ("0", "1"):
        monkeypatch.setenv(pdl.PDL_ENV, value)
        gen = torch.Generator().manual_seed(7)
        x = torch.randn(3, 40, generator=gen)
        w = torch.randn(24, 40, generator=gen)
        results[value] = (kernels.matmul(x, w.t()), kernels.rmsnorm(x, torch.randn(40, generator=gen)),
                          kernels.swiglu(x, torch.randn(3, 40, generator=gen)))
    for a, b in zip(results["0"], results["1"]):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def _chain(x, w1, w2, norm_w, n):
    """A decode-like chain of dependent kernels, each reading the one before's output:
    matmul -> rmsnorm -> swiglu of two halves -> matmul (split K), n times over."""
    import kernels

    for _ in range(n):
        h = kernels.matmul(x, w1.t())
        h = kernels.rmsnorm(h, norm_w)
        half = h.shape[1] // 2
        h = kernels.swiglu(h[:, :half], h[:, half:])
        x = kernels.matmul(h, w2.t())
    return x


@pytest.mark.gpu
@pytest.mark.skipif(not (torch.cuda.is_available() and pdl.supported(torch.device("cuda", 0))),
                    reason="needs a CUDA GPU of compute capability 9+")
def test_gpu_a_pdl_chain_gives_the_bits_of_the_ordinary_one(monkeypatch):
    """Each kernel waits for the one before: with PDL on, eager and replayed in a CUDA graph,
    16 dependent launches give the same bits as without (a missing wait would read a
    half-written tile)."""
    gen = torch.Generator(device="cuda").manual_seed(11)
    x = torch.randn((1, 4096), device="cuda", dtype=torch.bfloat16, generator=gen)
    w1 = torch.randn((2 * 1536, 4096), device="cuda", dtype=torch.bfloat16, generator=gen) / 64
    w2 = torch.randn((4096, 1536), device="cuda", dtype=torch.bfloat16, generator=gen) / 40
    norm_w = torch.rand((2 * 1536,), device="cuda", dtype=torch.bfloat16, generator=gen) + 0.5
    monkeypatch.setenv(pdl.PDL_ENV, "0")
    want = _chain(x, w1, w2, norm_w, 4)
    monkeypatch.setenv(pdl.PDL_ENV, "1")
    for _ in range(10):
        assert torch.equal(_chain(x, w1, w2, norm_w, 4), want)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        _chain(x, w1, w2, norm_w, 4)  # warm-up: compiled, split-K counters allocated
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        got = _chain(x, w1, w2, norm_w, 4)
    for _ in range(20):
        graph.replay()
        torch.cuda.synchronize()
        assert torch.equal(got, want)
