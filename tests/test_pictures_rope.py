"""lclib.pictures.rope: the drawn per-pair factors are inv_freq's ratios, the bands classify's,
YaRN's bounds correction_range's; every control changes the drawing."""

import math
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lclib import get_model, rope
from lclib.picture import MAX_HTML_BYTES
from lclib.pictures import rope as pictures
from lclib.tinylm import CONFIG

QWEN = get_model("qwen2.5-72b")  # config.json: head_dim 128, rope_theta 1e6, 32K pretraining
GEOMETRY = {"qwen2.5-72b": (128, 1e6, 32_768), "tinylm": (32, 1e4, 256)}  # tinylm: checkpoint


def expected(model: str, method: str, s: float) -> tuple[list[float], list[str]]:
    """Per-pair ratio and treatment, straight from lclib.rope with the dicts a config holds."""
    d, theta, original = GEOMETRY[model]
    dicts = {"pi": {"rope_type": "linear", "factor": s},
             "ntk": {"rope_type": "dynamic", "factor": 1.0},  # evaluated at s × original
             "yarn": {"rope_type": "yarn", "factor": s,
                      "original_max_position_embeddings": original},
             # Llama 3.1's config.json: low_freq_factor 1, high_freq_factor 4
             "llama3": {"rope_type": "llama3", "factor": s, "low_freq_factor": 1.0,
                        "high_freq_factor": 4.0, "original_max_position_embeddings": original}}
    scaled, _ = rope.inv_freq(d, theta, dicts[method], original, seq_len=round(s * original))
    plain, _ = rope.inv_freq(d, theta)
    return (scaled.double() / plain.double()).tolist(), rope.classify(scaled, plain, s)


def drawn(svg: str) -> list[tuple[float, float, str]]:
    """(x, ratio, treatment) of every bar in the factor panel, read back from its length."""
    out = []
    for d, t in re.findall(r'<path d="([^"]*)" class="lc-fill-\d" data-treatment="(\w+)">',
                           svg):
        for x, length in re.findall(r"M([\d.]+) [\d.]+v([\d.]+)h", d):
            ratio = 2 ** (-(float(length) - 2) / pictures.PX_PER_HALVING)
            out.append((float(x), ratio, t))
    return sorted(out)


@settings(max_examples=25, deadline=None)
@given(model=st.sampled_from(list(pictures.MODELS)), method=st.sampled_from(list(
    pictures.METHODS)), s=st.sampled_from(pictures.FACTORS))
def test_drawn_factors_are_inv_freq_ratios_and_bands_are_classify(model: str, method: str,
                                                                  s: float) -> None:
    ratios, treatments = expected(model, method, s)
    bars = drawn(pictures.rope_frame(model, method, s).svg)
    assert [t for _, _, t in bars] == treatments
    assert [r for _, r, _ in bars] == pytest.approx(ratios, rel=2e-3)


def test_the_geometry_is_the_configs() -> None:
    assert GEOMETRY["tinylm"] == (CONFIG.head_dim, CONFIG.rope_theta,
                                  CONFIG.max_position_embeddings)
    assert GEOMETRY["qwen2.5-72b"] == (QWEN.head_dim, QWEN.rope_theta,
                                       QWEN.rope_scaling["original_max_position_embeddings"])


def test_yarn_bounds_and_counts_agree_with_the_chapter() -> None:
    """Chapter 6 glues Qwen2.5's YaRN ×4 counts from per_dimension, TinyLM's at ×8."""
    for model, s in (("qwen2.5-72b", 4.0), ("tinylm", 8.0)):
        d, theta, original = GEOMETRY[model]
        treat = rope.per_dimension(d, theta, {"rope_type": "yarn", "factor": s,
                                              "original_max_position_embeddings": original},
                                   original)["treatment"]
        frame = pictures.rope_frame(model, "yarn", s)
        low, high = rope.correction_range(d, theta, original)
        assert f"low = {low} (β_fast)" in frame.svg and f"high = {high} (β_slow)" in frame.svg
        assert (f"{treat.count('extrapolated')} kept, {treat.count('ramp')} ramp, "
                f"{treat.count('interpolated')} interpolated") in frame.caption
        assert treat.index("ramp") == low + 1 and treat.index("interpolated") == high


def test_pi_divides_all_and_ntk_keeps_only_the_fastest() -> None:
    pi = drawn(pictures.rope_frame("qwen2.5-72b", "pi", 8.0).svg)
    assert {t for _, _, t in pi} == {"interpolated"}
    assert all(math.isclose(r, 1 / 8, rel_tol=2e-3) for _, r, _ in pi)
    ntk = [t for _, _, t in drawn(pictures.rope_frame("tinylm", "ntk", 4.0).svg)]
    assert ntk[0] == "extrapolated" and ntk[-1] == "interpolated" and set(ntk[1:-1]) == {"ramp"}


def frames_along(picture: pictures.Picture, axis: int) -> int:
    d = picture.data()
    state = [ax["init"] for ax in d["axes"]]
    seen = set()
    for v in range(d["axes"][axis]["n"]):
        state[axis] = v
        seen.add(d["frame"][picture.point(state)])
    return len(seen)


def test_every_control_changes_the_drawing_and_the_size_limit() -> None:
    picture = pictures.rope_picture()
    assert [frames_along(picture, a) for a in range(3)] == [len(c.values)
                                                            for c in picture.controls]
    assert len(picture.to_html().encode()) <= MAX_HTML_BYTES


def test_slider_ends_stay_on_the_axis() -> None:
    factor = pictures.rope_picture().controls[2]
    assert factor.values[0] == 2 and factor.values[-1] == 2**pictures.HALVINGS
    longest = max(r for _, r, _ in drawn(pictures.rope_frame("qwen2.5-72b", "pi",
                                                             factor.values[-1]).svg))
    assert longest == pytest.approx(1 / factor.values[-1], rel=2e-3)  # the axis' last tick
    assert "÷32</text>" in pictures.rope_frame("tinylm", "yarn", factor.values[0]).svg


def test_bad_input_says_what_to_pass() -> None:
    with pytest.raises(ValueError, match="pass one of qwen2.5-72b, tinylm"):
        pictures.head("llama")
    with pytest.raises(ValueError, match="unknown method"):
        pictures.scaling("rerope", 4.0, 256)
