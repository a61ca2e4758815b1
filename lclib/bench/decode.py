"""Chapter 2: a decode step's attention reads the whole KV cache; time it against the context.

The experiment "decode" times one decode step's attention core for one layer: the new token's
query heads against `seq_len` cached keys and values. At long context this is a pure memory
read, so KV bytes / time is an achieved bandwidth, reported beside the GPU's HBM bandwidth
(`lclib.get_gpu`) when torch names a GPU lclib knows. `tinylm_decode_times` times whole decode
steps of a `lclib.tinylm.TinyLM` the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from ..cost import kv_cache_bytes
from ..hardware import GPU, get_gpu
from ..models import ModelConfig, get_model
from ..tinylm import KVCache, TinyLM
from ..units import positive_int
from .core import experiment, time_op
from .crossover import torch_dtype

# A narrow GQA layer for CPUs; on a GPU, one Llama-3.3-70B layer (64 query, 8 KV heads of 128).
CPU_LAYER = ModelConfig("cpu-decode-layer", hidden_size=512, n_layers=1, n_heads=8, n_kv_heads=2,
                        intermediate_size=1, vocab_size=1, source="lclib.bench")
GPU_LAYER = get_model("llama-3.3-70b").with_(name="llama-3.3-70b-layer", n_layers=1)
DEFAULT_SIZES = {"cpu": [4096, 16384, 65536, 131072],
                 "cuda": [4096, 16384, 65536, 262144, 1048576]}
# torch.cuda.get_device_name substrings -> lclib GPU (only the SXM parts lclib has numbers for)
_GPU_NAMES = (("H200", "h200"), ("H100 80GB HBM3", "h100-sxm"), ("A100-SXM4-80GB", "a100-80gb"))


def known_gpu(device_name: str) -> GPU | None:
    """The lclib GPU that torch's device name denotes, or None (PCIe/NVL parts, other GPUs)."""
    for marker, name in _GPU_NAMES:
        if marker in device_name:
            return get_gpu(name)
    return None


def decode_attention(cfg: ModelConfig, seq_len: int, device: torch.device, dtype: torch.dtype,
                     batch: int = 1):
    """A closure running one decode step's attention over a `seq_len`-token cache.

    Each KV head's group of query heads is one block of query rows (as flash-decoding packs
    them), so plain SDPA reads every cached K and V byte exactly once.
    """
    g = torch.Generator(device).manual_seed(0)
    shape = (batch, cfg.n_kv_heads, seq_len, cfg.head_dim)
    q = torch.randn(batch, cfg.n_kv_heads, cfg.gqa_group, cfg.head_dim, generator=g,
                    device=device, dtype=dtype)
    k = torch.randn(shape, generator=g, device=device, dtype=dtype)
    v = torch.randn(shape, generator=g, device=device, dtype=dtype)
    return lambda: F.scaled_dot_product_attention(q, k, v)


def fit_bandwidth(n_bytes: Sequence[float], seconds: Sequence[float]) -> tuple[float, float]:
    """Least-squares fit of t = t0 + bytes / bandwidth; returns (bandwidth in B/s, t0 in s)."""
    if len(n_bytes) != len(seconds) or len(set(n_bytes)) < 2:
        raise ValueError("pass equally many byte counts and times, with at least two sizes")
    mx, my = sum(n_bytes) / len(n_bytes), sum(seconds) / len(seconds)
    sxx = sum((x - mx) ** 2 for x in n_bytes)
    slope = sum((x - mx) * (y - my) for x, y in zip(n_bytes, seconds, strict=True)) / sxx
    if not slope > 0:
        raise ValueError("time does not grow with bytes here; pass longer contexts")
    return 1 / slope, my - slope * mx


@experiment("decode")
def decode(device: torch.device, sizes: list[int] | None = None,
           dtype: str = "fp32") -> dict[str, Any]:
    """Time one layer's decode attention at each context in `sizes`; fit the bandwidth."""
    cfg = CPU_LAYER if device.type == "cpu" else GPU_LAYER
    sizes = sorted(sizes or DEFAULT_SIZES[device.type])
    rows = []
    for seq in sizes:
        t = time_op(decode_attention(cfg, seq, device, torch_dtype(dtype)), device)
        kv = kv_cache_bytes(cfg, seq, kv_dtype=dtype)
        rows.append({"seq_len": seq, "t_step": t, "kv_bytes": kv, "bandwidth": kv / t})
    try:
        bandwidth, overhead = fit_bandwidth([r["kv_bytes"] for r in rows],
                                            [r["t_step"] for r in rows])
    except ValueError:  # one size, or timings too noisy to grow with the bytes
        bandwidth = overhead = None
    gpu = known_gpu(torch.cuda.get_device_name(device)) if device.type == "cuda" else None
    best = max(r["bandwidth"] for r in rows)
    return {
        "layer": {k: getattr(cfg, k) for k in ("name", "n_heads", "n_kv_heads", "head_dim")},
        "dtype": dtype,
        "rows": rows,
        "fitted_bandwidth": bandwidth,
        "fitted_overhead_s": overhead,
        "best_bandwidth": best,
        "gpu": gpu.name if gpu else None,
        "hbm_bandwidth": gpu.hbm_bandwidth if gpu else None,
        "fraction_of_hbm": best / gpu.hbm_bandwidth if gpu else None,
    }


def filled_cache(model: TinyLM, context: int, batch: int = 1, kv_dtype: str = "fp32") -> KVCache:
    """A cache holding `context` tokens of random K/V per layer, as a prefill would leave it."""
    context, batch = positive_int("context", context), positive_int("batch", batch)
    c, cache = model.config, model.new_cache(kv_dtype)
    g = torch.Generator().manual_seed(0)
    for layer in range(c.n_layers):
        k, v = (torch.randn(batch, c.n_kv_heads, context, c.head_dim, generator=g)
                for _ in range(2))
        cache.append(layer, k, v)
    cache.length = context
    return cache


@torch.no_grad()
def tinylm_decode_times(model: TinyLM, contexts: Sequence[int], batch: int = 1,
                        kv_dtype: str = "fp32", repeat: int = 7) -> list[dict[str, float]]:
    """Seconds of one decode step of `model` (on the CPU) after each context of cached tokens,
    the median of `repeat` timings.

    Each timed step extends a fork of the same filled cache, so every step sees `context` tokens.
    """
    rows = []
    token = torch.zeros(batch, dtype=torch.long)
    for context in contexts:
        cache = filled_cache(model, context, batch, kv_dtype)
        t = time_op(lambda c=cache: model.decode(token, c.fork()), torch.device("cpu"), repeat)
        rows.append({"context": context, "t_step": t, "kv_bytes": cache.nbytes})
    return rows
