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
    value = float(expr.subs({c.F: lclib.get_gpu(gpu).peak_flops() * mfu, c.H: m.n_heads,
                             c.H_kv: m.n_kv_heads, c.b: lclib.dtype_bits(kv_dtype) / 8,
                             c.B: c.link_bandwidth(link, gpu), c.f: 0.5 if causal else 1}))
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
        assert all(math.isfinite(v) and v > 0 for v in out.values() if not isinstance(v, str))
    at = {c.name: c.values[c.init] for c in ex.controls}
    out = cp_point(**at)
    assert out["prefill_s"] == pytest.approx(context_parallel.ring_prefill_time(
        LLAMA, at["gpu"], at["seq_len"], at["tp"], at["cp"], at["link"], at["kv_dtype"]))
    assert out["hides"].startswith("yes") == (out["tokens_per_rank"] >= out["threshold"])
    html = ex.to_html()
    assert len(html.encode()) < 300_000 and html.count("<select") == 3
