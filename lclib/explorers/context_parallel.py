"""Chapter 3's explorer: one long request on tp x cp GPUs, memory and the ring's time."""

from __future__ import annotations

from ..context_parallel import LINKS, per_gpu_memory, ring_prefill_time, ring_step
from ..context_parallel import overlap_threshold as _threshold
from ..cost import prefill_time
from ..explorer import Dropdown, Explorer, Line, Readout, Slider
from ..hardware import get_gpu
from ..units import GB, fmt_seconds
from .parts import KV_DTYPES, TWO_WALLS_MFU, context_slider

CP_MODEL = "llama-3.3-70b"
CP_GPUS = ("h100-sxm", "h200")


def cp_point(seq_len: int, cp: int, tp: int, link: str, kv_dtype: str,
             gpu: str) -> dict[str, float | int | str]:
    """Llama-3.3-70B, one request of `seq_len` tokens on tp * cp GPUs at `TWO_WALLS_MFU`.

    Per-GPU memory in GB (10^9 bytes); per-layer ring-step and prefill times in seconds.
    """
    mem = per_gpu_memory(CP_MODEL, seq_len, tp, cp, kv_dtype=kv_dtype)
    step = ring_step(CP_MODEL, gpu, seq_len, tp, cp, link, kv_dtype, mfu=TWO_WALLS_MFU)
    hbm = get_gpu(gpu).hbm_bytes
    threshold = _threshold(CP_MODEL, gpu, link, kv_dtype, mfu=TWO_WALLS_MFU)
    hides = cp == 1 or step["compute"] >= step["comm"]
    return {
        "mem_gb": mem["total"] / GB, "kv_gb": mem["kv"] / GB, "hbm_gb": hbm / GB,
        "fits": (f"yes: {mem['total'] / hbm:.0%} of its HBM" if mem["total"] <= hbm
                 else f"no: {mem['total'] / hbm:.1f}× its HBM"),
        "compute_s": step["compute"], "comm_s": step["comm"],
        "hides": "yes (nothing to send)" if cp == 1 else
                 ("yes" if hides else f"no: exposed {fmt_seconds(step['comm'] - step['compute'])}"
                                      " per layer and step"),
        "threshold": threshold, "tokens_per_rank": seq_len / cp, "n_gpus": tp * cp,
        "prefill_s": ring_prefill_time(CP_MODEL, gpu, seq_len, tp, cp, link, kv_dtype,
                                       TWO_WALLS_MFU),
        "ideal_s": prefill_time(CP_MODEL, gpu, seq_len, n_gpus=tp * cp, mfu=TWO_WALLS_MFU),
    }


def context_parallel_explorer(steps: int = 16) -> Explorer:
    """Context, CP and TP degrees, link, KV dtype, GPU: memory per GPU and the ring's timing."""
    return Explorer(
        compute=cp_point,
        title=f"Context parallelism: {CP_MODEL} on tp × cp GPUs at {TWO_WALLS_MFU:.0%} MFU",
        controls=[context_slider(steps),
                  Slider("cp", "CP degree (GPUs in the ring)", [1, 2, 4, 8, 16, 32], fmt=str,
                         default=4),
                  Slider("tp", "TP degree", [1, 2, 4, 8], fmt=str, default=8),
                  Dropdown("link", "ring link", list(LINKS), default="infiniband"),
                  Dropdown("kv_dtype", "KV dtype", KV_DTYPES),
                  Dropdown("gpu", "GPU", CP_GPUS)],
        views=[Line(x="seq_len", y=["mem_gb", "kv_gb"], labels=["weights/tp + KV", "KV share"],
                    title="Memory per GPU", y_label="GB (10^9 bytes)", log_y=True,
                    capacity="hbm_gb", capacity_label="HBM of one GPU"),
               Line(x="seq_len", y=["compute_s", "comm_s"],
                    labels=["attention compute", "K/V block transfer"],
                    title="One ring step of one layer", y_label="seconds", log_y=True,
                    y_fmt=fmt_seconds),
               Line(x="seq_len", y=["prefill_s", "ideal_s"],
                    labels=["ring prefill", "if communication were free"],
                    title="Prefill time", y_label="seconds", log_y=True, y_fmt=fmt_seconds)],
        readouts=[Readout("n_gpus", "GPUs (tp × cp)", str),
                  Readout("mem_gb", "memory per GPU (GB)", "{:,.1f} GB".format),
                  Readout("fits", "fits in one GPU's HBM?"),
                  Readout("compute_s", "compute per ring step (one layer)", fmt_seconds),
                  Readout("comm_s", "K/V transfer per ring step", fmt_seconds),
                  Readout("hides", "communication hidden?"),
                  Readout("tokens_per_rank", "tokens per CP rank", "{:,.0f}".format),
                  Readout("threshold", "overlap threshold c* (tokens per rank)", "{:,.0f}".format),
                  Readout("prefill_s", "prefill time (ring)", fmt_seconds)],
    )
