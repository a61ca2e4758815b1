"""Amortization model: the case study's contract, the Hopper lecture's cases, sympy twins."""

import math

import pytest
import sympy as sp
from hypothesis import given
from hypothesis import strategies as st

import lclib
from lclib import amortize as A

LLAMA, H100 = "llama-3.3-70b", "h100-sxm"
pos = st.floats(min_value=1e-3, max_value=1e4)


def test_case_study_contract_example_reproduces_with_its_assumptions():
    # the case study: 2N with N = 70e9, 128,000 tokens, 40% of an H100's 989.4 TFLOP/s -> ~45 s,
    # and 20 questions -> ~2.3 s each (the prefill share only)
    cs_prefill = 2 * 70e9 * 128_000 / (0.4 * 989.4e12)
    assert cs_prefill == pytest.approx(45.3, abs=0.05)
    assert A.per_query_cost(cs_prefill, 20, 0.0) == pytest.approx(2.26, abs=0.01)
    # with attention and the marginal work the prefill share alone is larger, and the answer
    # decode (1,000 tokens reading ~43 GB of KV per step) dominates
    c = A.query_cost(LLAMA, H100, 128_000, 200, 1000, 20)
    assert c.prefill > 2 * cs_prefill
    assert c.answer > c.prefill / 20 > 2.3


def test_hopper_lecture_system_prompt_case():
    # the Hopper lecture: 100K system prompt + 1K turn on 4 H100 at 80%: ~5 s without the
    # cache, ~50 ms with it. Both counted 2N only; attention to the cached prefix is not free.
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
    f = sp.lambdify((A.C_pre, A.q, A.C_m), A.derive_amortization()["per_query"])
    assert A.per_query_cost(prefill, q, marginal) == pytest.approx(f(prefill, q, marginal))


@given(pos, pos, pos)
def test_break_even_is_the_first_q_within_budget(prefill, marginal, extra):
    budget = marginal + extra
    q = A.break_even_queries(prefill, marginal, budget)
    assert A.per_query_cost(prefill, q, marginal) <= budget * (1 + 1e-9)
    if q > 1:
        assert A.per_query_cost(prefill, q - 1, marginal) > budget
    break_even = A.derive_amortization()["break_even"]
    exact = sp.lambdify((A.C_pre, A.C_m, A.C_max), break_even)(prefill, marginal, budget)
    assert q == max(1, math.ceil(exact - 1e-9))


def test_keep_warm_gap_matches_sympy_and_fp8_doubles_it():
    expr = A.derive_amortization()["keep_warm_gap"]
    p = lclib.prefill_time(LLAMA, H100, 131_072)
    hbm = lclib.get_gpu(H100).hbm_bytes
    value = expr.subs({A.C_pre: p, A.M_hbm: hbm, A.M_kv: lclib.kv_cache_bytes(LLAMA, 131_072)})
    assert A.keep_warm_gap(LLAMA, H100, 131_072) == pytest.approx(float(value))
    assert A.keep_warm_gap(LLAMA, H100, 131_072, "fp8") == pytest.approx(
        2 * A.keep_warm_gap(LLAMA, H100, 131_072))


def test_symbols_render_as_the_notation_appendix_writes_them():
    # sympy reads a name ending in "BM" as bold: Symbol("HBM") printed as a bold H
    for expr in A.derive_amortization().values():
        tex = sp.latex(expr)
        assert "boldsymbol" not in tex and "mathrm" in tex


def test_ttft_is_not_the_amortized_cost():
    # the 20 s budget is TTFT: the first query pays the whole prefill on the serving GPUs
    # (~12.3 s on 8 H100s), a follow-up only its question's (~30 ms); neither includes the
    # answer's decode, which the amortized GPU-seconds (~59.9 per query at 20 queries) do
    first = A.ttft(LLAMA, H100, 128_000, 200, n_gpus=8, cached=False)
    follow = A.ttft(LLAMA, H100, 128_000, 200, n_gpus=8, cached=True)
    assert first == pytest.approx(12.35, abs=0.01) and follow == pytest.approx(0.030, abs=0.001)
    assert A.query_cost(LLAMA, H100, 128_000, 200, 1000, 20).per_query == pytest.approx(59.9,
                                                                                       abs=0.05)


def test_cascade_reads_the_shared_document_once_per_step():
    # 32 answers about one cached 128,000-token contract: without cascade each step reads the
    # weights (141.1 GB) and 32 copies of 41.9 GB of KV: ~13.9 s per 1,000-token answer; with it
    # (141.1 + 41.9 GB + each answer's own tokens) / 32 per answer token: ~1.8 s
    w, kv_tok = lclib.weight_bytes(LLAMA), lclib.kv_bytes_per_token(LLAMA)
    bw = lclib.get_gpu(H100).hbm_bandwidth
    assert w / 1e9 == pytest.approx(141.1, abs=0.05)
    assert 128_000 * kv_tok / 1e9 == pytest.approx(41.9, abs=0.05)
    own = sum(200 + t for t in range(1000)) / 1000  # mean own tokens per step
    by_hand = 1000 * (w + (128_000 + 32 * own) * kv_tok) / bw / 32
    plain = A.query_cost(LLAMA, H100, 128_000, 200, 1000, 20, decode_batch=32).answer
    shared = A.query_cost(LLAMA, H100, 128_000, 200, 1000, 20, decode_batch=32, cascade=True)
    assert shared.answer == pytest.approx(by_hand, rel=1e-9)
    assert shared.answer == pytest.approx(1.78, abs=0.01) and plain == pytest.approx(13.9, abs=0.05)
    # 32 different documents share nothing: 1.34 TB of KV
    assert 32 * 128_000 * kv_tok / 1e12 == pytest.approx(1.34, abs=0.005)


@given(st.integers(1, 64), st.integers(1, 5000), st.integers(1, 500))
def test_cascade_with_one_request_or_nothing_shared_is_plain_decode(batch, ctx, tokens):
    plain = A.decode_time(LLAMA, H100, ctx, tokens, batch)
    assert A.decode_time(LLAMA, H100, ctx, tokens, batch, shared=0) == plain
    assert A.decode_time(LLAMA, H100, ctx, tokens, 1, shared=ctx) == pytest.approx(
        A.decode_time(LLAMA, H100, ctx, tokens, 1))
    assert A.decode_time(LLAMA, H100, ctx, tokens, batch, shared=ctx) <= plain * (1 + 1e-12)


def test_tiers_reload_over_pcie_instead_of_recomputing():
    # 41.9 GB over PCIe Gen5 x16 (64 GB/s): ~0.65 s, against ~98.5 GPU-s of prefill
    hbm, host, recompute = A.kv_tiers(LLAMA, H100, 128_000, 200, n_gpus=8)
    assert host.ttft_s - hbm.ttft_s == pytest.approx(41.94304e9 / 64e9)
    assert recompute.gpu_s == pytest.approx(98.5, abs=0.05) and host.gpu_s == 0
    assert hbm.ttft_s < host.ttft_s < recompute.ttft_s
    assert hbm.hbm_bytes == lclib.kv_cache_bytes(LLAMA, 128_000) and host.hbm_bytes == 0


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
    (lambda: A.decode_time(LLAMA, H100, 100, 10, shared=101), "shared"),
])
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()
