"""The chunked-prefill scheduler: step costs from lclib, conservation, and the chunk trade-off."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lclib
from lclib import scheduler as S

COST = S.StepCost()  # Llama-3.3-70B on 4 H100s at 40% MFU


def test_step_cost_is_a_roofline_of_lclib_times():
    decode = COST.step([(100_000, 1)])  # one decode: memory-bound
    assert decode == pytest.approx(lclib.decode_step_time("llama-3.3-70b", "h100-sxm", 100_000,
                                                          n_gpus=4))
    whole = COST.step([(0, 131_072)])  # a whole long prefill: compute-bound
    assert whole == pytest.approx(lclib.prefill_time("llama-3.3-70b", "h100-sxm", 131_072,
                                                     n_gpus=4))


@given(st.integers(1, 20), st.integers(1, 10**6))
def test_decode_coefficients_match_the_step(n, ctx):
    a, b, m0, m1 = COST.decode_coefficients()
    per = max(1, ctx // n)
    pieces = [(per, 1)] * n
    assert max(n * a + b * per * n, m0 + m1 * per * n) == pytest.approx(COST.step(pieces))


def test_one_request_alone_matches_the_cost_model():
    r = S.Request(arrival=5.0, prompt=10_000, output=3)
    (s,) = S.simulate([r], COST, chunk=4096)
    chunks = COST.compute(0, 4096) + COST.compute(4096, 4096) + COST.compute(8192, 1808)
    assert s.ttft == pytest.approx(chunks)
    decodes = COST.step([(10_001, 1)]) + COST.step([(10_002, 1)])
    assert s.finish - s.first_token == pytest.approx(decodes)
    (whole,) = S.simulate([r], COST, chunk=None)
    assert whole.ttft == pytest.approx(COST.compute(0, 10_000))


@settings(max_examples=25)
@given(st.integers(2, 40), st.sampled_from([512, 4096, None]),
       st.sampled_from(S.PRIORITIES), st.integers(0, 99))
def test_every_request_is_served_in_order_of_its_own_events(n, chunk, priority, seed):
    reqs = S.mixed_workload(n, rate=2.0, short_prompt=300, long_prompt=5000, long_fraction=0.3,
                            output=5, seed=seed)
    served = S.simulate(reqs, COST, chunk, priority)
    assert len(served) == n
    for s in served:
        assert s.request.arrival < s.first_token < s.finish
        assert s.ttft >= COST.compute(0, s.request.prompt) * (1 - 1e-9)  # never faster than alone


def test_chunk_size_trade_off_for_the_hopper_lectures_mix():
    # 90% 2K prompts, 10% 128K prompts: with short-first ordering, 4K chunks bound the short
    # prompts' p99 TTFT far below 16K chunks and no chunking; under FCFS they do not
    reqs = S.mixed_workload(300, rate=0.1, seed=2)
    res = {(c, p): S.summarize(S.simulate(reqs, COST, c, p), long_above=2048)
           for c in (4096, 16384, None) for p in S.PRIORITIES}
    sf = {c: res[(c, "short_first")]["short_ttft_p99"] for c in (4096, 16384, None)}
    assert sf[4096] < sf[16384] < sf[None]
    assert sf[None] > 0.9 * COST.compute(0, 131_072)
    fcfs = [res[(c, "fcfs")]["short_ttft_p99"] for c in (4096, 16384, None)]
    assert max(fcfs) / min(fcfs) < 1.2
    assert res[(4096, "fcfs")]["short_tpot_p99"] < res[(None, "fcfs")]["short_tpot_p99"]
    assert res[(4096, "short_first")]["long_ttft_p50"] >= res[(None, "short_first")][
        "long_ttft_p50"] * 0.99


def test_a_fixed_token_budget_is_not_a_fixed_time():
    # a 4K chunk of a 128K prompt on 4 H100s at 40% MFU: ~0.37 s at offset 0, ~1.23 s at 124K
    profile = dict(S.chunk_profile(COST, 131_072, 4096))
    assert len(profile) == 32
    assert profile[0] == pytest.approx(0.368, abs=0.001)
    assert profile[124 * 1024] == pytest.approx(1.229, abs=0.001)
    assert list(profile.values()) == sorted(profile.values())


@pytest.mark.parametrize("mfu, tokens", [(0.4, 122), (1.0, 304)])
def test_compute_bound_from_about_a_hundred_tokens_not_4k(mfu, tokens):
    # at offset 0 a step reads the weights once (141.1 GB over 4 x 3.35 TB/s); prefill tokens
    # cost 2N FLOPs each (attention is negligible this early): equal near W/BW * mfu*P / 2N
    cost = S.StepCost(mfu=mfu)
    m = lclib.get_model("llama-3.3-70b")
    by_hand = (lclib.weight_bytes(m) / 3.35e12) * mfu * 989.4e12 / (2 * m.n_params_nonembedding)
    assert abs(S.compute_bound_tokens(cost) - by_hand) < 1  # attention, one KV token: < 1 token
    assert S.compute_bound_tokens(cost) == tokens


@given(st.integers(0, 130_000), st.floats(0.02, 2.0), st.lists(st.integers(1, 10**5), max_size=8))
def test_max_chunk_within_is_the_largest_that_fits(offset, itl, decodes):
    n = S.max_chunk_within(COST, offset, itl, decodes)
    rest = [(c, 1) for c in decodes]
    if n:
        assert COST.step([(offset, n), *rest]) <= itl
    assert COST.step([(offset, n + 1), *rest]) > itl


def test_p99_of_gaps_sees_chunk_stalls_that_a_mean_tpot_spreads_out():
    reqs = S.mixed_workload(300, rate=0.1, seed=2)
    chunked = S.summarize(S.simulate(reqs, COST, 4096, "fcfs"), long_above=2048)
    whole = S.summarize(S.simulate(reqs, COST, None, "fcfs"), long_above=2048)
    small = S.summarize(S.simulate(reqs, COST, 512, "fcfs"), long_above=2048)
    assert chunked["short_itl_p99"] > chunked["short_tpot_p99"]
    assert chunked["short_itl_max"] < 1.3 < 20 < whole["short_itl_max"]  # one 25 s stall
    assert small["short_itl_p99"] < 0.1 < chunked["short_itl_p99"]


def test_token_gaps_add_up_to_the_decode_time():
    (s,) = S.simulate([S.Request(0.0, 1000, 6)], COST, chunk=256)
    assert len(s.itl) == 5 and sum(s.itl) == pytest.approx(s.finish - s.first_token)


def test_worst_short_ttft_orders_chunks():
    w = [S.worst_short_ttft(COST, 131_072, 2048, c) for c in (4096, 16384, None)]
    assert w[0] < w[1] < w[2]
    assert w[2] == pytest.approx(COST.compute(0, 131_072) + COST.step([(0, 2048)]))


def test_percentile_nearest_rank():
    assert S.percentile(list(range(1, 101)), 99) == 99
    assert S.percentile([3.0], 50) == 3.0


@pytest.mark.parametrize("call, match", [
    (lambda: S.simulate([], COST), "at least one"),
    (lambda: S.simulate([S.Request(0, 10, 2)], COST, priority="lifo"), "priority"),
    (lambda: S.simulate([S.Request(0, 10, 2)], COST, chunk=0), "chunk"),
    (lambda: S.mixed_workload(10, 1.0, long_fraction=1.5), "long_fraction"),
    (lambda: S.percentile([], 50), "non-empty"),
    (lambda: COST.step([]), "piece"),
    (lambda: S.max_chunk_within(COST, 0, 0.0), "itl_s"),
    (lambda: S.chunk_profile(COST, 100, 0), "chunk"),
    (lambda: S.summarize(S.simulate([S.Request(0, 10, 2)], COST), 100), "mixed"),
])
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_tpot_of_single_token_output_is_nan():
    (s,) = S.simulate([S.Request(0.0, 100, 1)], COST)
    assert math.isnan(s.tpot) and s.finish == s.first_token


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 3), st.integers(1, 20_000), st.integers(1, 30)),
                min_size=1, max_size=6), st.sampled_from([256, 4096, None]))
def test_the_step_log_adds_up_to_what_simulate_reports(reqs, chunk):
    log: list[S.Step] = []
    served = S.simulate([S.Request(*r) for r in reqs], COST, chunk, log=log)
    for a, b in zip(log, log[1:], strict=False):
        assert a.start < a.end <= b.start  # one step at a time, idle gaps between
    for step in log:  # each step lasts what its pieces cost
        pieces = [(c, 1) for _, c in step.decode] + [(o, n) for _, o, n in step.prefill]
        assert step.end - step.start == pytest.approx(COST.step(pieces), rel=1e-9)
        assert chunk is None or sum(n for _, n in pieces) <= chunk
    for i, s in enumerate(served):
        mine = [(st.end, o, n) for st in log for j, o, n in st.prefill if j == i]
        assert [o for _, o, _ in mine] == [sum(n for _, _, n in mine[:k]) for k in range(len(mine))]
        assert sum(n for _, _, n in mine) == s.request.prompt and mine[-1][0] == s.first_token
        decodes = [(st.end, c) for st in log for j, c in st.decode if j == i]
        assert [t for t, _ in decodes] == s.token_times
        assert [c for _, c in decodes] == list(range(s.request.prompt + 1,
                                                     s.request.prompt + s.request.output))
    busy = sum(st.end - st.start for st in log)
    assert busy == pytest.approx(max(s.finish for s in served) - sum(
        max(0.0, b.start - a.end) for a, b in zip(log, log[1:], strict=False)) - log[0].start)
