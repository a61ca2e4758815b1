"""Matplotlib figures computed from the cost model (matplotlib imported on use)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .cost import GPULike, ModelLike, kv_cache_bytes, prefill_flops, weight_bytes
from .hardware import get_gpu
from .models import get_model
from .units import GB

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def context_grid(lo: int = 1024, hi: int = 2**20, per_octave: int = 4) -> list[int]:
    """Context lengths from `lo` to `hi` spaced evenly on a log axis."""
    steps = per_octave * (hi.bit_length() - lo.bit_length())
    return sorted({round(lo * (hi / lo) ** (i / steps)) for i in range(steps + 1)})


def two_walls_figure(model: ModelLike = "llama-3.3-70b", gpu: GPULike = "h100-sxm",
                     mfu: float = 0.4) -> Figure:
    """Left: prefill time split into linear and seq^2 parts. Right: one request's KV vs HBM."""
    import matplotlib.pyplot as plt

    m, g = get_model(model), get_gpu(gpu)
    seqs = context_grid()
    rate = g.peak_flops("bf16") * mfu
    flops = [prefill_flops(m, s) for s in seqs]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
    left.stackplot(seqs, [f.linear / rate for f in flops], [f.attention / rate for f in flops],
                   labels=["linear (2·N per token)", "attention (seq²)"], alpha=0.85)
    left.set(xscale="log", yscale="log", xlabel="context (tokens)", ylim=(0.1, None),
             ylabel=f"prefill time on one {g.name} (s)",
             title=f"Compute wall: {m.name}, {mfu:.0%} MFU")
    left.legend(loc="upper left")
    kv = [kv_cache_bytes(m, s) / GB for s in seqs]
    right.plot(seqs, kv, label="one request's KV (bf16)")
    right.axhline(g.hbm_bytes / GB, color="C3", ls="--", label=f"one {g.name}: HBM")
    right.axhline(weight_bytes(m) / GB, color="C2", ls=":", label="weights (bf16)")
    right.set(xscale="log", yscale="log", xlabel="context (tokens)",
              ylabel="GB (10⁹ bytes)", title="Capacity wall")
    right.legend(loc="upper left")
    for ax in (left, right):
        ax.grid(True, which="major", alpha=0.3)
    return fig
