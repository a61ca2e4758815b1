"""Chapter 3's ring picture: drawn from the ring's own schedule, timed like ring_wall_clock."""

import re
from pathlib import Path

import pytest

from lclib import context_parallel
from lclib.picture import MAX_HTML_BYTES
from lclib.pictures.context_parallel import (
    GRID,
    GRID_X,
    RING_CPS,
    TIME_W,
    TOP,
    context_parallel_picture,
    ring_frame,
)
from lclib.ring import block_calls, rank_chunks, ring_source

LAYOUTS = ("contiguous", "zigzag")
CASES = [(cp, layout) for cp in RING_CPS for layout in LAYOUTS]
CH03 = Path(__file__).resolve().parents[1] / "book" / "ch03-context-parallelism.md"


def drawn_tiles(frame_svg: str, layout: str) -> dict[str, set[tuple[int, int]]]:
    """The tiles one layout's grid lists in each state (contiguous: the left half, drawn first)."""
    found: dict[str, list[set]] = {}
    for state, tiles in re.findall(r'data-state="(done|now|todo|skip)" data-tiles="([^"]*)"',
                                   frame_svg):
        pairs = {tuple(map(int, t.split(":"))) for t in tiles.split()}
        found.setdefault(state, []).append(pairs)
    return {state: halves[LAYOUTS.index(layout)] for state, halves in found.items()}


def ring_computes(cp: int, layout: str, step: int) -> set[tuple[int, int]]:
    """The (query chunk, key chunk) tiles lclib.ring's kernel calls cover at `step`: inside a
    causal call over a rank's own chunks (in sequence order), key chunks after the query's are
    masked."""
    chunks, tiles = rank_chunks(cp, layout), set()
    for r in range(cp):
        q_chunks, k_chunks = chunks[r], chunks[ring_source(r, step, cp)]
        for i0, i1, j0, j1, causal in block_calls(q_chunks, k_chunks, True):
            tiles |= {(q_chunks[i], k_chunks[j]) for i in range(i0, i1) for j in range(j0, j1)
                      if not (causal and j > i)}
    return tiles


@pytest.mark.parametrize(("cp", "layout"), CASES)
def test_tiles_drawn_are_the_ones_the_ring_computes_and_the_mask_skips(cp, layout):
    n = cp * (2 if layout == "zigzag" else 1)
    every = {(q, k) for q in range(n) for k in range(n)}
    masked = {(q, k) for q, k in every if k > q}  # every key of chunk k comes after chunk q's
    for step in range(cp + 1):
        drawn = drawn_tiles(ring_frame(cp, step).svg, layout)
        now = ring_computes(cp, layout, step) if step < cp else set()
        before = set().union(*(ring_computes(cp, layout, s) for s in range(min(step, cp))))
        assert drawn["now"] == now and drawn["done"] == before, (cp, layout, step)
        assert drawn["skip"] == masked
        assert drawn["todo"] == every - masked - now - before


@pytest.mark.parametrize(("cp", "layout"), CASES)
def test_busy_and_idle_add_up_to_ring_wall_clock(cp, layout):
    frame = ring_frame(cp, cp).svg  # the ring done: every step drawn as busy or idle
    half = frame.split('class="lc-cp-h"')[1 + LAYOUTS.index(layout)]
    scale = TIME_W / context_parallel.ring_wall_clock(cp, "contiguous")  # the longer one

    def width(state: str) -> float:
        found = re.search(rf'd="([^"]*)" class="[^"]*" data-state="{state}"', half)
        d = found.group(1) if found else ""  # no path drawn: none of that state (zigzag: idle)
        return sum(map(float, re.findall(r"h(\d+(?:\.\d+)?)", d))) / scale

    wall = context_parallel.ring_wall_clock(cp, layout)
    assert width("busy") == pytest.approx(cp * cp / 2, abs=0.05)  # causal: half of cp^2 blocks
    assert width("busy") + width("idle") == pytest.approx(cp * wall, abs=0.05)
    assert f"done at {wall:g} blocks" in half


@pytest.mark.parametrize("cp", RING_CPS)
def test_caption_states_the_steps_work_and_the_chapters_ratio(cp):
    con, zig = (context_parallel.ring_wall_clock(cp, layout) for layout in LAYOUTS)
    # the chapter glues ring_wall_clock(n, "contiguous") / ring_wall_clock(n) as wall4, wall8
    assert "ring_wall_clock(n, \"contiguous\") / context_parallel.ring_wall_clock(n)" in \
        CH03.read_text()
    for step in range(cp + 1):
        caption = ring_frame(cp, step).caption
        ratio = float(re.search(r"([\d.]+)× longer", caption).group(1))
        assert ratio == con / zig and f"contiguous {con:g} blocks, zigzag {zig:g}" in caption
    # step 2: contiguous rank 0 holds the last rank's block, all masked; every other a full one
    assert "contiguous: ranks' work 0, " + ", ".join(["1"] * (cp - 1)) in ring_frame(cp, 1).caption
    assert "zigzag: ranks' work " + ", ".join(["0.5"] * cp) in ring_frame(cp, 1).caption


def test_every_frame_differs_from_the_one_before_until_the_ring_is_done():
    for cp in RING_CPS:
        frames = [ring_frame(cp, s) for s in range(cp + 1)]
        for a, b in zip(frames, frames[1:], strict=False):
            assert a.svg != b.svg and a.caption != b.caption
        assert ring_frame(cp, cp + 1) == frames[-1]  # past the last step: the finished ring


def test_slider_ends_and_size():
    picture = context_parallel_picture()
    html = picture.to_html()
    assert len(html.encode()) <= MAX_HTML_BYTES
    data = picture.data()
    cps, steps = data["axes"]
    assert cps["labels"] == [str(c) for c in RING_CPS] and RING_CPS[cps["init"]] == 4
    assert steps["n"] == max(RING_CPS) and steps["init"] == 0
    first = drawn_tiles(ring_frame(max(RING_CPS), 0).svg, "zigzag")
    assert not first["done"] and first["now"]
    last = drawn_tiles(ring_frame(max(RING_CPS), max(RING_CPS) - 1).svg, "zigzag")
    assert not last["todo"] and last["now"]
    mask = f'd="M{GRID_X} {TOP}h{GRID}v{GRID}z" class="lc-cp-skip"'  # the grid's upper right
    assert all(ring_frame(cp, 0).svg.count(mask) == 1 for cp in RING_CPS)


def test_bad_input_says_what_to_pass():
    with pytest.raises(ValueError, match="CP degrees among 2, 4, 8, 16"):
        context_parallel_picture(cps=(3,))
    with pytest.raises(ValueError, match="CP degrees"):
        context_parallel_picture(cps=())
