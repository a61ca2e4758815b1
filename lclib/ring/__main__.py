"""torchrun --nproc-per-node N -m lclib.ring [--verify] [--seq-len S] [--layout zigzag] ...

Every rank builds the same random q, k, v, keeps its shard, runs the ring (gloo on CPU, NCCL
with --device cuda), and rank 0 prints each rank's attention FLOPs (deterministic: the load
balance of the layout) and then its timings (fastest of three runs; on a shared CPU they are
noisy); --verify also compares every shard with SDPA over that rank's query rows and exits 1
if any differs by more than --tol. --json FILE writes every rank's result.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from ..torch_env import resolve_device, torch_dtype
from .core import LAYOUTS, chunk_len
from .dist import Problem, backend_for, init_group, verify

TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="torchrun --nproc-per-node N -m lclib.ring",
                                description=__doc__)
    d = Problem()
    p.add_argument("--verify", action="store_true", help="compare with one SDPA call")
    p.add_argument("--seq-len", type=int, default=d.seq_len)
    p.add_argument("--heads", type=int, default=d.heads)
    p.add_argument("--kv-heads", type=int, default=d.kv_heads)
    p.add_argument("--head-dim", type=int, default=d.head_dim)
    p.add_argument("--layout", choices=LAYOUTS, default=d.layout)
    p.add_argument("--no-causal", dest="causal", action="store_false")
    p.add_argument("--device", default="cpu", help="cpu (gloo) or cuda (NCCL, one GPU a rank)")
    p.add_argument("--dtype", default=None, help="fp32 (CPU default) or bf16 (GPU default)")
    p.add_argument("--tol", type=float, default=None, help="max abs error (1e-4 fp32, 3e-2 bf16)")
    p.add_argument("--json", type=Path, default=None, help="write every rank's result here")
    return p


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    missing = [v for v in TORCHRUN_VARS if v not in os.environ]
    if missing:
        p.error(f"{', '.join(missing)} not set: start this with torchrun, e.g. "
                "torchrun --nproc-per-node 2 -m lclib.ring --verify")
    dtype = args.dtype or ("fp32" if args.device == "cpu" else "bf16")
    problem = Problem(seq_len=args.seq_len, heads=args.heads, kv_heads=args.kv_heads,
                      head_dim=args.head_dim, causal=args.causal, layout=args.layout,
                      dtype=dtype)
    try:
        device = resolve_device(args.device)
        if device.type == "cuda":
            device = resolve_device(f"cuda:{os.environ['LOCAL_RANK']}")
            torch.cuda.set_device(device)
        torch_dtype(dtype)
        chunk_len(problem.seq_len, int(os.environ["WORLD_SIZE"]), problem.layout)
    except ValueError as err:
        p.error(str(err))
    init_group(device)
    try:
        result = verify(problem, device)
        results = [None] * dist.get_world_size()
        dist.all_gather_object(results, result)
    finally:
        dist.destroy_process_group()
    tol = args.tol if args.tol is not None else (1e-4 if dtype == "fp32" else 3e-2)
    if result["rank"] == 0:
        print(f"ring attention, {problem}, backend {backend_for(device)}")
        for r in results:
            print(f"rank {r['rank']}: {r['flops'] / 1e9:8.3f} GFLOP in {sum(r['calls'])} calls; "
                  f"{r['seconds'] * 1e3:8.2f} ms, compute {sum(r['compute']) * 1e3:8.2f} ms, "
                  f"waiting {sum(r['wait']) * 1e3:7.2f} ms, "
                  f"max |ring - SDPA| = {r['max_abs_err']:.2e}")
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps({"problem": problem.__dict__, "tol": tol,
                                             "backend": backend_for(device),
                                             "results": results}, indent=1))
    bad = args.verify and any(r["max_abs_err"] > tol for r in results)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
