"""Explorers: sliders over a grid of numbers that lclib computed in Python, drawn by vanilla JS.

An `Explorer` calls ``compute(**values)`` at every combination of its controls' values (the
grid), rounds and dedupes the results, and embeds them as JSON in one self-contained HTML block:
inline SVG charts and an inline script that only looks numbers up and draws them. No kernel, no
CDN, no files: it works on the static site and as notebook output. The formulas stay in Python;
`Explorer.widget()` drives ipywidgets from the same grid for live use in a notebook.

    ex = Explorer(compute, controls=[LogSlider("seq_len", "context (tokens)", 1024, 2**20)],
                  views=[Line(x="seq_len", y=["prefill_s"], y_label="seconds")],
                  readouts=[Readout("prefill_s", "prefill time", fmt="{:.3g} s".format)])
    ex.to_html(); ex.widget()
"""

from __future__ import annotations

import html
import io
import itertools
import json
import math
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from . import static

Value = int | float | str
State = Sequence[int]  # one index into each control's values

MAX_GRID_POINTS = 20_000
PALETTE = ("#56B4E9", "#E69F00", "#009E73", "#CC79A7", "#0072B2", "#999999")  # Okabe-Ito
CAPACITY_COLOR = "#D55E00"
WIDTH, HEIGHT = 460, 290
BOX = (74, 12, 448, 242)  # plot area: left, top, right, bottom (SVG user units)


def _is_number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _round_sig(v: float, digits: int) -> float:
    return float(f"{v:.{digits}g}")


def log_grid(lo: float, hi: float, steps: int = 21, snap: float | None = None) -> tuple:
    """`steps` log-spaced values from `lo` to `hi` (both included exactly), deduplicated.

    Inner values are rounded to multiples of `snap` (e.g. 1024 tokens) or, without it, to
    three significant figures; ints stay ints when `lo`, `hi` (and `snap`) are ints.
    """
    if not (_is_number(lo) and _is_number(hi) and 0 < lo < hi < math.inf):
        raise ValueError(f"log slider needs finite bounds 0 < lo < hi, got lo={lo!r}, hi={hi!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 2:
        raise ValueError(f"steps must be an int >= 2, got {steps!r}")
    if snap is not None and not (_is_number(snap) and 0 < snap < math.inf):
        raise ValueError(f"snap must be a positive number or None, got {snap!r}")
    integer = all(isinstance(v, int) for v in (lo, hi, snap if snap is not None else 1))
    inner = []
    for i in range(1, steps - 1):
        v = lo * (hi / lo) ** (i / (steps - 1))
        v = round(v / snap) * snap if snap else _round_sig(v, 3)
        v = round(v) if integer else _round_sig(v, 12)
        if lo < v < hi:
            inner.append(v)
    return (lo, *sorted(set(inner)), hi)


class Control:
    """A named argument of the compute function and the finite list of values it steps through.

    `fmt` turns a value into its display label (computed in Python, shown as is).
    """

    kind = "select"
    log = False

    def __init__(self, name: str, label: str, values: Sequence[Value],
                 fmt: Callable[[Any], str] = str, default: Value | None = None) -> None:
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"control name {name!r} must be a Python identifier "
                             "(it is passed to compute as a keyword)")
        values = tuple(values)
        if not values:
            raise ValueError(f"control {name!r} has no values; pass at least one")
        if len(set(values)) != len(values):
            raise ValueError(f"control {name!r} repeats a value in {values}; pass distinct values")
        self.name, self.label, self.values, self.fmt = name, label, values, fmt
        self.init = self._start(default)

    def _start(self, default: Value | None) -> int:
        if default is None:
            return 0
        if default not in self.values:
            raise ValueError(f"default {default!r} of {self.name!r} is not among its values; "
                             f"pass one of {self.values}")
        return self.values.index(default)

    @property
    def labels(self) -> list[str]:
        return [self.fmt(v) for v in self.values]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {len(self.values)} values)"


class Dropdown(Control):
    """A choice among `options` (model names, GPUs, dtypes); the first is the default."""

    def __init__(self, name: str, label: str, options: Sequence[Value],
                 fmt: Callable[[Any], str] = str, default: Value | None = None) -> None:
        super().__init__(name, label, options, fmt, default)


class Slider(Control):
    """A slider over increasing numeric `values`; starts at the middle or nearest `default`."""

    kind = "range"

    def __init__(self, name: str, label: str, values: Sequence[float],
                 fmt: Callable[[Any], str] = "{:,.4g}".format,
                 default: float | None = None) -> None:
        values = tuple(values)
        if not all(_is_number(v) and math.isfinite(v) for v in values) or any(
                a >= b for a, b in itertools.pairwise(values)):
            raise ValueError(f"slider {name!r} needs finite numbers in increasing order, "
                             f"got {values!r}")
        super().__init__(name, label, values, fmt, default)

    def _start(self, default: Value | None) -> int:
        if default is None:
            return len(self.values) // 2
        if not _is_number(default):
            raise ValueError(f"default of slider {self.name!r} must be a number, got {default!r}")
        return min(range(len(self.values)), key=lambda i: abs(self.values[i] - default))


class LogSlider(Slider):
    """A slider over `log_grid(lo, hi, steps, snap)`, drawn on a log axis in line charts."""

    log = True

    def __init__(self, name: str, label: str, lo: float, hi: float, steps: int = 21,
                 snap: float | None = None, fmt: Callable[[Any], str] = "{:,.4g}".format,
                 default: float | None = None) -> None:
        super().__init__(name, label, log_grid(lo, hi, steps, snap), fmt, default)

    def _start(self, default: Value | None) -> int:
        if default is not None and _is_number(default) and default > 0:
            return min(range(len(self.values)),
                       key=lambda i: abs(math.log(self.values[i] / default)))
        return super()._start(default)


@dataclass(frozen=True)
class Readout:
    """A key number shown as text: `fmt(value)` (Python-side), or the value if it is a string."""

    key: str
    label: str
    fmt: Callable[[Any], str] | None = None

    def text(self, value: Any) -> str:
        if self.fmt is not None:
            return str(self.fmt(value))
        return value if isinstance(value, str) else f"{value:,.4g}"


def _tick(v: float) -> str:
    return f"{v:,.6g}"


_SLACK = 1e-3  # data may pass the last tick by this fraction of a step (rounding to 4 digits)


def _nice_step(span: float, n: int = 5) -> float:
    raw = span / n
    mag = 10 ** math.floor(math.log10(raw))
    return next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw * (1 - _SLACK))


def _linear_axis(values: Sequence[float]) -> tuple[list[float], list[float]]:
    lo, hi = min(0.0, *values), max(0.0, *values)
    if hi == lo:
        hi = lo + 1
    step = _nice_step(hi - lo)
    a, b = math.floor(lo / step + _SLACK), math.ceil(hi / step - _SLACK)
    return [a * step, b * step], [_round_sig(k * step, 12) for k in range(a, b + 1)]


def _log_axis(values: Sequence[float]) -> tuple[list[float], list[float]]:
    positive = [v for v in values if v > 0] or [1.0]
    a = math.floor(math.log10(min(positive)))
    b = max(a + 1, math.ceil(math.log10(max(positive))))
    every = math.ceil((b - a) / 6)
    return [10.0**a, 10.0**b], [10.0**k for k in range(a, b + 1, every)]


def _x_ticks(control: Control, n: int = 6) -> list[int]:
    """Indices of up to `n` control values spread evenly along the (log) axis."""
    vals = control.values
    if len(vals) <= n:
        return list(range(len(vals)))
    f = math.log if control.log else float
    lo, hi = f(vals[0]), f(vals[-1])
    targets = (lo + (hi - lo) * k / (n - 1) for k in range(n))
    return sorted({min(range(len(vals)), key=lambda i: abs(f(vals[i]) - t)) for t in targets})


@dataclass(frozen=True, kw_only=True)
class _Chart:
    """What every chart shares: series keys, their labels and axes text, an optional capacity."""

    y: Sequence[str]
    labels: Sequence[str] = ()
    title: str = ""
    x_label: str = ""
    y_label: str = ""
    capacity: str | None = None
    capacity_label: str = "capacity"
    y_fmt: Callable[[float], str] = _tick

    def __post_init__(self) -> None:
        if isinstance(self.y, str) or not self.y:
            raise ValueError(f"{type(self).__name__}.y must be a non-empty list of keys")
        if self.labels and len(self.labels) != len(self.y):
            raise ValueError(f"pass one label per y key: {len(self.y)} keys, "
                             f"{len(self.labels)} labels")

    @property
    def keys(self) -> list[str]:
        return [*self.y, *([self.capacity] if self.capacity else [])]

    @property
    def colors(self) -> list[str]:
        return [PALETTE[i % len(PALETTE)] for i in range(len(self.y))]

    def legend(self) -> list[tuple[str, str, bool]]:
        """(color, label, dashed) per legend entry."""
        entries = [(c, lab, False) for c, lab in zip(self.colors, self.labels or self.y,
                                                     strict=True)]
        return entries + ([(CAPACITY_COLOR, self.capacity_label, True)] if self.capacity else [])

    def _spec(self, kind: str, ydom: list[float], yticks: list[float]) -> dict[str, Any]:
        return {"type": kind, "y": list(self.y), "colors": self.colors, "cap": self.capacity,
                "box": BOX, "ydom": ydom, "yticks": [[v, self.y_fmt(v)] for v in yticks]}


@dataclass(frozen=True, kw_only=True)
class Line(_Chart):
    """Curves of `y` keys over the whole axis of slider `x`, with a marker at its current value.

    The y axis is fixed over the whole grid, so switching a dropdown moves the curves.
    """

    x: str
    log_y: bool = False

    def spec(self, ex: Explorer) -> dict[str, Any]:
        a, control = ex.axis(self.x)
        values = [v for k in self.keys for v in ex.grid.columns[k] if v is not None]
        ydom, yticks = (_log_axis if self.log_y else _linear_axis)(values)
        vals = control.values
        return {**self._spec("line", ydom, yticks), "x": a, "logx": control.log,
                "logy": self.log_y, "xdom": [vals[0], vals[-1]],
                "xticks": [[vals[i], control.fmt(vals[i])] for i in _x_ticks(control)]}

    def plot(self, ax: Any, ex: Explorer, spec: dict[str, Any], state: State) -> None:
        a, control = ex.axis(self.x)
        i = state[a]
        for key, (color, label, _) in zip(self.y, self.legend(), strict=False):
            ys = [math.nan if y is None else y for y in ex.grid.curve(key, a, state)]
            ax.plot(control.values, ys, color=color, lw=2, label=label)
            ax.plot(control.values[i], ys[i], "o", color=color, mec="black")
        ax.axvline(control.values[i], color="gray", ls=":", lw=1)
        if self.capacity:
            ax.axhline(ex.grid.value(self.capacity, state), color=CAPACITY_COLOR, ls="--", lw=2,
                       label=self.capacity_label)
        ax.set_xscale("log" if control.log else "linear")
        ax.set_yscale("log" if self.log_y else "linear")
        ax.set_xticks(*zip(*spec["xticks"], strict=True))
        ax.set_xlim(spec["xdom"])
        _finish(ax, self, ex, spec)


@dataclass(frozen=True, kw_only=True)
class StackedBars(_Chart):
    """Bars stacking the `y` keys: one bar, or one per value of control `x` (current outlined)."""

    x: str | None = None

    def spec(self, ex: Explorer) -> dict[str, Any]:
        a = ex.axis(self.x)[0] if self.x else -1
        tops = [sum(vs) for vs in zip(*(ex.grid.columns[k] for k in self.y), strict=True)]
        cap = ex.grid.columns[self.capacity] if self.capacity else []
        ydom, yticks = _linear_axis([*tops, *cap])
        return {**self._spec("bars", ydom, yticks), "x": a}

    def plot(self, ax: Any, ex: Explorer, spec: dict[str, Any], state: State) -> None:
        a, control = ex.axis(self.x) if self.x else (-1, None)
        states = [_moved(state, a, i) for i in range(len(control.values))] if control else [state]
        xs = range(len(states))
        bottom = [0.0] * len(states)
        for key, (color, label, _) in zip(self.y, self.legend(), strict=False):
            heights = [ex.grid.value(key, s) for s in states]
            ax.bar(xs, heights, bottom=bottom, color=color, label=label, width=0.55)
            bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
        if control:
            ax.bar(state[a], bottom[state[a]], width=0.62, fill=False, lw=2)
        if self.capacity:
            ax.hlines([ex.grid.value(self.capacity, s) for s in states], [x - 0.4 for x in xs],
                      [x + 0.4 for x in xs], color=CAPACITY_COLOR, ls="--", lw=2,
                      label=self.capacity_label)
        ax.set_xticks(list(xs), control.labels if control else [""])
        _finish(ax, self, ex, spec)


def _finish(ax: Any, view: Line | StackedBars, ex: Explorer, spec: dict[str, Any]) -> None:
    """Fixed y axis, labels and legend of one matplotlib chart."""
    ax.set_ylim(spec["ydom"])
    ax.set_yticks(*zip(*spec["yticks"], strict=True))
    ax.minorticks_off()
    ax.set(title=view.title, xlabel=ex.x_label(view), ylabel=view.y_label)
    ax.legend(fontsize=8)


def _moved(state: State, axis: int, i: int) -> list[int]:
    return [i if a == axis else s for a, s in enumerate(state)]


@dataclass(frozen=True)
class Grid:
    """Compute results at every combination of control values, one flat list per key (C order)."""

    shape: tuple[int, ...]
    columns: dict[str, list[Value]]

    def index(self, state: State) -> int:
        i = 0
        for n, s in zip(self.shape, state, strict=True):
            i = i * n + s
        return i

    def value(self, key: str, state: State) -> Value:
        return self.columns[key][self.index(state)]

    def curve(self, key: str, axis: int, state: State) -> list[Value]:
        """Values of `key` along `axis`, the other controls held at `state`."""
        return [self.value(key, _moved(state, axis, i)) for i in range(self.shape[axis])]

    def compact(self, key: str) -> dict[str, list]:
        """`key`'s values over only the axes it depends on: {"d": axes, "v": flat values}."""
        col = self.columns[key]
        strides = [math.prod(self.shape[a + 1:]) for a in range(len(self.shape))]
        dims = [a for a, st in enumerate(strides)
                if any(col[i] != col[i - (i // st % self.shape[a]) * st] for i in range(len(col)))]
        flat = [col[sum(i * strides[a] for i, a in zip(idx, dims, strict=True))]
                for idx in itertools.product(*(range(self.shape[a]) for a in dims))]
        return {"d": dims, "v": flat}


class Explorer:
    """Controls, charts and readouts over a grid of `compute(**values)` results.

    `compute` returns a mapping with (at least) every key the views and readouts name.
    Numbers are rounded to `precision` significant digits before they are embedded.
    """

    def __init__(self, compute: Callable[..., Mapping[str, Any]], controls: Sequence[Control],
                 views: Sequence[Line | StackedBars] = (), readouts: Sequence[Readout] = (),
                 title: str = "", precision: int = 4) -> None:
        self.compute, self.controls = compute, tuple(controls)
        self.views, self.readouts, self.title = tuple(views), tuple(readouts), title
        self.precision = precision
        if not self.controls or not all(isinstance(c, Control) for c in self.controls):
            raise ValueError("pass controls=[LogSlider(...), Dropdown(...), ...] (at least one)")
        _distinct("control names", [c.name for c in self.controls])
        _distinct("readout keys", [r.key for r in self.readouts])
        if not self.views and not self.readouts:
            raise ValueError("pass at least one view (Line, StackedBars) or Readout")
        points = math.prod(len(c.values) for c in self.controls)
        if points > MAX_GRID_POINTS:
            raise ValueError(f"the grid has {points:,} points (max {MAX_GRID_POINTS:,}); "
                             "pass fewer slider steps or dropdown options")
        for view in self.views:
            self._check_view(view)

    def _check_view(self, view: Line | StackedBars) -> None:
        if not isinstance(view, Line | StackedBars):
            raise ValueError(f"views take Line(...) or StackedBars(...), got {view!r}")
        control = self.axis(view.x)[1] if view.x is not None else None
        if isinstance(view, Line) and not isinstance(control, Slider):
            raise ValueError(f"Line x={view.x!r} is a dropdown; pass the name of a slider")

    def x_label(self, view: Line | StackedBars) -> str:
        """The chart's x label, or the label of its x control."""
        return view.x_label or (self.axis(view.x)[1].label if view.x else "")

    def axis(self, name: str) -> tuple[int, Control]:
        """Position and control of the control called `name`."""
        for a, c in enumerate(self.controls):
            if c.name == name:
                return a, c
        raise ValueError(f"no control named {name!r}; pass one of "
                         f"{[c.name for c in self.controls]}")

    @cached_property
    def _number_keys(self) -> list[str]:
        return list(dict.fromkeys(k for v in self.views for k in v.keys))

    @cached_property
    def grid(self) -> Grid:
        """Evaluate `compute` at every grid point (once); numbers rounded, readouts formatted."""
        columns: dict[str, list[Value]] = {k: [] for k in self._number_keys}
        columns.update({f"text:{r.key}": [] for r in self.readouts})
        for combo in itertools.product(*(c.values for c in self.controls)):
            kwargs = {c.name: v for c, v in zip(self.controls, combo, strict=True)}
            out = self._call(kwargs)
            for key in self._number_keys:
                columns[key].append(self._number(out, key, kwargs))
            for r in self.readouts:
                columns[f"text:{r.key}"].append(r.text(_get(out, r.key, kwargs)))
        return Grid(tuple(len(c.values) for c in self.controls), columns)

    def _call(self, kwargs: dict[str, Value]) -> Mapping[str, Any]:
        try:
            out = self.compute(**kwargs)
        except Exception as e:
            raise ValueError(f"compute({_kw(kwargs)}) raised {type(e).__name__}: {e}; make it "
                             "work at every grid point or narrow the controls") from e
        if not isinstance(out, Mapping):
            raise ValueError(f"compute({_kw(kwargs)}) returned {type(out).__name__}; "
                             "return a dict of named numbers and strings")
        return out

    def _number(self, out: Mapping[str, Any], key: str, kwargs: dict[str, Value]) -> Value:
        v = _get(out, key, kwargs)
        if v is None:  # a gap: a line chart leaves the point out (e.g. a batch that does not fit)
            return None
        if not (_is_number(v) and math.isfinite(v)):
            raise ValueError(f"compute({_kw(kwargs)})[{key!r}] = {v!r}; charts need a finite "
                             "number there, or None for a gap in a line")
        return v if isinstance(v, int) else _round_sig(v, self.precision)

    @cached_property
    def _specs(self) -> list[dict[str, Any]]:
        return [view.spec(self) for view in self.views]

    def data(self) -> dict[str, Any]:
        """What the HTML embeds: axes, chart specs, compact numbers and readout texts."""
        g = self.grid
        return {
            "axes": [{"n": len(c.values), "init": c.init, "labels": c.labels,
                      "values": list(c.values)} for c in self.controls],
            "charts": self._specs,
            "num": {k: g.compact(k) for k in self._number_keys},
            "text": {r.key: g.compact(f"text:{r.key}") for r in self.readouts},
        }

    # --- HTML -------------------------------------------------------------------
    def to_html(self) -> str:
        """One self-contained block: <style>, controls, readouts, <svg> charts, JSON, <script>."""
        uid = f"lcx-{uuid.uuid4().hex[:10]}"
        state = [c.init for c in self.controls]
        payload = json.dumps(self.data(), separators=(",", ":"), ensure_ascii=False)
        payload = payload.replace("<", "\\u003c")  # no "</script>" inside the JSON
        title = f'<div class="lc-title">{_esc(self.title)}</div>' if self.title else ""
        controls = "".join(self._control_html(a) for a in range(len(state)))
        charts = "".join(_chart_html(v, self.x_label(v)) for v in self.views)
        script = _EXPLORER_JS.replace("__ID__", uid)
        return (
            f'<div class="lc-explorer" id="{uid}">{_EXPLORER_CSS}{title}'
            f'<div class="lc-controls">{controls}</div>{self._readouts_html(state)}'
            f'<div class="lc-charts">{charts}</div>'
            f'<script type="application/json" class="lc-data">{payload}</script>'
            f"<script>{script}</script></div>"
        )

    def _repr_html_(self) -> str:
        return self.to_html()

    def _control_html(self, a: int) -> str:
        return control_html(self.controls[a], a)

    def _readouts_html(self, state: State) -> str:
        items = "".join(
            f'<div class="lc-readout"><span class="lc-readout-label">{_esc(r.label)}</span>'
            f'<span class="lc-readout-value" data-key="{_esc(r.key)}">'
            f'{_esc(str(self.grid.value(f"text:{r.key}", state)))}</span></div>'
            for r in self.readouts)
        return f'<div class="lc-readouts">{items}</div>' if items else ""

    # --- ipywidgets ----------------------------------------------------------------
    def widget(self) -> Any:
        """An ipywidgets box with the same controls, readouts and charts (matplotlib PNG)."""
        import ipywidgets as widgets

        inputs = [_ipywidget(widgets, c) for c in self.controls]
        readouts, image = widgets.HTML(), widgets.Image(format="png")

        def redraw(_change: object = None) -> None:
            state = [c.values.index(w.value) for c, w in zip(self.controls, inputs, strict=True)]
            text = self._readouts_html(state)
            readouts.value = f'<div class="lc-widget">{_WIDGET_CSS}{text}</div>'
            image.value = self.png(state) if self.views else b""

        for w in inputs:
            w.observe(redraw, names="value")
        redraw()
        box = widgets.Box(inputs, layout=widgets.Layout(flex_flow="row wrap"))
        title = [widgets.HTML(f"<b>{_esc(self.title)}</b>")] if self.title else []
        return widgets.VBox([*title, box, readouts, image])

    def png(self, state: State | None = None) -> bytes:
        """The charts at `state` (default: the controls' start values) as a matplotlib PNG."""
        from matplotlib.figure import Figure

        state = [c.init for c in self.controls] if state is None else list(state)
        fig = Figure(figsize=(4.6 * len(self.views), 3.4), layout="constrained")
        for ax, view, spec in zip(fig.subplots(1, len(self.views), squeeze=False)[0],
                                  self.views, self._specs, strict=True):
            view.plot(ax, self, spec, state)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=96)
        return buf.getvalue()


def control_html(c: Control, a: int) -> str:
    """A control's <label>: a <select> or a range <input> with its value shown; `a` is its axis."""
    head = f'<label class="lc-control"><span class="lc-control-label">{_esc(c.label)}</span>'
    if c.kind == "select":
        options = "".join(
            f'<option value="{i}"{" selected" if i == c.init else ""}>{_esc(lab)}</option>'
            for i, lab in enumerate(c.labels))
        return f'{head}<select data-axis="{a}">{options}</select></label>'
    lab = _esc(c.labels[c.init])
    return (f'{head}<input type="range" min="0" max="{len(c.values) - 1}" step="1" '
            f'value="{c.init}" data-axis="{a}" aria-valuetext="{lab}">'
            f'<output class="lc-control-value" data-shows="{a}">{lab}</output></label>')


def _ipywidget(widgets: Any, c: Control) -> Any:
    options = list(zip(c.labels, c.values, strict=True))
    common = {"options": options, "value": c.values[c.init], "description": c.label,
              "style": {"description_width": "initial"}}
    if c.kind == "select":
        return widgets.Dropdown(**common)
    return widgets.SelectionSlider(**common, continuous_update=False)


def _distinct(what: str, items: list[str]) -> None:
    if len(set(items)) != len(items):
        raise ValueError(f"{what} repeat in {items}; give each a distinct one")


def _get(out: Mapping[str, Any], key: str, kwargs: dict[str, Value]) -> Any:
    if key not in out:
        raise ValueError(f"compute({_kw(kwargs)}) returned no {key!r} (it returned "
                         f"{sorted(out)}); return every key the views and readouts name")
    return out[key]


def _kw(kwargs: dict[str, Value]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in kwargs.items())


def _esc(text: str) -> str:
    return html.escape(str(text), quote=True)


def _chart_html(view: Line | StackedBars, x_label: str) -> str:
    """A chart's static frame: title, <svg> with axis labels (JS adds ticks and data), legend."""
    left, top, right, bottom = BOX
    legend = "".join(
        f'<span><i class="lc-swatch" style="border-top:3px {"dashed" if dashed else "solid"} '
        f'{color}"></i>{_esc(label)}</span>' for color, label, dashed in view.legend())
    title = f'<div class="lc-figure-title">{_esc(view.title)}</div>' if view.title else ""
    mid = (top + bottom) / 2
    return (
        f'<div class="lc-figure">{title}<svg class="lc-chart" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'role="img" aria-label="{_esc(view.title or view.y_label)}">'
        f'<g class="lc-axes"></g><g class="lc-layer"></g>'
        f'<rect class="lc-frame" x="{left}" y="{top}" width="{right - left}" '
        f'height="{bottom - top}"></rect>'
        f'<text x="{(left + right) / 2}" y="{HEIGHT - 6}" text-anchor="middle">'
        f"{_esc(x_label)}</text>"
        f'<text transform="translate(14 {mid}) rotate(-90)" text-anchor="middle">'
        f"{_esc(view.y_label)}</text></svg>"
        f'<div class="lc-legend">{legend}</div></div>'
    )


_EXPLORER_CSS = f"<style>\n{static.read('explorer.css')}</style>"

# The widget's readouts are no explorer (no sliders): same look under another root class.
_WIDGET_CSS = _EXPLORER_CSS.replace(".lc-explorer", ".lc-widget")

# Looks numbers up in the embedded grid and draws; all formulas and text come from Python.
_EXPLORER_JS = static.read("explorer.js").rstrip("\n")
