"""Pictures: SVG frames that lclib draws from its own data structures, shown one at a time.

A `Picture` calls ``draw(**values)`` at every combination of its controls' values (the same
`Slider`/`LogSlider`/`Dropdown` as an explorer) and, when animated, at every ``step``; it embeds
the distinct frames in one self-contained HTML block with a step slider and a play button. No
kernel, no CDN, no files: the first frame is in the page, so it shows even without JS.

    def draw(seq_len: int, step: int) -> Frame:
        return Frame(svg(...), caption=f"step {step}: rank 0 sends block 3")

    Picture(draw, controls=[Slider("seq_len", "context", (1024, 2048))], steps=8).to_html()
"""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property

from . import static
from .explorer import Control, Slider, _esc, _kw, control_html

MAX_HTML_BYTES = 300_000  # the explorers' size limit: a page stays light


@dataclass(frozen=True)
class Frame:
    """One drawing (`svg`, from `lclib.svg.svg`) and the sentence that says what it shows."""

    svg: str
    caption: str = ""


class Picture:
    """Frames of `draw(**values[, step=i])` over the controls' grid; `steps > 1` animates."""

    def __init__(self, draw: Callable[..., Frame], controls: Sequence[Control] = (),
                 steps: int = 1, title: str = "", step_label: str = "step",
                 interval_ms: int = 900) -> None:
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be an int >= 1 (1: a still picture), got {steps!r}")
        if not all(isinstance(c, Control) for c in controls):
            raise ValueError("pass controls=[Slider(...), Dropdown(...), ...] or none")
        if any(c.name == "step" for c in controls):
            raise ValueError("'step' is the animation's own control; name yours otherwise")
        if not (isinstance(interval_ms, int) and interval_ms >= 100):
            raise ValueError(f"interval_ms must be an int >= 100, got {interval_ms!r}")
        self.draw, self.title, self.interval_ms = draw, title, interval_ms
        stepper = [Slider("step", step_label, tuple(range(steps)), fmt=lambda i: f"{i + 1}/"
                          f"{steps}", default=0)] if steps > 1 else []
        self.controls = (*controls, *stepper)
        self.steps = steps

    @cached_property
    def frames(self) -> list[Frame]:
        """Every grid point's frame, in row-major order of the controls (step last)."""
        out = []
        for combo in itertools.product(*(c.values for c in self.controls)):
            kwargs = {c.name: v for c, v in zip(self.controls, combo, strict=True)}
            frame = self._call(kwargs)
            out.append(frame)
        return out

    def _call(self, kwargs: dict) -> Frame:
        try:
            frame = self.draw(**kwargs)
        except Exception as e:
            raise ValueError(f"draw({_kw(kwargs)}) raised {type(e).__name__}: {e}; make it "
                             "work at every grid point or narrow the controls") from e
        if not isinstance(frame, Frame) or not frame.svg.startswith("<svg"):
            raise ValueError(f"draw({_kw(kwargs)}) returned {type(frame).__name__}; return "
                             "Frame(svg(...), caption=...)")
        return frame

    def data(self) -> dict:
        """What the HTML embeds: axes, the distinct SVGs and captions, and each point's pair."""
        svgs = list(dict.fromkeys(f.svg for f in self.frames))
        captions = list(dict.fromkeys(f.caption for f in self.frames))
        return {
            "axes": [{"n": len(c.values), "init": c.init, "labels": c.labels}
                     for c in self.controls],
            "step": len(self.controls) - 1 if self.steps > 1 else -1,
            "interval": self.interval_ms,
            "svgs": svgs, "captions": captions,
            "frame": [svgs.index(f.svg) for f in self.frames],
            "caption": [captions.index(f.caption) for f in self.frames],
        }

    def point(self, state: Sequence[int]) -> int:
        """The grid index of `state` (one value index per control, step last), as the JS has it."""
        if len(state) != len(self.controls) or not all(
                0 <= i < len(c.values) for i, c in zip(state, self.controls, strict=True)):
            raise ValueError(f"state {list(state)} needs one index per control, within "
                             f"{[len(c.values) for c in self.controls]}")
        i = 0
        for c, v in zip(self.controls, state, strict=True):
            i = i * len(c.values) + v
        return i

    def _start(self) -> Frame:
        return self.frames[self.point([c.init for c in self.controls])]

    def to_html(self) -> str:
        """One block: <style>, controls, play button, the first frame, its caption, JSON, JS."""
        uid = f"lcp-{uuid.uuid4().hex[:10]}"
        payload = json.dumps(self.data(), separators=(",", ":"), ensure_ascii=False)
        payload = payload.replace("<", "\\u003c")  # no "</script>" inside the JSON
        title = f'<div class="lc-title">{_esc(self.title)}</div>' if self.title else ""
        controls = "".join(control_html(c, a) for a, c in enumerate(self.controls))
        play = ('<button type="button" class="lc-play" aria-pressed="false">▶ play</button>'
                if self.steps > 1 else "")
        first = self._start()
        block = (
            f'<div class="lc-picture" id="{uid}">{_CSS}{title}'
            f'<div class="lc-controls">{controls}{play}</div>'
            f'<div class="lc-stage">{first.svg}</div>'
            f'<p class="lc-caption" aria-live="polite">{_esc(first.caption)}</p>'
            f'<script type="application/json" class="lc-data">{payload}</script>'
            f"<script>{_JS.replace('__ID__', uid)}</script></div>"
        )
        size = len(block.encode())
        if size > MAX_HTML_BYTES:
            raise ValueError(f"the picture is {size:,} bytes (max {MAX_HTML_BYTES:,}); pass "
                             "fewer steps or control values, or draw simpler frames")
        return block

    def _repr_html_(self) -> str:
        return self.to_html()


# The explorers' look for controls and titles (under this root class), then the picture's own.
_CSS = ("<style>\n" + static.read("explorer.css").replace(".lc-explorer", ".lc-picture")
        + static.read("picture.css") + "</style>")
_JS = static.read("picture.js").rstrip("\n")
