"""Every sympy formula in lclib.derive equals its numeric twin in lclib.cost."""

import random

import pytest
import sympy as sp

import lclib
from lclib import derive as D

SEEDS = range(25)


def random_model(rng: random.Random) -> lclib.ModelConfig:
    kv = rng.choice([1, 2, 4, 8])
    return lclib.ModelConfig(
        "random", hidden_size=rng.randrange(64, 16384, 64), n_layers=rng.randint(1, 128),
        n_heads=kv * rng.randint(1, 16), n_kv_heads=kv, head_dim=rng.choice([64, 96, 128, 256]),
        intermediate_size=rng.randrange(128, 65536, 128), vocab_size=rng.randint(100, 200_000),
        mlp=rng.choice(["gated", "plain"]))


def values(m: lclib.ModelConfig) -> dict:
    return {D.L: m.n_layers, D.d: m.hidden_size, D.H: m.n_heads, D.H_kv: m.n_kv_heads,
            D.d_h: m.head_dim, D.F: m.intermediate_size, D.m: 3 if m.mlp == "gated" else 2}


def evaluate(expr: sp.Expr, subs: dict) -> float:
    symbols = sorted(expr.free_symbols, key=str)
    return sp.lambdify(symbols, expr)(*(subs[s] for s in symbols))


@pytest.mark.parametrize("seed", SEEDS)
def test_formulas_equal_numeric_twins(seed):
    rng = random.Random(seed)
    m, gpu = random_model(rng), lclib.get_gpu(rng.choice(sorted(lclib.GPUS)))
    seq, batch, n = rng.randint(1, 2_000_000), rng.randint(1, 64), rng.randint(1, 16)
    causal, mfu = rng.random() < 0.5, rng.uniform(0.05, 1)
    v = values(m) | {D.S: seq, D.B: batch, D.b: 2, D.N: m.n_params_nonembedding,
                     D.W: lclib.weight_bytes(m), D.P: gpu.peak_flops(), D.mfu: mfu, D.n_gpu: n,
                     D.BW: gpu.hbm_bandwidth, D.HBM: gpu.hbm_bytes, D.PCIE: gpu.pcie_bandwidth,
                     D.causal_k: 2 if causal else 1}
    flops = lclib.prefill_flops(m, seq, causal)
    approx = pytest.approx
    assert evaluate(D.n_params_nonembedding(), v) == m.n_params_nonembedding
    assert evaluate(D.kv_cache_bytes(), v) == lclib.kv_cache_bytes(m, seq, batch)
    assert evaluate(D.linear_flops(), v) == approx(flops.linear, rel=1e-12)
    assert evaluate(D.attention_flops(), v) == approx(flops.attention, rel=1e-12)
    assert evaluate(D.crossover(), v) == approx(lclib.crossover_seq_len(m, causal), rel=1e-12)
    assert evaluate(D.prefill_time(), v) == approx(
        lclib.prefill_time(m, gpu, seq, n, mfu, causal=causal), rel=1e-12)
    assert evaluate(D.decode_step_time(), v) == approx(
        lclib.decode_step_time(m, gpu, seq, batch, n), rel=1e-12)
    fits = evaluate(D.concurrency(), v)
    assert max(0, int(fits)) == lclib.max_concurrency(m, gpu, seq, n)
    assert evaluate(D.context_switch_time(), v) == approx(
        lclib.context_switch_time(m, gpu, seq), rel=1e-12)


def test_kaplan_and_jax_book_special_cases():
    # Kaplan et al. 2020: the context term is small while d_model > n_ctx / 12
    assert D.mha_crossover(2, causal=True) == 12 * D.d
    assert D.mha_crossover(2, causal=False) == 6 * D.d
    # JAX scaling book: attention/matmul FLOPs = T/8D (gated 4D MLP, no causal skipping)
    ratio = D.attention_to_linear_ratio().subs(D.mha(3)).subs(D.causal_k, 1)
    assert sp.limit(ratio * D.d / D.S, D.d, sp.oo) == sp.Rational(1, 8)  # norms vanish


def test_kv_equals_weights_point():
    m = lclib.get_model("llama-3.3-70b")
    v = values(m) | {D.b: 2, D.W: lclib.weight_bytes(m)}
    tokens = evaluate(D.kv_equals_weights_tokens(), v)
    assert lclib.kv_cache_bytes(m, round(tokens)) == pytest.approx(lclib.weight_bytes(m), rel=1e-5)


@pytest.mark.parametrize("seed", SEEDS)
def test_attention_intensity_equals_the_cost_models(seed):
    rng = random.Random(seed)
    m = random_model(rng)
    context = rng.randint(1, 2_000_000)
    new, causal = rng.choice([1, context, rng.randint(1, context)]), rng.random() < 0.5
    v = values(m) | {D.S: context, D.b: 2, D.causal_k: 2 if causal else 1}
    got = evaluate(D.attention_intensity(sp.Integer(new)), v)
    want = lclib.cost.attention_roofline(m, context, new, causal=causal).intensity
    assert got == pytest.approx(want, rel=1e-9)


def test_roofline_limits():
    # a matmul's intensity tends to 2T/b as the matrix grows: the tokens in the batch in bf16
    wide = sp.limit(sp.limit(D.matmul_intensity(), D.d_out, sp.oo), D.d_in, sp.oo)
    assert wide.subs(D.b, 2) == D.T
    # causal prefill: H*S/(b*(H + H_kv)); MHA without the mask: S/2 in bf16
    prefill = sp.simplify(D.attention_intensity(D.S).subs(D.causal_k, 2))
    assert sp.simplify(prefill - D.H * D.S / (D.b * (D.H + D.H_kv))) == 0
    mha = D.attention_intensity(D.S).subs({D.causal_k: 1, D.H_kv: D.H, D.b: 2})
    assert sp.simplify(mha) == D.S / 2
    # decode: the GQA group 2H/(b*H_kv) as the cache grows, whatever the batch
    assert sp.limit(D.attention_intensity(sp.Integer(1)), D.S, sp.oo) == 2 * D.H / (D.b * D.H_kv)


def test_concurrency_with_a_reserve_matches_kv_budget():
    m, gpu = lclib.get_model("llama-3.3-70b"), lclib.get_gpu("h100-sxm")
    r = lclib.Reserve(runtime_bytes=2 * 10**9)
    v = values(m) | {D.S: 131_072, D.b: 2, D.W: lclib.weight_bytes(m, "int4"), D.n_gpu: 4,
                     D.HBM: gpu.hbm_bytes, D.R: r.bytes_per_gpu(m, gpu, 4)}
    fits = evaluate(D.concurrency(D.R), v)
    assert int(fits) == lclib.max_concurrency(m, gpu, 131_072, 4, "int4", reserve=r) == 6
