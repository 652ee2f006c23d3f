"""The operations a model's forward pass is made of, behind one small interface, with two
backends: `TritonOps` (our kernels; configs from the active kernels.config_source, i.e. the
tuned database or the heuristic) and `TorchOps` (reference torch ops, any device).

Shapes (T tokens, H query heads, HKV key/value heads, D head size):
    linear(x [T, K], w)                     -> [T, N]
    rmsnorm(x [T, N], weight, eps)          -> [T, N]
    add_rmsnorm(x [T, N], delta, weight, eps) -> (rmsnorm(x + delta), x + delta)
        the sum rounded to x's dtype first; x may be overwritten with it (TritonOps does)
    layernorm(x [T, N], weight, bias, eps)  -> [T, N]
    rope(x [T, H, D], positions [T], cos, sin) -> [T, H, D]     (HF rotate-half convention)
    rope_kv(qkv [T, H + 2 HKV, D], positions [T], rows [T], cos, sin, k_cache, v_cache [B, L, HKV, D])
        -> q [T, H, D] rotated; k rotated and v written to the caches at [rows[t], positions[t]]
    attention(q [B, S, H, D], k, v [B, S, HKV, D], causal, seq_lens [B] | None) -> [B, S, H, D]
        right padding: rows at or past seq_lens[b] are garbage-free zeros or ignored
    attention_decode(q [B, H, D], k_cache, v_cache [B, L, HKV, D], seq_lens [B]) -> [B, H, D]
    swiglu(gate [T, N], up [T, N])          -> silu(gate) * up
    gelu(x [T, N], approximate)             -> [T, N]

Both backends compute norms and softmax statistics in fp32 and return the input dtype,
as Hugging Face's Llama and BERT do; the contract test (tests/test_runtime_ops.py) holds
them to each other at odd sizes.
"""

from __future__ import annotations

import math
from typing import Protocol

import torch
import torch.nn.functional as F

import kernels

from .linear import LinearWeight


class Ops(Protocol):
    name: str

    def linear(self, x: torch.Tensor, w: LinearWeight) -> torch.Tensor: ...

    def rmsnorm(self, x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor: ...

    def add_rmsnorm(self, x: torch.Tensor, delta: torch.Tensor, weight: torch.Tensor,
                    eps: float) -> tuple[torch.Tensor, torch.Tensor]: ...

    def layernorm(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, eps: float) -> torch.Tensor: ...

    def rope(self, x: torch.Tensor, positions: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor: ...

    def rope_kv(self, qkv: torch.Tensor, positions: torch.Tensor, rows: torch.Tensor, cos: torch.Tensor,
                sin: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor) -> torch.Tensor: ...

    def attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, causal: bool,
                  seq_lens: torch.Tensor | None) -> torch.Tensor: ...

    def attention_decode(self, q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                         seq_lens: torch.Tensor) -> torch.Tensor: ...

    def swiglu(self, gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor: ...

    def gelu(self, x: torch.Tensor, approximate: str) -> torch.Tensor: ...


class TorchOps:
    """Reference ops in plain torch: what the triton backend is checked against, and what
    runs where the kernels cannot (any device, any dtype torch has)."""

    name = "torch"

    def linear(self, x: torch.Tensor, w: LinearWeight) -> torch.Tensor:
        if w.scheme == "fp8-row":  # activations are quantized too, per row, as the kernel's caller does
            x = kernels.quantize_fp8(x, per_row=True).dequantize(x.dtype)
        return F.linear(x, w.dequantized(x.dtype), w.bias)

    def rmsnorm(self, x, weight, eps):
        xf = x.float()
        y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
        return weight * y.to(x.dtype)

    def add_rmsnorm(self, x, delta, weight, eps):
        s = x + delta
        return self.rmsnorm(s, weight, eps), s

    def layernorm(self, x, weight, bias, eps):
        return F.layer_norm(x.float(), (x.shape[-1],), weight.float(), None if bias is None else bias.float(),
                            eps).to(x.dtype)

    def rope(self, x, positions, cos, sin):
        c = cos[positions].unsqueeze(1)  # [T, 1, D/2] fp32
        s = sin[positions].unsqueeze(1)
        half = x.shape[-1] // 2
        x1, x2 = x[..., :half].float(), x[..., half:].float()
        return torch.cat([x1 * c - x2 * s, x2 * c + x1 * s], dim=-1).to(x.dtype)

    def rope_kv(self, qkv, positions, rows, cos, sin, k_cache, v_cache):
        H, HKV = qkv.shape[1] - 2 * k_cache.shape[2], k_cache.shape[2]
        qk = self.rope(qkv[:, :H + HKV], positions, cos, sin)
        where = (rows.long(), positions.long())
        k_cache[where] = qk[:, H:]
        v_cache[where] = qkv[:, H + HKV:]
        return qk[:, :H]

    def attention(self, q, k, v, *, causal, seq_lens):
        B, S, H, D = q.shape
        groups = H // k.shape[2]
        qt = q.transpose(1, 2).float()
        kt = k.transpose(1, 2).float().repeat_interleave(groups, dim=1)
        vt = v.transpose(1, 2).float().repeat_interleave(groups, dim=1)
        allowed = torch.ones(S, S, dtype=torch.bool, device=q.device)
        if causal:
            allowed = torch.tril(allowed)
        allowed = allowed.expand(B, 1, S, S)
        if seq_lens is not None:
            valid = torch.arange(S, device=q.device)[None, :] < seq_lens.to(q.device)[:, None]  # [B, S]
            allowed = allowed & valid[:, None, None, :]
        scores = (qt @ kt.transpose(-1, -2)) / math.sqrt(D)
        scores = scores.masked_fill(~allowed, float("-inf"))
        probs = torch.softmax(scores, dim=-1).nan_to_num(0.0)  # fully masked (padding) rows -> 0
        out = (probs @ vt).transpose(1, 2)
        if seq_lens is not None:
            out = out * valid[:, :, None, None]
        return out.to(q.dtype)

    def attention_decode(self, q, k_cache, v_cache, seq_lens):
        B, H, D = q.shape
        L, HKV = k_cache.shape[1], k_cache.shape[2]
        # the G query heads of a kv head as one [G, D] matrix against the cache as it lies (a
        # strided view, no repeat_interleave copy): 12x faster at B=4, L=1024, H=9, HKV=3 on
        # the CPU (the server's decode step was 373 ms, 3.6x its L=64 time), same result
        k = k_cache.float().permute(0, 2, 3, 1)  # [B, HKV, D, L]
        v = v_cache.float().transpose(1, 2)      # [B, HKV, L, D]
        scores = (q.float().view(B, HKV, H // HKV, D) @ k) / math.sqrt(D)  # [B, HKV, G, L]
        valid = torch.arange(L, device=q.device)[None, :] < seq_lens.to(q.device)[:, None]
        scores = scores.masked_fill(~valid[:, None, None, :], float("-inf"))
        probs = torch.softmax(scores, dim=-1).nan_to_num(0.0)
        return (probs @ v).reshape(B, H, D).to(q.dtype)

    def swiglu(self, gate, up):
        return (F.silu(gate.float()) * up.float()).to(gate.dtype)

    def gelu(self, x, approximate):
        return F.gelu(x.float(), approximate=approximate).to(x.dtype)


class TritonOps:
    """Our Triton kernels. Each call passes no config, so the active config source (the
    tuned database's memoized answers, or the heuristic) picks it per problem."""

    name = "triton"

    def linear(self, x: torch.Tensor, w: LinearWeight) -> torch.Tensor:
        if w.scheme == "none":
            return kernels.matmul(x, w.weight.t(), w.bias)
        if w.scheme == "int8":
            return kernels.matmul_w8a16(x, w.quant, w.bias)
        if w.scheme == "fp8-row":
            return kernels.matmul_fp8(kernels.quantize_fp8(x, per_row=True), w.quant, w.bias, out_dtype=x.dtype)
        return kernels.matmul_w4a16(x, w.quant, w.bias)

    def rmsnorm(self, x, weight, eps):
        return kernels.rmsnorm(x, weight, eps)

    def add_rmsnorm(self, x, delta, weight, eps):
        return kernels.add_rmsnorm(x, delta, weight, eps, residual_out=x)  # the residual in place

    def layernorm(self, x, weight, bias, eps):
        return kernels.layernorm(x, weight, bias, eps)

    def rope(self, x, positions, cos, sin):
        return kernels.rope(x, positions, cos, sin)

    def rope_kv(self, qkv, positions, rows, cos, sin, k_cache, v_cache):
        return kernels.rope_kv(qkv, positions, rows, cos, sin, k_cache, v_cache)

    def attention(self, q, k, v, *, causal, seq_lens):
        return kernels.attention(q, k, v, causal=causal, seq_lens=seq_lens)

    def attention_decode(self, q, k_cache, v_cache, seq_lens):
        return kernels.attention_decode(q, k_cache, v_cache, seq_lens)

    def swiglu(self, gate, up):
        return kernels.swiglu(gate, up)

    def gelu(self, x, approximate):
        return kernels.gelu(x, approximate)


def ops_for(backend: str) -> Ops:
    """"torch" -> TorchOps; "triton" / "triton-default" -> TritonOps (which configs it gets
    is the active config source's business, set by the caller)."""
    return TorchOps() if backend == "torch" else TritonOps()
