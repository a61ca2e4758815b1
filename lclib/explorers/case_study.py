"""Chapter 8's explorer (the case study's interactive): both walls close as the context grows,
and the per-query cost collapses as queries per document grow."""

from __future__ import annotations

from ..amortize import query_cost
from ..cost import kv_cache_bytes, weight_bytes
from ..explorer import Dropdown, Explorer, Line, Readout
from ..hardware import get_gpu
from ..recipe import feasible_layouts, gpus_for_ttft
from ..units import GB, fmt_seconds
from .parts import fmt_prefill, prefill_parts
from .prefix import CONTEXTS, QUERIES, LogValues

CASE_MODEL, CASE_GPU, CASE_MFU = "llama-3.3-70b", "h100-sxm", 0.4
TTFT_BUDGET_S = 20.0
QUESTION_TOKENS, ANSWER_TOKENS = 200, 1000


def case_point(seq_len: int, queries: int, kv_dtype: str,
               decode_batch: int = 1) -> dict[str, float | int]:
    """One document of `seq_len` tokens on H100s: prefill on one GPU, memory of the request,
    GPUs for memory (the fewest of a layout an engine can run) and for the TTFT budget, and the
    per-query cost over `queries` queries with `decode_batch` answers decoded together."""
    kv, weights = kv_cache_bytes(CASE_MODEL, seq_len, kv_dtype=kv_dtype), weight_bytes(CASE_MODEL)
    cost = query_cost(CASE_MODEL, CASE_GPU, seq_len, QUESTION_TOKENS, ANSWER_TOKENS, queries,
                      CASE_MFU, decode_batch, kv_dtype)
    layouts = feasible_layouts(CASE_MODEL, CASE_GPU, seq_len, kv_dtype=kv_dtype)
    return {
        **prefill_parts(CASE_MODEL, CASE_GPU, seq_len, 1, CASE_MFU),
        "budget_s": TTFT_BUDGET_S,
        "need_gb": (weights + kv) / GB, "kv_gb": kv / GB,
        "hbm_gb": get_gpu(CASE_GPU).hbm_bytes / GB,
        "gpus_memory": min((lay.n_gpus for lay in layouts), default=0),
        "gpus_ttft": gpus_for_ttft(CASE_MODEL, CASE_GPU, seq_len, TTFT_BUDGET_S, CASE_MFU,
                                   kv_dtype) or 0,
        "per_query_s": cost.per_query, "without_cache_s": cost.without_cache,
        "marginal_s": cost.marginal,
    }


def _gpu_s(s: float) -> str:
    return f"{s:,.1f} GPU-s"


def _gpus(n: int) -> str:
    return f"{n:,} GPU{'s' if n != 1 else ''}" if n else "more than the search limit"


def case_study_explorer() -> Explorer:
    """Drag the context: prefill goes super-linear and the KV outgrows a GPU. Drag the queries
    per document: the one-time prefill spreads and the per-query cost falls to the marginal."""
    return Explorer(
        compute=case_point,
        title=f"Long-context document AI: {CASE_MODEL} on {CASE_GPU}, {TTFT_BUDGET_S:.0f} s TTFT",
        controls=[LogValues("seq_len", "document (tokens)", CONTEXTS, fmt="{:,}".format,
                            default=128_000),
                  LogValues("queries", "queries per document", QUERIES, fmt=str, default=20),
                  Dropdown("kv_dtype", "KV dtype", ("bf16", "fp8")),
                  Dropdown("decode_batch", "answers decoded together", (8, 1, 32))],
        views=[
            Line(x="seq_len", y=["prefill_linear_s", "prefill_attn_s", "prefill_s"],
                 labels=["linear (∝ S)", "attention (∝ S²)", "total"],
                 title=f"Prefill on one GPU at {CASE_MFU:.0%} MFU vs the TTFT budget",
                 y_label="seconds", log_y=True, y_fmt=fmt_seconds, capacity="budget_s",
                 capacity_label=f"{TTFT_BUDGET_S:.0f} s TTFT budget"),
            Line(x="seq_len", y=["need_gb", "kv_gb"], labels=["weights (bf16) + KV", "KV"],
                 title="Memory of one request vs one GPU", y_label="GB (10^9 bytes)",
                 log_y=True, capacity="hbm_gb", capacity_label="one GPU's HBM"),
            Line(x="queries", y=["without_cache_s", "per_query_s", "marginal_s"],
                 labels=["re-prefill every query", "prefix cached (amortized)",
                         "marginal (question + answer)"],
                 title="Cost per query, GPU-seconds", y_label="GPU-seconds", log_y=True,
                 y_fmt=_gpu_s),
        ],
        readouts=[
            Readout("prefill_s", "prefill on one GPU", fmt_prefill),
            Readout("gpus_memory", "GPUs to hold weights + this KV (TP 1, 2, 4 or 8 × CP)",
                    _gpus),
            Readout("gpus_ttft", f"GPUs for a {TTFT_BUDGET_S:.0f} s first-query TTFT", _gpus),
            Readout("per_query_s", "amortized cost per query", _gpu_s),
        ],
    )
