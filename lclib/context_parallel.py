"""Context parallelism, the cost side: memory per GPU, ring steps, when communication hides.

A deployment runs tensor parallelism of degree `tp` (weights and heads split) times context
parallelism of degree `cp` (the sequence split); it has tp * cp GPUs. Ring attention
(Liu et al. 2023) passes each rank's K/V block to the next rank while attending to the block
it holds; a step's communication hides behind its compute when the block is long enough:
c >= F/B tokens for MHA in bf16 without a mask (F peak FLOP/s, B link bytes/s one way).
The all-gather alternative (the Llama 3 report's context parallelism) gathers a layer's whole
K/V on every rank before attention instead. Torch-free; sizes in bytes, times in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from .cost import (
    GPULike,
    ModelLike,
    attention_pairs,
    kv_bytes_per_token,
    prefill_flops,
    weight_bytes,
)
from .hardware import get_gpu
from .models import get_model
from .units import positive_float, positive_int


@dataclass(frozen=True)
class Link:
    """A GPU-to-GPU link: bytes/s one way per GPU (None: read it from the GPU's datasheet)."""

    name: str
    bandwidth: float | None
    source: str


LINKS: dict[str, Link] = {lk.name: lk for lk in (
    Link("nvlink", None, "the GPU's NVLink total (datasheet: both directions) halved"),
    Link("pcie", None, "the GPU's PCIe x16 link, one direction (datasheet)"),
    Link("infiniband", 400e9 / 8, "InfiniBand NDR, 400 Gb/s per port = 50 GB/s each way; "
         "one ConnectX-7 port per GPU as in NVIDIA's DGX H100 user guide"),
)}


def link_bandwidth(link: str, gpu: GPULike) -> float:
    """Bytes/s one way per GPU over `link` ("nvlink", "pcie", "infiniband")."""
    if link not in LINKS:
        raise ValueError(f"unknown link {link!r}; pass one of {', '.join(LINKS)}")
    g = get_gpu(gpu)
    return {"nvlink": g.nvlink_bandwidth / 2, "pcie": g.pcie_bandwidth}.get(
        link, LINKS[link].bandwidth)


def _degrees(model: ModelLike, tp: int, cp: int) -> tuple[int, int]:
    m = get_model(model)
    tp, cp = positive_int("tp", tp), positive_int("cp", cp)
    if m.n_heads % tp:
        raise ValueError(f"tp={tp} does not divide {m.name}'s {m.n_heads} query heads; "
                         f"pass a divisor of {m.n_heads}")
    return tp, cp


def kv_split(model: ModelLike, tp: int) -> int:
    """Ways TP splits the K/V heads: min(tp, H_kv) (beyond H_kv, K/V heads are replicated)."""
    return min(tp, get_model(model).n_kv_heads)


def per_gpu_memory(model: ModelLike, seq_len: int, tp: int = 1, cp: int = 1,
                   weight_dtype: str = "bf16", kv_dtype: str = "bf16") -> dict[str, float]:
    """Bytes on each GPU for one request: weights / tp and KV / (min(tp, H_kv) * cp)."""
    tp, cp = _degrees(model, tp, cp)
    weights = weight_bytes(model, weight_dtype) / tp
    kv = kv_bytes_per_token(model, kv_dtype) * positive_int("seq_len", seq_len)
    kv /= kv_split(model, tp) * cp
    return {"weights": weights, "kv": kv, "total": weights + kv}


def min_cp(model: ModelLike, gpu: GPULike, seq_len: int, tp: int = 8,
           weight_dtype: str = "bf16", kv_dtype: str = "bf16") -> int | None:
    """Smallest power-of-two CP degree whose per-GPU memory fits; None if weights alone don't."""
    hbm = get_gpu(gpu).hbm_bytes
    if per_gpu_memory(model, 1, tp, 1, weight_dtype, kv_dtype)["weights"] >= hbm:
        return None
    cp = 1
    while per_gpu_memory(model, seq_len, tp, cp, weight_dtype, kv_dtype)["total"] > hbm:
        cp *= 2
    return cp


def ring_step(model: ModelLike, gpu: GPULike, seq_len: int, tp: int = 1, cp: int = 2,
              link: str = "nvlink", kv_dtype: str = "bf16", causal: bool = True,
              mfu: float = 0.4, dtype: str = "bf16") -> dict[str, float]:
    """One layer's ring step on one GPU: compute and communication seconds, and the K/V bytes.

    Zigzag-balanced: each step attends S/cp local queries to an S/cp-token block, half of it
    masked when causal. Each GPU holds H/tp query heads and H_kv/min(tp, H_kv) K/V heads.
    """
    tp, cp = _degrees(model, tp, cp)
    m, c = get_model(model), positive_int("seq_len", seq_len) / cp
    flops = 4 * m.q_dim / tp * attention_pairs(c, causal)
    block = kv_bytes_per_token(model, kv_dtype) / m.n_layers * c / kv_split(model, tp)
    rate = get_gpu(gpu).peak_flops(dtype) * _fraction(mfu)
    return {"compute": flops / rate, "comm": block / link_bandwidth(link, gpu),
            "block_bytes": block, "flops": flops}


def overlap_threshold(model: ModelLike, gpu: GPULike, link: str = "nvlink",
                      kv_dtype: str = "bf16", causal: bool = True, mfu: float = 1.0,
                      dtype: str = "bf16") -> float:
    """Tokens per rank c* above which a ring step's compute hides its K/V transfer.

    Compute grows as c^2, the block as c, so c* = comm(c) / compute(c) * c at any c.
    Liu et al.'s c >= F/B is the MHA, bf16, unmasked, mfu = 1 case.
    """
    step = ring_step(model, gpu, 2**20, 1, 1, link, kv_dtype, causal, mfu, dtype)
    return 2**20 * step["comm"] / step["compute"]


def ring_prefill_time(model: ModelLike, gpu: GPULike, seq_len: int, tp: int = 1, cp: int = 1,
                      link: str = "nvlink", kv_dtype: str = "bf16", mfu: float = 0.4,
                      causal: bool = True) -> float:
    """Prefill seconds on tp * cp GPUs: linear work split evenly, plus per layer a local step
    and cp - 1 ring steps that each last max(compute, communication)."""
    tp, cp = _degrees(model, tp, cp)
    g, m = get_gpu(gpu), get_model(model)
    rate = tp * cp * g.peak_flops() * _fraction(mfu)
    linear = prefill_flops(model, seq_len, causal).linear / rate
    step = ring_step(model, gpu, seq_len, tp, cp, link, kv_dtype, causal, mfu)
    return linear + m.n_layers * (step["compute"] + (cp - 1) * max(step["compute"], step["comm"]))


def allgather_buffer_bytes(model: ModelLike, seq_len: int, tp: int = 1, cp: int = 2,
                           kv_dtype: str = "bf16") -> dict[str, float]:
    """Transient K/V bytes per GPU for one layer's attention: ring vs all-gather.

    The ring holds its own block and the one arriving (2 * S/cp tokens); the all-gather
    holds the whole sequence's K/V of the layer (S tokens), whatever cp is.
    """
    tp, cp = _degrees(model, tp, cp)
    per_token = kv_bytes_per_token(model, kv_dtype) / get_model(model).n_layers
    layer = per_token * positive_int("seq_len", seq_len) / kv_split(model, tp)
    return {"ring": 2 * layer / cp, "allgather": layer}


def _fraction(mfu: float) -> float:
    mfu = positive_float("mfu", mfu)
    if mfu > 1:
        raise ValueError(f"mfu is a fraction of peak; pass 0 < mfu <= 1, got {mfu}")
    return mfu


# --- sympy ---------------------------------------------------------------------------------

c, H, H_kv, d_h, b, F, B, f = sp.symbols("c H H_kv d_h b F B f", positive=True)


def step_compute_time() -> sp.Expr:
    """One ring step: c queries against a c-token block, a fraction f unmasked (1/2 causal)."""
    return 4 * H * d_h * c**2 * f / F


def step_comm_time() -> sp.Expr:
    """Sending one K/V block of c tokens: 2 tensors of H_kv * d_h values, b bytes each."""
    return 2 * H_kv * d_h * b * c / B


def derive_overlap_threshold() -> sp.Expr:
    """The block length c* at which compute and communication of a step take equally long."""
    (root,) = sp.solve(sp.Eq(step_compute_time(), step_comm_time()), c)
    return sp.simplify(root)

