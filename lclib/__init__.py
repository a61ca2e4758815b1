"""lclib: the numbers behind the course "Long-context inference: two walls, one knob".

The cost model (this namespace) imports without torch or numpy. Torch demos live in
submodules (`lclib.ring`, `lclib.fp8`, `lclib.rope`, `lclib.tinylm`, `lclib.bench`).
"""

from .cost import (
    NO_RESERVE,
    VLLM_RESERVE,
    PrefillFlops,
    Reserve,
    activation_bytes,
    context_switch_time,
    cp_gpus_needed,
    crossover_seq_len,
    decode_step_time,
    kv_budget,
    kv_bytes_per_token,
    kv_cache_bytes,
    max_concurrency,
    prefill_flops,
    prefill_time,
    weight_bytes,
)
from .hardware import GPU, GPUS, get_gpu
from .models import MODELS, ModelConfig, get_model
from .units import GB, KB, TB, GiB, KiB, MiB, dtype_bits, fmt_bytes

__all__ = [
    "GB", "GPU", "GPUS", "KB", "MODELS", "NO_RESERVE", "TB", "VLLM_RESERVE", "GiB", "KiB", "MiB",
    "ModelConfig", "PrefillFlops", "Reserve", "activation_bytes", "context_switch_time",
    "cp_gpus_needed", "crossover_seq_len", "decode_step_time", "dtype_bits", "fmt_bytes",
    "get_gpu", "get_model", "kv_bytes_per_token", "kv_budget", "kv_cache_bytes",
    "max_concurrency", "prefill_flops", "prefill_time", "weight_bytes",
]
