"""Chapter 6's picture: what PI, NTK-aware, YaRN and llama3 scaling do to each RoPE pair.

Per rotary pair i (0 = fastest): its wavelength 2π·θ^(2i/d) against the training window and the
served one (top), and the factor the scaling divides its frequency by (bottom), from
`lclib.rope.inv_freq`, each pair labelled kept / ramp / interpolated by `lclib.rope.classify`.
YaRN's ramp bounds come from `lclib.rope.correction_range`, llama3's band from its two
wavelength thresholds. Models: TinyLM (`lclib.tinylm.CONFIG`) and Qwen2.5-72B
(`lclib.models`, its config.json).
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass
from typing import Any

from .. import rope
from ..bench.rope import scaling_for
from ..explorer import Dropdown, Slider
from ..explorers.rope import FACTORS
from ..models import get_model
from ..picture import Frame, Picture
from ..svg import el, svg
from ..tinylm import CONFIG

MODELS = {"qwen2.5-72b": "Qwen2.5-72B", "tinylm": "TinyLM"}
METHODS = {"pi": "PI (linear)", "ntk": "NTK-aware (base change)", "yarn": "YaRN",
           "llama3": "llama3"}
LABELS = {"extrapolated": "kept", "ramp": "ramp", "interpolated": "interpolated"}
CLASSES = {"extrapolated": "lc-fill-0", "ramp": "lc-fill-1", "interpolated": "lc-fill-2"}
W, H = 760, 440
X0, X1 = 90, 740  # the pairs' axis
WAVE = (40, 170)  # top and bottom of the wavelength panel
FACTOR_TOP = 262  # y of "×1" in the factor panel
PX_PER_HALVING = 24  # a bar this long divides the frequency by 2
HALVINGS = round(math.log2(max(FACTORS)))


@dataclass(frozen=True)
class Head:
    """What RoPE scaling needs of a model: head width, base, training window."""

    name: str
    head_dim: int
    rope_theta: float
    original: int  # the training window (original_max_position_embeddings)
    source: str


def head(model: str) -> Head:
    """TinyLM's or Qwen2.5-72B's RoPE geometry, from lclib's configs."""
    if model == "tinylm":
        return Head(MODELS[model], CONFIG.head_dim, CONFIG.rope_theta,
                    CONFIG.max_position_embeddings, CONFIG.source)
    if model == "qwen2.5-72b":
        m = get_model(model)
        return Head(MODELS[model], m.head_dim, m.rope_theta,
                    m.rope_scaling["original_max_position_embeddings"], m.source)
    raise ValueError(f"unknown model {model!r}; pass one of {', '.join(MODELS)}")


def scaling(method: str, factor: float, original: int) -> dict[str, Any]:
    """The rope_scaling dict of `method` for `factor`× the training window: chapter 6's
    experiment's (`lclib.bench.rope.scaling_for`), and llama3 with Llama 3.1's band
    (low/high_freq_factor from its config.json, `lclib.models`)."""
    if method == "llama3":
        band = get_model("llama-3.1-8b").rope_scaling
        return {**band, "factor": factor, "original_max_position_embeddings": original}
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; pass one of {', '.join(METHODS)}")
    return scaling_for(method, factor, original)


@dataclass(frozen=True)
class Pairs:
    """Per pair: wavelength (tokens), scaled / original frequency, `classify`'s treatment."""

    wavelength: list[float]
    ratio: list[float]
    treatment: list[str]


@functools.lru_cache(maxsize=64)
def pairs(model: str, method: str, factor: float) -> Pairs:
    """`lclib.rope.inv_freq` of `method` over the plain frequencies, pair by pair. NTK-aware is
    transformers' "dynamic" evaluated at factor × the training window (as the chapter's
    experiment serves it)."""
    h = head(model)
    served = round(factor * h.original)
    scaled, _ = rope.inv_freq(h.head_dim, h.rope_theta, scaling(method, factor, h.original),
                              h.original, seq_len=served)
    plain, _ = rope.inv_freq(h.head_dim, h.rope_theta)
    return Pairs(rope.wavelengths(h.head_dim, h.rope_theta),
                 (scaled.double() / plain.double()).tolist(), rope.classify(scaled, plain, factor))


def _x(i: float, n: int) -> float:
    return X0 + (i + 0.5) * (X1 - X0) / n


def _wave_y(w: float, top: float) -> float:
    t = math.log(w / (2 * math.pi)) / math.log(top / (2 * math.pi))
    return WAVE[1] - min(max(t, 0.0), 1.0) * (WAVE[1] - WAVE[0])


def _wave_panel(h: Head, p: Pairs, method: str, factor: float) -> list[str]:
    """Bars of the wavelengths, the scaled ones as ticks, the windows and thresholds."""
    n, served = len(p.ratio), factor * h.original
    top = 2 * math.pi * h.rope_theta * max(FACTORS) * 2  # the slowest pair ÷32, with room
    bw = round(0.7 * (X1 - X0) / n)
    bars = {t: "" for t in CLASSES}
    for i, (w, t) in enumerate(zip(p.wavelength, p.treatment, strict=True)):
        bars[t] += f"M{_x(i, n) - bw / 2:.0f} {WAVE[1]}V{_wave_y(w, top):.0f}h{bw}V{WAVE[1]}z"
    ticks = "".join(f"M{_x(i, n) - bw / 2 - 1:.0f} {_wave_y(w / r, top):.0f}h{bw + 2}"
                    for i, (w, r) in enumerate(zip(p.wavelength, p.ratio, strict=True)))
    lines = [(h.original, "training window L0"), (served, "served window s × L0")]
    if method == "yarn":
        lines.append((h.original / rope.YARN_BETA_FAST,
                      f"turns {rope.YARN_BETA_FAST:g}× in training (β_fast)"))
    if method == "llama3":
        s = scaling(method, factor, h.original)
        lines += [(h.original / s["high_freq_factor"], "kept below (L0 / high_freq_factor)"),
                  (h.original / s["low_freq_factor"], "divided above (L0 / low_freq_factor)")]
    out = [*(el("path", d=d, class_=CLASSES[t], fill_opacity=0.45) for t, d in bars.items() if d),
           el("path", d=ticks, class_="lc-ink", stroke_width=2),
           el("text", text="wavelength (tokens, log)", x=8, y=WAVE[0] - 8,
              class_="lc-rope-small")]
    merged: dict[int, tuple[float, list[str]]] = {}  # lines that coincide share one label
    for w, text in sorted(lines):
        merged.setdefault(round(_wave_y(w, top)), (w, []))[1].append(text)
    last = math.inf
    for y, (w, texts) in merged.items():
        right = last - y < 12  # too close to the previous label: write this one at the right
        out += [el("path", d=f"M{X0} {y}H{X1}", class_="lc-ink", stroke_dasharray="5 3"),
                el("text", text=f"{'; '.join(texts)}: {w:,.0f}", x=X1 - 4 if right else X0 + 4,
                   y=y - 3, text_anchor="end" if right else None, class_="lc-rope-small")]
        last = math.inf if right else y
    return out


def _runs(treatment: list[str]) -> list[tuple[str, int, int]]:
    """(treatment, first pair, last pair) of each run of equal treatments."""
    out, i = [], 0
    for t, group in itertools.groupby(treatment):
        k = len(list(group))
        out.append((t, i, i + k - 1))
        i += k
    return out


def _factor_panel(p: Pairs, factor: float) -> list[str]:
    """Bars hanging from ×1: PX_PER_HALVING per halving of the pair's frequency, by band."""
    n = len(p.ratio)
    bw = 0.7 * (X1 - X0) / n
    paths = {t: "" for t in CLASSES}
    for i, (r, t) in enumerate(zip(p.ratio, p.treatment, strict=True)):
        length = PX_PER_HALVING * math.log2(1 / r) + 2  # a 2-unit stub for kept pairs
        paths[t] += (f"M{_x(i, n) - bw / 2:.1f} {FACTOR_TOP - 2}v{length:.2f}h{bw:.1f}"
                     f"V{FACTOR_TOP - 2}z")
    out = [el("path", d=d, class_=CLASSES[t], data_treatment=t) for t, d in paths.items() if d]
    for k in range(HALVINGS + 1):
        y = FACTOR_TOP + PX_PER_HALVING * k
        out += [el("path", d=f"M{X0} {y}H{X1}", class_="lc-faint"),
                el("text", text="×1 (kept)" if k == 0 else f"÷{2**k}", x=X0 - 4, y=y + 4,
                   text_anchor="end", class_="lc-rope-small")]
    for t, a, b in _runs(p.treatment):
        label = LABELS[t] + (f" ÷{factor:g}" if t == "interpolated" else "")
        text = f"{label}: {a}–{b}" if b > a else f"{label}: {a}"
        x0, x1 = _x(a, n) - bw / 2, _x(b, n) + bw / 2
        half = 3.6 * len(text)  # about half the label's width: keep it inside the axis
        out += [el("path", d=f"M{x0:.1f} {FACTOR_TOP - 14}h{x1 - x0:.1f}", class_="lc-ink"),
                el("text", text=text, x=min(max((x0 + x1) / 2, X0 + half), X1 - half),
                   y=FACTOR_TOP - 18, text_anchor="middle", class_="lc-rope-band")]
    out.append(el("text", text="frequency ÷", x=8, y=FACTOR_TOP - 30, class_="lc-rope-small"))
    return out


def _pair_axis(n: int) -> list[str]:
    y = FACTOR_TOP + PX_PER_HALVING * HALVINGS + 18
    every = 8 if n > 32 else 4
    ticks = [el("text", text=str(i), x=_x(i, n), y=y, text_anchor="middle",
                class_="lc-rope-small") for i in range(0, n, every)]
    return [*ticks, el("text", text="rotary pair i (0 = fastest)", x=(X0 + X1) / 2, y=y + 16,
                       text_anchor="middle", class_="lc-rope-small")]


def _bounds(h: Head, n: int) -> list[str]:
    """YaRN's correction range: the ramp's two ends, dashed, named."""
    low, high = rope.correction_range(h.head_dim, h.rope_theta, h.original)
    y1 = FACTOR_TOP + PX_PER_HALVING * HALVINGS
    out = []
    for i, text in ((low, f"low = {low} (β_fast)"), (high, f"high = {high} (β_slow)")):
        out += [el("path", d=f"M{_x(i, n):.1f} {WAVE[1] + 4}V{y1}", class_="lc-ink",
                   stroke_dasharray="2 3"),
                el("text", text=text, x=_x(i, n), y=WAVE[1] + 18, text_anchor="middle",
                   class_="lc-rope-small")]
    return out


def rope_frame(model: str, method: str, factor: float) -> Frame:
    """One model, one scaling, one factor: wavelengths and per-pair frequency factors."""
    h, p = head(model), pairs(model, method, factor)
    n = len(p.ratio)
    counts = {t: p.treatment.count(t) for t in CLASSES}
    served = round(factor * h.original)
    title = (f"{h.name} (d = {h.head_dim}, θ = {h.rope_theta:,.0f}), {METHODS[method]} "
             f"×{factor:g}: {h.original:,} → {served:,} tokens")
    body = [el("text", text=title, x=8, y=16, class_="lc-rope-band"),
            *_wave_panel(h, p, method, factor), *_factor_panel(p, factor), *_pair_axis(n)]
    if method == "yarn":
        body += _bounds(h, n)
    summary = ", ".join(f"{counts[t]} {LABELS[t]}" for t in CLASSES)
    caption = f"{h.name}, {METHODS[method]} ×{factor:g}: {summary} (of {n} pairs)."
    if method == "yarn":
        low, high = rope.correction_range(h.head_dim, h.rope_theta, h.original)
        caption += (f" correction_range puts the ramp's ends at pair {low}, the last to turn "
                    f"more than {rope.YARN_BETA_FAST:g}× in {h.original:,} tokens, and pair "
                    f"{high}, the first to turn less than {rope.YARN_BETA_SLOW:g}×.")
    caption += (" Top: each pair's wavelength (bar) and its scaled wavelength (tick); bottom: "
                "what its frequency is divided by.")
    return Frame(svg(W, H, *body, label=f"RoPE pairs of {h.name} under {METHODS[method]} "
                     f"×{factor:g}: {summary}"), caption=caption)


def rope_picture() -> Picture:
    """Dropdowns: model and scaling method; slider: the factor s (the explorer's values)."""
    return Picture(rope_frame, [
        Dropdown("model", "model", list(MODELS), fmt=MODELS.get),
        Dropdown("method", "scaling", list(METHODS), fmt=METHODS.get, default="yarn"),
        Slider("factor", "factor s", FACTORS, fmt="{:g}×".format, default=4.0)],
        title="RoPE scaling, pair by pair: which frequencies are kept, ramped or divided")
