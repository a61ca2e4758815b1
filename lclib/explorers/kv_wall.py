"""Chapter 2's explorer: memory, concurrency and decode time of a batch of long requests."""

from __future__ import annotations

from ..cost import kv_budget, kv_bytes_per_token, kv_cache_bytes, max_concurrency, weight_bytes
from ..explorer import Dropdown, Explorer, Line, Readout, Slider, StackedBars
from ..hardware import get_gpu
from ..kv_wall import kv_equals_weights_tokens
from ..units import GB, KiB
from .parts import context_slider, fmt_kv

# Three sizes (the grid and the page have a size limit): Qwen2.5-72B and Llama-2-70B cache as
# Llama-3.3-70B does, and Mistral-7B's window caps its cache (chapter 7).
KV_WALL_MODELS = ("llama-3.3-70b", "yi-34b", "llama-3.1-8b")
WEIGHT_DTYPES = ("int4", "fp8", "bf16")  # opens on the chapter's question: 4-bit weights
KV_DTYPES = ("bf16", "fp8", "int4")
BATCHES = (1, 2, 4, 8, 16)
KV_WALL_GPUS = ("h100-sxm", "h200")  # seed 002's Hopper parts; the A100 is in Fu's table
GPU_COUNTS = (1, 2, 4, 8)
BAR_CAP_PCT = 200  # memory bars stop here: a batch that needs more does not fit either way


def kv_wall_point(seq_len: int, batch: int, model: str, weight_dtype: str, kv_dtype: str,
                  gpu: str, n_gpus: int) -> dict[str, float | int]:
    """A batch of `batch` requests of `seq_len` tokens on `n_gpus` GPUs (weights and KV
    sharded evenly): memory in GB (10^9 bytes), users that fit, and one decode step split
    into its weight and KV reads (milliseconds, memory-bound as in `lclib.decode_step_time`, a
    lower bound). A batch whose KV exceeds `lclib.kv_budget` gets no KV read time (None: a gap
    in the chart) and a TPOT readout that says it does not fit."""
    weights, kv = weight_bytes(model, weight_dtype), kv_cache_bytes(model, seq_len, batch, kv_dtype)
    hbm, bandwidth = n_gpus * get_gpu(gpu).hbm_bytes, n_gpus * get_gpu(gpu).hbm_bandwidth
    weights_pct = min(100 * weights / hbm, BAR_CAP_PCT)
    kv_pct = min(100 * kv / hbm, BAR_CAP_PCT - weights_pct)
    fits = kv <= kv_budget(model, gpu, n_gpus, weight_dtype)
    weight_ms, kv_ms = 1e3 * weights / bandwidth, 1e3 * kv / bandwidth
    return {
        "tpot": f"{weight_ms + kv_ms:,.1f} ms" if fits else "does not fit",
        "kv_gb": kv / GB,
        "need_gb": (weights + kv) / GB,
        "hbm_gb": hbm / GB,
        "weights_pct": weights_pct,
        "kv_pct": kv_pct,
        "free_pct": max(0.0, 100 - weights_pct - kv_pct),
        "full_pct": 100,
        "kv_bytes": kv,
        "kv_per_token": kv_bytes_per_token(model, kv_dtype),
        "users": max_concurrency(model, gpu, seq_len, n_gpus, weight_dtype, kv_dtype),
        "weight_ms": weight_ms,
        "kv_ms": kv_ms if fits else None,
        "crossover_tokens": kv_equals_weights_tokens(model, weight_dtype, kv_dtype),
    }


def _fmt_users(n: int) -> str:
    return f"{n:,}" if n else "0 (not one fits)"


def kv_wall_explorer(steps: int = 11) -> Explorer:
    """The KV wall: drag context and batch, pick model, precisions and GPUs; see what fits,
    how many users the memory holds, and how a decode step splits into weight and KV reads."""
    gb = "GB (10^9 bytes)"
    return Explorer(
        precision=3,
        compute=kv_wall_point,
        title="The KV wall: memory and decode time of a batch of long requests",
        controls=[
            context_slider(steps),
            Slider("batch", "batch (concurrent requests)", BATCHES, fmt=str, default=1),
            Dropdown("model", "model", KV_WALL_MODELS),
            Dropdown("weight_dtype", "weights", WEIGHT_DTYPES),
            Dropdown("kv_dtype", "KV cache", KV_DTYPES),
            Dropdown("gpu", "GPU", KV_WALL_GPUS),
            Slider("n_gpus", "GPUs", GPU_COUNTS, fmt=str, default=4),
        ],
        views=[
            Line(x="seq_len", y=["need_gb", "kv_gb"], labels=["weights + KV", "KV of the batch"],
                 title="Memory of the batch vs context", y_label=f"memory, {gb}", log_y=True,
                 capacity="hbm_gb", capacity_label="HBM of these GPUs", y_fmt="{:,.4g}".format),
            StackedBars(x="kv_dtype", y=["weights_pct", "kv_pct", "free_pct"],
                        labels=["weights", "KV cache of the batch", "free"],
                        title=f"HBM at this context, per KV precision (bars stop at "
                              f"{BAR_CAP_PCT}%)", y_label="% of the HBM of these GPUs",
                        capacity="full_pct", capacity_label="HBM of these GPUs",
                        y_fmt="{:.0f}%".format),
            Line(x="seq_len", y=["weight_ms", "kv_ms"],
                 labels=["read the weights", "read the KV cache of the batch"],
                 title="One decode step (memory-bound lower bound): weight vs KV reads; "
                       "no KV line where the batch does not fit",
                 y_label="milliseconds per output token", log_y=True, y_fmt="{:,.4g}".format),
        ],
        readouts=[
            Readout("kv_per_token", "KV per token (KiB = 1,024 B)",
                    lambda b: f"{b / KiB:,.0f} KiB = {b:,} bytes"),
            Readout("kv_bytes", "KV cache of the batch (GB = 10^9 B, GiB = 2^30 B)", fmt_kv),
            Readout("tpot", "time per output token (a lower bound: full bandwidth), or whether "
                    "the batch does not fit"),
            Readout("users", "max concurrent requests of this length", _fmt_users),
            Readout("crossover_tokens", "KV reads equal weight reads at (context × batch)",
                    lambda n: f"{n:,.0f} tokens"),
        ],
    )
