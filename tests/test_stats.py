import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lclib import stats

pairs = st.lists(st.tuples(st.booleans(), st.booleans()), min_size=1, max_size=300)


def test_mcnemar_counts_and_exact_p_of_a_textbook_case():
    # 1 prompt only a gets right, 9 only b, 5 both, 5 neither: p = 2 (C(10,0)+C(10,1)) / 2^10
    a = [True] * 1 + [False] * 9 + [True] * 5 + [False] * 5
    b = [False] * 1 + [True] * 9 + [True] * 5 + [False] * 5
    r = stats.mcnemar(a, b)
    assert (r.n, r.both, r.only_a, r.only_b) == (20, 5, 1, 9)
    assert r.p_value == pytest.approx(22 / 1024)
    assert r.diff == pytest.approx(-8 / 20)
    assert r.ci95[0] < r.diff < r.ci95[1] < 0


def test_identical_outcomes_have_p_one_and_zero_width_interval():
    r = stats.mcnemar([True, False, True], [True, False, True])
    assert r.p_value == 1.0 and r.diff == 0 and r.ci95 == (0.0, 0.0)


def test_exact_p_approaches_continuity_corrected_chi_square_for_many_discordant_pairs():
    b, c = 60, 40
    r = stats.mcnemar([True] * b + [False] * c, [False] * b + [True] * c)
    chi2 = (abs(b - c) - 1) ** 2 / (b + c)
    assert r.p_value == pytest.approx(math.erfc(math.sqrt(chi2 / 2)), rel=0.05)


def test_exact_p_survives_thousands_of_discordant_pairs():
    r = stats.mcnemar([True] * 1500 + [False] * 900, [False] * 1500 + [True] * 900)
    assert 0 <= r.p_value < 1e-20


@given(pairs)
def test_mcnemar_is_antisymmetric_and_consistent(ab):
    a, b = [x for x, _ in ab], [y for _, y in ab]
    r, s = stats.mcnemar(a, b), stats.mcnemar(b, a)
    assert r.p_value == pytest.approx(s.p_value) and 0 < r.p_value <= 1
    assert r.diff == pytest.approx(-s.diff)
    assert r.diff == pytest.approx(sum(a) / len(a) - sum(b) / len(b))
    assert r.both + r.only_a + r.only_b <= r.n == len(a)
    assert r.ci95[0] <= r.diff <= r.ci95[1]


@given(pairs)
def test_more_lopsided_discordance_never_raises_p(ab):
    a, b = [x for x, _ in ab], [y for _, y in ab]
    r = stats.mcnemar(a, b)
    worse = stats.mcnemar(a + [True], b + [False]) if r.only_a >= r.only_b else None
    if worse is not None:
        assert worse.p_value <= r.p_value + 1e-12


@pytest.mark.parametrize("a, b", [([], []), ([True], [True, False])])
def test_mcnemar_rejects_bad_input(a, b):
    with pytest.raises(ValueError, match="equal, non-empty"):
        stats.mcnemar(a, b)


def test_prompts_needed_resolves_delta_at_two_standard_errors():
    n = stats.prompts_needed(0.5, 0.1)
    assert n == 200  # 2 * 4 * 0.25 / 0.01
    assert 2 * math.sqrt(2 * 0.25 / n) <= 0.1 < 2 * math.sqrt(2 * 0.25 / (n - 1))


@given(st.floats(0.01, 0.99), st.floats(0.01, 0.5))
def test_prompts_needed_shrinks_with_delta_and_is_symmetric(p, delta):
    assert stats.prompts_needed(p, delta) >= stats.prompts_needed(p, min(1.0, 2 * delta))
    assert stats.prompts_needed(p, delta) == pytest.approx(stats.prompts_needed(1 - p, delta),
                                                           abs=1)


def test_paired_needs_fewer_prompts_than_independent_when_setups_mostly_agree():
    # two setups at 80% that disagree on 10% of prompts: paired sd is far below independent
    assert stats.paired_prompts_needed(0.10, 0.05) < stats.prompts_needed(0.8, 0.05)
    n = stats.paired_prompts_needed(0.10, 0.05)
    assert 2 * math.sqrt((0.10 - 0.05**2) / n) <= 0.05


@pytest.mark.parametrize("call", [lambda: stats.prompts_needed(0, 0.1),
                                  lambda: stats.prompts_needed(0.5, 0),
                                  lambda: stats.paired_prompts_needed(0.05, 0.1)])
def test_sample_size_helpers_reject_bad_input(call):
    with pytest.raises(ValueError, match="pass"):
        call()
