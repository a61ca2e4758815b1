"""Amortization model: the seed's contract example, seed 002's cases, sympy twins, errors."""

import math

import pytest
import sympy as sp
from hypothesis import given
from hypothesis import strategies as st

import lclib
from lclib import amortize as A

LLAMA, H100 = "llama-3.3-70b", "h100-sxm"
pos = st.floats(min_value=1e-3, max_value=1e4)


def test_seed_000_contract_example_reproduces_with_its_assumptions():
    # seed 000: 2N with N = 70e9, 128,000 tokens, 40% of an H100's 989.4 TFLOP/s -> ~45 s,
    # and 20 questions -> ~2.3 s each (the prefill share only)
    seed_prefill = 2 * 70e9 * 128_000 / (0.4 * 989.4e12)
    assert seed_prefill == pytest.approx(45.3, abs=0.05)
    assert A.per_query_cost(seed_prefill, 20, 0.0) == pytest.approx(2.26, abs=0.01)
    # with attention and the marginal work the prefill share alone is larger, and the answer
    # decode (1,000 tokens reading ~43 GB of KV per step) dominates
    c = A.query_cost(LLAMA, H100, 128_000, 200, 1000, 20)
    assert c.prefill > 2 * seed_prefill
    assert c.answer > c.prefill / 20 > 2.3


def test_seed_002_system_prompt_case():
    # seed 002: 100K system prompt + 1K turn on 4 H100 at 80%: ~5 s without the cache, ~50 ms
    # with it. Both counted 2N only; attention to the cached prefix is not free.
    without = lclib.prefill_time(LLAMA, H100, 101_000, n_gpus=4, mfu=0.8)
    with_cache = A.incremental_prefill_time(LLAMA, H100, 100_000, 1000, n_gpus=4, mfu=0.8)
    linear_only = 2 * 70e9 * 1000 / (4 * 0.8 * 989.4e12)
    assert linear_only == pytest.approx(0.044, abs=0.001)
    assert 0.1 < with_cache < 0.2 and 7 < without < 10


def test_decode_time_is_the_sum_of_steps():
    steps = sum(lclib.decode_step_time(LLAMA, H100, c, batch=3) for c in range(5000, 5040))
    assert A.decode_time(LLAMA, H100, 5000, 40, batch=3) == pytest.approx(steps, rel=1e-12)


@given(st.integers(1, 200_000), st.integers(1, 50_000))
def test_incremental_prefill_adds_up(cached, new):
    parts = (lclib.prefill_time(LLAMA, H100, cached)
             + A.incremental_prefill_time(LLAMA, H100, cached, new))
    assert parts == pytest.approx(lclib.prefill_time(LLAMA, H100, cached + new), rel=1e-9)


@given(pos, pos, st.integers(1, 10_000))
def test_per_query_matches_sympy(prefill, marginal, q):
    f = sp.lambdify((A.P, A.q, A.M), A.symbolic()["per_query"])
    assert A.per_query_cost(prefill, q, marginal) == pytest.approx(f(prefill, q, marginal))


@given(pos, pos, pos)
def test_break_even_is_the_first_q_within_budget(prefill, marginal, extra):
    budget = marginal + extra
    q = A.break_even_queries(prefill, marginal, budget)
    assert A.per_query_cost(prefill, q, marginal) <= budget * (1 + 1e-9)
    if q > 1:
        assert A.per_query_cost(prefill, q - 1, marginal) > budget
    exact = sp.lambdify((A.P, A.M, A.T), A.symbolic()["break_even"])(prefill, marginal, budget)
    assert q == max(1, math.ceil(exact - 1e-9))


def test_keep_warm_gap_matches_sympy_and_fp8_doubles_it():
    kv, hbm = sp.symbols("KV HBM", positive=True)
    expr = A.symbolic()["keep_warm_gap"]
    p = lclib.prefill_time(LLAMA, H100, 131_072)
    value = expr.subs({A.P: p, hbm: 80e9, kv: lclib.kv_cache_bytes(LLAMA, 131_072)})
    assert A.keep_warm_gap(LLAMA, H100, 131_072) == pytest.approx(float(value))
    assert A.keep_warm_gap(LLAMA, H100, 131_072, "fp8") == pytest.approx(
        2 * A.keep_warm_gap(LLAMA, H100, 131_072))


def test_residency_in_gb_seconds():
    assert A.kv_residency(LLAMA, 131_072, 60) == pytest.approx(42.95 * 60, rel=1e-3)
    assert A.kv_residency(LLAMA, 131_072, 60, "fp8") == pytest.approx(42.95 * 30, rel=1e-3)


def test_batching_shares_weights_not_kv():
    one = A.query_cost(LLAMA, H100, 128_000, 200, 1000, 20).answer
    many = A.query_cost(LLAMA, H100, 128_000, 200, 1000, 20, decode_batch=64).answer
    kv_only = 1000 * lclib.kv_cache_bytes(LLAMA, 128_700) / lclib.get_gpu(H100).hbm_bandwidth
    assert kv_only < many < one


@pytest.mark.parametrize("call, match", [
    (lambda: A.per_query_cost(10, 0, 1), "queries"),
    (lambda: A.per_query_cost(10, 2, -1), "marginal_s"),
    (lambda: A.break_even_queries(10, 5, 5), "budget_s > marginal_s"),
    (lambda: A.incremental_prefill_time(LLAMA, H100, -1, 10), "cached"),
    (lambda: A.kv_residency(LLAMA, 100, -1), "seconds"),
    (lambda: A.query_cost(LLAMA, H100, 1000, 10, 10, 5, decode_batch=0), "decode_batch"),
])
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()
