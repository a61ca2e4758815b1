"""Chapter 8's explorer and the RULER-like suite experiment."""

import math

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
    ex = C.case_study_explorer()
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
    # a layout an engine can run (TP 1, 2, 4 or 8), never fewer GPUs than bytes / HBM
    assert lo["gpus_memory"] == 4 > lclib.cp_gpus_needed(C.CASE_MODEL, C.CASE_GPU, 2**17) == 3
    assert hi["gpus_memory"] > lo["gpus_memory"] and hi["gpus_ttft"] > lo["gpus_ttft"]


def test_explorer_grid_holds_the_pages_contract():
    p = C.case_point(128_000, 20, "bf16", 8)
    page = lclib.amortize.query_cost(C.CASE_MODEL, C.CASE_GPU, 128_000, 200, 1000, 20,
                                     decode_batch=8)
    assert 128_000 in C.CONTEXTS and 20 in C.QUERIES
    assert p["per_query_s"] == pytest.approx(page.per_query)


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
        n = run["n_samples"] * len(run["depths"])
        for name, tests in report["paired"].items():  # paired against the same prompts
            for t, d in zip(tests, report["delta"][name], strict=True):
                assert t["n"] == n and t["diff"] == pytest.approx(-d)
                assert t["both"] + t["only_a"] + t["only_b"] <= n and 0 < t["p_value"] <= 1
        if run["trained"]:  # chunked prefill computes the same function: no change at all
            assert report["delta"]["chunked prefill"] == [0.0, 0.0]
            assert all(t["only_a"] == t["only_b"] == 0 for t in report["paired"]["chunked prefill"])


@given(st.integers(0, 16), st.integers(0, 16))
def test_paired_counts_only_the_discordant_prompts(lost, gained):
    # 32 prompts at one length: the candidate loses `lost` the reference got, gains `gained`
    ref = np.zeros((1, 1, 32), dtype=bool)
    ref[0, 0, :16] = True
    cand = ref.copy()
    cand[0, 0, :lost] = False
    cand[0, 0, 16:16 + gained] = True
    (t,) = niah.paired(ref, cand)
    assert (t["only_a"], t["only_b"], t["both"]) == (lost, gained, 16 - lost)
    k, m = min(lost, gained), lost + gained
    exact = min(1.0, 2 * sum(math.comb(m, i) for i in range(k + 1)) / 2**m) if m else 1.0
    assert t["p_value"] == pytest.approx(exact)


def test_two_lost_prompts_in_32_are_no_evidence():
    # 24/32 vs 22/32 on the same prompts: two discordant pairs, p = 0.5 (the unpaired noise
    # floor of two independent 32-sample accuracies says nothing about pairs at all)
    ref = np.array([[[True] * 24 + [False] * 8]])
    cand = ref.copy()
    cand[0, 0, :2] = False
    (t,) = niah.paired(ref, cand)
    assert t["p_value"] == pytest.approx(0.5) and t["diff"] == pytest.approx(2 / 32)


grids = st.integers(1, 6).flatmap(lambda n: st.tuples(
    st.lists(st.lists(st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0]), min_size=3, max_size=3),
             min_size=n, max_size=n),
    st.lists(st.integers(1, 4096), min_size=n, max_size=n, unique=True).map(sorted)))


@given(grids, st.sampled_from([0.5, 0.8, 0.9, 1.0]))
def test_effective_length_is_where_the_passing_rows_end(grid_lengths, threshold):
    grid, lengths = grid_lengths
    means = [sum(row) / len(row) for row in grid]
    eff = niah.effective_length(grid, lengths, threshold)
    upto = 0 if eff is None else lengths.index(eff) + 1
    assert all(m >= threshold for m in means[:upto])  # every length up to it passes
    assert upto == len(lengths) or means[upto] < threshold  # the next one fails
    stricter = niah.effective_length(grid, lengths, min(1.0, threshold + 0.1))
    assert (stricter or 0) <= (eff or 0)


def test_effective_length_reads_a_heatmap():
    grid = [[1, 1, 1], [1, 0.5, 1], [1, 1, 1]]  # a dip in the middle at the second length
    assert niah.effective_length(grid, [1024, 2048, 4096]) == 1024
    assert niah.effective_length(grid, [1024, 2048, 4096], threshold=0.8) == 4096
    assert niah.effective_length([[0.5, 1]], [128]) is None


@pytest.mark.parametrize(("grid", "lengths", "threshold", "message"), [
    ([[1, 1]], [128, 256], 0.9, "one row per length"),
    ([[1], [1]], [256, 128], 0.9, "increasing order"),
    ([[1]], [128], 0.0, "threshold in"),
])
def test_effective_length_bad_input(grid, lengths, threshold, message):
    with pytest.raises(ValueError, match=message):
        niah.effective_length(grid, lengths, threshold)
