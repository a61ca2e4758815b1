"""lclib.explorer and lclib.explorers: the grid, the embedded JSON, the DOM contract, bad input."""

from __future__ import annotations

import itertools
import json
import math
import random
import re
import shutil
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lclib
from lclib.explorer import (
    Dropdown,
    Explorer,
    Grid,
    Line,
    LogSlider,
    Readout,
    Slider,
    StackedBars,
    log_grid,
)
from lclib.explorers import (
    crossover_explorer,
    crossover_point,
    two_walls_explorer,
    two_walls_point,
)
from lclib.units import fmt_seconds, fmt_tokens

BUILT = {"two_walls": (two_walls_explorer, two_walls_point),
         "crossover": (crossover_explorer, crossover_point)}


@pytest.fixture(scope="module")
def tw() -> Explorer:
    return two_walls_explorer()


@pytest.fixture(scope="module")
def tw_html(tw: Explorer) -> str:
    return tw.to_html()


@pytest.fixture(scope="module", params=list(BUILT))
def built(request: pytest.FixtureRequest) -> tuple[Explorer, str, object]:
    """Each concrete explorer, its HTML, and its compute function."""
    build, compute = BUILT[request.param]
    ex = build()
    return ex, ex.to_html(), compute


def embedded(html: str) -> dict:
    """The JSON grid the page's JS reads, parsed back out of the HTML."""
    m = re.search(r'<script type="application/json" class="lc-data">(.*?)</script>', html, re.S)
    assert m, "no embedded data"
    return json.loads(m.group(1))


def lookup(col: dict, axes: list[dict], state: list[int]) -> object:
    """What the JS `lookup` does: index the compact column by the axes it depends on."""
    i = 0
    for a in col["d"]:
        i = i * axes[a]["n"] + state[a]
    return col["v"][i]


# --- two_walls ---------------------------------------------------------------------------

def test_html_is_small_and_self_contained(built: tuple) -> None:
    _, html, _ = built
    assert len(html.encode()) < 300_000
    assert html.startswith('<div class="lc-explorer" id="lcx-')
    network_or_eval = r"\b(src|href)=|@import|url\(|fetch\(|XMLHttpRequest|\beval\(|new Function"
    assert not re.search(network_or_eval, html)
    assert re.findall(r"https?://[^\"' ]+", html) == ["http://www.w3.org/2000/svg"]


def test_two_walls_html_size(tw_html: str) -> None:
    assert len(tw_html.encode()) < 300_000


def test_two_walls_dom_contract(tw: Explorer, tw_html: str) -> None:
    assert tw_html.count('<input type="range"') == 1
    assert tw_html.count("<select") == 3
    assert tw_html.count('<svg class="lc-chart"') == len(tw.views) == 3
    keys = re.findall(r'class="lc-readout-value" data-key="([^"]+)"', tw_html)
    assert keys == [r.key for r in tw.readouts]
    assert "lc-marker" in tw_html  # drawn by the script
    assert re.search(r'addEventListener\(isSelect \? "change" : "input"', tw_html)


def test_each_render_gets_its_own_id(tw: Explorer) -> None:
    ids = {re.search(r'id="(lcx-[0-9a-f]+)"', tw.to_html()).group(1) for _ in range(3)}
    assert len(ids) == 3
    assert tw._repr_html_().startswith('<div class="lc-explorer"')


def test_embedded_grid_equals_compute(built: tuple) -> None:
    ex, html, compute = built
    data = embedded(html)
    axes = data["axes"]
    assert [a["values"] for a in axes] == [list(c.values) for c in ex.controls]
    states = list(itertools.product(*(range(a["n"]) for a in axes)))
    for state in random.Random(0).sample(states, 60):
        values = {c.name: c.values[i] for c, i in zip(ex.controls, state, strict=True)}
        want = compute(**values)
        for key, col in data["num"].items():
            assert lookup(col, axes, list(state)) == pytest.approx(want[key], rel=1e-3), key
        for r in ex.readouts:
            assert lookup(data["text"][r.key], axes, list(state)) == r.text(want[r.key])


def test_initial_readouts_are_rendered_in_python(tw: Explorer, tw_html: str) -> None:
    at = {c.name: c.values[c.init] for c in tw.controls}
    assert at == {"seq_len": 2**17, "model": "llama-3.3-70b", "gpu": "h100-sxm",
                  "kv_dtype": "bf16"}
    kv = lclib.kv_cache_bytes("llama-3.3-70b", 2**17)
    assert f'data-key="kv_bytes">{kv / lclib.GB:.2f} GB = {kv / lclib.GiB:.2f} GiB<' in tw_html
    assert "42.95 GB = 40.00 GiB" in tw_html  # Llama-3.3-70B config.json: 327,680 B/token


def test_every_grid_corner_is_finite(built: tuple) -> None:
    ex, _, compute = built
    ends = [(c.values[0], c.values[-1]) if isinstance(c, Slider) else c.values
            for c in ex.controls]
    for combo in itertools.product(*ends):
        out = compute(*combo)
        assert all(math.isfinite(v) and v > 0 for v in out.values()), combo
        assert out["prefill_s"] == pytest.approx(out["prefill_linear_s"] + out["prefill_attn_s"])
    for col in ex.grid.columns.values():
        assert all(isinstance(v, str) or math.isfinite(v) for v in col)


def test_axes_have_labels(built: tuple) -> None:
    ex, _, _ = built
    for view, spec in zip(ex.views, ex.data()["charts"], strict=True):
        assert view.y_label and ex.x_label(view)
        assert spec["ydom"][0] <= spec["yticks"][0][0] < spec["yticks"][-1][0] <= spec["ydom"][1]


def test_two_walls_axes_have_units(tw: Explorer) -> None:
    assert "GB (10^9 bytes)" in tw.views[2].y_label
    xticks = tw.data()["charts"][0]["xticks"]
    assert [label for _, label in xticks] == ["1K", "4K", "16K", "64K", "256K", "1M"]


def test_formatters() -> None:
    assert [fmt_tokens(n) for n in (1024, 2**17, 2**20, 1000, 3 * 2**20)] == [
        "1K", "128K", "1M", "1,000", "3M"]
    assert [fmt_seconds(s) for s in (3.5e-5, 0.0041, 2.5, 12345.6, 2e-9)] == [
        "35 µs", "4.1 ms", "2.5 s", "12,346 s", "2 ns"]


def test_widget_redraws_from_the_same_grid(tw: Explorer) -> None:
    pytest.importorskip("ipywidgets")
    pytest.importorskip("matplotlib")
    box = tw.widget()
    slider, *_ = box.children[1].children
    readouts, image = box.children[2], box.children[3]
    assert image.value[:8] == b"\x89PNG\r\n\x1a\n"
    assert "42.95 GB" in readouts.value
    slider.value = 2**20
    kv = lclib.kv_cache_bytes("llama-3.3-70b", 2**20)
    assert f"{kv / lclib.GB:,.2f} GB" in readouts.value


def test_crossover_explorer_matches_the_cost_model() -> None:
    out = crossover_point(2**17, "llama-3.3-70b", 1, 0.4)
    assert out["crossover"] == pytest.approx(lclib.crossover_seq_len("llama-3.3-70b"))
    assert out["ratio"] == pytest.approx(2**17 / out["crossover"])  # marked where it crosses 1
    # GPUs and MFU change what fits a 10 s budget, not S*: 8 GPUs at 50% prefill more
    one, eight = out["within"], crossover_point(2**17, "llama-3.3-70b", 8, 0.5)["within"]
    assert 0 < one < eight
    rate = 0.4 * lclib.get_gpu("h100-sxm").peak_flops()
    assert lclib.prefill_flops("llama-3.3-70b", one).total <= 10 * rate
    assert lclib.prefill_flops("llama-3.3-70b", one + 1024).total > 10 * rate
    charts = crossover_explorer().data()["charts"]
    assert charts[0]["cap"] == "one" and charts[1]["cap"] == "budget_s"


@pytest.mark.skipif(not shutil.which("node"), reason="node not installed")
def test_script_is_valid_javascript(tw_html: str, tmp_path) -> None:
    script = re.findall(r"<script>(.*?)</script>", tw_html, re.S)
    assert len(script) == 1
    path = tmp_path / "explorer.js"
    path.write_text(script[0])
    subprocess.run(["node", "--check", str(path)], check=True)


# --- machinery ----------------------------------------------------------------------------

@settings(max_examples=100, deadline=None)
@given(lo=st.floats(1e-6, 1e6), ratio=st.floats(1.001, 1e6), steps=st.integers(2, 60),
       snap=st.none() | st.floats(1e-3, 1e3))
def test_log_grid_is_monotone_snapped_and_keeps_both_ends(lo: float, ratio: float, steps: int,
                                                         snap: float | None) -> None:
    hi = lo * ratio
    grid = log_grid(lo, hi, steps, snap)
    assert grid[0] == lo and grid[-1] == hi
    assert all(a < b for a, b in itertools.pairwise(grid))
    assert 2 <= len(grid) <= steps
    for v in grid[1:-1]:
        if snap:
            assert v / snap == pytest.approx(round(v / snap), rel=1e-9)
        else:
            assert v == pytest.approx(float(f"{v:.3g}"), rel=1e-9)


@given(lo=st.integers(1, 10**4), ratio=st.integers(2, 10**4), steps=st.integers(2, 40),
       snap=st.none() | st.integers(1, 2000))
def test_integer_log_grid_stays_integer(lo: int, ratio: int, steps: int, snap: int | None) -> None:
    grid = log_grid(lo, lo * ratio, steps, snap)
    assert all(type(v) is int for v in grid)
    assert all(v % (snap or 1) == 0 for v in grid[1:-1])


@given(shape=st.lists(st.integers(1, 4), min_size=1, max_size=4), data=st.data())
def test_compact_columns_round_trip(shape: list[int], data: st.DataObject) -> None:
    deps = data.draw(st.lists(st.booleans(), min_size=len(shape), max_size=len(shape)))
    states = list(itertools.product(*(range(n) for n in shape)))
    col = [sum((s + 1) * 10**a for a, s in enumerate(state) if deps[a]) for state in states]
    grid = Grid(tuple(shape), {"k": col})
    packed = grid.compact("k")
    axes = [{"n": n} for n in shape]
    assert all(lookup(packed, axes, list(s)) == v for s, v in zip(states, col, strict=True))
    assert packed["d"] == [a for a, d in enumerate(deps) if d and shape[a] > 1]


def square(x: float, kind: str = "a") -> dict[str, object]:
    return {"y": x * x, "z": -x, "label": f"{kind}:{x}"}


def make(**kw: object) -> Explorer:
    args = {"compute": square,
            "controls": [Slider("x", "x (m)", [1, 2, 3]), Dropdown("kind", "kind", ["a", "b"])],
            "views": [Line(x="x", y=["y", "z"], y_label="m²")],
            "readouts": [Readout("label", "label")]}
    return Explorer(**{**args, **kw})


def test_small_explorer_works() -> None:
    ex = make(views=[Line(x="x", y=["y"]), StackedBars(y=["y"], x="kind", capacity="y")])
    data = embedded(ex.to_html())
    assert data["num"]["y"] == {"d": [0], "v": [1, 4, 9]}
    assert data["text"]["label"]["d"] == [0, 1]
    assert data["charts"][1]["ydom"] == [0.0, 10.0]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"controls": []}, "controls="),
    ({"controls": [Slider("x", "x", [1]), Slider("x", "x", [2])]}, "control names repeat"),
    ({"readouts": [Readout("label", "a"), Readout("label", "b")]}, "readout keys repeat"),
    ({"views": ["y"]}, "Line"),
    ({"views": [], "readouts": []}, "at least one view"),
    ({"views": [Line(x="kind", y=["y"])]}, "dropdown"),
    ({"views": [Line(x="w", y=["y"])]}, "no control named 'w'"),
    ({"controls": [Slider("x", "x", range(1, 200)), Dropdown("kind", "k", list(range(200)))]},
     "max 20,000"),
])
def test_bad_explorer_raises(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make(**kwargs)


@pytest.mark.parametrize(("compute", "message"), [
    (lambda x, kind: {"y": 1.0, "label": ""}, "returned no 'z'"),
    (lambda x, kind: {"y": float("nan"), "z": 0, "label": ""}, "finite number"),
    (lambda x, kind: {"y": "1", "z": 0, "label": ""}, "finite number"),
    (lambda x, kind: [x], "return a dict"),
    (lambda x, kind: {"y": 1 / (x - 3), "z": 0, "label": ""}, r"x=3.*ZeroDivisionError"),
])
def test_bad_compute_raises_at_build(compute, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make(compute=compute).to_html()


@pytest.mark.parametrize(("build", "message"), [
    (lambda: Slider("x", "x", []), "no values"),
    (lambda: Slider("x", "x", [2, 1]), "increasing"),
    (lambda: Slider("x", "x", [1, float("inf")]), "finite"),
    (lambda: Slider("not a name", "x", [1]), "identifier"),
    (lambda: Dropdown("d", "d", ["a", "a"]), "distinct"),
    (lambda: Dropdown("d", "d", ["a"], default="b"), "not among"),
    (lambda: LogSlider("s", "s", 0, 10), "0 < lo < hi"),
    (lambda: LogSlider("s", "s", -1, 10), "0 < lo < hi"),
    (lambda: LogSlider("s", "s", 10, 10), "0 < lo < hi"),
    (lambda: LogSlider("s", "s", 1, 10, steps=1), "steps"),
    (lambda: LogSlider("s", "s", 1, 10, snap=0), "snap"),
    (lambda: Line(x="x", y="y"), "list of keys"),
    (lambda: Line(x="x", y=["y", "z"], labels=["one"]), "one label per y key"),
])
def test_bad_controls_and_views_raise(build, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()


def test_slider_defaults() -> None:
    assert LogSlider("s", "s", 1, 1000, steps=4, default=90).init == 2  # nearest on a log axis
    assert Slider("s", "s", [1, 2, 3, 4]).init == 2
    assert Dropdown("d", "d", ["a", "b"]).init == 0


def test_a_none_value_is_a_gap_in_a_line() -> None:
    # chapter 2 leaves a batch that does not fit out of its decode chart
    ex = Explorer(lambda x: {"y": None if x > 2 else float(x)},
                  controls=[Slider("x", "x", [1, 2, 3, 4])], views=[Line(x="x", y=["y"])])
    assert ex.grid.columns["y"] == [1.0, 2.0, None, None]
    assert ex.data()["charts"][0]["ydom"][1] >= 2 and "null" in ex.to_html()


def test_the_face_exports_every_chapter_builder():
    import importlib
    import pkgutil

    import lclib.explorers as face

    builders = {name for m in pkgutil.iter_modules(face.__path__) if m.name != "parts"
                for name in dir(importlib.import_module(f"lclib.explorers.{m.name}"))
                if name.endswith("_explorer")}
    assert builders == {n for n in face.__all__ if n.endswith("_explorer")}
    assert all(callable(getattr(face, n)) for n in face.__all__)
    with pytest.raises(AttributeError):
        face.no_such_explorer  # noqa: B018
