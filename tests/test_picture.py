"""lclib.picture and lclib.svg: frames over the controls' grid, deduplicated, embedded whole."""

import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lclib.explorer import Dropdown, Slider
from lclib.picture import MAX_HTML_BYTES, Frame, Picture
from lclib.svg import el, svg


def dot(n: int, step: int = 0) -> Frame:
    body = el("circle", cx=10 + 20 * step, cy=10, r=n, class_="lc-fill-0")
    return Frame(svg(200, 20, body, label="a dot"), caption=f"n={n}, step {step}")


def payload(html: str) -> dict:
    return json.loads(re.search(r'class="lc-data">(.*?)</script>', html).group(1))


def test_svg_escapes_and_names() -> None:
    out = svg(10, 10, el("text", text="a<b & c", text_anchor="end"), label="x < y")
    assert "a&lt;b &amp; c" in out and 'text-anchor="end"' in out
    assert 'aria-label="x &lt; y"' in out and "<title>x &lt; y</title>" in out
    with pytest.raises(ValueError, match="label"):
        svg(10, 10, label="")
    with pytest.raises(ValueError, match="element name"):
        el("rect x")


@given(ns=st.lists(st.integers(1, 4), min_size=1, max_size=4, unique=True),
       steps=st.integers(1, 5))
def test_every_grid_point_maps_to_its_own_frame(ns: list[int], steps: int) -> None:
    ns = sorted(ns)
    d = Picture(dot, [Slider("n", "radius", tuple(ns))], steps=steps).data()
    assert len(d["frame"]) == len(ns) * steps
    for i, n in enumerate(ns):
        for s in range(steps):
            point = i * steps + s
            assert d["captions"][d["caption"][point]] == f"n={n}, step {s}"
            assert f'r="{n}"' in d["svgs"][d["frame"][point]]
    assert d["step"] == (1 if steps > 1 else -1)


def test_point_is_the_row_major_index_and_checks_its_state() -> None:
    pic = Picture(dot, [Slider("n", "radius", (1, 2, 3))], steps=4)
    assert pic.point([2, 1]) == 9 and pic.frames[9].caption == "n=3, step 1"
    with pytest.raises(ValueError, match="one index per control"):
        pic.point([3, 0])


def test_identical_frames_are_stored_once() -> None:
    still = Picture(lambda shape: dot(2), [Dropdown("shape", "shape", ("a", "b", "c"))])
    assert len(still.data()["svgs"]) == 1 and still.data()["frame"] == [0, 0, 0]


def test_html_shows_the_first_frame_without_js_and_has_a_play_button() -> None:
    html = Picture(dot, [Slider("n", "radius", (1, 2, 3), default=2)], steps=3).to_html()
    stage = re.search(r'<div class="lc-stage">(.*?)</div>', html).group(1)
    assert 'r="2"' in stage and 'cx="10"' in stage  # n=2 (the default), step 0
    assert 'class="lc-play"' in html and "n=2, step 0" in html
    assert "</script>" not in html.split('class="lc-data">')[1].split("</script>")[0]
    assert 'class="lc-play"' not in Picture(dot, [Slider("n", "r", (1, 2))]).to_html()
    assert payload(html)["axes"][1]["labels"] == ["1/3", "2/3", "3/3"]


def test_bad_input_says_what_to_pass() -> None:
    with pytest.raises(ValueError, match="steps must be an int >= 1"):
        Picture(dot, steps=0)
    with pytest.raises(ValueError, match="'step' is the animation's own control"):
        Picture(dot, [Slider("step", "s", (1, 2))])
    with pytest.raises(ValueError, match=r"draw\(n=1\) raised ZeroDivisionError"):
        Picture(lambda n: 1 / 0, [Slider("n", "n", (1, 2))]).data()
    with pytest.raises(ValueError, match="return Frame"):
        Picture(lambda n: "<svg/>", [Slider("n", "n", (1, 2))]).data()


def test_size_limit() -> None:
    def big(step: int) -> Frame:
        return Frame(svg(10, 10, el("desc", text=f"{step}" + "x" * 20_000), label="big"))
    with pytest.raises(ValueError, match=f"max {MAX_HTML_BYTES:,}"):
        Picture(big, steps=20).to_html()
