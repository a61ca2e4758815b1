"""Chapter 7's explorer and the needle-in-a-haystack experiment."""

import pytest

import lclib
from lclib.bench import run_experiment
from lclib.explorer import MAX_GRID_POINTS
from lclib.explorers import case_study as C


def test_explorer_is_small_and_survives_its_ends():
    ex = C.case_study()
    html = ex.to_html()
    assert len(html.encode()) < 300_000
    assert len(ex.grid.columns["prefill_s"]) <= MAX_GRID_POINTS
    for seq in (2**10, 2**20):
        for q in (C.QUERIES[0], C.QUERIES[-1]):
            p = C.case_point(seq, q, "fp8")
            assert p["prefill_s"] > 0 and p["per_query_s"] > 0


def test_both_walls_close_together():
    lo, hi = C.case_point(2**17, 20, "bf16"), C.case_point(2**20, 20, "bf16")
    assert hi["prefill_s"] / lo["prefill_s"] > 8  # super-linear: 8x the tokens
    assert lo["gpus_memory"] == lclib.cp_gpus_needed(C.CASE_MODEL, C.CASE_GPU, 2**17)
    assert hi["gpus_memory"] > lo["gpus_memory"] and hi["gpus_ttft"] > lo["gpus_ttft"]


def test_per_query_cost_collapses_to_the_marginal():
    one, many = C.case_point(2**17, 1, "bf16"), C.case_point(2**17, 100, "bf16")
    assert one["per_query_s"] == pytest.approx(one["without_cache_s"])
    assert many["marginal_s"] < many["per_query_s"] < one["per_query_s"] / 2


def test_niah_tiny_on_cpu():
    run = run_experiment("niah", sizes=[64, 96], out=None)
    assert run["lengths"] == [64, 96] and len(run["reference"]) == 2
    assert all(0 <= a <= 1 for row in run["reference"] for a in row)
    for name, delta in run["delta"].items():
        by_len = [sum(r) / len(r) for r in run["runs"][name]]
        base = [sum(r) / len(r) for r in run["reference"]]
        assert delta == pytest.approx([a - b for a, b in zip(by_len, base, strict=True)])
    if run["trained"]:  # chunked prefill computes the same function: no change at all
        assert run["delta"]["chunked prefill"] == [0.0, 0.0]
