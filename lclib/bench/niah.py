"""Needle in a haystack on lclib.tinylm: accuracy over length x depth, KV dtype and chunking.

Seed 002's parity method in miniature: run the reference twice (two sample seeds: the noise
floor), then each candidate (FP8 KV with per-tensor or per-head scales, chunked prefill), and
report each candidate's accuracy change per length next to the noise. The model is tiny and its
checkpoint was trained at 256 tokens; the method, not the numbers, is what carries to 128K.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from lclib import fp8, tinylm

from .core import experiment

REFERENCE = "fp32"
CANDIDATES = {"FP8 KV, per tensor": ("e4m3-tensor", None),
              "FP8 KV, per head": ("e4m3-head", None), "chunked prefill": (REFERENCE, 64)}
DEPTHS = (0.0, 0.33, 0.67, 1.0)
CPU_LENGTHS, CUDA_LENGTHS = (128, 256, 384), (128, 256, 512, 1024, 2048)


class Served(torch.nn.Module):
    """`model` reading K/V back through a `kv_dtype` cache, prefilled in chunks of `chunk`."""

    def __init__(self, model: tinylm.TinyLM, kv_dtype: str, chunk: int | None = None) -> None:
        super().__init__()
        self.model, self.kv_dtype, self.chunk = model, kv_dtype, chunk
        self.lm_head = model.lm_head
        fp8.CachedKV(model, kv_dtype)  # ValueError now for unknown codecs

    def hidden(self, tokens: Tensor) -> Tensor:
        cache, step = self.model.new_cache(self.kv_dtype), self.chunk or tokens.shape[1]
        return torch.cat([self.model.hidden(tokens[:, i:i + step], cache)
                          for i in range(0, tokens.shape[1], step)], dim=1)


def _load(device: torch.device) -> tuple[tinylm.TinyLM, bool]:
    try:
        return tinylm.load().to(device), True
    except (FileNotFoundError, OSError):
        return tinylm.TinyLM(tinylm.CONFIG).to(device), False


def heatmap(model: tinylm.TinyLM, kv_dtype: str, chunk: int | None, lengths: tuple[int, ...],
            n_samples: int, seed: int) -> list[list[float]]:
    """Exact-match accuracy [length][depth] of the single-needle task."""
    return tinylm.evaluate(Served(model, kv_dtype, chunk), "single_needle", lengths, DEPTHS,
                           n_samples=n_samples, seed=seed).accuracy.tolist()


def _by_length(grid: list[list[float]]) -> list[float]:
    return [sum(row) / len(row) for row in grid]


@experiment("niah")
def niah(device: torch.device, sizes: list[int] | None = None, dtype: str = "fp32",
         n_samples: int | None = None) -> dict[str, Any]:
    """Heatmaps of the reference (two seeds) and each candidate; deltas per length."""
    lengths = tuple(sizes or (CUDA_LENGTHS if device.type == "cuda" else CPU_LENGTHS))
    n = n_samples or (64 if device.type == "cuda" else 8)
    model, trained = _load(device)
    ref = heatmap(model, REFERENCE, None, lengths, n, seed=1)
    ref2 = heatmap(model, REFERENCE, None, lengths, n, seed=2)
    runs = {name: heatmap(model, kv, chunk, lengths, n, seed=1)
            for name, (kv, chunk) in CANDIDATES.items()}
    base = _by_length(ref)
    noise = [abs(a - b) for a, b in zip(base, _by_length(ref2), strict=True)]
    return {"trained": trained, "lengths": list(lengths), "depths": list(DEPTHS),
            "n_samples": n, "reference": ref, "reference_seed2": ref2, "runs": runs,
            "noise_floor": noise,
            "delta": {k: [a - b for a, b in zip(_by_length(v), base, strict=True)]
                      for k, v in runs.items()}}
