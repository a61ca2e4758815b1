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

On a GPU each step runs in its own process with a hard timeout (a hang or a CUDA error ends
that step only). `dry_run=True` runs the same steps on the CPU at scaled-down sizes (bf16,
compiled with "aot_eager"), in this process, in under two minutes, as the tests do.
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
STARTUP_S = 10  # an isolated step's import and CUDA start, taken out of its budget
STEP_GRACE_S = 45  # past its budget, an isolated step is killed (a compile, a hang)
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


def run_step(step: Step, device: str, sizes: list[int] | None, budget: float, out: Path,
             isolate: bool) -> dict[str, Any]:
    """One step, in this process or (`isolate`) in its own `python -m lclib.bench` process
    with a hard timeout: a hang, a crash or a CUDA error that poisons the context ends that
    step only. Returns the log entry."""
    if not isolate:
        try:
            record = run_experiment(step.name, device, sizes, "bf16", out, budget_s=budget,
                                    **dict(step.options))
        except Exception as err:  # keep going: the next step may still measure
            return {"status": f"{type(err).__name__}: {str(err)[:300]}"}
        return {"status": "ok", "path": record.get("path"), "rows": len(record["rows"])}
    cmd = [sys.executable, "-m", "lclib.bench", step.name, "--device", device, "--dtype", "bf16",
           "--budget-s", str(budget - STARTUP_S), "--out", str(out), "--options",
           json.dumps(dict(step.options)), *(["--sizes", *map(str, sizes)] if sizes else [])]
    before = set(out.glob(f"{step.name}-*.jsonl"))
    try:
        done = subprocess.run(cmd, capture_output=True, text=True,
                              timeout=budget + STEP_GRACE_S)
        status = "ok" if done.returncode == 0 else f"exit {done.returncode}: {done.stderr[-600:]}"
    except subprocess.TimeoutExpired:
        status = f"killed after {budget + STEP_GRACE_S:.0f} s"
    new = sorted(set(out.glob(f"{step.name}-*.jsonl")) - before)
    return {"status": status, "path": str(new[-1]) if new else None}


def device_run(budget_s: float = 420.0, dry_run: bool = False, out: Path | None = None,
               device: str = "cuda", isolate: bool | None = None) -> dict[str, Any]:
    """Run every step within `budget_s`; returns the run's log, written under `out` after
    every step.

    A step that fails is logged and the next one runs: one bug does not cost the slot. On a GPU
    each step runs in its own process (`isolate`, default: not `dry_run`).
    """
    device = "cpu" if dry_run else resolve_device(device).type  # ValueError without CUDA
    isolate = not dry_run if isolate is None else isolate
    out = Path(out) if out is not None else Path(tempfile.mkdtemp(prefix="lclib-device-run-"))
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    log_path = out / f"device_run-{device}-{stamp}.json"
    start = time.perf_counter()
    log: dict[str, Any] = {"budget_s": budget_s, "dry_run": dry_run, "isolate": isolate,
                           "steps": []}

    def left() -> float:
        return budget_s - (time.perf_counter() - start)

    def record(entry: dict[str, Any], t0: float) -> None:
        entry["elapsed_s"] = time.perf_counter() - t0
        log["steps"].append(entry)
        log["elapsed_s"] = time.perf_counter() - start
        log_path.write_text(json.dumps(log, indent=1))
        print(json.dumps({k: v for k, v in entry.items() if k != "stdout"}), flush=True)

    for step in STEPS:
        t0, budget = time.perf_counter(), min(step.share * budget_s, left())
        entry: dict[str, Any] = {"step": step.name, "budget_s": budget}
        if budget <= 0:
            entry["status"] = "no time left"
        else:
            sizes = step.dry_sizes if dry_run else step.sizes
            entry.update(run_step(step, device, sizes, budget, out, isolate))
        record(entry, t0)
    t0 = time.perf_counter()
    record({"step": "ring_nccl",
            **torchrun_check(out, device, min(NCCL_SHARE * budget_s, left()))}, t0)
    return log
