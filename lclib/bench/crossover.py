"""Chapter 1: time one transformer layer's matmuls against its causal attention core."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from ..cost import crossover_seq_len, prefill_flops
from ..models import ModelConfig, get_model
from ..torch_env import device_gpu, forced_backend, sdpa_backend, torch_dtype
from .core import Run, experiment, time_op

# A narrow Llama-style layer that crosses over within a few thousand tokens on a CPU.
CPU_LAYER = ModelConfig("cpu-layer", hidden_size=256, n_layers=1, n_heads=4, n_kv_heads=2,
                        intermediate_size=768, vocab_size=1, source="lclib.bench")
GPU_LAYER = get_model("llama-3.3-70b").with_(name="llama-3.3-70b-layer", n_layers=1)
DEFAULT_SIZES = {"cpu": [256, 512, 1024, 2048, 4096, 8192],
                 "cuda": [4096, 8192, 16384, 32768, 65536, 131072]}


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

    attention.qkv = (q, k, v)
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


def time_attention(attention, device: torch.device, backends: list[str | None]) -> dict:
    """Seconds of causal SDPA under each backend (None: torch's choice), with the kernel that
    ran; a backend that cannot take this call is recorded as unavailable."""
    out = {}
    for backend in backends:
        tag = backend or "default"
        with forced_backend(backend):
            try:
                out[f"backend_{tag}"] = sdpa_backend(*attention.qkv, True, True)
                out[f"t_attention_{tag}"] = time_op(attention, device)
            except RuntimeError as err:  # "No available kernel" for a forced backend
                out[f"backend_{tag}"] = f"unavailable: {str(err)[:120]}"
    return out


def with_mfu(row: dict, peak: float | None) -> dict:
    """Achieved FLOP/s of the linear layers, attention and the whole prefill layer, and their
    fraction of the datasheet peak (MFU) when the GPU is known."""
    fl, fa = row["flops_linear"], row["flops_attention"]
    rates = {"linear": fl / row["t_linear"], "attention": fa / row["t_attention"],
             "prefill": (fl + fa) / (row["t_linear"] + row["t_attention"])}
    for part, rate in rates.items():
        row[f"rate_{part}"] = rate
        row[f"mfu_{part}"] = rate / peak if peak else None
    return row


@experiment("crossover")
def crossover(device: torch.device, sizes: list[int] | None = None, dtype: str = "fp32",
              run: Run | None = None, backends: list[str] | None = None) -> dict[str, Any]:
    """Time linear vs attention over `sizes`; compare measured and predicted crossovers.

    `backends` (e.g. ["flash", "cudnn"]) times attention under each forced SDPA backend as
    well as torch's own choice ("default", the one the crossover uses).
    """
    cfg = CPU_LAYER if device.type == "cpu" else GPU_LAYER
    sizes = sorted(sizes or DEFAULT_SIZES[device.type])
    run = run or Run(None, {})
    gpu = device_gpu(device)
    peak = gpu.peak_flops(dtype) if gpu and dtype in gpu.flops else None
    forced = [None, *(backends or [])]

    def measure(seq: int) -> dict:
        linear, attention = layer_ops(cfg, seq, device, torch_dtype(dtype))
        flops = prefill_flops(cfg, seq)
        row = {"seq_len": seq, "t_linear": time_op(linear, device),
               **time_attention(attention, device, forced),
               "flops_linear": flops.linear, "flops_attention": flops.attention}
        row["t_attention"], row["backend"] = row["t_attention_default"], row["backend_default"]
        return with_mfu(row, peak)

    rows = run.measure(sizes, measure, exponent=2.0)
    if not rows:
        raise ValueError("no size could be measured; pass smaller --sizes or a larger budget")
    rate_linear = sum(r["flops_linear"] for r in rows) / sum(r["t_linear"] for r in rows)
    rate_attn = sum(r["flops_attention"] for r in rows) / sum(r["t_attention"] for r in rows)
    return {
        "layer": {k: getattr(cfg, k) for k in ("name", "hidden_size", "n_heads", "n_kv_heads",
                                               "head_dim", "intermediate_size")},
        "dtype": dtype,
        "gpu": gpu.name if gpu else None,
        "peak_flops": peak,
        "rate_linear": rate_linear,
        "rate_attention": rate_attn,
        "mfu_linear": rate_linear / peak if peak else None,
        "crossover_flops": crossover_seq_len(cfg),
        # equal times where FLOPs_attn/rate_attn = FLOPs_lin/rate_lin; attention FLOPs ~ S^2
        "crossover_predicted": crossover_seq_len(cfg) * rate_attn / rate_linear,
        "crossover_measured": measured_crossover(
            [r["seq_len"] for r in rows], [r["t_linear"] for r in rows],
            [r["t_attention"] for r in rows]),
    }
