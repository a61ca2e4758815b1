"""Ring attention across processes: K/V blocks move to rank + 1 while each rank computes.

The same steps as `lclib.ring.ring_attention`, with real messages: at every step a rank posts
an asynchronous send of the K/V block it holds and a receive of the next one
(`torch.distributed.batch_isend_irecv`), attends its queries to the block it holds, then waits
for the transfer. The backend follows the device: gloo for CPU tensors, NCCL for CUDA ones;
the code path is the same. `run_local` starts N gloo processes on this machine (tests, demos);
`python -m lclib.ring` is the torchrun entry point.

`verify` checks a rank's output against SDPA over that rank's own query rows only (each
query chunk against the keys before it, a lower-right causal mask), in the input dtype, so
that the check costs what one rank's share of attention costs, not the whole sequence's.
"""

from __future__ import annotations

import math
import os
import socket
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch.nn.attention.bias import causal_lower_right

from ..torch_env import synchronize, torch_dtype
from ..units import positive_int
from .core import (
    Accumulator,
    attend_chunks,
    block_flops,
    check_qkv,
    chunk_len,
    rank_chunks,
    ring_source,
    shard,
)


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


TIMEOUT = timedelta(seconds=120)  # a rank that never arrives fails the run in 2 min, not 10


def backend_for(device: torch.device) -> str:
    """NCCL for CUDA tensors, gloo otherwise."""
    return "nccl" if device.type == "cuda" else "gloo"


def init_group(device: torch.device, **kwargs: Any) -> None:
    """The default process group for `device`: NCCL bound to this rank's GPU (`device_id`,
    so communicators are created eagerly), gloo on a CPU, and a short timeout."""
    dist.init_process_group(backend_for(device), timeout=TIMEOUT,
                            device_id=device if device.type == "cuda" else None, **kwargs)


def ring_attention_dist(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = True,
                        layout: str = "zigzag", scale: float | None = None,
                        ) -> tuple[torch.Tensor, dict[str, list[float]]]:
    """This rank's output for its shard q, k, v (laid out by `layout`) and per-step timings.

    Call on every rank of the default process group. Timings: `compute` (seconds attending to
    the block held) and `wait` (seconds blocked on the transfer after computing) per step;
    `calls`: kernel calls per step.
    """
    check_qkv(q, k, v)
    rank, n = dist.get_rank(), dist.get_world_size()
    chunks = rank_chunks(n, layout)
    scale = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
    kv, acc = torch.stack([k, v]).contiguous(), Accumulator.empty(q)
    timings: dict[str, list[float]] = {"compute": [], "wait": [], "calls": []}
    for step in range(n):
        incoming, works = torch.empty_like(kv), []
        if step < n - 1:
            works = dist.batch_isend_irecv([dist.P2POp(dist.isend, kv, (rank + 1) % n),
                                            dist.P2POp(dist.irecv, incoming, (rank - 1) % n)])
        t0 = time.perf_counter()
        calls = attend_chunks(acc, q, chunks[rank], kv[0], kv[1],
                              chunks[ring_source(rank, step, n)], causal, scale)
        synchronize(q.device)
        t1 = time.perf_counter()
        for w in works:
            w.wait()
        synchronize(q.device)
        timings["calls"].append(calls)
        timings["compute"].append(t1 - t0)
        timings["wait"].append(time.perf_counter() - t1)
        kv = incoming if works else kv
    return acc.out.to(q.dtype), timings


def local_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, problem: Problem,
                    rank: int, world_size: int) -> torch.Tensor:
    """SDPA for this rank's query rows (its chunks, concatenated) over the full k, v.

    A query chunk c attends keys 0..(c+1)·len with a lower-right causal mask, which the flash
    kernel runs in O(len) memory. fp32 on a GPU has no flash kernel: K/V are expanded to the
    query heads so that the memory-efficient kernel (no GQA) takes it instead of the S x S math.
    """
    length = chunk_len(problem.seq_len, world_size, problem.layout)
    if q.device.type == "cuda" and q.dtype == torch.float32:
        group = q.shape[1] // k.shape[1]
        k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
    parts = []
    for c in rank_chunks(world_size, problem.layout)[rank]:
        qc = q[:, :, c * length:(c + 1) * length]
        if problem.causal:
            end = (c + 1) * length
            parts.append(F.scaled_dot_product_attention(
                qc, k[:, :, :end], v[:, :, :end], attn_mask=causal_lower_right(length, end),
                enable_gqa=True))
        else:
            parts.append(F.scaled_dot_product_attention(qc, k, v, enable_gqa=True))
    return torch.cat(parts, dim=2)


def verify(problem: Problem, device: torch.device, repeat: int = 3) -> dict[str, Any]:
    """Run `problem` on this rank `repeat` times after a warm-up (keeping each step's fastest
    compute); compare its output with `local_reference`; report its attention FLOPs."""
    rank, n = dist.get_rank(), dist.get_world_size()
    q, k, v = problem.tensors(device)
    mine = [shard(x, n, problem.layout)[rank] for x in (q, k, v)]
    ring_attention_dist(*mine, causal=problem.causal, layout=problem.layout)  # warm-up
    best: dict[str, list[float]] = {}
    for _ in range(repeat):
        dist.barrier()
        t0 = time.perf_counter()
        out, timings = ring_attention_dist(*mine, causal=problem.causal, layout=problem.layout)
        total = time.perf_counter() - t0
        if not best or total < best["seconds"]:
            best = {"seconds": total, "wait": timings["wait"], "calls": timings["calls"]}
        best["compute"] = [min(a, b) for a, b in zip(best.get("compute", timings["compute"]),
                                                      timings["compute"], strict=True)]
    ref = local_reference(q, k, v, problem, rank, n)
    err = (out.float() - ref.float()).abs().max().item()
    flops = sum(block_flops(problem.seq_len, n, problem.layout, problem.causal,
                            problem.batch * problem.heads, problem.head_dim)[rank])
    return {"rank": rank, "max_abs_err": err, "flops": flops, **best}


def free_port() -> int:
    """A TCP port no one listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world_size: int, port: int, problem: Problem, queue: Any) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    init_group(torch.device("cpu"), init_method=f"tcp://127.0.0.1:{port}", rank=rank,
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
