"""Chapter 4's explorer: amortize a long prefill over queries, and what its chunks cost others."""

from __future__ import annotations

from ..amortize import keep_warm_gap, query_cost
from ..cost import kv_cache_bytes
from ..explorer import Dropdown, Explorer, Line, Readout, Slider
from ..scheduler import StepCost, worst_short_ttft
from ..units import GB, fmt_seconds, fmt_tokens

MODEL, GPU = "llama-3.3-70b", "h100-sxm"
QUESTION, ANSWER, SHORT = 200, 1000, 2048  # tokens: a question, its answer, a short prompt
CHUNKS = (512, 2048, 4096, 8192, 16384, 0)  # 0: no chunking
# the chapter's cases are on the grid: 20 queries, a 128,000-token contract
QUERIES = (1, 2, 5, 10, 20, 50, 100)
CONTEXTS = (8_192, 16_384, 32_768, 65_536, 128_000, 262_144, 524_288, 1_000_000)


class LogValues(Slider):
    """A slider over the given values, drawn on a log axis (for grids that must hold the
    chapters' cases, such as 128,000 tokens, which no power-of-two grid does)."""

    log = True


def _fmt_chunk(c: int) -> str:
    return fmt_tokens(c) if c else "none"


def _gpu_s(s: float) -> str:
    return f"{s:,.1f} GPU-s"


def amortize_point(queries: int, seq_len: int, chunk: int, decode_batch: int,
                   cascade: str) -> dict[str, float]:
    """Per-query GPU-seconds of `queries` questions about one `seq_len`-token document, its KV
    and keep-warm gap, and on 4 GPUs the longest step of its prefill (every co-running decode's
    worst gap) and a short prompt's worst TTFT behind it under short-first."""
    c = query_cost(MODEL, GPU, seq_len, QUESTION, ANSWER, queries, decode_batch=decode_batch,
                   cascade=cascade == "on")
    step = StepCost(MODEL, GPU, n_gpus=4)
    size = min(chunk or seq_len, seq_len)
    return {
        "per_query": c.per_query, "prefill_share": c.prefill / queries, "marginal": c.marginal,
        "without_cache": c.without_cache,
        "kv_bf16_gb": kv_cache_bytes(MODEL, seq_len) / GB,
        "kv_fp8_gb": kv_cache_bytes(MODEL, seq_len, kv_dtype="fp8") / GB,
        "warm_bf16": keep_warm_gap(MODEL, GPU, seq_len),
        "warm_fp8": keep_warm_gap(MODEL, GPU, seq_len, kv_dtype="fp8"),
        "longest_step": step.compute(seq_len - size, size),
        "longest_step_none": step.compute(0, seq_len),
        "short_ttft": worst_short_ttft(step, seq_len, SHORT, chunk or None),
    }


def amortize_explorer() -> Explorer:
    """Queries per document, context, chunk size and decode batching: per-query cost, KV
    residency, and the stall a chunk puts on everyone else."""
    return Explorer(
        compute=amortize_point,
        title=f"Amortize and bound a long prefill ({MODEL}, H100s, 40% MFU)",
        controls=[
            LogValues("queries", "queries per document", QUERIES, fmt=str, default=20),
            LogValues("seq_len", "document (tokens)", CONTEXTS, fmt="{:,}".format,
                       default=128_000),
            Dropdown("chunk", "chunk (tokens per step)", CHUNKS, fmt=_fmt_chunk, default=4096),
            Dropdown("decode_batch", "answers decoded together", (1, 8, 32)),
            Dropdown("cascade", "shared document read once per step (cascade)", ("off", "on")),
        ],
        views=[
            Line(x="queries", y=["per_query", "prefill_share", "marginal"],
                 labels=["per query", "prefill / q", "marginal (question + answer)"],
                 title="Cost per query vs queries per document",
                 y_label="GPU-seconds per query (H100)", log_y=True),
            Line(x="seq_len", y=["longest_step", "longest_step_none"],
                 labels=["this chunk", "no chunking"],
                 title="Longest prefill step: every decode's worst gap (4 H100s)",
                 y_label="seconds", log_y=True, y_fmt=fmt_seconds),
        ],
        readouts=[
            Readout("per_query", "cost per query, document cached", _gpu_s),
            Readout("without_cache", "cost per query, re-prefilling every time", _gpu_s),
            Readout("kv_bf16_gb", "document KV held: bf16", "{:,.1f} GB".format),
            Readout("kv_fp8_gb", "document KV held: fp8", "{:,.1f} GB".format),
            Readout("warm_bf16", "keep it in HBM if the next question comes within (bf16)",
                    fmt_seconds),
            Readout("warm_fp8", "… within (fp8)", fmt_seconds),
            Readout("longest_step", "longest step with this chunk (a latency)", fmt_seconds),
            Readout("short_ttft", "a short prompt's worst TTFT, short-first", fmt_seconds),
        ],
    )
