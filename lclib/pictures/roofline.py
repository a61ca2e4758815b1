"""Chapters 1 and 2's picture: the roofline with the chapter's model placed on it.

Five kernels of one model sit on one GPU's roof (attainable FLOP/s = min(peak, intensity x HBM
bandwidth)): prefill's weight matmuls and attention over the whole prompt, and a decode step's
weight matmuls (batch B), its attention (one query per request at context S) and the whole
step. Drag the context and the batch: prefill moves right of the ridge, decode stays left.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from ..cost import Roofline, attention_roofline, linear_roofline
from ..explorer import Dropdown, Slider
from ..explorers.parts import context_slider
from ..hardware import get_gpu
from ..models import get_model
from ..picture import Frame, Picture
from ..svg import el, svg
from ..units import fmt_tokens

# batch sizes from one request to past the ridge (Llama-3.3-70B's weight matmuls reach an H100's
# ridge at a few hundred tokens per step: chapter 1)
ROOFLINE_BATCHES = (1, 4, 16, 64, 256, 1024)
# context grids (steps, lo, hi) within the size limit (each frame is a whole SVG), both holding
# the chapters' 128K: every doubling for one GPU, every 4x from 2K to 512K for two
EVERY_DOUBLING, EVERY_4X = (11, 2**10, 2**20), (5, 2**11, 2**19)
X_RANGE = (0.5, 2e6)  # FLOPs per byte: batch-1 decode (~1) to a 1M-token prefill (~5e5)
Y_RANGE = (0.5e12, 3e15)  # FLOP/s: an A100's bandwidth at x = 0.5 to above every peak
W, H = 760, 450
PLOT = (70, 30, 740, 300)  # left, top, right, bottom of the axes, in SVG units


@dataclass(frozen=True)
class Point:
    """One kernel on the roofline: a short name, its phase, and lclib's FLOPs and bytes."""

    name: str
    phase: str  # "prefill" or "decode"
    roofline: Roofline


def roofline_points(model: str, seq_len: int, batch: int) -> list[Point]:
    """Prefill of one `seq_len`-token prompt and one decode step of `batch` requests at
    `seq_len` tokens: the weight matmuls and attention of each, and the whole decode step."""
    prefill_attn = attention_roofline(model, seq_len)
    decode_attn = attention_roofline(model, seq_len, 1)  # one request; each reads its own KV
    decode_lin = linear_roofline(model, batch)
    step = Roofline(flops=decode_lin.flops + batch * decode_attn.flops,
                    bytes=decode_lin.bytes + batch * decode_attn.bytes)
    return [
        Point(f"prefill, weight matmuls ({fmt_tokens(seq_len)} tokens)", "prefill",
              linear_roofline(model, seq_len)),
        Point(f"prefill, attention ({fmt_tokens(seq_len)} tokens, causal)", "prefill",
              prefill_attn),
        Point(f"decode, weight matmuls (batch {batch})", "decode", decode_lin),
        Point(f"decode, attention at {fmt_tokens(seq_len)} (same at any batch)", "decode",
              decode_attn),
        Point(f"decode, whole step ({batch} × {fmt_tokens(seq_len)} tokens)", "decode", step),
    ]


def attainable(intensity: float, gpu: str) -> float:
    """The roof: FLOP/s a kernel of this intensity can reach on `gpu` (bf16 dense)."""
    g = get_gpu(gpu)
    return min(g.peak_flops("bf16"), intensity * g.hbm_bandwidth)


def _scale(v: float, lo: float, hi: float, a: float, b: float) -> int:
    return round(a + (b - a) * math.log(v / lo) / math.log(hi / lo))


def x_of(intensity: float) -> int:
    """The x of an intensity (FLOP/B) in the picture's SVG units."""
    return _scale(intensity, *X_RANGE, PLOT[0], PLOT[2])


def y_of(flops: float) -> int:
    """The y of a rate (FLOP/s) in the picture's SVG units."""
    return _scale(flops, *Y_RANGE, PLOT[3], PLOT[1])


def _si(v: float) -> str:
    for factor, unit in ((1e6, "M"), (1e3, "K")):
        if v >= factor:
            return f"{v / factor:g}{unit}"
    return f"{v:g}"


def _axes() -> list[str]:
    """The frame, decade ticks (x: FLOP/B; y: TFLOP/s) and the axis titles."""
    left, top, right, bottom = PLOT
    xs, ys = [10.0**k for k in range(7)], [10.0**k for k in range(12, 16)]
    ticks = "".join(f"M{x_of(v)} {bottom}v4" for v in xs) + "".join(
        f"M{left} {y_of(v)}h-4" for v in ys)
    mid = (top + bottom) // 2
    return [
        el("rect", x=left, y=top, width=right - left, height=bottom - top, class_="lc-faint"),
        el("path", d=ticks, class_="lc-ink", data_ticks_x=",".join(f"{v:g}" for v in xs),
           data_ticks_y=",".join(f"{v:g}" for v in ys)),
        el("g", *(el("text", x=x_of(v), y=bottom + 16, text=_si(v)) for v in xs),
           el("text", x=(left + right) // 2, y=bottom + 32,
              text="arithmetic intensity (FLOPs per byte moved to or from HBM), log scale"),
           el("text", x=14, y=mid, transform=f"rotate(-90 14 {mid})",
              text="attainable TFLOP/s (bf16 dense), log scale"), text_anchor="middle"),
        el("g", *(el("text", x=left - 7, y=y_of(v) + 4, text=_si(v / 1e12)) for v in ys),
           text_anchor="end"),
    ]


def _roof(gpu: str) -> list[str]:
    """The roof min(peak, intensity x bandwidth), the ridge, and the two sides named."""
    g = get_gpu(gpu)
    peak, ridge = g.peak_flops("bf16"), g.ridge_point("bf16")
    lo, hi = X_RANGE
    pts = " ".join(f"{x_of(i)},{y_of(attainable(i, gpu))}" for i in (lo, ridge, hi))
    xr, sx, sy = x_of(ridge), x_of(ridge / 3), y_of(attainable(ridge / 3, gpu)) - 18
    tilt = round(math.degrees(math.atan2(y_of(1e13) - y_of(1e14), x_of(10) - x_of(1))))
    return [
        el("path", d=f"M{xr} {PLOT[1]}V{PLOT[3]}", class_="lc-faint", stroke_dasharray="4 3"),
        el("polyline", points=pts, class_="lc-ink", stroke_width=2.5, data_ridge=f"{ridge:.6g}"),
        el("text", x=xr + 5, y=PLOT[3] - 8, text=f"ridge {ridge:,.0f} FLOP/B"),
        el("text", x=xr - 6, y=PLOT[1] + 14, text_anchor="end", text="← memory-bound"),
        el("text", x=xr + 6, y=PLOT[1] + 14, text="compute-bound →"),
        el("text", x=(xr + PLOT[2]) // 2, y=y_of(peak) - 6, text_anchor="middle",
           text=f"{g.label or g.name}: peak {peak / 1e12:,.0f} TFLOP/s"),
        el("text", x=sx, y=sy, text_anchor="end", transform=f"rotate({-tilt} {sx} {sy})",
           text=f"{g.hbm_bandwidth / 1e12:g} TB/s × intensity"),
    ]


def fmt_intensity(i: float) -> str:
    """FLOPs per byte as the picture prints them: '5,083', '58,254', '15.9', '8'."""
    return f"{i:,.0f}" if i >= 100 else f"{i:.3g}"


BADGES = "①②③④⑤"  # each kernel's number, on the roof and in the legend
PHASE_FILL = {"prefill": "lc-fill-1", "decode": "lc-fill-0"}  # the legend names the phase too


def _marks(points: Sequence[Point], gpu: str) -> list[str]:
    """A dot on the roof per kernel with its number below it (stacked where they crowd, a
    leader line back to the dot); the legend says what each is, its intensity and its bound."""
    dots, badges, leaders, placed = [], [], [], []
    for badge, p in zip(BADGES, points, strict=True):
        i = p.roofline.intensity
        x, y = x_of(i), y_of(attainable(i, gpu))
        by = y + 24 + 20 * sum(1 for px in placed if abs(px - x) < 18)
        placed.append(x)
        leaders.append(f"M{x} {y + 4}V{by - 13}")
        dots.append(el("circle", cx=x, cy=y, r=5, class_=PHASE_FILL[p.phase],
                       data_intensity=f"{i:.6g}"))
        badges.append(el("text", x=x, y=by, text=badge))
    legend = [el("text", x=PLOT[0], y=PLOT[3] + 58 + 19 * n, data_bound=p.roofline.bound(gpu),
                 text=f"{badge} {p.name}: {fmt_intensity(p.roofline.intensity)} FLOP/B, "
                      f"{p.roofline.bound(gpu)}-bound")
              for n, (badge, p) in enumerate(zip(BADGES, points, strict=True))]
    return [el("path", d="".join(leaders), class_="lc-ink", stroke_width=0.8), *dots,
            el("g", *badges, text_anchor="middle", class_="lc-roof-badge"), *legend]


def roofline_frame(seq_len: int, batch: int, model: str, gpu: str) -> Frame:
    """The roof of `gpu` with `model`'s five kernels at this context and batch."""
    g, points = get_gpu(gpu), roofline_points(model, seq_len, batch)
    ridge = g.ridge_point("bf16")
    step = points[-1].roofline
    label = f"Roofline: {g.label or g.name}, {model}, {fmt_tokens(seq_len)} tokens, batch {batch}"
    attn = points[1].roofline
    caption = (f"{fmt_tokens(seq_len)} tokens, batch {batch}: prefill's attention runs at "
               f"{fmt_intensity(attn.intensity)} FLOP/B ({attn.bound(gpu)}-bound); the whole "
               f"decode step at {fmt_intensity(step.intensity)} FLOP/B, "
               f"{ridge / step.intensity:,.1f}× below the ridge ({ridge:,.0f})" if
               step.intensity < ridge else f"{step.intensity / ridge:,.1f}× past the ridge")
    caption += f" ({step.bound(gpu)}-bound)"
    return Frame(svg(W, H, *_axes(), *_roof(gpu), *_marks(points, gpu), label=label),
                 caption=caption)


def roofline_picture(model: str = "llama-3.3-70b", gpus: Sequence[str] = ("h100-sxm",),
                     batches: Sequence[int] = ROOFLINE_BATCHES,
                     context: tuple[int, int, int] = EVERY_DOUBLING) -> Picture:
    """The roofline with `model`'s prefill and decode placed on it; context and batch move the
    points, and a GPU dropdown appears when more than one GPU is passed (chapter 2 passes
    `KV_WALL_GPUS` and `context=EVERY_4X`)."""
    get_model(model)
    if not gpus:
        raise ValueError("pass at least one GPU name (one of lclib.GPUS)")
    gpus = tuple(get_gpu(g).name for g in gpus)
    controls = [context_slider(*context),
                Slider("batch", "batch (concurrent requests)", batches, fmt=str, default=16)]
    controls += [Dropdown("gpu", "GPU", gpus)] if len(gpus) > 1 else []

    def draw(seq_len: int, batch: int, gpu: str = gpus[0]) -> Frame:
        return roofline_frame(seq_len, batch, model, gpu)

    return Picture(draw, controls, title=f"The roofline: where {model}'s prefill and decode "
                   "kernels sit")


__all__ = ["BADGES", "EVERY_4X", "Point", "attainable", "fmt_intensity", "roofline_frame",
           "roofline_picture", "roofline_points", "x_of", "y_of"]
