"""Parts several explorers share: the context slider and the prefill-time line and readouts."""

from __future__ import annotations

from ..cost import prefill_flops, prefill_time
from ..explorer import Line, LogSlider, Readout
from ..hardware import get_gpu
from ..units import GB, GiB, fmt_seconds, fmt_tokens

TWO_WALLS_MFU = 0.4
KV_DTYPES = ("bf16", "fp8")


def fmt_prefill(s: float) -> str:
    return fmt_seconds(s) + (f" ≈ {s / 60:,.1f} min" if s >= 120 else "")


def fmt_kv(n_bytes: int) -> str:
    return f"{n_bytes / GB:,.2f} GB = {n_bytes / GiB:,.2f} GiB"


def context_slider(steps: int, lo: int = 2**10, hi: int = 2**20) -> LogSlider:
    return LogSlider("seq_len", "context (tokens; K = 1,024)", lo, hi, steps=steps,
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
    return [Readout("prefill_s", f"prefill time ({where})", fmt_prefill),
            Readout("attn_share", "attention share of prefill FLOPs", "{:.1%}".format)]
