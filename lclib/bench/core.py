"""Timing, provenance and the experiment registry."""

from __future__ import annotations

import importlib
import json
import pkgutil
import platform
import statistics
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

MEASUREMENTS = Path(__file__).resolve().parents[2] / "book" / "data" / "measurements"
Experiment = Callable[..., dict[str, Any]]
EXPERIMENTS: dict[str, Experiment] = {}


def experiment(name: str) -> Callable[[Experiment], Experiment]:
    """Register `fn(device, sizes, dtype) -> results` as experiment `name`.

    Put each experiment in its own module of this package: `discover()` imports them all.
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


def resolve_device(device: str) -> torch.device:
    """A torch device, or ValueError if it is not available here."""
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda asked for, but torch sees no CUDA GPU; pass --device cpu")
    return dev


def time_op(fn: Callable[[], object], device: torch.device, repeat: int = 5,
            min_time: float = 0.05) -> float:
    """Median seconds of `fn()` after a warm-up, synchronising the GPU around each call."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    fn()
    sync()
    t0 = time.perf_counter()
    fn()
    sync()
    inner = max(1, int(min_time / max(time.perf_counter() - t0, 1e-9)))
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        sync()
        samples.append((time.perf_counter() - t0) / inner)
    return statistics.median(samples)


def provenance(device: torch.device) -> dict[str, Any]:
    """Where and when a measurement was taken."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    return {
        "device": str(device),
        "device_name": name or platform.machine(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def run_experiment(name: str, device: str = "cpu", sizes: list[int] | None = None,
                   dtype: str = "fp32", out: Path | None = MEASUREMENTS) -> dict[str, Any]:
    """Run experiment `name`, return its record, and write it as JSON under `out` (if given)."""
    if name not in discover():
        raise ValueError(f"unknown experiment {name!r}; pass one of {', '.join(EXPERIMENTS)}")
    dev = resolve_device(device)
    record = {"experiment": name, "provenance": provenance(dev),
              **EXPERIMENTS[name](device=dev, sizes=sizes, dtype=dtype)}
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"{name}-{dev.type}.json"
        path.write_text(json.dumps(record, indent=1))
        record["path"] = str(path)
    return record
