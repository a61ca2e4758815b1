"""The recipe calculator (chapter 8): choices against lclib's cost model and seed 002 §7."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lclib
from lclib import recipe as R
from lclib.context_parallel import ring_prefill_time

LLAMA = "llama-3.3-70b"


def test_split_prefers_tp_within_a_node():
    assert R.split(LLAMA, 4) == (4, 1)
    assert R.split(LLAMA, 8) == (8, 1)
    assert R.split(LLAMA, 32) == (8, 4)
    assert R.split(LLAMA, 6) == (2, 3)
    assert R.split("yi-34b", 16) == (8, 2)  # 56 heads: 8 divides them


@settings(deadline=None, max_examples=30)
@given(n=st.integers(1, 64), model=st.sampled_from(["llama-3.3-70b", "yi-34b", "mistral-7b"]))
def test_split_multiplies_to_the_gpus(n, model):
    tp, cp = R.split(model, n)
    assert tp * cp == n and lclib.get_model(model).n_heads % tp == 0 and tp <= R.GPUS_PER_NODE


@pytest.mark.parametrize("gpu,n,context", [("h200", 1, 131_072), ("h100-sxm", 4, 65_536),
                                           ("h100-sxm", 8, 1_000_000)])
def test_users_match_max_concurrency_without_cp(gpu, n, context):
    for w, kv in R.PRECISIONS:  # TP <= H_kv and CP = 1: the same as lclib.max_concurrency
        assert abs(R.users_that_fit(LLAMA, gpu, context, n, w, kv)
                   - lclib.max_concurrency(LLAMA, gpu, context, n, w, kv)) <= 1


def test_cp_replicates_weights():
    # 16 GPUs as TP 8 x CP 2 hold two copies of the weights: fewer users than one big pool
    assert R.users_that_fit(LLAMA, "h100-sxm", 131_072, 16) < lclib.max_concurrency(
        LLAMA, "h100-sxm", 131_072, 16)


def test_precision_is_the_least_lossy_that_fits():
    r = R.recommend(LLAMA, "h200", 1, 131_072, concurrency=3)
    assert (r.weight_dtype, r.kv_dtype) == ("fp8", "fp8")  # 70.5 + 3 x 21.5 GB <= 141 GB
    assert R.recommend(LLAMA, "h200", 8, 131_072).kv_dtype == "bf16"
    assert R.recommend(LLAMA, "h200", 1, 131_072, 3, reserve_bytes=20e9).weight_dtype == "int4"
    r = R.recommend(LLAMA, "h100-sxm", 1, 131_072, concurrency=4)
    assert not r.fits and "capacity" in r.binding


def test_numbers_come_from_the_cost_model():
    r = R.recommend(LLAMA, "h100-sxm", 8, 131_072, concurrency=2, queries_per_doc=20)
    assert r.ttft_s == pytest.approx(ring_prefill_time(LLAMA, "h100-sxm", 131_072, 8, 1))
    assert r.tpot_s == pytest.approx(lclib.decode_step_time(LLAMA, "h100-sxm", 131_072, 2, 8))
    assert r.prefix_caching and not R.recommend(LLAMA, "h100-sxm", 8, 131_072).prefix_caching
    # a follow-up question is a tiny incremental prefill, far under the first one
    assert r.ttft_cached_s < r.ttft_s / 100


def test_the_case_million_tokens_binds_on_compute():
    r = R.recommend(LLAMA, "h100-sxm", 8, 2**20, ttft_budget_s=20)
    assert r.fits and r.binding == ("compute",)
    need = r.gpus_for_ttft
    tp, cp = R.split(LLAMA, need)
    assert ring_prefill_time(LLAMA, "h100-sxm", 2**20, tp, cp) <= 20
    tp, cp = R.split(LLAMA, need // 2)
    assert ring_prefill_time(LLAMA, "h100-sxm", 2**20, tp, cp) > 20


def test_chunk_is_the_largest_within_the_short_prompt_target():
    r = R.recommend(LLAMA, "h100-sxm", 4, 131_072, short_ttft_s=2.0)
    assert r.short_wait_s <= 2.0 and r.chunk in R.CHUNKS
    bigger = [c for c in R.CHUNKS if c > r.chunk]
    assert R.recommend(LLAMA, "h100-sxm", 4, 131_072, short_ttft_s=100).chunk == R.CHUNKS[-1]
    assert bigger  # a looser target picks a larger chunk
    assert R.recommend(LLAMA, "h100-sxm", 4, 1000).chunk == 1000  # never more than the prompt


def test_table_renders_every_choice():
    text = R.recommend(LLAMA, "h100-sxm", 8, 131_072, queries_per_doc=20).table()
    assert text.count("\n") == 7 and "| bf16 / bf16 |" in text and "| 8 × 1 |" in text


@pytest.mark.parametrize("kwargs", [dict(context=0), dict(concurrency=-1), dict(n_gpus=0),
                                    dict(ttft_budget_s=0), dict(reserve_bytes=1e12),
                                    dict(queries_per_doc=0)])
def test_bad_input_says_what_to_pass(kwargs):
    args = dict(model=LLAMA, gpu="h100-sxm", n_gpus=8, context=131_072) | kwargs
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        R.recommend(**args)


def test_seed_002_recipes():
    claims = {(c.recipe, c.item): c for c in R.seed_comparison()}
    assert len({c.recipe for c in claims.values()}) == 3
    int4 = claims[("1×H200", "AWQ-INT4 weights (GB)")]
    assert int4.agrees and int4.ours == pytest.approx(70.55 * 0.5, rel=0.01)
    kv = claims[("1×H200", "FP8 KV per 128K request (GB)")]
    assert kv.ours == pytest.approx(131_072 * 2 * 80 * 8 * 128 / 1e9) and kv.agrees
    assert not claims[("1×H200", "batch at 32K, INT4 + FP8 KV")].agrees
    assert claims[("4×H100", "tokens/s/GPU, 32 users at 16K, FP8 weights")].agrees
    assert not claims[("4×H100", "tokens/s/GPU, 32 users at 16K, BF16 weights")].agrees
    users = claims[("8×H200", "users at 128K, BF16 weights + FP8 KV")].ours
    assert users == math.floor((8 * 141e9 - 141.1e9) / 21.47e9)
