"""KV compression on lclib.tinylm: token policies and INT-n KV at equal budgets, paired.

For each task and needle depth, the same prompts go through every setup: the context is
prefilled once with full attention, then compressed to a budget (100/50/25/12.5% of its
tokens) by each token policy, or stored as INT8/INT4/INT2 with group scales; sliding-window
attention from the first token (`swa`) is the control for "evicted after a full prefill".
The record keeps every prompt's outcome per setup ("1" right, "0" wrong, prompts in the same
order everywhere), so any two setups can be compared with McNemar's test (`paired`).
The model also says whether it has attention sinks and whether its keys have outlier channels.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Any

import torch

from lclib import stats, tinylm
from lclib.tinylm import compress as K

from .core import experiment

BUDGETS = (1.0, 0.5, 0.25, 0.125)
DEPTHS = (0.0, 0.25, 0.5, 0.75, 1.0)
TOKEN_POLICIES = ("window", "sinks", "h2o", "snapkv", "snapkv-question")
# (bits, key axis, value axis): per token everywhere, KIVI's split, per channel everywhere
QUANT = tuple((bits, k, v) for bits in (8, 4, 2)
              for k, v in (("token", "token"), ("channel", "token"), ("channel", "channel")))
GROUP = 32


def quant_name(bits: int, key_axis: str, value_axis: str) -> str:
    return f"int{bits} K/{key_axis} V/{value_axis}"


def _batch_outcomes(model: tinylm.TinyLM, samples: list[tinylm.Sample]) -> dict[str, list[bool]]:
    """Every setup's per-prompt outcome on one batch of equal-shape samples."""
    ctx, tail, tail_mask = K.split(samples)
    past, probs = K.prefill(model, ctx)
    question = K.question_attention(model, past, tail, tail_mask)
    t = ctx.shape[1]
    out: dict[str, list[bool]] = {"full": K.answer_hits(model, past, tail, tail_mask).tolist()}
    tokens, mask = tinylm.tasks.batch(samples)
    for frac in BUDGETS[1:]:
        budget = max(1, round(frac * t))
        for policy in TOKEN_POLICIES:
            kept = K.select(past, probs, policy, budget, question)
            out[f"{policy}@{frac}"] = K.answer_hits(model, kept, tail, tail_mask).tolist()
        out[f"swa@{frac}"] = K.window_attention_hits(model, tokens, mask, budget).tolist()
    for bits, k_axis, v_axis in QUANT:
        q = K.quantize_past(past, bits, k_axis, v_axis, GROUP)
        out[quant_name(bits, k_axis, v_axis)] = K.answer_hits(model, q, tail, tail_mask).tolist()
    return out


def run_task(model: tinylm.TinyLM, task: str, length: int, n_per_depth: int, seed: int = 7,
             batch_size: int = 32) -> dict[str, Any]:
    """One task: outcome strings per setup, prompts ordered depth by depth."""
    rng, gen = random.Random(seed), tinylm.get_task(task)
    hits: dict[str, str] = {}
    for depth in DEPTHS:
        samples = [gen(length, depth, rng) for _ in range(n_per_depth)]
        for s in range(0, n_per_depth, batch_size):
            for name, outcome in _batch_outcomes(model, samples[s:s + batch_size]).items():
                hits[name] = hits.get(name, "") + "".join("1" if h else "0" for h in outcome)
    return {"context_tokens": int(K.split(samples[:1])[0].shape[1]), "hits": hits}


def model_facts(model: tinylm.TinyLM, length: int, n: int = 32, seed: int = 3) -> dict[str, Any]:
    """Attention sinks (BOS mass relative to uniform) and K/V channel outliers on filler."""
    rng = random.Random(seed)
    samples = [tinylm.get_task("single_needle")(length, 0.5, rng) for _ in range(n)]
    past, probs = K.prefill(model, K.split(samples)[0])
    return {"sink_mass_over_uniform": K.sink_mass(probs), "outliers": K.channel_outliers(past)}


@experiment("compression")
def compression(device: torch.device, sizes: list[int] | None = None, dtype: str = "fp32",
                n_samples: int = 64,
                tasks: tuple[str, ...] = tuple(tinylm.TASKS)) -> dict[str, Any]:
    """Every setup on every task at one length (`sizes[0]`, default the training length 256),
    `n_samples` prompts per depth; `dtype` is unused (the reference is fp32 K/V)."""
    model = tinylm.load().to(device).eval()
    length = (sizes or [model.config.max_position_embeddings])[0]
    t0 = time.perf_counter()
    record = {"length": length, "depths": list(DEPTHS), "budgets": list(BUDGETS),
              "n_per_depth": n_samples, "group": GROUP, "sinks": K.SINKS,
              "observation": K.OBSERVATION,
              "tasks": {task: run_task(model, task, length, n_samples) for task in tasks},
              **model_facts(model, length)}
    record["seconds"] = round(time.perf_counter() - t0, 1)
    return record


# --- reading a record ------------------------------------------------------------------------


def load_record(directory: str | Path = "data/measurements") -> dict[str, Any]:
    """The newest compression record under `directory`: the latest timestamped JSONL that
    `python -m lclib.bench compression` writes (its summary line), else compression-cpu.json."""
    folder = Path(directory)
    for path in sorted(folder.glob("compression-*.jsonl"), reverse=True):
        lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        summary = [x for x in lines if x.get("kind") == "summary" and "tasks" in x]
        if summary:
            head = next((x for x in lines if "provenance" in x), {})
            return {"provenance": head.get("provenance"), **summary[-1]}
    legacy = sorted(folder.glob("compression-*.json"))
    if not legacy:
        raise FileNotFoundError(f"no compression record under {folder}; run python -m lclib.bench "
                                "compression")
    return json.loads(legacy[-1].read_text())



def outcomes(hits: str) -> list[bool]:
    return [c == "1" for c in hits]


def accuracy(record: dict[str, Any], task: str, setup: str) -> float:
    h = outcomes(record["tasks"][task]["hits"][setup])
    return sum(h) / len(h)


def by_depth(record: dict[str, Any], task: str, setup: str) -> list[float]:
    """Accuracy at each depth of `record["depths"]`."""
    h, n = outcomes(record["tasks"][task]["hits"][setup]), record["n_per_depth"]
    return [sum(h[i:i + n]) / n for i in range(0, len(h), n)]


def paired(record: dict[str, Any], task: str, a: str, b: str = "full",
           depths: slice = slice(None)) -> dict[str, Any]:
    """McNemar of setup `a` against `b` on the same prompts (optionally a slice of depths),
    and the prompts a paired test would need to resolve the observed difference."""
    n = record["n_per_depth"]
    pick = range(len(record["depths"]))[depths]
    hits = record["tasks"][task]["hits"]

    def sub(setup: str) -> list[bool]:
        h = outcomes(hits[setup])
        return [x for d in pick for x in h[d * n:(d + 1) * n]]

    m = stats.mcnemar(sub(a), sub(b))
    discordant = (m.only_a + m.only_b) / m.n
    need = (stats.paired_prompts_needed(discordant, abs(m.diff)) if m.diff else None)
    return {"n": m.n, "acc_a": (m.both + m.only_a) / m.n, "acc_b": (m.both + m.only_b) / m.n,
            "diff": m.diff, "ci95": list(m.ci95), "p_value": m.p_value, "only_a": m.only_a,
            "only_b": m.only_b, "prompts_needed": need}
