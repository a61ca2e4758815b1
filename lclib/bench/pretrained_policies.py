"""Token policies on a real LM at equal budgets (chapter 7): which tokens each keeps, and whether
the answer survives.

Each needle prompt (`lclib.pretrained.needle_prompt`, chat template) but its last token is
prefilled once with eager attention; a hook on every layer turns the attention weights into
each policy's scores (`tinylm.compress.policy_scores`) as they are made, so the [H, T, T]
weights of 30 layers are never held at once. For each policy and budget the cache is cut to
the positions `compress.kept_positions` names, per layer and KV head; the prompt's last token
and the answer are then decoded greedily against what was kept, so every answer token is read
from the compressed cache. "full" keeps everything: the baseline, through the same code.

The model is SmolLM2-135M-Instruct from the dequantized Q4_1 GGUF (`lclib.pretrained.ORIGIN`).
"""

from __future__ import annotations

import time
from typing import Any

import torch
import torch.nn.functional as F

from .. import pretrained
from ..stats import mcnemar, paired_prompts_needed
from ..tinylm import compress
from .core import Run, experiment
from .pretrained import _header, _load, needle_set

POLICIES = ("full", "window", "sinks", "h2o", "snapkv")
# SnapKV's reference code (FasterDecoding/SnapKV, snapkv/monkeypatch/snapkv_utils.py,
# init_snapkv): observation window 32, pooling kernel 5, average pooling.
SNAPKV = {"observation": 32, "pool": 5, "pooling": "avg"}
# The answer's opening words follow the chat template, as RULER's `answer_prefix` does
# (NVIDIA/RULER, scripts/data/synthetic/constants.py), in the model's own phrasing: decoding
# then starts at the number. Decoding is this CPU run's largest cost.
ANSWER_PREFIX = "The secret number mentioned in the text is"
MAX_NEW = 8  # a space, 5 digits, a full stop and the end-of-turn token


def needle_span(tokenizer, ids: list[int], secret: int) -> tuple[int, int]:
    """[start, end) of the tokens that spell "The secret number is `secret`." in `ids`."""
    pieces = [tokenizer.decode([i]) for i in ids]
    text = "".join(pieces)
    start = text.find(f"The secret number is {secret}.")
    if start < 0:
        raise ValueError("the prompt holds no needle; build it with pretrained.needle_prompt")
    end = start + len(f"The secret number is {secret}.")
    ends, pos = [], 0
    for piece in pieces:
        pos += len(piece)
        ends.append(pos)
    first = next(i for i, e in enumerate(ends) if e > start)
    last = next(i for i, e in enumerate(ends) if e >= end)
    return first, last + 1


@torch.no_grad()
def prefill_scores(model, ids: list[int]) -> tuple[Any, dict[str, list[torch.Tensor]]]:
    """Full-attention prefill of `ids`: the cache and, per policy, each layer's scores
    [1, H_kv, T] (the hooks score each layer's attention weights as soon as they exist)."""
    n_kv = model.config.num_key_value_heads
    scores: dict[str, list[torch.Tensor]] = {p: [] for p in POLICIES}

    def hook(_module, _args, output):
        probs = output[1].float()
        for policy in POLICIES:
            kw = SNAPKV if policy == "snapkv" else {}
            scores[policy].append(compress.policy_scores(policy, probs, n_kv, **kw))
        return output[0], None  # drop the weights here: nothing downstream holds them

    handles = [layer.self_attn.register_forward_hook(hook) for layer in model.model.layers]
    try:
        out = model(torch.tensor([ids]), use_cache=True)
    finally:
        for h in handles:
            h.remove()
    return out.past_key_values, scores


def kept(scores: list[torch.Tensor], policy: str, budget: int) -> torch.Tensor:
    """Positions [layers, H_kv, budget] that `policy` keeps, per layer and KV head."""
    return torch.stack([compress.kept_positions(s, policy, budget)[0] for s in scores])


def pruned_cache(cache, positions: list[torch.Tensor]):
    """A cache whose batch row i holds `cache`'s entries at `positions[i]` [layers, H_kv, n_i],
    zero-padded to the longest row, and the [rows, n_max] mask of the real entries."""
    from transformers import DynamicCache

    n_max = max(p.shape[-1] for p in positions)

    layers = []
    for layer, entries in enumerate(cache.layers):
        layers.append(tuple(torch.cat([F.pad(compress.gather_kv(x, p[layer][None]),
                                             (0, 0, 0, n_max - p.shape[-1])) for p in positions])
                            for x in (entries.keys, entries.values)))
    mask = torch.stack([torch.arange(n_max) < p.shape[-1] for p in positions]).long()
    return DynamicCache(ddp_cache_data=layers), mask


@torch.no_grad()
def decode(model, cache, mask: torch.Tensor, last: int, position: int, eos: int,
           max_new: int = MAX_NEW) -> list[list[int]]:
    """Greedy tokens of each batch row after feeding token `last` at `position` against `cache`
    and its padding `mask` (a compressed row holds fewer entries than `position`: positions
    are given, not counted), each up to `eos`."""
    rows = mask.shape[0]
    tokens = torch.full((rows, 1), last)
    out: list[list[int]] = [[] for _ in range(rows)]
    done = [False] * rows
    for step in range(max_new):
        pos = torch.tensor([position + step])
        mask = torch.cat([mask, torch.ones(rows, 1, dtype=mask.dtype)], 1)
        logits = model(tokens, past_key_values=cache, attention_mask=mask,
                       position_ids=pos.expand(rows, 1), cache_position=pos).logits
        tokens = logits[:, -1].argmax(-1, keepdim=True)
        for i, t in enumerate(tokens[:, 0].tolist()):
            done[i] = done[i] or t == eos
            if not done[i]:
                out[i].append(t)
        if all(done):
            break
    return out


def kept_count(positions: torch.Tensor, length: int) -> list[int]:
    """How many (layer, KV head) pairs keep each of `length` positions."""
    return torch.bincount(positions.flatten(), minlength=length).tolist()


def run_prompt(model, tokenizer, case: dict[str, Any], keep: list[float],
               detail: bool) -> dict[str, Any]:
    """One needle prompt through every policy keeping each fraction `keep` of its tokens (and
    through the full cache); the setups decode together, one batch row each."""
    ids = pretrained.needle_prompt(tokenizer, case["seq_len"], case["depth"], case["secret"],
                                   case["seed"])
    ids += tokenizer.encode(ANSWER_PREFIX, add_special_tokens=False)
    context, last = ids[:-1], ids[-1]
    start, end = needle_span(tokenizer, context, case["secret"])
    t0 = time.perf_counter()
    cache, scores = prefill_scores(model, context)
    budgets = {f: round(f * len(context)) for f in keep}
    row: dict[str, Any] = {**case, "prompt_tokens": len(ids), "needle": [start, end],
                           "budget_tokens": {str(f): b for f, b in budgets.items()},
                           "prefill_s": time.perf_counter() - t0, "answer": {}, "found": {},
                           "needle_kept": {}}
    if detail:
        row["kept_count"] = {}
    setups = [("full", 1.0)] + [(p, f) for f in keep for p in POLICIES[1:]]
    positions = [kept(scores[p], p, budgets.get(f, len(context))) for p, f in setups]
    answers = decode(model, *pruned_cache(cache, positions), last, len(context),
                     tokenizer.eos_token_id)
    for (policy, frac), pos, answer in zip(setups, positions, answers, strict=True):
        key = "full" if policy == "full" else f"{policy}@{frac}"
        text = tokenizer.decode(answer, skip_special_tokens=True)
        counts = kept_count(pos, len(context))
        row["answer"][key] = text
        row["found"][key] = pretrained.found(text, case["secret"])
        row["needle_kept"][key] = sum(counts[start:end]) / (pos[..., 0].numel() * (end - start))
        if detail:
            row["kept_count"][key] = counts
    row["wall_s"] = time.perf_counter() - t0
    return row


def compare(rows: list[dict[str, Any]], a: str, b: str) -> dict[str, Any]:
    """McNemar of setup `a` against `b` on the same prompts, and the n that would resolve it."""
    x, y = [r["found"][a] for r in rows], [r["found"][b] for r in rows]
    test = mcnemar(x, y)
    discordant = (test.only_a + test.only_b) / test.n
    needed = paired_prompts_needed(discordant, abs(test.diff)) if test.diff else None
    return {**test._asdict(), "a": a, "b": b, "acc_a": sum(x) / test.n,
            "acc_b": sum(y) / test.n, "prompts_needed": needed}


@experiment("pretrained_policies")
def policies(device: torch.device, sizes: list[int] | None, dtype: str, run: Run,
             n: int | list[int] = 16, keep: tuple[float, ...] = (0.25, 0.5, 0.75),
             detail: int = 4, seed: int = 7, first: int = 0) -> dict:
    """`n` needle prompts per length in `sizes` (tokens), every policy keeping each fraction
    `keep` of the prompt; `detail` prompts per length, spread over the depths, also record how
    many (layer, head) pairs keep each position. Prompts stop when the time budget would not
    hold one more; `first` skips the cases before it (to split one set between processes)."""
    model, tokenizer, folder = _load()
    cases = needle_set(sizes or [1024], n, seed)
    rows: list[dict[str, Any]] = []
    for case in cases[first:]:
        if rows and run.left() < max(r["wall_s"] for r in rows):
            run.row({**case, "skipped": f"{run.left():.0f} s left of the budget"})
            continue
        rows.append(run.row(run_prompt(model, tokenizer, case, list(keep),
                                       _detailed(case, cases, detail))))
    lengths = sorted({r["seq_len"] for r in rows})
    paired = {str(length): _paired([r for r in rows if r["seq_len"] == length], keep)
              for length in lengths}
    return {**_header(folder), "policies": POLICIES, "keep": list(keep), "n": len(rows),
            "sinks": compress.SINKS, "snapkv": SNAPKV, "max_new_tokens": MAX_NEW,
            "answer_prefix": ANSWER_PREFIX,
            "seed": seed, "first": first, "paired": paired}


def _detailed(case: dict[str, Any], cases: list[dict[str, Any]], detail: int) -> bool:
    """Is `case` one of `detail` prompts of its length spread evenly over the depths?"""
    same = [c for c in cases if c["seq_len"] == case["seq_len"]]
    picks = {round((j + 0.5) * len(same) / detail - 0.5) for j in range(detail)}
    return same.index(case) in picks


def _paired(rows: list[dict[str, Any]], keep: tuple[float, ...]) -> dict[str, Any]:
    """Each policy against the full cache, and SnapKV against H2O, at each fraction kept."""
    out = {f"{p}@{f}": compare(rows, f"{p}@{f}", "full") for f in keep for p in POLICIES[1:]}
    out.update({f"snapkv@{f} vs h2o@{f}": compare(rows, f"snapkv@{f}", f"h2o@{f}")
                for f in keep})
    return out
