"""KV compression on TinyLM's cache: token policies (window, sinks, H2O, SnapKV) and INT-n KV.

TinyLM's own forward hides its attention weights inside SDPA; the policies need them, and an
evicted cache holds fewer entries than its position count. So this module runs the same
weights explicitly (`run`, checked against `TinyLM.forward` in the tests): a context is
prefilled with full attention, its K/V are compressed (`select` / `quantize_past`), and the
question and answer are then read against what was kept, teacher-forced (`answer_hits`).

    past, probs = prefill(model, context)                # K/V per layer + attention weights
    kept = select(past, probs, "snapkv", budget=64)      # per KV head, by attention score
    hits = answer_hits(model, kept, tail, tail_mask)     # [B] exact match of every answer token
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..rope import rotate
from . import tasks
from .model import TinyLM

POLICIES = ("full", "window", "sinks", "h2o", "snapkv", "snapkv-question")
SINKS = 4  # StreamingLLM keeps 4 initial tokens (arXiv 2309.17453)
OBSERVATION = 8  # SnapKV's observation window at the end of the prompt (query-agnostic variant)
POOL = 5  # SnapKV pools scores over neighbours so a kept token keeps its context


@dataclass(frozen=True)
class Past:
    """Kept K/V per layer, each [B, H_kv, T_kept, D] with RoPE at the original positions, and
    the position the next token takes (`length`, unchanged by eviction)."""

    keys: list[Tensor]
    values: list[Tensor]
    length: int

    @property
    def kept(self) -> int:
        return self.keys[0].shape[2]


def _mask(q_pos: Tensor, k_pos: Tensor, window: int | None) -> Tensor:
    """[Tq, Tk] True where query position q may see key position k (causal, within window)."""
    ok = k_pos[None, :] <= q_pos[:, None]
    if window is not None:
        ok &= q_pos[:, None] - k_pos[None, :] < window
    return ok


@torch.no_grad()
def run(model: TinyLM, tokens: Tensor, past: Past | None = None,
        window: int | None = None) -> tuple[Tensor, Past, list[Tensor]]:
    """Logits [B, T, V] of `tokens` after `past`, the new K/V appended to it, and each layer's
    attention weights [B, H, T, T_past + T]. The new tokens see all of `past` (whatever was
    kept) and each other causally, within `window` tokens if given (sliding-window attention,
    used from an empty past)."""
    c = model.config
    b, t = tokens.shape
    start = past.length if past else 0
    cos, sin = model.rope(start, t, tokens.device)
    q_pos = torch.arange(start, start + t, device=tokens.device)
    new_mask = _mask(q_pos, q_pos, window)
    mask = new_mask if past is None else torch.cat(
        [torch.ones(t, past.kept, dtype=torch.bool, device=tokens.device), new_mask], dim=1)
    x = model.embed(tokens)
    keys, values, probs = [], [], []
    for i, block in enumerate(model.blocks):
        a, h = block.attn, block.attn_norm(x)
        q = rotate(a.q(h).view(b, t, c.n_heads, c.head_dim).transpose(1, 2), cos, sin)
        k = rotate(a.k(h).view(b, t, c.n_kv_heads, c.head_dim).transpose(1, 2), cos, sin)
        v = a.v(h).view(b, t, c.n_kv_heads, c.head_dim).transpose(1, 2)
        if past is not None:
            k, v = torch.cat([past.keys[i], k], 2), torch.cat([past.values[i], v], 2)
        keys.append(k)
        values.append(v)
        group = c.n_heads // c.n_kv_heads
        scores = q @ k.repeat_interleave(group, 1).transpose(-1, -2) / math.sqrt(c.head_dim)
        p = scores.masked_fill(~mask, float("-inf")).softmax(-1)
        probs.append(p)
        out = p @ v.repeat_interleave(group, 1)
        x = x + a.o(out.transpose(1, 2).reshape(b, t, -1))
        x = x + block.mlp(block.mlp_norm(x))
    return model.lm_head(model.norm(x)), Past(keys, values, start + t), probs


def prefill(model: TinyLM, context: Tensor) -> tuple[Past, list[Tensor]]:
    """Full-attention prefill of `context` [B, T]: its K/V and attention weights."""
    _, past, probs = run(model, context)
    return past, probs


def _per_kv_head(scores: Tensor, n_kv_heads: int) -> Tensor:
    """Sum query-head scores [B, H, T] over each GQA group -> [B, H_kv, T]."""
    b, h, t = scores.shape
    return scores.view(b, n_kv_heads, h // n_kv_heads, t).sum(2)


def policy_scores(policy: str, probs: Tensor, n_kv_heads: int,
                  question_probs: Tensor | None = None, observation: int = OBSERVATION,
                  pool: int = POOL, pooling: str = "max") -> Tensor:
    """Importance [B, H_kv, T] of each context token under `policy` (higher is kept first).

    probs: one layer's context attention [B, H, T, T]; question_probs: the question's
    attention over the context [B, H, Tq, T] (SnapKV when the question is known). SnapKV sums
    the last `observation` queries' attention and pools it over `pool` neighbours ("max" or
    "avg", the two options of SnapKV's reference code).
    """
    b, h, t, _ = probs.shape
    pos = torch.arange(t, dtype=probs.dtype).expand(b, n_kv_heads, t)
    recent = pos / t  # later tokens first, in [0, 1)
    if policy in ("full", "window"):
        return recent
    if policy == "sinks":
        return torch.where(pos < SINKS, 2.0, recent)
    if policy == "h2o":  # accumulated attention from every context query
        return _per_kv_head(probs.sum(2), n_kv_heads)
    if policy in ("snapkv", "snapkv-question"):
        if policy == "snapkv-question":
            if question_probs is None:
                raise ValueError("snapkv-question needs question_probs (the question's attention)")
            obs = question_probs.sum(2)
        else:
            obs = probs[:, :, -observation:].sum(2)
        if pooling not in ("max", "avg"):
            raise ValueError(f"pooling={pooling!r}; pass 'max' or 'avg'")
        pool_fn = F.max_pool1d if pooling == "max" else F.avg_pool1d
        pooled = pool_fn(obs, pool, stride=1, padding=pool // 2)
        score = _per_kv_head(pooled, n_kv_heads)
        return score if policy == "snapkv-question" else torch.where(
            pos >= t - observation, score.max() + 1, score)
    raise ValueError(f"unknown policy {policy!r}; pass one of {', '.join(POLICIES)}")


def kept_positions(score: Tensor, policy: str, budget: int) -> Tensor:
    """Positions [B, H_kv, budget] (ascending) that `policy` keeps, from its `score` [B, H_kv, T].

    H2O keeps half its budget as the most recent tokens and half as heavy hitters.
    """
    t = score.shape[-1]
    if not 1 <= budget <= t:
        raise ValueError(f"budget is tokens kept per head; pass 1 <= budget <= {t}")
    if policy == "h2o":
        recent = budget // 2
        score = torch.where(torch.arange(t) >= t - recent, score.max() + 1, score)
    return score.topk(budget, dim=-1).indices.sort(-1).values


def gather_kv(x: Tensor, idx: Tensor) -> Tensor:
    """Entries `idx` [B, H_kv, n] of `x` [B, H_kv, T, D] along the token axis."""
    return x.gather(2, idx[..., None].expand(-1, -1, -1, x.shape[-1]))


def select(past: Past, probs: list[Tensor], policy: str, budget: int,
           question_probs: list[Tensor] | None = None) -> Past:
    """Keep `budget` context tokens per layer and KV head, chosen by `policy`."""
    keys, values = [], []
    for i, (k, v) in enumerate(zip(past.keys, past.values, strict=True)):
        qp = question_probs[i] if question_probs is not None else None
        idx = kept_positions(policy_scores(policy, probs[i], k.shape[1], qp), policy, budget)
        keys.append(gather_kv(k, idx))
        values.append(gather_kv(v, idx))
    return Past(keys, values, past.length)


# --- INT-n KV with group scales ------------------------------------------------------------


def quantize(x: Tensor, bits: int, axis: str = "token", group: int = 32) -> Tensor:
    """`x` [B, H, T, D] stored as `bits`-bit integers with an asymmetric (min, scale) per group
    of `group` elements, read back. axis="token": groups run along each token's channels;
    axis="channel": along each channel's tokens (KIVI's choice for keys)."""
    if bits not in (2, 3, 4, 8) or axis not in ("token", "channel") or group < 1:
        raise ValueError("pass bits in (2, 3, 4, 8), axis 'token' or 'channel', group >= 1")
    y = x if axis == "token" else x.transpose(-1, -2)
    n = y.shape[-1]
    pad = (-n) % group
    g = F.pad(y, (0, pad), value=0.0) if pad else y
    g = g.reshape(*g.shape[:-1], -1, group)
    if pad:  # padding must not widen the last group's range
        last = g[..., -1, :]
        fill = last[..., : group - pad].mean(-1, keepdim=True)
        last[..., group - pad:] = fill
    lo, hi = g.amin(-1, keepdim=True), g.amax(-1, keepdim=True)
    scale = (hi - lo).clamp_min(1e-8) / (2**bits - 1)
    deq = ((g - lo) / scale).round().clamp(0, 2**bits - 1) * scale + lo
    deq = deq.reshape(*y.shape[:-1], n + pad)[..., :n]
    return deq if axis == "token" else deq.transpose(-1, -2)


def quantize_past(past: Past, bits: int, key_axis: str = "token", value_axis: str = "token",
                  group: int = 32) -> Past:
    """Every stored K and V read back through `quantize` (keys and values may group apart)."""
    return Past([quantize(k, bits, key_axis, group) for k in past.keys],
                [quantize(v, bits, value_axis, group) for v in past.values], past.length)


# --- reading the answer ----------------------------------------------------------------------


def split(samples: list[tasks.Sample]) -> tuple[Tensor, Tensor, Tensor]:
    """(context [B, T], tail [B, T_tail], tail answer mask) of equal-shape samples: the context
    ends where the question (QUERY / TRACK) begins."""
    tokens, mask = tasks.batch(samples)
    is_q = (tokens == tasks.QUERY) | (tokens == tasks.TRACK)
    starts = is_q.int().argmax(1)
    if not bool((starts == starts[0]).all()) or not bool(is_q.any(1).all()):
        raise ValueError("pass samples of one task and length (the question must start at the "
                         "same position in each)")
    q = int(starts[0])
    return tokens[:, :q], tokens[:, q:], mask[:, q:]


def question_length(tail_mask: Tensor) -> int:
    """Tokens of the first question: the tail before its first answer token."""
    return int(tail_mask[0].int().argmax())


def _exact(logits: Tensor, tokens: Tensor, mask: Tensor) -> Tensor:
    """[B]: is the argmax before every masked token that token? (logits predict tokens[1:])"""
    return ((logits.argmax(-1) == tokens[:, 1:]) | ~mask[:, 1:]).all(1)


@torch.no_grad()
def answer_hits(model: TinyLM, past: Past, tail: Tensor, tail_mask: Tensor) -> Tensor:
    """[B] bool: with `past` as the context, is every answer token in `tail` the argmax of
    the logits before it (greedy decoding's exact match, teacher-forced)?"""
    return _exact(run(model, tail[:, :-1], past)[0], tail, tail_mask)


@torch.no_grad()
def window_attention_hits(model: TinyLM, tokens: Tensor, answer_mask: Tensor,
                          window: int) -> Tensor:
    """[B] exact match when every layer attends only to the last `window` tokens, from the
    first token on (sliding-window attention, nothing ever prefilled with full attention)."""
    return _exact(run(model, tokens[:, :-1], window=window)[0], tokens, answer_mask)


def question_attention(model: TinyLM, past: Past, tail: Tensor, tail_mask: Tensor) -> list[Tensor]:
    """Each layer's attention of the question tokens over the context [B, H, Tq, T_context]."""
    q = question_length(tail_mask)
    _, _, probs = run(model, tail[:, :q], past)
    return [p[..., : past.kept] for p in probs]


def sink_mass(probs: list[Tensor], after: int = 32) -> list[list[float]]:
    """[layer][query head] mean attention on the first token (BOS) by queries at positions >=
    `after`, divided by what uniform causal attention would give it (1 / (position + 1))."""
    out = []
    for p in probs:
        t = p.shape[-1]
        rows = torch.arange(after, t)
        first = p[:, :, after:, 0]  # [B, H, rows]
        out.append((first * (rows + 1)).mean((0, 2)).tolist())
    return out


def channel_outliers(past: Past) -> dict[str, float]:
    """Largest over median of the per-channel RMS of K and of V (KIVI: keys have outlier
    channels, values do not), the worst layer/head."""
    def ratio(x: Tensor) -> float:
        rms = x.pow(2).mean((0, 2)).sqrt()  # [H_kv, D]
        return float((rms.amax(-1) / rms.median(-1).values).max())
    return {"keys": max(ratio(k) for k in past.keys),
            "values": max(ratio(v) for v in past.values)}
