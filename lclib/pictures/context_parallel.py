"""Chapter 3's picture: the ring, step by step, contiguous against zigzag under the causal mask.

For each layout, each rank's query chunks, the K/V block it holds at this step and the one it
sends on (arrows around the ring); the query x key tile grid with the tiles computed so far, this
step's, and the ones the causal mask skips (hatched; a diagonal tile is half masked); below, each
rank's busy and idle time on one time scale for both layouts. Everything comes from the ring's
own schedule (`lclib.context_parallel.step_tiles`, which `lclib.ring` runs) and its per-step work
(`block_flops`); a step lasts as long as its busiest rank.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import cached_property

from ..context_parallel import (
    DIAGONAL,
    SKIP,
    block_flops,
    n_chunks,
    rank_chunks,
    ring_source,
    step_tiles,
)
from ..explorer import Slider
from ..picture import Frame, Picture
from ..svg import el, svg

RING_CPS = (2, 4, 8)  # ranks in the ring: the picture's control
W, H = 920, 470
HALF = 460  # each layout's width; contiguous left, zigzag right
GRID = 192  # side of the query x key grid (divisible by every chunk count, 2 to 16)
GRID_X, TOP = 258, 56  # the grid's left edge within a half; top of the rows and of the grid
TIME_TOP, TIME_H = 336, 100  # the timelines' band
TIME_X, TIME_W = 34, 330  # the time axis within a half: 0 to the longer ring's total
TITLES = {"contiguous": "contiguous: rank r holds chunk r",
          "zigzag": "zigzag: rank r holds chunks r and 2N−1−r"}
HATCH = "url(#lc-cp-hatch)"


@dataclass(frozen=True)
class RingView:
    """One layout's ring at one `step` (step >= cp: the ring is done), from lclib's schedule."""

    cp: int
    layout: str
    step: int

    @property
    def done(self) -> bool:
        return self.step >= self.cp

    @cached_property
    def chunks(self) -> list[list[int]]:
        """The query chunks each rank owns (and, before the ring turns, the K/V it holds)."""
        return rank_chunks(self.cp, self.layout)

    def held(self, rank: int) -> int:
        """The rank whose K/V block `rank` holds at this step."""
        return ring_source(rank, self.step, self.cp)

    @property
    def sends(self) -> bool:
        """Whether blocks move on after this step (not after the last one)."""
        return self.step < self.cp - 1

    @cached_property
    def tiles(self) -> dict[tuple[int, int], tuple[int, str]]:
        """Every (query chunk, key chunk) tile: the ring step that meets it and its kind."""
        return {tile: (s, kind) for s in range(self.cp) for r in range(self.cp)
                for tile, kind in step_tiles(self.cp, self.layout, r, s).items()}

    def state(self, tile: tuple[int, int]) -> str:
        """'skip' (the causal mask), 'done' (an earlier step), 'now' (this step) or 'todo'."""
        s, kind = self.tiles[tile]
        if kind == SKIP:
            return "skip"
        return "done" if s < self.step else "now" if s == self.step else "todo"

    @cached_property
    def work(self) -> list[list[float]]:
        """Each rank's work at each step in full blocks (S/cp queries x S/cp keys)."""
        seq = 2 * self.cp  # any length the layouts split; the ratio to a full block is exact
        full = block_flops(seq, self.cp, "contiguous", causal=False)[0][0]
        return [[f / full for f in row] for row in block_flops(seq, self.cp, self.layout)]

    @cached_property
    def step_times(self) -> list[float]:
        """How long each step lasts: its busiest rank's work (the ring is synchronized)."""
        return [max(row[s] for row in self.work) for s in range(self.cp)]

    @property
    def total(self) -> float:
        """The critical path: the sum of the step times, in full blocks."""
        return sum(self.step_times)


def _num(x: float) -> str:
    return f"{x:g}"


def _rect(x: float, y: float, w: float, h: float) -> str:
    return f"M{x:g} {y:g}h{w:g}v{h:g}h{-w:g}z"


def _tri(x: float, y: float, w: float, lower: bool) -> str:
    """The lower-left (keys up to the query: computed) or upper-right (masked) half of a tile."""
    return f"M{x:g} {y:g}l{w:g} {w:g}h{-w:g}z" if lower else f"M{x:g} {y:g}h{w:g}v{w:g}z"


def _path(parts: list[str], cls: str, **attrs: object) -> str:
    return el("path", d="".join(parts), class_=cls, **attrs) if parts else ""


GRID_CLASSES = {"done": "lc-fill-0", "now": "lc-fill-1 lc-cp-now"}


def _grid(view: RingView, x0: float) -> list[str]:
    """The query x key tiles: computed earlier, this step, still to come (empty), and masked.

    Each state's tiles are listed in `data-tiles` ("q:k"); the masked region is drawn as the one
    triangle above the diagonal that the skipped tiles and the diagonal tiles' upper halves make.
    """
    n = n_chunks(view.cp, view.layout)
    side, gx = GRID // n, x0 + GRID_X
    owner = {c: r for r, cs in enumerate(view.chunks) for c in cs}
    paths: dict[str, list[str]] = {k: [] for k in GRID_CLASSES}
    tiles: dict[str, list[str]] = {k: [] for k in (*GRID_CLASSES, "todo", "skip")}
    for (q, k), (_, kind) in sorted(view.tiles.items()):
        x, y, state = gx + k * side, TOP + q * side, view.state((q, k))
        tiles[state].append(f"{q}:{k}")
        if state in paths:
            paths[state].append(_tri(x, y, side, lower=True) if kind == DIAGONAL
                                else _rect(x, y, side, side))
    out = [el("path", d="".join(paths[s]), class_=cls, data_state=s,
              data_tiles=" ".join(tiles[s])) for s, cls in GRID_CLASSES.items()]
    out.append(el("path", d="", data_state="todo", data_tiles=" ".join(tiles["todo"])))
    out.append(el("path", d=_tri(gx, TOP, GRID, lower=False), class_="lc-cp-skip", fill=HATCH,
                  data_state="skip", data_tiles=" ".join(tiles["skip"])))
    lines = [f"M{gx + i * side} {TOP}v{GRID}" for i in range(n + 1)]
    lines += [f"M{gx} {TOP + i * side}h{GRID}" for i in range(n + 1)]
    out.append(_path(lines, "lc-faint"))
    small = side < 14
    out += [el("text", f"r{owner[q]}", x=gx - 3, y=TOP + (q + 0.5) * side + (3 if small else 4),
               text_anchor="end", class_="lc-cp-xs" if small else None) for q in range(n)]
    out.append(el("text", "query chunk (its rank) ↓", x=gx, y=TOP - 20, class_="lc-cp-s"))
    out.append(el("text", "key chunk →", x=gx, y=TOP - 6, class_="lc-cp-s"))
    return out


def _arrow(x1: float, y1: float, x2: float, y2: float, cls: str = "lc-ink") -> str:
    """A line with a small head at (x2, y2); vertical or horizontal."""
    dx, dy = (x2 > x1) - (x2 < x1), (y2 > y1) - (y2 < y1)
    head = (f"M{x2:g} {y2:g}l{-4 * dx - 3 * dy:g} {-4 * dy - 3 * dx:g}"
            f"m{6 * dy:g} {6 * dx:g}l{4 * dx - 3 * dy:g} {4 * dy - 3 * dx:g}")
    return el("path", d=f"M{x1:g} {y1:g}L{x2:g} {y2:g}{head}", class_=cls)


def _ranks(view: RingView, x0: float) -> list[str]:
    """Per rank: its query chunks, the K/V block it holds (idle if all masked), the send."""
    pitch, out = GRID / view.cp, []
    heads = ("rank", "queries", "holds K/V", "sends ↓" if view.sends else "sends")
    out += [el("text", t, x=x0 + x, y=TOP - 6, class_="lc-cp-s")
            for t, x in zip(heads, (0, 44, 104, 196), strict=True)]
    for r in range(view.cp):
        y = TOP + r * pitch + pitch / 2 + 4
        out.append(el("text", f"r{r}", x=x0, y=y))
        out.append(el("text", "Q " + "·".join(map(str, view.chunks[r])), x=x0 + 44, y=y))
        if view.done:
            continue
        src = view.held(r)
        busy = any(view.state(t) == "now" for t in step_tiles(view.cp, view.layout, r,
                                                              view.step))
        out.append(el("rect", x=x0 + 100, y=y - 13, width=88, height=18, rx=3,
                      class_="lc-ink" if busy else "lc-cp-todo"))
        if busy:  # the tab says: computing this step, as the grid's tiles of this colour
            out.append(el("rect", x=x0 + 100, y=y - 13, width=7, height=18, class_="lc-fill-1"))
        label = "KV " + "·".join(map(str, view.chunks[src])) + ("" if busy else " masked")
        out.append(el("text", label, x=x0 + 111, y=y))
    if view.sends:  # block r moves to rank r + 1; the last rank's wraps around to rank 0
        ys = [TOP + (r + 0.5) * pitch for r in range(view.cp)]
        x = x0 + 196
        out += [_arrow(x, y + 7, x, y_next - 7) for y, y_next in itertools.pairwise(ys)]
        out.append(el("path", d=f"M{x - 6:g} {ys[-1]:g}h22V{ys[0]:g}", class_="lc-ink"))
        out.append(_arrow(x + 16, ys[0], x - 6, ys[0]))
    return out


def _timeline(view: RingView, x0: float, scale: float, other_total: float) -> list[str]:
    """Each rank's busy and idle time per step, on the scale shared by both layouts."""
    pitch = TIME_H / view.cp
    bar = min(16.0, pitch - 3)
    starts = [sum(view.step_times[:s]) for s in range(view.cp)]
    busy: dict[str, list[str]] = {"done": [], "now": [], "todo": []}
    idle: dict[str, list[str]] = {"done": [], "todo": []}
    for r in range(view.cp):
        y = TIME_TOP + r * pitch
        for s, (t0, length) in enumerate(zip(starts, view.step_times, strict=True)):
            state = "done" if s < view.step else "now" if s == view.step else "todo"
            x, w = x0 + TIME_X + t0 * scale, view.work[r][s] * scale
            if w:
                busy[state].append(_rect(x, y, w, bar))
            if length * scale - w > 0:
                idle["todo" if state == "todo" else "done"].append(
                    _rect(x + w, y, length * scale - w, bar))
    out = [_path(busy["done"], "lc-fill-0", data_state="busy"),
           _path(busy["now"], "lc-fill-1 lc-cp-now", data_state="busy-now"),
           _path(busy["todo"] + idle["todo"], "lc-cp-todo", data_state="todo"),
           _path(idle["done"], "lc-idle", data_state="idle")]
    out += [el("text", f"r{r}", x=x0 + TIME_X - 4, y=TIME_TOP + r * pitch + bar / 2 + 4,
               text_anchor="end") for r in range(view.cp)]
    end = x0 + TIME_X + view.total * scale
    bottom = TIME_TOP + TIME_H
    out.append(el("path", d=f"M{end:g} {TIME_TOP - 4}V{bottom}", class_="lc-ink"))
    if not view.done:
        now = x0 + TIME_X + (starts[view.step] + view.step_times[view.step]) * scale
        out.append(el("path", d=f"M{now:g} {TIME_TOP - 4}V{bottom}", class_="lc-cp-cursor"))
    faster = (f" ({_num(other_total / view.total)}× sooner)" if other_total > view.total
              else "")
    out.append(el("text", f"done at {_num(view.total)} blocks{faster}", x=end,
                  y=bottom + 14, text_anchor="end" if view.total > other_total else "start"))
    return out


def _half(view: RingView, x0: float, scale: float, other: RingView) -> list[str]:
    return [el("text", TITLES[view.layout], x=x0, y=16, class_="lc-cp-h"),
            *_ranks(view, x0), *_grid(view, x0),
            el("text", "busy (solid) and idle (faint) per rank, time in blocks", x=x0 + TIME_X,
               y=TIME_TOP - 10, class_="lc-cp-s"),
            *_timeline(view, x0, scale, other.total)]


LEGEND = (("lc-fill-0", None, "computed earlier"), ("lc-fill-1 lc-cp-now", None, "this step"),
          ("lc-cp-todo", None, "still to come"),
          ("lc-cp-skip", HATCH, "skipped: the causal mask (keys after queries)"))


def _legend() -> str:
    y, out = 282, []
    x = 0
    for cls, fill, text in LEGEND:
        out.append(el("rect", x=x, y=y - 10, width=14, height=12, class_=cls, fill=fill))
        out.append(el("text", text, x=x + 18, y=y))
        x += 40 + 7 * len(text)
    out.append(el("text", "A block is (S/N)² query×key pairs; a half-hatched tile is a diagonal "
                  "one, half masked.", x=0, y=y + 16, class_="lc-cp-s"))
    return "".join(out)


def _caption(views: list[RingView]) -> str:
    con, zig = views
    ratio = f"contiguous {_num(con.total)} blocks, zigzag {_num(zig.total)}: " \
            f"{_num(con.total / zig.total)}× longer"
    if con.done:
        return f"The ring is done after {con.cp} steps. Critical path: {ratio}."
    t = con.step
    work = "; ".join(f"{v.layout}: ranks' work " + ", ".join(_num(row[t]) for row in v.work)
                     + f" blocks, the step lasts {_num(v.step_times[t])}" for v in views)
    return f"Step {t + 1} of {con.cp}. {work}. Critical path over all {con.cp} steps: {ratio}."


def ring_frame(cp: int, step: int) -> Frame:
    """Both layouts' rings of `cp` ranks at ring `step` (>= cp: done), side by side."""
    views = [RingView(cp, layout, step) for layout in ("contiguous", "zigzag")]
    scale = TIME_W / max(v.total for v in views)
    defs = el("defs", el("pattern", el("path", d="M0 6L6 0M-1 1L1 -1M5 7L7 5",
                                       class_="lc-cp-hatch"),
                         id="lc-cp-hatch", width=6, height=6, patternUnits="userSpaceOnUse"))
    body = [defs]
    for i, view in enumerate(views):
        body += _half(view, i * HALF, scale, views[1 - i])
    body.append(_legend())
    label = (f"Ring attention over {cp} ranks, step {min(step, cp - 1) + 1} of {cp}: "
             "contiguous and zigzag layouts, tiles computed and masked, busy and idle time")
    return Frame(svg(W, H, *body, label=label), caption=_caption(views))


def context_parallel_picture(cps: tuple[int, ...] = RING_CPS, default: int = 4) -> Picture:
    """The ring animated over its steps, for each CP degree in `cps` (contiguous | zigzag)."""
    if not cps or any(not isinstance(n, int) or n < 2 or 16 % n for n in cps):
        raise ValueError(f"cps must be CP degrees among 2, 4, 8, 16, got {cps!r}")
    return Picture(ring_frame, [Slider("cp", "CP degree (ranks in the ring)", sorted(cps),
                                       fmt=str, default=default)],
                   steps=max(cps), title="The ring, step by step: which rank computes which "
                                         "tiles, contiguous vs zigzag", step_label="ring step")
