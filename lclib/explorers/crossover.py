"""Chapter 1's explorer: where attention FLOPs catch up with the weight matmuls."""

from __future__ import annotations

from dataclasses import replace

from ..cost import crossover_seq_len, prefill_flops
from ..explorer import Dropdown, Explorer, Line, Readout, Slider
from ..hardware import get_gpu
from ..models import MODELS
from ..units import fmt_tokens
from .parts import context_slider, prefill_line, prefill_parts, prefill_readouts

CROSSOVER_GPU = "h100-sxm"
TTFT_BUDGET_S = 10.0  # the Hopper lecture's "budget ~10 s" for time to first token


def longest_within(model: str, n_gpus: int, mfu: float, seconds: float = TTFT_BUDGET_S) -> int:
    """The longest prompt (tokens, to 1,024) that `n_gpus` H100s at `mfu` prefill in `seconds`."""
    rate = n_gpus * get_gpu(CROSSOVER_GPU).peak_flops("bf16") * mfu
    lo, hi = 0, 2**24  # bisection on whole K (prefill time grows with length)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        fits = prefill_flops(model, 1024 * mid).total <= seconds * rate
        lo, hi = (mid, hi) if fits else (lo, mid)
    return 1024 * lo


def crossover_point(seq_len: int, model: str, n_gpus: int, mfu: float) -> dict[str, float]:
    """Prefill of `seq_len` tokens on `n_gpus` H100s split into linear and attention parts."""
    parts = prefill_parts(model, CROSSOVER_GPU, seq_len, n_gpus, mfu)
    share = parts["attn_share"]
    return {**parts, "ratio": share / (1 - share), "one": 1.0, "budget_s": TTFT_BUDGET_S,
            "crossover": crossover_seq_len(model), "within": longest_within(model, n_gpus, mfu)}


def crossover_explorer(steps: int = 21) -> Explorer:
    """Where attention FLOPs catch up with the weight matmuls: the seq² crossover of chapter 1."""
    return Explorer(
        compute=crossover_point,
        title=f"The seq² crossover: prefill time on {CROSSOVER_GPU} GPUs, linear vs attention",
        controls=[context_slider(steps), Dropdown("model", "model", list(MODELS)),
                  Slider("n_gpus", "GPUs", [1, 2, 4, 8], fmt=str, default=1),
                  Slider("mfu", "MFU", [0.3, 0.4, 0.5], fmt="{:.0%}".format, default=0.4)],
        views=[Line(x="seq_len", y=["ratio"], labels=["attention / linear FLOPs (= S / S*)"],
                    title="The crossover S*: attention FLOPs = linear FLOPs where the curve "
                          "crosses 1", y_label="attention / linear", log_y=True,
                    capacity="one", capacity_label="1: at S*", y_fmt="{:,.3g}".format),
               replace(prefill_line(f"Prefill time against a {TTFT_BUDGET_S:.0f} s budget: GPUs "
                                    "and MFU move the curves"),
                       capacity="budget_s", capacity_label=f"{TTFT_BUDGET_S:.0f} s budget")],
        readouts=[*prefill_readouts("these GPUs and MFU"),
                  Readout("within", f"longest prompt prefilled within {TTFT_BUDGET_S:.0f} s on "
                          "these GPUs at this MFU", fmt_tokens),
                  Readout("crossover", "crossover S* (a ratio of FLOPs: no GPU count or MFU "
                          "moves it)", lambda s: f"{s:,.0f} tokens"),
                  Readout("ratio", "attention / linear FLOPs at this context (= S / S*)",
                          "{:.2f}".format)],
    )
