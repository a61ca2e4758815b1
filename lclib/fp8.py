"""FP8 (and, for comparison, int8) storage of K/V tensors with per-tensor, -head or -token scales.

    from lclib import fp8
    qk = fp8.quantize(k, fmt="e4m3", granularity="head")   # k: [B, H_kv, T, D]
    qk.data.dtype, qk.scale.shape, qk.nbytes               # float8_e4m3fn, [1, H_kv, 1, 1]
    out = fp8.attention(q, qk, qv)                         # reads fp8 K/V, block by block

A scale maps each group's values onto the format: ``data = clamp(x / scale)`` cast to the
format, ``x ≈ data * scale``. Dynamic scales come from the tensor itself (``amax / max``, so the
largest value lands on the format's largest and nothing clips); static scales are passed in:
1.0 (what vLLM, SGLang and TensorRT-LLM use when nothing is calibrated) or calibrated beforehand
(`amax_scale` of calibration K/V), and may clip or underflow. A cache written token by token can
only use static scales or dynamic ones per token (`amax_records` shows why not per tensor).
Values beyond the grid saturate to ±max (never inf, even in e5m2). TinyLM's caches store K/V
with these formats through `lclib.tinylm.kv_codecs` (``kv_dtype="e4m3-head"``, ...).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
from torch import Tensor

from .rope import plain_inv_freq, rotate

FORMATS: dict[str, torch.dtype] = {
    "e4m3": torch.float8_e4m3fn,  # Micikevicius et al. 2022 (NVIDIA, OCP): no inf, max 448
    "e4m3fnuz": torch.float8_e4m3fnuz,  # AMD MI300 (ROCm): no inf, no -0, max 240
    "e5m2": torch.float8_e5m2,  # IEEE-like: inf and NaN, max 57344
    "int8": torch.int8,  # a uniform grid of 255 levels, for comparison
}
FLOATS = ("e4m3", "e4m3fnuz", "e5m2")
GRANULARITIES = ("tensor", "head", "token", "token_head")
INT8_MAX = 127


@dataclass(frozen=True)
class Format:
    """Facts of one fp8 format, read from `torch.finfo`."""

    name: str
    dtype: torch.dtype
    max: float
    min_normal: float
    mantissa_bits: int

    @property
    def exponent_bits(self) -> int:
        return 8 - 1 - self.mantissa_bits

    @property
    def min_subnormal(self) -> float:
        return self.min_normal * 2.0**-self.mantissa_bits

    @property
    def rel_error_bound(self) -> float:
        """Worst relative rounding error for values in the normal range: 2^-(m+1)."""
        return 2.0 ** -(self.mantissa_bits + 1)

    @property
    def dynamic_range(self) -> float:
        """Largest over smallest normal value: how many times smaller a value can be than the
        group's amax and still keep full relative precision."""
        return self.max / self.min_normal


def format_info(fmt: str) -> Format:
    """Max, smallest normal and mantissa bits of fp8 format `fmt` (one of `FLOATS`)."""
    if fmt not in FLOATS:
        raise ValueError(f"unknown fp8 format {fmt!r}; pass one of {', '.join(FLOATS)}")
    info = torch.finfo(FORMATS[fmt])
    return Format(fmt, FORMATS[fmt], float(info.max), float(info.smallest_normal),
                  round(-math.log2(info.eps)))


def grid_max(fmt: str) -> float:
    """The largest value format `fmt` stores (127 for the int8 grid)."""
    return INT8_MAX if fmt == "int8" else format_info(fmt).max


def _reduce_dims(ndim: int, granularity: str) -> tuple[int, ...]:
    """Dims of a [..., H, T, D] tensor that share one scale."""
    if granularity not in GRANULARITIES:
        raise ValueError(f"unknown granularity {granularity!r}; pass one of "
                         f"{', '.join(GRANULARITIES)}")
    if granularity != "tensor" and ndim < 3:
        raise ValueError(f"granularity {granularity!r} needs a [..., heads, tokens, head_dim] "
                         f"tensor, got {ndim} dims; pass granularity='tensor' or reshape")
    return {"tensor": tuple(range(ndim)),
            "head": tuple(i for i in range(ndim) if i != ndim - 3),
            "token": (ndim - 3, ndim - 1),
            "token_head": (ndim - 1,)}[granularity]


def amax_scale(x: Tensor, fmt: str = "e4m3", granularity: str = "tensor") -> Tensor:
    """Scale per group that maps the group's largest |x| onto the format's largest value.

    Computed from `x` itself it is a dynamic scale; computed from calibration data and passed
    to `quantize(..., scale=)` it is a static one. An all-zero group gets scale 1.
    """
    amax = x.detach().abs().float().amax(dim=_reduce_dims(x.dim(), granularity), keepdim=True)
    return torch.where(amax > 0, amax / grid_max(fmt), torch.ones_like(amax))


@dataclass(frozen=True)
class Quantized:
    """A tensor stored as `data` (float8 or int8) times an fp32 `scale` broadcast over it."""

    data: Tensor
    scale: Tensor
    fmt: str
    granularity: str

    @property
    def shape(self) -> torch.Size:
        return self.data.shape

    def dequantize(self, dtype: torch.dtype = torch.float32) -> Tensor:
        return (self.data.float() * self.scale).to(dtype)

    def tokens(self, start: int, stop: int) -> Quantized:
        """Tokens start..stop-1 (dim -2) with their scales."""
        scale = self.scale[..., start:stop, :] if self.scale.shape[-2] > 1 else self.scale
        return Quantized(self.data[..., start:stop, :], scale, self.fmt, self.granularity)

    @property
    def nbytes(self) -> int:
        """Payload plus scales, in bytes."""
        return (self.data.numel() * self.data.element_size()
                + self.scale.numel() * self.scale.element_size())


def concat(a: Quantized, b: Quantized) -> Quantized:
    """Tokens of `a`, then those of `b` (dim -2), as a cache appends them: per-token scales
    are concatenated too; a shared scale must be the same in both."""
    if (a.fmt, a.granularity) != (b.fmt, b.granularity):
        raise ValueError(f"cannot append {b.fmt}/{b.granularity} to {a.fmt}/{a.granularity}; "
                         "pass tensors quantized the same way")
    if a.granularity in ("token", "token_head"):
        scale = torch.cat([a.scale, b.scale], dim=-2)
    elif torch.equal(a.scale, b.scale):
        scale = a.scale
    else:
        raise ValueError("a shared (static) scale must be the same in both; pass the scale "
                         "the cache was written with")
    return Quantized(torch.cat([a.data, b.data], dim=-2), scale, a.fmt, a.granularity)


def _static_scale(scale: float | Tensor, x: Tensor, granularity: str) -> Tensor:
    group = list(x.shape)
    for d in _reduce_dims(x.dim(), granularity):
        group[d] = 1
    s = torch.as_tensor(scale, dtype=torch.float32, device=x.device)
    if not bool(torch.isfinite(s).all() and (s > 0).all()):
        raise ValueError("a static scale must be finite and positive; pass amax_scale(calibration)")
    try:
        return s.expand(group).clone() if s.dim() else s.reshape([1] * x.dim())
    except RuntimeError:
        raise ValueError(f"scale of shape {tuple(s.shape)} does not fit granularity "
                         f"{granularity!r} (one scale per group of shape {group}); pass "
                         f"amax_scale(calibration, fmt, {granularity!r})") from None


def quantize(x: Tensor, fmt: str = "e4m3", granularity: str = "tensor",
             scale: float | Tensor | None = None) -> Quantized:
    """Store `x` in `fmt` with one scale per `granularity` group ([..., H, T, D] layout).

    `granularity`: "tensor" (one scale), "head" (per KV head, shared by batch and tokens),
    "token" (per token, shared by heads), "token_head" (per token and head).
    `scale=None` uses the dynamic amax scale; otherwise a static scale (a float, or a tensor
    of the group shape, e.g. from `amax_scale` on calibration data). Out-of-range values
    saturate to the format's ±max.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; pass one of {', '.join(FORMATS)}")
    if not isinstance(x, Tensor) or not x.is_floating_point():
        raise ValueError("quantize takes a floating-point torch tensor; pass x.float()")
    if not bool(torch.isfinite(x).all()):
        raise ValueError("x holds inf or NaN; pass finite values (fix the overflow upstream)")
    s = (amax_scale(x, fmt, granularity) if scale is None
         else _static_scale(scale, x, granularity))
    top = grid_max(fmt)
    y = (x.float() / s).clamp(-top, top)
    data = y.round().to(torch.int8) if fmt == "int8" else y.to(FORMATS[fmt])
    return Quantized(data, s, fmt, granularity)


def storage_error(x: Tensor, fmt: str = "e4m3", scale: float | Tensor | None = None,
                  granularity: str = "tensor") -> dict[str, float]:
    """What storing `x` in float format `fmt` costs: the relative L2 error of the round trip,
    and the fractions of values below the smallest normal after scaling ("subnormal": fewer
    mantissa bits, or zero), flushed to zero, and clipped at ±max. `scale` as in `quantize`."""
    info = format_info(fmt)
    q = quantize(x, fmt, granularity, scale)
    scaled, back = (x.float() / q.scale).abs(), q.dequantize()
    return {"rel_error": ((back - x.float()).norm() / x.float().norm()).item(),
            "subnormal": (scaled < info.min_normal).float().mean().item(),
            "zero": ((back == 0) & (x != 0)).float().mean().item(),
            "clipped": (scaled > info.max).float().mean().item()}


def amax_records(x: Tensor) -> list[int]:
    """Token positions (dim -2 of [..., T, D]) where the running amax over everything stored so
    far rises. A dynamic per-tensor scale would have to re-quantize every earlier token at each
    of them; a cache written token by token cannot, so engines use static scales or per-token
    (or per-block) dynamic ones."""
    if x.dim() < 2:
        raise ValueError(f"pass K or V as [..., tokens, head_dim], got {x.dim()} dims")
    per_token = x.detach().abs().float().movedim(-2, 0).flatten(1).amax(1)
    running = per_token.cummax(0).values
    return [0, *(torch.nonzero(running[1:] > running[:-1]).flatten() + 1).tolist()]


# --- attention that reads quantized K/V -------------------------------------------------------

KV = Tensor | Quantized


def _block(x: KV, start: int, stop: int, groups: int) -> Tensor:
    """Tokens start..stop-1 in fp32, each KV head repeated for its `groups` query heads."""
    t = x.tokens(start, stop).dequantize() if isinstance(x, Quantized) else x[..., start:stop, :]
    return t.float().repeat_interleave(groups, dim=-3)


def attention(q: Tensor, k: KV, v: KV, causal: bool = False, block: int = 4096) -> Tensor:
    """Softmax attention of q [B, Hq, Tq, D] over K/V [B, Hkv, T, D], in fp32.

    K and V may be `Quantized`: they are dequantized `block` tokens at a time, as a fused
    kernel does in its tiles, so no full-precision copy of the cache is ever made. With
    `causal`, the queries are the last Tq positions. GQA: Hq must be a multiple of Hkv.
    """
    n_q, n_kv, seq = q.shape[-3], k.shape[-3], k.shape[-2]
    if n_q % n_kv:
        raise ValueError(f"{n_q} query heads are not a multiple of {n_kv} KV heads; "
                         "pass K/V whose head count divides the query heads")
    g, starts = n_q // n_kv, range(0, seq, block)
    scores = torch.cat([q.float() @ _block(k, i, i + block, g).transpose(-1, -2)
                        for i in starts], dim=-1) / math.sqrt(q.shape[-1])
    if causal:
        t_q = q.shape[-2]
        mask = torch.ones(t_q, seq, dtype=torch.bool, device=q.device).tril(seq - t_q)
        scores = scores.masked_fill(~mask, float("-inf"))
    p = scores.softmax(dim=-1)
    return sum(p[..., i:i + block] @ _block(v, i, i + block, g) for i in starts)


# --- K/V with outlier heads: where the damage comes from -----------------------------------

@dataclass(frozen=True)
class OutlierKV:
    """Decode-step queries and a K/V cache whose `outlier_heads` are `magnitude` times larger.

    Each head's cache hides one needle: the key at `needles[b, h]` is the one its query
    matches best (in full precision).
    """

    q: Tensor  # [B, H, 1, D]
    k: Tensor  # [B, H, T, D], RoPE-rotated
    v: Tensor
    needles: Tensor  # [B, H]
    outlier_heads: tuple[int, ...]
    magnitude: float = 1.0


def outlier_kv(magnitude: float = 1.0, batch: int = 2, n_heads: int = 8, seq_len: int = 256,
               head_dim: int = 64, outlier_heads: tuple[int, ...] = (0,), margin: float = 4.0,
               seed: int = 0) -> OutlierKV:
    """Synthetic K/V with outlier heads, built the way real keys look.

    Keys have a few large channels before RoPE (rotated into their pair partners by position);
    one needle key per head is raised `margin` standard deviations above the best other key
    along its query. Then K and V of `outlier_heads` are multiplied by `magnitude`.
    """
    if not (math.isfinite(magnitude) and magnitude >= 1):
        raise ValueError(f"magnitude is how many times larger the outlier heads are; pass >= 1, "
                         f"got {magnitude}")
    if not all(0 <= h < n_heads for h in outlier_heads):
        raise ValueError(f"outlier_heads must index 0..{n_heads - 1}, got {outlier_heads}")
    gen = torch.Generator().manual_seed(seed)
    shape = (batch, n_heads, seq_len, head_dim)
    k = torch.randn(shape, generator=gen)
    k[..., :2] += 6.0  # massive key channels
    angles = torch.arange(seq_len + 1)[:, None].float() * plain_inv_freq(head_dim, 1e4)[0]
    cos, sin = torch.cat((angles, angles), -1).cos(), torch.cat((angles, angles), -1).sin()
    k = rotate(k, cos[:-1], sin[:-1])
    q = rotate(torch.randn(batch, n_heads, 1, head_dim, generator=gen), cos[-1:], sin[-1:])
    u = q / q.norm(dim=-1, keepdim=True)
    along = (k @ u.transpose(-1, -2)).squeeze(-1)  # [B, H, T]
    needles = torch.randint(seq_len, (batch, n_heads), generator=gen)
    lift = along.amax(-1) + margin * along.std(-1) - along.gather(-1, needles[..., None])[..., 0]
    k.scatter_add_(-2, needles[..., None, None].expand(-1, -1, 1, head_dim), lift[..., None, None]
                   * u)
    v = torch.randn(shape, generator=gen)
    gain = torch.ones(1, n_heads, 1, 1)
    gain[:, list(outlier_heads)] = magnitude
    return OutlierKV(q, k * gain, v * gain, needles, tuple(outlier_heads), float(magnitude))


CALIBRATION_TOKENS = 64  # static scales are calibrated on shorter prompts than they serve

RECIPES = {  # name: (granularity, where the scale comes from), as engines offer them (chapter 5)
    "static 1.0": ("tensor", "one"),  # vLLM, SGLang, TensorRT-LLM without calibrated scales
    "static per-tensor": ("tensor", "served"),  # calculate_kv_scales, llm-compressor, ModelOpt
    "static per-head": ("head", "served"),  # vLLM: llm-compressor + FlashAttention backend
    "static per-tensor, missed": ("tensor", "missed"),  # calibration never saw the outlier
    "static per-head, missed": ("head", "missed"),
    "dynamic per-token": ("token", "dynamic"),  # each token's scale from itself, as written
    "dynamic per-token-head": ("token_head", "dynamic"),
}


@functools.lru_cache(maxsize=32)
def _calibration(magnitude: float, outlier_heads: tuple[int, ...], batch: int, n_heads: int,
                 head_dim: int) -> OutlierKV:
    """Calibration K/V from the served distribution: another seed, `CALIBRATION_TOKENS` long."""
    return outlier_kv(magnitude, batch, n_heads, CALIBRATION_TOKENS, head_dim, outlier_heads,
                      seed=99)


def _scale(fmt: str, granularity: str, source: str, calibration: Tensor) -> float | Tensor | None:
    """The scale a recipe passes to `quantize`: 1.0, None (dynamic) or calibrated."""
    if source == "one":
        return 1.0
    return None if source == "dynamic" else amax_scale(calibration, fmt, granularity)


def outlier_damage(kv: OutlierKV, fmt: str = "e4m3", recipe: str = "static per-tensor",
                   calibration: OutlierKV | None = None) -> dict[str, float]:
    """Attention-output error and needle retrieval after storing `kv` with `recipe`.

    Returns relative L2 output errors (mean over the normal heads, and over the outlier
    heads) and the fraction of (sequence, head) pairs whose top attention weight still falls
    on the needle ("retrieval"; also split by normal and outlier heads). Calibrated static
    scales come from `calibration`; by default, from the served distribution (`outlier_kv` of
    the same magnitude, another seed, `CALIBRATION_TOKENS` tokens), or, for the "missed"
    recipes, from the same data without the outlier.
    """
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; pass one of {', '.join(RECIPES)}")
    granularity, source = RECIPES[recipe]
    b, h, _, d = kv.k.shape
    cal = calibration or _calibration(1.0 if source == "missed" else kv.magnitude,
                                      kv.outlier_heads, b, h, d)
    qk, qv = (quantize(x, fmt, granularity, _scale(fmt, granularity, source, c))
              for x, c in ((kv.k, cal.k), (kv.v, cal.v)))
    out, ref = attention(kv.q, qk, qv), attention(kv.q, kv.k, kv.v)
    err = ((out - ref).norm(dim=-1) / ref.norm(dim=-1)).squeeze(-1).mean(0)  # per head
    top = (kv.q @ qk.dequantize().transpose(-1, -2)).squeeze(-2).argmax(-1)
    outlier = torch.zeros(err.shape[0], dtype=torch.bool)
    outlier[list(kv.outlier_heads)] = True
    return {"err_normal": err[~outlier].mean().item(), "err_outlier": err[outlier].mean().item(),
            "retrieval": (top == kv.needles).float().mean().item(),
            "retrieval_normal": (top == kv.needles)[:, ~outlier].float().mean().item(),
            "retrieval_outlier": (top == kv.needles)[:, outlier].float().mean().item()}
