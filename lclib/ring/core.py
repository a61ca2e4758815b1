"""Blockwise attention with log-sum-exp merging, the sequence layouts, and per-rank work.

A sequence of S tokens is cut into equal chunks; each rank holds some chunks' queries and
(at first) the same chunks' keys and values. `contiguous` gives rank r chunk r of N; `zigzag`
cuts 2N chunks and gives rank r chunks r and 2N-1-r, so that under the causal mask every rank
does the same work (Liu et al. 2023 pass the K/V blocks around the ring; the zigzag layout is
the load balance of ring-flash-attention and of the Llama 3 report).

Every block's output is accumulated in fp32 together with its log-sum-exp (LSE), and two
partial results over disjoint keys merge exactly:

    lse = log(exp(lse_a) + exp(lse_b))
    out = exp(lse_a - lse) * out_a + exp(lse_b - lse) * out_b
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..cost import attention_pairs
from ..units import positive_int

LAYOUTS = ("zigzag", "contiguous")
FULL, DIAGONAL, SKIP = "full", "diagonal", "skip"


# --- layouts ---------------------------------------------------------------------------------

def rank_chunks(world_size: int, layout: str = "zigzag") -> list[list[int]]:
    """Chunk indices each rank holds, in sequence order: zigzag [[0, 2N-1], [1, 2N-2], ...]."""
    n = positive_int("world_size", world_size)
    if layout == "contiguous":
        return [[r] for r in range(n)]
    if layout == "zigzag":
        return [[r, 2 * n - 1 - r] for r in range(n)]
    raise ValueError(f"unknown layout {layout!r}; pass one of {', '.join(LAYOUTS)}")


def n_chunks(world_size: int, layout: str) -> int:
    """Chunks the sequence is cut into: N contiguous, 2N zigzag."""
    return sum(len(c) for c in rank_chunks(world_size, layout))


def chunk_len(seq_len: int, world_size: int, layout: str) -> int:
    """Tokens per chunk; ValueError unless the chunks are equal."""
    seq_len, n = positive_int("seq_len", seq_len), n_chunks(world_size, layout)
    if seq_len % n:
        raise ValueError(f"seq_len {seq_len} does not split into {n} equal chunks for the "
                         f"{layout} layout over {world_size} ranks; pass a multiple of {n}")
    return seq_len // n


def pair_kind(q_chunk: int, k_chunk: int, causal: bool) -> str:
    """What a (query chunk, key chunk) pair needs: full attention, the causal diagonal, or skip."""
    if not causal or k_chunk < q_chunk:
        return FULL
    return DIAGONAL if k_chunk == q_chunk else SKIP


def ring_source(rank: int, step: int, world_size: int) -> int:
    """The rank whose K/V block `rank` holds at ring `step` (blocks move to rank + 1)."""
    return (rank - step) % world_size


def block_flops(seq_len: int, world_size: int, layout: str = "zigzag", causal: bool = True,
                n_heads: int = 1, head_dim: int = 1) -> list[list[float]]:
    """Attention FLOPs (QK^T and AV, 4*H*d per pair) of each rank at each ring step.

    A diagonal chunk pair counts half its pairs, as `lclib.cost.attention_pairs` does.
    """
    c = chunk_len(seq_len, world_size, layout)
    chunks, per_pair = rank_chunks(world_size, layout), 4.0 * n_heads * head_dim
    pairs = {FULL: attention_pairs(c, causal=False), DIAGONAL: attention_pairs(c, causal=True),
             SKIP: 0.0}
    return [[per_pair * sum(pairs[pair_kind(qc, kc, causal)]
                            for qc in chunks[r]
                            for kc in chunks[ring_source(r, s, world_size)])
             for s in range(world_size)] for r in range(world_size)]


# --- blockwise attention and the merge --------------------------------------------------------

def attention_block(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool,
                    scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention of q [B,H,c,D] over one K/V block [B,H_kv,c',D]: (out fp32, lse fp32 [B,H,c]).

    Explicit fp32 math; GQA by grouping query heads. `causal` masks above the diagonal
    (square blocks). Rows that see no key get lse = -inf and out = 0.
    """
    b, h, sq, d = q.shape
    g = h // k.shape[1]
    qg = q.float().reshape(b, k.shape[1], g, sq, d)
    scores = (qg @ k.float().unsqueeze(2).transpose(-1, -2)) * scale
    if causal:
        mask = torch.ones(sq, k.shape[2], dtype=torch.bool, device=q.device).tril()
        scores = scores.masked_fill(~mask, -math.inf)
    lse = torch.logsumexp(scores, dim=-1)
    p = torch.exp(scores - torch.where(lse.isinf(), 0.0, lse).unsqueeze(-1))
    out = p @ v.float().unsqueeze(2)
    return out.reshape(b, h, sq, d), lse.reshape(b, h, sq)


def fused_block(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool,
                scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """`attention_block` through torch's fused flash kernel where it returns the LSE.

    That is the CPU kernel (any float dtype) and the CUDA one (fp16/bf16); elsewhere, and
    for fp32 on a GPU, the explicit math. K/V heads are repeated for GQA.
    """
    g = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(g, dim=1), v.repeat_interleave(g, dim=1)
    aten = torch.ops.aten
    if q.device.type == "cpu":
        out, lse = aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, 0.0, causal,
                                                                    scale=scale)
    elif q.device.type == "cuda" and q.dtype in (torch.float16, torch.bfloat16):
        out, lse = aten._scaled_dot_product_flash_attention(q, k, v, 0.0, causal,
                                                            scale=scale)[:2]
    else:
        return attention_block(q, k, v, causal, scale)
    return out.float(), lse.float()


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
    """A rank's running output and LSE for its local queries (fp32)."""

    out: torch.Tensor
    lse: torch.Tensor

    @classmethod
    def empty(cls, q: torch.Tensor) -> Accumulator:
        lse = torch.full(q.shape[:-1], -math.inf, dtype=torch.float32, device=q.device)
        return cls(torch.zeros(q.shape, dtype=torch.float32, device=q.device), lse)


def attend_chunks(acc: Accumulator, q: torch.Tensor, q_chunks: Sequence[int], k: torch.Tensor,
                  v: torch.Tensor, k_chunks: Sequence[int], causal: bool, scale: float,
                  block=fused_block) -> None:
    """Fold one K/V block (the chunks `k_chunks`) into `acc` for local queries (`q_chunks`)."""
    c = q.shape[2] // len(q_chunks)
    for i, qc in enumerate(q_chunks):
        rows = slice(i * c, (i + 1) * c)
        for j, kc in enumerate(k_chunks):
            kind = pair_kind(qc, kc, causal)
            if kind == SKIP:
                continue
            cols = slice(j * c, (j + 1) * c)
            o, lse = block(q[:, :, rows], k[:, :, cols], v[:, :, cols], kind == DIAGONAL, scale)
            acc.out[:, :, rows], acc.lse[:, :, rows] = merge(acc.out[:, :, rows],
                                                             acc.lse[:, :, rows], o, lse)


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
