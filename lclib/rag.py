"""Long context or retrieval? The cost of each per query, and a retriever in front of TinyLM.

The cost side (torch-free): a query over a document of D tokens either reads the whole document
(long context), or the k chunks of c tokens a retriever returns (RAG), or a retrieved chunk and
everything after it (the hybrid: retrieve, then read a long context). Prefill tokens, KV held and
time to first token follow from chapter 1's and chapter 2's formulas; the retriever's own search
time is left out.

The measured side (`evaluate`, needs torch): TinyLM answers single-needle and variable-tracking
questions from the full context, from the chunks a lexical retriever picked, and from the hybrid.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .cost import GPULike, ModelLike, decode_step_time, kv_cache_bytes, prefill_time
from .units import positive_int

MODES = ("long context", "rag", "hybrid")


@dataclass(frozen=True)
class QueryCost:
    """One query's cost under one mode."""

    mode: str
    prefill_tokens: int
    kv_bytes: int
    ttft_s: float
    decode_step_s: float


def query_cost(model: ModelLike, gpu: GPULike, doc_tokens: int, mode: str = "rag", k: int = 8,
               chunk: int = 512, question_tokens: int = 64, hybrid_tokens: int | None = None,
               n_gpus: int = 1, mfu: float = 0.4) -> QueryCost:
    """Prefill tokens, KV held, TTFT and decode step of one query under `mode`.

    rag reads k·chunk tokens; the hybrid reads `hybrid_tokens` (default a quarter of the
    document) after retrieving where to start; long context reads the whole document.
    """
    doc_tokens, k, chunk = (positive_int(n, v) for n, v in
                            (("doc_tokens", doc_tokens), ("k", k), ("chunk", chunk)))
    read = {"long context": doc_tokens, "rag": min(doc_tokens, k * chunk),
            "hybrid": min(doc_tokens, hybrid_tokens or max(1, doc_tokens // 4))}
    if mode not in read:
        raise ValueError(f"unknown mode {mode!r}; pass one of {MODES}")
    tokens = read[mode] + positive_int("question_tokens", question_tokens)
    return QueryCost(mode, tokens, kv_cache_bytes(model, tokens),
                     prefill_time(model, gpu, tokens, n_gpus=n_gpus, mfu=mfu),
                     decode_step_time(model, gpu, tokens, n_gpus=n_gpus))


# --- the miniature: a lexical retriever in front of TinyLM ----------------------------------------


def chunks(tokens: Sequence[int], size: int) -> list[list[int]]:
    """`tokens` cut into consecutive chunks of `size` (the last may be shorter)."""
    size = positive_int("size", size)
    return [list(tokens[i:i + size]) for i in range(0, len(tokens), size)]


def retrieve(context: Sequence[int], question: Sequence[int], size: int, k: int) -> list[int]:
    """Indices (in document order) of the `k` chunks sharing the most tokens with the question.

    Lexical matching on the question's content tokens (BM25's idea without the weights): a
    chunk scores the number of its tokens that occur in the question; ties go to earlier chunks.
    """
    from .tinylm import tasks

    wanted = {t for t in question if t >= tasks.KEYS.start}
    parts = chunks(context, size)
    score = [sum(t in wanted for t in part) for part in parts]
    best = sorted(range(len(parts)), key=lambda i: (-score[i], i))[:positive_int("k", k)]
    return sorted(best)


def reader_context(context: Sequence[int], question: Sequence[int], mode: str, size: int,
                   k: int) -> list[int]:
    """What the model reads before the question: all of `context`, the retrieved chunks after a
    BOS, or (hybrid) everything from the best retrieved chunk on."""
    from .tinylm import tasks

    if mode == "long context":
        return list(context)
    picked = retrieve(context, question, size, k)
    parts = chunks(context, size)
    if mode == "rag":
        body = [t for i in picked for t in parts[i]]
    elif mode == "hybrid":
        first = retrieve(context, question, size, 1)[0]
        body = list(context[first * size:])
    else:
        raise ValueError(f"unknown mode {mode!r}; pass one of {MODES}")
    return body if body[:1] == [tasks.BOS] else [tasks.BOS, *body]


def evaluate(model: Any, task: str, length: int = 256, n: int = 64, size: int = 16, k: int = 4,
             seed: int = 11) -> dict[str, Any]:
    """Per-prompt outcomes ("1"/"0", same prompts in every mode) and tokens read, per mode."""
    import torch

    from .tinylm import compress, tasks

    rng, gen = random.Random(seed), tasks.get_task(task)
    hits = {m: "" for m in MODES}
    read = {m: 0 for m in MODES}
    for _ in range(n):
        sample = gen(length, rng.random(), rng)
        ctx, tail, tail_mask = compress.split([sample])
        question = tail[0, :compress.question_length(tail_mask)].tolist()
        for mode in MODES:
            body = reader_context(ctx[0].tolist(), question, mode, size, k)
            tokens = torch.tensor([body + tail[0].tolist()])
            mask = torch.cat([torch.zeros(1, len(body), dtype=torch.bool), tail_mask], 1)
            hits[mode] += "1" if bool(tasks.answer_correct(model, tokens, mask)[0]) else "0"
            read[mode] += len(body)
    return {"task": task, "length": length, "n": n, "chunk": size, "k": k, "hits": hits,
            "mean_tokens_read": {m: read[m] / n for m in MODES}}
