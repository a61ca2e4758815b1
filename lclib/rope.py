"""RoPE frequencies and their scaling for long context: default, linear (PI), dynamic NTK, YaRN,
llama3, with the numbers of Hugging Face transformers' RoPE initialisation.

    inv_freq, attention_factor = inv_freq(128, 1e6, {"rope_type": "yarn", "factor": 4.0,
                                                      "original_max_position_embeddings": 32768})

`rope_scaling` is a Hugging Face style dict ("rope_type" or the older "type" key). The tensors
are float32 and computed in the same order of operations as transformers 5.x
(`transformers.modeling_rope_utils.ROPE_INIT_FUNCTIONS`), so they match it bit for bit. Where
transformers only warns about a bad config (factor < 1, beta_fast <= beta_slow, unknown keys),
this module raises ValueError. The helpers explain a scaling per dimension: wavelengths, YaRN's
correction range and ramp, and which dimensions are extrapolated, ramped or interpolated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import sympy as sp
import torch
from torch import Tensor

YARN_BETA_FAST, YARN_BETA_SLOW = 32.0, 1.0  # YaRN paper defaults (Peng et al. 2023, §3.2)
KEYS = {  # the rope_scaling keys each type accepts, besides rope_type/type and rope_theta
    "default": set(),
    "linear": {"factor"},
    "dynamic": {"factor"},
    "yarn": {"factor", "original_max_position_embeddings", "attention_factor", "beta_fast",
             "beta_slow", "mscale", "mscale_all_dim", "truncate"},
    "llama3": {"factor", "original_max_position_embeddings", "low_freq_factor",
               "high_freq_factor"},
}
COMMON_KEYS = {"rope_type", "type", "rope_theta", "partial_rotary_factor"}
TREATMENTS = ("extrapolated", "ramp", "interpolated")


# --- validation ------------------------------------------------------------------------------


def _number(params: dict[str, Any], key: str, default: float | None = None,
            minimum: float | None = None) -> float | None:
    """params[key] as a float (or `default` when absent or None), at least `minimum`."""
    value = params.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"rope_scaling[{key!r}] must be a finite number, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"rope_scaling[{key!r}] must be >= {minimum}, got {value!r}")
    return float(value)


def rope_type(rope_scaling: dict[str, Any] | None) -> str:
    """The scaling type named by "rope_type" (or the older "type"); "default" for None."""
    if rope_scaling is None:
        return "default"
    if not isinstance(rope_scaling, dict):
        raise ValueError(f"rope_scaling must be a dict like {{'rope_type': 'yarn', 'factor': 4.0}} "
                         f"or None, got {type(rope_scaling).__name__}")
    names = {rope_scaling[k] for k in ("rope_type", "type") if k in rope_scaling}
    if len(names) > 1:
        raise ValueError(f"rope_scaling names two types {sorted(names)}; pass one 'rope_type'")
    name = names.pop() if names else "default"
    if name not in KEYS:
        raise ValueError(f"unknown rope_type {name!r}; pass one of {', '.join(KEYS)}")
    unknown = set(rope_scaling) - KEYS[name] - COMMON_KEYS
    if unknown:
        raise ValueError(f"rope_type {name!r} does not take {sorted(unknown)}; it takes "
                         f"{sorted(KEYS[name])}")
    return name


def _rotary_dim(head_dim: int, rope_theta: float, params: dict[str, Any]) -> int:
    """The rotated width int(head_dim * partial_rotary_factor), after checking the basics."""
    if isinstance(head_dim, bool) or not isinstance(head_dim, int) or head_dim < 2:
        raise ValueError(f"head_dim must be an int >= 2, got {head_dim!r}")
    theta = params.get("rope_theta", rope_theta)
    if theta != rope_theta:
        raise ValueError(f"rope_scaling['rope_theta']={theta} disagrees with rope_theta="
                         f"{rope_theta}; pass the same base in both, or only the argument")
    if isinstance(rope_theta, bool) or not isinstance(rope_theta, int | float) or not (
            1 < rope_theta < math.inf):
        raise ValueError(f"rope_theta must be a finite number > 1, got {rope_theta!r}")
    partial = _number(params, "partial_rotary_factor", 1.0, minimum=0.0)
    dim = int(head_dim * partial)
    if dim < 2 or dim % 2:
        raise ValueError(f"the rotary width int(head_dim * partial_rotary_factor) = {dim} must be "
                         "an even number >= 2; pass an even head_dim")
    return dim


def _original_length(params: dict[str, Any], max_position_embeddings: int | None) -> int:
    """original_max_position_embeddings, defaulting (as transformers does) to max_position."""
    value = params.get("original_max_position_embeddings", max_position_embeddings)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError("pass rope_scaling['original_max_position_embeddings'] (the pretraining "
                         f"length) or max_position_embeddings as a positive int, got {value!r}")
    return value


# --- the frequencies -------------------------------------------------------------------------


def _exponents(dim: int) -> Tensor:
    return torch.arange(0, dim, 2, dtype=torch.int64).to(dtype=torch.float) / dim


def _default(dim: int, base: float) -> Tensor:
    return 1.0 / (base ** _exponents(dim))


def plain_inv_freq(head_dim: int, rope_theta: float, rope_scaling: dict[str, Any] | None = None,
                   max_position_embeddings: int | None = None) -> tuple[Tensor, float]:
    """Unscaled RoPE: inv_freq[i] = theta^(-2i/d), attention factor 1.

    Same signature and return as `lclib.rope.inv_freq`, which replaces it for scaled RoPE.
    """
    if rope_scaling is not None:
        raise ValueError("plain_inv_freq does not scale RoPE; pass rope_scaling=None, or "
                         "rope_fn=lclib.rope.inv_freq to apply a rope_scaling dict")
    exponents = torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim
    return (rope_theta ** -exponents).float(), 1.0


def get_mscale(scale: float, mscale: float = 1.0) -> float:
    """YaRN's attention temperature: 0.1·mscale·ln(scale) + 1, and 1 for scale <= 1."""
    return 1.0 if scale <= 1 else 0.1 * mscale * math.log(scale) + 1.0


def correction_dim(n_rotations: float, head_dim: int, rope_theta: float, length: int) -> float:
    """The (fractional) dimension pair whose frequency turns `n_rotations` times in `length`."""
    return head_dim * math.log(length / (n_rotations * 2 * math.pi)) / (2 * math.log(rope_theta))


def correction_range(head_dim: int, rope_theta: float, original_max_position_embeddings: int,
                     beta_fast: float = YARN_BETA_FAST, beta_slow: float = YARN_BETA_SLOW,
                     truncate: bool = True) -> tuple[float, float]:
    """YaRN's ramp bounds (low, high): pairs below `low` turn more than `beta_fast` times
    within the original length and keep their frequency; pairs above `high` turn fewer than
    `beta_slow` times and are interpolated. Floored/ceiled when `truncate`, clamped to
    [0, head_dim - 1]."""
    if not 0 < beta_slow < beta_fast:
        raise ValueError(f"need 0 < beta_slow < beta_fast, got beta_slow={beta_slow}, "
                         f"beta_fast={beta_fast}; the paper uses 1 and 32")
    low = correction_dim(beta_fast, head_dim, rope_theta, original_max_position_embeddings)
    high = correction_dim(beta_slow, head_dim, rope_theta, original_max_position_embeddings)
    if truncate:
        low, high = math.floor(low), math.ceil(high)
    return max(low, 0), min(high, head_dim - 1)


def yarn_ramp(low: float, high: float, n_pairs: int) -> Tensor:
    """Per pair i: clamp((i - low) / (high - low), 0, 1); 0 keeps the frequency, 1 divides it
    by the factor. low == high is widened by 0.001 (as transformers does)."""
    if high == low:
        high += 0.001
    return torch.clamp((torch.arange(n_pairs, dtype=torch.float32) - low) / (high - low), 0, 1)


def _yarn(dim: int, base: float, p: dict[str, Any], max_pos: int | None) -> tuple[Tensor, float]:
    original = _original_length(p, max_pos)
    factor = _number(p, "factor", minimum=1.0)
    if factor is None:
        if max_pos is None:
            raise ValueError("yarn needs rope_scaling['factor'] (or max_position_embeddings "
                             "to derive it as max_position_embeddings / original)")
        factor = max_pos / original
    attention = _number(p, "attention_factor", minimum=0.0)
    mscale, mscale_all = _number(p, "mscale"), _number(p, "mscale_all_dim")
    if attention is None:
        attention = (get_mscale(factor, mscale) / get_mscale(factor, mscale_all)
                     if mscale and mscale_all else get_mscale(factor))
    beta_fast = _number(p, "beta_fast", YARN_BETA_FAST)
    beta_slow = _number(p, "beta_slow", YARN_BETA_SLOW)
    truncate = p.get("truncate", True)
    if not isinstance(truncate, bool):
        raise ValueError(f"rope_scaling['truncate'] must be True or False, got {truncate!r}")
    low, high = correction_range(dim, base, original, beta_fast, beta_slow, truncate)
    pos_freqs = base ** _exponents(dim)
    extrapolation, interpolation = 1.0 / pos_freqs, 1.0 / (factor * pos_freqs)
    keep = 1 - yarn_ramp(low, high, dim // 2)
    return interpolation * (1 - keep) + extrapolation * keep, float(attention)


def _llama3(dim: int, base: float, p: dict[str, Any], max_pos: int | None) -> Tensor:
    original = _original_length(p, max_pos)
    factor = _number(p, "factor", minimum=1.0)
    low_f, high_f = _number(p, "low_freq_factor"), _number(p, "high_freq_factor")
    if factor is None or low_f is None or high_f is None or not 0 < low_f < high_f:
        raise ValueError("llama3 needs factor >= 1 and 0 < low_freq_factor < high_freq_factor; "
                         "Llama 3.1 uses factor 8, low_freq_factor 1, high_freq_factor 4")
    inv_freq = _default(dim, base)
    wavelen = 2 * math.pi / inv_freq
    low_wavelen, high_wavelen = original / low_f, original / high_f
    scaled = torch.where(wavelen > low_wavelen, inv_freq / factor, inv_freq)
    smooth = (original / wavelen - low_f) / (high_f - low_f)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = ~(wavelen < high_wavelen) * ~(wavelen > low_wavelen)
    return torch.where(medium, smoothed, scaled)


def inv_freq(head_dim: int, rope_theta: float, rope_scaling: dict[str, Any] | None = None,
             max_position_embeddings: int | None = None,
             seq_len: int | None = None) -> tuple[Tensor, float]:
    """RoPE inverse frequencies [head_dim // 2] (float32) and the attention factor.

    The attention factor multiplies cos and sin (so attention logits by its square), as in
    transformers. `seq_len` matters only for "dynamic", whose base grows once the sequence
    passes `max_position_embeddings` (default: that length, i.e. no change).
    """
    name = rope_type(rope_scaling)
    params = rope_scaling or {}
    dim = _rotary_dim(head_dim, rope_theta, params)
    base = float(rope_theta)
    if name in ("linear", "dynamic") and _number(params, "factor", minimum=1.0) is None:
        raise ValueError(f"{name} scaling needs rope_scaling['factor'] >= 1")
    if name == "linear":
        return _default(dim, base) / params["factor"], 1.0
    if name == "dynamic":
        return _default(dim, ntk_base(dim, base, params["factor"], max_position_embeddings,
                                      seq_len)), 1.0
    if name == "yarn":
        return _yarn(dim, base, params, max_position_embeddings)
    if name == "llama3":
        return _llama3(dim, base, params, max_position_embeddings), 1.0
    return _default(dim, base), 1.0


def ntk_base(head_dim: int, rope_theta: float, factor: float, max_position_embeddings: int | None,
             seq_len: int | None = None) -> float:
    """Dynamic NTK's enlarged base at `seq_len`:
    theta·(factor·seq/max_pos − (factor − 1))^(d/(d−2)), unchanged up to max_pos."""
    if not isinstance(max_position_embeddings, int) or max_position_embeddings < 1:
        raise ValueError("dynamic scaling needs max_position_embeddings (a positive int)")
    if head_dim <= 2:
        raise ValueError(f"dynamic scaling needs head_dim > 2, got {head_dim}")
    if seq_len is not None and (not isinstance(seq_len, int) or seq_len < 1):
        raise ValueError(f"seq_len must be a positive int or None, got {seq_len!r}")
    seq = max(seq_len or max_position_embeddings, max_position_embeddings)
    stretch = factor * seq / max_position_embeddings - (factor - 1)
    return rope_theta * stretch ** (head_dim / (head_dim - 2))


def stale_key_angle(head_dim: int, rope_theta: float, max_position_embeddings: int,
                    key_position: int, written_at: int, read_at: int,
                    factor: float = 1.0) -> Tensor:
    """Per pair, the angle (radians, float64) by which dynamic NTK's rotation of a cached key is
    off: the key at `key_position` was rotated when the sequence had `written_at` tokens, the
    query rotates with the base for `read_at` tokens, so the score sees
    key_position · (θ_i(read_at) − θ_i(written_at)) on top of the relative angle."""
    if not 0 <= key_position < written_at <= read_at:
        raise ValueError("need 0 <= key_position < written_at <= read_at (a key is cached "
                         f"before it is read), got {key_position}, {written_at}, {read_at}")
    scaling = {"rope_type": "dynamic", "factor": factor}
    old, new = (inv_freq(head_dim, rope_theta, scaling, max_position_embeddings, n)[0].double()
                for n in (written_at, read_at))
    return key_position * (new - old)


def rotate(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Apply RoPE (the Llama "rotate half" layout) to x [B, H, T, D]."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return x * cos + torch.cat((-x2, x1), dim=-1) * sin


# --- explaining a scaling per dimension ------------------------------------------------------


def wavelengths(head_dim: int, rope_theta: float) -> list[float]:
    """Tokens per full turn of each dimension pair i: 2π·theta^(2i/d) (float64)."""
    return [2 * math.pi * rope_theta ** (2 * i / head_dim) for i in range(head_dim // 2)]


def classify(scaled: Tensor, original: Tensor, factor: float, rtol: float = 1e-4) -> list[str]:
    """Per pair: "extrapolated" (frequency kept), "interpolated" (divided by `factor`) or
    "ramp" (in between), from the ratio scaled / original."""
    ratio = (scaled.double() / original.double()).tolist()
    return ["extrapolated" if math.isclose(r, 1, rel_tol=rtol)
            else "interpolated" if math.isclose(r, 1 / factor, rel_tol=rtol) else "ramp"
            for r in ratio]


def per_dimension(head_dim: int, rope_theta: float, rope_scaling: dict[str, Any] | None,
                  max_position_embeddings: int | None = None) -> dict[str, list]:
    """One row per dimension pair: wavelength (tokens), turns within the original length,
    frequency ratio scaled / original, and the treatment (see `classify`)."""
    scaled, _ = inv_freq(head_dim, rope_theta, rope_scaling, max_position_embeddings)
    original, _ = inv_freq(head_dim, rope_theta)
    params = rope_scaling or {}
    length = params.get("original_max_position_embeddings", max_position_embeddings)
    factor = params.get("factor") or 1.0
    waves = wavelengths(head_dim, rope_theta)
    return {"pair": list(range(head_dim // 2)), "wavelength": waves,
            "turns": [length / w if length else math.nan for w in waves],
            "ratio": (scaled.double() / original.double()).tolist(),
            "treatment": classify(scaled, original, factor)}


# --- checking what a runtime applies ---------------------------------------------------------


@dataclass(frozen=True)
class RuntimeCheck:
    """A runtime's inv_freq against the one its config implies."""

    matches: bool
    max_rel_error: float
    applied_factor: float  # original / runtime frequency of the slowest pair
    expected_factor: float

    def __str__(self) -> str:
        verdict = "matches the config" if self.matches else "DOES NOT match the config"
        return (f"runtime {verdict}: slowest pair scaled by {self.applied_factor:.4g} "
                f"(config implies {self.expected_factor:.4g}); max relative error "
                f"{self.max_rel_error:.2e}")


def check_runtime(runtime_inv_freq: Any, head_dim: int, rope_theta: float,
                  rope_scaling: dict[str, Any] | None,
                  max_position_embeddings: int | None = None, rtol: float = 1e-5) -> RuntimeCheck:
    """Compare `runtime_inv_freq` (e.g. `model.model.rotary_emb.inv_freq`) with the config's."""
    expected, _ = inv_freq(head_dim, rope_theta, rope_scaling, max_position_embeddings)
    runtime = torch.as_tensor(runtime_inv_freq, dtype=torch.float64).flatten()
    if runtime.shape != expected.shape:
        raise ValueError(f"runtime inv_freq has {runtime.numel()} entries, the config implies "
                         f"{expected.numel()}; pass the rotary inv_freq of one layer")
    original, _ = inv_freq(head_dim, rope_theta)
    err = ((runtime - expected.double()).abs() / expected.double()).max().item()
    return RuntimeCheck(err <= rtol, err, (original[-1] / runtime[-1]).item(),
                        (original[-1] / expected[-1]).item())


def transformers_451_scaling(rope_scaling: dict[str, Any],
                             max_position_embeddings: int) -> dict[str, Any]:
    """The YaRN config transformers 4.51 effectively used: when the dict had
    original_max_position_embeddings, it replaced `factor` with
    max_position_embeddings / original_max_position_embeddings (huggingface/transformers
    issue 38224, fixed by PR 40320)."""
    if rope_type(rope_scaling) != "yarn" or "original_max_position_embeddings" not in rope_scaling:
        return dict(rope_scaling)
    return {**rope_scaling,
            "factor": max_position_embeddings / rope_scaling["original_max_position_embeddings"]}


# --- RoPE in sympy ---------------------------------------------------------------------------


def derive_relative_position() -> dict[str, sp.Expr]:
    """One rotated pair in sympy: (R(mθ)q)·(R(nθ)k) equals (R((m−n)θ)q)·k, a function of the
    offset m − n alone. Returns the two expressions and their simplified difference (0)."""
    q1, q2, k1, k2, m, n, theta = sp.symbols("q_1 q_2 k_1 k_2 m n theta", real=True)

    def rot(angle: sp.Expr) -> sp.Matrix:
        return sp.Matrix([[sp.cos(angle), -sp.sin(angle)], [sp.sin(angle), sp.cos(angle)]])

    q, k = sp.Matrix([q1, q2]), sp.Matrix([k1, k2])
    rotated = ((rot(m * theta) * q).T * (rot(n * theta) * k))[0]
    relative = ((rot((m - n) * theta) * q).T * k)[0]
    return {"rotated": rotated, "relative": sp.expand(relative),
            "difference": sp.expand(rotated - relative, trig=True)}
