"""A RULER-like suite on lclib.tinylm: bf16 vs FP8 KV, chunked prefill on and off.

The Hopper lecture's parity method in miniature, with a paired test. For each task and length:
the reference (bf16 KV, one-shot prefill) on two independent sample sets (the second shows what
a rerun moves by chance), then each candidate on the first set's sequences. A candidate and the
reference answer the same prompts, so they are compared pair by pair: McNemar's exact test on
the prompts only one of them gets right (`lclib.stats.mcnemar`). The single-needle grids over
length x depth are the needle-in-a-haystack heatmaps. The checkpoint was trained at 256 tokens;
the method, not the numbers, is what carries to 128K.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import torch
from torch import Tensor

from lclib import stats, tinylm

from .core import experiment

REFERENCE = ("bf16", None)
CANDIDATES = {"FP8 KV, per tensor": ("e4m3-tensor", None),
              "FP8 KV, per head": ("e4m3-head", None), "chunked prefill": ("bf16", 64)}
SUITE = tuple(tinylm.TASKS)  # single_needle, multi_key, variable_tracking
DEPTHS = (0.0, 0.33, 0.67, 1.0)
CPU_LENGTHS, CUDA_LENGTHS = (128, 256, 512), (128, 256, 512, 1024, 2048)


class Served(torch.nn.Module):
    """`model` reading K/V back through a `kv_dtype` cache, prefilled in chunks of `chunk`."""

    def __init__(self, model: tinylm.TinyLM, kv_dtype: str, chunk: int | None = None) -> None:
        super().__init__()
        self.model, self.kv_dtype, self.chunk = model, kv_dtype, chunk
        self.lm_head = model.lm_head
        tinylm.CachedKV(model, kv_dtype)  # ValueError now for unknown codecs

    def hidden(self, tokens: Tensor) -> Tensor:
        cache, step = self.model.new_cache(self.kv_dtype), self.chunk or tokens.shape[1]
        return torch.cat([self.model.hidden(tokens[:, i:i + step], cache)
                          for i in range(0, tokens.shape[1], step)], dim=1)


def _load(device: torch.device) -> tuple[tinylm.TinyLM, bool]:
    try:
        return tinylm.load().to(device), True
    except (FileNotFoundError, OSError):
        return tinylm.TinyLM(tinylm.CONFIG).to(device), False


def correct(model: tinylm.TinyLM, task: str, setup: tuple[str, int | None],
            lengths: tuple[int, ...], n_samples: int, seed: int) -> np.ndarray:
    """Right or wrong [length, depth, sample] on `task` served with `setup` = (kv_dtype, chunk);
    the same `seed` gives the same prompts."""
    return tinylm.evaluate(Served(model, *setup), task, lengths, DEPTHS, n_samples=n_samples,
                           seed=seed).correct


def effective_length(accuracy: Any, lengths: Any, threshold: float = 0.9) -> int | None:
    """RULER's effective length read off a heatmap: the longest of `lengths` up to which every
    length's mean accuracy over depths is at least `threshold`; None if the shortest fails.

    `accuracy` is [length, depth], rows in the order of `lengths` (increasing).
    """
    grid, lengths = np.asarray(accuracy, dtype=float), list(lengths)
    if grid.ndim != 2 or grid.shape[0] != len(lengths) or not grid.size:
        raise ValueError(f"pass accuracy as [length, depth] with one row per length; got shape "
                         f"{grid.shape} for {len(lengths)} lengths")
    if any(b <= a for a, b in itertools.pairwise(lengths)):
        raise ValueError(f"pass lengths in increasing order, got {lengths}")
    if not 0 < threshold <= 1:
        raise ValueError(f"pass a threshold in (0, 1], got {threshold}")
    passing = grid.mean(axis=1) >= threshold
    n = len(lengths) if passing.all() else int(np.argmin(passing))
    return lengths[n - 1] if n else None


def paired(ref: np.ndarray, cand: np.ndarray) -> list[dict[str, float]]:
    """McNemar per length: `ref` and `cand` are [length, depth, sample] on the same prompts."""
    return [stats.mcnemar(r.ravel().tolist(), c.ravel().tolist())._asdict()
            for r, c in zip(ref, cand, strict=True)]


def compare(model: tinylm.TinyLM, task: str, lengths: tuple[int, ...],
            n_samples: int) -> dict[str, Any]:
    """One task's parity report: grids, per-length accuracy, a rerun, each candidate's Δ and
    its paired test against the reference."""
    ref = correct(model, task, REFERENCE, lengths, n_samples, seed=1)
    ref2 = correct(model, task, REFERENCE, lengths, n_samples, seed=2)
    runs = {name: correct(model, task, setup, lengths, n_samples, seed=1)
            for name, setup in CANDIDATES.items()}
    base = ref.mean(axis=(1, 2))
    return {"reference": ref.mean(2).tolist(), "reference_rerun": ref2.mean(2).tolist(),
            "runs": {name: grid.mean(2).tolist() for name, grid in runs.items()},
            "accuracy": base.tolist(),
            "rerun_moves_by": np.abs(base - ref2.mean(axis=(1, 2))).tolist(),
            "delta": {name: (grid.mean(axis=(1, 2)) - base).tolist()
                      for name, grid in runs.items()},
            "paired": {name: paired(ref, grid) for name, grid in runs.items()}}


@experiment("niah")
def niah(device: torch.device, sizes: list[int] | None = None, dtype: str = "fp32",
         n_samples: int | None = None) -> dict[str, Any]:
    """The suite over `sizes` (context lengths) for every task; `dtype` is unused (bf16 KV is
    the reference, FP8 KV a candidate)."""
    lengths = tuple(sizes or (CUDA_LENGTHS if device.type == "cuda" else CPU_LENGTHS))
    n = n_samples or (64 if device.type == "cuda" else 8)
    model, trained = _load(device)
    return {"trained": trained, "train_length": model.config.max_position_embeddings,
            "lengths": list(lengths), "depths": list(DEPTHS), "n_samples": n,
            "reference_setup": "bf16 KV, one-shot prefill",
            "tasks": {task: compare(model, task, lengths, n) for task in SUITE}}
