"""Ring attention: one sequence's attention split over N ranks, exact to the rounding of its
accumulation dtype (fp32; fp64 for fp64 inputs).

`ring_attention(q, k, v, world_size)` simulates N ranks in one process, on [B,H,S,D] tensors
like `torch.nn.functional.scaled_dot_product_attention` (GQA allowed). `lclib.ring.dist` runs
the same steps across processes with torch.distributed (gloo on CPU, NCCL on GPUs):

    torchrun --nproc-per-node 4 -m lclib.ring --verify --seq-len 4096
"""

from __future__ import annotations

import math

import torch

from ..units import positive_int
from .core import (
    LAYOUTS,
    Accumulator,
    acc_dtype,
    attend_chunks,
    attention_block,
    block_calls,
    block_flops,
    check_qkv,
    chunk_len,
    fused_block,
    merge,
    pair_kind,
    rank_chunks,
    ring_source,
    shard,
    unshard,
)

__all__ = ["LAYOUTS", "acc_dtype", "attention_block", "block_calls", "block_flops", "chunk_len",
           "fused_block", "merge", "pair_kind", "rank_chunks", "ring_attention", "ring_source",
           "shard", "unshard"]


def ring_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, world_size: int,
                   causal: bool = True, layout: str = "zigzag", scale: float | None = None,
                   block=fused_block) -> torch.Tensor:
    """SDPA(q, k, v, is_causal=causal, enable_gqa=True), computed as N ranks of a ring would.

    The sequence is sharded by `layout` ("zigzag" or "contiguous"); at step s rank r attends its
    queries to the K/V block of rank r - s, merging partial results by their LSE in fp32
    (fp64 for fp64 inputs).
    Returns q's dtype. `block` computes one block (`attention_block` is the plain-math one).
    """
    check_qkv(q, k, v)
    n = positive_int("world_size", world_size)
    chunk_len(q.shape[2], n, layout)
    scale = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
    qs, ks, vs = (shard(x, n, layout) for x in (q, k, v))
    chunks = rank_chunks(n, layout)
    accs = [Accumulator.empty(x) for x in qs]
    for step in range(n):
        for r in range(n):
            src = ring_source(r, step, n)
            attend_chunks(accs[r], qs[r], chunks[r], ks[src], vs[src], chunks[src], causal,
                          scale, block)
    return unshard([a.out for a in accs], layout).to(q.dtype)
