"""lclib.context_parallel: per-GPU memory, ring steps, the overlap condition, its explorer."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

import lclib
from lclib import context_parallel
from lclib.explorers.context_parallel import context_parallel_explorer, cp_point

LLAMA = "llama-3.3-70b"
models = st.sampled_from(list(lclib.MODELS))
gpus = st.sampled_from(list(lclib.GPUS))
links = st.sampled_from(list(context_parallel.LINKS))


def test_link_bandwidths_one_way_per_gpu():
    h100 = lclib.get_gpu("h100-sxm")
    # NDR: 400 Gb/s = 50 GB/s each way
    assert context_parallel.link_bandwidth("infiniband", h100) == 50e9
    assert context_parallel.link_bandwidth("nvlink", h100) == 450e9  # 900 GB/s both ways
    assert context_parallel.link_bandwidth("pcie", h100) == 64e9
    with pytest.raises(ValueError, match="nvlink, pcie, infiniband"):
        context_parallel.link_bandwidth("ethernet", h100)


@given(gpus, links)
def test_liu_condition_for_mha_bf16_unmasked_is_f_over_b(gpu, link):
    mha = lclib.get_model(LLAMA).with_(name="mha", n_kv_heads=64)
    peak, bw = lclib.get_gpu(gpu).peak_flops("bf16"), context_parallel.link_bandwidth(link, gpu)
    assert context_parallel.overlap_threshold(mha, gpu, link, causal=False) == pytest.approx(
        peak / bw)
    # causal halves the compute per step (doubles c*); GQA 8:1 divides the bytes by 8
    assert context_parallel.overlap_threshold(LLAMA, gpu, link) == pytest.approx(2 * peak / bw / 8)
    assert context_parallel.overlap_threshold(LLAMA, gpu, link, kv_dtype="fp8") == pytest.approx(
        peak / bw / 8)


@given(models, gpus, links, st.sampled_from(["bf16", "fp8"]), st.booleans(),
       st.floats(0.1, 1.0))
def test_sympy_threshold_matches_numeric(model, gpu, link, kv_dtype, causal, mfu):
    m = lclib.get_model(model)
    c = context_parallel
    expr = c.derive_overlap_threshold()
    value = float(expr.subs({c.P: lclib.get_gpu(gpu).peak_flops() * mfu, c.H: m.n_heads,
                             c.H_kv: m.n_kv_heads, c.b: lclib.dtype_bits(kv_dtype) / 8,
                             c.BW_link: c.link_bandwidth(link, gpu), c.f: 0.5 if causal else 1}))
    assert value == pytest.approx(c.overlap_threshold(model, gpu, link, kv_dtype, causal, mfu))


@given(models, gpus, links, st.sampled_from([1, 2, 4, 8]), st.integers(2, 64))
def test_step_compute_equals_comm_at_the_threshold(model, gpu, link, tp, cp_degree):
    m = lclib.get_model(model)
    if m.n_heads % tp or tp > m.n_kv_heads:
        return
    c_star = context_parallel.overlap_threshold(model, gpu, link, mfu=0.4)
    step = context_parallel.ring_step(model, gpu, round(c_star * cp_degree), tp, cp_degree, link)
    assert step["compute"] == pytest.approx(step["comm"], rel=2 / c_star + 1e-9)


@given(models, st.integers(1, 2**21), st.sampled_from([1, 2, 4, 8]), st.integers(1, 64),
       st.sampled_from(["bf16", "fp8"]))
def test_per_gpu_memory(model, seq, tp, cp_degree, kv_dtype):
    m = lclib.get_model(model)
    if m.n_heads % tp:
        return
    mem = context_parallel.per_gpu_memory(model, seq, tp, cp_degree, kv_dtype=kv_dtype)
    whole = lclib.kv_cache_bytes(model, seq, kv_dtype=kv_dtype)
    assert mem["weights"] == pytest.approx(lclib.weight_bytes(model) / tp)
    assert mem["kv"] * cp_degree * min(tp, m.n_kv_heads) == pytest.approx(whole)
    assert mem["total"] == pytest.approx(mem["weights"] + mem["kv"])


def test_seventy_b_needs_and_fits():
    # 128K tokens of Llama-3.3-70B: 42.9 GB of KV plus ~141 GB of weights
    kv = lclib.kv_cache_bytes(LLAMA, 2**17)
    assert kv == 2 * 80 * 8 * 128 * 2 * 2**17
    assert lclib.cp_gpus_needed(LLAMA, "h100-sxm", 2**17) == math.ceil(
        (lclib.weight_bytes(LLAMA) + kv) / 80e9) == 3
    one_node = context_parallel.per_gpu_memory(LLAMA, 2**20, tp=8, cp=1)
    assert one_node["kv"] == 2 * 80 * 128 * 2 * 2**20  # one KV head per GPU
    assert context_parallel.min_cp(LLAMA, "h100-sxm", 2**20, tp=8) == 1
    assert context_parallel.min_cp(LLAMA, "h100-sxm", 2**22, tp=8) == 4
    # 141 GB of weights > 80 GB
    assert context_parallel.min_cp(LLAMA, "h100-sxm", 2**17, tp=1) is None


@given(models, gpus, links, st.sampled_from([1, 2, 4, 8]), st.sampled_from([1, 2, 4, 16]),
       st.integers(1024, 2**21))
def test_ring_prefill_is_ideal_when_communication_hides(model, gpu, link, tp, cp_degree, seq):
    m = lclib.get_model(model)
    if m.n_heads % tp:
        return
    t = context_parallel.ring_prefill_time(model, gpu, seq, tp, cp_degree, link)
    ideal = lclib.prefill_time(model, gpu, seq, n_gpus=tp * cp_degree)
    step = context_parallel.ring_step(model, gpu, seq, tp, cp_degree, link)
    if step["compute"] >= step["comm"] or cp_degree == 1:
        assert t == pytest.approx(ideal)
    else:
        exposed = m.n_layers * (cp_degree - 1) * (step["comm"] - step["compute"])
        assert t == pytest.approx(ideal + exposed)


def test_allgather_holds_the_whole_layer():
    bufs = context_parallel.allgather_buffer_bytes(LLAMA, 2**20, tp=8, cp=8)
    assert bufs["allgather"] == 2 * 1 * 128 * 2 * 2**20  # K and V, 1 head per GPU, 1M tokens
    assert bufs["ring"] == bufs["allgather"] * 2 / 8


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"tp": 3}, "divisor of 64"), ({"cp": 0}, ">= 1"), ({"seq_len": -5}, ">= 1"),
    ({"link": "wifi"}, "pass one of"), ({"mfu": 2.0}, "0 < mfu <= 1"),
    ({"kv_dtype": "fp7"}, "pass one of"),
])
def test_bad_input_raises(kwargs, message):
    args = {"seq_len": 2**17, "tp": 8, "cp": 4, "link": "nvlink"} | kwargs
    with pytest.raises(ValueError, match=message):
        context_parallel.ring_step(LLAMA, "h100-sxm", **args)


def test_explorer_corners_are_finite_and_match_the_model():
    ex = context_parallel_explorer()
    ends = [(c.values[0], c.values[-1]) if len(c.values) > 3 else c.values for c in ex.controls]
    for combo in itertools.product(*ends):
        out = cp_point(*combo)
        assert all(math.isfinite(v) and v >= 0 for v in out.values()
                   if v is not None and not isinstance(v, str))
        assert (out["comm_s"] is None) == (combo[1] == 1)  # CP = 1 sends nothing
    at = {c.name: c.values[c.init] for c in ex.controls}
    out = cp_point(**at)
    assert out["prefill_s"] == pytest.approx(context_parallel.ring_prefill_time(
        LLAMA, at["gpu"], at["seq_len"], at["tp"], at["cp"], at["link"], at["kv_dtype"]))
    assert 2**17 in ex.controls[0].values and 2**22 in ex.controls[0].values  # 128K and 4M
    # the default (1M, TP = 8, CP = 1) shows the memory wall of a one-shot prefill
    assert out["fits"] == "yes with chunked prefill; no for a one-shot prefill"
    assert out["oneshot_gb"] > out["hbm_gb"] > out["mem_gb"]
    for cp_degree in (2, 32):  # hidden exactly when a rank holds c* tokens or more
        o = cp_point(**(at | {"cp": cp_degree, "seq_len": 2**15}))
        assert (o["hides"] == "yes") == (o["tokens_per_rank"] >= o["threshold"])
        assert (o["exposed_s"] > 0) == (o["hides"] != "yes")
        assert o["hides"] == ("yes" if cp_degree == 2 else o["hides"]) and (
            cp_degree == 2 or o["hides"].startswith("no"))  # 16K per rank hides, 1K does not
    html = ex.to_html()
    assert len(html.encode()) < 300_000 and html.count("<select") == 3


# --- load balance, Ulysses, pass-KV vs pass-Q, disaggregation, Meta's 1M prefill --------------
cp = context_parallel

@pytest.mark.parametrize("n", [1, 2, 4, 8, 16])
def test_ring_wall_clock_matches_the_per_step_work(n):
    # synchronized steps: each lasts as long as its busiest rank (lclib.ring counts the FLOPs)
    from lclib.ring import block_flops

    for layout in ("contiguous", "zigzag"):
        steps = block_flops(64 * n, n, layout, True, n_heads=1, head_dim=8)
        full = block_flops(64 * n, n, "contiguous", False, n_heads=1, head_dim=8)[0][0]
        wall = sum(max(rank[s] for rank in steps) for s in range(n)) / full
        assert cp.ring_wall_clock(n, layout) == pytest.approx(wall)


def test_contiguous_is_about_twice_zigzag_in_wall_clock_not_2n_minus_1():
    # the page's 4-rank table: 3.5 / 2 = 1.75; 8 ranks: 7.5 / 4 = 1.875 = (2N-1)/N, not 15
    assert cp.ring_wall_clock(4, "contiguous") / cp.ring_wall_clock(4) == 1.75
    assert cp.ring_wall_clock(8, "contiguous") / cp.ring_wall_clock(8) == 15 / 8
    # ring-flash-attention's README, 8xH800 forward: ring 52.1% vs zigzag 85.2% of ideal = 1.64x
    assert 85.2 / 52.1 < 15 / 8
    with pytest.raises(ValueError, match="layout"):
        cp.ring_wall_clock(4, "striped")


def test_ulysses_cannot_split_eight_kv_heads_further_at_tp8():
    assert cp.ulysses_max_degree(LLAMA, tp=8) == 1  # one K/V head per TP rank
    assert cp.ulysses_max_degree(LLAMA, tp=2) == 4
    assert cp.ulysses_max_degree(LLAMA, tp=1) == 8


def test_pass_q_moves_less_for_decode_and_pass_kv_for_a_fresh_prefill():
    # per layer, bf16: K/V 2*1024 B per token; Q + O 2*8192*2 B and LSE 64*4 B per new token
    fresh = cp.pass_kv_vs_pass_q(LLAMA, 131_072)
    assert fresh == {"pass_kv": 4096 * 131_072, "pass_q": (32_768 + 256) * 131_072}
    assert fresh["pass_kv"] < fresh["pass_q"]
    decode = cp.pass_kv_vs_pass_q(LLAMA, 1, cached_tokens=2**20)
    assert decode["pass_q"] * 1000 < decode["pass_kv"]
    # a question of 1,024 tokens over a cached 128K document: pass-Q still moves less
    q = cp.pass_kv_vs_pass_q(LLAMA, 1024, cached_tokens=131_072)
    assert q["pass_q"] < q["pass_kv"]


def test_disaggregated_kv_transfer():
    # 1M tokens of bf16 KV = 343.6 GB, over 8 InfiniBand NDR ports of 50 GB/s: 0.86 s
    t = cp.kv_transfer_time(LLAMA, "h100-sxm", 2**20, n_gpus=8)
    assert t == pytest.approx(327_680 * 2**20 / (8 * 50e9))
    assert cp.kv_transfer_time(LLAMA, "h100-sxm", 2**20, kv_dtype="fp8") == pytest.approx(t / 2)


def test_meta_405b_million_token_prefill_in_77_s():
    # Meta (arXiv 2411.01783): 1M tokens of Llama-3-405B on 128 H100s in 77 s. lclib's FLOPs:
    # 2 x 401.65e9 x 2^20 + 4 x 126 x 16384 x 2^40 / 2 = 5.38e18; at 128 x 989.4 TFLOP/s that is
    # 42.5 s at peak, so 77 s is an MFU of 0.55 (Meta reports 63% "FLOPS utilization")
    flops = 2 * 401_650_696_192 * 2**20 + 4 * 126 * 16384 * 2**40 / 2
    assert lclib.prefill_flops("llama-3.1-405b", 2**20).total == pytest.approx(flops)
    mfu = lclib.cost.implied_mfu("llama-3.1-405b", "h100-sxm", 2**20, 77, n_gpus=128)
    assert mfu == pytest.approx(flops / (77 * 128 * 989.4e12)) and round(mfu, 2) == 0.55
    # CP = 16 nodes x TP = 8: 65,536 tokens per rank, far past the InfiniBand overlap threshold
    assert 10 * cp.overlap_threshold("llama-3.1-405b", "h100-sxm", "infiniband") < 2**20 / 16
    ring = cp.ring_prefill_time("llama-3.1-405b", "h100-sxm", 2**20, tp=8, cp=16,
                               link="infiniband", mfu=mfu)
    assert ring == pytest.approx(77, rel=0.01)  # communication hides: the ring adds nothing


def test_one_shot_1m_prefill_needs_cp_even_at_tp8():
    # TP = 8: 17.6 GB of weights + 42.9 GB of KV = 60.6 GB per GPU fits 85.5 GB chunked, but a
    # one-shot prefill adds 17.2 GB of residual stream and 22.5 GB of MLP intermediates
    assert cp.min_cp(LLAMA, "h100-sxm", 2**20, tp=8) == 1
    one_shot = lclib.Reserve(prefill_chunk=2**20)
    per_gpu = 141.1e9 / 8 + 343.6e9 / 8 + lclib.activation_bytes(LLAMA, 2**20, 8)
    assert per_gpu > lclib.get_gpu("h100-sxm").hbm_bytes
    assert cp.min_cp(LLAMA, "h100-sxm", 2**20, tp=8, reserve=one_shot) == 2
    assert cp.min_cp(LLAMA, "h100-sxm", 2**20, tp=8, reserve=lclib.VLLM_RESERVE) == 1


def test_case_study_gb_are_320000_bytes_per_token():
    # its "320 GB at 1M" and "41 GB at 128K" are 320,000 B x 10^6 and x 128,000, not 327,680 B
    assert 320_000 * 10**6 / 1e9 == 320.0 and 320_000 * 128_000 / 1e9 == 40.96
    assert lclib.kv_cache_bytes(LLAMA, 10**6) / 1e9 == pytest.approx(327.68)
    assert lclib.kv_cache_bytes(LLAMA, 128_000) / 1e9 == pytest.approx(41.94, abs=0.01)


def test_fp8_kv_halves_the_threshold_only_at_the_bf16_attention_rate():
    bf16 = cp.overlap_threshold(LLAMA, "h100-sxm", "infiniband")
    fp8_kv = cp.overlap_threshold(LLAMA, "h100-sxm", "infiniband", kv_dtype="fp8")
    both = cp.overlap_threshold(LLAMA, "h100-sxm", "infiniband", kv_dtype="fp8",
                                              dtype="fp8")
    assert fp8_kv == pytest.approx(bf16 / 2) and both == pytest.approx(bf16, rel=1e-3)
