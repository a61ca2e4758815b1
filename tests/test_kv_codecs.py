"""lclib.tinylm.kv_codecs: FP8/int8 caches built on demand; the outlier-head surgery."""

import subprocess
import sys

import pytest
import torch

from lclib import tinylm
from lclib.tinylm.kv_codecs import CachedKV, get_kv_codec, with_outlier_head


def test_tinylm_codecs_store_fp8_and_outlier_heads_preserve_the_function():
    model = tinylm.TinyLM(tinylm.CONFIG).eval()
    tokens = torch.randint(0, tinylm.CONFIG.vocab_size, (2, 40), generator=torch.Generator()
                           .manual_seed(0))
    _, cache = model.prefill(tokens, kv_dtype="e4m3-head")
    assert cache.keys[0][0].data.dtype == torch.float8_e4m3fn
    assert cache.nbytes * 4 == model.prefill(tokens)[1].nbytes  # fp8 payload = fp32 / 4
    skewed = with_outlier_head(model, 1e3)
    with torch.no_grad():
        assert torch.allclose(skewed(tokens), model(tokens), atol=1e-3)
        k_plain = model.prefill(tokens)[1].keys[0][0]
        k_skew = skewed.prefill(tokens)[1].keys[0][0]
    assert torch.allclose(k_skew[:, 0], 1e3 * k_plain[:, 0], rtol=1e-4, atol=1e-3)
    assert torch.equal(k_skew[:, 1], k_plain[:, 1])
    acc = tinylm.evaluate(CachedKV(model, "fp32"), lengths=(32,), depths=(0.5,), n_samples=4)
    assert acc.accuracy.shape == (1, 1)
    with pytest.raises(ValueError, match="kv_dtype"):
        CachedKV(model, "e4m3-row")
    with pytest.raises(ValueError, match="kv_head"):
        with_outlier_head(model, 10.0, kv_head=5)


def test_quantized_codecs_need_no_prior_import_of_fp8():
    """A fresh interpreter asks TinyLM for "e4m3-head" without importing lclib.fp8 itself."""
    code = ("import torch; from lclib import tinylm; m = tinylm.TinyLM(tinylm.CONFIG); "
            "assert 'e4m3-head' not in tinylm.KV_CODECS; "
            "_, c = m.prefill(torch.zeros(1, 8, dtype=torch.long), kv_dtype='e4m3-head'); "
            "print(c.keys[0][0].data.dtype)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "torch.float8_e4m3fn"


@pytest.mark.parametrize("name", ["e4m3-row", "fp8", "e4m3", "int4-head"])
def test_unknown_codec_names_list_the_choices(name):
    with pytest.raises(ValueError, match="e5m2-token_head"):
        get_kv_codec(name)
