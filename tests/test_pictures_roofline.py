"""The roofline picture (chapters 1, 2): points where lclib's intensities put them, labels that
say the bound lclib computes, a frame for every control value, under the size limit."""

import math
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lclib import GPUS, get_gpu, get_model
from lclib.cost import attention_roofline, linear_roofline
from lclib.explorers.kv_wall import KV_WALL_GPUS
from lclib.picture import MAX_HTML_BYTES
from lclib.pictures.roofline import EVERY_4X, roofline_frame, roofline_picture

LLAMA = "llama-3.3-70b"
BOOK = Path(__file__).resolve().parents[1] / "book"


def axis(svg: str, name: str) -> tuple[float, float]:
    """(log10 of the value at SVG coordinate 0, SVG units per decade), read from the decade ticks
    the SVG draws: one path, the x ticks' moves first, then the y ticks'."""
    path = re.search(r'<path d="([^"]+)"[^>]*data-ticks-x="([^"]+)" data-ticks-y="([^"]+)"', svg)
    moves = [(int(a), int(b)) for a, b in re.findall(r"M(\d+) (\d+)", path.group(1))]
    xs, ys = ([float(v) for v in path.group(k).split(",")] for k in (2, 3))
    values, pos = (xs, [m[0] for m in moves[:len(xs)]]) if name == "x" else (
        ys, [m[1] for m in moves[len(xs):]])
    per_decade = (pos[-1] - pos[0]) / math.log10(values[-1] / values[0])
    return math.log10(values[0]) - pos[0] / per_decade, per_decade


def dots(svg: str) -> list[tuple[float, float, float]]:
    """(cx, cy, intensity) of each kernel's dot, in the legend's order."""
    return [(float(x), float(y), float(i)) for x, y, i in re.findall(
        r'<circle cx="([\d.]+)" cy="([\d.]+)" r="5" class="[^"]+" data-intensity="([^"]+)"', svg)]


def legend(svg: str) -> list[tuple[str, str]]:
    return re.findall(r'data-bound="(\w+)">([^<]+)</text>', svg)


def expected(seq_len: int, batch: int) -> list:
    """lclib.cost's rooflines, in the picture's order (the whole step is checked apart)."""
    return [linear_roofline(LLAMA, seq_len), attention_roofline(LLAMA, seq_len),
            linear_roofline(LLAMA, batch), attention_roofline(LLAMA, seq_len, 1)]


GRID = {"seq_len": st.integers(1024, 2**20), "batch": st.integers(1, 4096),
        "gpu": st.sampled_from(list(GPUS))}


@settings(max_examples=25, deadline=None)
@given(**GRID)
def test_points_sit_where_lclib_puts_them(seq_len: int, batch: int, gpu: str) -> None:
    svg = roofline_frame(seq_len, batch, LLAMA, gpu).svg
    x0, xdec = axis(svg, "x")
    y0, ydec = axis(svg, "y")
    g = get_gpu(gpu)
    points = dots(svg)
    assert len(points) == 5
    for (cx, cy, shown), r in zip(points, expected(seq_len, batch), strict=False):
        want = r.intensity
        assert shown == pytest.approx(want, rel=1e-5)
        assert 10 ** (x0 + cx / xdec) == pytest.approx(want, rel=0.03)  # 1 SVG unit of rounding
        roof = min(g.peak_flops("bf16"), want * g.hbm_bandwidth)
        assert 10 ** (y0 + cy / ydec) == pytest.approx(roof, rel=0.05)
    # the whole step: its FLOPs over its bytes lie between its matmuls' and its attention's
    step = points[4][2]
    lin, attn = points[2][2], points[3][2]
    assert min(lin, attn) <= step <= max(lin, attn)


@settings(max_examples=25, deadline=None)
@given(**GRID)
def test_labels_say_the_bound_lclib_computes(seq_len: int, batch: int, gpu: str) -> None:
    svg = roofline_frame(seq_len, batch, LLAMA, gpu).svg
    rows = legend(svg)
    for (bound, text), r in zip(rows, expected(seq_len, batch), strict=False):
        assert bound == r.bound(gpu) and text.endswith(f"{bound}-bound")
    ridge = get_gpu(gpu).ridge_point("bf16")
    for (bound, _), (_, _, i) in zip(rows, dots(svg), strict=True):  # left of the ridge: memory
        assert (bound == "memory") == (i < ridge)


def test_a_decode_batch_crosses_the_ridge_only_in_its_matmuls() -> None:
    # chapter 1: Llama-3.3-70B's weight matmuls reach an H100's ridge at a few hundred requests
    # (I ~ batch in bf16); attention stays at the GQA group (8), whatever the batch
    small, large = (dict(legend(roofline_frame(131_072, b, LLAMA, "h100-sxm").svg)[2:3])
                    for b in (16, 1024))
    assert "memory" in small and "compute" in large
    for gpu in KV_WALL_GPUS:  # chapter 2: at 128K the whole step stays memory-bound
        rows = legend(roofline_frame(131_072, 1024, LLAMA, gpu).svg)
        assert rows[3][0] == rows[4][0] == "memory"
        assert f"{get_model(LLAMA).gqa_group} FLOP/B" in rows[3][1]


def frame_at(picture, index: list[int]) -> int:
    d, i = picture.data(), 0
    for a, k in zip(d["axes"], index, strict=True):
        i = i * a["n"] + k
    return d["frame"][i]


@pytest.mark.parametrize("kwargs", [{}, {"gpus": KV_WALL_GPUS, "context": EVERY_4X}],
                         ids=["ch1", "ch2"])
def test_every_control_changes_the_picture_and_it_fits(kwargs: dict) -> None:
    pic = roofline_picture(**kwargs)
    axes = pic.data()["axes"]
    init = [a["init"] for a in axes]
    for k, a in enumerate(axes):
        frames = {frame_at(pic, init[:k] + [v] + init[k + 1:]) for v in range(a["n"])}
        assert len(frames) == a["n"], f"control {pic.controls[k].name} leaves frames equal"
    for f in pic.frames:  # the slider ends too: every dot inside the axes
        assert all(70 <= x <= 740 and 30 <= y <= 300 for x, y, _ in dots(f.svg))
    assert len(pic.to_html().encode()) <= MAX_HTML_BYTES
    assert [c.name for c in pic.controls][:2] == ["seq_len", "batch"]
    assert ("gpu" in [c.name for c in pic.controls]) == ("gpus" in kwargs)


def test_the_default_frame_shows_chapter_1s_glued_numbers() -> None:
    # ch01 glues attention at 128K (',.0f'), decode attention ('.1f'), the ridge (',.0f')
    pic = roofline_picture()
    assert pic.controls[0].values[pic.controls[0].init] == 128 * 1024
    first = pic.frames[pic.controls[0].init * len(pic.controls[1].values) + pic.controls[1].init]
    svg = first.svg
    h100 = get_gpu("h100-sxm")
    assert f"ridge {h100.ridge_point():,.0f} FLOP/B" in svg
    rows = [text for _, text in legend(svg)]
    assert f"{attention_roofline(LLAMA, 131_072).intensity:,.0f} FLOP/B" in rows[1]
    decode = float(re.search(r": ([\d.]+) FLOP/B", rows[3]).group(1))
    assert round(decode, 1) == round(attention_roofline(LLAMA, 131_072, 1).intensity, 1)
    for page in ("ch01-crossover.md", "ch02-kv-wall.md"):
        assert "roofline_picture(" in (BOOK / page).read_text()


def test_bad_input_says_what_to_pass() -> None:
    with pytest.raises(ValueError, match="pass at least one GPU"):
        roofline_picture(gpus=())
    with pytest.raises(ValueError, match="unknown GPU"):
        roofline_picture(gpus=("h300",))
    with pytest.raises(ValueError, match="unknown model|pass one of"):
        roofline_picture(model="llama-9")


@pytest.mark.parametrize("batch", [1, 16, 1024])
def test_the_whole_step_drifts_to_attention_as_the_context_grows(batch: int) -> None:
    # the pages' sentence: the weights are read once per step, the KV once per request and token
    gaps = []
    for k in range(10, 21):
        step, attn = (float(i) for *_, i in dots(roofline_frame(2**k, batch, LLAMA,
                                                                "h100-sxm").svg)[4:2:-1])
        gaps.append(abs(math.log(step / attn)))
    assert all(a > b for a, b in zip(gaps, gaps[1:], strict=False))
