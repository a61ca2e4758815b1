"""Blockwise attention with log-sum-exp merging, run over the ring's schedule.

The schedule (layouts, which K/V block a rank holds at each step, per-rank work) is torch-free
and lives in `lclib.context_parallel`, so that pictures draw the same one; it is re-exported
here. A sequence of S tokens is cut into equal chunks; each rank holds some chunks' queries and
(at first) the same chunks' keys and values. `contiguous` gives rank r chunk r of N; `zigzag`
cuts 2N chunks and gives rank r chunks r and 2N-1-r, so that under the causal mask every rank
does the same work (Liu et al. 2023 pass the K/V blocks around the ring; the zigzag layout is
the load balance of ring-flash-attention and of the Llama 3 report).

Every block's output is accumulated in fp32 (fp64 for fp64 inputs: at least the input's
precision) together with its log-sum-exp (LSE), and two partial results over disjoint keys
merge exactly:

    lse = log(exp(lse_a) + exp(lse_b))
    out = exp(lse_a - lse) * out_a + exp(lse_b - lse) * out_b
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..context_parallel import DIAGONAL, FULL, SKIP, chunk_len, pair_kind, rank_chunks
from ..context_parallel import LAYOUTS as LAYOUTS  # the schedule, re-exported for lclib.ring
from ..context_parallel import block_flops as block_flops
from ..context_parallel import n_chunks as n_chunks
from ..context_parallel import ring_source as ring_source
from ..context_parallel import step_tiles as step_tiles

# --- blockwise attention and the merge --------------------------------------------------------

def acc_dtype(dtype: torch.dtype) -> torch.dtype:
    """The accumulation dtype for inputs of `dtype`: fp32, or the input's if wider."""
    return torch.promote_types(dtype, torch.float32)


def attention_block(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool,
                    scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention of q [B,H,c,D] over one K/V block [B,H_kv,c',D]: (out, lse [B,H,c]).

    Explicit math in `acc_dtype` (fp32, fp64 for fp64 inputs); GQA by grouping query heads.
    `causal` masks above the diagonal (square blocks). Rows that see no key get lse = -inf
    and out = 0.
    """
    b, h, sq, d = q.shape
    g, dt = h // k.shape[1], acc_dtype(q.dtype)
    qg = q.to(dt).reshape(b, k.shape[1], g, sq, d)
    scores = (qg @ k.to(dt).unsqueeze(2).transpose(-1, -2)) * scale
    if causal:
        mask = torch.ones(sq, k.shape[2], dtype=torch.bool, device=q.device).tril()
        scores = scores.masked_fill(~mask, -math.inf)
    lse = torch.logsumexp(scores, dim=-1)
    p = torch.exp(scores - torch.where(lse.isinf(), 0.0, lse).unsqueeze(-1))
    out = p @ v.to(dt).unsqueeze(2)
    return out.reshape(b, h, sq, d), lse.reshape(b, h, sq)


def fused_block(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool,
                scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """`attention_block` through torch's fused flash kernel, which returns the LSE.

    That is the CPU kernel (any float dtype) and the CUDA one (fp16/bf16); both take GQA
    (fewer K/V heads) as they are, so K/V are not copied. For fp32/fp64 on a GPU, the
    explicit math (the flash kernel has no such dtypes). Returns `acc_dtype` tensors.
    """
    aten, dt = torch.ops.aten, acc_dtype(q.dtype)
    if q.device.type == "cpu":
        out, lse = aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, 0.0, causal,
                                                                    scale=scale)
    elif q.device.type == "cuda" and q.dtype in (torch.float16, torch.bfloat16):
        out, lse = aten._scaled_dot_product_flash_attention(q, k, v, 0.0, causal,
                                                            scale=scale)[:2]
    else:
        return attention_block(q, k, v, causal, scale)
    return out.to(dt), lse.to(dt)


def merge(out_a: torch.Tensor, lse_a: torch.Tensor, out_b: torch.Tensor,
          lse_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Combine attention over two disjoint key sets: out [...,S,D], lse [...,S] (fp32)."""
    lse = torch.logaddexp(lse_a, lse_b)
    safe = torch.where(lse.isinf(), 0.0, lse)  # rows that saw no key yet stay 0
    out = (torch.exp(lse_a - safe).unsqueeze(-1) * out_a
           + torch.exp(lse_b - safe).unsqueeze(-1) * out_b)
    return out, lse


@dataclass
class Accumulator:
    """A rank's running output and LSE for its local queries (in `acc_dtype`)."""

    out: torch.Tensor
    lse: torch.Tensor

    @classmethod
    def empty(cls, q: torch.Tensor) -> Accumulator:
        dt = acc_dtype(q.dtype)
        lse = torch.full(q.shape[:-1], -math.inf, dtype=dt, device=q.device)
        return cls(torch.zeros(q.shape, dtype=dt, device=q.device), lse)


def _contiguous(ids: list[int]) -> bool:
    return ids == list(range(ids[0], ids[0] + len(ids)))


def block_calls(q_chunks: Sequence[int], k_chunks: Sequence[int],
                causal: bool) -> list[tuple[int, int, int, int, bool]]:
    """The kernel calls (q rows i0:i1, k cols j0:j1 in local chunks, causal?) that cover every
    (query chunk, key chunk) pair one K/V block needs, as few as the layout allows.

    The rank's own block is one causal call: its chunks are in sequence order, so a causal mask
    over their concatenation is exactly each pair's mask (zigzag: chunk 2N-1-r sees all of chunk
    r). Another rank's block is one full call when the needed pairs form a rectangle (always,
    for zigzag and contiguous). Over the N steps, that is N calls a rank, as ring-flash-attention
    makes; otherwise, one call per pair.
    """
    nq, nk = len(q_chunks), len(k_chunks)
    if not causal:
        return [(0, nq, 0, nk, False)]
    if list(q_chunks) == list(k_chunks) == sorted(q_chunks):
        return [(0, nq, 0, nk, True)]
    kinds = [[pair_kind(qc, kc, causal) for kc in k_chunks] for qc in q_chunks]
    rows = [i for i in range(nq) if any(x != SKIP for x in kinds[i])]
    cols = [j for j in range(nk) if any(kinds[i][j] != SKIP for i in range(nq))]
    if not rows:
        return []
    if (_contiguous(rows) and _contiguous(cols)
            and all(kinds[i][j] == FULL for i in rows for j in cols)):
        return [(rows[0], rows[-1] + 1, cols[0], cols[-1] + 1, False)]
    return [(i, i + 1, j, j + 1, kinds[i][j] == DIAGONAL)
            for i in range(nq) for j in range(nk) if kinds[i][j] != SKIP]


def attend_chunks(acc: Accumulator, q: torch.Tensor, q_chunks: Sequence[int], k: torch.Tensor,
                  v: torch.Tensor, k_chunks: Sequence[int], causal: bool, scale: float,
                  block=fused_block) -> int:
    """Fold one K/V block (the chunks `k_chunks`) into `acc` for local queries (`q_chunks`);
    returns the number of kernel calls made (`block_calls`)."""
    c = q.shape[2] // len(q_chunks)
    calls = block_calls(q_chunks, k_chunks, causal)
    for i0, i1, j0, j1, diagonal in calls:
        rows, cols = slice(i0 * c, i1 * c), slice(j0 * c, j1 * c)
        o, lse = block(q[:, :, rows], k[:, :, cols], v[:, :, cols], diagonal, scale)
        acc.out[:, :, rows], acc.lse[:, :, rows] = merge(acc.out[:, :, rows],
                                                         acc.lse[:, :, rows], o, lse)
    return len(calls)


# --- checks and sharding -----------------------------------------------------------------------

def check_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    """ValueError unless q [B,H,S,D], k and v [B,H_kv,S,D] with H_kv dividing H."""
    if not all(isinstance(t, torch.Tensor) and t.dim() == 4 for t in (q, k, v)):
        raise ValueError("pass q, k, v as 4-D tensors [batch, heads, seq, head_dim], as SDPA")
    if k.shape != v.shape:
        raise ValueError(f"k {tuple(k.shape)} and v {tuple(v.shape)} differ; pass equal shapes")
    b, h, s, d = q.shape
    if (k.shape[0], k.shape[2], k.shape[3]) != (b, s, d):
        raise ValueError(f"q {tuple(q.shape)} and k {tuple(k.shape)} differ in batch, sequence "
                         "or head_dim; pass self-attention tensors of one sequence")
    if h % k.shape[1]:
        raise ValueError(f"{k.shape[1]} K/V heads do not divide {h} query heads; pass a K/V "
                         "head count that divides the query heads (GQA)")


def shard(x: torch.Tensor, world_size: int, layout: str) -> list[torch.Tensor]:
    """Each rank's slice of x [B,H,S,D] along the sequence: its chunks, concatenated."""
    c = chunk_len(x.shape[2], world_size, layout)
    return [torch.cat([x[:, :, i * c:(i + 1) * c] for i in ids], dim=2)
            for ids in rank_chunks(world_size, layout)]


def unshard(parts: Sequence[torch.Tensor], layout: str) -> torch.Tensor:
    """Inverse of `shard`: the ranks' slices put back in sequence order."""
    chunks = rank_chunks(len(parts), layout)
    pieces = {}
    for part, ids in zip(parts, chunks, strict=True):
        for i, piece in zip(ids, part.chunk(len(ids), dim=2), strict=True):
            pieces[i] = piece
    return torch.cat([pieces[i] for i in sorted(pieces)], dim=2)
