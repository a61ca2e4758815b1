"""Timing, provenance, the experiment registry, and a record that survives a late failure.

An experiment writes one JSON Lines file: a header line (experiment, provenance, inputs), one
line per measured row, flushed as soon as it is measured, and a summary line at the end. A
size that runs out of memory becomes a row with an "error"; a size predicted to overrun the
time budget becomes a row with "skipped". A crash after the third size keeps three rows.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import os
import pkgutil
import platform
import statistics
import subprocess
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from ..torch_env import is_oom, resolve_device, synchronize

Experiment = Callable[..., dict[str, Any]]
EXPERIMENTS: dict[str, Experiment] = {}
LCLIB = Path(__file__).resolve().parents[1]


def default_out() -> Path:
    """Where the CLI writes: `$OUT` when set (a device run), else book/data/measurements."""
    return Path(os.environ["OUT"]) if os.environ.get("OUT") else Path("book/data/measurements")


def experiment(name: str) -> Callable[[Experiment], Experiment]:
    """Register `fn(device, sizes, dtype[, run]) -> results` as experiment `name`.

    Put each experiment in its own module of this package: `discover()` imports them all.
    An experiment that takes `run` (a `Run`) records rows as it goes; one that does not
    returns them under "rows" and they are written at the end.
    """
    def register(fn: Experiment) -> Experiment:
        EXPERIMENTS[name] = fn
        return fn
    return register


def discover() -> dict[str, Experiment]:
    """Import every module of lclib.bench so that each registers its experiments."""
    for module in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if module.name not in ("core", "__main__"):
            importlib.import_module(f"{__package__}.{module.name}")
    return EXPERIMENTS


def time_op(fn: Callable[[], object], device: torch.device, repeat: int = 5,
            min_time: float = 0.05) -> float:
    """Median seconds of `fn()` after a warm-up, synchronising `device` around each sample."""
    fn()
    synchronize(device)
    t0 = time.perf_counter()
    fn()
    synchronize(device)
    inner = max(1, int(min_time / max(time.perf_counter() - t0, 1e-9)))
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        synchronize(device)
        samples.append((time.perf_counter() - t0) / inner)
    return statistics.median(samples)


def _git_commit() -> str | None:
    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=LCLIB, capture_output=True,
                              text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


def source_hash() -> str:
    """SHA-1 of lclib's Python sources: names the code that ran even without git."""
    h = hashlib.sha1()
    for path in sorted(LCLIB.rglob("*.py")):
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def _gpu_state(device: torch.device) -> dict[str, Any]:
    """Clocks, power, temperature and driver from nvidia-smi (None where it cannot answer)."""
    fields = ("clocks.sm", "clocks.max.sm", "clocks.mem", "power.draw", "temperature.gpu",
              "driver_version")
    try:
        done = subprocess.run(["nvidia-smi", f"--id={device.index or 0}",
                               f"--query-gpu={','.join(fields)}", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=10)
        values = [v.strip() for v in done.stdout.strip().split(",")]
    except (OSError, subprocess.SubprocessError):
        values = []
    return dict(zip(fields, values, strict=False)) if len(values) == len(fields) else {}


def provenance(device: torch.device) -> dict[str, Any]:
    """Where, when and with what code and software a measurement was taken."""
    info: dict[str, Any] = {
        "device": str(device), "device_name": platform.processor() or platform.machine(),
        "torch": torch.__version__, "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "threads": torch.get_num_threads(), "python": platform.python_version(),
        "git_commit": _git_commit(), "lclib_sha1": source_hash(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(device_name=props.name, hbm_bytes=props.total_memory,
                    l2_bytes=getattr(props, "L2_cache_size", None),
                    sm_count=props.multi_processor_count, nvidia_smi=_gpu_state(device))
    return info


class Run:
    """One experiment's JSON Lines file and its time budget.

    `measure(sizes, fn)` calls `fn(size) -> row` for each size in order, writes each row at
    once, records an out-of-memory error as a row and goes on, and skips a size when the time
    it predicts (the last size's time, less its one-off "setup_s" such as compiling, scaled by
    (size/last)^exponent) exceeds what is left.
    """

    def __init__(self, path: Path | None, header: dict[str, Any],
                 budget_s: float | None = None) -> None:
        self.path, self.budget_s, self.start = path, budget_s, time.perf_counter()
        self.rows: list[dict[str, Any]] = []
        self._file = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = path.open("w")
        self._write({"kind": "header", **header})

    def _write(self, line: dict[str, Any]) -> None:
        if self._file is not None:
            self._file.write(json.dumps(line) + "\n")
            self._file.flush()

    def left(self) -> float:
        """Seconds left of the budget (inf without one)."""
        if self.budget_s is None:
            return float("inf")
        return self.budget_s - (time.perf_counter() - self.start)

    def row(self, row: dict[str, Any]) -> dict[str, Any]:
        """Keep `row` and write it now."""
        self.rows.append(row)
        self._write({"kind": "row", **row})
        return row

    def measure(self, sizes: Iterable[int], fn: Callable[[int], dict[str, Any]],
                exponent: float = 1.0, key: str = "seq_len") -> list[dict[str, Any]]:
        """The measured rows of `fn` over `sizes` (errors and skips are written, not returned)."""
        measured, last = [], None
        for size in sizes:
            if last is not None and last[1] * (size / last[0]) ** exponent > self.left():
                predicted = last[1] * (size / last[0]) ** exponent
                self.row({key: size, "skipped": f"predicted {predicted:.1f} s, "
                                                 f"{max(self.left(), 0):.1f} s left"})
                continue
            t0 = time.perf_counter()
            try:
                row = fn(size)
            except Exception as err:
                if not is_oom(err):
                    raise
                self.row({key: size, "error": f"out of memory: {str(err)[:200]}"})
                row = None
            if row is None:  # outside the except: its traceback no longer holds the tensors
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                continue
            wall = time.perf_counter() - t0
            last = (size, max(wall - row.get("setup_s", 0.0), 1e-6))
            measured.append(self.row({**row, "wall_s": wall}))
        return measured

    def finish(self, summary: dict[str, Any]) -> None:
        """Write the summary line and close the file."""
        self._write({"kind": "summary", **summary,
                     "elapsed_s": time.perf_counter() - self.start})
        if self._file is not None:
            self._file.close()


def output_path(out: Path, name: str, device: torch.device, dtype: str) -> Path:
    """`<name>-<device>-<dtype>-<UTC timestamp>.jsonl`: a second run never overwrites a first."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    return out / f"{name}-{device.type}-{dtype}-{stamp}.jsonl"


def run_experiment(name: str, device: str = "cpu", sizes: list[int] | None = None,
                   dtype: str = "fp32", out: Path | None = None,
                   budget_s: float | None = None, **options: Any) -> dict[str, Any]:
    """Run experiment `name`; return its record and, if `out` is given, write it under `out`.

    `options` go to the experiment (e.g. backend="flash"); `budget_s` bounds its time.
    """
    if name not in discover():
        raise ValueError(f"unknown experiment {name!r}; pass one of {', '.join(EXPERIMENTS)}")
    dev = resolve_device(device)
    fn = EXPERIMENTS[name]
    header = {"experiment": name, "provenance": provenance(dev), "dtype": dtype,
              "sizes": sizes, "options": options, "budget_s": budget_s}
    path = output_path(Path(out), name, dev, dtype) if out is not None else None
    run = Run(path, header, budget_s)
    params = inspect.signature(fn).parameters
    unknown = set(options) - set(params) - {"device", "sizes", "dtype", "run"}
    if unknown:
        run.finish({"error": f"unknown options {sorted(unknown)}"})
        raise ValueError(f"experiment {name!r} takes no option {', '.join(sorted(unknown))}; "
                         f"it takes {', '.join(params)}")
    kwargs = {"run": run} if "run" in params else {}
    try:
        summary = fn(device=dev, sizes=sizes, dtype=dtype, **kwargs, **options)
    except BaseException as err:
        run.finish({"error": f"{type(err).__name__}: {err}"[:500]})
        raise
    rows = summary.pop("rows", None)
    if rows is not None and not run.rows:
        for row in rows:
            run.row(row)
    run.finish(summary)
    record = {"experiment": name, "provenance": header["provenance"], **summary,
              "rows": run.rows}
    if path is not None:
        record["path"] = str(path)
    return record
