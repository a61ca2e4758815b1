"""lclib.triton_decode: the split-KV fp8 decode kernel, run by Triton's CPU interpreter.

The kernel has not run on a GPU here; on one, `python -m lclib.bench fp8_decode` times it.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("triton")
ROOT = Path(__file__).resolve().parents[1]
CHECK = """
import os, sys
os.environ["TRITON_INTERPRET"] = "1"
import torch
from lclib import triton_decode
from lclib.bench.fp8_decode import decode_attention
from lclib.fp8 import quantize
g = torch.Generator().manual_seed(0)
for b, n_q, n_kv, t, d, granularity in [(1, 8, 2, 1000, 64, "head"), (2, 4, 4, 37, 32, "tensor"),
                                        (1, 16, 1, 64, 16, "head")]:
    q = torch.randn(b, n_q, 1, d, generator=g).bfloat16()
    k, v = (3 * torch.randn(b, n_kv, t, d, generator=g).bfloat16() for _ in range(2))
    k8, v8 = quantize(k, "e4m3", granularity), quantize(v, "e4m3", granularity)
    out = triton_decode.fp8_decode(q, k8.data, v8.data, k8.scale, v8.scale)
    ref = decode_attention(q, k8.data, v8.data, k8.scale, v8.scale)  # the same fp8 bytes
    err = ((out.float() - ref).norm() / ref.norm()).item()
    assert out.shape == q.shape and out.dtype == q.dtype, (out.shape, out.dtype)
    assert err < 1e-2, (b, n_q, n_kv, t, d, err)  # bf16 output rounding, ~2e-3
assert triton_decode.available(torch.device("cpu"))
try:
    triton_decode.fp8_decode(q, k8.data[:, :, :5], v8.data, 1.0, 1.0)
except ValueError as e:
    assert "Hkv | Hq" in str(e)
else:
    sys.exit("no ValueError for unequal k, v")
print("ok")
"""


@pytest.mark.slow
def test_kernel_matches_the_compiled_torch_path_in_the_interpreter():
    done = subprocess.run([sys.executable, "-c", CHECK], cwd=ROOT, capture_output=True,
                          text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]
