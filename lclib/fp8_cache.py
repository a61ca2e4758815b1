"""A transformers KV cache that stores K and V as vLLM's engine does: bf16, or FP8 with a scale.

    from lclib import fp8_cache
    cache = fp8_cache.emulated_cache(model.config.num_hidden_layers, "e4m3, scale 1")
    model.generate(ids, past_key_values=cache, max_new_tokens=8, do_sample=False)

What the engine does, read in vLLM 0.32's source (the CPU backend, whose FP8 path needs AVX-512
or AMX, `vllm/v1/attention/backends/cpu_attn.py::_get_attn_isa`):

- Each layer writes the step's new K and V into the cache first
  (`CPUAttentionBackendImpl.do_kv_cache_update` → `cpu_attn_reshape_and_cache`), then attends
  over the cache (`cpu_attention_with_kv_cache`, with `k_scale`/`v_scale`): the prefill's own
  attention already reads the stored K/V, and so does every decode step. Here `update` returns
  the dequantized cache, which the model's attention then reads: the same order.
- A stored element is ``x / scale`` cast to the format, read back as ``x8 * scale``
  (`vllm/v1/attention/ops/triton_reshape_and_cache_flash.py`: ``key_load / k_scale``).
  Out-of-range values saturate, as CUDA's ``reshape_and_cache_flash`` converts with
  ``__nv_cvt_float_to_fp8(..., __NV_SATFINITE, ...)``; `lclib.fp8.quantize` clamps likewise.
  (The CPU kernel's conversion is compiled; we did not check it.)
- Scales: without calibrated scales every layer's ``k_scale = v_scale = 1.0``
  (`vllm/model_executor/layers/attention/attention.py::set_default_quant_scales`). Earlier
  releases offered ``calculate_kv_scales=True`` (gone by 0.32): on the first forward each
  layer set ``k_scale = amax|K| / K_SCALE_CONSTANT`` and ``v_scale = amax|V| /
  V_SCALE_CONSTANT`` over that batch, then froze them
  (`vllm/attention/layer.py::Attention.calc_kv_scales`, constants in `vllm/envs.py`). Here
  that batch is the prompt's prefill. ``fp8_per_token_head`` (0.32) computes
  ``amax / fp8 max`` per token and KV head as it writes
  (`triton_reshape_and_cache_flash.py::_reshape_cache_per_token_head`).

Only the cache is emulated: the model computes in its own dtype (fp32 here), so this isolates
the storage error (a GPU FP8 attention kernel may also quantize the query; we do not).
"""

from __future__ import annotations

import torch
from torch import Tensor
from transformers.cache_utils import Cache, DynamicLayer

from . import fp8

K_SCALE_CONSTANT = 200  # vllm/envs.py: divisor of the calculated key scale
V_SCALE_CONSTANT = 100  # vllm/envs.py: divisor of the calculated value scale

RECIPES: dict[str, tuple[str, str]] = {  # name: (storage format, where the scale comes from)
    "bf16": ("bf16", "none"),  # kv_cache_dtype="auto" on a bf16 model
    "e4m3, scale 1": ("e4m3", "one"),  # kv_cache_dtype="fp8": vLLM's default scale
    "e4m3, calculated": ("e4m3", "calculated"),  # + calculate_kv_scales=True (earlier vLLM)
    "e5m2, scale 1": ("e5m2", "one"),  # kv_cache_dtype="fp8_e5m2"
    "e5m2, calculated": ("e5m2", "calculated"),
    "e4m3, per token-head": ("e4m3", "token_head"),  # kv_cache_dtype="fp8_per_token_head"
}

Stored = Tensor | fp8.Quantized


def recipe_info(recipe: str) -> tuple[str, str]:
    """(format, scale source) of `recipe`, one of `RECIPES`."""
    if recipe not in RECIPES:
        raise ValueError(f"unknown KV recipe {recipe!r}; pass one of {', '.join(RECIPES)}")
    return RECIPES[recipe]


def calculated_scale(x: Tensor, constant: float) -> float:
    """vLLM's calculated per-tensor scale: ``amax|x| / constant`` (1.0 for an all-zero x)."""
    amax = x.detach().abs().max().item()
    return amax / constant if amax > 0 else 1.0


def store(x: Tensor, recipe: str, scale: float | None = None) -> Stored:
    """`x` ([B, H_kv, T, D]) as the cache holds it: a bf16 tensor, or `fp8.Quantized`.

    `scale` is the static scale of the "one"/"calculated" recipes (default 1.0); the
    per-token-head recipe computes its own."""
    fmt, source = recipe_info(recipe)
    if fmt == "bf16":
        return x.to(torch.bfloat16)
    if source == "token_head":
        return fp8.quantize(x, fmt, "token_head")
    return fp8.quantize(x, fmt, "tensor", 1.0 if scale is None else scale)


def read(stored: Stored, dtype: torch.dtype) -> Tensor:
    """What attention reads back from `stored`, in the model's `dtype`."""
    if isinstance(stored, fp8.Quantized):
        return stored.dequantize(dtype)
    return stored.to(dtype)


def _append(old: Stored | None, new: Stored) -> Stored:
    if old is None:
        return new
    if isinstance(new, fp8.Quantized):
        return fp8.concat(old, new)
    return torch.cat([old, new], dim=-2)


class EmulatedLayer(DynamicLayer):
    """One layer's cache: keeps K and V as stored (`stored_keys`, `stored_values`) and hands
    attention their dequantized values (`keys`, `values`), as the engine's kernel reads them."""

    def __init__(self, recipe: str):
        super().__init__()
        self.recipe = recipe
        self.source = recipe_info(recipe)[1]
        self.stored_keys: Stored | None = None
        self.stored_values: Stored | None = None
        self.scales: tuple[float | None, float | None] = (None, None)

    def update(self, key_states: Tensor, value_states: Tensor, *args, **kwargs
               ) -> tuple[Tensor, Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
            if self.source == "calculated":  # from the first forward, then frozen
                self.scales = (calculated_scale(key_states, K_SCALE_CONSTANT),
                               calculated_scale(value_states, V_SCALE_CONSTANT))
        k = store(key_states, self.recipe, self.scales[0])
        v = store(value_states, self.recipe, self.scales[1])
        self.stored_keys = _append(self.stored_keys, k)
        self.stored_values = _append(self.stored_values, v)
        self.keys = torch.cat([self.keys, read(k, self.dtype)], dim=-2)
        self.values = torch.cat([self.values, read(v, self.dtype)], dim=-2)
        return self.keys, self.values


def emulated_cache(n_layers: int, recipe: str) -> Cache:
    """A transformers cache of `n_layers` `EmulatedLayer`s storing K/V with `recipe`."""
    recipe_info(recipe)
    if n_layers < 1:
        raise ValueError(f"pass the model's layer count (>= 1), not {n_layers}")
    return Cache(layers=[EmulatedLayer(recipe) for _ in range(n_layers)])


def kv_error(keys: Tensor, values: Tensor, recipe: str) -> dict[str, float]:
    """Relative L2 error of one layer's prefill K and V read back from a `recipe` cache (the
    calculated scales come from these tensors, as on a first forward)."""
    k, v = EmulatedLayer(recipe).update(keys, values)
    return {"k_error": ((k - keys).norm() / keys.norm()).item(),
            "v_error": ((v - values).norm() / values.norm()).item()}
