"""lclib.fp8: formats, scales, saturation, attention over fp8 K/V, the fp8_decode bench."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lclib import fp8, tinylm
from lclib.bench import run_experiment
from lclib.bench.fp8_decode import decode_attention
from lclib.explorers.fp8 import capacity_point, fp8_capacity_explorer
from lclib.tinylm import calibration


def test_format_facts_match_the_fp8_paper():
    # Micikevicius et al. 2022, Table 1
    e4, e5 = fp8.format_info("e4m3"), fp8.format_info("e5m2")
    assert (e4.max, e4.min_normal, e4.min_subnormal, e4.mantissa_bits) == (448, 2**-6, 2**-9, 3)
    assert (e5.max, e5.min_normal, e5.min_subnormal, e5.mantissa_bits) == (57344, 2**-14,
                                                                         2**-16, 2)
    assert (e4.exponent_bits, e5.exponent_bits) == (4, 5)
    assert (e4.rel_error_bound, e5.rel_error_bound) == (1 / 16, 1 / 8)


@settings(max_examples=40, deadline=None)
@given(fmt=st.sampled_from(["e4m3", "e5m2"]),
       values=st.lists(st.floats(1.0, 1.999), min_size=1, max_size=30),
       exponents=st.lists(st.integers(-6, 7), min_size=30, max_size=30),
       negate=st.booleans())
def test_round_trip_error_is_within_the_bound(fmt, values, exponents, negate):
    # values in the normal range of the format, stored with scale 1
    info = fp8.format_info(fmt)
    x = torch.tensor([v * 2.0**e for v, e in zip(values, exponents, strict=False)])
    x = -x if negate else x
    back = fp8.quantize(x, fmt, scale=1.0).dequantize()
    assert ((back - x).abs() / x.abs()).max() <= info.rel_error_bound


@given(st.sampled_from(["e4m3", "e5m2", "int8"]), st.floats(1.5, 1e6))
def test_static_scales_saturate_instead_of_overflowing(fmt, factor):
    top = fp8.grid_max(fmt)
    x = torch.tensor([[[top * factor, -top * factor, 1.0]]])
    back = fp8.quantize(x, fmt, scale=1.0).dequantize()
    assert torch.isfinite(back).all()
    assert back[0, 0, :2].tolist() == [top, -top]


@pytest.mark.parametrize("granularity", fp8.GRANULARITIES)
def test_dynamic_scales_put_each_groups_amax_on_the_largest_value(granularity):
    x = torch.randn(2, 3, 5, 4) * torch.tensor([1.0, 50.0, 1e-3])[None, :, None, None]
    q = fp8.quantize(x, "e4m3", granularity)
    shapes = {"tensor": (1, 1, 1, 1), "head": (1, 3, 1, 1), "token": (2, 1, 5, 1),
              "token_head": (2, 3, 5, 1)}
    assert q.scale.shape == shapes[granularity]
    assert q.data.dtype == torch.float8_e4m3fn
    amax = (q.data.float().abs() * torch.ones_like(x)).amax(
        dim=fp8._reduce_dims(4, granularity))
    assert torch.all(amax == 448)
    assert q.nbytes == x.numel() + 4 * q.scale.numel()


@given(st.floats(30.0, 1e4))
def test_per_head_scales_isolate_an_outlier_head(magnitude):
    x = torch.randn(1, 4, 64, 16, generator=torch.Generator().manual_seed(1)) * 0.01
    x[:, 0] *= magnitude / 0.01  # head 0 is huge; the rest are tiny
    err = {}
    for g in ("tensor", "head"):
        back = fp8.quantize(x, "int8", g).dequantize()
        err[g] = ((back - x)[:, 1:].norm() / x[:, 1:].norm()).item()
    assert err["head"] < 0.02 < err["tensor"]


def test_engine_recipes_on_an_outlier_head():
    """Chapter 5's synthetic cache: calibrated static scales (per tensor or per head) and
    per-token dynamic ones keep every head of a 1,000x outlier cache; scale 1.0 clips the loud
    head; a calibration that never saw the outlier clips it per tensor and per head alike;
    int8 per tensor flushes the normal heads."""
    loud = fp8.outlier_kv(1e3)
    one = fp8.outlier_damage(loud, "e4m3", "static 1.0")
    assert one["err_normal"] < 0.05 < 0.5 < one["err_outlier"]
    for recipe in ("static per-tensor", "static per-head", "dynamic per-token-head"):
        d = fp8.outlier_damage(loud, "e4m3", recipe)
        assert max(d["err_normal"], d["err_outlier"]) < 0.05 and d["retrieval"] == 1.0
    for recipe in ("static per-tensor, missed", "static per-head, missed"):
        assert fp8.outlier_damage(loud, "e4m3", recipe)["err_outlier"] > 0.5
    int8 = fp8.outlier_damage(fp8.outlier_kv(100.0), "int8", "static per-tensor")
    assert int8["err_normal"] > 0.5 and int8["retrieval_normal"] < 0.9


def test_amd_e4m3fnuz_tops_out_at_240():
    # AMD MI300's FP8 (ROCm): no inf, no negative zero, max 240 (torch.finfo, OCP vs AMD formats)
    fnuz = fp8.format_info("e4m3fnuz")
    assert (fnuz.max, fnuz.min_normal, fnuz.mantissa_bits) == (240, 2**-7, 3)
    back = fp8.quantize(torch.tensor([1000.0, 3.3]), "e4m3fnuz", scale=1.0).dequantize()
    assert back.tolist() == [240.0, 3.25]


def test_scale_one_underflows_small_values():
    """Chapter 5: N(0, 0.01^2) stored in e4m3 with scale 1.0 (the engines' default) errs ~5.6%,
    against ~2.6% with an amax scale, because ~88% of the values sit below e4m3's normal range."""
    x = torch.randn(200_000, generator=torch.Generator().manual_seed(0)) * 0.01
    unit, amax = fp8.storage_error(x, "e4m3", scale=1.0), fp8.storage_error(x, "e4m3")
    assert unit["rel_error"] == pytest.approx(0.056, abs=0.002)
    assert amax["rel_error"] == pytest.approx(0.026, abs=0.002)
    assert unit["subnormal"] == pytest.approx(0.88, abs=0.01) and amax["subnormal"] < 0.01
    assert unit["clipped"] == amax["clipped"] == 0
    loud = fp8.storage_error(x * 1e5, "e4m3", scale=1.0)  # std 1000: beyond 448, saturates
    assert loud["clipped"] > 0.5 and loud["rel_error"] > 0.5


@given(st.floats(0.5, 1e3))
def test_int8_rounds_values_below_amax_over_254_to_zero(amax):
    """An amax-scaled int8 grid has step amax/127; rounding sends |x| < amax/254 to zero."""
    x = torch.tensor([amax, amax / 254 * 0.99, amax / 254 * 1.01, amax / 127], dtype=torch.float64)
    back = fp8.quantize(x.float(), "int8").dequantize().double()
    assert back[1] == 0
    assert back[2] == pytest.approx(amax / 127, rel=1e-5)
    assert back[3] == pytest.approx(amax / 127, rel=1e-5)


def test_a_dynamic_per_tensor_scale_would_rewrite_the_cache():
    x = torch.tensor([1.0, 3.0, 2.0, 5.0, 4.0, 5.0, 6.0])[None, None, :, None].expand(1, 2, 7, 3)
    assert fp8.amax_records(x) == [0, 1, 3, 6]
    k = torch.randn(1, 8, 4096, 64, generator=torch.Generator().manual_seed(0))
    records = fp8.amax_records(k)
    assert records[0] == 0 and 3 <= len(records) <= 30  # ~ln(T) records for i.i.d. tokens


def test_attention_over_fp8_kv_matches_sdpa_within_fp8_error():
    g = torch.Generator().manual_seed(0)
    q, k, v = torch.randn(2, 8, 3, 32, generator=g), *torch.randn(2, 2, 2, 50, 32, generator=g)
    ref = torch.nn.functional.scaled_dot_product_attention(q, k, v, enable_gqa=True)
    assert torch.allclose(fp8.attention(q, k, v, block=7), ref, atol=1e-5)
    mask = torch.ones(3, 50, dtype=torch.bool).tril(47)
    causal = torch.nn.functional.scaled_dot_product_attention(q, k, v, mask, enable_gqa=True)
    assert torch.allclose(fp8.attention(q, k, v, causal=True, block=16), causal, atol=1e-5)
    qk, qv = fp8.quantize(k, granularity="token"), fp8.quantize(v, granularity="token")
    out = fp8.attention(q, qk, qv, block=16)
    assert 0 < ((out - ref).norm() / ref.norm()).item() < 0.1
    assert torch.allclose(fp8.attention(q[:, :, :1], qk, qv), out[:, :, :1], atol=1e-6)


def test_decode_attention_folds_per_head_scales():
    g = torch.Generator().manual_seed(2)
    q, k, v = torch.randn(1, 8, 1, 16, generator=g), *torch.randn(2, 1, 2, 40, 16, generator=g)
    qk, qv = fp8.quantize(k, granularity="head"), fp8.quantize(v, granularity="head")
    folded = decode_attention(q, qk.data, qv.data, qk.scale, qv.scale)
    assert torch.allclose(folded, fp8.attention(q, qk, qv), atol=1e-5)


def test_bad_input_is_refused_with_a_hint():
    x = torch.randn(2, 3, 4)
    for kwargs, hint in [({"fmt": "e3m4"}, "e4m3"), ({"granularity": "row"}, "token_head"),
                         ({"scale": -1.0}, "positive"), ({"scale": torch.ones(5)}, "amax_scale")]:
        with pytest.raises(ValueError, match=hint):
            fp8.quantize(x, **kwargs)
    with pytest.raises(ValueError, match="tensor"):
        fp8.quantize(torch.randn(4, 4), granularity="head")
    with pytest.raises(ValueError, match="finite"):
        fp8.quantize(torch.tensor([1.0, math.inf]))
    with pytest.raises(ValueError, match="floating"):
        fp8.quantize(torch.arange(4))
    with pytest.raises(ValueError, match="e5m2"):
        fp8.format_info("int8")
    with pytest.raises(ValueError, match="divides"):
        fp8.attention(torch.randn(1, 3, 1, 4), torch.randn(1, 2, 5, 4), torch.randn(1, 2, 5, 4))
    with pytest.raises(ValueError, match=">= 1"):
        fp8.outlier_kv(0.5)
    with pytest.raises(ValueError, match="recipe"):
        fp8.outlier_damage(fp8.outlier_kv(), recipe="magic")


def test_fp8_decode_bench_runs_tiny_on_cpu(tmp_path):
    # the timed run is in tests/test_bench.py::test_device_run_dry_run (it compiles)
    with pytest.raises(ValueError, match="bf16"):
        run_experiment("fp8_decode", "cpu", [64], "int3", out=None)


@given(st.sampled_from([2**10, 2**17, 2**20]), st.sampled_from(["llama-3.3-70b", "yi-34b"]))
def test_capacity_explorer_halves_the_kv(seq_len, model):
    p = capacity_point(seq_len, model, "h100-sxm", 8)
    assert p["kv_gb_fp8"] * 2 == pytest.approx(p["kv_gb_bf16"])
    assert p["users_fp8"] >= 2 * p["users_bf16"]
    assert p["tpot_fp8"] < p["tpot_bf16"] and p["gpus_fp8"] <= p["gpus_bf16"]
    assert len(fp8_capacity_explorer(steps=3).to_html()) > 1000


@pytest.mark.slow
def test_checkpoint_with_an_outlier_head_needs_calibrated_scales():
    """Chapter 5 on the committed checkpoint, a 10^4x outlier on each KV head in turn: the
    engines' default scale 1.0 clips it and loses the needle where the model needs that head;
    static scales calibrated on the served model from 16-token prompts (per tensor or per
    head), and dynamic per-token scales, keep it at the training length."""
    model = tinylm.load()
    n = model.config.max_position_embeddings

    def accuracy(served: tinylm.TinyLM, kv_dtype: str) -> float:
        return tinylm.evaluate(tinylm.CachedKV(served, kv_dtype), lengths=(n,),
                               depths=(0.1, 0.9), n_samples=6).accuracy.mean()

    placements = [tinylm.with_outlier_head(model, 1e4, kv_head=h)
                  for h in range(model.config.n_kv_heads)]
    assert min(accuracy(served, calibration.SCALE1) for served in placements) < 0.5
    for served in placements:
        for granularity in ("tensor", "head"):
            scales = calibration.static_scales(served, 16, granularity=granularity)
            assert accuracy(calibration.with_kv_scales(served, scales), calibration.SCALE1) > 0.9
        assert accuracy(served, "e4m3-token_head") > 0.9


def test_folding_static_scales_keeps_the_function_and_fills_the_format():
    model = tinylm.TinyLM(tinylm.CONFIG).eval()
    scales = calibration.static_scales(model, 32)
    folded = calibration.with_kv_scales(model, scales)
    tokens = torch.randint(0, tinylm.CONFIG.vocab_size, (2, 32),
                           generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(folded(tokens), model(tokens), atol=1e-4)
    k, v = calibration.kv_tensors(folded, 32)[0]  # the calibration prompts themselves
    assert k.abs().max().item() == pytest.approx(448, rel=1e-4)
    assert v.abs().max().item() == pytest.approx(448, rel=1e-4)
    with pytest.raises(ValueError, match="per layer"):
        calibration.with_kv_scales(model, scales[:1])
    with pytest.raises(ValueError, match="per tensor or per KV head"):
        calibration.static_scales(model, 32, granularity="token")


def test_recipe_precisions_say_what_they_rest_on():
    """lclib.recipe ranks (weights, KV) precisions by claims this course did not reproduce:
    each step names its evidence, and none but the reference passes as measured."""
    from lclib import recipe
    assert set(recipe.PRECISION_EVIDENCE) == set(recipe.PRECISIONS)
    for pair in recipe.PRECISIONS[1:]:
        assert recipe.PRECISION_EVIDENCE[pair].startswith("claim:")


def test_outlier_explorer_puts_magnitude_on_a_log_axis(monkeypatch):
    """1x to 10^4x on a linear axis piled its labels up; the slider is logarithmic, one decade
    per step, over the magnitudes the chapter's heatmap uses."""
    from lclib.explorers import fp8 as ex
    monkeypatch.setattr(ex, "damage_point", lambda magnitude, fmt, recipe: dict.fromkeys(
        ("err_normal", "err_outlier", "retrieval_normal", "retrieval_outlier"), 0.5))
    slider = ex.outlier_explorer().controls[0]
    assert slider.log and tuple(slider.values) == ex.MAGNITUDES == (1, 10, 100, 1_000, 10_000)
