"""Chapter 4: one document, many questions; reuse its KV cache or recompute it each time.

With TinyLM (the trained checkpoint on a CPU if it is there, else untrained weights; a wider
untrained TinyLM on a GPU): chunked prefill gives the same KV and logits as one-shot, answers
from a forked cache equal answers recomputed from scratch, and the time saved is measured.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch

from ..amortize import incremental_prefill_time
from ..models import ModelConfig
from ..tinylm import CONFIG, KVCache, TinyLM, load
from ..torch_env import synchronize
from .core import experiment

DEFAULT_SIZES = {"cpu": [512], "cuda": [16384]}
QUESTIONS, QUESTION_TOKENS, ANSWER_TOKENS, CHUNK = 20, 16, 4, 128
REPEATS = 3  # timed runs per size after a warm-up: one run of a shared machine can be far off
GPU_CONFIG = CONFIG.with_(name="tinylm-wide", hidden_size=1024, n_layers=8, n_heads=16,
                          n_kv_heads=4, intermediate_size=2816)


def tiny_model(device: torch.device) -> tuple[TinyLM, bool]:
    """(model, trained): the checkpoint on a CPU when it exists, else seeded untrained weights."""
    if device.type == "cpu":
        try:
            return load(), True
        except ValueError:
            pass
    torch.manual_seed(0)
    return TinyLM(CONFIG if device.type == "cpu" else GPU_CONFIG).to(device).eval(), False


@torch.no_grad()
def answer(model: TinyLM, cache: KVCache, question: torch.Tensor, n: int) -> torch.Tensor:
    """Greedy answer of `n` tokens to `question` [1, T], appended to (and growing) `cache`."""
    logits, _ = model.prefill(question, cache=cache)
    out = [logits[:, -1].argmax(-1)]
    for _ in range(n - 1):
        out.append(model.decode(out[-1], cache).argmax(-1))
    return torch.stack(out, dim=1)


def max_diff(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return max((x - y).abs().max().item() for x, y in zip(a, b, strict=True))


@torch.no_grad()
def chunked_matches(model: TinyLM, doc: torch.Tensor, chunk: int) -> dict[str, float]:
    """Largest differences between a one-shot and a chunked prefill: logits, then K and V."""
    one, c1 = model.prefill(doc)
    many, c2 = model.prefill(doc, chunk_size=chunk)
    kv = [torch.cat(c.keys[i] + c.values[i], dim=2) for c in (c1, c2)
          for i in range(c.n_layers)]
    half = len(kv) // 2
    return {"logits": (one - many).abs().max().item(), "kv": max_diff(kv[:half], kv[half:])}


def sync(device: torch.device) -> float:
    synchronize(device)
    return time.perf_counter()


@torch.no_grad()
def reuse_vs_recompute(model: TinyLM, doc: torch.Tensor, questions: list[torch.Tensor],
                       device: torch.device) -> dict[str, Any]:
    """Answer every question twice: re-prefilling the document, and from a forked cache."""
    t0 = sync(device)
    fresh = [answer(model, model.new_cache(), torch.cat([doc, q], dim=1), ANSWER_TOKENS)
             for q in questions]
    t1 = sync(device)
    _, doc_cache = model.prefill(doc)
    t2 = sync(device)
    reused = [answer(model, doc_cache.fork(), q, ANSWER_TOKENS) for q in questions]
    t3 = sync(device)
    return {"t_recompute": t1 - t0, "t_doc_prefill": t2 - t1, "t_reuse": t3 - t1,
            "answers_equal": all(torch.equal(a, b) for a, b in zip(fresh, reused, strict=True))}


def predicted_speedup(cfg: ModelConfig, doc_tokens: int, queries: int) -> float:
    """Prefill work only, from lclib's cost model: q full prompts over one document + q questions.
    (The GPU and MFU cancel in the ratio.)"""
    def t(cached: int, new: int) -> float:
        return incremental_prefill_time(cfg, "h100-sxm", cached, new)
    return queries * t(0, doc_tokens + QUESTION_TOKENS) / (
        t(0, doc_tokens) + queries * t(doc_tokens, QUESTION_TOKENS))


@experiment("prefix_reuse")
def prefix_reuse(device: torch.device, sizes: list[int] | None = None,
                 dtype: str = "fp32") -> dict[str, Any]:
    """For each document length in `sizes`: chunked = one-shot, and reuse vs recompute time
    (the median of REPEATS runs after a warm-up; every run's speed-up is in "speedups").

    `dtype` is accepted for the common interface; TinyLM runs in fp32.
    """
    model, trained = tiny_model(device)
    g = torch.Generator().manual_seed(0)
    vocab = model.config.vocab_size
    rows = []
    for n in sorted(sizes or DEFAULT_SIZES[device.type]):
        doc = torch.randint(vocab, (1, n), generator=g).to(device)
        questions = [torch.randint(vocab, (1, QUESTION_TOKENS), generator=g).to(device)
                     for _ in range(QUESTIONS)]
        same = chunked_matches(model, doc, min(CHUNK, n))
        reuse_vs_recompute(model, doc, questions[:1], device)  # warm-up
        runs = [reuse_vs_recompute(model, doc, questions, device) for _ in range(REPEATS)]
        speedups = sorted(r["t_recompute"] / r["t_reuse"] for r in runs)
        rows.append({"doc_tokens": n, "chunk": min(CHUNK, n), "chunked_logits_diff":
                     same["logits"], "chunked_kv_diff": same["kv"],
                     **{k: statistics.median(r[k] for r in runs)
                        for k in ("t_recompute", "t_doc_prefill", "t_reuse")},
                     "answers_equal": all(r["answers_equal"] for r in runs),
                     "speedup": statistics.median(speedups), "speedups": speedups,
                     "predicted_prefill_speedup": predicted_speedup(model.config, n, QUESTIONS)})
    return {"model": model.config.name, "trained": trained, "questions": QUESTIONS,
            "question_tokens": QUESTION_TOKENS, "answer_tokens": ANSWER_TOKENS, "dtype": "fp32",
            "rows": rows}

