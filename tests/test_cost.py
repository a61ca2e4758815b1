"""The cost model against published figures, its properties, and its errors."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

import lclib
from lclib import GB, GiB
from lclib import cost as C

LLAMA, YI = "llama-3.3-70b", "yi-34b"
lengths = st.integers(min_value=1, max_value=4_000_000)
models = st.sampled_from(sorted(lclib.MODELS))
gpus = st.sampled_from(sorted(lclib.GPUS))
kv_dtypes = st.sampled_from(["fp32", "bf16", "fp8", "int4"])


# --- reproductions of published numbers -------------------------------------------------
def test_llama_kv_per_token_is_320_kib():
    # Llama-3.3-70B config.json: 2*80*8*128*2 = 327,680 bytes = 320 KiB (the seeds' "320 KB")
    assert lclib.kv_bytes_per_token(LLAMA) == 327_680 == 320 * lclib.KiB


def test_llama_kv_at_128k_is_42_9_gb():
    # the Hopper lecture: ~42 GB per 128K request (42.9 GB; 40 GiB)
    assert lclib.kv_cache_bytes(LLAMA, 131_072) / GB == pytest.approx(42.9, abs=0.05)
    assert lclib.kv_cache_bytes(LLAMA, 131_072) == 40 * GiB
    # seed 000's "41.9 GB" is a 128,000-token request (chapter 5 says so)
    assert lclib.kv_cache_bytes(LLAMA, 128_000) / GB == pytest.approx(41.9, abs=0.05)


def test_llama_mha_counterfactual_from_seed_003():
    # seed 003's "80 heads" as KV heads: 429 GB (400 GiB); the real 8 KV heads: 42.9 GB
    mha = lclib.get_model(LLAMA).with_(n_heads=80, n_kv_heads=80)
    assert lclib.kv_cache_bytes(mha, 131_072) / GB == pytest.approx(429.5, abs=0.1)
    assert lclib.kv_cache_bytes(mha, 131_072) == 400 * GiB


@pytest.mark.parametrize("tokens, gib", [(4_000, 0.9155), (100_000, 22.89)])
def test_yao_fu_kv_sizes_reproduce_in_gib(tokens, gib):
    # Fu 2024 (arXiv 2405.08944): "0.91 GB at 4K", "22.8 GB at 100K" are GiB of 4,000/100,000
    assert round(lclib.kv_cache_bytes(YI, tokens) / GiB, 4 if tokens < 10_000 else 2) == gib
    assert lclib.kv_bytes_per_token(YI) == 245_760  # 2*60*8*128*2


def test_llama_parameter_count():
    # counted from Llama-3.3-70B's config.json: 70.55B total, 68.45B non-embedding
    m = lclib.get_model(LLAMA)
    assert m.n_params / 1e9 == pytest.approx(70.55, abs=0.005)
    assert m.n_params_nonembedding / 1e9 == pytest.approx(68.45, abs=0.005)


def test_llama_causal_crossover_near_105k():
    # from config.json: 104-108K causal (the case study's 16-24K is wrong), 52-54K without the mask
    assert lclib.crossover_seq_len(LLAMA) == pytest.approx(105_000, rel=0.02)
    assert lclib.crossover_seq_len(LLAMA, causal=False) == pytest.approx(53_000, rel=0.02)


@pytest.mark.parametrize("tokens, share", [(16_000, 0.15), (24_000, 0.23)])
def test_attention_at_seed_000s_crossover_is_a_minor_term(tokens, share):
    f = lclib.prefill_flops(LLAMA, tokens)
    assert f.attention / f.linear == pytest.approx(share, abs=0.01)


def test_yi_prefill_at_4k_on_a100():
    # Fu 2024 via its summaries: 0.89 s = 2*N*n / 312 TFLOP/s at full utilisation
    assert lclib.prefill_time(YI, "a100-80gb", 4_000, mfu=1.0) == pytest.approx(0.89, rel=0.02)


def test_yi_decoding_250_tokens_at_4k_on_a100():
    # Fu 2024: 250 tokens x 68 GB / 2 TB/s = 8.5 s
    step = lclib.decode_step_time(YI, "a100-80gb", 4_000)
    assert 250 * step == pytest.approx(8.5, rel=0.02)


def test_seed_000_linear_prefill_at_128k_is_45_s():
    # seed 000: 128,000 tokens / (2830 tok/s at 40% MFU on one H100) = 45 s, linear term alone
    linear = lclib.prefill_flops(LLAMA, 128_000).linear
    assert linear / (0.4 * lclib.get_gpu("h100-sxm").peak_flops()) == pytest.approx(45, rel=0.03)


def test_kv_reads_equal_weight_reads_near_430k_tokens():
    # config.json: bf16 Llama-70B decode reads as much KV as weights at context*batch ~ 430K
    tokens = lclib.weight_bytes(LLAMA) / lclib.kv_bytes_per_token(LLAMA)
    assert tokens == pytest.approx(430_000, rel=0.01)


# --- the memory model: device-reported totals, one capacity function, a named reserve ------
# Hand arithmetic below: H100 81,559 MiB, H200 143,771 MiB (nvidia-smi), A100 85,056,798,720 B
# (torch); Llama-3.3-70B 70,553,706,496 params (141.1 GB bf16), 327,680 KV B/token; Yi-34B
# 34,388,917,248 params, 245,760 KV B/token.
H100_B, H200_B, A100_B = 81_559 * 2**20, 143_771 * 2**20, 85_056_798_720
LLAMA_W, YI_W = 2 * 70_553_706_496, 2 * 34_388_917_248


def test_hbm_is_the_device_total_and_the_label_stays():
    assert [lclib.get_gpu(n).hbm_bytes for n in ("h100-sxm", "h200", "a100-80gb")] == [
        H100_B, H200_B, A100_B]
    assert lclib.get_gpu("h100-sxm").hbm_bytes / GB == pytest.approx(85.52, abs=0.005)
    assert lclib.get_gpu("h200").hbm_bytes / GB == pytest.approx(150.75, abs=0.005)
    assert [lclib.get_gpu(n).datasheet_hbm_bytes for n in ("h100-sxm", "h200")] == [80e9, 141e9]
    assert "80GB" in lclib.get_gpu("h100-sxm").label and lclib.get_gpu("h200").hbm_source


def test_h200_holds_the_bf16_weights_with_9_6_gb_left():
    # the old text: "141.1 GB, more than one H200 holds" (true only against the 141e9 label)
    assert lclib.weight_bytes(LLAMA) == LLAMA_W > 141e9
    left = lclib.kv_budget(LLAMA, "h200")
    assert left == H200_B - LLAMA_W and left / GB == pytest.approx(9.65, abs=0.01)


def test_fu_50k_case_fits_one_user():
    # (85.06 - 68.78) GB = 16.28 GB free; one 50,000-token request = 12.29 GB -> 1 (Fu's 1)
    assert (A100_B - YI_W) // (245_760 * 50_000) == 1
    assert lclib.max_concurrency(YI, "a100-80gb", 50_000) == 1


@pytest.mark.parametrize("tokens", [4_000, 4_096])
def test_fu_4k_users_are_16_to_17_not_20(tokens):
    # exact weights: 16.28 GB / 0.98 GB = 16.6 -> 16; Fu's 68 GB of weights: 17.06 / 0.98 -> 17
    assert lclib.max_concurrency(YI, "a100-80gb", tokens) == 16
    assert (A100_B - 68 * GB) // (245_760 * 4_000) == 17


def test_concurrency_on_four_h100s_is_7_and_14():
    # 4 x 85.52 GB - 35.28 GB of int4 weights = 306.8 GB; / 42.95 GB = 7.1; / 21.47 GB = 14.3
    free = 4 * H100_B - LLAMA_W // 4
    assert (free // (327_680 * 131_072), free // (163_840 * 131_072)) == (7, 14)
    args = (LLAMA, "h100-sxm", 131_072)
    assert lclib.max_concurrency(*args, n_gpus=4, weight_dtype="int4") == 7
    assert lclib.max_concurrency(*args, n_gpus=4, weight_dtype="int4", kv_dtype="fp8") == 14
    assert lclib.max_concurrency(*args, n_gpus=1) == 0  # bf16 weights alone overflow one H100


def test_ch2_quiz_one_h200_int4_weights_fp8_kv_holds_5():
    # (150.75 - 35.28) GB / 21.47 GB = 5.38 -> 5 (the label's 141 GB gave 4)
    assert (H200_B - LLAMA_W // 4) // (163_840 * 131_072) == 5
    assert lclib.max_concurrency(LLAMA, "h200", 131_072, weight_dtype="int4", kv_dtype="fp8") == 5


def test_gpus_needed_for_one_request():
    # 141.1 + 42.9 = 184.1 GB -> 3 H100s at 128K; 141.1 + 343.6 = 484.7 GB / 85.52 = 5.67 -> 6 at
    # 1M (the label's 80 GB gave 7); FP8 KV: 141.1 + 171.8 = 312.9 / 85.52 = 3.66 -> 4
    assert lclib.cp_gpus_needed(LLAMA, "h100-sxm", 131_072) == 3
    assert math.ceil((LLAMA_W + 327_680 * 2**20) / H100_B) == 6
    assert lclib.cp_gpus_needed(LLAMA, "h100-sxm", 2**20) == 6
    assert lclib.cp_gpus_needed(LLAMA, "h100-sxm", 2**20, kv_dtype="fp8") == 4


def test_one_shot_1m_prefill_activations_at_tp8():
    # the residual stream, 1,048,576 x 8,192 x 2 B = 17.2 GB per GPU, plus the gated MLP's
    # three 1,048,576 x 28,672/8 intermediates in bf16 = 22.5 GB
    resid, mlp = 2**20 * 8192 * 2, 3 * 2**20 * 28_672 // 8 * 2
    assert resid / GB == pytest.approx(17.18, abs=0.01)
    assert lclib.activation_bytes(LLAMA, 2**20, tp=8) == resid + mlp
    # without chunking, n GPUs hold weights + KV + n residuals + the MLP's 180.4 GB (split n ways):
    # n x (85.52 - 17.18) >= 141.1 + 343.6 + 180.4 -> n = 9.7 -> 10 H100s, not 6
    n = math.ceil((LLAMA_W + 327_680 * 2**20 + mlp * 8) / (H100_B - resid))
    one_shot = lclib.Reserve(prefill_chunk=2**20)
    assert lclib.cp_gpus_needed(LLAMA, "h100-sxm", 2**20, reserve=one_shot) == n == 10


def test_vllm_reserve_changes_the_answers_it_should():
    # vLLM budgets 0.9 of the total: 4 x 0.9 x 85.52 - 35.28 - 4 x 0.3 GB of 8K-chunk activations
    r = lclib.VLLM_RESERVE
    assert r.utilization == 0.9 and r.prefill_chunk == 8192
    act = 8192 * 8192 * 2 + 3 * 8192 * 28_672 // 4 * 2  # per GPU at TP=4
    free = math.floor(4 * (0.9 * H100_B - act)) - LLAMA_W // 4
    assert lclib.kv_budget(LLAMA, "h100-sxm", 4, "int4", r) == free
    assert free // (327_680 * 131_072) == 6
    assert lclib.max_concurrency(LLAMA, "h100-sxm", 131_072, 4, "int4", reserve=r) == 6
    # Fu's 50K request no longer fits one A100 under vLLM's default budget: 0.9 x 85.06 - 68.78
    # - 1.1 GB of activations = 6.7 GB < 12.29 GB
    assert lclib.max_concurrency(YI, "a100-80gb", 50_000, reserve=r) == 0


def test_intro_1m_request_under_vllm_and_one_shot():
    # vLLM: n GPUs of 0.9 x 85.52 = 76.97 GB, less < 2 GB of 8K-chunk activations each, must hold
    # 141.1 + 343.6 = 484.7 GB: 6 x 76.97 = 461.8 is short, 7 x 74.97 = 524.8 is enough
    r = lclib.VLLM_RESERVE
    assert 6 * 0.9 * H100_B < LLAMA_W + 327_680 * 2**20 < 7 * (0.9 * H100_B - 2e9)
    assert lclib.cp_gpus_needed(LLAMA, "h100-sxm", 2**20, reserve=r) == 7


def test_bad_reserves_raise():
    with pytest.raises(ValueError, match="utilization"):
        lclib.Reserve(utilization=1.5)
    with pytest.raises(ValueError, match="prefill_chunk"):
        lclib.Reserve(prefill_chunk=-1)
    with pytest.raises(ValueError, match="Reserve"):
        lclib.cp_gpus_needed(LLAMA, "h100-sxm", 2**22, reserve=lclib.Reserve(prefill_chunk=2**23))


def test_a_real_4bit_checkpoint_is_39_8_gb_not_35_3():
    # blocks: 80 x 855,638,016 = 68,451,041,280 weights at 4 bits = 34.23 GB; a bf16 scale and a
    # 4-bit zero per 128 weights = 2.5 B per group = 1.34 GB; embeddings + LM head + norms in
    # bf16: 2 x 2,102,665,216 = 4.21 GB
    linear = 80 * (2 * 8192**2 + 2 * 8192 * 1024 + 3 * 8192 * 28_672)
    expected = linear // 2 + linear // 128 * 5 // 2 + 2 * (70_553_706_496 - linear)
    assert C.checkpoint_bytes(LLAMA) == expected
    assert expected / GB == pytest.approx(39.77, abs=0.01)
    assert lclib.weight_bytes(LLAMA, "int4") / GB == pytest.approx(35.28, abs=0.01)
    assert C.checkpoint_bytes(LLAMA, "bf16") == lclib.weight_bytes(LLAMA)
    # the chapter 2 answers survive it: (4 x 85.52 - 39.77) / 42.95 = 7.04 -> 7; / 21.47 -> 14
    free = 4 * H100_B - expected
    assert (free // (327_680 * 131_072), free // (163_840 * 131_072)) == (7, 14)


def test_hopper_lecture_attention_at_128k_is_22_5_pflop_not_277_tflop():
    # the lecture's 2*64*131072^2*128 is one layer's QK^T without the mask, and is 281 T
    assert pytest.approx(281.5, abs=0.1) == 2 * 64 * 131_072**2 * 128 / 1e12
    f = lclib.prefill_flops(LLAMA, 131_072)
    assert f.attention == 4 * 80 * 64 * 128 * 131_072**2 / 2  # QK^T + AV, 80 layers, causal
    assert f.attention / 1e15 == pytest.approx(22.5, abs=0.05)
    assert f.attention / f.linear == pytest.approx(1.25, abs=0.005)
    # on 4 H100s at 80% MFU: 12.8 s, more than the "~10 s" budget, 2.2x its linear-only 5.8 s
    t = lclib.prefill_time(LLAMA, "h100-sxm", 131_072, n_gpus=4, mfu=0.8)
    assert t == pytest.approx(12.8, abs=0.05) and t > 10
    assert t / (2 * 70e9 * 131_072 / (4 * 0.8 * 989.4e12)) == pytest.approx(2.2, abs=0.05)


def test_course_module_latency_table_is_not_linear():
    # "4K ~100 ms, 32K ~800 ms, 128K ~3-4 s": linear would be 8x and 32x; Llama-3.1-8B's
    # crossover is 53K, so by FLOPs 32K costs 12x and 128K 103x the 4K prefill
    t = {n: lclib.prefill_flops("llama-3.1-8b", n * 1024).total for n in (4, 32, 128)}
    assert round(t[32] / t[4]) == 12 and round(t[128] / t[4]) == 103
    # "decode is relatively constant": a step reads 16.06 GB of weights + 131,072 B per token
    step = {n: lclib.decode_step_time("llama-3.1-8b", "a100-80gb", n * 1024) for n in (4, 128)}
    assert step[128] / step[4] == pytest.approx(2.0, abs=0.05)
    # "terabytes": the scores one would store, 2^34 per head and layer at 128K, 2 B each
    assert pytest.approx(35.2, abs=0.1) == (2**17) ** 2 * 2 * 32 * 32 / 1e12


def test_kaplan_count_read_as_causal_gives_12_d():
    # Kaplan: 2*n_layer*n_ctx*d per token for attention; QK^T + AV over n_ctx keys is 4*n_ctx*d,
    # so their count is the average over a causal prefill (n_ctx/2 keys): both equal 2N at 12*d
    d, n_layer = 8192, 80
    n = 12 * n_layer * d**2
    assert 2 * n == 2 * n_layer * (12 * d) * d  # Kaplan's equality at n_ctx = 12 d
    assert 4 * (12 * d / 2) * d * n_layer == 2 * n_layer * (12 * d) * d  # causal reading


# --- the roofline -------------------------------------------------------------------------
def test_h100_ridge_point_is_295_flop_per_byte():
    assert lclib.get_gpu("h100-sxm").ridge_point() == pytest.approx(989.4 / 3.35, rel=1e-12)
    assert round(lclib.get_gpu("h100-sxm").ridge_point()) == 295
    assert lclib.get_gpu("h200").ridge_point() == pytest.approx(989.4 / 4.8)  # 206: same FLOPs


@pytest.mark.parametrize("tokens", [1, 8, 64])
def test_linear_intensity_is_the_tokens_in_the_batch(tokens):
    # 2*T*N FLOPs over 2*N bytes of bf16 weights (activations add T*(d_in+d_out)*2 B, <1% here)
    r = C.linear_roofline(LLAMA, tokens)
    assert r.intensity == pytest.approx(tokens, rel=0.02) and r.intensity < tokens
    assert r.bound("h100-sxm") == "memory"
    assert C.linear_roofline(LLAMA, tokens, weight_dtype="int4").intensity == pytest.approx(
        4 * tokens, rel=0.05)


def test_prefill_is_compute_bound_and_decode_memory_bound_by_derivation():
    assert C.linear_roofline(LLAMA, 4096).bound("h100-sxm") == "compute"
    assert C.linear_roofline(LLAMA, 256).bound("h100-sxm") == "memory"  # a batch of 256 decodes
    assert C.attention_roofline(LLAMA, 131_072).bound("h100-sxm") == "compute"
    assert C.attention_roofline(LLAMA, 131_072, new_tokens=1).bound("h100-sxm") == "memory"


def test_attention_intensity_limits():
    mha = lclib.get_model(LLAMA).with_(n_kv_heads=64)
    # MHA, no mask: 4*H*d_h*S^2 FLOPs per layer over Q, K, V, O of 2*S*H*d_h B each -> S/2
    assert C.attention_roofline(mha, 8192, causal=False).intensity == pytest.approx(4096)
    # GQA 64/8, causal: 2*H*d_h*S^2 over 2*S*d_h*(H + H_kv)*2 B -> S*64/144 = 0.444*S
    assert C.attention_roofline(LLAMA, 9 * 1024).intensity == pytest.approx(9 * 1024 * 64 / 144)
    # decode: 4*H*d_h*S FLOPs over the cache's 2*H_kv*d_h*S*2 B -> H/H_kv = 8 (fp8 KV: 16)
    assert C.attention_roofline(LLAMA, 131_072, 1).intensity == pytest.approx(8, rel=1e-3)
    assert C.attention_roofline(LLAMA, 131_072, 1, kv_dtype="fp8").intensity == pytest.approx(
        16, rel=1e-3)
    with pytest.raises(ValueError, match="new_tokens"):
        C.attention_roofline(LLAMA, 10, 11)


def test_roofline_time_is_the_slower_roof():
    r = C.Roofline(flops=989.4e12, bytes=3.35e12)  # one second of each on an H100
    assert r.time("h100-sxm") == pytest.approx(1.0)
    assert C.Roofline(flops=1e12, bytes=3.35e12).time("h100-sxm") == pytest.approx(1.0)


# --- properties ----------------------------------------------------------------------------
@given(models, lengths, st.integers(1, 64), kv_dtypes)
def test_kv_is_linear_in_length_and_batch(model, seq, batch, dtype):
    one = lclib.kv_cache_bytes(model, seq, kv_dtype=dtype)
    assert lclib.kv_cache_bytes(model, seq, batch, dtype) == batch * one
    window = lclib.get_model(model).sliding_window or 2 * seq  # a window caps the cache
    assert lclib.kv_cache_bytes(model, 2 * seq, kv_dtype=dtype) == min(2 * seq, window) * (
        one // min(seq, window))


@given(models, lengths, st.booleans())
def test_flops_and_attention_share_grow_with_length(model, seq, causal):
    a, b = lclib.prefill_flops(model, seq, causal), lclib.prefill_flops(model, seq + 1, causal)
    assert b.total > a.total and b.attention_share > a.attention_share
    assert b.linear > a.linear and b.attention > a.attention


@given(models, gpus, lengths, st.integers(1, 8), st.floats(0.05, 1.0))
def test_prefill_time_monotone_in_length_and_gpus(model, gpu, seq, n, mfu):
    t = lclib.prefill_time(model, gpu, seq, n, mfu)
    assert lclib.prefill_time(model, gpu, seq + 1, n, mfu) > t
    assert lclib.prefill_time(model, gpu, seq, n + 1, mfu) < t


@given(models, st.booleans())
def test_crossover_solves_attention_equals_linear(model, causal):
    s = lclib.crossover_seq_len(model, causal)
    lo, hi = lclib.prefill_flops(model, math.floor(s), causal), lclib.prefill_flops(
        model, math.ceil(s) + 1, causal)
    assert lo.attention <= lo.linear and hi.attention > hi.linear


@given(models, gpus, lengths, st.integers(1, 32), kv_dtypes)
def test_decode_time_grows_with_context(model, gpu, seq, batch, dtype):
    t = lclib.decode_step_time(model, gpu, seq, batch, kv_dtype=dtype)
    later = lclib.decode_step_time(model, gpu, seq + 1, batch, kv_dtype=dtype)
    assert later > t or later == t and seq >= (lclib.get_model(model).sliding_window or seq + 1)


@given(models, gpus, lengths, st.integers(1, 8), kv_dtypes)
def test_concurrency_non_increasing_in_context(model, gpu, seq, n, dtype):
    c = lclib.max_concurrency(model, gpu, seq, n, kv_dtype=dtype)
    assert lclib.max_concurrency(model, gpu, seq + 1, n, kv_dtype=dtype) <= c
    assert c >= 0


@given(models, gpus, st.integers(1, 8), st.floats(0.5, 1.0), st.integers(0, 2**16))
def test_kv_budget_shrinks_as_the_reserve_grows(model, gpu, n, util, chunk):
    free = lclib.kv_budget(model, gpu, n)
    assert free == n * lclib.get_gpu(gpu).hbm_bytes - lclib.weight_bytes(model)
    assert lclib.kv_budget(model, gpu, n, reserve=lclib.Reserve(util, 0, chunk)) <= free


@given(models, gpus, st.integers(1, 2**21), st.sampled_from([0, 2048, 8192]))
def test_cp_gpus_needed_is_the_fewest_that_fit(model, gpu, seq, chunk):
    r = lclib.Reserve(prefill_chunk=chunk)
    n = lclib.cp_gpus_needed(model, gpu, seq, reserve=r)
    kv = lclib.kv_cache_bytes(model, seq)
    assert lclib.kv_budget(model, gpu, n, reserve=r) >= kv
    assert n == 1 or lclib.kv_budget(model, gpu, n - 1, reserve=r) < kv


@given(models, gpus, lengths)
def test_fp8_kv_needs_no_more_gpus_than_bf16(model, gpu, seq):
    bf16 = lclib.cp_gpus_needed(model, gpu, seq)
    assert lclib.cp_gpus_needed(model, gpu, seq, kv_dtype="fp8") <= bf16
    assert bf16 * lclib.get_gpu(gpu).hbm_bytes >= lclib.weight_bytes(model)


# --- bad input -----------------------------------------------------------------------------
@pytest.mark.parametrize("seq", [0, -1, 2.5, "4k", None, True])
def test_bad_lengths_raise(seq):
    with pytest.raises(ValueError, match="seq_len"):
        lclib.kv_cache_bytes(LLAMA, seq)
    with pytest.raises(ValueError, match="seq_len"):
        lclib.prefill_flops(LLAMA, seq)


def test_unknown_names_list_the_known_ones():
    with pytest.raises(ValueError, match="llama-3.3-70b"):
        lclib.get_model("gpt-5")
    with pytest.raises(ValueError, match="h100-sxm"):
        lclib.get_gpu("tpu-v5")
    with pytest.raises(ValueError, match="bf16"):
        lclib.kv_bytes_per_token(LLAMA, "fp6")


def test_bad_rates_raise():
    with pytest.raises(ValueError, match="mfu"):
        lclib.prefill_time(LLAMA, "h100-sxm", 1000, mfu=40)
    with pytest.raises(ValueError, match="mfu"):
        lclib.prefill_time(LLAMA, "h100-sxm", 1000, mfu=0)
    with pytest.raises(ValueError, match="n_gpus"):
        lclib.decode_step_time(LLAMA, "h100-sxm", 1000, n_gpus=0)
    with pytest.raises(ValueError, match="fp8"):
        lclib.get_gpu("a100-80gb").peak_flops("fp8")  # Ampere has no FP8 tensor cores


def test_cost_model_imports_without_torch():
    import subprocess
    import sys

    code = "import sys, lclib; lclib.prefill_time('llama-3.3-70b', 'h100-sxm', 1000); " \
           "assert 'torch' not in sys.modules and 'numpy' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
