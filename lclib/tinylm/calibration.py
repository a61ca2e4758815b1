"""Static FP8 K/V scales for TinyLM, calibrated the way serving engines calibrate them.

vLLM, SGLang and TensorRT-LLM store FP8 K/V with a static scale per attention layer (one for K,
one for V): 1.0 unless the checkpoint or a warm-up batch supplies one; vLLM with an
llm-compressor checkpoint and the FlashAttention backend also takes one per KV head. A static
scale ``s`` stores ``x / s``, which is the same as storing the K (or V) of a model whose K (or V)
rows are divided by ``s`` with scale 1.0. So `with_kv_scales` folds calibrated scales into a
copy of the model (K rows ÷ s and the matching Q rows × s; V rows ÷ s and the matching output
columns × s: the same function in exact arithmetic) and the cache codec `SCALE1` stores with
scale 1.0, as an engine does with uncalibrated scales.

    scales = static_scales(model, length=16)               # calibrate on 16-token prompts
    evaluate(CachedKV(with_kv_scales(model, scales), SCALE1), lengths=(256,))
"""

from __future__ import annotations

import copy
import random

import torch
from torch import Tensor

from ..fp8 import amax_scale
from .kv_codecs import kv_codec, register_kv_codec
from .model import TinyLM
from .tasks import get_task

SCALE1 = "e4m3-scale1"  # e4m3, one scale of 1.0 per tensor: the engines' uncalibrated default
register_kv_codec(SCALE1, kv_codec("e4m3", "tensor", scale=1.0))

Scales = list[tuple[Tensor, Tensor]]  # per layer: (k_scale, v_scale), each [n_kv_heads]


@torch.no_grad()
def kv_tensors(model: TinyLM, length: int, n_prompts: int = 4,
               seed: int = 0) -> list[tuple[Tensor, Tensor]]:
    """Per layer, K and V [n_prompts, H_kv, length, D] of single-needle prompts of `length`."""
    if not (isinstance(length, int) and length >= 2 and n_prompts >= 1):
        raise ValueError(f"pass length >= 2 tokens and n_prompts >= 1, got {length}, {n_prompts}")
    rng = random.Random(seed)
    tokens = torch.stack([get_task("single_needle")(length, rng.random(), rng).tokens
                          for _ in range(n_prompts)])
    _, cache = model.prefill(tokens)
    return [(torch.cat(k, 2), torch.cat(v, 2)) for k, v in zip(cache.keys, cache.values,
                                                               strict=True)]


def static_scales(model: TinyLM, length: int, fmt: str = "e4m3", granularity: str = "tensor",
                  n_prompts: int = 4, seed: int = 0) -> Scales:
    """Per layer (k_scale, v_scale), each [H_kv]: the amax of calibration K/V (prompts of
    `length` tokens) over the format's max, one per tensor ("tensor") or per KV head ("head")."""
    if granularity not in ("tensor", "head"):
        raise ValueError(f"engines calibrate per tensor or per KV head; pass 'tensor' or 'head', "
                         f"got {granularity!r}")
    heads = model.config.n_kv_heads
    return [tuple(amax_scale(x, fmt, granularity).flatten().expand(heads).clone() for x in kv)
            for kv in kv_tensors(model, length, n_prompts, seed)]


def with_kv_scales(model: TinyLM, scales: Scales) -> TinyLM:
    """A copy of `model` computing the same function whose cache holds K / k_scale and
    V / v_scale (per layer and KV head): stored with scale 1.0, it is a static-scale cache."""
    c = model.config
    if len(scales) != c.n_layers or any(s.shape != (c.n_kv_heads,) for kv in scales for s in kv):
        raise ValueError(f"pass one (k_scale, v_scale) pair of shape [{c.n_kv_heads}] per layer "
                         f"({c.n_layers} layers), e.g. static_scales(model, length)")
    out, d, group = copy.deepcopy(model), c.head_dim, c.n_heads // c.n_kv_heads
    with torch.no_grad():
        for block, (k_scale, v_scale) in zip(out.blocks, scales, strict=True):
            attn = block.attn
            for h in range(c.n_kv_heads):
                kv_rows, q_rows = slice(h * d, (h + 1) * d), slice(h * group * d,
                                                                   (h + 1) * group * d)
                attn.k.weight[kv_rows] /= k_scale[h]
                attn.q.weight[q_rows] *= k_scale[h]
                attn.v.weight[kv_rows] /= v_scale[h]
                attn.o.weight[:, q_rows] *= v_scale[h]
    return out
