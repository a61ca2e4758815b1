"""Chapter 3: ring attention simulated on one device (N ranks in turn) against one SDPA call.

Both do the same causal attention FLOPs with the same kernel: the ring's blocks call the
flash kernel directly, and the SDPA reference is forced to the flash backend (`backend`,
recorded with the kernel SDPA actually used). The ratio of their times is then what blockwise
compute (N kernel calls a rank) plus the LSE merge cost. One device runs the ranks one after
another, so this measures the overhead of splitting, not the speed-up of N GPUs (for that:
torchrun -m lclib.ring).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ..cost import attention_pairs
from ..ring import ring_attention
from ..ring.core import Accumulator, attend_chunks, block_calls, rank_chunks, ring_source, shard
from ..ring.dist import Problem
from ..torch_env import forced_backend, sdpa_backend
from .core import Run, experiment, time_op

SHAPES = {"cpu": Problem(heads=4, kv_heads=2, head_dim=32),
          "cuda": Problem(heads=32, kv_heads=4, head_dim=128, dtype="bf16")}
DEFAULT_SIZES = {"cpu": [1024, 4096], "cuda": [32768, 65536, 131072]}
WORLD_SIZE = {"cpu": 4, "cuda": 8}


def calls_per_rank(world_size: int, layout: str = "zigzag") -> list[int]:
    """Kernel calls each rank makes over the whole ring (`block_calls`)."""
    chunks = rank_chunks(world_size, layout)
    return [sum(len(block_calls(chunks[r], chunks[ring_source(r, s, world_size)], True))
                for s in range(world_size)) for r in range(world_size)]


@experiment("ring")
def ring(device: torch.device, sizes: list[int] | None = None, dtype: str = "fp32",
         run: Run | None = None, backend: str | None = "flash") -> dict[str, Any]:
    """Time causal SDPA (forced to `backend`; None: torch's choice) and the simulated zigzag
    ring at each of `sizes`; check they agree."""
    shape, n = SHAPES[device.type], WORLD_SIZE[device.type]
    run = run or Run(None, {})

    def measure(seq: int) -> dict[str, Any]:
        p = Problem(**{**shape.__dict__, "seq_len": seq, "dtype": dtype})
        q, k, v = p.tensors(device)
        with forced_backend(backend):
            used = sdpa_backend(q, k, v, True, True)

            def sdpa() -> torch.Tensor:
                return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)

            ref = sdpa()
            t_sdpa = time_op(sdpa, device)
        err = (ring_attention(q, k, v, n).float() - ref.float()).abs().max().item()
        flops = 4 * p.batch * p.heads * p.head_dim * attention_pairs(seq)
        t_ring = time_op(lambda: ring_attention(q, k, v, n), device)
        return {"seq_len": seq, "t_sdpa": t_sdpa, "t_ring": t_ring, "flops": flops,
                "backend_sdpa": used, "throughput_ratio": t_sdpa / t_ring, "max_abs_err": err}

    rows = run.measure(sorted(sizes or DEFAULT_SIZES[device.type]), measure, exponent=2.0)
    return {"shape": {k: getattr(shape, k) for k in ("heads", "kv_heads", "head_dim")},
            "world_size": n, "layout": "zigzag", "dtype": dtype, "backend": backend,
            "ring_kernel": "flash (aten, direct)", "calls_per_rank": calls_per_rank(n),
            "rows": rows}


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
