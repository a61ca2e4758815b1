"""Chapter 2: a decode step's attention reads the whole KV cache; time it against the context.

The experiment "decode" times one decode step's attention core for one layer: the new token's
query heads against `seq_len` cached keys and values. At long context this is a pure memory
read, so KV bytes / time is an achieved bandwidth, reported beside the GPU's HBM bandwidth
(`lclib.get_gpu`) when torch names a GPU lclib knows. Sizes whose K/V would sit in the last-level
cache (the GPU's L2, the CPU's L3) are timed but kept out of the bandwidth fit
(`lclib.measurements.fit_past_cache`). The default
sizes run past that cache. `tinylm_decode_times` times whole decode steps of a
`lclib.tinylm.TinyLM` the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from ..cost import kv_cache_bytes
from ..measurements import CACHE_MARGIN, fit_past_cache
from ..measurements import fit_bandwidth as fit_bandwidth  # re-exported for the chapter
from ..models import ModelConfig, get_model
from ..tinylm import KVCache, TinyLM
from ..torch_env import device_gpu, last_level_cache_bytes, sdpa_backend, torch_dtype
from ..torch_env import known_gpu as known_gpu  # re-exported: older code imports it here
from ..units import positive_int
from .core import Run, experiment, time_op

# A narrow GQA layer for CPUs; on a GPU, one Llama-3.3-70B layer (64 query, 8 KV heads of 128).
CPU_LAYER = ModelConfig("cpu-decode-layer", hidden_size=512, n_layers=1, n_heads=8, n_kv_heads=2,
                        intermediate_size=1, vocab_size=1, source="lclib.bench")
GPU_LAYER = get_model("llama-3.3-70b").with_(name="llama-3.3-70b-layer", n_layers=1)
DEFAULT_SIZES = {"cpu": [4096, 16384, 65536, 131072, 262144],
                 "cuda": [4096, 16384, 65536, 262144, 524288, 1048576]}


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

    def step() -> torch.Tensor:
        return F.scaled_dot_product_attention(q, k, v)

    step.qkv = (q, k, v)
    return step


@experiment("decode")
def decode(device: torch.device, sizes: list[int] | None = None, dtype: str = "fp32",
           run: Run | None = None) -> dict[str, Any]:
    """Time one layer's decode attention at each context in `sizes`; fit the bandwidth."""
    cfg = CPU_LAYER if device.type == "cpu" else GPU_LAYER
    run = run or Run(None, {})

    def measure(seq: int) -> dict[str, Any]:
        step = decode_attention(cfg, seq, device, torch_dtype(dtype))
        kv = kv_cache_bytes(cfg, seq, kv_dtype=dtype)
        t = time_op(step, device)
        return {"seq_len": seq, "t_step": t, "kv_bytes": kv, "bandwidth": kv / t,
                "backend": sdpa_backend(*step.qkv)}

    rows = run.measure(sorted(sizes or DEFAULT_SIZES[device.type]), measure)
    if not rows:
        raise ValueError("no size could be measured; pass smaller --sizes or a larger budget")
    gpu = device_gpu(device)
    fit = fit_past_cache(rows, last_level_cache_bytes(device))
    best = max(r["bandwidth"] for r in rows)
    hbm = gpu.hbm_bandwidth if gpu else None
    return {
        "layer": {k: getattr(cfg, k) for k in ("name", "n_heads", "n_kv_heads", "head_dim")},
        "dtype": dtype, **fit,
        "best_bandwidth": best,
        "gpu": gpu.name if gpu else None,
        "hbm_bandwidth": hbm,
        "fraction_of_hbm": best / hbm if hbm else None,
        "fitted_fraction_of_hbm": fit["fitted_bandwidth"] / hbm
        if hbm and fit["fitted_bandwidth"] else None,
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
                        kv_dtype: str = "fp32", repeat: int = 7) -> list[dict[str, Any]]:
    """Seconds of one decode step of `model` (on the CPU) after each context of cached tokens,
    the median of `repeat` timings.

    Each timed step appends one token in place to the same filled cache and is then forgotten
    (`KVCache.truncate`), so every step sees `context` tokens and copies no cache. A row's
    "past_cache" says whether its K/V is past CACHE_MARGIN x the CPU's last-level cache (the
    sizes a bandwidth fit should use).
    """
    rows = []
    token = torch.zeros(batch, dtype=torch.long)
    floor = CACHE_MARGIN * (last_level_cache_bytes(torch.device("cpu")) or 0)
    for context in contexts:
        cache = filled_cache(model, context, batch, kv_dtype)

        def step(c: KVCache = cache, n: int = context) -> None:
            model.decode(token, c)
            c.truncate(n)

        t = time_op(step, torch.device("cpu"), repeat)
        rows.append({"context": context, "t_step": t, "kv_bytes": cache.nbytes,
                     "past_cache": cache.nbytes >= floor})
    return rows
