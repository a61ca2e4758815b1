"""Amortizing a long prefill over many queries: per-query cost, break-even, KV residency.

One document of S tokens is prefilled once; each of q queries then pays only its marginal
cost: its question's prefill on top of the cached document, and its answer's decode.

    per-query cost = prefill(S) / q + marginal

Costs are in GPU-seconds (seconds on `n_gpus` GPUs times `n_gpus`): lclib's cost model splits
work evenly over GPUs, so this unit does not depend on how many GPUs share a request. A cost is
not a latency: time to first token (TTFT) is seconds on the GPUs serving the request, and it
excludes the answer's decode. `ttft` gives it; amortizing never shortens the first query's.
Every time comes from `lclib.cost` (`prefill_time`, `decode_step_time`, `context_switch_time`);
`derive_amortization()` gives the sympy twins, in the symbols of the notation appendix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import sympy as sp

from .cost import (
    GPULike,
    ModelLike,
    context_switch_time,
    decode_step_time,
    kv_cache_bytes,
    prefill_time,
)
from .hardware import get_gpu
from .units import GB, positive_float, positive_int

# sympy symbols of the amortization model (notation appendix): GPU-seconds of the document's
# prefill and of one query's marginal work, queries per document, a cost budget per query
C_pre, C_m, q, C_max = sp.symbols(r"C_{\mathrm{pre}} C_{\mathrm{m}} q C_{\max}", positive=True)
M_kv, M_hbm = sp.symbols(r"M_{\mathrm{KV}} M_{\mathrm{HBM}}", positive=True)  # bytes


def per_query_cost(prefill_s: float, queries: int, marginal_s: float) -> float:
    """prefill / queries + marginal: the one-time prefill shared by `queries` queries."""
    prefill_s = positive_float("prefill_s", prefill_s)
    queries = positive_int("queries", queries)
    if not marginal_s >= 0:
        raise ValueError(f"marginal_s must be >= 0 seconds, got {marginal_s!r}")
    return prefill_s / queries + marginal_s


def break_even_queries(prefill_s: float, marginal_s: float, budget_s: float) -> int:
    """Fewest queries whose per-query cost is within `budget_s` GPU-seconds (solve
    C_pre/q + C_m <= C_max for q). A cost budget, not a TTFT budget: see `ttft`."""
    budget_s = positive_float("budget_s", budget_s)
    if budget_s <= marginal_s:
        raise ValueError(f"no number of queries meets a budget of {budget_s} s when the marginal "
                         f"cost alone is {marginal_s} s; pass budget_s > marginal_s")
    exact = positive_float("prefill_s", prefill_s) / (budget_s - marginal_s)
    return max(1, math.ceil(exact * (1 - 1e-12)))  # guard against float noise at integers


def incremental_prefill_time(model: ModelLike, gpu: GPULike, cached: int, new: int,
                             n_gpus: int = 1, mfu: float = 0.4) -> float:
    """Seconds to prefill `new` tokens on top of `cached` tokens whose KV is already there.

    The new tokens run the weight matmuls and attend to all cached keys: the difference of two
    causal prefills, prefill(cached + new) - prefill(cached). `cached` = 0 is a plain prefill.
    """
    new = positive_int("new", new)
    if isinstance(cached, bool) or not isinstance(cached, int) or cached < 0:
        raise ValueError(f"cached must be a whole number of tokens >= 0, got {cached!r}")
    full = prefill_time(model, gpu, cached + new, n_gpus=n_gpus, mfu=mfu)
    return full - (prefill_time(model, gpu, cached, n_gpus=n_gpus, mfu=mfu) if cached else 0.0)


def decode_time(model: ModelLike, gpu: GPULike, context: int, tokens: int, batch: int = 1,
                n_gpus: int = 1, kv_dtype: str = "bf16", shared: int = 0) -> float:
    """Seconds to decode `tokens` tokens after `context` cached ones, `batch` requests at once.

    Each step reads the weights once and every request's KV; the step time grows linearly with
    the context, so the sum over steps is `tokens` times the mean of the first and last step.
    `shared`: the first `shared` tokens of the context are one prefix common to the batch, read
    once per step for all of them (cascade attention: vLLM V1, FlashInfer, Hydragen); 0 (the
    default) reads each request's copy, as plain paged attention does.
    """
    tokens, context = positive_int("tokens", tokens), positive_int("context", context)
    if isinstance(shared, bool) or not isinstance(shared, int) or not 0 <= shared <= context:
        raise ValueError(f"shared is the prefix common to the batch; pass 0 <= shared <= context "
                         f"({context}), got {shared!r}")

    def step(c: int) -> float:  # with a shared prefix: its bytes once, then each request's own
        if shared:
            return decode_step_time(model, gpu, shared + batch * (c - shared), 1, n_gpus,
                                    kv_dtype=kv_dtype)
        return decode_step_time(model, gpu, c, batch, n_gpus, kv_dtype=kv_dtype)

    return tokens * (step(context) + step(context + tokens - 1)) / 2


@dataclass(frozen=True)
class QueryCost:
    """GPU-seconds of a document's prefill and of one query's marginal work."""

    prefill: float  # the document, once
    question: float  # one question's tokens on top of the cached document
    answer: float  # one answer's decode, this request's share of each batched step
    queries: int

    @property
    def marginal(self) -> float:
        return self.question + self.answer

    @property
    def per_query(self) -> float:
        """Amortized cost of one query with the document cached."""
        return per_query_cost(self.prefill, self.queries, self.marginal)

    @property
    def without_cache(self) -> float:
        """Cost of one query that re-prefills the whole document."""
        return self.prefill + self.marginal


def query_cost(model: ModelLike, gpu: GPULike, doc_tokens: int, question_tokens: int,
               answer_tokens: int, queries: int, mfu: float = 0.4, decode_batch: int = 1,
               kv_dtype: str = "bf16", cascade: bool = False) -> QueryCost:
    """Per-query cost of `queries` questions about one cached `doc_tokens`-token document.

    Answers decode in batches of `decode_batch` requests at the same context; one request pays
    1/batch of each step. The weights are shared; each request reads its own copy of the
    document's KV unless `cascade` (the batch reads the shared document once per step).
    """
    batch = positive_int("decode_batch", decode_batch)
    context = doc_tokens + question_tokens
    answer = decode_time(model, gpu, context, answer_tokens, batch, kv_dtype=kv_dtype,
                         shared=doc_tokens if cascade else 0)
    return QueryCost(
        prefill=prefill_time(model, gpu, doc_tokens, mfu=mfu),
        question=incremental_prefill_time(model, gpu, doc_tokens, question_tokens, mfu=mfu),
        answer=answer / batch,
        queries=positive_int("queries", queries),
    )


def ttft(model: ModelLike, gpu: GPULike, doc_tokens: int, question_tokens: int, n_gpus: int,
         cached: bool, mfu: float = 0.4) -> float:
    """Seconds to the first token on `n_gpus` GPUs: the whole prompt's prefill for a fresh
    document, only the question's on top of a `cached` one. No decode is in it."""
    if cached:
        return incremental_prefill_time(model, gpu, doc_tokens, question_tokens, n_gpus, mfu)
    return prefill_time(model, gpu, doc_tokens + question_tokens, n_gpus=n_gpus, mfu=mfu)


def kv_residency(model: ModelLike, seq_len: int, seconds: float, kv_dtype: str = "bf16") -> float:
    """GB·s (GB = 10^9 bytes) of HBM that one cached sequence occupies for `seconds`."""
    if not seconds >= 0:
        raise ValueError(f"seconds must be >= 0, got {seconds!r}")
    return kv_cache_bytes(model, seq_len, kv_dtype=kv_dtype) / GB * seconds


def keep_warm_gap(model: ModelLike, gpu: GPULike, seq_len: int, kv_dtype: str = "bf16",
                  mfu: float = 0.4) -> float:
    """Longest gap between queries (s) for which holding the KV in HBM beats recomputing it.

    Both in GPU-seconds: holding occupies the fraction M_KV/M_HBM of a GPU for the gap;
    recomputing costs the prefill C_pre. Equal at gap = C_pre * M_HBM / M_KV.
    """
    held = kv_cache_bytes(model, seq_len, kv_dtype=kv_dtype) / get_gpu(gpu).hbm_bytes
    return prefill_time(model, gpu, seq_len, mfu=mfu) / held


@dataclass(frozen=True)
class Tier:
    """Where a document's KV waits between questions, and what the next question pays."""

    name: str
    ttft_s: float  # the follow-up question's time to first token on the serving GPUs
    gpu_s: float  # GPU-seconds of compute spent bringing the KV back
    hbm_bytes: int  # HBM the KV occupies while it waits


def kv_tiers(model: ModelLike, gpu: GPULike, doc_tokens: int, question_tokens: int,
             n_gpus: int, kv_dtype: str = "bf16", mfu: float = 0.4) -> list[Tier]:
    """Hold the KV in HBM, offload it to host memory (reload over one PCIe link, as LMCache and
    SGLang's HiCache do), or drop and recompute it: the follow-up question's TTFT and work."""
    kv = kv_cache_bytes(model, doc_tokens, kv_dtype=kv_dtype)
    question = ttft(model, gpu, doc_tokens, question_tokens, n_gpus, cached=True, mfu=mfu)
    reload = context_switch_time(model, gpu, doc_tokens, kv_dtype=kv_dtype)
    prefill = prefill_time(model, gpu, doc_tokens, mfu=mfu)
    return [Tier("HBM", question, 0.0, kv), Tier("host memory", reload + question, 0.0, 0),
            Tier("recompute", prefill / positive_int("n_gpus", n_gpus) + question, prefill, 0)]


def derive_amortization() -> dict[str, sp.Expr]:
    """The sympy twins: per-query cost, the break-even q (unrounded), the keep-warm gap."""
    cost = C_pre / q + C_m
    (q_star,) = sp.solve(sp.Eq(cost, C_max), q)
    return {"per_query": cost, "break_even": q_star, "keep_warm_gap": C_pre * M_hbm / M_kv}
