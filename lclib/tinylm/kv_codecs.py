"""How TinyLM's cache stores K/V (codecs), and the model surgery chapter 5 uses.

A codec is looked up by name: ``"fp32"``, ``"bf16"``, any codec registered with
`register_kv_codec`, or ``"<fmt>-<granularity>"`` (e.g. ``"e4m3-head"``, ``"int8-tensor"``),
which is built on first use from `lclib.fp8.quantize` with dynamic scales.

    _, cache = model.prefill(tokens, kv_dtype="e4m3-head")
    tinylm.evaluate(CachedKV(with_outlier_head(model, 1e4), "e4m3-head"))
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..fp8 import FORMATS, GRANULARITIES, quantize

# The surgery below takes a `lclib.tinylm.TinyLM`, typed as nn.Module: model.py imports this file.


@dataclass(frozen=True)
class KVCodec:
    """How the cache stores K/V: `encode` on write, `decode` on read.

    `dtype` is the lclib dtype string whose width sets the payload bytes (scales and other
    metadata of a quantized format are not counted, as in `lclib.kv_cache_bytes`).
    """

    dtype: str
    encode: Callable[[Tensor], Any]
    decode: Callable[[Any], Tensor]


KV_CODECS: dict[str, KVCodec] = {
    "fp32": KVCodec("fp32", lambda x: x.float(), lambda s: s),
    "bf16": KVCodec("bf16", lambda x: x.bfloat16(), lambda s: s.float()),
}
QUANTIZED = [f"{fmt}-{granularity}" for fmt in FORMATS for granularity in GRANULARITIES]


def register_kv_codec(name: str, codec: KVCodec) -> None:
    """Make `kv_dtype=name` available to caches (e.g. `kv_codec` with a static scale)."""
    KV_CODECS[name] = codec


def get_kv_codec(name: str) -> KVCodec:
    """The codec called `name` (a quantized one is built on first use); ValueError lists them."""
    if name not in KV_CODECS and name in QUANTIZED:
        KV_CODECS[name] = kv_codec(*name.split("-", 1))
    if name not in KV_CODECS:
        raise ValueError(f"unknown kv_dtype {name!r}; pass one of "
                         f"{', '.join([*KV_CODECS, *QUANTIZED])} (or register a codec with "
                         "register_kv_codec)")
    return KV_CODECS[name]


def kv_codec(fmt: str = "e4m3", granularity: str = "head",
             scale: float | Tensor | None = None) -> KVCodec:
    """A cache codec storing K/V with `lclib.fp8.quantize(x, fmt, granularity, scale)`.

    Dynamic scales are computed per appended chunk (a whole prefill, or one decoded token).
    """
    quantize(torch.zeros(1, 1, 1, 1), fmt, granularity, scale)  # ValueError now, not mid-run
    return KVCodec("int8" if fmt == "int8" else "fp8",
                   lambda x: quantize(x, fmt, granularity, scale), lambda s: s.dequantize())


class CachedKV(torch.nn.Module):
    """`model` whose attention reads K/V back through a `kv_dtype` cache.

    `tinylm.evaluate(CachedKV(model, "e4m3-head"), ...)` measures accuracy with that cache
    (the plain model's `hidden` attends over K/V that never went through a cache).
    """

    def __init__(self, model: torch.nn.Module, kv_dtype: str) -> None:
        super().__init__()
        model.new_cache(kv_dtype)  # ValueError for unknown codecs
        self.model, self.kv_dtype, self.lm_head = model, kv_dtype, model.lm_head

    def hidden(self, tokens: Tensor) -> Tensor:
        return self.model.hidden(tokens, self.model.new_cache(self.kv_dtype))


def with_outlier_head(model: torch.nn.Module, magnitude: float, layer: int = 0,
                      kv_head: int = 0) -> torch.nn.Module:
    """A copy of `model` computing the same function whose cache has an outlier head.

    K and V of `kv_head` in `layer` are `magnitude` times larger; its query heads' Q and the
    output projection's matching columns are divided by `magnitude`, so in exact arithmetic
    the logits do not change. Only the stored K/V does.
    """
    if not (math.isfinite(magnitude) and magnitude > 0):
        raise ValueError(f"magnitude must be a finite positive number, got {magnitude}")
    c = model.config
    if not (0 <= layer < c.n_layers and 0 <= kv_head < c.n_kv_heads):
        raise ValueError(f"pass 0 <= layer < {c.n_layers} and 0 <= kv_head < {c.n_kv_heads}")
    out = copy.deepcopy(model)
    attn, d = out.blocks[layer].attn, c.head_dim
    kv_rows = slice(kv_head * d, (kv_head + 1) * d)
    group = c.n_heads // c.n_kv_heads
    q_rows = slice(kv_head * group * d, (kv_head + 1) * group * d)
    with torch.no_grad():
        attn.k.weight[kv_rows] *= magnitude
        attn.v.weight[kv_rows] *= magnitude
        attn.q.weight[q_rows] /= magnitude
        for h in range(kv_head * group, (kv_head + 1) * group):
            attn.o.weight[:, h * d:(h + 1) * d] /= magnitude
    return out
