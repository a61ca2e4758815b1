"""Chapter 5's pictures: where a value lands in e4m3, e5m2 and int8, and the grid a scale gives.

`fp8_picture("bits")`: the sign, exponent and mantissa bits that torch's own float8 dtypes store
for a value (and int8's two's complement), with the stored value, its error and its region
(zero, subnormal, normal, saturated), at scale 1.0 (the engines' default). `fp8_picture("grid")`:
the K values of a normal head next to the chapter's outlier head (`lclib.fp8.outlier_kv`) before
and after `lclib.fp8.quantize` under each scaling granularity, and the representable levels of
its coarsest scale: how many of its values collapse to zero or onto a few levels.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from .. import fp8
from ..explorer import Dropdown, LogSlider
from ..explorers.fp8 import EXPLORER_FORMATS, MAGNITUDES
from ..picture import Frame, Picture
from ..svg import el, svg

W = 760
FLOATS = ("e4m3", "e5m2")
SIGNS = ("+", "−")
DECADES_PER_STEP = 0.5  # the value slider moves by √10
REGIONS = ("zero", "subnormal", "normal", "saturated")


def value_range() -> tuple[float, float]:
    """Powers of ten below half the smallest subnormal (rounds to 0) and above the largest value
    of every format: the value slider's ends."""
    smallest = min(fp8.format_info(f).min_subnormal for f in FLOATS) / 2
    largest = max(fp8.grid_max(f) for f in EXPLORER_FORMATS)
    return 10.0 ** math.floor(math.log10(smallest)), 10.0 ** math.ceil(math.log10(largest))


# --- (a) the bits of one value ----------------------------------------------------------------

@dataclass(frozen=True)
class Landing:
    """Value `x` stored at scale 1.0 in `fmt`: its 8 bits (torch's), the stored value, the
    relative error and the region it lands in."""

    fmt: str
    x: float
    bits: str  # 8 characters, most significant first
    stored: float
    region: str  # one of REGIONS

    @property
    def rel_error(self) -> float:
        return abs(self.stored - self.x) / abs(self.x) if self.x else 0.0


def bias(fmt: str) -> int:
    """Exponent bias of float format `fmt`: the smallest normal is 2^(1 − bias)."""
    return round(1 - math.log2(fp8.format_info(fmt).min_normal))


def land(x: float, fmt: str) -> Landing:
    """Store `x` with `lclib.fp8.quantize(..., scale=1.0)` and read torch's bits back."""
    q = fp8.quantize(torch.tensor([float(x)]), fmt, scale=1.0)
    bits = format(int(q.data.view(torch.uint8)[0]), "08b")
    stored = float(q.dequantize()[0])
    if abs(x) > fp8.grid_max(fmt):
        region = "saturated"
    elif stored == 0:
        region = "zero"
    elif fmt != "int8" and abs(stored) < fp8.format_info(fmt).min_normal:
        region = "subnormal"
    else:
        region = "normal"
    return Landing(fmt, float(x), bits, stored, region)


def _fields(fmt: str) -> list[tuple[str, int, str]]:
    """(label, width in bits, CSS class) of each field, most significant first."""
    if fmt == "int8":
        return [("sign (−128)", 1, "lc-fill-3"), ("two's complement, 64 … 1", 7, "lc-fill-2")]
    info = fp8.format_info(fmt)
    return [("sign", 1, "lc-fill-3"), (f"exponent ({info.exponent_bits} bits)",
                                        info.exponent_bits, "lc-fill-0"),
            (f"mantissa ({info.mantissa_bits})", info.mantissa_bits, "lc-fill-1")]


def _num(v: float) -> str:
    return (f"{v:,.4g}" if abs(v) < 1e4 else f"{v:,.0f}").replace("-", "−")


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def decode(landing: Landing) -> str:
    """How the bits give the stored value, in words and numbers."""
    if landing.fmt == "int8":
        return f"= {_num(landing.stored)} (the integer itself: scale 1.0)"
    info, b = fp8.format_info(landing.fmt), bias(landing.fmt)
    s, e = landing.bits[0] == "1", int(landing.bits[1:1 + info.exponent_bits], 2)
    m, steps = int(landing.bits[1 + info.exponent_bits:], 2), 2**info.mantissa_bits
    sign = "−" if s else ""
    if e == 0:
        return f"= {sign}2^(1−{b}) × {m}/{steps} = {sign}{_num(abs(landing.stored))}"
    return f"= {sign}2^({e}−{b}) × (1 + {m}/{steps}) = {sign}{_num(abs(landing.stored))}"


def _limits(fmt: str) -> list[tuple[float, str, str]]:
    """(upper end of |x|, name, CSS class) of each region on the value axis."""
    top = fp8.grid_max(fmt)
    if fmt == "int8":
        return [(0.5, "→ 0", "lc-idle"), (top, "integers", "lc-fill-2"),
                (math.inf, "saturates", "lc-fill-warn")]
    info = fp8.format_info(fmt)
    return [(info.min_subnormal / 2, "→ 0", "lc-idle"),
            (info.min_normal, "subnormal", "lc-fill-5"), (top, "normal", "lc-fill-2"),
            (math.inf, "saturates", "lc-fill-warn")]


AXIS = (170, 745)  # x of the value axis (log |x|)


def _ax(v: float) -> float:
    lo, hi = value_range()
    t = (math.log10(v) - math.log10(lo)) / (math.log10(hi) - math.log10(lo))
    return AXIS[0] + min(max(t, 0.0), 1.0) * (AXIS[1] - AXIS[0])


def _strip(fmt: str, y: float) -> list[str]:
    """The regions of `fmt` along |x|, labelled."""
    out, start = [], value_range()[0]
    for end, name, cls in _limits(fmt):
        x0, x1 = _ax(start), _ax(min(end, value_range()[1]))
        out.append(el("path", d=f"M{x0:.1f} {y}H{x1:.1f}v14H{x0:.1f}z", class_=cls))
        if x1 - x0 > 7 * len(name):
            out.append(el("text", text=name, x=round((x0 + x1) / 2), y=y + 11,
                          class_=None if cls == "lc-idle" else "lc-fp8-on"))
        start = end
    return [el("g", *out, class_="lc-fp8-small", text_anchor="middle")]


def _row(landing: Landing, y: float) -> str:
    """One format: name, the 8 bit boxes by field, the decoding, the region strip."""
    boxes, labels, xs, i = [], [], [], 0
    for label, width, cls in _fields(landing.fmt):
        x0 = AXIS[0] + 30 * i
        xs += [x0 + 30 * j + 13.5 for j in range(width)]
        boxes.append(el("path", d="".join(f"M{x0 + 30 * j} {y}h27v27h-27z"
                                          for j in range(width)), class_=cls))
        labels.append(el("text", text=label, x=x0 + 15 * width - 1.5, y=y + 40))
        i += width
    err = f"error {100 * landing.rel_error:.3g}%" if landing.rel_error else "exact"
    return el("g", el("text", text=landing.fmt, x=8, y=y + 19, class_="lc-fp8-name"),
              el("text", text=str(fp8.FORMATS[landing.fmt]).removeprefix("torch."), x=8,
                 y=y + 34, class_="lc-fp8-small"),
              *boxes, el("g", *labels, class_="lc-fp8-small", text_anchor="middle"),
              el("text", text=landing.bits, x=" ".join(f"{x:g}" for x in xs), y=y + 19,
                 text_anchor="middle", class_="lc-fp8-bit"),
              el("text", text=f"stored {_num(landing.stored)}  {decode(landing)}", x=420,
                 y=y + 12),
              el("text", text=f"{err} · lands: {landing.region.upper()}", x=420, y=y + 30,
                 class_="lc-fp8-name"),
              *_strip(landing.fmt, y + 50), data_format=landing.fmt)


def bits_frame(x: float) -> Frame:
    """`x` (signed) in e4m3, e5m2 and int8 at scale 1.0: bits, stored value, error, region."""
    if not (math.isfinite(x) and x != 0):
        raise ValueError(f"pass a finite non-zero value, got {x!r}")
    landings = [land(x, f) for f in EXPLORER_FORMATS]
    rows = [_row(lnd, 12 + 86 * k) for k, lnd in enumerate(landings)]
    lo, hi = value_range()
    ticks = [el("text", text=_power(e), x=_ax(10.0**e), y=282,
                text_anchor="middle", class_="lc-fp8-small")
             for e in range(round(math.log10(lo)), round(math.log10(hi)) + 1, 2)]
    mark = _ax(abs(x))
    marker = [el("path", d="".join(f"M{mark:.1f} {54 + 86 * k}v28" for k in range(3))
                 + f"M{mark:.1f} 258v12", class_="lc-ink", stroke_width=2),
              el("text", text=f"|x| = {_num(abs(x))}", x=mark, y=298, text_anchor="middle",
                 class_="lc-fp8-name")]
    label = f"The bits of {_num(x)} in e4m3, e5m2 and int8 at scale 1.0"
    caption = (f"x = {_num(x)} at scale 1.0: " + "; ".join(
        f"{lnd.fmt} {lnd.bits} → {_num(lnd.stored)}, {lnd.region}" for lnd in landings)
        + f". Each strip is |x| on a log axis, {_num(lo)} to {_num(hi)}.")
    return Frame(svg(W, 306, *rows, *ticks, *marker, label=label), caption=caption)


_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def _power(e: int) -> str:
    return "1" if e == 0 else "10" + str(e).translate(_SUPERSCRIPT)


def _bits_draw(value: float, sign: str) -> Frame:
    return bits_frame(-value if sign == "−" else value)


# --- (b) the grid of a head next to an outlier -------------------------------------------------

GRANULARITIES = ("tensor", "head", "token", "token_head", "channel")
SHARES = {  # what one scale covers, for the K of [batch, heads, tokens, channels]
    "tensor": "one scale for all heads, tokens and channels",
    "head": "one scale per KV head (all its tokens and channels)",
    "token": "one scale per token, shared by all heads",
    "token_head": "one scale per token and head",
    "channel": "one scale per channel and head, shared by all tokens (as KIVI stores keys)",
}
TOKENS = 128  # tokens of the synthetic cache (the chapter's has 256; the grid is the same)
HEAD = 1  # the normal head drawn: next to the outlier head 0 of `outlier_kv`
BINS = 101  # odd: one bin is centred on 0
PLOT = (60, 84, 740, 250)  # left, top, right, bottom of the histogram


@functools.lru_cache(maxsize=8)
def _keys(magnitude: float) -> torch.Tensor:
    """K [1, heads, tokens, head_dim] of the chapter's synthetic cache with outlier head 0."""
    return fp8.outlier_kv(float(magnitude), batch=1, seq_len=TOKENS).k


def quantize(k: torch.Tensor, fmt: str, granularity: str) -> fp8.Quantized:
    """`lclib.fp8.quantize` at `granularity`; "channel" is "token_head" on K transposed to
    [..., channels, tokens] (one scale per head and channel), transposed back."""
    if granularity not in GRANULARITIES:
        raise ValueError(f"unknown granularity {granularity!r}; pass one of "
                         f"{', '.join(GRANULARITIES)}")
    if granularity != "channel":
        return fp8.quantize(k, fmt, granularity)
    q = fp8.quantize(k.transpose(-1, -2), fmt, "token_head")
    return fp8.Quantized(q.data.transpose(-1, -2), q.scale.transpose(-1, -2), fmt, granularity)


def levels(fmt: str, scale: float) -> torch.Tensor:
    """Every value `fmt` stores with `scale`, sorted: all finite float8 codes (torch's own
    decoding of the 256 bit patterns), or int8's -127..127, times the scale."""
    if fmt == "int8":
        codes = torch.arange(-fp8.INT8_MAX, fp8.INT8_MAX + 1).float()
    else:
        codes = torch.arange(256, dtype=torch.uint8).view(fp8.FORMATS[fmt]).float()
        codes = codes[torch.isfinite(codes)]
    return torch.unique(codes * scale)


@dataclass(frozen=True)
class Grid:
    """Head `HEAD`'s K before and after quantizing, and the levels of its coarsest scale."""

    before: torch.Tensor  # [tokens, channels]
    after: torch.Tensor
    scale: float  # the largest of the scales covering the head
    levels: torch.Tensor  # representable values at that scale within the head's range
    amax_head: int  # the head holding the amax of that scale's group

    @property
    def zeros(self) -> int:
        return int(((self.after == 0) & (self.before != 0)).sum())

    @property
    def distinct(self) -> int:
        return int(torch.unique(self.after).numel())

    @property
    def rel_error(self) -> float:
        return float((self.after - self.before).norm() / self.before.norm())


def grid(magnitude: float, fmt: str, granularity: str) -> Grid:
    """Quantize the chapter's K (outlier head 0 `magnitude`× larger) and look at head 1."""
    k = _keys(magnitude)
    q = quantize(k, fmt, granularity)
    t, c = divmod(int(q.scale.expand_as(k)[0, HEAD].argmax()), k.shape[-1])
    mask = torch.zeros_like(k, dtype=torch.bool)  # the elements sharing that scale
    mask[tuple(slice(None) if n == 1 else i for n, i in zip(q.scale.shape, (0, HEAD, t, c),
                                                             strict=True))] = True
    scale = float(q.scale.expand_as(k)[0, HEAD, t, c])
    before = k[0, HEAD]
    lv = levels(fmt, scale)
    return Grid(before, q.dequantize()[0, HEAD], scale, lv[lv.abs() <= before.abs().max()],
                int((k.abs() * mask)[0].flatten(1).amax(1).argmax()))


def _hist(values: torch.Tensor, top: float) -> list[int]:
    return torch.histc(values.flatten(), BINS, -top, top).long().tolist()


def _bars(counts: list[int], y_max: float) -> str:
    """Path of histogram bars (clipped at the plot's top)."""
    left, top, right, bottom = PLOT
    w = (right - left) / BINS
    d = "".join(f"M{left + i * w:.1f} {bottom}v{-min(n / y_max, 1) * (bottom - top):.1f}"
                f"h{w:.1f}V{bottom}z" for i, n in enumerate(counts) if n)
    return d


def _outline(counts: list[int], y_max: float) -> str:
    left, top, right, bottom = PLOT
    w = (right - left) / BINS
    ys = [bottom - min(n / y_max, 1) * (bottom - top) for n in counts]
    return f"M{left} {bottom}" + "".join(f"V{y:.1f}h{w:.1f}" for y in ys) + f"V{bottom}"


def _comb(lv: torch.Tensor, top: float) -> str:
    """Ticks at the levels' pixels below the axis, merged where they touch."""
    left, _, right, bottom = PLOT
    px = sorted({round(left + (v + top) / (2 * top) * (right - left)) for v in lv.tolist()})
    runs, d = [], ""
    for p in px:
        if runs and p - runs[-1][1] <= 1:
            runs[-1][1] = p
        else:
            runs.append([p, p])
    for a, b in runs:
        d += f"M{a - 0.5} {bottom + 6}h{b - a + 1}v12h{a - b - 1}z"
    return d


def grid_frame(magnitude: float, fmt: str, granularity: str) -> Frame:
    """Head 1's K values before (outline) and stored (bars), the levels of its coarsest scale."""
    g = grid(magnitude, fmt, granularity)
    top = float(g.before.abs().max()) * 1.04
    before, after = _hist(g.before, top), _hist(g.after, top)
    y_max = max(before) * 1.1
    left, ptop, right, bottom = PLOT
    n = g.before.numel()
    peak = max(range(BINS), key=lambda i: after[i])
    clipped = after[peak] > y_max
    w = (right - left) / BINS
    scope = ("its one scale" if granularity in ("tensor", "head")
             else "the coarsest of its scales")
    parts = [
        el("text", text=f"per-{granularity.replace('_', '-')}: {SHARES[granularity]}", x=8,
           y=18, class_="lc-fp8-name"),
        el("text", text=f"head {HEAD}'s {n:,} K values in {fmt}: {g.zeros:,} stored as 0 "
           f"({g.zeros / n:.0%}), {_plural(g.distinct, 'distinct stored value')}, error "
           f"{100 * g.rel_error:.3g}%", x=8, y=38),
        el("text", text=f"{scope}: {g.scale:.3g} = amax (from head {g.amax_head}) / "
           f"{fp8.grid_max(fmt):,g}", x=8, y=56, class_="lc-fp8-small"),
        el("path", d=_bars(after, y_max), class_="lc-fill-0"),
        el("path", d=_outline(before, y_max), class_="lc-ink", stroke_width=1.5),
        el("path", d=f"M{left} {bottom}H{right}", class_="lc-ink"),
        el("path", d=_comb(g.levels, top), class_="lc-fill-1"),
        el("text", text=f"{_plural(g.levels.numel(), 'representable level')} of {scope} "
           f"within the head's range (±{_num(top / 1.04)})", x=left, y=bottom + 32,
           class_="lc-fp8-small"),
        el("text", text="bars: stored values", x=right, y=ptop + 4, text_anchor="end"),
        el("text", text="line: before (fp32)", x=right, y=ptop + 20, text_anchor="end"),
        el("text", text=_num(-top / 1.04), x=left, y=bottom + 46, text_anchor="middle",
           class_="lc-fp8-small"),
        el("text", text="0", x=(left + right) / 2, y=bottom + 46, text_anchor="middle",
           class_="lc-fp8-small"),
        el("text", text=_num(top / 1.04), x=right, y=bottom + 46, text_anchor="middle",
           class_="lc-fp8-small"),
    ]
    if clipped:
        parts.append(el("text", text=f"↑ {after[peak]:,} values here", x=left + (peak + 0.5) * w,
                        y=ptop - 6, text_anchor="middle", class_="lc-fp8-name"))
    label = (f"Head {HEAD}'s K values before and after {fmt} storage with per-{granularity} "
             f"scales: {g.zeros} of {n} become 0, {_plural(g.distinct, 'distinct value')} remain")
    caption = (f"Outlier head 0 is {magnitude:,g}× larger. Per-{granularity.replace('_', '-')} "
               f"scales in {fmt}: head {HEAD} keeps {_plural(g.distinct, 'distinct value')}, "
               f"{g.zeros:,} of {n:,} round to 0, error {100 * g.rel_error:.3g}%.")
    return Frame(svg(W, 308, *parts, label=label), caption=caption)


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Tiny tensors: on a busy machine, torch's thread pool only adds waiting."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _drawn(picture: Picture) -> Picture:
    with _one_thread():
        picture.frames  # noqa: B018 (computes and caches every frame)
    return picture


def fp8_picture(view: str = "bits") -> Picture:
    """`"bits"`: a value's bits in e4m3, e5m2 and int8 (value slider, sign); `"grid"`: a
    normal head's K values under each scaling granularity beside an outlier head (granularity,
    format, outlier magnitude)."""
    if view == "bits":
        lo, hi = value_range()
        steps = round((math.log10(hi) - math.log10(lo)) / DECADES_PER_STEP) + 1
        return _drawn(Picture(_bits_draw, [
            LogSlider("value", "|x|", lo, hi, steps, fmt=_num, default=3.16),
            Dropdown("sign", "sign", SIGNS)],
            title="Where a value lands: the bits torch stores at scale 1.0"))
    if view == "grid":
        return _drawn(Picture(grid_frame, [
            LogSlider("magnitude", "outlier head 0 is this many times larger", MAGNITUDES[0],
                      MAGNITUDES[-1], len(MAGNITUDES), fmt="{:,}×".format, default=10_000),
            Dropdown("fmt", "format", EXPLORER_FORMATS),
            Dropdown("granularity", "one scale per", GRANULARITIES)],
            title="The grid a scale gives: a normal head beside an outlier head"))
    raise ValueError(f"unknown view {view!r}; pass 'bits' or 'grid'")
