"""Chapter 3: ring attention simulated on one device (N ranks in turn) against one SDPA call.

Both do the same causal attention FLOPs; the ratio of their times is what blockwise compute
plus the fp32 LSE merge cost. One device runs the ranks one after another, so this measures
the overhead of splitting, not the speed-up of N GPUs (for that: torchrun -m lclib.ring).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ..cost import attention_pairs
from ..ring import ring_attention
from ..ring.core import Accumulator, attend_chunks, rank_chunks, ring_source, shard
from ..ring.dist import Problem
from .core import experiment, time_op

SHAPES = {"cpu": Problem(heads=4, kv_heads=2, head_dim=32),
          "cuda": Problem(heads=32, kv_heads=4, head_dim=128, dtype="bf16")}
DEFAULT_SIZES = {"cpu": [1024, 4096], "cuda": [16384, 32768, 65536, 131072]}
WORLD_SIZE = {"cpu": 4, "cuda": 8}


@experiment("ring")
def ring(device: torch.device, sizes: list[int] | None = None,
         dtype: str = "fp32") -> dict[str, Any]:
    """Time causal SDPA and the simulated zigzag ring at each of `sizes`; check they agree."""
    shape, n = SHAPES[device.type], WORLD_SIZE[device.type]
    rows = []
    for seq in sorted(sizes or DEFAULT_SIZES[device.type]):
        p = Problem(**{**shape.__dict__, "seq_len": seq, "dtype": dtype})
        q, k, v = p.tensors(device)
        ref = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        err = (ring_attention(q, k, v, n).float() - ref.float()).abs().max().item()
        flops = 4 * p.batch * p.heads * p.head_dim * attention_pairs(seq)
        t_sdpa = time_op(lambda q=q, k=k, v=v: F.scaled_dot_product_attention(
            q, k, v, is_causal=True, enable_gqa=True), device)
        t_ring = time_op(lambda q=q, k=k, v=v: ring_attention(q, k, v, n), device)
        rows.append({"seq_len": seq, "t_sdpa": t_sdpa, "t_ring": t_ring, "flops": flops,
                     "throughput_ratio": t_sdpa / t_ring, "max_abs_err": err})
    return {"shape": {k: getattr(shape, k) for k in ("heads", "kv_heads", "head_dim")},
            "world_size": n, "layout": "zigzag", "dtype": dtype, "rows": rows}


def per_rank_seconds(problem: Problem, world_size: int, device: str = "cpu",
                     rounds: int = 5) -> list[float]:
    """Seconds each rank of a ring spends attending (all its steps), timed in one process.

    The ranks take turns for `rounds` rounds and each keeps its fastest time: no rank competes
    with another for the cores, and the minimum filters out other jobs' interference. On a CPU
    each rank gets one thread, as in `lclib.ring.dist.run_local`.
    """
    dev = torch.device(device)
    q, k, v = problem.tensors(dev)
    qs, ks, vs = (shard(x, world_size, problem.layout) for x in (q, k, v))
    chunks, scale = rank_chunks(world_size, problem.layout), problem.head_dim**-0.5

    def rank_work(r: int) -> None:
        acc = Accumulator.empty(qs[r])
        for step in range(world_size):
            s = ring_source(r, step, world_size)
            attend_chunks(acc, qs[r], chunks[r], ks[s], vs[s], chunks[s], problem.causal, scale)

    best, threads = [float("inf")] * world_size, torch.get_num_threads()
    torch.set_num_threads(1 if dev.type == "cpu" else threads)
    try:
        for _ in range(rounds):
            for r in range(world_size):
                t = time_op(lambda r=r: rank_work(r), dev, repeat=1, min_time=0)
                best[r] = min(best[r], t)
    finally:
        torch.set_num_threads(threads)
    return best
