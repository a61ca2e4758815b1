"""Chapter 3's explorer: one long request on tp x cp GPUs, memory and the ring's time."""

from __future__ import annotations

from ..context_parallel import LINKS, per_gpu_memory, ring_prefill_time, ring_step
from ..context_parallel import overlap_threshold as _threshold
from ..cost import activation_bytes, kv_budget, prefill_time
from ..explorer import Dropdown, Explorer, Line, LogSlider, Readout, Slider
from ..hardware import get_gpu
from ..units import GB, fmt_seconds, fmt_tokens
from .parts import KV_DTYPES, TWO_WALLS_MFU

CP_MODEL = "llama-3.3-70b"
CP_GPUS = ("h100-sxm", "h200")


def cp_point(seq_len: int, cp: int, tp: int, link: str, kv_dtype: str,
             gpu: str) -> dict[str, float | int | str | None]:
    """Llama-3.3-70B, one request of `seq_len` tokens on tp * cp GPUs at `TWO_WALLS_MFU`.

    Per-GPU memory in GB (10^9 bytes), with chunked prefill and with a one-shot prefill's
    activations; per-layer ring-step seconds (no transfer at cp = 1: None, a gap); prefill
    seconds on these GPUs and on one TP group alone (cp = 1).
    """
    mem = per_gpu_memory(CP_MODEL, seq_len, tp, cp, kv_dtype=kv_dtype)
    one_shot = mem["total"] + activation_bytes(CP_MODEL, -(-seq_len // cp), tp)
    step = ring_step(CP_MODEL, gpu, seq_len, tp, cp, link, kv_dtype, mfu=TWO_WALLS_MFU)
    hbm = get_gpu(gpu).hbm_bytes
    free = kv_budget(CP_MODEL, gpu, tp) / tp  # for KV on each GPU, chunked prefill
    threshold = _threshold(CP_MODEL, gpu, link, kv_dtype, mfu=TWO_WALLS_MFU)
    exposed = max(0.0, step["comm"] - step["compute"])
    prefill = ring_prefill_time(CP_MODEL, gpu, seq_len, tp, cp, link, kv_dtype, TWO_WALLS_MFU)
    return {
        "mem_gb": mem["total"] / GB, "kv_gb": mem["kv"] / GB, "hbm_gb": hbm / GB,
        "kv_room_gb": max(0.0, free) / GB,  # 0 where the weights alone overflow
        "oneshot_gb": one_shot / GB,
        "fits": ("yes" if mem["kv"] <= free else "no") + " with chunked prefill; "
                + ("yes" if one_shot <= hbm else "no") + " for a one-shot prefill",
        "compute_s": step["compute"], "comm_s": step["comm"] if cp > 1 else None,
        "comm_text": fmt_seconds(step["comm"]) if cp > 1 else "none: CP = 1 sends nothing",
        "hides": "nothing to send (CP = 1)" if cp == 1 else
                 ("yes" if not exposed else f"no: exposed {fmt_seconds(exposed)} per layer and "
                                            "step"),
        "threshold": threshold, "tokens_per_rank": seq_len / cp, "n_gpus": tp * cp,
        "hides_from": f"{threshold:,.0f} tokens per rank = a context of "
                      f"{threshold * cp:,.0f} tokens at this CP degree",
        "prefill_s": prefill,
        "node_s": prefill_time(CP_MODEL, gpu, seq_len, n_gpus=tp, mfu=TWO_WALLS_MFU),
        "exposed_s": prefill - prefill_time(CP_MODEL, gpu, seq_len, n_gpus=tp * cp,
                                            mfu=TWO_WALLS_MFU),
    }


def context_parallel_explorer(steps: int = 13) -> Explorer:
    """Context, CP and TP degrees, link, KV dtype, GPU: memory per GPU and the ring's timing."""
    context = LogSlider("seq_len", "context (tokens; K = 1,024)", 2**10, 2**22, steps=steps,
                        snap=2**10, fmt=fmt_tokens, default=2**20)
    return Explorer(
        compute=cp_point,
        title=f"Context parallelism: {CP_MODEL} on tp × cp GPUs at {TWO_WALLS_MFU:.0%} MFU",
        controls=[context,
                  Slider("cp", "CP degree (GPUs in the ring)", [1, 2, 4, 8, 16, 32], fmt=str,
                         default=1),
                  Slider("tp", "TP degree", [1, 2, 4, 8], fmt=str, default=8),
                  Dropdown("link", "ring link", list(LINKS), default="infiniband"),
                  Dropdown("kv_dtype", "KV dtype", KV_DTYPES),
                  Dropdown("gpu", "GPU", CP_GPUS)],
        views=[Line(x="seq_len", y=["oneshot_gb", "mem_gb", "kv_gb"],
                    labels=["+ one-shot prefill activations", "weights/tp + KV (chunked)",
                            "KV share"],
                    title="Memory per GPU", y_label="GB (10^9 bytes)", log_y=True,
                    capacity="hbm_gb", capacity_label="HBM of one GPU (as reported)"),
               Line(x="seq_len", y=["compute_s", "comm_s"],
                    labels=["attention compute", "K/V block transfer (none at CP = 1)"],
                    title="One ring step of one layer (x: the whole context)", y_label="seconds",
                    log_y=True, y_fmt=fmt_seconds),
               Line(x="seq_len", y=["prefill_s", "node_s"],
                    labels=["these tp × cp GPUs (ring)", "one TP group alone (CP = 1)"],
                    title="Prefill time: what CP buys", y_label="seconds", log_y=True,
                    y_fmt=fmt_seconds)],
        readouts=[Readout("n_gpus", "GPUs (tp × cp)", str),
                  Readout("mem_gb", "memory per GPU, chunked prefill (GB)", "{:,.1f} GB".format),
                  Readout("kv_room_gb", "room for KV per GPU (HBM as reported − weights/tp)",
                          "{:,.1f} GB".format),
                  Readout("fits", "fits in one GPU's HBM?"),
                  Readout("compute_s", "compute per ring step (one layer)", fmt_seconds),
                  Readout("comm_text", "K/V transfer per ring step"),
                  Readout("hides", "communication hidden?"),
                  Readout("hides_from", "the transfer hides from (overlap threshold c*)"),
                  Readout("prefill_s", "prefill time (ring)", fmt_seconds),
                  Readout("exposed_s", "of which exposed communication", fmt_seconds)],
    )
