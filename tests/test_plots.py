"""The cost-model figures: what they mark, and that their labels do not collide."""

import matplotlib

matplotlib.use("Agg")

import lclib  # noqa: E402
from lclib import plots  # noqa: E402


def test_two_walls_marks_the_crossover_and_keeps_labels_apart():
    fig = plots.two_walls_figure("llama-3.3-70b", "h100-sxm", mfu=0.4)
    left, right = fig.axes
    s_star = lclib.crossover_seq_len("llama-3.3-70b")
    assert any(f"{s_star:,.0f}" in t.get_text() for t in left.texts)
    for ax in (left, right):  # one label per factor of 4, no minor labels to collide
        assert [t.get_text() for t in ax.get_xticklabels()] == list(plots.TOKEN_TICKS.values())
        legend = ax.get_legend().get_window_extent()
        assert legend.y1 <= ax.get_window_extent().y0  # below the axes, covering no line
    # attention drawn as its own line: its last point is the seq² term at 1M, not a stack
    attention = left.get_lines()[1].get_ydata()
    f = lclib.prefill_flops("llama-3.3-70b", 2**20)
    assert attention[-1] == f.attention / (0.4 * lclib.get_gpu("h100-sxm").peak_flops())


def test_roofline_puts_prefill_right_and_decode_left_of_the_ridge():
    fig = plots.roofline_figure("llama-3.3-70b", "h100-sxm")
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert sum("(compute)" in t for t in labels) == 2  # prefill linear and attention
    assert sum("(memory)" in t for t in labels) == 3  # the decode points
    assert any(t.get_text().startswith("ridge 295") for t in fig.axes[0].texts)
