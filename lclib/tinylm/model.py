"""A Llama-style decoder (RMSNorm, RoPE, GQA, SwiGLU) with an explicit KV cache.

The architecture is an `lclib.ModelConfig`, so `config.n_params` and
`lclib.kv_cache_bytes(config, ...)` describe this module exactly. RoPE frequencies come
from a swappable hook with the signature of `lclib.rope.inv_freq`, and the cache stores
K/V through a codec (`lclib.tinylm.kv_codecs`: fp32, bf16, fp8 and int8 ones, or your own).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..models import ModelConfig
from ..rope import plain_inv_freq, rotate
from ..units import bytes_for
from .kv_codecs import get_kv_codec

RopeFn = Callable[[int, float, Any, Any], tuple[Tensor, float]]


# --- the KV cache -------------------------------------------------------------


@dataclass
class KVCache:
    """Per-layer K and V: the stored (encoded) chunks, and a preallocated decoded buffer.

    `keys[layer]` / `values[layer]` list the chunks as the codec stored them, [B, H_kv, chunk,
    D] each (what `nbytes` counts). Attention reads a decoded buffer per layer that is
    allocated ahead (capacity doubling) and written in place, as gpt-fast's static cache is:
    appending decodes only the new tokens, and a decode step reads the cache once, with no
    concatenation. The buffer holds decode(encode(x)), so results equal decoding every chunk
    on every read. `fork()` shares the stored chunks and copies the buffers once; `truncate`
    forgets the last tokens (whole appended chunks), e.g. to re-time one decode step.
    """

    n_layers: int
    kv_dtype: str = "fp32"
    keys: list[list[Any]] = field(default_factory=list)
    values: list[list[Any]] = field(default_factory=list)
    length: int = 0
    n_elements: int = 0  # K and V elements stored, all layers

    def __post_init__(self) -> None:
        self.codec = get_kv_codec(self.kv_dtype)
        if not self.keys:
            self.keys = [[] for _ in range(self.n_layers)]
            self.values = [[] for _ in range(self.n_layers)]
        self._buffers: list[tuple[Tensor, Tensor] | None] = [None] * self.n_layers

    def _buffer(self, layer: int, k: Tensor, end: int) -> tuple[Tensor, Tensor]:
        """This layer's decoded buffers with room for `end` tokens (grown by doubling)."""
        held = self._buffers[layer]
        if held is not None and held[0].shape[2] >= end:
            return held
        capacity = max(end, 256, 2 * held[0].shape[2] if held is not None else 0)
        b, h, _, d = k.shape
        new = tuple(torch.empty(b, h, capacity, d, dtype=k.dtype, device=k.device)
                    for _ in range(2))
        if self.length:  # keep what is cached: from the old buffer, or decoded once
            old = held or tuple(torch.cat([self.codec.decode(c) for c in side], dim=2)
                                for side in (self.keys[layer], self.values[layer]))
            for dst, src in zip(new, old, strict=True):
                dst[:, :, :self.length] = src[:, :, :self.length]
        self._buffers[layer] = new
        return new

    def append(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Store one layer's new K/V; return that layer's whole K/V, decoded (views of the
        buffer: valid until the next append)."""
        ek, ev = self.codec.encode(k), self.codec.encode(v)
        self.keys[layer].append(ek)
        self.values[layer].append(ev)
        self.n_elements += k.numel() + v.numel()
        dk, dv = self.codec.decode(ek), self.codec.decode(ev)
        start, end = self.length, self.length + k.shape[2]
        bk, bv = self._buffer(layer, dk, end)
        bk[:, :, start:end], bv[:, :, start:end] = dk, dv
        return bk[:, :, :end], bv[:, :, :end]

    def fork(self) -> KVCache:
        """A cache with the same prefix that can be extended without touching this one."""
        other = KVCache(self.n_layers, self.kv_dtype, [list(k) for k in self.keys],
                        [list(v) for v in self.values], self.length, self.n_elements)
        other._buffers = [None if b is None else tuple(x.clone() for x in b)
                          for b in self._buffers]
        return other

    def truncate(self, length: int) -> None:
        """Forget every token from `length` on; ValueError unless that ends an appended chunk."""
        sizes = [c.shape[2] for c in self.keys[0]] if self.n_layers else []
        kept = [sum(sizes[:i]) for i in range(len(sizes) + 1)]
        if length not in kept or length > self.length:
            raise ValueError(f"pass a length at a chunk boundary, one of {kept}; got {length}")
        n = kept.index(length)
        for side in (self.keys, self.values):
            for layer in range(self.n_layers):
                dropped = side[layer][n:]
                self.n_elements -= sum(math.prod(c.shape) for c in dropped)
                del side[layer][n:]
        self.length = length

    @property
    def nbytes(self) -> int:
        """Payload bytes of the stored K and V."""
        return bytes_for(self.n_elements, self.codec.dtype)


# --- the model ------------------------------------------------------------------


class Attention(nn.Module):
    """Grouped-query attention over the cached prefix plus the new tokens."""

    def __init__(self, c: ModelConfig) -> None:
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = c.n_heads, c.n_kv_heads, c.head_dim
        self.q = nn.Linear(c.hidden_size, c.q_dim, bias=False)
        self.k = nn.Linear(c.hidden_size, c.kv_dim, bias=False)
        self.v = nn.Linear(c.hidden_size, c.kv_dim, bias=False)
        self.o = nn.Linear(c.q_dim, c.hidden_size, bias=False)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, cache: KVCache | None,
                layer: int) -> Tensor:
        b, t, _ = x.shape
        q = self.q(x).view(b, t, self.n_heads, self.head_dim).transpose(1, 2)
        k = self.k(x).view(b, t, self.n_kv_heads, self.head_dim).transpose(1, 2)
        v = self.v(x).view(b, t, self.n_kv_heads, self.head_dim).transpose(1, 2)
        q, k = rotate(q, cos, sin), rotate(k, cos, sin)
        past = cache.length if cache is not None else 0
        if cache is not None:
            k, v = cache.append(layer, k, v)
        mask = None
        if past and t > 1:  # a chunk after a prefix sees the whole prefix, causal within
            mask = torch.ones(t, past + t, dtype=torch.bool, device=x.device).tril(past)
        if x.is_cuda and (mask is not None or q.dtype == torch.float32):
            # CUDA's only fused kernel with GQA (flash) takes neither fp32 nor a mask: expanded
            # K/V let the memory-efficient kernel run instead of the S x S math fallback
            group = self.n_heads // self.n_kv_heads
            k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                             is_causal=not past and t > 1, enable_gqa=True)
        return self.o(out.transpose(1, 2).reshape(b, t, -1))


class SwiGLU(nn.Module):
    """The gated MLP: down(silu(gate(x)) * up(x))."""

    def __init__(self, c: ModelConfig) -> None:
        super().__init__()
        self.gate = nn.Linear(c.hidden_size, c.intermediate_size, bias=False)
        self.up = nn.Linear(c.hidden_size, c.intermediate_size, bias=False)
        self.down = nn.Linear(c.intermediate_size, c.hidden_size, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.down(F.silu(self.gate(x)) * self.up(x))


class Block(nn.Module):
    """Pre-norm residual block: attention, then the MLP."""

    def __init__(self, c: ModelConfig) -> None:
        super().__init__()
        self.attn_norm = nn.RMSNorm(c.hidden_size, eps=1e-5)
        self.attn = Attention(c)
        self.mlp_norm = nn.RMSNorm(c.hidden_size, eps=1e-5)
        self.mlp = SwiGLU(c)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, cache: KVCache | None,
                layer: int) -> Tensor:
        x = x + self.attn(self.attn_norm(x), cos, sin, cache, layer)
        return x + self.mlp(self.mlp_norm(x))


def check_config(c: ModelConfig) -> ModelConfig:
    """ValueError unless `c` is an architecture TinyLM implements."""
    wanted = {"mlp": "gated", "norm": "rms", "bias": "none", "learned_positions": 0,
              "sliding_window": None}
    for attr, value in wanted.items():
        if getattr(c, attr) != value:
            raise ValueError(f"TinyLM implements {attr}={value!r}, got {getattr(c, attr)!r}; "
                             f"pass config.with_({attr}={value!r})")
    if c.head_dim % 2:
        raise ValueError(f"RoPE needs an even head_dim, got {c.head_dim}; pass an even one")
    return c


class TinyLM(nn.Module):
    """A Llama-style decoder described by an `lclib.ModelConfig`.

    `model(tokens, cache)` returns logits [B, T, V] and, given a cache, appends the new
    tokens' K/V to it. RoPE uses `rope_fn(head_dim, rope_theta, rope_scaling,
    max_position_embeddings) -> (inv_freq, attention_factor)`; swap it with `set_rope`.
    """

    def __init__(self, config: ModelConfig, rope_fn: RopeFn = plain_inv_freq) -> None:
        super().__init__()
        self.config = check_config(config)
        self.embed = nn.Embedding(config.vocab_size, config.hidden_size)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.norm = nn.RMSNorm(config.hidden_size, eps=1e-5)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.lm_head.weight = self.embed.weight
        self.set_rope(rope_fn, config.rope_scaling)
        self.apply(_init_weights)

    def set_rope(self, rope_fn: RopeFn, rope_scaling: dict[str, Any] | None = None) -> None:
        """Use `rope_fn` and `rope_scaling` for positions from now on (e.g. YaRN)."""
        c = self.config
        inv_freq, factor = rope_fn(c.head_dim, c.rope_theta, rope_scaling,
                                   c.max_position_embeddings)
        self.config = c.with_(rope_scaling=rope_scaling)
        self.rope_fn, self.attention_factor = rope_fn, float(factor)
        self.inv_freq = torch.as_tensor(inv_freq, dtype=torch.float32)

    def rope(self, start: int, t: int, device: torch.device) -> tuple[Tensor, Tensor]:
        """cos and sin [T, D] for positions start .. start+t-1, times the attention factor."""
        pos = torch.arange(start, start + t, device=device, dtype=torch.float32)
        angles = pos[:, None] * self.inv_freq.to(device)[None, :]
        angles = torch.cat((angles, angles), dim=-1)
        return angles.cos() * self.attention_factor, angles.sin() * self.attention_factor

    def hidden(self, tokens: Tensor, cache: KVCache | None = None) -> Tensor:
        """Final-norm hidden states [B, T, d]; appends to `cache` if given."""
        if tokens.dim() != 2:
            raise ValueError(f"tokens must be [batch, seq], got shape {tuple(tokens.shape)}; "
                             "pass tokens[None] for one sequence")
        x = self.embed(tokens)
        start = cache.length if cache is not None else 0
        cos, sin = self.rope(start, tokens.shape[1], tokens.device)
        for i, block in enumerate(self.blocks):
            x = block(x, cos, sin, cache, i)
        if cache is not None:
            cache.length += tokens.shape[1]
        return self.norm(x)

    def forward(self, tokens: Tensor, cache: KVCache | None = None) -> Tensor:
        return self.lm_head(self.hidden(tokens, cache))

    def new_cache(self, kv_dtype: str = "fp32") -> KVCache:
        """An empty cache storing K/V as `kv_dtype`."""
        return KVCache(self.config.n_layers, kv_dtype)

    def prefill(self, tokens: Tensor, cache: KVCache | None = None, chunk_size: int | None = None,
                kv_dtype: str = "fp32") -> tuple[Tensor, KVCache]:
        """Run `tokens` [B, T] (in chunks of `chunk_size`) into `cache` (a new one if None).

        Returns the logits of every new position [B, T, V] and the cache.
        """
        cache = cache if cache is not None else self.new_cache(kv_dtype)
        step = tokens.shape[1] if chunk_size is None else chunk_size
        if step < 1:
            raise ValueError(f"chunk_size must be >= 1 (or None for one chunk), got {chunk_size}")
        logits = [self(tokens[:, i:i + step], cache) for i in range(0, tokens.shape[1], step)]
        return torch.cat(logits, dim=1), cache

    def decode(self, token: Tensor, cache: KVCache) -> Tensor:
        """Logits [B, V] for one new token per sequence (`token` [B]), appended to `cache`."""
        return self(token.reshape(-1, 1), cache)[:, -1]

    @torch.no_grad()
    def generate(self, prompt: Tensor, n_tokens: int, kv_dtype: str = "fp32") -> Tensor:
        """Greedy continuation [B, n_tokens] of `prompt` [B, T] through the KV cache."""
        logits, cache = self.prefill(prompt, kv_dtype=kv_dtype)
        out = [logits[:, -1].argmax(-1)]
        for _ in range(n_tokens - 1):
            out.append(self.decode(out[-1], cache).argmax(-1))
        return torch.stack(out, dim=1)


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Linear | nn.Embedding):
        nn.init.normal_(module.weight, std=0.02)
