"""GPU constants, each with its source. Dense (not 2:4-sparse) FLOP/s."""

from __future__ import annotations

from dataclasses import dataclass, field

from .units import GB, TFLOPS, dtype_bits


@dataclass(frozen=True)
class GPU:
    """One accelerator: memory size, memory and link bandwidths, dense peak FLOP/s."""

    name: str
    hbm_bytes: int
    hbm_bandwidth: float  # bytes/s
    flops: dict[str, float] = field(repr=False)  # dense peak FLOP/s per dtype
    nvlink_bandwidth: float  # bytes/s, datasheet total over both directions
    pcie_bandwidth: float  # bytes/s, one direction (x16 link)
    source: str

    def peak_flops(self, dtype: str = "bf16") -> float:
        """Dense peak FLOP/s for matmuls in `dtype` (ValueError if this GPU has no such units)."""
        dtype_bits(dtype)
        if dtype not in self.flops:
            raise ValueError(
                f"{self.name} has no dense {dtype} tensor-core rate; "
                f"pass one of {', '.join(self.flops)}"
            )
        return self.flops[dtype]


_H100_FLOPS = {"bf16": 989.4 * TFLOPS, "fp16": 989.4 * TFLOPS, "fp8": 1978.9 * TFLOPS,
               "int8": 1978.9 * TFLOPS, "fp32": 66.9 * TFLOPS}

GPUS: dict[str, GPU] = {
    g.name: g
    for g in (
        GPU(
            name="a100-80gb",
            hbm_bytes=80 * GB,
            hbm_bandwidth=2.039e12,
            flops={"bf16": 312 * TFLOPS, "fp16": 312 * TFLOPS, "int8": 624 * TFLOPS,
                   "fp32": 19.5 * TFLOPS},
            nvlink_bandwidth=600 * GB,
            pcie_bandwidth=32 * GB,
            source="NVIDIA A100 Tensor Core GPU datasheet (80GB SXM); PCIe Gen4 x16",
        ),
        GPU(
            name="h100-sxm",
            hbm_bytes=80 * GB,
            hbm_bandwidth=3.35e12,
            flops=_H100_FLOPS,
            nvlink_bandwidth=900 * GB,
            pcie_bandwidth=64 * GB,
            source="NVIDIA H100 Tensor Core GPU datasheet (SXM5); PCIe Gen5 x16",
        ),
        GPU(
            name="h200",
            hbm_bytes=141 * GB,
            hbm_bandwidth=4.8e12,
            flops=_H100_FLOPS,
            nvlink_bandwidth=900 * GB,
            pcie_bandwidth=64 * GB,
            source="NVIDIA H200 Tensor Core GPU datasheet (SXM); PCIe Gen5 x16",
        ),
    )
}


def get_gpu(name: str | GPU) -> GPU:
    """The GPU preset called `name` (a GPU passes through)."""
    if isinstance(name, GPU):
        return name
    key = str(name).lower()
    if key not in GPUS:
        raise ValueError(f"unknown GPU {name!r}; pass one of {', '.join(GPUS)}")
    return GPUS[key]
