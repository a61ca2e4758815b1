"""Chapter 1's explorer: where attention FLOPs catch up with the weight matmuls."""

from __future__ import annotations

from ..cost import crossover_seq_len
from ..explorer import Dropdown, Explorer, Readout, Slider, StackedBars
from ..models import MODELS
from .parts import context_slider, prefill_line, prefill_parts, prefill_readouts

CROSSOVER_GPU = "h100-sxm"


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
