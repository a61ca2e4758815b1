"""The recipe calculator (chapter 8): choices against lclib's cost model and the Hopper lecture."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lclib
from lclib import amortize, scheduler
from lclib import recipe as R
from lclib.context_parallel import overlap_threshold, ring_prefill_time

LLAMA, H100 = "llama-3.3-70b", "h100-sxm"
GB = 1e9


def test_split_prefers_tp_within_a_node():
    assert R.split(LLAMA, 4) == (4, 1)
    assert R.split(LLAMA, 8) == (8, 1)
    assert R.split(LLAMA, 32) == (8, 4)
    assert R.split(LLAMA, 6) == (2, 3)
    assert R.split("yi-34b", 16) == (8, 2)  # 56 heads: 8 divides them


@settings(deadline=None, max_examples=30)
@given(n=st.integers(1, 64), model=st.sampled_from(["llama-3.3-70b", "yi-34b", "mistral-7b",
                                                     "qwen2.5-14b-1m"]))
def test_split_multiplies_to_the_gpus(n, model):
    tp, cp = R.split(model, n)
    m = lclib.get_model(model)
    assert tp * cp == n and m.n_heads % tp == 0 and tp <= R.GPUS_PER_NODE
    assert m.n_kv_heads % tp == 0 or tp % m.n_kv_heads == 0


def test_tp_must_divide_64_query_and_8_kv_heads():
    assert R.tp_degrees(LLAMA) == (1, 2, 4, 8)  # not 3, 5, 6 or 7
    assert R.tp_degrees("qwen2.5-14b-1m") == (1, 2, 4, 8)  # 40 query heads, 8 KV heads


@pytest.mark.parametrize("gpu,n,context", [("h200", 1, 131_072), (H100, 4, 65_536),
                                           (H100, 8, 1_000_000)])
def test_users_match_max_concurrency_without_cp(gpu, n, context):
    for reserve in (lclib.NO_RESERVE, lclib.VLLM_RESERVE):
        for w, kv in R.PRECISIONS:  # TP <= H_kv and CP = 1: the same as lclib.max_concurrency
            assert abs(R.users_that_fit(LLAMA, gpu, context, n, w, kv, reserve)
                       - lclib.max_concurrency(LLAMA, gpu, context, n, w, kv,
                                               reserve=reserve)) <= 1


def test_cp_replicates_weights():
    # 16 GPUs as TP 8 x CP 2 hold two copies of the weights: fewer users than one big pool
    assert R.users_that_fit(LLAMA, H100, 131_072, 16) < lclib.max_concurrency(
        LLAMA, H100, 131_072, 16)


def test_the_contract_recipe_with_vllms_reserve():
    # 8 H100s (81,559 MiB each as reported), 8 contracts of 128,000 tokens in bf16: the reserve
    # (10% of HBM plus an 8,192-token chunk's activations) leaves room for 11, so bf16 KV holds
    hbm = 81_559 * 2**20
    per_gpu = hbm - lclib.VLLM_RESERVE.bytes_per_gpu(LLAMA, H100, 8)
    by_hand = math.floor((8 * per_gpu - 141.107e9) / (128_000 * 327_680))
    r = R.recommend(LLAMA, H100, 8, 128_000, concurrency=8, queries_per_doc=20,
                    reserve=lclib.VLLM_RESERVE)
    assert r.users == by_hand == 11 and (r.weight_dtype, r.kv_dtype) == ("bf16", "bf16")
    # a reserve of 30 GB per GPU leaves 7 < 8: then the recipe flips to FP8 KV
    tight = lclib.Reserve(runtime_bytes=30e9)
    r = R.recommend(LLAMA, H100, 8, 128_000, concurrency=8, reserve=tight)
    assert R.users_that_fit(LLAMA, H100, 128_000, 8, reserve=tight) == 7
    assert (r.weight_dtype, r.kv_dtype) == ("bf16", "fp8")


def test_precision_is_the_least_lossy_that_fits():
    r = R.recommend(LLAMA, "h200", 1, 131_072, concurrency=3)
    assert (r.weight_dtype, r.kv_dtype) == ("fp8", "fp8")  # 70.5 + 3 x 21.5 GB <= 150.75 GB
    assert R.recommend(LLAMA, "h200", 8, 131_072).kv_dtype == "bf16"
    assert R.recommend(LLAMA, "h200", 1, 131_072, 3,
                       reserve=R.LECTURE_RESERVE).weight_dtype == "int4"
    r = R.recommend(LLAMA, H100, 1, 131_072, concurrency=4)
    assert not r.fits and "capacity" in r.binding


def test_numbers_come_from_the_cost_model():
    r = R.recommend(LLAMA, H100, 8, 131_072, concurrency=2, queries_per_doc=20)
    assert r.ttft_s == pytest.approx(ring_prefill_time(LLAMA, H100, 131_072, 8, 1))
    assert r.tpot_s == pytest.approx(lclib.decode_step_time(LLAMA, H100, 131_072, 2, 8))
    assert r.prefix_caching and not R.recommend(LLAMA, H100, 8, 131_072).prefix_caching
    # a follow-up question is a tiny incremental prefill, far under the first one
    assert r.ttft_cached_s < r.ttft_s / 100
    # one convention per quantity: the page's stage 6 and the recipe give the same numbers
    r = R.recommend(LLAMA, H100, 8, 128_000, concurrency=8, queries_per_doc=20)
    page = amortize.query_cost(LLAMA, H100, 128_000, 200, 1000, 20, decode_batch=8)
    assert r.per_query_gpu_s == pytest.approx(page.per_query) == pytest.approx(23.0, abs=0.05)
    assert r.ttft_s == pytest.approx(lclib.prefill_time(LLAMA, H100, 128_000, n_gpus=8))
    assert r.ttft_s == pytest.approx(12.3, abs=0.05)


def test_a_million_tokens_needs_208_gpus_not_256():
    # TP 8 x CP 26 = 208 H100s prefill 2^20 tokens in 19.25 s; CP 25 takes 20.02 s. The ring
    # crosses nodes, over InfiniBand; each rank's 40K tokens are far above its 1,979-token
    # overlap threshold, so the communication hides
    assert R.ttft_layout(LLAMA, H100, 2**20, 20) == (8, 26)
    assert R.gpus_for_ttft(LLAMA, H100, 2**20, 20) == 208
    assert ring_prefill_time(LLAMA, H100, 2**20, 8, 26, "infiniband") == pytest.approx(19.25,
                                                                                     abs=0.01)
    assert ring_prefill_time(LLAMA, H100, 2**20, 8, 25, "infiniband") > 20
    c_star = overlap_threshold(LLAMA, H100, "infiniband", mfu=0.4)
    assert c_star == pytest.approx(1979, abs=1) and 20 * c_star < 2**20 / 26


def test_llama_at_a_million_tokens_is_beyond_its_window():
    r = R.recommend(LLAMA, H100, 8, 2**20, ttft_budget_s=20)
    assert r.binding == ("compute",) and not r.within_window and "chapter 6" in r.table()
    q = R.recommend("qwen2.5-14b-1m", H100, 8, 1_000_000, ttft_budget_s=20)
    assert q.within_window and "extension" not in q.table()


def test_qwen_1m_preset_matches_its_model_card():
    m = lclib.get_model("qwen2.5-14b-1m")
    assert m.n_params / 1e9 == pytest.approx(14.7, rel=0.01)  # "14.7B" on the model card
    assert m.n_params_nonembedding / 1e9 == pytest.approx(13.1, rel=0.015)  # "13.1B"
    assert m.max_position_embeddings == 1_010_000
    assert lclib.kv_bytes_per_token(m) == 2 * 48 * 8 * 128 * 2


def test_feasible_layouts_are_not_packing_bounds():
    # ceil(bytes / HBM) says 3 H100s hold one 128,000-token request; no engine runs TP 3
    assert lclib.cp_gpus_needed(LLAMA, H100, 128_000) == 3
    layouts = R.feasible_layouts(LLAMA, H100, 128_000)
    assert min(lay.n_gpus for lay in layouts) == 4
    assert all(lay.tp in (1, 2, 4, 8) and lay.free_per_gpu >= 0 for lay in layouts)
    # 2^20 tokens of FP8 KV at TP 4: 141.1/4 GB of weights + 171.8/4 GB of KV per GPU
    (tp4,) = [lay for lay in R.feasible_layouts(LLAMA, H100, 2**20, kv_dtype="fp8")
              if lay.tp == 4]
    by_hand = 81_559 * 2**20 - (141.107e9 + 2**20 * 163_840) / 4
    assert tp4.cp == 1 and tp4.free_per_gpu == pytest.approx(by_hand, rel=1e-4)


def test_chunk_keeps_the_decodes_within_their_itl_target():
    r = R.recommend(LLAMA, H100, 8, 128_000, concurrency=8)
    assert r.chunk in R.CHUNKS and r.chunk_step_s <= 0.1
    cost = scheduler.StepCost(LLAMA, H100, 8)
    bigger = R.CHUNKS[R.CHUNKS.index(r.chunk) + 1]
    assert cost.step([(128_000 - bigger, bigger), *[(128_000, 1)] * 8]) > 0.1
    assert R.recommend(LLAMA, H100, 8, 128_000, itl_target_s=100).chunk == R.CHUNKS[-1]
    assert R.recommend(LLAMA, H100, 4, 300).chunk == 300  # never more than the prompt


def test_speculation_pays_most_at_small_batch():
    h = [R.speculation_headroom(LLAMA, H100, 8, c, b)
         for b, c in ((1, 131_072), (8, 131_072), (32, 16_384), (256, 2048))]
    assert h == sorted(h, reverse=True) and h[0] > 10 and h[-1] < 1.5


def test_table_renders_every_choice():
    text = R.recommend(LLAMA, H100, 8, 131_072, queries_per_doc=20).table()
    assert text.count("\n") == 7 and "| bf16 / bf16 |" in text and "| 8 × 1 |" in text


@pytest.mark.parametrize("kwargs", [dict(context=0), dict(concurrency=-1), dict(n_gpus=0),
                                    dict(ttft_budget_s=0), dict(reserve=20e9),
                                    dict(queries_per_doc=0), dict(itl_target_s=0)])
def test_bad_input_says_what_to_pass(kwargs):
    args = dict(model=LLAMA, gpu=H100, n_gpus=8, context=131_072) | kwargs
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        R.recommend(**args)


def test_hopper_lecture_recipes():
    claims = R.hopper_lecture_recipes()
    assert len(claims) == 13 and sum(c.agrees for c in claims) == 6  # what the page reports
    by = {(c.recipe, c.item): c for c in claims}
    assert len({c.recipe for c in claims}) == 3
    int4 = by[("1×H200", "AWQ-INT4 weights (GB)")]
    assert int4.agrees and int4.ours == pytest.approx(70.55 * 0.5, rel=0.01)
    kv = by[("1×H200", "FP8 KV per 128K request (GB)")]
    assert kv.ours == pytest.approx(131_072 * 2 * 80 * 8 * 128 / 1e9) and kv.agrees
    assert not by[("1×H200", "batch at 32K, INT4 + FP8 KV")].agrees
    assert by[("4×H100", "tokens/s/GPU, 32 users at 16K, FP8 weights")].agrees
    assert not by[("4×H100", "tokens/s/GPU, 32 users at 16K, BF16 weights")].agrees
    users = by[("8×H200", "users at 128K, BF16 weights + FP8 KV")].ours
    per_gpu = 143_771 * 2**20 - lclib.VLLM_RESERVE.bytes_per_gpu(LLAMA, "h200", 8)
    assert users == math.floor((8 * per_gpu - 141.107e9) / (131_072 * 163_840))
