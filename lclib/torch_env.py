"""Torch helpers shared by the benchmarks and demos: dtypes, devices, GPUs, attention backends.

One dtype table (`torch_dtype`), one device-name -> `lclib.hardware.GPU` table (`known_gpu`),
the device check every CLI uses (`resolve_device`), the synchronisation of the device being
timed (`synchronize`), and which fused kernel SDPA picks for a call (`sdpa_backend`), with a
context manager that forces one (`forced_backend`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from .hardware import GPU, get_gpu

DTYPES = {"fp64": torch.float64, "fp32": torch.float32, "bf16": torch.bfloat16,
          "fp16": torch.float16}
# Substrings of torch.cuda.get_device_name -> lclib GPU; only the SXM parts lclib has numbers
# for (an "H100 PCIe" or "H100 NVL" has other bandwidths and is not matched).
GPU_NAMES = (("H200", "h200"), ("H100 80GB HBM3", "h100-sxm"), ("H100 SXM", "h100-sxm"),
             ("A100-SXM4-80GB", "a100-80gb"))
BACKENDS = {"flash": SDPBackend.FLASH_ATTENTION, "efficient": SDPBackend.EFFICIENT_ATTENTION,
            "cudnn": SDPBackend.CUDNN_ATTENTION, "math": SDPBackend.MATH}


def torch_dtype(name: str) -> torch.dtype:
    """The torch dtype of lclib's name for it ("fp32", "bf16", ...)."""
    if name not in DTYPES:
        raise ValueError(f"unknown dtype {name!r}; pass one of {', '.join(DTYPES)}")
    return DTYPES[name]


def known_gpu(device_name: str) -> GPU | None:
    """The lclib GPU that torch's device name denotes, or None (PCIe/NVL parts, other GPUs)."""
    for marker, name in GPU_NAMES:
        if marker in device_name:
            return get_gpu(name)
    return None


def device_gpu(device: torch.device) -> GPU | None:
    """The lclib GPU of a CUDA `device`, None for a CPU or an unknown GPU."""
    return known_gpu(torch.cuda.get_device_name(device)) if device.type == "cuda" else None


def resolve_device(device: str | torch.device) -> torch.device:
    """A torch device that exists here (cuda means the current GPU), else ValueError."""
    try:
        dev = torch.device(device)
    except RuntimeError as err:
        raise ValueError(f"unknown device {device!r}; pass cpu, cuda or cuda:N") from err
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("--device cuda asked for, but torch sees no CUDA GPU "
                             f"(torch {torch.__version__}); pass --device cpu")
        index = torch.cuda.current_device() if dev.index is None else dev.index
        if index >= torch.cuda.device_count():
            raise ValueError(f"{dev} asked for, but torch sees {torch.cuda.device_count()} GPU(s)")
        dev = torch.device("cuda", index)
    elif dev.type != "cpu":
        raise ValueError(f"device {dev} is not supported; pass cpu or cuda")
    return dev


def last_level_cache_bytes(device: torch.device) -> int | None:
    """The GPU's L2 (torch's device properties) or the CPU's largest cache (Linux sysfs)."""
    if device.type == "cuda":
        return getattr(torch.cuda.get_device_properties(device), "L2_cache_size", None)
    sizes = []
    for f in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*/size"):
        text = f.read_text().strip()
        units = {"K": 2**10, "M": 2**20, "G": 2**30}
        sizes.append(int(text[:-1]) * units[text[-1]] if text[-1] in units else int(text))
    return max(sizes, default=None)


def synchronize(device: torch.device) -> None:
    """Wait for the work queued on `device` (the one being timed, not the current one)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def is_oom(err: BaseException) -> bool:
    """True for an out-of-memory error from torch (GPU) or from the CPU allocator."""
    return isinstance(err, torch.OutOfMemoryError | MemoryError) or (
        isinstance(err, RuntimeError) and "can't allocate memory" in str(err))


def sdpa_backend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, is_causal: bool = False,
                 enable_gqa: bool = False) -> str:
    """The fused kernel `F.scaled_dot_product_attention` picks for this call, by torch's own
    dispatcher (`torch._fused_sdp_choice`), under the backends allowed right now."""
    choice = torch._fused_sdp_choice(q, k, v, is_causal=is_causal, enable_gqa=enable_gqa)
    name = SDPBackend(choice).name.lower()
    return f"{q.device.type}-{name.removesuffix('_attention')}"


@contextlib.contextmanager
def forced_backend(name: str | None) -> Iterator[None]:
    """Allow only SDPA backend `name` ("flash", "efficient", "cudnn", "math") inside; None
    leaves torch's choice alone."""
    if name is None:
        yield
        return
    if name not in BACKENDS:
        raise ValueError(f"unknown attention backend {name!r}; pass one of {', '.join(BACKENDS)}")
    with sdpa_kernel(BACKENDS[name]):
        yield
