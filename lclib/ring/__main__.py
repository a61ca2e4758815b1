"""torchrun --nproc-per-node N -m lclib.ring [--verify] [--seq-len S] [--layout zigzag] ...

Every rank builds the same random q, k, v, keeps its shard, runs the ring (gloo on CPU, NCCL
with --device cuda), and rank 0 prints each rank's timings; --verify also compares every shard
with one SDPA call and exits 1 if any differs by more than --tol.
"""

from __future__ import annotations

import argparse
import os
import sys

import torch
import torch.distributed as dist

from .core import LAYOUTS
from .dist import Problem, backend_for, verify


def parse(argv: list[str] | None) -> argparse.Namespace:
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
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    dtype = args.dtype or ("fp32" if args.device == "cpu" else "bf16")
    problem = Problem(seq_len=args.seq_len, heads=args.heads, kv_heads=args.kv_heads,
                      head_dim=args.head_dim, causal=args.causal, layout=args.layout,
                      dtype=dtype)
    device = torch.device(args.device)
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    dist.init_process_group(backend_for(device))
    try:
        result = verify(problem, device)
        results = [None] * dist.get_world_size()
        dist.all_gather_object(results, result)
    finally:
        dist.destroy_process_group()
    tol = args.tol or (1e-4 if dtype == "fp32" else 3e-2)
    if result["rank"] == 0:
        print(f"ring attention, {problem}, backend {backend_for(device)}")
        for r in results:
            print(f"rank {r['rank']}: {r['seconds'] * 1e3:8.2f} ms, compute "
                  f"{sum(r['compute']) * 1e3:8.2f} ms, waiting {sum(r['wait']) * 1e3:7.2f} ms, "
                  f"max |ring - SDPA| = {r['max_abs_err']:.2e}")
    bad = args.verify and any(r["max_abs_err"] > tol for r in results)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
