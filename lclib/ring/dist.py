"""Ring attention across processes: K/V blocks move to rank + 1 while each rank computes.

The same steps as `lclib.ring.ring_attention`, with real messages: at every step a rank posts
an asynchronous send of the K/V block it holds and a receive of the next one
(`torch.distributed.batch_isend_irecv`), attends its queries to the block it holds, then waits
for the transfer. The backend follows the device: gloo for CPU tensors, NCCL for CUDA ones;
the code path is the same. `run_local` starts N gloo processes on this machine (tests, demos);
`python -m lclib.ring` is the torchrun entry point.
"""

from __future__ import annotations

import math
import os
import socket
import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ..bench.crossover import torch_dtype
from ..units import positive_int
from .core import Accumulator, attend_chunks, check_qkv, rank_chunks, ring_source, shard


@dataclass(frozen=True)
class Problem:
    """A random attention problem every rank can rebuild from its seed."""

    seq_len: int = 1024
    heads: int = 8
    kv_heads: int = 2
    head_dim: int = 64
    batch: int = 1
    causal: bool = True
    layout: str = "zigzag"
    dtype: str = "fp32"
    seed: int = 0

    def tensors(self, device: torch.device) -> tuple[torch.Tensor, ...]:
        """Full q [B,H,S,D] and k, v [B,H_kv,S,D]."""
        g = torch.Generator().manual_seed(self.seed)
        dtype = torch_dtype(self.dtype)
        shapes = [(self.batch, h, self.seq_len, self.head_dim)
                  for h in (self.heads, self.kv_heads, self.kv_heads)]
        return tuple(torch.randn(s, generator=g).to(device, dtype) for s in shapes)


def backend_for(device: torch.device) -> str:
    """NCCL for CUDA tensors, gloo otherwise."""
    return "nccl" if device.type == "cuda" else "gloo"


def ring_attention_dist(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = True,
                        layout: str = "zigzag", scale: float | None = None,
                        ) -> tuple[torch.Tensor, dict[str, list[float]]]:
    """This rank's output for its shard q, k, v (laid out by `layout`) and per-step timings.

    Call on every rank of the default process group. Timings: `compute` (seconds attending to
    the block held) and `wait` (seconds blocked on the transfer after computing) per step.
    """
    check_qkv(q, k, v)
    rank, n = dist.get_rank(), dist.get_world_size()
    chunks = rank_chunks(n, layout)
    scale = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
    sync = torch.cuda.synchronize if q.device.type == "cuda" else (lambda: None)
    kv, acc = torch.stack([k, v]).contiguous(), Accumulator.empty(q)
    timings: dict[str, list[float]] = {"compute": [], "wait": []}
    for step in range(n):
        incoming, works = torch.empty_like(kv), []
        if step < n - 1:
            works = dist.batch_isend_irecv([dist.P2POp(dist.isend, kv, (rank + 1) % n),
                                            dist.P2POp(dist.irecv, incoming, (rank - 1) % n)])
        t0 = time.perf_counter()
        attend_chunks(acc, q, chunks[rank], kv[0], kv[1], chunks[ring_source(rank, step, n)],
                      causal, scale)
        sync()
        t1 = time.perf_counter()
        for w in works:
            w.wait()
        sync()
        timings["compute"].append(t1 - t0)
        timings["wait"].append(time.perf_counter() - t1)
        kv = incoming if works else kv
    return acc.out.to(q.dtype), timings


def verify(problem: Problem, device: torch.device) -> dict[str, Any]:
    """Run `problem` on this rank; compare its shard with one SDPA call on the full tensors."""
    rank, n = dist.get_rank(), dist.get_world_size()
    q, k, v = problem.tensors(device)
    mine = [shard(x, n, problem.layout)[rank] for x in (q, k, v)]
    ring_attention_dist(*mine, causal=problem.causal, layout=problem.layout)  # warm-up
    dist.barrier()
    t0 = time.perf_counter()
    out, timings = ring_attention_dist(*mine, causal=problem.causal, layout=problem.layout)
    total = time.perf_counter() - t0
    ref = torch.nn.functional.scaled_dot_product_attention(
        q.float(), k.float(), v.float(), is_causal=problem.causal, enable_gqa=True)
    err = (out.float() - shard(ref, n, problem.layout)[rank]).abs().max().item()
    return {"rank": rank, "max_abs_err": err, "seconds": total, **timings}


def free_port() -> int:
    """A TCP port no one listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world_size: int, port: int, problem: Problem, queue: Any) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world_size)
    try:
        queue.put(verify(problem, torch.device("cpu")))
    finally:
        dist.destroy_process_group()


def run_local(world_size: int, problem: Problem = Problem(),
              start_method: str = "fork") -> list[dict[str, Any]]:
    """Run `problem` on `world_size` gloo processes (one thread each); one result per rank.

    "fork" starts in a fraction of a second on Linux; use "spawn" where fork is unavailable.
    """
    n = positive_int("world_size", world_size)
    queue = mp.get_context(start_method).SimpleQueue()
    mp.start_processes(_worker, args=(n, free_port(), problem, queue), nprocs=n,
                       start_method=start_method)
    return sorted((queue.get() for _ in range(n)), key=lambda r: r["rank"])
