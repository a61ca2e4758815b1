"""The device's own ceilings, measured: a large copy's bandwidth and a large GEMM's FLOP/s, and
which fused attention kernel SDPA picks for each kind of call the course times.

Every other experiment's "fraction of peak" divides by a datasheet number; these rows say
how much of it a plain copy and a plain matmul reach on the same device, the same day.
"""

from __future__ import annotations

from typing import Any

import torch

from ..models import get_model
from ..torch_env import device_gpu, forced_backend, sdpa_backend, torch_dtype
from .core import Run, experiment, time_op

# sizes: bytes copied, and the GEMM's n (n x n times n x n)
DEFAULT_SIZES = {"cpu": {"copy": 2**26, "gemm": 512}, "cuda": {"copy": 2**32, "gemm": 8192}}
LLAMA = get_model("llama-3.3-70b")


def attention_calls(device: torch.device, dtype: torch.dtype, seq: int) -> dict[str, tuple]:
    """(q, k, v, is_causal, enable_gqa) of the attention calls the course's experiments make."""
    h, kv, d = (LLAMA.n_heads, LLAMA.n_kv_heads, LLAMA.head_dim) if device.type == "cuda" else (
        8, 2, 64)

    def t(heads: int, length: int, dt: torch.dtype = dtype) -> torch.Tensor:
        return torch.empty(1, heads, length, d, device=device, dtype=dt)

    return {"prefill, causal GQA": (t(h, seq), t(kv, seq), t(kv, seq), True, True),
            "decode, packed GQA rows": (t(kv, h // kv), t(kv, seq), t(kv, seq), False, False),
            "prefill, causal GQA, fp32": (t(h, seq, torch.float32), t(kv, seq, torch.float32),
                                          t(kv, seq, torch.float32), True, True),
            "prefill, causal, K/V expanded": (t(h, seq), t(h, seq), t(h, seq), True, False)}


def copy_seconds(device: torch.device, n_bytes: int) -> tuple[int, float]:
    """(bytes moved, seconds) of copying an `n_bytes` buffer: each byte read once, written once."""
    src = torch.ones(n_bytes // 2, dtype=torch.bfloat16, device=device)
    dst = torch.empty_like(src)
    return 2 * src.nbytes, time_op(lambda: dst.copy_(src), device)


@experiment("ceilings")
def ceilings(device: torch.device, sizes: list[int] | None = None, dtype: str = "bf16",
             run: Run | None = None) -> dict[str, Any]:
    """Copy bandwidth (`sizes[0]` bytes), GEMM rate (n = `sizes[1]`), and SDPA's choices."""
    run, gpu, dt = run or Run(None, {}), device_gpu(device), torch_dtype(dtype)
    n_bytes, n = sizes or (DEFAULT_SIZES[device.type]["copy"], DEFAULT_SIZES[device.type]["gemm"])
    hbm = gpu.hbm_bandwidth if gpu else None
    moved, t_copy = copy_seconds(device, n_bytes)
    run.row({"op": "copy", "bytes_moved": moved, "t": t_copy, "bandwidth": moved / t_copy,
             "fraction_of_hbm": moved / t_copy / hbm if hbm else None})
    a, b = (torch.randn(n, n, device=device, dtype=dt) for _ in range(2))
    t_gemm = time_op(lambda: a @ b, device)
    peak = gpu.peak_flops(dtype) if gpu and dtype in gpu.flops else None
    rate = 2 * n**3 / t_gemm
    run.row({"op": "gemm", "n": n, "flops": 2 * n**3, "t": t_gemm, "rate": rate,
             "mfu": rate / peak if peak else None})
    for call, (q, k, v, causal, gqa) in attention_calls(device, dt, 4096).items():
        choices = {}
        for backend in (None, "flash", "cudnn", "efficient"):
            with forced_backend(backend):
                try:
                    choices[backend or "default"] = sdpa_backend(q, k, v, causal, gqa)
                except RuntimeError as err:
                    choices[backend or "default"] = f"unavailable: {str(err)[:80]}"
        run.row({"op": "sdpa_choice", "call": call, "dtype": str(q.dtype).removeprefix("torch."),
                 **{f"backend_{b}": c for b, c in choices.items()}})
    return {"gpu": gpu.name if gpu else None, "dtype": dtype, "hbm_bandwidth": hbm,
            "peak_flops": peak, "copy_bandwidth": moved / t_copy, "gemm_rate": rate}
