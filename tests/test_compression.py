"""The KV compression cost model (lclib.compression) and lclib's sliding window."""

import math

import pytest
import sympy as sp
from hypothesis import given
from hypothesis import strategies as st

import lclib
from lclib import compression as C
from lclib import stats

MODELS = ["llama-3.3-70b", "llama-3.1-8b", "qwen2.5-72b", "yi-34b"]


def test_kv_cache_bytes_honours_mistral_sliding_window():
    # 4,096 tokens x 2 (K, V) x 32 layers x 8 KV heads x 128 dims x 2 bytes
    assert lclib.kv_cache_bytes("mistral-7b", 131_072) == 4096 * 2 * 32 * 8 * 128 * 2
    assert lclib.kv_cache_bytes("mistral-7b", 131_072) / 1e9 == pytest.approx(0.537, abs=1e-3)
    assert lclib.kv_cache_bytes("mistral-7b", 1000) == 1000 * 131_072
    no_window = lclib.get_model("mistral-7b").with_(sliding_window=None)
    assert lclib.kv_cache_bytes(no_window, 131_072) / 1e9 == pytest.approx(17.18, abs=0.01)


def test_scheme_swa_matches_the_models_own_window():
    no_window = lclib.get_model("mistral-7b").with_(sliding_window=None)
    assert C.scheme_bytes(no_window, 131_072, "swa-4096") == lclib.kv_cache_bytes("mistral-7b",
                                                                                  131_072)


def test_full_scheme_is_lclibs_kv_cache():
    for m in [*MODELS, "mistral-7b"]:
        assert C.scheme_bytes(m, 131_072) == lclib.kv_cache_bytes(m, 131_072)


def test_mla_bytes_per_token_from_deepseek_v3_config():
    assert C.mla_bytes_per_token() == 576 * 61 * 2 == 70_272
    # 128 heads x (192-d key + 128-d value) x 61 layers x 2 B as plain MHA
    assert C.mla_as_mha_bytes_per_token() == 128 * 320 * 61 * 2


def test_named_layer_and_head_schemes_on_llama_70b():
    full = lclib.kv_cache_bytes("llama-3.3-70b", 131_072)
    assert C.scheme_bytes("llama-3.3-70b", 131_072, "cla2") == full // 2
    assert C.scheme_bytes("llama-3.3-70b", 131_072, "mqa") == full // 8
    assert C.scheme_bytes("llama-3.3-70b", 131_072, "hybrid-1:7") == full // 8
    # MLA's 576 elements per token and layer instead of 2 x 8 x 128
    assert C.scheme_bytes("llama-3.3-70b", 131_072, "mla") == 576 * 80 * 2 * 131_072


def test_yoco_keeps_one_global_cache_and_windowed_half():
    m = lclib.get_model("llama-3.1-8b")  # 32 layers, 2 x 8 x 128 elements per token and layer
    per_layer_token = 2 * 8 * 128 * 2
    assert C.scheme_bytes(m, 1_000_000, "yoco") == per_layer_token * (1_000_000 + 16 * 4096)


def test_local_global_stack_and_streaming_stop_growing():
    m = "llama-3.1-8b"
    assert C.scheme_bytes(m, 10**6, "streamingllm") == C.scheme_bytes(m, 8192, "streamingllm")
    five_one = C.scheme_bytes(m, 131_072, "local-global-5:1")
    # 32 layers: round(32 * 5/6) = 27 local (1,024 tokens), 5 global (131,072 tokens)
    assert five_one == 2 * 8 * 128 * 2 * (27 * 1024 + 5 * 131_072)


def test_quantized_bits_count_their_group_scales():
    int4 = C.get_scheme("int4-g32")
    assert int4.element_bits() == 4 + 4 * 8 / 32
    full = lclib.kv_cache_bytes("llama-3.1-8b", 65_536)
    assert C.scheme_bytes("llama-3.1-8b", 65_536, "int4-g32") == full * 5 // 16
    assert C.scheme_bytes("llama-3.1-8b", 65_536, "int8-g128") == full * 8.125 / 16


def test_eviction_budgets():
    assert C.scheme_bytes("llama-3.1-8b", 100_000, "h2o-20") == C.scheme_bytes(
        "llama-3.1-8b", 20_000)
    assert C.scheme_bytes("llama-3.1-8b", 100_000, "snapkv-4096") == C.scheme_bytes(
        "llama-3.1-8b", 4096)
    assert C.scheme_bytes("llama-3.1-8b", 1000, "snapkv-4096") == C.scheme_bytes(
        "llama-3.1-8b", 1000)


@given(st.sampled_from(sorted(C.SCHEMES)), st.sampled_from(MODELS), st.integers(1, 2_000_000),
       st.integers(1, 1000))
def test_every_scheme_grows_monotonically_and_never_exceeds_full(name, model, seq, extra):
    b = C.scheme_bytes(model, seq, name)
    assert 0 < b <= C.scheme_bytes(model, seq)
    assert C.scheme_bytes(model, seq + extra, name) >= b
    assert C.scheme_bytes(model, seq, name, batch=3) == pytest.approx(3 * b, abs=3)
    assert C.get_scheme(name).source


@pytest.mark.parametrize("name", sorted(C.SCHEMES))
def test_sympy_expression_matches_scheme_bytes(name):
    m = lclib.get_model("llama-3.3-70b").with_(n_layers=96)  # every preset's split is exact
    expr = C.scheme_expr(name)
    syms = {str(s): s for s in expr.free_symbols}
    values = {"L": 96, "H_kv": 8, "d_h": 128, "S": 120_000, "b": 2}
    got = float(expr.subs({syms[k]: v for k, v in values.items() if k in syms}))
    assert got == pytest.approx(C.scheme_bytes(m, 120_000, name), rel=0.02)


def test_users_that_fit_uses_the_shared_kv_budget():
    budget = lclib.kv_budget("llama-3.1-8b", "h200")
    for name in ("full", "swa-4096", "int4-g32"):
        need = C.scheme_bytes("llama-3.1-8b", 131_072, name)
        assert C.users_that_fit("llama-3.1-8b", "h200", 131_072, name) == budget // need
    assert C.users_that_fit("llama-3.1-8b", "h200", 131_072, "int4-g32") > \
        C.users_that_fit("llama-3.1-8b", "h200", 131_072)


def test_decode_step_reads_weights_plus_compressed_cache():
    full = C.decode_step_time("llama-3.1-8b", "h200", 131_072, batch=4)
    assert full == pytest.approx(lclib.decode_step_time("llama-3.1-8b", "h200", 131_072,
                                                        batch=4))
    assert C.decode_step_time("llama-3.1-8b", "h200", 131_072, "swa-4096", batch=4) < full


def test_bytes_per_token_is_the_request_average():
    assert C.bytes_per_token("llama-3.3-70b", 4096) == 327_680
    assert C.bytes_per_token("mistral-7b", 8192, "full") == 131_072 / 2


@given(st.sampled_from(MODELS), st.floats(0.01, 1.0))
def test_sparse_prefill_moves_the_crossover_by_one_over_density(model, density):
    s = lclib.crossover_seq_len(model) / density
    f = C.sparse_prefill_flops(model, round(s), density)
    assert f.attention == pytest.approx(f.linear, rel=1e-3)


@given(st.sampled_from(MODELS), st.integers(10_000, 2_000_000), st.floats(1.0, 50.0))
def test_density_for_speedup_inverts_sparse_flops(model, seq, speedup):
    d = C.density_for_speedup(model, seq, speedup)
    dense = lclib.prefill_flops(model, seq).total
    if d is None:
        assert dense / lclib.prefill_flops(model, seq).linear <= speedup
    else:
        assert dense / C.sparse_prefill_flops(model, seq, d).total == pytest.approx(speedup)


@given(st.integers(1, 4), st.integers(2, 6))
def test_receptive_field_is_a_bound_with_one_path_at_its_edge(layers, window):
    edge = C.receptive_field(layers, window)
    assert C.paths(edge, layers, window) == 1
    assert C.paths(edge + 1, layers, window) == 0
    assert sum(C.paths(d, layers, window) for d in range(edge + 1)) == window**layers


def test_budget_for_users_solves_the_capacity_equation():
    n = sp.Symbol("N", positive=True)
    keep = C.budget_for_users(n)
    S, b_tok, kv = sp.symbols("S b_tok KV", positive=True)
    assert sp.simplify(n * keep * S * b_tok - kv) == 0


@pytest.mark.parametrize("kwargs, match", [
    (dict(direction="sideways"), "direction"), (dict(keep=0), "keep"),
    (dict(local_fraction=0.5), "window"), (dict(group=32), "group"),
    (dict(layer_share=0), "layer_share")])
def test_bad_schemes_say_what_to_pass(kwargs, match):
    with pytest.raises(ValueError, match=match):
        C.KVScheme("bad", **kwargs)


def test_bad_calls_say_what_to_pass():
    with pytest.raises(ValueError, match="unknown scheme"):
        C.scheme_bytes("llama-3.1-8b", 10, "zip")
    with pytest.raises(ValueError, match="density"):
        C.sparse_prefill_flops("llama-3.1-8b", 10, 0)
    with pytest.raises(ValueError, match="speedup"):
        C.density_for_speedup("llama-3.1-8b", 10, 0.5)
    assert math.isfinite(C.scheme_bytes("llama-3.1-8b", 1, "kivi-2bit"))


# --- the torch side: policies and INT-n KV on lclib.tinylm ----------------------------------

torch = pytest.importorskip("torch")
from lclib import tinylm  # noqa: E402
from lclib.tinylm import compress as K  # noqa: E402


@pytest.fixture(scope="module")
def model():
    return tinylm.load().eval()


def _samples(task, n=8, length=128, depth=0.5, seed=0):
    import random
    rng = random.Random(seed)
    return [tinylm.get_task(task)(length, depth, rng) for _ in range(n)]


def test_explicit_forward_is_the_models_forward(model):
    x = torch.randint(0, 256, (2, 40), generator=torch.Generator().manual_seed(0))
    logits, past, _ = K.run(model, x)
    assert torch.allclose(logits, model(x), atol=1e-4)
    head = K.Past([k[:, :, :25] for k in past.keys], [v[:, :, :25] for v in past.values], 25)
    assert torch.allclose(K.run(model, x[:, 25:], head)[0], logits[:, 25:], atol=1e-4)


@pytest.mark.parametrize("task", sorted(tinylm.TASKS))
def test_uncompressed_answers_match_tinylm_scoring(model, task):
    samples = _samples(task)
    ctx, tail, tail_mask = K.split(samples)
    past, _ = K.prefill(model, ctx)
    ours = K.answer_hits(model, past, tail, tail_mask)
    theirs = tinylm.tasks.answer_correct(model, *tinylm.tasks.batch(samples))
    assert torch.equal(ours, theirs)
    tokens, mask = tinylm.tasks.batch(samples)
    assert torch.equal(K.window_attention_hits(model, tokens, mask, window=10_000), theirs)


def test_window_and_sinks_keep_the_positions_they_promise(model):
    ctx, _, _ = K.split(_samples("single_needle"))
    past, probs = K.prefill(model, ctx)
    t = past.kept
    kept = K.select(past, probs, "window", 16)
    assert kept.kept == 16 and kept.length == t
    assert torch.equal(kept.keys[1], past.keys[1][:, :, -16:])
    sinks = K.select(past, probs, "sinks", 16)
    expect = torch.cat([past.values[0][:, :, :K.SINKS], past.values[0][:, :, -(16 - K.SINKS):]], 2)
    assert torch.equal(sinks.values[0], expect)


def _one_hot_attention(t, hot, heads=4):
    """Attention [1, heads, q, t] that puts all of every query's mass on token `hot`."""
    p = torch.zeros(1, heads, t, t)
    p[..., hot] = 1.0
    return p


def test_attention_scored_policies_keep_the_attended_token():
    t, hot = 64, 10
    p = _one_hot_attention(t, hot)
    assert int(K.policy_scores("h2o", p, 2).argmax(-1)[0, 0]) == hot
    snap = K.policy_scores("snapkv", p, 2)[0, 0]
    body = snap[: t - K.OBSERVATION]  # the observation window itself is always kept
    assert bool((snap[t - K.OBSERVATION:] > body.max()).all())
    reach = K.POOL // 2  # pooling keeps the attended token's neighbours with it
    assert bool((body[hot - reach:hot + reach + 1] == body.max()).all())
    assert body[hot + reach + 1] < body.max()
    question = torch.zeros(1, 4, 2, t)
    question[..., 33] = 1.0
    aware = K.policy_scores("snapkv-question", p * 0, 2, question)[0, 1]
    assert aware[33] == aware.max() > aware[33 + reach + 1]
    with pytest.raises(ValueError, match="question_probs"):
        K.policy_scores("snapkv-question", p, 2)
    with pytest.raises(ValueError, match="unknown policy"):
        K.policy_scores("lru", p, 2)


def test_select_rejects_budgets_it_cannot_keep(model):
    ctx, _, _ = K.split(_samples("single_needle", n=1))
    past, probs = K.prefill(model, ctx)
    with pytest.raises(ValueError, match="budget"):
        K.select(past, probs, "window", past.kept + 1)


@given(st.sampled_from([2, 4, 8]), st.sampled_from(["token", "channel"]),
       st.integers(1, 40), st.integers(1, 40), st.sampled_from([4, 16, 32]))
def test_quantization_error_is_at_most_half_a_step_per_group(bits, axis, t, d, group):
    x = torch.randn(1, 2, t, d, generator=torch.Generator().manual_seed(t * 41 + d))
    y = K.quantize(x, bits, axis, group)
    assert y.shape == x.shape
    along = x if axis == "token" else x.transpose(-1, -2)
    n = along.shape[-1]
    worst = 0.0
    for s in range(0, n, group):
        g = along[..., s:s + group]
        step = (g.amax(-1) - g.amin(-1)) / (2**bits - 1)
        worst = max(worst, float(step.max()))
    assert float((x - y).abs().max()) <= worst / 2 + 1e-5


def test_per_channel_groups_tame_an_outlier_channel_that_per_token_groups_do_not():
    # KIVI's observation, constructed: one key channel 50x larger than the rest
    x = torch.randn(1, 1, 64, 32, generator=torch.Generator().manual_seed(0))
    x[..., 5] *= 50
    normal = [c for c in range(32) if c != 5]
    err_token = (x - K.quantize(x, 4, "token", 32))[..., normal].abs().mean()
    err_channel = (x - K.quantize(x, 4, "channel", 32))[..., normal].abs().mean()
    assert err_channel < err_token / 5


def test_sink_mass_of_uniform_attention_is_one():
    t = 50
    p = torch.tril(torch.ones(t, t))
    p = (p / p.sum(-1, keepdim=True)).expand(1, 2, t, t)
    assert K.sink_mass([p], after=8)[0] == pytest.approx([1.0, 1.0])


def test_split_rejects_mixed_tasks():
    with pytest.raises(ValueError, match="one task"):
        K.split(_samples("single_needle", n=1) + _samples("variable_tracking", n=1))


def test_compression_run_records_paired_outcomes(model):
    from lclib.bench import compression as B
    task = B.run_task(model, "single_needle", 64, n_per_depth=1)
    r = {"depths": list(B.DEPTHS), "n_per_depth": 1, "tasks": {"single_needle": task}}
    hits = task["hits"]
    assert {len(h) for h in hits.values()} == {len(B.DEPTHS)}
    assert len(hits) == 1 + 3 * (len(B.TOKEN_POLICIES) + 1) + len(B.QUANT)
    p = B.paired(r, "single_needle", "window@0.125")
    m = stats.mcnemar(B.outcomes(hits["window@0.125"]), B.outcomes(hits["full"]))
    assert (p["only_a"], p["only_b"], p["p_value"]) == (m.only_a, m.only_b, m.p_value)
    assert B.by_depth(r, "single_needle", "full") == [float(c == "1") for c in hits["full"]]


def test_explorer_point_is_the_cost_model():
    from lclib.explorers import compression_explorer, compression_point
    from lclib.explorers.compression import FAMILIES
    p = compression_point(131_072, "llama-3.3-70b", "token: sliding window on every layer", 3, 8)
    assert p["setting"] == "window: 4K"
    assert p["kv_gb"] * 1e9 == pytest.approx(80 * 2 * 8 * 128 * 2 * 4096)
    assert p["users"] == lclib.kv_budget("llama-3.3-70b", "h200", 8) // (p["kv_gb"] * 1e9)
    assert p["kv_gb_full"] * 1e9 == lclib.kv_cache_bytes("llama-3.3-70b", 131_072)
    for family in FAMILIES:  # harsher settings never hold more
        kv = [compression_point(2**20, "llama-3.1-8b", family, lv, 1)["kv_gb"] for lv in (1, 4)]
        assert kv[1] < kv[0]
    assert "window: 4K" in compression_explorer(steps=3).to_html()
    with pytest.raises(ValueError, match="level"):
        compression_point(1024, "llama-3.1-8b", "token: sliding window on every layer", 5, 1)


def test_load_record_prefers_a_cli_jsonl_run_over_the_committed_json(tmp_path):
    import json

    from lclib.bench import compression as B
    (tmp_path / "compression-cpu.json").write_text(json.dumps({"tasks": {}, "seconds": 1}))
    assert B.load_record(tmp_path)["seconds"] == 1
    lines = [{"kind": "header", "provenance": {"device": "cpu"}},
             {"kind": "summary", "tasks": {"single_needle": {}}, "seconds": 2}]
    (tmp_path / "compression-cpu-fp32-20260101T000000000000Z.jsonl").write_text(
        "\n".join(json.dumps(x) for x in lines))
    rec = B.load_record(tmp_path)
    assert rec["seconds"] == 2 and rec["provenance"] == {"device": "cpu"}
    with pytest.raises(FileNotFoundError, match="run python -m lclib.bench"):
        B.load_record(tmp_path / "nowhere")
