"""Shrinking the KV cache along Yao Fu's four directions (layer, head, token, hidden), in bytes.

Yao Fu's paper (arXiv 2405.08944) traces every long-context cost to the KV cache and names four
dimensions to compress it along: layers, heads, tokens and the hidden (per-element) width. A
`KVScheme` describes one point in that space as a handful of numbers; `scheme_bytes` turns it
into the bytes one request holds. Presets in `SCHEMES` carry the paper each number comes from.
Sparse prefill (MInference) shrinks prefill FLOPs, not bytes: `sparse_prefill_flops`.

Torch-free and numpy-free, like the rest of the cost model; sympy only inside the functions
that return expressions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from .cost import GPULike, ModelLike, PrefillFlops, kv_budget, prefill_flops, weight_bytes
from .hardware import get_gpu
from .models import get_model
from .units import dtype_bits, positive_int

if TYPE_CHECKING:
    import sympy as sp

DIRECTIONS = ("none", "layer", "head", "token", "hidden")


@dataclass(frozen=True)
class KVScheme:
    """Which K/V a model keeps, per layer, head, token and element.

    layer:  `attention_fraction` of the layers attend (the rest, e.g. Mamba layers, hold a
            constant state, not counted); `layer_share` adjacent layers share one cache (CLA);
            `global_caches` fixes the number of full-length caches (YOCO: 1).
    head:   `kv_heads` overrides the model's KV heads (MQA: 1); `latent` replaces the
            2·H_kv·d_head elements per token and layer (MLA: 576); `retrieval_heads` is the
            fraction of KV heads keeping every token, the others keep sinks + window
            (DuoAttention).
    token:  `local_fraction` of the attending layers keep only `sinks` + `window` tokens
            (sliding window, local/global stacks, StreamingLLM); `keep` (a fraction) and
            `max_tokens` cap what the other layers keep (eviction: H2O, SnapKV).
    hidden: `bits` per stored element (None = the kv_dtype), one scale of `scale_bytes` per
            `group` elements; `rank` is the fraction of the per-token width kept (low rank).
    """

    name: str
    direction: str = "none"
    source: str = ""
    attention_fraction: float = 1.0
    layer_share: int = 1
    global_caches: int | None = None
    kv_heads: int | None = None
    latent: int | None = None
    retrieval_heads: float = 1.0
    local_fraction: float = 0.0
    window: int | None = None
    sinks: int = 0
    keep: float = 1.0
    max_tokens: int | None = None
    bits: int | None = None
    group: int = 0
    scale_bytes: int = 0
    rank: float = 1.0

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS:
            raise ValueError(f"direction={self.direction!r}; pass one of {DIRECTIONS}")
        for attr in ("attention_fraction", "retrieval_heads", "keep", "rank"):
            if not 0 < getattr(self, attr) <= 1:
                raise ValueError(f"{attr} is a fraction; pass 0 < {attr} <= 1")
        if not 0 <= self.local_fraction <= 1:
            raise ValueError("local_fraction is a fraction of layers; pass 0 <= it <= 1")
        positive_int("layer_share", self.layer_share)
        windowed = self.local_fraction > 0 or self.retrieval_heads < 1
        if windowed and self.window is None:
            raise ValueError("local layers or streaming heads need a window; pass window=W")
        if (self.group > 0) != (self.scale_bytes > 0):
            raise ValueError("pass both group > 0 and scale_bytes > 0, or neither")

    def with_(self, **changes: Any) -> KVScheme:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    def element_bits(self, kv_dtype: str = "bf16") -> float:
        """Stored bits per K/V element, scales included."""
        bits = dtype_bits(kv_dtype) if self.bits is None else self.bits
        return bits + (8 * self.scale_bytes / self.group if self.group else 0)


def _layer_counts(s: KVScheme, n_layers: int) -> tuple[int, int]:
    """(full-length caches, windowed caches) of an `n_layers` model under `s`."""
    attending = max(1, round(n_layers * s.attention_fraction))
    local = round(attending * s.local_fraction)
    full = attending - local
    full_caches = min(full, s.global_caches) if s.global_caches else math.ceil(full / s.layer_share)
    return full_caches, math.ceil(local / s.layer_share)


def tokens_kept(s: KVScheme, seq_len: int) -> tuple[int, int]:
    """(tokens a full-length cache keeps, tokens a windowed cache keeps) at `seq_len`."""
    seq_len = positive_int("seq_len", seq_len)
    full = min(seq_len, math.ceil(s.keep * seq_len), s.max_tokens or seq_len)
    return full, min(seq_len, s.sinks + (s.window or 0))


def scheme_bytes(model: ModelLike, seq_len: int, scheme: KVScheme | str = "full",
                 batch: int = 1, kv_dtype: str = "bf16") -> int:
    """KV bytes of `batch` requests of `seq_len` tokens on `model` stored under `scheme`."""
    m, s = get_model(model), get_scheme(scheme)
    if m.sliding_window and s.window is None:  # the model's own window (Mistral-7B-v0.1)
        s = s.with_(local_fraction=1.0, window=m.sliding_window)
    kv_heads = s.kv_heads or m.n_kv_heads
    width = (s.latent or 2 * kv_heads * m.head_dim) * s.rank  # elements per token per layer
    full_caches, local_caches = _layer_counts(s, m.n_layers)
    full_tokens, window_tokens = tokens_kept(s, seq_len)
    r = s.retrieval_heads
    tokens = (full_caches * (r * full_tokens + (1 - r) * window_tokens)
              + local_caches * window_tokens)
    bits = tokens * width * s.element_bits(kv_dtype) * positive_int("batch", batch)
    return math.ceil(bits / 8)


def bytes_per_token(model: ModelLike, seq_len: int, scheme: KVScheme | str = "full",
                    kv_dtype: str = "bf16") -> float:
    """Average KV bytes per token of context for one request of `seq_len` tokens."""
    return scheme_bytes(model, seq_len, scheme, kv_dtype=kv_dtype) / seq_len


def users_that_fit(model: ModelLike, gpu: GPULike, seq_len: int, scheme: KVScheme | str = "full",
                   n_gpus: int = 1, kv_dtype: str = "bf16") -> int:
    """Requests of `seq_len` tokens whose KV under `scheme` fits in `lclib.kv_budget`."""
    free = kv_budget(model, gpu, n_gpus)
    return max(0, free // scheme_bytes(model, seq_len, scheme, kv_dtype=kv_dtype))


def decode_step_time(model: ModelLike, gpu: GPULike, seq_len: int,
                     scheme: KVScheme | str = "full", batch: int = 1, n_gpus: int = 1,
                     kv_dtype: str = "bf16") -> float:
    """Memory-bound decode step: weights plus `batch` compressed caches over HBM bandwidth."""
    read = weight_bytes(model) + scheme_bytes(model, seq_len, scheme, batch, kv_dtype)
    return read / (positive_int("n_gpus", n_gpus) * get_gpu(gpu).hbm_bandwidth)


# --- MLA: DeepSeek's latent cache, from the published config -------------------------------

# deepseek-ai/DeepSeek-V3 config.json on the Hugging Face Hub (DeepSeek-V2, arXiv 2405.04434,
# section 2.1, has the same attention dims and 60 layers).
DEEPSEEK_V3 = {"num_hidden_layers": 61, "num_attention_heads": 128, "kv_lora_rank": 512,
               "qk_rope_head_dim": 64, "qk_nope_head_dim": 128, "v_head_dim": 128}


def mla_bytes_per_token(config: dict[str, int] = DEEPSEEK_V3, kv_dtype: str = "bf16") -> int:
    """MLA caches one latent (kv_lora_rank) + one decoupled RoPE key per token and layer."""
    width = config["kv_lora_rank"] + config["qk_rope_head_dim"]
    return width * config["num_hidden_layers"] * dtype_bits(kv_dtype) // 8


def mla_as_mha_bytes_per_token(config: dict[str, int] = DEEPSEEK_V3,
                               kv_dtype: str = "bf16") -> int:
    """What the same attention would cache as plain MHA: every head's K (nope+rope) and V."""
    k = config["qk_nope_head_dim"] + config["qk_rope_head_dim"]
    width = config["num_attention_heads"] * (k + config["v_head_dim"])
    return width * config["num_hidden_layers"] * dtype_bits(kv_dtype) // 8


# --- the presets, each with its source -------------------------------------------------------

SCHEMES: dict[str, KVScheme] = {s.name: s for s in (
    KVScheme("full", "none", "the model as configured (lclib.kv_cache_bytes without a window)"),
    # layer
    KVScheme("cla2", "layer", "Cross-Layer Attention, pairs of layers share K/V (Brandon et al. "
             "2024, arXiv 2405.12981)", layer_share=2),
    KVScheme("yoco", "layer", "YOCO: half the layers (self-decoder) use sliding-window attention, "
             "the other half reuse ONE global cache (Sun et al. 2024, arXiv 2405.05254); window "
             "chosen here", local_fraction=0.5, global_caches=1, window=4096),
    KVScheme("hybrid-1:7", "layer", "Jamba: one attention layer per eight, the rest Mamba with a "
             "constant state (Lieber et al. 2024, arXiv 2403.19887)", attention_fraction=1 / 8),
    # head
    KVScheme("mqa", "head", "Multi-query attention, one K/V head (Shazeer 2019, "
             "arXiv 1911.02150)", kv_heads=1),
    KVScheme("mla", "head", "DeepSeek MLA: 512-d latent + 64-d RoPE key per token and layer "
             "(DeepSeek-V2, arXiv 2405.04434; DeepSeek-V3 config.json)", latent=576),
    KVScheme("duo-50", "head", "DuoAttention: half of the KV heads are retrieval heads with the "
             "full cache, the others streaming heads with sinks + a recent window (Xiao et al. "
             "2024, arXiv 2410.10819); sizes chosen here", retrieval_heads=0.5, sinks=64,
             window=256),
    # token
    KVScheme("swa-4096", "token", "Mistral-7B's sliding window of 4,096 on every layer (Jiang et "
             "al. 2023, arXiv 2310.06825; Mistral-7B-v0.1 config.json)", local_fraction=1.0,
             window=4096),
    KVScheme("local-global-5:1", "token", "Gemma 3: five 1,024-token sliding-window layers per "
             "global layer (Gemma Team 2025, arXiv 2503.19786)", local_fraction=5 / 6,
             window=1024),
    KVScheme("streamingllm", "token", "StreamingLLM: 4 attention sinks + a recent window (Xiao et "
             "al. 2023, arXiv 2309.17453); window chosen here", local_fraction=1.0, sinks=4,
             window=4092),
    KVScheme("h2o-20", "token", "H2O: heavy hitters + recent tokens, 20% of the cache (Zhang et "
             "al. 2023, arXiv 2306.14048)", keep=0.2),
    KVScheme("snapkv-4096", "token", "SnapKV: 4,096 tokens per head chosen by the question's "
             "attention (Li et al. 2024, arXiv 2404.14469)", max_tokens=4096),
    # hidden
    KVScheme("int8-g128", "hidden", "INT8 K/V, one fp16 scale per 128 elements",
             bits=8, group=128, scale_bytes=2),
    KVScheme("int4-g32", "hidden", "INT4 K/V, fp16 scale and zero point per 32 elements "
             "(KIVI's grouping, Liu et al. 2024, arXiv 2402.02750)", bits=4, group=32,
             scale_bytes=4),
    KVScheme("kivi-2bit", "hidden", "KIVI: 2-bit K (per channel) and V (per token), groups of 32 "
             "(arXiv 2402.02750); its full-precision recent window is not counted", bits=2,
             group=32, scale_bytes=4),
    KVScheme("lowrank-50", "hidden", "low-rank K/V projections keeping half the width (Palu, "
             "Chang et al. 2024, arXiv 2407.21118)", rank=0.5),
)}


def get_scheme(scheme: KVScheme | str) -> KVScheme:
    """The preset called `scheme` (a KVScheme passes through)."""
    if isinstance(scheme, KVScheme):
        return scheme
    if scheme not in SCHEMES:
        raise ValueError(f"unknown scheme {scheme!r}; pass one of {', '.join(SCHEMES)}")
    return SCHEMES[scheme]


# --- sparse prefill (MInference) ----------------------------------------------------------------


def sparse_prefill_flops(model: ModelLike, seq_len: int, density: float,
                         causal: bool = True) -> PrefillFlops:
    """Prefill FLOPs when attention computes only a fraction `density` of its (q, k) pairs."""
    if not 0 < density <= 1:
        raise ValueError(f"density is the fraction of attention pairs computed; pass 0 < d <= 1, "
                         f"got {density}")
    dense = prefill_flops(model, seq_len, causal)
    return PrefillFlops(dense.linear, dense.attention * density)


def density_for_speedup(model: ModelLike, seq_len: int, speedup: float,
                        causal: bool = True) -> float | None:
    """Attention density at which the whole prefill runs `speedup` times fewer FLOPs; None if no
    density can (the linear FLOPs alone cap the speedup at total / linear)."""
    dense = prefill_flops(model, seq_len, causal)
    if speedup < 1:
        raise ValueError(f"pass a speedup >= 1, got {speedup}")
    attention = dense.total / speedup - dense.linear
    return attention / dense.attention if attention > 0 else None


# --- sympy ---------------------------------------------------------------------------------


def receptive_field(n_layers: int | sp.Expr, window: int | sp.Expr) -> Any:
    """Furthest token (distance back) any layer-L output can depend on with windows of W
    tokens (self included): each layer reaches W - 1 back, so L (W - 1)."""
    return n_layers * (window - 1)


def paths(distance: int, n_layers: int, window: int) -> int:
    """Attention paths that carry a token `distance` back through `n_layers` windowed layers:
    the coefficient of x^distance in (1 + x + ... + x^(W-1))^L."""
    import sympy as sp

    x = sp.Symbol("x")
    poly = sp.Poly(sum(x**i for i in range(window)) ** n_layers, x)
    return int(poly.coeff_monomial(x**distance)) if distance >= 0 else 0


def budget_for_users(n_users: int | sp.Expr) -> Any:
    """Fraction of tokens kept so that `n_users` requests fit: solve N · keep · S · b_tok = KV."""
    import sympy as sp

    keep, S, b_tok, kv = sp.symbols("keep S b_tok KV", positive=True)
    return sp.solve(sp.Eq(n_users * keep * S * b_tok, kv), keep)[0]


def scheme_expr(scheme: KVScheme | str) -> Any:
    """Bytes of one request under `scheme` as a sympy expression in L, H_kv, d_h, S, b."""
    import sympy as sp

    s = get_scheme(scheme)
    L, H_kv, d_h, S, b = sp.symbols("L H_kv d_h S b", positive=True)
    heads = s.kv_heads or H_kv
    width = (s.latent or 2 * heads * d_h) * sp.nsimplify(s.rank)
    attending = L * sp.nsimplify(s.attention_fraction)
    local = attending * sp.nsimplify(s.local_fraction)
    full = s.global_caches if s.global_caches else (attending - local) / s.layer_share
    full_tokens = sp.Min(S, s.max_tokens) if s.max_tokens else S * sp.nsimplify(s.keep)
    window = sp.Min(S, s.sinks + (s.window or 0))
    r = sp.nsimplify(s.retrieval_heads)
    tokens = full * (r * full_tokens + (1 - r) * window) + local / s.layer_share * window
    bits = b * 8 if s.bits is None else s.bits
    per_element = bits + (sp.Rational(8 * s.scale_bytes, s.group) if s.group else 0)
    return sp.simplify(tokens * width * per_element / 8)
