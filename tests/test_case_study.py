"""Chapter 7's explorer and the RULER-like suite experiment."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import lclib
from lclib import tinylm
from lclib.bench import niah, run_experiment
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


def test_niah_suite_tiny_on_cpu():
    run = run_experiment("niah", sizes=[64, 96], out=None)
    assert run["lengths"] == [64, 96] and set(run["tasks"]) == set(tinylm.TASKS)
    for report in run["tasks"].values():
        ref = np.array(report["reference"])
        assert ref.shape == (2, len(run["depths"])) and ((ref >= 0) & (ref <= 1)).all()
        assert report["accuracy"] == pytest.approx(ref.mean(1))
        for name, delta in report["delta"].items():
            assert delta == pytest.approx(np.array(report["runs"][name]).mean(1) - ref.mean(1))
        if run["trained"]:  # chunked prefill computes the same function: no change at all
            assert report["delta"]["chunked prefill"] == [0.0, 0.0]


@given(st.floats(0, 1), st.integers(1, 10_000))
def test_noise_floor_is_positive_symmetric_and_shrinks_with_samples(p, n):
    assert niah.noise_floor(p, n) > 0
    assert niah.noise_floor(p, n) == pytest.approx(niah.noise_floor(1 - p, n))
    assert niah.noise_floor(p, 4 * n) < niah.noise_floor(p, n)


def test_noise_floor_of_a_coin_is_two_standard_errors():
    n = 10_000  # smoothing is negligible
    assert niah.noise_floor(0.5, n) == pytest.approx(2 * (2 * 0.25 / n) ** 0.5, rel=1e-3)
