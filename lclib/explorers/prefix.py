"""Chapter 4's explorer: amortize a long prefill over queries, and bound it with chunking."""

from __future__ import annotations

from ..amortize import keep_warm_gap, query_cost
from ..cost import kv_cache_bytes
from ..explorer import Dropdown, Explorer, Line, LogSlider, Readout
from ..scheduler import StepCost, worst_short_ttft
from ..units import GB, fmt_seconds, fmt_tokens
from .parts import context_slider

MODEL, GPU = "llama-3.3-70b", "h100-sxm"
QUESTION, ANSWER, SHORT = 200, 1000, 2048  # tokens: a question, its answer, a short prompt
CHUNKS = (2048, 4096, 8192, 16384, 0)  # 0: no chunking


def _fmt_chunk(c: int) -> str:
    return fmt_tokens(c) if c else "none"


def amortize_point(queries: int, seq_len: int, chunk: int, decode_batch: int) -> dict[str, float]:
    """Per-query GPU-seconds of `queries` questions about one `seq_len`-token document, its KV
    in bf16 and fp8, and the worst TTFT of a short prompt behind its prefill (4 GPUs)."""
    c = query_cost(MODEL, GPU, seq_len, QUESTION, ANSWER, queries, decode_batch=decode_batch)
    step = StepCost(MODEL, GPU, n_gpus=4)
    return {
        "per_query": c.per_query, "prefill_share": c.prefill / queries, "marginal": c.marginal,
        "without_cache": c.without_cache,
        "kv_bf16_gb": kv_cache_bytes(MODEL, seq_len) / GB,
        "kv_fp8_gb": kv_cache_bytes(MODEL, seq_len, kv_dtype="fp8") / GB,
        "warm_bf16": keep_warm_gap(MODEL, GPU, seq_len),
        "warm_fp8": keep_warm_gap(MODEL, GPU, seq_len, kv_dtype="fp8"),
        "short_ttft": worst_short_ttft(step, seq_len, SHORT, chunk or None),
        "short_ttft_none": worst_short_ttft(step, seq_len, SHORT, None),
    }


def amortize_explorer(steps: int = 15) -> Explorer:
    """Queries per document, context and chunk size: per-query cost, KV residency, short TTFT."""
    per = "GPU-seconds per query (H100)"
    return Explorer(
        compute=amortize_point,
        title=f"Amortize and bound a long prefill ({MODEL}, H100s, 40% MFU)",
        controls=[
            LogSlider("queries", "queries per document", 1, 100, steps=steps, fmt=str,
                      default=20),
            context_slider(steps),
            Dropdown("chunk", "chunk (tokens per step)", CHUNKS, fmt=_fmt_chunk, default=4096),
            Dropdown("decode_batch", "answers decoded together", (1, 8, 32)),
        ],
        views=[
            Line(x="queries", y=["per_query", "prefill_share", "marginal"],
                 labels=["per query", "prefill / q", "marginal (question + answer)"],
                 title="Per-query cost vs queries per document", y_label=per, log_y=True,
                 y_fmt=fmt_seconds),
            Line(x="seq_len", y=["short_ttft", "short_ttft_none"],
                 labels=["this chunk", "no chunking"],
                 title="Worst TTFT of a short prompt behind the long prefill (4 H100s)",
                 y_label="seconds", log_y=True, y_fmt=fmt_seconds),
        ],
        readouts=[
            Readout("per_query", "per-query cost (document cached)", fmt_seconds),
            Readout("without_cache", "per-query cost re-prefilling every time", fmt_seconds),
            Readout("kv_bf16_gb", "document KV held: bf16", "{:,.1f} GB".format),
            Readout("kv_fp8_gb", "document KV held: fp8", "{:,.1f} GB".format),
            Readout("warm_bf16", "keep it warm if the next question comes within (bf16)",
                    fmt_seconds),
            Readout("warm_fp8", "… within (fp8)", fmt_seconds),
            Readout("short_ttft", "worst short-prompt TTFT with this chunk", fmt_seconds),
        ],
    )
