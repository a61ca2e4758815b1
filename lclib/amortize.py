"""Amortizing a long prefill over many queries: per-query cost, break-even, KV residency.

One document of S tokens is prefilled once; each of q queries then pays only its marginal
cost: its question's prefill on top of the cached document, and its answer's decode.

    per-query cost = prefill(S) / q + marginal

Costs are in GPU-seconds (seconds on `n_gpus` GPUs times `n_gpus`): lclib's cost model splits
work evenly over GPUs, so this unit does not depend on how many GPUs share a request. Every time
comes from `lclib.cost` (`prefill_time`, `decode_step_time`); `symbolic()` gives the sympy twins.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import sympy as sp

from .cost import GPULike, ModelLike, decode_step_time, kv_cache_bytes, prefill_time
from .hardware import get_gpu
from .units import GB, positive_float, positive_int

# sympy symbols of the amortization model
P, M, q, T = sp.symbols("P M q T", positive=True)  # prefill, marginal, queries, budget


def per_query_cost(prefill_s: float, queries: int, marginal_s: float) -> float:
    """prefill / queries + marginal: the one-time prefill shared by `queries` queries."""
    prefill_s = positive_float("prefill_s", prefill_s)
    queries = positive_int("queries", queries)
    if not marginal_s >= 0:
        raise ValueError(f"marginal_s must be >= 0 seconds, got {marginal_s!r}")
    return prefill_s / queries + marginal_s


def break_even_queries(prefill_s: float, marginal_s: float, budget_s: float) -> int:
    """Fewest queries whose per-query cost is within `budget_s` (solve P/q + M <= T for q)."""
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
                n_gpus: int = 1, kv_dtype: str = "bf16") -> float:
    """Seconds to decode `tokens` tokens after `context` cached ones, `batch` requests at once.

    Each step reads the weights once and every request's KV; the step time grows linearly with
    the context, so the sum over steps is `tokens` times the mean of the first and last step.
    """
    tokens = positive_int("tokens", tokens)
    first, last = (decode_step_time(model, gpu, c, batch=batch, n_gpus=n_gpus, kv_dtype=kv_dtype)
                   for c in (positive_int("context", context), context + tokens - 1))
    return tokens * (first + last) / 2


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
               kv_dtype: str = "bf16") -> QueryCost:
    """Per-query cost of `queries` questions about one cached `doc_tokens`-token document.

    Answers decode in batches of `decode_batch` requests at the same context; one request pays
    1/batch of each step (the weights are shared, every request's KV read is its own).
    """
    batch = positive_int("decode_batch", decode_batch)
    context = doc_tokens + question_tokens
    return QueryCost(
        prefill=prefill_time(model, gpu, doc_tokens, mfu=mfu),
        question=incremental_prefill_time(model, gpu, doc_tokens, question_tokens, mfu=mfu),
        answer=decode_time(model, gpu, context, answer_tokens, batch, kv_dtype=kv_dtype) / batch,
        queries=positive_int("queries", queries),
    )


def kv_residency(model: ModelLike, seq_len: int, seconds: float, kv_dtype: str = "bf16") -> float:
    """GB·s (GB = 10^9 bytes) of HBM that one cached sequence occupies for `seconds`."""
    if not seconds >= 0:
        raise ValueError(f"seconds must be >= 0, got {seconds!r}")
    return kv_cache_bytes(model, seq_len, kv_dtype=kv_dtype) / GB * seconds


def keep_warm_gap(model: ModelLike, gpu: GPULike, seq_len: int, kv_dtype: str = "bf16",
                  mfu: float = 0.4) -> float:
    """Longest gap between queries (s) for which holding the KV beats recomputing it.

    Both in GPU-seconds: holding occupies the fraction KV/HBM of a GPU for the gap; recomputing
    costs the prefill. Equal at gap = prefill * HBM / KV.
    """
    held = kv_cache_bytes(model, seq_len, kv_dtype=kv_dtype) / get_gpu(gpu).hbm_bytes
    return prefill_time(model, gpu, seq_len, mfu=mfu) / held


def symbolic() -> dict[str, sp.Expr]:
    """The sympy twins: per-query cost, the break-even q (unrounded), the keep-warm gap."""
    kv, hbm = sp.symbols("KV HBM", positive=True)
    cost = P / q + M
    (q_star,) = sp.solve(sp.Eq(cost, T), q)
    return {"per_query": cost, "break_even": q_star, "keep_warm_gap": P * hbm / kv}
