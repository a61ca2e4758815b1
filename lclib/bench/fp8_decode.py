"""Chapter 5: one decode step of attention over a long cache stored in bf16 vs fp8 (e4m3).

Decode attention reads every cached K/V byte once per token, so its time should follow the
bytes: fp8 storage halves them. Both variants run the same code (two reductions, written so
that on a GPU `torch.compile` fuses the fp8 -> fp32 conversion into the loads); only the
storage dtype and its per-head scales differ. On a CPU the layer is tiny and runs eagerly.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ..fp8 import quantize
from ..hardware import GPUS
from ..models import get_model
from .core import experiment, time_op

LLAMA = get_model("llama-3.3-70b")
# (query heads, KV heads, head_dim): one Llama-3.3-70B layer on a GPU, a small one on a CPU
SHAPES = {"cpu": (8, 2, 64), "cuda": (LLAMA.n_heads, LLAMA.n_kv_heads, LLAMA.head_dim)}
DEFAULT_SIZES = {"cpu": [1024, 4096], "cuda": [32768, 65536, 131072]}
STORAGE = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


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


def hbm_peak(device: torch.device) -> float | None:
    """Datasheet HBM bandwidth of this GPU if lclib knows it (matched by name), else None."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device).lower()
    for key, tag in (("h200", "h200"), ("h100-sxm", "h100"), ("a100-80gb", "a100")):
        if tag in name:
            return GPUS[key].hbm_bandwidth
    return None


@experiment("fp8_decode")
def fp8_decode(device: torch.device, sizes: list[int] | None = None,
               dtype: str = "fp32") -> dict[str, Any]:
    """Time decode attention with `dtype` vs e4m3 (per-head scales) K/V at each context size."""
    if dtype not in STORAGE:
        raise ValueError(f"unknown dtype {dtype!r}; pass one of {', '.join(STORAGE)}")
    n_q, n_kv, d = SHAPES[device.type]
    run = torch.compile(decode_attention) if device.type == "cuda" else decode_attention
    peak, gen = hbm_peak(device), torch.Generator(device).manual_seed(0)
    rows = []
    for seq in sorted(sizes or DEFAULT_SIZES[device.type]):
        q = torch.randn(1, n_q, 1, d, generator=gen, device=device, dtype=STORAGE[dtype])
        k, v = (torch.randn(1, n_kv, seq, d, generator=gen, device=device,
                            dtype=STORAGE[dtype]) for _ in range(2))
        k8, v8 = quantize(k, "e4m3", "head"), quantize(v, "e4m3", "head")
        ref = run(q, k, v)
        err = (run(q, k8.data, v8.data, k8.scale, v8.scale) - ref).norm() / ref.norm()
        row = {"seq_len": seq, "rel_error_fp8": err.item(),
               "bytes_base": k.nbytes + v.nbytes, "bytes_fp8": k8.nbytes + v8.nbytes,
               "t_base": time_op(lambda q=q, k=k, v=v: run(q, k, v), device),
               "t_fp8": time_op(lambda q=q, a=k8, b=v8: run(q, a.data, b.data, a.scale, b.scale),
                                device)}
        row["time_ratio"] = row["t_fp8"] / row["t_base"]
        for kind in ("base", "fp8"):
            row[f"bandwidth_{kind}"] = row[f"bytes_{kind}"] / row[f"t_{kind}"]
            row[f"peak_fraction_{kind}"] = row[f"bandwidth_{kind}"] / peak if peak else None
        rows.append(row)
    return {"shape": {"n_heads": n_q, "n_kv_heads": n_kv, "head_dim": d, "layers": 1},
            "dtype": dtype, "hbm_peak": peak, "rows": rows,
            "bytes_ratio": rows[-1]["bytes_fp8"] / rows[-1]["bytes_base"],
            "goal_time_ratio": 0.6}
