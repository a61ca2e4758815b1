"""lclib.rope against Hugging Face transformers' RoPE initialisation (a test-only dependency)."""

from __future__ import annotations

import copy
import json
import math
from functools import partial
from pathlib import Path

import pytest
import sympy as sp
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lclib
from lclib import rope

transformers = pytest.importorskip("transformers")
from transformers import LlamaConfig  # noqa: E402
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS  # noqa: E402
from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding  # noqa: E402

transformers.logging.set_verbosity_error()
REFERENCE = Path(__file__).resolve().parents[1] / "solutions" / "ch06" / "yarn_reference.json"


def hf_inv_freq(head_dim: int, theta: float, scaling: dict | None, max_pos: int,
                seq_len: int | None = None) -> tuple[torch.Tensor, float]:
    """transformers' (inv_freq, attention_factor) for a Llama config with this RoPE."""
    cfg = LlamaConfig(hidden_size=4 * head_dim, num_attention_heads=4, head_dim=head_dim,
                      max_position_embeddings=max_pos, rope_theta=theta,
                      rope_scaling=copy.deepcopy(scaling))
    kind = cfg.rope_parameters["rope_type"]
    if kind == "default":
        return LlamaRotaryEmbedding.compute_default_rope_parameters(cfg)
    return ROPE_INIT_FUNCTIONS[kind](cfg, "cpu", seq_len=seq_len)


def assert_same(ours: tuple[torch.Tensor, float], theirs: tuple[torch.Tensor, float]) -> None:
    torch.testing.assert_close(ours[0], theirs[0], rtol=1e-6, atol=0)
    assert ours[0].dtype == theirs[0].dtype == torch.float32
    assert math.isclose(ours[1], theirs[1], rel_tol=1e-12)


def maybe(strategy: st.SearchStrategy) -> st.SearchStrategy:
    return st.one_of(st.none(), strategy)


@st.composite
def configs(draw: st.DrawFn) -> tuple[int, float, dict | None, int, int | None]:
    """A random valid (head_dim, theta, rope_scaling, max_pos, seq_len) of any supported type."""
    head_dim = draw(st.sampled_from([8, 16, 32, 64, 80, 96, 128, 256]))
    theta = draw(st.floats(100.0, 1e7))
    original = draw(st.integers(64, 2**17))
    max_pos = original * draw(st.integers(1, 16))
    kind = draw(st.sampled_from(["default", "linear", "dynamic", "yarn", "llama3"]))
    factor = draw(st.floats(1.0, 64.0))
    params: dict = {"factor": factor}
    if kind == "default":
        params = {}
    elif kind == "yarn":
        slow = draw(st.floats(0.25, 4.0))
        extra = {"original_max_position_embeddings": original,
                 "beta_slow": slow, "beta_fast": slow + draw(st.floats(0.5, 64.0)),
                 "mscale": draw(st.floats(0.5, 2.0)), "mscale_all_dim": draw(st.floats(0.5, 2.0)),
                 "attention_factor": draw(st.floats(0.5, 2.0)), "truncate": draw(st.booleans())}
        params |= {k: v for k, v in extra.items() if draw(st.booleans())}
    elif kind == "llama3":
        low = draw(st.floats(0.5, 4.0))
        params |= {"original_max_position_embeddings": original, "low_freq_factor": low,
                   "high_freq_factor": low + draw(st.floats(0.5, 8.0))}
    key = draw(st.sampled_from(["rope_type", "type"]))
    scaling = None if kind == "default" and draw(st.booleans()) else {key: kind, **params}
    return head_dim, theta, scaling, max_pos, draw(maybe(st.integers(1, 20 * max_pos)))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configs())
def test_matches_transformers_on_random_configs(cfg):
    head_dim, theta, scaling, max_pos, seq_len = cfg
    assert_same(rope.inv_freq(head_dim, theta, scaling, max_pos, seq_len),
                hf_inv_freq(head_dim, theta, scaling, max_pos, seq_len))


def stock_matches_transformers(name):
    """Our inv_freq for a stock model's config, after checking it against transformers'."""
    m = lclib.get_model(name)
    args = (m.head_dim, m.rope_theta, m.rope_scaling, m.max_position_embeddings)
    ours = rope.inv_freq(*args)
    assert_same(ours, hf_inv_freq(*args))
    return ours


def test_qwen25_72b_yarn_factor_4():
    ours = stock_matches_transformers("qwen2.5-72b")
    assert round(ours[1], 4) == 1.1386  # YaRN (arXiv 2309.00071): 1 + 0.1 ln 4
    assert ours[1] == pytest.approx(1 + 0.1 * math.log(4), rel=1e-15)


def test_llama33_70b_llama3_scaling():
    stock_matches_transformers("llama-3.3-70b")
    llama = lclib.get_model("llama-3.3-70b")
    rows = rope.per_dimension(llama.head_dim, llama.rope_theta, llama.rope_scaling)
    for wave, ratio in zip(rows["wavelength"], rows["ratio"], strict=True):
        if wave < 8192 / 4:  # shorter than original / high_freq_factor: kept
            assert ratio == pytest.approx(1, rel=1e-6)
        elif wave > 8192:  # longer than original / low_freq_factor: divided by 8
            assert ratio == pytest.approx(1 / 8, rel=1e-6)
        else:
            assert 1 / 8 < ratio < 1


@settings(max_examples=60, deadline=None)
@given(st.sampled_from([32, 64, 128]), st.floats(1e3, 1e7), st.integers(256, 2**17),
       st.floats(0.5, 4), st.floats(1, 64))
def test_correction_dims_are_where_the_turn_count_crosses_beta(d, theta, length, slow, gap):
    fast = slow + gap
    for beta in (fast, slow):  # the pair at the correction dim turns exactly beta times
        i = rope.correction_dim(beta, d, theta, length)
        assert length / (2 * math.pi * theta ** (2 * i / d)) == pytest.approx(beta, rel=1e-9)
    low, high = rope.correction_range(d, theta, length, fast, slow)
    waves = rope.wavelengths(d, theta)
    assert all(length / waves[i] > fast for i in range(min(int(low), d // 2)))
    assert all(length / waves[i] < slow for i in range(int(high) + 1, d // 2))


def test_per_dimension_treatment_of_qwen():
    qwen = lclib.get_model("qwen2.5-72b")
    rows = rope.per_dimension(qwen.head_dim, qwen.rope_theta, qwen.rope_scaling)
    low, high = rope.correction_range(qwen.head_dim, qwen.rope_theta, 32768)
    expected = ["extrapolated" if i <= low else "interpolated" if i >= high else "ramp"
                for i in range(qwen.head_dim // 2)]
    assert rows["treatment"] == expected
    assert rows["turns"][0] == pytest.approx(32768 / (2 * math.pi))


def test_yarn_ramp_against_stored_transformers_outputs():
    """The exercise's hidden tests use this JSON (made from transformers); it must agree."""
    cases = json.loads(REFERENCE.read_text())
    assert len(cases) >= 5
    for case in cases:
        ramp = rope.yarn_ramp(case["low"], case["high"], case["n_pairs"]).tolist()
        assert ramp == pytest.approx(case["ramp"], abs=1e-6)
        low, high = rope.correction_range(case["head_dim"], case["rope_theta"],
                                          case["original"], case["beta_fast"], case["beta_slow"])
        assert (low, high) == (case["low"], case["high"])
        scaling = {"rope_type": "yarn", "factor": case["factor"],
                   "original_max_position_embeddings": case["original"],
                   "beta_fast": case["beta_fast"], "beta_slow": case["beta_slow"]}
        hf = hf_inv_freq(case["head_dim"], case["rope_theta"], scaling, case["original"])[0]
        assert hf.tolist() == pytest.approx(case["inv_freq"], rel=1e-6)


def test_transformers_451_pitfall_applies_no_scaling():
    qwen = lclib.get_model("qwen2.5-72b")
    legacy = rope.transformers_451_scaling(qwen.rope_scaling, qwen.max_position_embeddings)
    assert legacy["factor"] == 1.0
    args = (qwen.head_dim, qwen.rope_theta)
    got, attention = rope.inv_freq(*args, legacy)
    assert torch.equal(got, rope.inv_freq(*args)[0]) and attention == 1.0
    check = rope.check_runtime(got, *args, qwen.rope_scaling, qwen.max_position_embeddings)
    assert not check.matches and check.applied_factor == pytest.approx(1)
    assert check.expected_factor == pytest.approx(4, rel=1e-6)
    assert "DOES NOT" in str(check)
    fixed = {**qwen.rope_scaling}
    assert rope.transformers_451_scaling(fixed, 131072)["factor"] == 4.0
    good = rope.check_runtime(rope.inv_freq(*args, qwen.rope_scaling)[0], *args,
                              qwen.rope_scaling)
    assert good.matches and good.max_rel_error == 0


def test_rope_depends_only_on_relative_position():
    proof = rope.derive_relative_position()
    assert proof["difference"] == 0
    m, n, delta = sp.symbols("m n delta", real=True)
    offset_only = sp.expand(proof["relative"].subs(m, n + delta))
    assert {m, n} & offset_only.free_symbols == set() and delta in offset_only.free_symbols
    # and numerically, with torch tensors through TinyLM's rotation
    from lclib.rope import rotate
    inv, _ = rope.inv_freq(8, 10_000.0)
    q, k = torch.randn(8, dtype=torch.float64), torch.randn(8, dtype=torch.float64)

    def score(i: int, j: int) -> float:
        def at(x: torch.Tensor, p: int) -> torch.Tensor:
            ang = torch.cat([p * inv.double()] * 2)
            return rotate(x, ang.cos(), ang.sin())
        return float(at(q, i) @ at(k, j))
    assert score(7, 3) == pytest.approx(score(104, 100), rel=1e-9)
    assert score(7, 3) != pytest.approx(score(7, 4), rel=1e-3)


@pytest.mark.parametrize(("scaling", "kwargs", "match"), [
    ({"rope_type": "ntk"}, {}, "unknown rope_type"),
    ({"rope_type": "linear", "type": "yarn", "factor": 2}, {}, "two types"),
    ({"rope_type": "linear"}, {}, "factor"),
    ({"rope_type": "linear", "factor": 0.5}, {}, ">= 1"),
    ({"rope_type": "linear", "factor": 2, "beta_fast": 4}, {}, "does not take"),
    ({"rope_type": "dynamic", "factor": 2}, {}, "max_position_embeddings"),
    ({"rope_type": "yarn", "factor": 4}, {}, "original_max_position_embeddings"),
    ({"rope_type": "yarn", "factor": 4, "original_max_position_embeddings": 4096,
      "beta_fast": 1, "beta_slow": 2}, {}, "beta_slow < beta_fast"),
    ({"rope_type": "yarn", "factor": 4, "original_max_position_embeddings": 4096,
      "truncate": "yes"}, {}, "True or False"),
    ({"rope_type": "llama3", "factor": 8, "original_max_position_embeddings": 8192,
      "low_freq_factor": 4, "high_freq_factor": 1}, {}, "low_freq_factor <"),
    ({"rope_type": "linear", "factor": 2, "rope_theta": 5.0}, {}, "disagrees"),
    ("yarn", {}, "must be a dict"),
    (None, {"head_dim": 7}, "even"),
    (None, {"rope_theta": 1.0}, "> 1"),
])
def test_bad_configs_raise_value_error(scaling, kwargs, match):
    args = {"head_dim": 64, "rope_theta": 10_000.0} | kwargs
    with pytest.raises(ValueError, match=match):
        rope.inv_freq(args["head_dim"], args["rope_theta"], scaling)


def test_tinylm_takes_scaled_rope_through_its_hook():
    from lclib.tinylm import CONFIG, TinyLM
    model = TinyLM(CONFIG)
    scaling = {"rope_type": "yarn", "factor": 4.0,
               "original_max_position_embeddings": CONFIG.max_position_embeddings}
    model.set_rope(rope.inv_freq, scaling)
    expected, attention = rope.inv_freq(CONFIG.head_dim, CONFIG.rope_theta, scaling)
    assert torch.equal(model.inv_freq, expected) and model.attention_factor == attention > 1
    model.set_rope(partial(rope.inv_freq, seq_len=4 * CONFIG.max_position_embeddings),
                   {"rope_type": "dynamic", "factor": 4.0})
    assert model.inv_freq[-1] < rope.inv_freq(CONFIG.head_dim, CONFIG.rope_theta)[0][-1]


def test_rope_experiment_runs_tiny_on_cpu():
    from lclib.bench import run_experiment
    from lclib.bench.rope import METHODS, STATIC, scaling_for
    n = lclib.tinylm.CONFIG.max_position_embeddings
    run = run_experiment("rope", device="cpu", sizes=[2 * n, n], out=None)
    rows = {(r["method"], r["length"]): r for r in run["rows"]}
    assert len(rows) == len(METHODS) * 2 and run["inputs"]["lengths"] == [n, 2 * n]
    adaptive = [m for m in METHODS if m not in STATIC]
    at_1x = {(rows[m, n]["accuracy"], rows[m, n]["loss"]) for m in adaptive}
    assert len(at_1x) == 1  # every adaptive method is plain RoPE at the training length
    for m in STATIC:  # a static factor applies at every length, the training length included
        assert rows[m, n]["loss"] != rows["none", n]["loss"]
    assert rows["yarn_x8", n]["attention_factor"] == pytest.approx(1 + 0.1 * math.log(8))
    assert rows["yarn", 2 * n]["attention_factor"] == pytest.approx(1 + 0.1 * math.log(2))
    assert rows["pi", 2 * n]["attention_factor"] == 1.0
    assert all(0 <= r["accuracy"] <= 1 and r["loss"] > 0 for r in rows.values())
    with pytest.raises(ValueError, match="pass one of"):
        scaling_for("rope-magic", 2.0, n)


def test_explorer_covers_every_slider_end():
    from lclib.explorers import rope as ex
    html = ex.rope_explorer().to_html()
    assert "YaRN attention factor" in html
    for factor in (ex.FACTORS[0], ex.FACTORS[-1]):
        for original in (ex.ORIGINALS[0], ex.ORIGINALS[-1]):
            for pair in (0, ex.HEAD_DIM // 2 - 1):
                p = ex.rope_point(pair, factor, ex.BETA_FAST[0], ex.BETA_SLOW[-1], original)
                assert 1 / factor - 1e-6 <= p["yarn"] <= 1 + 1e-6
                assert p["attention"] == pytest.approx(1 + 0.1 * math.log(factor))
    slowest = ex.rope_point(ex.HEAD_DIM // 2 - 1, 4.0, 32.0, 1.0, 32768)
    assert slowest["ntk"] == pytest.approx(1 / 4, rel=1e-9)  # NTK-aware: slowest pair ÷ s


def test_exercise_master_embeds_the_stored_transformers_numbers():
    import ast

    import nbformat
    master = nbformat.read(REFERENCE.with_name("ch06.ipynb"), as_version=4)
    source = next(c.source for c in master.cells if "def test_q3_transformers" in c.source)
    literal = source.split("cases = ", 1)[1].split("\n    for c in cases", 1)[0]
    embedded = ast.literal_eval(literal)
    stored = json.loads(REFERENCE.read_text())[1:]
    assert len(embedded) == len(stored) >= 4
    for e, s in zip(embedded, stored, strict=True):
        assert e["inv_freq"] == pytest.approx(s["inv_freq"], rel=1e-8)


@pytest.mark.slow
def test_the_checkpoint_needs_scaling_past_its_training_length():
    """Chapter 6's story, on the committed checkpoint: plain RoPE fails at 4x, YaRN holds."""
    from lclib.bench.rope import extrapolation
    model = lclib.tinylm.load()
    n = model.config.max_position_embeddings
    rows = {(r["method"], r["multiple"]): r["accuracy"]
            for r in extrapolation(model, [n, 2 * n, 4 * n], 4,
                                   methods=("none", "yarn", "yarn_x8", "pi_x8"))}
    assert rows["none", 4] < 0.5
    assert rows["yarn", 4] > 0.9
    # chapter 6's static configurations: YaRN x8 holds at 1x and 2x, PI x8 breaks at 1x
    assert min(rows["yarn_x8", 1], rows["yarn_x8", 2], rows["yarn_x8", 4]) > 0.9
    assert rows["pi_x8", 1] < 0.5


def test_yarn_keeps_one_tinylm_pair_and_24_of_qwens():
    """Chapter 6: TinyLM (d 32, base 1e4, 256 tokens) keeps pair 0 only, blends 1-6 and divides
    9; Qwen2.5-72B (d 128, base 1e6, 32K) keeps 24 of its 64 pairs."""
    from lclib.tinylm import CONFIG
    n = CONFIG.max_position_embeddings
    tiny = rope.per_dimension(CONFIG.head_dim, CONFIG.rope_theta, {
        "rope_type": "yarn", "factor": 8.0, "original_max_position_embeddings": n})["treatment"]
    assert tiny == ["extrapolated"] + ["ramp"] * 6 + ["interpolated"] * 9
    qwen = lclib.get_model("qwen2.5-72b")
    q = rope.per_dimension(qwen.head_dim, qwen.rope_theta, qwen.rope_scaling)["treatment"]
    assert q.count("extrapolated") == 24 and q[:24] == ["extrapolated"] * 24


@settings(max_examples=30, deadline=None)
@given(st.sampled_from([32, 64, 128]), st.integers(0, 10_000), st.floats(1.0, 32.0))
def test_rotation_keeps_norms_and_only_yarns_factor_scales_k(head_dim, position, factor):
    """The Hopper lecture's "rescaled RoPE values have a wider numeric range": every RoPE
    variant preserves a key's norm; YaRN's attention factor (1.1386 at s = 4) scales it."""
    k = torch.randn(1, 1, 1, head_dim, dtype=torch.float64)
    scaling = {"rope_type": "yarn", "factor": factor, "original_max_position_embeddings": 4096}
    for inv, att in (rope.inv_freq(head_dim, 1e6), rope.inv_freq(head_dim, 1e6, scaling)):
        angles = torch.cat([position * inv.double()] * 2)
        out = rope.rotate(k, att * angles.cos(), att * angles.sin())
        assert out.norm().item() == pytest.approx(att * k.norm().item(), rel=1e-9)
    assert rope.inv_freq(128, 1e6, {**scaling, "factor": 4.0})[1] == pytest.approx(1.1386,
                                                                                 abs=5e-5)


def test_stale_keys_are_off_by_position_times_the_frequency_change():
    args = (32, 1e4, 256)
    angle = rope.stale_key_angle(*args, key_position=200, written_at=256, read_at=1024)
    old = rope.inv_freq(*args[:2], {"rope_type": "dynamic", "factor": 1.0}, 256, 256)[0]
    new = rope.inv_freq(*args[:2], {"rope_type": "dynamic", "factor": 1.0}, 256, 1024)[0]
    assert torch.allclose(angle, 200 * (new.double() - old.double()))
    assert angle[0] == 0 and (angle[1:] < 0).all()  # pair 0 never moves; the rest lag
    assert (rope.stale_key_angle(*args, 200, 1024, 1024) == 0).all()  # same base: no error
    with pytest.raises(ValueError, match="cached"):
        rope.stale_key_angle(*args, 300, 256, 1024)


def test_chunked_dynamic_ntk_matches_one_pass_only_while_the_base_holds():
    from lclib.bench.rope import apply, hidden_in_chunks
    from lclib.tinylm import CONFIG, TinyLM
    torch.manual_seed(0)
    model, n = TinyLM(CONFIG).eval(), CONFIG.max_position_embeddings
    tokens = torch.randint(0, CONFIG.vocab_size, (1, 2 * n))
    with torch.no_grad():
        plain = model.hidden(tokens)
        assert torch.allclose(hidden_in_chunks(model, tokens, n // 2), plain, atol=1e-4)
        one_pass = apply(model, "ntk", 2 * n).hidden(tokens)
        chunked = hidden_in_chunks(model, tokens, n)
        # the first chunk (within the trained length) was written with the plain base
        assert torch.allclose(chunked[:, :n], plain[:, :n], atol=1e-4)
        assert not torch.allclose(chunked[:, n:], one_pass[:, n:], atol=1e-3)
        assert torch.allclose(hidden_in_chunks(model, tokens, 2 * n), one_pass, atol=1e-4)


@pytest.mark.slow
def test_vllm_dynamic_ntk_is_one_table_for_every_length():
    """The course module's "vLLM supports Dynamic NTK automatically": vLLM's dynamic NTK builds
    one cos/sin table at load time, with the base for the longest served length, so a short
    prompt gets the enlarged base too (no per-length recomputation)."""
    dynamic = pytest.importorskip(
        "vllm.model_executor.layers.rotary_embedding.dynamic_ntk_scaling_rope")
    from vllm.config import VllmConfig, set_current_vllm_config
    served, trained, d = 1024, 256, 32
    with set_current_vllm_config(VllmConfig()):
        emb = dynamic.DynamicNTKScalingRotaryEmbedding(d, d, served, trained, 1e4, True, 1.0,
                                                       torch.float32)
    expected = rope.inv_freq(d, 1e4, {"rope_type": "dynamic", "factor": 1.0}, trained, served)[0]
    cos = emb.cos_sin_cache[:, : d // 2].float()
    positions = torch.arange(cos.shape[0], dtype=torch.float32)[:, None]
    assert cos.shape[0] == served
    assert torch.allclose(cos[:16], (positions[:16] * expected).cos(), atol=1e-5)  # short prompt
    plain = rope.inv_freq(d, 1e4)[0]
    assert not torch.allclose(cos[1:16], (positions[1:16] * plain).cos(), atol=1e-3)


@pytest.mark.parametrize("scaling", [None, {"rope_type": "dynamic", "factor": 2.0}])
def test_transformers_dynamic_ntk_leaves_cached_keys_on_the_old_base(scaling):
    """Chapter 6: with transformers' dynamic RoPE, keys cached before the sequence passed the
    trained length keep the old rotation; a one-pass forward writes them with the new base.
    Without scaling, the cache is exact."""
    from transformers import LlamaForCausalLM
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=64, hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32,
                      rope_scaling=copy.deepcopy(scaling))
    model = LlamaForCausalLM(cfg).eval()
    ids = torch.randint(0, 64, (1, 96), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        one_pass = model(ids, use_cache=True).past_key_values.layers[0].keys
        first = model(ids[:, :16], use_cache=True).past_key_values
        cached = model(ids[:, 16:], past_key_values=first, use_cache=True
                       ).past_key_values.layers[0].keys
    old, new = (((one_pass - cached)[..., part, :].norm() / one_pass[..., part, :].norm()).item()
                for part in (slice(0, 16), slice(16, 96)))
    assert new == pytest.approx(0, abs=1e-6)  # keys written after the growth use the new base
    assert (old > 0.05) if scaling else old == pytest.approx(0, abs=1e-6)
