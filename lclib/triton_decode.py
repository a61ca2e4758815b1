"""A split-KV decode attention kernel over fp8 (e4m3) K/V, in Triton (flash-decoding).

One decode step: each program takes one KV head (its group of query heads as rows, padded to
16 for `tl.dot`) and one split of the cached tokens, reads each fp8 K and V byte once, keeps an
online softmax (running max, sum, output) in fp32 registers and writes only its split's output
and log-sum-exp; a small torch reduction merges the splits by their LSE (as `lclib.ring.merge`
does). Per-KV-head scales multiply the scores and the output, not the stored bytes. The dots
take fp32 operands (TF32 on a GPU's tensor cores: exact for e4m3's 3-bit mantissa; a decode
step is bound by the bytes read, not by the dots); bf16 operands gave wrong results in
Triton 3.9's CPU interpreter, so they are not used.

Runs on a CUDA GPU, or on a CPU in Triton's interpreter (`TRITON_INTERPRET=1` set before this
module is imported), which is how the tests check it; it has not been run on a GPU by us.
"""

from __future__ import annotations

import math
import os

import torch
from torch import Tensor

try:
    import triton
    import triton.language as tl
except ImportError:  # no Triton: `available` says so and the benchmark skips the kernel
    triton = None

BLOCK_N = 64  # keys per inner step
MAX_SPLITS = 64  # splits per KV head: enough programs to fill a GPU at batch 1


def available(device: torch.device) -> bool:
    """True if the kernel can run on `device` here (CUDA, or a CPU under the interpreter)."""
    if triton is None:
        return False
    return device.type == "cuda" or os.environ.get("TRITON_INTERPRET") == "1"


if triton is not None:
    @triton.jit
    def _split_kv(q_ptr, k_ptr, v_ptr, ks_ptr, vs_ptr, o_ptr, lse_ptr, T, split_len, n_splits,
                  n_kv, sm_scale, G: tl.constexpr, GP: tl.constexpr, D: tl.constexpr,
                  BLOCK: tl.constexpr):
        bh, s = tl.program_id(0), tl.program_id(1)
        g, d = tl.arange(0, GP), tl.arange(0, D)
        q = tl.load(q_ptr + (bh * G + g)[:, None] * D + d[None, :], mask=(g < G)[:, None],
                    other=0.0).to(tl.float32)
        k_scale = tl.load(ks_ptr + bh % n_kv)
        v_scale = tl.load(vs_ptr + bh % n_kv)
        m = tl.full([GP], float("-inf"), tl.float32)
        l_sum = tl.zeros([GP], tl.float32)
        acc = tl.zeros([GP, D], tl.float32)
        start = s * split_len
        end = tl.minimum(start + split_len, T)
        base = bh.to(tl.int64) * T * D
        for n0 in range(start, end, BLOCK):
            n = n0 + tl.arange(0, BLOCK)
            valid = n < end
            offs = base + n[:, None].to(tl.int64) * D + d[None, :]
            kb = tl.load(k_ptr + offs, mask=valid[:, None], other=0.0).to(tl.float32)
            scores = tl.dot(q, tl.trans(kb)) * (sm_scale * k_scale)
            scores = tl.where(valid[None, :], scores, float("-inf"))
            m_new = tl.maximum(m, tl.max(scores, 1))
            alpha = tl.exp(m - m_new)
            p = tl.exp(scores - m_new[:, None])
            l_sum = l_sum * alpha + tl.sum(p, 1)
            vb = tl.load(v_ptr + offs, mask=valid[:, None], other=0.0).to(tl.float32)
            acc = acc * alpha[:, None] + tl.dot(p, vb)
            m = m_new
        out = acc / l_sum[:, None] * v_scale
        row = (bh * n_splits + s) * GP + g
        tl.store(o_ptr + row[:, None] * D + d[None, :], out)
        tl.store(lse_ptr + row, m + tl.log(l_sum))


def _per_head(scale: Tensor | float, n_kv: int, device: torch.device) -> Tensor:
    s = torch.as_tensor(scale, dtype=torch.float32, device=device).reshape(-1)
    return (s.expand(n_kv) if s.numel() == 1 else s).contiguous()


def fp8_decode(q: Tensor, k: Tensor, v: Tensor, k_scale: Tensor | float = 1.0,
               v_scale: Tensor | float = 1.0) -> Tensor:
    """Attention of q [B, Hq, 1, D] over fp8 K/V [B, Hkv, T, D] with per-tensor or per-KV-head
    scales ([1, Hkv, 1, 1]); the same result as `lclib.bench.fp8_decode.decode_attention`."""
    if triton is None:
        raise ValueError("Triton is not installed; pass the compiled torch path instead")
    b, n_q, _, d = q.shape
    n_kv, t = k.shape[1], k.shape[2]
    if n_q % n_kv or k.shape != v.shape or t < 1:
        raise ValueError(f"pass q [B,Hq,1,D] and equal k, v [B,Hkv,T,D] with Hkv | Hq; got "
                         f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    g = n_q // n_kv
    gp = max(16, triton.next_power_of_2(g))
    splits = min(MAX_SPLITS, triton.cdiv(t, BLOCK_N))
    split_len = triton.cdiv(triton.cdiv(t, splits), BLOCK_N) * BLOCK_N
    splits = triton.cdiv(t, split_len)  # no empty split
    o = torch.empty(b * n_kv, splits, gp, d, dtype=torch.float32, device=q.device)
    lse = torch.empty(b * n_kv, splits, gp, dtype=torch.float32, device=q.device)
    _split_kv[(b * n_kv, splits)](
        q.contiguous(), k.contiguous(), v.contiguous(), _per_head(k_scale, n_kv, q.device),
        _per_head(v_scale, n_kv, q.device), o, lse, t, split_len, splits, n_kv,
        1 / math.sqrt(d), G=g, GP=gp, D=d, BLOCK=BLOCK_N)
    weights = torch.softmax(lse[:, :, :g], dim=1)  # merge the splits by their LSE
    out = (weights[..., None] * o[:, :, :g]).sum(1)
    return out.reshape(b, n_q, 1, d).to(q.dtype)
