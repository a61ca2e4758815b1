"""GPU constants, each with its source. Dense (not 2:4-sparse) FLOP/s.

`hbm_bytes` is the memory the device reports (nvidia-smi's or torch's total), which is what an
engine budgets from; the datasheet's decimal label ("80GB", "141GB") stays in `label` and
`datasheet_hbm_bytes`. The two differ by 6-7%, enough to change how many requests fit.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .units import GB, TFLOPS, MiB, dtype_bits


@dataclass(frozen=True)
class GPU:
    """One accelerator: memory size, memory and link bandwidths, dense peak FLOP/s."""

    name: str
    hbm_bytes: int  # total the device reports (see hbm_source)
    hbm_bandwidth: float  # bytes/s
    flops: dict[str, float] = field(repr=False)  # dense peak FLOP/s per dtype
    nvlink_bandwidth: float  # bytes/s, datasheet total over both directions
    pcie_bandwidth: float  # bytes/s, one direction (x16 link)
    source: str
    label: str = ""  # the datasheet's name, e.g. "H100 SXM 80GB"
    datasheet_hbm_bytes: int = 0  # the label's decimal figure, e.g. 80e9
    hbm_source: str = ""  # where hbm_bytes comes from

    def peak_flops(self, dtype: str = "bf16") -> float:
        """Dense peak FLOP/s for matmuls in `dtype` (ValueError if this GPU has no such units)."""
        dtype_bits(dtype)
        if dtype not in self.flops:
            raise ValueError(
                f"{self.name} has no dense {dtype} tensor-core rate; "
                f"pass one of {', '.join(self.flops)}"
            )
        return self.flops[dtype]

    def ridge_point(self, dtype: str = "bf16") -> float:
        """FLOPs per HBM byte at which a kernel stops being bandwidth-bound (the roofline's knee).

        H100 in bf16: 989.4e12 / 3.35e12 = 295 FLOP/B.
        """
        return self.peak_flops(dtype) / self.hbm_bandwidth


_H100_FLOPS = {"bf16": 989.4 * TFLOPS, "fp16": 989.4 * TFLOPS, "fp8": 1978.9 * TFLOPS,
               "int8": 1978.9 * TFLOPS, "fp32": 66.9 * TFLOPS}

GPUS: dict[str, GPU] = {
    g.name: g
    for g in (
        GPU(
            name="a100-80gb",
            hbm_bytes=85_056_798_720,
            hbm_bandwidth=2.039e12,
            flops={"bf16": 312 * TFLOPS, "fp16": 312 * TFLOPS, "int8": 624 * TFLOPS,
                   "fp32": 19.5 * TFLOPS},
            nvlink_bandwidth=600 * GB,
            pcie_bandwidth=32 * GB,
            source="NVIDIA A100 Tensor Core GPU datasheet (80GB SXM); PCIe Gen4 x16",
            label="A100 SXM 80GB",
            datasheet_hbm_bytes=80 * GB,
            hbm_source="torch.cuda.get_device_properties(0).total_memory on an A100-SXM4-80GB",
        ),
        GPU(
            name="h100-sxm",
            hbm_bytes=81_559 * MiB,
            hbm_bandwidth=3.35e12,
            flops=_H100_FLOPS,
            nvlink_bandwidth=900 * GB,
            pcie_bandwidth=64 * GB,
            source="NVIDIA H100 Tensor Core GPU datasheet (SXM5); PCIe Gen5 x16",
            label="H100 SXM 80GB",
            datasheet_hbm_bytes=80 * GB,
            hbm_source="nvidia-smi memory.total on an H100 80GB HBM3 (SXM5): 81,559 MiB",
        ),
        GPU(
            name="h200",
            hbm_bytes=143_771 * MiB,
            hbm_bandwidth=4.8e12,
            flops=_H100_FLOPS,
            nvlink_bandwidth=900 * GB,
            pcie_bandwidth=64 * GB,
            source="NVIDIA H200 Tensor Core GPU datasheet (SXM); PCIe Gen5 x16",
            label="H200 SXM 141GB",
            datasheet_hbm_bytes=141 * GB,
            hbm_source="nvidia-smi memory.total on an H200 (driver 580): 143,771 MiB",
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
