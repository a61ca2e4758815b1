"""One budgeted GPU run of the course's measurements: `python -m lclib.bench device-run`.

The steps run in order of value, each with a share of the budget (`Run` skips a size it
predicts would overrun, and records out-of-memory sizes), each writing its own file as it
goes, so that whatever is measured before a failure or the end of the slot is kept:

1. ceilings: a 4 GiB copy (bandwidth), an 8192^3 bf16 GEMM (FLOP/s), SDPA's kernel choices;
2. crossover: one Llama-3.3-70B layer, 4K-128K tokens, linear MFU, attention per backend;
3. decode: that layer's bf16 decode attention, 4K-1M tokens, the fitted HBM fraction;
4. fp8_decode: bf16 SDPA vs compiled bf16 vs compiled e4m3 vs the Triton split-KV kernel
   (`lclib.triton_decode`), to 1M;
5. ring: 8 simulated ranks vs SDPA with the same flash kernel, 32K-128K;
6. ring_nccl: `torchrun --nproc-per-node 1 -m lclib.ring --verify --device cuda` (NCCL).

`dry_run=True` runs the same steps on the CPU at scaled-down sizes (bf16, compiled with
"aot_eager"), in about a minute, as the tests do.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..ring.dist import free_port
from ..torch_env import resolve_device
from .core import run_experiment


@dataclass(frozen=True)
class Step:
    """One experiment of the run: its share of the budget, sizes and options per mode."""

    name: str
    share: float  # fraction of the whole budget this step may use
    sizes: list[int] | None
    dry_sizes: list[int] | None
    options: tuple[tuple[str, Any], ...] = ()


K = 1024
STEPS = (
    Step("ceilings", 0.05, None, [2**24, 256]),
    Step("crossover", 0.20, [4 * K, 8 * K, 16 * K, 32 * K, 64 * K, 128 * K], [128, 256],
         (("backends", ["flash", "cudnn"]),)),
    Step("decode", 0.10, [4 * K, 16 * K, 64 * K, 256 * K, 512 * K, 1024 * K], [4 * K, 64 * K]),
    Step("fp8_decode", 0.25, [32 * K, 128 * K, 256 * K, 512 * K, 1024 * K], [256, 512]),
    Step("ring", 0.20, [32 * K, 64 * K, 128 * K], [256, 512]),
)
NCCL_SHARE = 0.15
NCCL_PROBLEM = {"cuda": ["--seq-len", "65536", "--heads", "64", "--kv-heads", "8",
                         "--head-dim", "128"],
                "cpu": ["--seq-len", "256", "--heads", "4", "--kv-heads", "2", "--head-dim", "16"]}


def torchrun_check(out: Path, device: str, timeout_s: float) -> dict[str, Any]:
    """One-rank `torchrun -m lclib.ring --verify` (NCCL on a GPU, gloo on a CPU) into `out`."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path = out / f"ring_nccl-{device}-{stamp}.json"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "1",
           "--master-addr", "127.0.0.1", "--master-port", str(free_port()), "-m", "lclib.ring",
           "--verify", "--device", device, *NCCL_PROBLEM[device], "--json", str(path)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=max(timeout_s, 10),
                              env=env)
    except subprocess.TimeoutExpired:
        return {"status": "timeout", "timeout_s": timeout_s}
    return {"status": "ok" if done.returncode == 0 else f"exit {done.returncode}",
            "path": str(path) if path.exists() else None,
            "stdout": done.stdout[-1500:], "stderr": done.stderr[-1500:]}


def device_run(budget_s: float = 420.0, dry_run: bool = False, out: Path | None = None,
               device: str = "cuda") -> dict[str, Any]:
    """Run every step within `budget_s`; returns (and writes under `out`) the run's log.

    A step that fails is logged and the next one runs: one bug does not cost the slot.
    """
    device = "cpu" if dry_run else resolve_device(device).type  # ValueError without CUDA
    out = Path(out) if out is not None else None
    start, log = time.perf_counter(), {"budget_s": budget_s, "dry_run": dry_run, "steps": []}

    def left() -> float:
        return budget_s - (time.perf_counter() - start)

    for step in STEPS:
        budget = min(step.share * budget_s, left())
        entry: dict[str, Any] = {"step": step.name, "budget_s": budget}
        t0 = time.perf_counter()
        if budget <= 0:
            entry["status"] = "no time left"
        else:
            try:
                record = run_experiment(step.name, device, step.dry_sizes if dry_run
                                        else step.sizes, "bf16", out, budget_s=budget,
                                        **dict(step.options))
                entry.update(status="ok", path=record.get("path"),
                             rows=len(record["rows"]))
            except Exception as err:  # keep going: the next step may still measure
                entry["status"] = f"{type(err).__name__}: {str(err)[:300]}"
        entry["elapsed_s"] = time.perf_counter() - t0
        log["steps"].append(entry)
        print(json.dumps(entry), flush=True)
    t0 = time.perf_counter()
    json_dir = out or Path(tempfile.mkdtemp(prefix="lclib-ring-"))
    json_dir.mkdir(parents=True, exist_ok=True)
    nccl = torchrun_check(json_dir, device, min(NCCL_SHARE * budget_s, left()))
    log["steps"].append({"step": "ring_nccl", **nccl, "elapsed_s": time.perf_counter() - t0})
    print(json.dumps({k: v for k, v in log["steps"][-1].items() if k != "stdout"}), flush=True)
    log["elapsed_s"] = time.perf_counter() - start
    if out is not None:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        (out / f"device_run-{device}-{stamp}.json").write_text(json.dumps(log, indent=1))
    return log
