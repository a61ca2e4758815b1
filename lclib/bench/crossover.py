"""Chapter 1: time one transformer layer's matmuls against its causal attention core."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from ..cost import crossover_seq_len, prefill_flops
from ..models import ModelConfig, get_model
from .core import experiment, time_op

TORCH_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# A narrow Llama-style layer that crosses over within a few thousand tokens on a CPU.
CPU_LAYER = ModelConfig("cpu-layer", hidden_size=256, n_layers=1, n_heads=4, n_kv_heads=2,
                        intermediate_size=768, vocab_size=1, source="lclib.bench")
GPU_LAYER = get_model("llama-3.3-70b").with_(name="llama-3.3-70b-layer", n_layers=1)
DEFAULT_SIZES = {"cpu": [256, 512, 1024, 2048, 4096, 8192],
                 "cuda": [4096, 8192, 16384, 32768, 65536, 131072]}


def torch_dtype(dtype: str) -> torch.dtype:
    if dtype not in TORCH_DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; pass one of {', '.join(TORCH_DTYPES)}")
    return TORCH_DTYPES[dtype]


def layer_ops(cfg: ModelConfig, seq: int, device: torch.device, dtype: torch.dtype):
    """Two closures over random tensors: the layer's weight matmuls, and causal SDPA."""
    d, f, g = cfg.hidden_size, cfg.intermediate_size, torch.Generator(device).manual_seed(0)

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g, device=device, dtype=dtype) / math.sqrt(shape[0])

    x = rand(seq, d)
    w_q, w_kv, w_o = rand(d, cfg.q_dim), rand(d, 2 * cfg.kv_dim), rand(cfg.q_dim, d)
    w_gate_up, w_down = rand(d, 2 * f), rand(f, d)
    q = rand(1, cfg.n_heads, seq, cfg.head_dim)
    k, v = rand(1, cfg.n_kv_heads, seq, cfg.head_dim), rand(1, cfg.n_kv_heads, seq, cfg.head_dim)

    def linear() -> torch.Tensor:
        x @ w_kv
        gate, up = (x @ w_gate_up).chunk(2, dim=-1)
        return (x @ w_q) @ w_o + (F.silu(gate) * up) @ w_down

    def attention() -> torch.Tensor:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)

    return linear, attention


def measured_crossover(sizes: list[int], t_linear: list[float],
                       t_attn: list[float]) -> float | None:
    """Where attention time first reaches linear time, interpolated on log axes."""
    points = list(zip(sizes, t_linear, t_attn, strict=True))
    for (s0, l0, a0), (s1, l1, a1) in zip(points, points[1:], strict=False):
        r0, r1 = math.log(a0 / l0), math.log(a1 / l1)
        if r0 < 0 <= r1:
            return math.exp(math.log(s0) + (math.log(s1) - math.log(s0)) * -r0 / (r1 - r0))
    return None


@experiment("crossover")
def crossover(device: torch.device, sizes: list[int] | None = None,
              dtype: str = "fp32") -> dict[str, Any]:
    """Time linear vs attention over `sizes`; compare measured and predicted crossovers."""
    cfg = CPU_LAYER if device.type == "cpu" else GPU_LAYER
    sizes = sorted(sizes or DEFAULT_SIZES[device.type])
    rows = []
    for seq in sizes:
        linear, attention = layer_ops(cfg, seq, device, torch_dtype(dtype))
        flops = prefill_flops(cfg, seq)
        rows.append({"seq_len": seq, "t_linear": time_op(linear, device),
                     "t_attention": time_op(attention, device),
                     "flops_linear": flops.linear, "flops_attention": flops.attention})
    rate_linear = sum(r["flops_linear"] for r in rows) / sum(r["t_linear"] for r in rows)
    rate_attn = sum(r["flops_attention"] for r in rows) / sum(r["t_attention"] for r in rows)
    return {
        "layer": {k: getattr(cfg, k) for k in ("name", "hidden_size", "n_heads", "n_kv_heads",
                                               "head_dim", "intermediate_size")},
        "dtype": dtype,
        "rows": rows,
        "rate_linear": rate_linear,
        "rate_attention": rate_attn,
        "crossover_flops": crossover_seq_len(cfg),
        # equal times where FLOPs_attn/rate_attn = FLOPs_lin/rate_lin; attention FLOPs ~ S^2
        "crossover_predicted": crossover_seq_len(cfg) * rate_attn / rate_linear,
        "crossover_measured": measured_crossover(
            sizes, [r["t_linear"] for r in rows], [r["t_attention"] for r in rows]),
    }
