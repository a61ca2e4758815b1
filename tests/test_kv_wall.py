"""Chapter 2, the KV wall: published numbers reproduce (or fail to, for a named reason), the
derived capacity formulas agree with the cost model, the explorer, and the decode benchmark."""

from __future__ import annotations

import itertools
import json
import math
import random
import re

import pytest
import sympy as sp
import torch
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import lclib
from lclib import GB, GiB, KiB, kv_wall, measurements
from lclib import derive as D
from lclib.bench import run_experiment
from lclib.bench.decode import (
    decode_attention,
    filled_cache,
    fit_bandwidth,
    known_gpu,
    tinylm_decode_times,
)
from lclib.explorers.kv_wall import BAR_CAP_PCT, kv_wall_explorer, kv_wall_point
from lclib.tinylm import CONFIG, TinyLM

LLAMA, YI = lclib.get_model("llama-3.3-70b"), lclib.get_model("yi-34b")
K128 = 128 * 1024
YI_KV_PER_TOKEN = 2 * 60 * 8 * 128 * 2  # Yi-34B config.json: 60 layers, 8 KV heads


# --- Yao Fu's four metrics (Fu 2024, arXiv 2405.08944) ------------------------------------------

@pytest.fixture(scope="module")
def fu() -> dict[str, kv_wall.FuRow]:
    return {row.metric: row for row in kv_wall.fu_table()}


def test_fu_kv_sizes_reproduce_in_gib(fu):
    assert lclib.kv_bytes_per_token(YI) == YI_KV_PER_TOKEN
    assert fu["KV cache at 4K"].lclib == YI_KV_PER_TOKEN * 4_000 / 2**30
    # both printed figures are cut, not rounded: 0.9155 -> 0.91, 22.888 -> 22.8
    cut_4k = math.floor(100 * fu["KV cache at 4K"].lclib) / 100
    assert cut_4k == 0.91 == fu["KV cache at 4K"].reported
    assert math.floor(10 * fu["KV cache at 100K"].lclib) / 10 == 22.8
    assert round(lclib.kv_cache_bytes(YI, 4_096) / GiB, 2) == 0.94  # why "4K" is 4,000 here


def test_fu_concurrency(fu):
    free_lclib = 85_056_798_720 - 2 * 34_388_917_248  # the A100's reported total, exact params
    free_fu = 80e9 - 68e9  # the datasheet's label and "68 GB"
    assert fu["concurrency at 4K"].lclib == free_lclib // (YI_KV_PER_TOKEN * 4_000) == 16
    assert fu["concurrency at 50K"].lclib == 1 == fu["concurrency at 50K"].reported
    assert fu["concurrency at 4K"].convention == pytest.approx(free_fu / (YI_KV_PER_TOKEN * 4e3))
    assert round(fu["concurrency at 50K"].convention) == 1  # 0.98 of one, rounded
    assert fu["concurrency at 4K"].convention < 13 < fu["concurrency at 4K"].reported  # not 20
    assert fu["concurrency at 4K"].lclib < fu["concurrency at 4K"].reported  # nor with 85 GB


def test_fu_prefill(fu):
    # one convention per row: 4K = 4,000 tokens and attention as L*d*n^2, as at 50K
    assert fu["prefill at 4K"].convention == pytest.approx(
        (2 * 34e9 * 4_000 + 60 * 7168 * 4_000**2) / 312e12)
    assert round(fu["prefill at 4K"].convention, 3) == 0.894 and round(
        fu["prefill at 4K"].convention, 2) == 0.89
    assert fu["prefill at 50K"].convention == pytest.approx(
        (2 * 34e9 * 50_000 + 60 * 7168 * 50_000**2) / 312e12)
    assert fu["prefill at 50K"].convention == pytest.approx(14.1, rel=0.02)
    # lclib's causal attention count is twice the L*d*n^2 term
    assert lclib.prefill_flops(YI, 50_000).attention == 2 * 60 * 7168 * 50_000**2
    assert fu["prefill at 50K"].lclib > 17


def test_fu_decode(fu):
    for n, reported in ((4_000, 8.5), (50_000, 9.8)):
        row = fu[f"decode 250 tokens at {n // 1000}K"]
        assert row.convention == pytest.approx(250 * (68e9 + YI_KV_PER_TOKEN * n) / 2.039e12)
        assert round(row.convention, 1) == reported == row.reported
        assert row.lclib == pytest.approx(250 * lclib.decode_step_time(YI, "a100-80gb", n))


def test_four_metrics_uses_the_cost_model():
    m = kv_wall.four_metrics(LLAMA, "h100-sxm", K128, decode_tokens=10, n_gpus=4, mfu=0.5)
    assert m.kv_bytes == 40 * GiB
    # 4 x 81,559 MiB - 141.1 GB = 201.0 GB over 42.95 GB: 4.7 -> 4
    assert m.concurrency == (4 * 81_559 * 2**20 - lclib.weight_bytes(LLAMA)) // (40 * GiB) == 4
    assert m.decode_s == pytest.approx((lclib.weight_bytes(LLAMA) + 40 * GiB) * 10 / 13.4e12)
    assert m.prefill_s == lclib.prefill_time(LLAMA, "h100-sxm", K128, n_gpus=4, mfu=0.5)
    assert m.switch_s == 40 * GiB / 64e9 / 4  # each GPU sends its quarter over its own link


def test_session_throughput():
    # Yi-34B on one A100 at 4,000 tokens: 16 sessions; 16 prefills of 0.902 s, then 250 steps
    # reading 68.78 GB + 16 x 0.983 GB at 2.039 TB/s
    w, kv = 2 * 34_388_917_248, YI_KV_PER_TOKEN * 4_000
    prefill = (2 * lclib.get_model(YI).n_params_nonembedding * 4_000 + 2 * 60 * 7168 * 4_000**2)
    sessions = 16 / (16 * prefill / 312e12 + 250 * (w + 16 * kv) / 2.039e12)
    assert kv_wall.session_throughput(YI, "a100-80gb", 4_000) == pytest.approx(sessions)
    # at 50K one session at a time: about 18x fewer sessions per second
    ratio = sessions / kv_wall.session_throughput(YI, "a100-80gb", 50_000)
    assert 15 < ratio < 20
    assert kv_wall.session_throughput(YI, "a100-80gb", 100_000) == 0.0  # 24.6 GB > 16.3 GB


@pytest.mark.parametrize("call", [lambda: kv_wall.four_metrics(YI, "a100-80gb", 4000, 0),
                                  lambda: kv_wall.four_metrics(YI, "a100-80gb", -1),
                                  lambda: kv_wall.fu_convention(0),
                                  lambda: kv_wall.longest_context(YI, "a100-80gb", n_gpus=0),
                                  lambda: kv_wall.four_metrics(YI, "b200", 4000)])
def test_bad_input_says_what_to_pass(call):
    with pytest.raises(ValueError, match="pass|positive"):
        call()


# --- the Hopper lecture's and the course module's numbers ---------------------------------------

def test_llama_70b_kv_and_the_seed_003_correction():
    assert lclib.kv_bytes_per_token(LLAMA) == 320 * KiB == 327_680
    assert round(lclib.kv_cache_bytes(LLAMA, K128) / GB, 1) == 42.9
    mha80 = LLAMA.with_(n_heads=80, n_kv_heads=80)  # the seed's "80 heads"
    assert lclib.kv_cache_bytes(mha80, K128) == 400 * GiB
    assert round(lclib.kv_cache_bytes(mha80, K128) / GB) == 429
    assert round(lclib.kv_cache_bytes(mha80, 4096) / GB, 1) == 13.4  # the seed's 4K figure
    mha64 = LLAMA.with_(n_kv_heads=64)
    assert lclib.kv_cache_bytes(mha64, K128) == 8 * lclib.kv_cache_bytes(LLAMA, K128)


def test_seed_002_numbers():
    kv = {d: lclib.kv_cache_bytes(LLAMA, K128, kv_dtype=d) / GB for d in ("bf16", "fp8", "int4")}
    assert [round(v, 1) for v in kv.values()] == [42.9, 21.5, 10.7]
    four = 4 * 81_559 * 2**20  # four H100s as the devices report them: 342.1 GB
    assert 8 * kv["bf16"] > four / GB  # batch 8 at 128K outgrows 4 H100s' HBM on KV alone
    int4 = 70_553_706_496 / 2  # Llama-3.3-70B parameters at 4 bits
    for dtype, users in (("bf16", 7), ("fp8", 14)):  # the datasheet's 320 GB gave 6 and 13
        expected = int((four - int4) // lclib.kv_cache_bytes(LLAMA, K128, kv_dtype=dtype))
        assert expected == users == lclib.max_concurrency(
            LLAMA, "h100-sxm", K128, n_gpus=4, weight_dtype="int4", kv_dtype=dtype)
    tpot = {s: lclib.decode_step_time(LLAMA, "h200", s, weight_dtype="int4")
            for s in (K128, 4096)}
    assert tpot[K128] == pytest.approx((int4 + 40 * GiB) / 4.8e12)
    assert round(1e3 * tpot[K128]) == 16 and round(1e3 * tpot[4096]) == 8  # seed: ~16 vs ~8 ms


# --- derived formulas --------------------------------------------------------------------------

MODELS = st.sampled_from(sorted(lclib.MODELS))
DTYPES = st.sampled_from(["bf16", "fp8", "int4"])


LONGEST = sp.lambdify([D.n_gpu, D.HBM, D.W, D.L, D.H_kv, D.d_h, D.b],
                      kv_wall.derive_longest_context())


FULL_ATTENTION = st.sampled_from(sorted(n for n, m in lclib.MODELS.items() if not m.sliding_window))


def test_a_fitting_window_has_no_longest_context():
    with pytest.raises(ValueError, match="window"):
        kv_wall.longest_context("mistral-7b", "h100-sxm")


@settings(max_examples=40)
@given(model=FULL_ATTENTION, gpu=st.sampled_from(sorted(lclib.GPUS)), n=st.integers(1, 16),
       weights=DTYPES, kv=DTYPES)
def test_longest_context_is_where_one_request_stops_fitting(model, gpu, n, weights, kv):
    longest = kv_wall.longest_context(model, gpu, n, weights, kv)
    args = dict(n_gpus=n, weight_dtype=weights, kv_dtype=kv)
    if longest:
        assert lclib.max_concurrency(model, gpu, longest, **args) == 1
    assert lclib.max_concurrency(model, gpu, longest + 1, **args) == 0
    m, g = lclib.get_model(model), lclib.get_gpu(gpu)
    exact = LONGEST(n, g.hbm_bytes, lclib.weight_bytes(m, weights), m.n_layers, m.n_kv_heads,
                    m.head_dim, lclib.dtype_bits(kv) / 8)
    assert max(0, math.floor(exact)) == longest


@settings(max_examples=30)
@given(model=FULL_ATTENTION, weights=DTYPES, kv=DTYPES, batch=st.integers(1, 64))
def test_kv_reads_equal_weight_reads_at_the_crossover(model, weights, kv, batch):
    tokens = kv_wall.kv_equals_weights_tokens(model, weights, kv)
    m = lclib.get_model(model)
    w = lclib.weight_bytes(m, weights)
    assert tokens * lclib.kv_bytes_per_token(m, kv) == pytest.approx(w)
    sym = D.kv_equals_weights_tokens().subs(
        {D.W: w, D.L: m.n_layers, D.H_kv: m.n_kv_heads, D.d_h: m.head_dim,
         D.b: sp.Rational(lclib.dtype_bits(kv), 8)})
    assert float(sym) == pytest.approx(tokens)
    # past the crossover the KV reads dominate the decode step
    ctx = math.ceil(2 * tokens / batch)
    step = lclib.decode_step_time(m, "h200", ctx, batch, weight_dtype=weights, kv_dtype=kv)
    assert step > 2.9 * w / 4.8e12


def test_kv_share_is_half_at_the_crossover():
    share = kv_wall.derive_kv_share_of_step().subs(D.S, D.kv_equals_weights_tokens() / D.B)
    assert sp.simplify(share) == sp.Rational(1, 2)


def test_gqa_saving_is_the_group_size():
    per_token = D.kv_bytes_per_token()
    assert sp.simplify(per_token.subs(D.H_kv, D.H) / per_token) == D.H / D.H_kv
    for name in lclib.MODELS:
        m = lclib.get_model(name)
        mha = lclib.kv_bytes_per_token(m.with_(n_kv_heads=m.n_heads))
        assert mha == m.gqa_group * lclib.kv_bytes_per_token(m)


# --- the explorer ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def explorer():
    return kv_wall_explorer()


@pytest.fixture(scope="module")
def html(explorer) -> str:
    return explorer.to_html()


def test_explorer_html_is_small_and_self_contained(html):
    assert len(html.encode()) < 400_000  # the TPOT readout varies with every control
    assert not re.search(r"\b(src|href)=|fetch\(|XMLHttpRequest|\beval\(", html)
    assert html.count("<select") == 4 and html.count('<input type="range"') == 3


def test_explorer_grid_equals_compute(explorer, html):
    data = json.loads(re.search(r'class="lc-data">(.*?)</script>', html, re.S).group(1))
    axes = data["axes"]
    states = list(itertools.product(*(range(a["n"]) for a in axes)))
    for state in random.Random(2).sample(states, 40):
        values = {c.name: c.values[i] for c, i in zip(explorer.controls, state, strict=True)}
        want = kv_wall_point(**values)
        for key, col in data["num"].items():
            i = 0
            for a in col["d"]:
                i = i * axes[a]["n"] + state[a]
            if want[key] is None:  # a batch that does not fit: a gap, not a point
                assert col["v"][i] is None, key
            else:
                assert col["v"][i] == pytest.approx(want[key], rel=5e-3, abs=1e-9), key


def test_explorer_points_agree_with_the_cost_model(explorer):
    ends = [(c.values[0], c.values[-1]) if c.kind == "range" else c.values
            for c in explorer.controls]
    for combo in itertools.product(*ends):
        seq, batch, model, weights, kv, gpu, n = combo
        p = kv_wall_point(*combo)
        assert all(v is None or isinstance(v, str) or math.isfinite(v) and v >= 0
                   for v in p.values()), combo
        step = lclib.decode_step_time(model, gpu, seq, batch, n, weights, kv)
        budget = lclib.kv_budget(model, gpu, n, weights)
        if lclib.kv_cache_bytes(model, seq, batch, kv) <= budget:
            assert (p["weight_ms"] + p["kv_ms"]) / 1e3 == pytest.approx(step)
            assert p["tpot"] == f"{1e3 * step:,.1f} ms"
        else:  # flagged, not plotted
            assert p["kv_ms"] is None
            assert p["tpot"] == "does not fit"
        assert p["users"] == lclib.max_concurrency(model, gpu, seq, n, weights, kv)
        bars = p["weights_pct"] + p["kv_pct"] + p["free_pct"]
        if p["need_gb"] <= p["hbm_gb"]:
            assert bars == pytest.approx(100)
        else:
            assert p["free_pct"] == 0 and bars <= BAR_CAP_PCT


def test_explorer_starts_at_128k_on_four_h100s(explorer, html):
    start = {c.name: c.values[c.init] for c in explorer.controls}
    # the chapter's own question: four H100s, 4-bit weights, 128K
    assert start == {"seq_len": K128, "batch": 1, "model": "llama-3.3-70b",
                     "weight_dtype": "int4", "kv_dtype": "bf16", "gpu": "h100-sxm", "n_gpus": 4}
    assert "42.95 GB = 40.00 GiB" in html and "320 KiB = 327,680 bytes" in html
    assert "fp8" in explorer.controls[3].values  # FP8 weights are an option
    step = lclib.decode_step_time(LLAMA, "h100-sxm", K128, 1, 4, "int4")
    assert f"{1e3 * step:,.1f} ms" in html  # the TPOT readout


# --- the decode benchmark and the tinylm demo ---------------------------------------------------

def test_decode_experiment_writes_a_record(tmp_path):
    record = run_experiment("decode", "cpu", [256, 1024, 4096], "fp32", tmp_path)
    assert record["fitted_bandwidth"] is None or record["fitted_bandwidth"] > 0
    saved = measurements.read(record["path"])  # decode-cpu-fp32-<UTC time>.jsonl
    assert [r["seq_len"] for r in saved["rows"]] == [256, 1024, 4096]
    assert saved["rows"][2]["kv_bytes"] == 2 * 2 * 64 * 4096 * 4 == 16 * saved["rows"][0][
        "kv_bytes"]
    assert all(r["t_step"] > 0 and r["bandwidth"] > 0 for r in saved["rows"])
    assert record["gpu"] is None and record["fraction_of_hbm"] is None
    assert record["best_bandwidth"] == max(r["bandwidth"] for r in record["rows"])


def test_packed_decode_attention_is_gqa_attention():
    cfg = lclib.ModelConfig("t", hidden_size=64, n_layers=1, n_heads=8, n_kv_heads=2,
                            intermediate_size=1, vocab_size=1)
    out = decode_attention(cfg, 50, torch.device("cpu"), torch.float32, batch=3)()
    g = torch.Generator().manual_seed(0)  # the same draws as decode_attention's
    q = torch.randn(3, 2, 4, 8, generator=g)
    k, v = (torch.randn(3, 2, 50, 8, generator=g) for _ in range(2))
    ref = F.scaled_dot_product_attention(q.reshape(3, 8, 1, 8), k, v, enable_gqa=True)
    torch.testing.assert_close(out.reshape(3, 8, 1, 8), ref)


@given(st.floats(1e8, 1e13), st.floats(0, 1e-2), st.lists(st.integers(1, 10**10), min_size=2,
                                                           max_size=8, unique=True))
def test_fit_bandwidth_recovers_a_line(bandwidth, overhead, sizes):
    # a line doubles can resolve: the sizes' span of time well above the rounding of each time
    # (found by hypothesis: sizes 1 and 2 at 3.35 TB/s under a 4 ms overhead differ by 3e-13 s)
    assume((max(sizes) - min(sizes)) / bandwidth >= 1e-8 * (overhead + max(sizes) / bandwidth))
    bw, t0 = fit_bandwidth(sizes, [overhead + s / bandwidth for s in sizes])
    assert bw == pytest.approx(bandwidth, rel=1e-6)
    assert t0 == pytest.approx(overhead, abs=1e-9)


def test_fit_bandwidth_refuses_bad_data():
    with pytest.raises(ValueError, match="two sizes"):
        fit_bandwidth([5, 5], [1.0, 2.0])
    with pytest.raises(ValueError, match="longer contexts"):
        fit_bandwidth([1, 2], [2.0, 1.0])


@pytest.mark.parametrize(("name", "gpu"), [("NVIDIA H100 80GB HBM3", "h100-sxm"),
                                           ("NVIDIA H200", "h200"),
                                           ("NVIDIA A100-SXM4-80GB", "a100-80gb"),
                                           ("NVIDIA H100 PCIe", None), ("Tesla T4", None)])
def test_known_gpu(name, gpu):
    found = known_gpu(name)
    assert (found.name if found else None) == gpu


@pytest.fixture(scope="module")
def tiny() -> TinyLM:
    torch.manual_seed(0)
    return TinyLM(CONFIG).eval()


@pytest.mark.parametrize("kv_dtype", ["fp32", "bf16"])
def test_tinylm_kv_tensors_are_kv_cache_bytes(tiny, kv_dtype):
    tokens = torch.randint(0, CONFIG.vocab_size, (3, 100), generator=torch.Generator())
    with torch.no_grad():
        _, cache = tiny.prefill(tokens, kv_dtype=kv_dtype)
        tiny.decode(tokens[:, 0], cache)
    stored = sum(t.numel() * t.element_size() for layer in cache.keys + cache.values
                 for t in layer)
    assert stored == lclib.kv_cache_bytes(CONFIG, 101, 3, kv_dtype) == 3 * 101 * 2 * 2 * 2 * 32 * (
        4 if kv_dtype == "fp32" else 2)
    assert filled_cache(tiny, 77, 2, kv_dtype).nbytes == lclib.kv_cache_bytes(CONFIG, 77, 2,
                                                                               kv_dtype)


def test_tinylm_decode_times(tiny):
    rows = tinylm_decode_times(tiny, [64, 256])
    assert [r["context"] for r in rows] == [64, 256]
    assert [r["kv_bytes"] for r in rows] == [lclib.kv_cache_bytes(CONFIG, s, kv_dtype="fp32")
                                             for s in (64, 256)]
    assert all(r["t_step"] > 0 for r in rows)
    with pytest.raises(ValueError, match="positive"):
        filled_cache(tiny, 0)
