"""Matplotlib figures computed from the cost model (matplotlib imported on use)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .cost import (
    GPULike,
    ModelLike,
    attention_roofline,
    crossover_seq_len,
    kv_cache_bytes,
    linear_roofline,
    prefill_flops,
    weight_bytes,
)
from .hardware import get_gpu
from .models import get_model
from .units import GB

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

TOKEN_TICKS = {2**10: "1K", 2**12: "4K", 2**14: "16K", 2**16: "64K", 2**18: "256K",
               2**20: "1M"}


def context_grid(lo: int = 1024, hi: int = 2**20, per_octave: int = 4) -> list[int]:
    """Context lengths from `lo` to `hi` spaced evenly on a log axis."""
    steps = per_octave * (hi.bit_length() - lo.bit_length())
    return sorted({round(lo * (hi / lo) ** (i / steps)) for i in range(steps + 1)})


def _token_axis(ax: Axes) -> None:
    """Log x axis of tokens with one label per factor of 4 (K = 1,024), no minor labels."""
    ax.set_xscale("log")
    ax.set_xticks(list(TOKEN_TICKS), list(TOKEN_TICKS.values()))
    ax.minorticks_off()
    ax.set_xlabel("context (tokens; K = 1,024)")
    ax.grid(True, which="major", alpha=0.3)


def two_walls_figure(model: ModelLike = "llama-3.3-70b", gpu: GPULike = "h100-sxm",
                     mfu: float = 0.4) -> Figure:
    """Left: prefill time, linear and seq^2 parts as lines, the crossover S* marked.
    Right: weights plus one request's KV against one GPU's memory and a node's."""
    import matplotlib.pyplot as plt

    m, g = get_model(model), get_gpu(gpu)
    seqs = context_grid()
    rate = g.peak_flops("bf16") * mfu
    flops = [prefill_flops(m, s) for s in seqs]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.2), layout="constrained")
    left.plot(seqs, [f.linear / rate for f in flops], label="linear (2·N per token)")
    left.plot(seqs, [f.attention / rate for f in flops], label="attention (∝ S²)")
    left.plot(seqs, [f.total / rate for f in flops], "k", lw=2, label="total")
    s_star = crossover_seq_len(m)
    left.axvline(s_star, color="gray", ls=":")
    left.annotate(f"S* = {s_star:,.0f}\ntokens: attention\n= linear", (s_star, 1),
                  xytext=(4, 0), textcoords="offset points", fontsize=8)
    left.set(yscale="log", ylabel=f"prefill time on one {g.name} (s)",
             title=f"Compute wall: {m.name}, {mfu:.0%} MFU")
    kv = [kv_cache_bytes(m, s) / GB for s in seqs]
    w = weight_bytes(m) / GB
    right.plot(seqs, [w + k for k in kv], "k", lw=2, label="weights + KV (bf16)")
    right.plot(seqs, kv, label="one request's KV (bf16)")
    right.axhline(w, color="C2", ls=":", label="weights (bf16)")
    right.axhline(g.hbm_bytes / GB, color="C3", ls="--", label=f"one {g.name}")
    right.axhline(8 * g.hbm_bytes / GB, color="C3", ls="-.", label="8 of them (a node)")
    right.set(yscale="log", ylabel="GB (10⁹ bytes)", title="Capacity wall")
    for ax in (left, right):
        _token_axis(ax)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, fontsize=8,
                  frameon=False)
    return fig


def roofline_figure(model: ModelLike = "llama-3.3-70b", gpu: GPULike = "h100-sxm",
                    context: int = 2**17) -> Figure:
    """The roofline: attainable FLOP/s against arithmetic intensity, with both walls (the
    bandwidth slope and the compute roof) and where prefill and decode kernels sit."""
    import matplotlib.pyplot as plt

    g = get_gpu(gpu)
    peak, ridge = g.peak_flops("bf16"), g.ridge_point("bf16")
    points = {
        "decode, linear, batch 1": linear_roofline(model, 1),
        "decode, linear, batch 64": linear_roofline(model, 64),
        "decode, attention (any batch)": attention_roofline(model, context, 1),
        "prefill, linear, 8K-token chunk": linear_roofline(model, 8192),
        f"prefill, attention, {context // 1024}K": attention_roofline(model, context),
    }
    xs = [0.5, 2e5]
    fig, ax = plt.subplots(figsize=(7.5, 4.4), layout="constrained")
    grid = [xs[0] * (xs[1] / xs[0]) ** (i / 200) for i in range(201)]
    ax.plot(grid, [min(peak, x * g.hbm_bandwidth) / 1e12 for x in grid], "k", lw=2,
            label=f"roof: min({peak / 1e12:,.0f} TFLOP/s, intensity × {g.hbm_bandwidth / 1e12:g}"
                  " TB/s)")
    ax.axvline(ridge, color="gray", ls=":")
    ax.annotate(f"ridge {ridge:,.0f} FLOP/B", (ridge, peak / 1e12 / 30), xytext=(4, 0),
                textcoords="offset points", fontsize=8)
    for i, (label, r) in enumerate(points.items()):
        ax.plot(r.intensity, min(peak, r.intensity * g.hbm_bandwidth) / 1e12, "o",
                color=f"C{i}", ms=8, label=f"{label}: {r.intensity:,.0f} FLOP/B ({r.bound(g)})")
    ax.set(xscale="log", yscale="log", xlabel="arithmetic intensity (FLOPs per HBM byte)",
           ylabel="attainable TFLOP/s (bf16)",
           title=f"Roofline of one {g.name}: {get_model(model).name}")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="lower right", fontsize=7.5)
    return fig
