"""lclib.pictures.fp8: the drawn bits are torch's, the regions follow the formats' limits, the
drawn grid is what lclib.fp8.quantize stores."""

import math
import re

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lclib import fp8
from lclib.picture import MAX_HTML_BYTES
from lclib.pictures import fp8 as pictures

DTYPES = {"e4m3": torch.float8_e4m3fn, "e5m2": torch.float8_e5m2}  # OCP FP8 (arXiv 2209.05433)


@pytest.fixture(scope="module")
def bits() -> pictures.Picture:
    return pictures.fp8_picture("bits")


@pytest.fixture(scope="module")
def grid() -> pictures.Picture:
    return pictures.fp8_picture("grid")


@pytest.fixture(scope="module")
def keys() -> torch.Tensor:
    """The chapter's synthetic K with outlier head 0 1,000x larger, as the picture draws it."""
    return fp8.outlier_kv(1_000.0, batch=1, seq_len=pictures.TOKENS).k


def row(svg: str, fmt: str) -> str:
    return re.search(rf'<g data-format="{fmt}">(.*?)</g></g>', svg).group(1)


def drawn_bits(svg: str, fmt: str) -> str:
    return re.search(r'class="lc-fp8-bit">([01]{8})</text>', row(svg, fmt)).group(1)


def drawn_region(svg: str, fmt: str) -> str:
    return re.search(r"lands: ([A-Z]+)</text>", row(svg, fmt)).group(1).lower()


def torch_store(x: float, fmt: str) -> tuple[str, float]:
    """Bits and value torch stores for x at scale 1.0, saturating at the format's max."""
    if fmt == "int8":
        q = torch.tensor([x]).clamp(-127, 127).round().to(torch.int8)
        return format(int(q.view(torch.uint8)[0]), "08b"), float(q[0])
    top = torch.finfo(DTYPES[fmt]).max
    q = torch.tensor([x]).clamp(-top, top).to(DTYPES[fmt])
    return format(int(q.view(torch.uint8)[0]), "08b"), float(q.float()[0])


values = st.floats(1e-8, 1e6).flatmap(lambda v: st.sampled_from((v, -v)))


@settings(max_examples=60, deadline=None)
@given(x=values)
def test_drawn_bits_are_torchs_and_regions_follow_the_limits(x: float) -> None:
    svg = pictures.bits_frame(x).svg
    for fmt in ("e4m3", "e5m2", "int8"):
        expected, stored = torch_store(x, fmt)
        assert drawn_bits(svg, fmt) == expected
        region = drawn_region(svg, fmt)
        if fmt == "int8":
            assert region == ("saturated" if abs(x) > 127 else "zero" if stored == 0
                              else "normal")
            continue
        info = torch.finfo(DTYPES[fmt])
        mantissa = round(-math.log2(info.eps))
        exponent = int(expected[1:8 - mantissa], 2)
        if abs(x) > info.max:
            assert region == "saturated" and abs(stored) == info.max
        elif stored == 0:
            assert region == "zero" and abs(x) <= info.smallest_normal * 2**-mantissa / 2
        else:  # subnormal exactly when the exponent field is all zeros
            assert region == ("subnormal" if exponent == 0 else "normal")
            assert (region == "subnormal") == (abs(stored) < info.smallest_normal)


@settings(max_examples=30, deadline=None)
@given(x=values)
def test_the_decoding_gives_the_stored_value(x: float) -> None:
    for fmt in ("e4m3", "e5m2"):
        text = re.search(r"stored (\S+)  = ", row(pictures.bits_frame(x).svg, fmt)).group(1)
        stored = float(text.replace("−", "-").replace(",", ""))
        assert stored == pytest.approx(torch_store(x, fmt)[1], rel=1e-3, abs=1e-12)


def test_slider_ends_pass_every_format(bits: pictures.Picture) -> None:
    value = bits.controls[0]
    lo, hi = value.values[0], value.values[-1]
    assert all(lo < torch.finfo(d).smallest_normal * torch.finfo(d).eps / 2
               for d in DTYPES.values())
    assert hi > torch.finfo(torch.float8_e5m2).max > 127
    svg_lo, svg_hi = pictures.bits_frame(lo).svg, pictures.bits_frame(hi).svg
    assert {drawn_region(svg_lo, f) for f in ("e4m3", "e5m2", "int8")} == {"zero"}
    assert {drawn_region(svg_hi, f) for f in ("e4m3", "e5m2", "int8")} == {"saturated"}
    assert drawn_bits(svg_hi, "e4m3") == "01111110"  # 448 = 1.75 · 2^8: e4m3fn's largest


def varies(picture: pictures.Picture, axis: int, start: dict[int, int] | None = None) -> int:
    """Distinct frames along control `axis`, the others at their start (or `start`)."""
    d = picture.data()
    state = [start.get(a, ax["init"]) if start else ax["init"] for a, ax in enumerate(d["axes"])]
    out = set()
    for v in range(d["axes"][axis]["n"]):
        state[axis] = v
        out.add(d["frame"][picture.point(state)])
    return len(out)


def test_every_control_changes_the_drawing(bits: pictures.Picture,
                                           grid: pictures.Picture) -> None:
    assert varies(bits, 0) == len(bits.controls[0].values) and varies(bits, 1) == 2
    assert all(varies(grid, a) == len(grid.controls[a].values) for a in range(3))
    assert varies(grid, 0, {2: 1}) == 1  # per head: head 1 ignores the outlier head's size


def test_size_limit(bits: pictures.Picture, grid: pictures.Picture) -> None:
    for picture in (bits, grid):
        assert len(picture.to_html().encode()) <= MAX_HTML_BYTES


@pytest.mark.parametrize(("magnitude", "fmt", "granularity"), [
    (10_000, "e4m3", "tensor"), (10_000, "e4m3", "token"), (1, "e5m2", "head"),
    (100, "int8", "tensor"), (1, "int8", "channel"), (1, "e4m3", "token_head")])
def test_grid_levels_are_what_quantize_stores(magnitude: float, fmt: str,
                                              granularity: str) -> None:
    g = pictures.grid(magnitude, fmt, granularity)
    lv = g.levels.double()
    assert torch.equal(fp8.quantize(g.levels, fmt, scale=g.scale).dequantize(), g.levels)
    a, b = lv[:-1], lv[1:]  # a quarter of the way from one level rounds back to it
    for t, want in ((0.25, a), (0.75, b)):
        x = (a + t * (b - a)).float()
        assert torch.allclose(fp8.quantize(x, fmt, scale=g.scale).dequantize().double(), want,
                              rtol=1e-6, atol=0)
    top = g.before.abs().max()
    assert lv.abs().max() <= top < lv.abs().max() + (b - a).max() + 1e-6


@pytest.mark.parametrize("fmt", ["e4m3", "e5m2", "int8"])
@pytest.mark.parametrize("granularity", pictures.GRANULARITIES)
def test_grid_counts_come_from_quantize(fmt: str, granularity: str, keys: torch.Tensor) -> None:
    k = keys
    if granularity == "channel":  # one scale per channel of head 1: its own amax over tokens
        after = torch.stack([fp8.quantize(k[0, 1, :, c], fmt).dequantize()
                             for c in range(k.shape[-1])], -1)
    else:
        after = fp8.quantize(k, fmt, granularity).dequantize()[0, 1]
    g = pictures.grid(1_000, fmt, granularity)
    assert torch.equal(g.after, after)
    assert g.zeros == int((after == 0).sum()) and g.distinct == len(set(after.flatten().tolist()))
    svg = pictures.grid_frame(1_000, fmt, granularity).svg
    assert f"{g.zeros:,} stored as 0" in svg and f"{g.distinct:,} distinct stored value" in svg


def test_an_outlier_head_collapses_its_neighbour_per_tensor_not_per_head() -> None:
    crushed, kept = (pictures.grid(1_000, "int8", g) for g in ("tensor", "head"))
    assert crushed.distinct == 1 and crushed.zeros == crushed.before.numel()
    assert kept.distinct > 100 and kept.amax_head == 1 and crushed.amax_head == 0


def test_bad_input_says_what_to_pass() -> None:
    with pytest.raises(ValueError, match="pass 'bits' or 'grid'"):
        pictures.fp8_picture("bytes")
    with pytest.raises(ValueError, match="finite non-zero"):
        pictures.bits_frame(0.0)
    with pytest.raises(ValueError, match="granularity"):
        pictures.quantize(torch.ones(1, 1, 2, 2), "e4m3", "block")
