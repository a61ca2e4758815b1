"""Chapter 5's explorers: what FP8 K/V storage costs in accuracy, and what it buys in memory.

`outlier_explorer()` quantizes synthetic K/V with an outlier head (torch, at build time);
`fp8_capacity_explorer()` is pure cost model.
"""

from __future__ import annotations

import functools

from ..cost import cp_gpus_needed, decode_step_time, kv_cache_bytes, max_concurrency
from ..explorer import Dropdown, Explorer, Line, LogSlider, Readout, Slider
from ..fp8 import RECIPES, OutlierKV, outlier_damage, outlier_kv
from ..hardware import GPUS, get_gpu
from ..models import MODELS
from ..units import GB, fmt_seconds
from .parts import context_slider

MAGNITUDES = (1, 10, 100, 1_000, 10_000)  # the explorer's log slider: 1 to 10^4, one per decade
EXPLORER_FORMATS = ("e4m3", "e5m2", "int8")
CAPACITY_GPUS = (1, 2, 4, 8)


def _pct(x: float) -> str:
    return f"{x:.1%}"


@functools.lru_cache(maxsize=16)
def _outlier_kv(magnitude: float) -> OutlierKV:
    return outlier_kv(float(magnitude))


@functools.lru_cache(maxsize=256)
def damage_point(magnitude: float, fmt: str, recipe: str) -> dict[str, float]:
    """`outlier_damage` of the default synthetic K/V with one head `magnitude` times larger."""
    return outlier_damage(_outlier_kv(magnitude), fmt, recipe)


def outlier_explorer() -> Explorer:
    """Outlier magnitude x scaling recipe x format -> attention-output error and retrieval."""
    return Explorer(
        compute=damage_point,
        title="One outlier head: what each scaling recipe and format does to attention",
        controls=[LogSlider("magnitude", "outlier head is this many times larger",
                            MAGNITUDES[0], MAGNITUDES[-1], len(MAGNITUDES), fmt="{:,}×".format,
                            default=1_000),
                  Dropdown("fmt", "format", list(EXPLORER_FORMATS)),
                  Dropdown("recipe", "scales", list(RECIPES))],
        views=[Line(x="magnitude", y=["err_normal", "err_outlier"],
                    labels=["normal heads", "outlier head"], log_y=True, y_fmt=_pct,
                    title="Attention-output error (relative L2) vs outlier magnitude",
                    y_label="relative error of the output")],
        readouts=[Readout("err_normal", "output error, normal heads", _pct),
                  Readout("err_outlier", "output error, outlier head", _pct),
                  Readout("retrieval_normal", "needle found (top weight), normal heads", _pct),
                  Readout("retrieval_outlier", "needle found, outlier head", _pct)],
    )


def capacity_point(seq_len: int, model: str, gpu: str, n_gpus: int) -> dict[str, float | int]:
    """One request of `seq_len` tokens in bf16 vs fp8 KV: memory, decode step, concurrency."""
    out: dict[str, float | int] = {"hbm_gb": n_gpus * get_gpu(gpu).hbm_bytes / GB}
    for kv in ("bf16", "fp8"):
        out[f"kv_gb_{kv}"] = kv_cache_bytes(model, seq_len, kv_dtype=kv) / GB
        out[f"tpot_{kv}"] = decode_step_time(model, gpu, seq_len, n_gpus=n_gpus, kv_dtype=kv)
        out[f"users_{kv}"] = max_concurrency(model, gpu, seq_len, n_gpus, kv_dtype=kv)
        out[f"gpus_{kv}"] = cp_gpus_needed(model, gpu, seq_len, kv_dtype=kv)
    return out


def fp8_capacity_explorer(steps: int = 21) -> Explorer:
    """Context -> KV memory, decode time per token and concurrency, bf16 vs fp8 KV."""
    return Explorer(
        compute=capacity_point,
        title="FP8 KV: the memory wall halves (bf16 weights, batch 1 decode)",
        controls=[context_slider(steps), Dropdown("model", "model", list(MODELS)),
                  Dropdown("gpu", "GPU", list(GPUS), default="h100-sxm"),
                  Slider("n_gpus", "GPUs", CAPACITY_GPUS, fmt=str, default=8)],
        views=[Line(x="seq_len", y=["kv_gb_bf16", "kv_gb_fp8"], labels=["bf16 KV", "fp8 KV"],
                    title="KV cache of one request", y_label="GB (10^9 bytes)", log_y=True,
                    capacity="hbm_gb", capacity_label="HBM of these GPUs"),
               Line(x="seq_len", y=["tpot_bf16", "tpot_fp8"], labels=["bf16 KV", "fp8 KV"],
                    title="Memory-bound decode step (weights + KV read)",
                    y_label="seconds per token", log_y=True, y_fmt=fmt_seconds)],
        readouts=[Readout("users_bf16", "requests that fit, bf16 KV", str),
                  Readout("users_fp8", "requests that fit, fp8 KV", str),
                  Readout("gpus_bf16", "GPUs to hold one request, bf16 KV", str),
                  Readout("gpus_fp8", "GPUs to hold one request, fp8 KV", str),
                  Readout("tpot_fp8", "decode step, fp8 KV", fmt_seconds)],
    )
