"""The introduction's explorer: two walls, one knob (prefill compute and one request's memory)."""

from __future__ import annotations

from ..cost import cp_gpus_needed, kv_bytes_per_token, kv_cache_bytes, weight_bytes
from ..explorer import Dropdown, Explorer, Line, Readout, StackedBars
from ..hardware import GPUS, get_gpu
from ..models import MODELS
from ..units import GB, KiB
from .parts import (
    KV_DTYPES,
    TWO_WALLS_MFU,
    context_slider,
    fmt_kv,
    prefill_line,
    prefill_parts,
    prefill_readouts,
)


def two_walls_point(seq_len: int, model: str, gpu: str, kv_dtype: str) -> dict[str, float | int]:
    """One request of `seq_len` tokens: its prefill time on one GPU and the memory it needs.

    Prefill runs at `TWO_WALLS_MFU` of the GPU's dense bf16 peak; memory is the bf16 weights
    plus this request's KV cache in `kv_dtype`. Times in seconds, sizes in GB (10^9 bytes).
    """
    kv = kv_cache_bytes(model, seq_len, kv_dtype=kv_dtype)
    weights = weight_bytes(model)
    return {
        **prefill_parts(model, gpu, seq_len, 1, TWO_WALLS_MFU),
        "kv_bytes": kv,
        "kv_per_token": kv_bytes_per_token(model, kv_dtype),
        "kv_gb": kv / GB,
        "weights_gb": weights / GB,
        "need_gb": (weights + kv) / GB,
        "hbm_gb": get_gpu(gpu).hbm_bytes / GB,
        "gpus_needed": cp_gpus_needed(model, gpu, seq_len, kv_dtype=kv_dtype),
    }


def two_walls_explorer(steps: int = 21) -> Explorer:
    """'Two walls, one knob': drag the context length and watch prefill compute go quadratic
    while one request's KV cache outgrows a GPU's memory."""
    gb = "GB (10^9 bytes)"
    return Explorer(
        compute=two_walls_point,
        title="Two walls, one knob: prefill time and memory of one long request",
        controls=[
            context_slider(steps),
            Dropdown("model", "model", list(MODELS)),
            Dropdown("gpu", "GPU", list(GPUS), default="h100-sxm"),
            Dropdown("kv_dtype", "KV dtype", KV_DTYPES),
        ],
        views=[
            prefill_line(f"Prefill time on one GPU at {TWO_WALLS_MFU:.0%} MFU (bf16 peak)"),
            Line(x="seq_len", y=["need_gb", "kv_gb"], labels=["weights + KV", "KV cache"],
                 title="Memory of one request vs context", y_label=f"memory, {gb}", log_y=True,
                 capacity="hbm_gb", capacity_label="one GPU's HBM"),
            StackedBars(x="kv_dtype", y=["weights_gb", "kv_gb"],
                        labels=["weights (bf16)", "KV cache of this request"],
                        title="Weights + KV at this context", y_label=gb,
                        capacity="hbm_gb", capacity_label="one GPU's HBM", y_fmt="{:,.0f}".format),
        ],
        readouts=[
            *prefill_readouts(f"1 GPU, {TWO_WALLS_MFU:.0%} MFU"),
            Readout("kv_bytes", "KV cache of this request (GB = 10^9 B, GiB = 2^30 B)", fmt_kv),
            Readout("kv_per_token", "KV per token (KiB = 1,024 B)",
                    lambda b: f"{b / KiB:,.0f} KiB = {b:,} bytes"),
            Readout("gpus_needed", "GPUs of this type to hold weights + this KV",
                    lambda n: f"{n} GPU{'s' if n > 1 else ''} (ignoring activations)"),
        ],
    )
