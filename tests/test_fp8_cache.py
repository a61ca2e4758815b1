"""The emulated engine KV cache: what it stores, what attention reads back, in a real model."""

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from lclib import fp8, fp8_cache  # noqa: E402

E4M3_MAX, E5M2_MAX = 448.0, 57344.0  # OCP FP8 spec (Micikevicius et al. 2022, arXiv 2209.05433)


def test_fp8_recipes_store_float8_and_read_lclib_fp8_values():
    x = torch.randn(1, 3, 10, 64) * 3
    for recipe, dtype in (("e4m3, scale 1", torch.float8_e4m3fn),
                          ("e5m2, scale 1", torch.float8_e5m2),
                          ("e4m3, per token-head", torch.float8_e4m3fn)):
        stored = fp8_cache.store(x, recipe)
        assert stored.data.dtype == dtype
        fmt, source = fp8_cache.recipe_info(recipe)
        granularity, scale = ("token_head", None) if source == "token_head" else ("tensor", 1.0)
        expect = fp8.quantize(x, fmt, granularity, scale).dequantize()
        assert torch.equal(fp8_cache.read(stored, torch.float32), expect)
    bf16 = fp8_cache.store(x, "bf16")
    assert bf16.dtype == torch.bfloat16
    assert torch.equal(fp8_cache.read(bf16, torch.float32), x.to(torch.bfloat16).float())


def test_scale_one_saturates_above_the_format_max():
    x = torch.tensor([300.0, 448.0, 500.0, -1000.0, 1e6]).reshape(1, 1, 5, 1)
    e4m3 = fp8_cache.read(fp8_cache.store(x, "e4m3, scale 1"), torch.float32).flatten()
    assert e4m3.tolist() == [288.0, 448.0, 448.0, -448.0, 448.0]  # 300 rounds to 288 (step 32)
    e5m2 = fp8_cache.read(fp8_cache.store(x, "e5m2, scale 1"), torch.float32).flatten()
    assert e5m2.tolist() == [320.0, 448.0, 512.0, -1024.0, E5M2_MAX]  # 2 mantissa bits


def test_calculated_scales_come_from_the_prefill_and_stay():
    layer = fp8_cache.EmulatedLayer("e4m3, calculated")
    k, v = torch.randn(1, 3, 16, 8), torch.randn(1, 3, 16, 8)
    k[0, 1, 5, 2] = 40.0
    keys, _ = layer.update(k, v)
    # vLLM's calc_kv_scales: amax / K_SCALE_CONSTANT (200) for K, / 100 for V
    assert layer.scales[0] == pytest.approx(40.0 / 200)
    assert layer.scales[1] == pytest.approx(v.abs().max().item() / 100)
    assert keys[0, 1, 5, 2].item() == pytest.approx(40.0, rel=1 / 16)
    big = torch.full((1, 3, 1, 8), 1000.0)  # later tokens far above the prefill's amax
    keys, _ = layer.update(big, big)
    assert layer.scales[0] == pytest.approx(0.2)  # frozen
    assert keys.shape == (1, 3, 17, 8)
    assert torch.allclose(keys[..., -1, :], torch.tensor(E4M3_MAX * 0.2))  # saturated
    assert layer.stored_keys.data.dtype == torch.float8_e4m3fn
    assert torch.equal(layer.stored_keys.dequantize(), keys)


@settings(max_examples=40, deadline=None)
@given(heads=st.integers(1, 4), tokens=st.integers(1, 12), dim=st.sampled_from([2, 8, 16]),
       scale=st.floats(1e-3, 10.0), fmt=st.sampled_from(["e4m3", "e5m2"]),
       seed=st.integers(0, 2**16))
def test_storage_is_x_over_scale_cast_then_times_scale(heads, tokens, dim, scale, fmt, seed):
    x = torch.randn(1, heads, tokens, dim, generator=torch.Generator().manual_seed(seed)) * 5
    top = {"e4m3": E4M3_MAX, "e5m2": E5M2_MAX}[fmt]
    dtype = {"e4m3": torch.float8_e4m3fn, "e5m2": torch.float8_e5m2}[fmt]
    stored = fp8_cache.store(x, f"{fmt}, scale 1", scale)
    by_hand = (x / scale).clamp(-top, top).to(dtype).float() * scale
    assert torch.allclose(fp8_cache.read(stored, torch.float32), by_hand, rtol=1e-6, atol=0)
    normal = (x / scale).abs() >= fp8.format_info(fmt).min_normal
    err = (by_hand - x).abs()[normal & ((x / scale).abs() <= top)]
    bound = 2.0 ** -(1 + {"e4m3": 3, "e5m2": 2}[fmt])  # half a unit in the last place
    assert (err <= bound * x.abs()[normal & ((x / scale).abs() <= top)] + 1e-7).all()


@pytest.fixture(scope="module")
def tiny_llama():
    config = transformers.LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64,
                                      num_hidden_layers=2, num_attention_heads=4,
                                      num_key_value_heads=2, max_position_embeddings=128)
    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(config).eval()


def test_prefill_attention_reads_the_stored_kv(tiny_llama):
    ids = torch.randint(64, (1, 12), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        plain = tiny_llama(ids).logits
        cache = fp8_cache.emulated_cache(2, "e4m3, scale 1")
        fp8_logits = tiny_llama(ids, past_key_values=cache, use_cache=True).logits
    first = cache.layers[0]
    assert first.stored_keys.data.dtype == torch.float8_e4m3fn
    assert first.keys.shape == (1, 2, 12, 8)
    # the first position attends only to itself, yet its output moved: it read fp8 K/V
    assert not torch.allclose(plain[0, 0], fp8_logits[0, 0])
    # what attention read is exactly the stored fp8 values times the scale
    assert torch.allclose(first.keys, first.stored_keys.dequantize())


def test_generate_with_a_bf16_cache_matches_a_plain_cache(tiny_llama):
    ids = torch.randint(64, (1, 10), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        plain = tiny_llama.generate(ids, max_new_tokens=6, do_sample=False)
        cache = fp8_cache.emulated_cache(2, "bf16")
        bf16 = tiny_llama.generate(ids, past_key_values=cache, max_new_tokens=6,
                                   do_sample=False)
    assert bf16.shape == plain.shape == (1, 16)
    assert cache.get_seq_length() == 15  # the last token is never written
    assert (bf16 == plain).float().mean() >= 0.9  # bf16 rounding may flip a near-tie


def test_bad_input_names_what_to_pass():
    with pytest.raises(ValueError, match="e4m3, scale 1"):
        fp8_cache.emulated_cache(2, "fp8")
    with pytest.raises(ValueError, match="layer count"):
        fp8_cache.emulated_cache(0, "bf16")
    a = fp8.quantize(torch.ones(1, 1, 2, 4), "e4m3", "tensor", 1.0)
    b = fp8.quantize(torch.ones(1, 1, 2, 4), "e4m3", "tensor", 2.0)
    with pytest.raises(ValueError, match="same"):
        fp8.concat(a, b)
    assert fp8.concat(a, a).shape == (1, 1, 4, 4)


def test_kv_error_bounds_and_clipping():
    gen = torch.Generator().manual_seed(3)
    k, v = torch.randn(1, 3, 32, 16, generator=gen), torch.randn(1, 3, 32, 16, generator=gen)
    assert fp8_cache.kv_error(k, v, "bf16")["k_error"] <= 2.0**-9  # bf16: 8 significant bits
    calc = fp8_cache.kv_error(k, v, "e4m3, calculated")
    assert 0 < calc["k_error"] <= 2.0**-4 and 0 < calc["v_error"] <= 2.0**-4
    loud = fp8_cache.kv_error(k * 1000, v, "e4m3, scale 1")  # |K| up to ~3000: clipped at 448
    assert loud["k_error"] > 0.3
    assert fp8_cache.kv_error(k * 1000, v, "e4m3, calculated")["k_error"] <= 2.0**-4
