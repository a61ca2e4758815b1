"""lclib.fp8: formats, scales, saturation, attention over fp8 K/V, the fp8_decode bench."""

import math
import random

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lclib import fp8, tinylm
from lclib.bench import run_experiment
from lclib.bench.fp8_decode import decode_attention
from lclib.explorers.fp8 import capacity_point, fp8_capacity_explorer


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


def test_float_keeps_small_heads_where_uniform_grids_and_clipping_do_not():
    kv = fp8.outlier_kv(100.0)
    e4m3 = fp8.outlier_damage(kv, "e4m3", "dynamic per-tensor")
    int8 = fp8.outlier_damage(kv, "int8", "dynamic per-tensor")
    static = fp8.outlier_damage(kv, "e4m3", "static per-tensor")
    assert e4m3["err_normal"] < 0.05 and e4m3["retrieval"] == 1.0
    assert int8["err_normal"] > 0.5 and int8["retrieval_normal"] < 0.9
    assert static["err_normal"] < 0.05 < 0.5 < static["err_outlier"]  # the clipped head


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
    record = run_experiment("fp8_decode", "cpu", [256, 512], "bf16", tmp_path)
    rows = record["rows"]
    assert [r["seq_len"] for r in rows] == [256, 512]
    assert all(r["t_base"] > 0 and r["t_fp8"] > 0 and r["rel_error_fp8"] < 0.1 for r in rows)
    assert rows[0]["bytes_fp8"] == rows[0]["bytes_base"] // 2 + 2 * 2 * 4  # + per-head scales
    assert (tmp_path / "fp8_decode-cpu.json").is_file()
    with pytest.raises(ValueError, match="bf16"):
        run_experiment("fp8_decode", "cpu", [64], "int3", out=None)


@given(st.sampled_from([2**10, 2**17, 2**20]), st.sampled_from(["llama-3.3-70b", "yi-34b"]))
def test_capacity_explorer_halves_the_kv(seq_len, model):
    p = capacity_point(seq_len, model, "h100-sxm", 8)
    assert p["kv_gb_fp8"] * 2 == pytest.approx(p["kv_gb_bf16"])
    assert p["users_fp8"] >= 2 * p["users_bf16"]
    assert p["tpot_fp8"] < p["tpot_bf16"] and p["gpus_fp8"] <= p["gpus_bf16"]
    assert len(fp8_capacity_explorer(steps=3).to_html()) > 1000


def test_checkpoint_survives_dynamic_fp8_outliers_but_not_clipping_or_int8():
    """Chapter 5's claim on the committed checkpoint, for a 10^4x outlier on each KV head."""
    model = tinylm.load()
    n = model.config.max_position_embeddings
    calibration = tinylm.get_task("single_needle")(n, 0.5, random.Random(0)).tokens[None]
    _, cal = model.prefill(calibration)
    static = fp8.amax_scale(torch.cat([c for side in (cal.keys, cal.values) for layer in side
                                       for c in layer]), "e4m3")
    tinylm.register_kv_codec("e4m3-static-test", tinylm.kv_codec("e4m3", "tensor", scale=static))

    def accuracy(kv_head: int, kv_dtype: str) -> float:
        skewed = tinylm.with_outlier_head(model, 1e4, kv_head=kv_head)
        return tinylm.evaluate(tinylm.CachedKV(skewed, kv_dtype), lengths=(n,),
                               depths=(0.1, 0.5, 0.9), n_samples=8).accuracy.mean()

    heads = range(model.config.n_kv_heads)
    assert min(accuracy(h, kv) for h in heads for kv in ("e4m3-tensor", "e4m3-head")) > 0.9
    assert min(accuracy(h, "e4m3-static-test") for h in heads) < 0.5
    assert min(accuracy(h, "int8-tensor") for h in heads) < 0.5
