"""Chapter 5: one decode step of attention over a long cache stored in bf16 vs fp8 (e4m3).

Decode attention reads every cached K/V byte once per token, so its time should follow the
bytes: fp8 storage halves them. Each size is timed three ways:

- `sdpa`: torch's fused SDPA decode over bf16 K/V (the query heads of a KV head packed as rows,
  as flash-decoding does): the baseline an engine would have;
- `base` and `fp8`: the same two-reduction code (`decode_attention`),
  compiled once with dynamic shapes, over bf16 and over e4m3 K/V with per-head scales (the
  conversion fuses into the loads, so no dequantized copy exists; the fp32 scores are still
  written out, which costs bytes fp8 does not save);
- `triton_fp8`, when `lclib.triton_decode` can run here: a split-KV kernel with an online
  softmax that reads the fp8 bytes once and writes only partial outputs.

The first call of a compiled variant is timed apart (`compile_s`). On a CPU the layer is small
and `torch.compile` uses the "aot_eager" backend (the same tracing with dynamic shapes, without
generating C++), so that a dry run stays short.
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ..fp8 import quantize
from ..models import get_model
from ..torch_env import device_gpu, sdpa_backend, synchronize, torch_dtype
from .core import Run, experiment, time_op

LLAMA = get_model("llama-3.3-70b")
# (query heads, KV heads, head_dim): one Llama-3.3-70B layer on a GPU, a small one on a CPU
SHAPES = {"cpu": (8, 2, 64), "cuda": (LLAMA.n_heads, LLAMA.n_kv_heads, LLAMA.head_dim)}
DEFAULT_SIZES = {"cpu": [1024, 4096],
                 "cuda": [32768, 131072, 262144, 524288, 1048576]}
COMPILE_BACKEND = {"cpu": "aot_eager", "cuda": "inductor"}


def decode_attention(q: Tensor, k: Tensor, v: Tensor, k_scale: Tensor | float = 1.0,
                     v_scale: Tensor | float = 1.0) -> Tensor:
    """Attention of one new token q [B, Hq, 1, D] over K/V [B, Hkv, T, D] of any dtype.

    Scales are per tensor or per KV head ([1, Hkv, 1, 1]); they factor out of the dot
    products, so they multiply scores and outputs instead of every stored element.
    """
    b, n_q, _, d = q.shape
    n_kv = k.shape[1]
    qg = q.float().reshape(b, n_kv, n_q // n_kv, 1, d)
    scores = (qg * k.float()[:, :, None]).sum(-1) * (k_scale / math.sqrt(d))  # [B, Hkv, G, T]
    p = scores.softmax(dim=-1)
    out = (p[..., None] * v.float()[:, :, None]).sum(-2) * v_scale  # [B, Hkv, G, D]
    return out.reshape(b, n_q, 1, d)


def sdpa_decode(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """Fused SDPA over the packed query: each KV head's group of query heads as rows."""
    b, n_q, _, d = q.shape
    n_kv = k.shape[1]
    out = F.scaled_dot_product_attention(q.reshape(b, n_kv, n_q // n_kv, d), k, v)
    return out.reshape(b, n_q, 1, d)


def triton_kernel(device: torch.device):
    """`lclib.triton_decode.fp8_decode` when Triton can run it on `device`, else None."""
    try:
        from .. import triton_decode
    except ImportError:
        return None
    return triton_decode.fp8_decode if triton_decode.available(device) else None


def first_call_seconds(fn, device: torch.device) -> float:
    """Seconds of one call (for a compiled function's first call: its compile time)."""
    synchronize(device)
    t0 = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - t0


@experiment("fp8_decode")
def fp8_decode(device: torch.device, sizes: list[int] | None = None, dtype: str = "bf16",
               run: Run | None = None, triton: bool = True) -> dict[str, Any]:
    """Time decode attention over `dtype` K/V (SDPA and compiled) and e4m3 K/V with per-head
    scales (compiled, and the Triton kernel if `triton` and it can run) at each context."""
    base_dtype = torch_dtype(dtype)
    n_q, n_kv, d = SHAPES[device.type]
    compiled = torch.compile(decode_attention, dynamic=True,
                             backend=COMPILE_BACKEND[device.type])
    kernel = triton_kernel(device) if triton else None
    gpu, gen = device_gpu(device), torch.Generator(device).manual_seed(0)
    peak = gpu.hbm_bandwidth if gpu else None
    run = run or Run(None, {})
    compile_s: dict[str, float] = {}  # first-call seconds per variant (compile, Triton JIT)
    failed: dict[str, str] = {}

    def measure(seq: int) -> dict[str, Any]:
        q = torch.randn(1, n_q, 1, d, generator=gen, device=device, dtype=base_dtype)
        k, v = (torch.randn(1, n_kv, seq, d, generator=gen, device=device, dtype=base_dtype)
                for _ in range(2))
        k8, v8 = quantize(k, "e4m3", "head"), quantize(v, "e4m3", "head")
        variants = {"sdpa": lambda: sdpa_decode(q, k, v),
                    "base": lambda: compiled(q, k, v),
                    "fp8": lambda: compiled(q, k8.data, v8.data, k8.scale, v8.scale)}
        if kernel is not None and "triton_fp8" not in failed:
            variants["triton_fp8"] = lambda: kernel(q, k8.data, v8.data, k8.scale, v8.scale)
        row: dict[str, Any] = {"seq_len": seq, "bytes_base": k.nbytes + v.nbytes,
                               "bytes_fp8": k8.nbytes + v8.nbytes,
                               "backend_sdpa": sdpa_backend(
                                   q.reshape(1, n_kv, n_q // n_kv, d), k, v)}
        row["setup_s"] = 0.0  # compile time spent at this size (core.Run leaves it out)
        for name, fn in list(variants.items()):
            if name != "sdpa" and name not in compile_s:
                try:
                    compile_s[name] = first_call_seconds(fn, device)
                except Exception as err:  # a kernel that does not build must not cost the rest
                    if name != "triton_fp8":
                        raise
                    failed[name] = f"{type(err).__name__}: {str(err)[:300]}"
                    del variants[name]
                    continue
                row["setup_s"] += compile_s[name]
            row[f"first_call_{name}"] = first_call_seconds(fn, device)
            row[f"t_{name}"] = time_op(fn, device)
        ref = variants["sdpa"]().float()
        for name in variants:
            if name != "sdpa":
                out = variants[name]().float()
                row[f"rel_error_{name}"] = ((out - ref).norm() / ref.norm()).item()
        for name in variants:
            nbytes = row["bytes_fp8" if name.endswith("fp8") else "bytes_base"]
            row[f"bandwidth_{name}"] = nbytes / row[f"t_{name}"]
            row[f"peak_fraction_{name}"] = row[f"bandwidth_{name}"] / peak if peak else None
        row["time_ratio"] = row["t_fp8"] / row["t_base"]  # the same compiled code, fp8 vs bf16
        best_fp8 = min(row[f"t_{n}"] for n in variants if n.endswith("fp8"))
        row["time_ratio_vs_sdpa"] = best_fp8 / row["t_sdpa"]  # the best fp8 kernel vs SDPA
        return row

    rows = run.measure(sorted(sizes or DEFAULT_SIZES[device.type]), measure)
    if not rows:
        raise ValueError("no size could be measured; pass smaller --sizes or a larger budget")
    return {"shape": {"n_heads": n_q, "n_kv_heads": n_kv, "head_dim": d, "layers": 1},
            "dtype": dtype, "hbm_peak": peak, "gpu": gpu.name if gpu else None,
            "compile_backend": COMPILE_BACKEND[device.type], "compile_s": compile_s,
            "triton": kernel is not None and not failed, "failed": failed,
            "bytes_ratio": rows[-1]["bytes_fp8"] / rows[-1]["bytes_base"],
            "time_ratio": rows[-1]["time_ratio"],
            "time_ratio_vs_sdpa": rows[-1]["time_ratio_vs_sdpa"]}
