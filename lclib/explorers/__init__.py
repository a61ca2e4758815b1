"""The course's explorers, built on lclib's cost model (see `lclib.explorer` for the machinery).

Each explorer has a compute function (one grid point, plain numbers) and a builder that wires it
to controls, charts and readouts. Display it in a notebook or a book page as ``two_walls()``;
``two_walls().widget()`` gives the ipywidgets version for a live kernel.
"""

from __future__ import annotations

from ..cost import (
    cp_gpus_needed,
    crossover_seq_len,
    kv_bytes_per_token,
    kv_cache_bytes,
    prefill_flops,
    prefill_time,
    weight_bytes,
)
from ..explorer import Dropdown, Explorer, Line, LogSlider, Readout, Slider, StackedBars
from ..hardware import GPUS, get_gpu
from ..models import MODELS
from ..units import GB, GiB, KiB

TWO_WALLS_MFU = 0.4
KV_DTYPES = ("bf16", "fp8")
CROSSOVER_GPU = "h100-sxm"


def fmt_tokens(n: int) -> str:
    """A token count the way context windows are named: '128K' = 131,072, '1M' = 2**20."""
    for unit, suffix in ((2**20, "M"), (2**10, "K")):
        if n >= unit and n % unit == 0:
            return f"{n // unit:,}{suffix}"
    return f"{n:,}"


def fmt_seconds(s: float) -> str:
    """Seconds with an SI prefix: '35.2 µs', '4.1 ms', '2.5 s', '1,234 s'."""
    if s >= 1000:
        return f"{s:,.0f} s"
    for factor, unit in ((1, "s"), (1e-3, "ms"), (1e-6, "µs")):
        if s >= factor:
            return f"{s / factor:.3g} {unit}"
    return f"{s / 1e-9:.3g} ns"


def _fmt_prefill(s: float) -> str:
    return fmt_seconds(s) + (f" ≈ {s / 60:,.1f} min" if s >= 120 else "")


def _fmt_kv(n_bytes: int) -> str:
    return f"{n_bytes / GB:,.2f} GB = {n_bytes / GiB:,.2f} GiB"


def context_slider(steps: int) -> LogSlider:
    return LogSlider("seq_len", "context (tokens; K = 1,024)", 2**10, 2**20, steps=steps,
                     snap=2**10, fmt=fmt_tokens, default=2**17)


def prefill_parts(model: str, gpu: str, seq_len: int, n_gpus: int, mfu: float) -> dict[str, float]:
    """Prefill seconds on `n_gpus` at `mfu` of the dense bf16 peak: linear, attention, total."""
    flops = prefill_flops(model, seq_len)
    rate = n_gpus * get_gpu(gpu).peak_flops("bf16") * mfu
    return {"prefill_linear_s": flops.linear / rate, "prefill_attn_s": flops.attention / rate,
            "prefill_s": prefill_time(model, gpu, seq_len, n_gpus=n_gpus, mfu=mfu),
            "attn_share": flops.attention_share}


def prefill_line(title: str) -> Line:
    return Line(x="seq_len", y=["prefill_linear_s", "prefill_attn_s", "prefill_s"],
                labels=["linear (weight matmuls, ∝ S)", "attention (∝ S²)", "total"],
                title=title, y_label="prefill time (seconds)", log_y=True, y_fmt=fmt_seconds)


def prefill_readouts(where: str) -> list[Readout]:
    return [Readout("prefill_s", f"prefill time ({where})", _fmt_prefill),
            Readout("attn_share", "attention share of prefill FLOPs", "{:.1%}".format)]


def crossover_point(seq_len: int, model: str, n_gpus: int, mfu: float) -> dict[str, float]:
    """Prefill of `seq_len` tokens on `n_gpus` H100s split into linear and attention parts."""
    parts = prefill_parts(model, CROSSOVER_GPU, seq_len, n_gpus, mfu)
    share = parts["attn_share"]
    return {**parts, "linear_pct": 100 * (1 - share), "attn_pct": 100 * share,
            "crossover": crossover_seq_len(model), "attn_over_linear": share / (1 - share)}


def crossover_explorer(steps: int = 21) -> Explorer:
    """Where attention FLOPs catch up with the weight matmuls: the seq² crossover of chapter 1."""
    return Explorer(
        compute=crossover_point,
        title=f"The seq² crossover: prefill time on {CROSSOVER_GPU} GPUs, linear vs attention",
        controls=[context_slider(steps), Dropdown("model", "model", list(MODELS)),
                  Slider("n_gpus", "GPUs", [1, 2, 4, 8], fmt=str, default=1),
                  Slider("mfu", "MFU", [0.3, 0.4, 0.5], fmt="{:.0%}".format, default=0.4)],
        views=[prefill_line("Prefill time vs context: the curves meet at the crossover"),
               StackedBars(y=["linear_pct", "attn_pct"], labels=["linear", "attention"],
                           title="Split of prefill time at this context",
                           y_label="% of prefill time", x_label="this context",
                           y_fmt="{:.0f}%".format)],
        readouts=[*prefill_readouts("these GPUs and MFU"),
                  Readout("crossover", "crossover S* (causal, attention = linear FLOPs)",
                          lambda s: f"{s:,.0f} tokens"),
                  Readout("attn_over_linear", "attention / linear FLOPs (= S / S*)",
                          "{:.2f}".format)],
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


def two_walls(steps: int = 21) -> Explorer:
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
            Readout("kv_bytes", "KV cache of this request (GB = 10^9 B, GiB = 2^30 B)", _fmt_kv),
            Readout("kv_per_token", "KV per token (KiB = 1,024 B)",
                    lambda b: f"{b / KiB:,.0f} KiB = {b:,} bytes"),
            Readout("gpus_needed", "GPUs of this type to hold weights + this KV",
                    lambda n: f"{n} GPU{'s' if n > 1 else ''} (ignoring activations)"),
        ],
    )
