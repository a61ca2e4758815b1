"""Chapter 2, the KV wall: Yao Fu's four metrics reproduced with lclib's cost model, and the
capacity formulas the chapter derives on top of `lclib.cost` and `lclib.derive`.

Fu (arXiv 2405.08944) splits long-context serving into four metrics, each bound by one resource:
concurrency (HBM size), prefill (FLOP/s), decode (HBM bandwidth), context switching (PCIe).
`four_metrics` computes them with lclib's conventions; `fu_convention` with the inputs his
running example states (a "34B" model = 68 GB of bf16 weights, attention as L*d*n^2 FLOPs);
`fu_table` sets both beside his published figures. Torch-free, like `lclib.cost`.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from . import derive as D
from .cost import (
    NO_RESERVE,
    GPULike,
    ModelLike,
    Reserve,
    context_switch_time,
    decode_step_time,
    kv_budget,
    kv_bytes_per_token,
    kv_cache_bytes,
    max_concurrency,
    prefill_time,
    weight_bytes,
)
from .hardware import get_gpu
from .models import get_model
from .units import GiB, positive_int

FU_MODEL, FU_GPU = "yi-34b", "a100-80gb"
FU_DECODE_TOKENS = 250  # "one screen" of output in Fu's decode example
FU_NOMINAL_PARAMS = 34e9  # "34B": his 68 GB of weights is 2 bytes x 34e9
FU_SOURCE = ("Fu 2024, arXiv 2405.08944 (fu2024challenges), as quoted by the course's summaries "
             "of the paper; its body's exact formulas were not available to us")
# Fu's published figures for the 34B model (Yi-34B architecture, bf16) on one A100 80GB.
FU_REPORTED: dict[str, float] = {
    "kv_gib_4k": 0.91, "kv_gib_100k": 22.8,  # printed as "GB"
    "users_4k": 20, "users_50k": 1,
    "prefill_s_4k": 0.89, "prefill_s_50k": 14.1,
    "decode_s_4k": 8.5, "decode_s_50k": 9.8,
}


@dataclass(frozen=True)
class FourMetrics:
    """Fu's four metrics for requests of `seq_len` tokens (bytes, request count, seconds)."""

    seq_len: int
    kv_bytes: int  # one request's KV cache
    concurrency: int  # requests whose KV fits beside the weights
    prefill_s: float  # one prefill at the given MFU
    decode_s: float  # `decode_tokens` memory-bound steps at this context
    switch_s: float  # one request's KV over PCIe, one direction, each GPU its own shard


def four_metrics(model: ModelLike, gpu: GPULike, seq_len: int,
                 decode_tokens: int = FU_DECODE_TOKENS, n_gpus: int = 1, mfu: float = 1.0,
                 weight_dtype: str = "bf16", kv_dtype: str = "bf16",
                 reserve: Reserve = NO_RESERVE) -> FourMetrics:
    """The four metrics by lclib's cost model; `mfu=1.0` is Fu's theoretical peak.

    All four are lower bounds on time (upper bounds on users): peak rates, no TP all-reduce.
    Decode reads the weights and a `seq_len`-token KV cache at every step (the cache's growth
    during the `decode_tokens` steps is ignored, as in Fu's estimate). With `n_gpus` > 1 (tensor
    parallelism) each GPU moves its shard of the KV over its own PCIe link.
    """
    decode_tokens = positive_int("decode_tokens", decode_tokens)
    step = decode_step_time(model, gpu, seq_len, n_gpus=n_gpus, weight_dtype=weight_dtype,
                            kv_dtype=kv_dtype)
    return FourMetrics(
        seq_len=seq_len,
        kv_bytes=kv_cache_bytes(model, seq_len, kv_dtype=kv_dtype),
        concurrency=max_concurrency(model, gpu, seq_len, n_gpus, weight_dtype, kv_dtype,
                                    reserve),
        prefill_s=prefill_time(model, gpu, seq_len, n_gpus=n_gpus, mfu=mfu),
        decode_s=decode_tokens * step,
        switch_s=context_switch_time(model, gpu, seq_len, kv_dtype) / n_gpus,
    )


def session_throughput(model: ModelLike, gpu: GPULike, seq_len: int,
                       decode_tokens: int = FU_DECODE_TOKENS, n_gpus: int = 1, mfu: float = 1.0,
                       weight_dtype: str = "bf16", kv_dtype: str = "bf16",
                       reserve: Reserve = NO_RESERVE) -> float:
    """Sessions per second, Fu's end-to-end objective, at the peak rates of `four_metrics`.

    As many sessions as fit run as one batch: their prefills one after another (each is
    compute-bound already), then `decode_tokens` steps that read the weights once for the whole
    batch and every session's own KV. 0 when not one session fits.
    """
    m = four_metrics(model, gpu, seq_len, decode_tokens, n_gpus, mfu, weight_dtype, kv_dtype,
                     reserve)
    if m.concurrency == 0:
        return 0.0
    step = decode_step_time(model, gpu, seq_len, m.concurrency, n_gpus, weight_dtype, kv_dtype)
    return m.concurrency / (m.concurrency * m.prefill_s + decode_tokens * step)


@dataclass(frozen=True)
class FuConvention:
    """Fu's example recomputed with the inputs it states, before any rounding."""

    seq_len: int
    users: float  # (80 GB - 68 GB) / KV with the datasheet's 80 GB, not rounded down
    prefill_linear_s: float  # 2*N*n / peak, N = 34e9
    prefill_attention_s: float  # L*d*n^2 / peak
    decode_s: float  # decode_tokens * (68 GB + KV) / bandwidth


def fu_convention(seq_len: int, decode_tokens: int = FU_DECODE_TOKENS) -> FuConvention:
    """Fu's running example (Yi-34B on one A100 80GB) under his stated assumptions.

    These differ from lclib's in four places, each named on the chapter page: the datasheet's
    80 GB (lclib: the 85.06e9 B the device reports), weights of 2 x 34e9 bytes (lclib counts the
    exact 34.39e9 parameters), attention prefill FLOPs of L*d*n^2 (half of lclib's causal
    2*L*H*d_h*n^2), and users not rounded down to whole requests.
    """
    seq_len = positive_int("seq_len", seq_len)
    decode_tokens = positive_int("decode_tokens", decode_tokens)
    m, g = get_model(FU_MODEL), get_gpu(FU_GPU)
    weights, kv, peak = 2 * FU_NOMINAL_PARAMS, kv_cache_bytes(m, seq_len), g.peak_flops("bf16")
    return FuConvention(
        seq_len=seq_len,
        users=(g.datasheet_hbm_bytes - weights) / kv,
        prefill_linear_s=2 * FU_NOMINAL_PARAMS * seq_len / peak,
        prefill_attention_s=m.n_layers * m.hidden_size * seq_len**2 / peak,
        decode_s=decode_tokens * (weights + kv) / g.hbm_bandwidth,
    )


@dataclass(frozen=True)
class FuRow:
    """One line of the reproduction table: Fu's figure, lclib's, Fu's inputs, and why."""

    metric: str
    unit: str
    reported: float
    lclib: float
    convention: float | None
    note: str


def fu_table() -> list[FuRow]:
    """Fu's published figures next to lclib's numbers and his stated assumptions.

    "4K" is 4,000 tokens in every row (the convention under which his KV sizes reproduce).
    """
    at = {n: four_metrics(FU_MODEL, FU_GPU, n) for n in (4_000, 50_000, 100_000)}
    fu = {n: fu_convention(n) for n in (4_000, 50_000)}
    r = FU_REPORTED
    return [
        FuRow("KV cache at 4K", "GiB", r["kv_gib_4k"], at[4_000].kv_bytes / GiB, None,
              "4K = 4,000 tokens, in GiB (2^30 bytes), cut (not rounded) to 0.91"),
        FuRow("KV cache at 100K", "GiB", r["kv_gib_100k"], at[100_000].kv_bytes / GiB, None,
              "100,000 tokens in GiB, cut (not rounded) to 22.8"),
        FuRow("concurrency at 4K", "users", r["users_4k"], at[4_000].concurrency,
              fu[4_000].users, "not reproduced: (80 - 68) GB holds 12 such requests, the "
              "device's 85.06 GB 16"),
        FuRow("concurrency at 50K", "users", r["users_50k"], at[50_000].concurrency,
              fu[50_000].users, "(80 - 68) GB holds 0.98 of one; the device's 85.06 GB one"),
        FuRow("prefill at 4K", "s", r["prefill_s_4k"], at[4_000].prefill_s,
              fu[4_000].prefill_linear_s + fu[4_000].prefill_attention_s,
              "2*N*n + L*d*n^2 with N = 34e9, n = 4,000, at peak"),
        FuRow("prefill at 50K", "s", r["prefill_s_50k"], at[50_000].prefill_s,
              fu[50_000].prefill_linear_s + fu[50_000].prefill_attention_s,
              "2*N*n plus attention as L*d*n^2: half of lclib's causal 2*L*H*d_h*n^2"),
        FuRow("decode 250 tokens at 4K", "s", r["decode_s_4k"], at[4_000].decode_s,
              fu[4_000].decode_s, "68 GB of weights (N = 34e9) at 2.039 TB/s"),
        FuRow("decode 250 tokens at 50K", "s", r["decode_s_50k"], at[50_000].decode_s,
              fu[50_000].decode_s, "68 GB of weights plus the 50,000-token KV at 2.039 TB/s"),
    ]


# --- capacity formulas derived in the chapter ------------------------------------------------

def longest_context(model: ModelLike, gpu: GPULike, n_gpus: int = 1, weight_dtype: str = "bf16",
                    kv_dtype: str = "bf16", reserve: Reserve = NO_RESERVE) -> int:
    """The longest request (tokens) whose KV fits in `lclib.kv_budget`: 0 if the weights (and
    the reserve) alone overflow. Solves concurrency = 1 for the context
    (`derive_longest_context`)."""
    free = kv_budget(model, gpu, n_gpus, weight_dtype, reserve)
    tokens = max(0, free // kv_bytes_per_token(model, kv_dtype))
    window = get_model(model).sliding_window
    if window and tokens >= window:
        raise ValueError(f"{get_model(model).name} keeps only a {window:,}-token window, which "
                         "fits: any context does; ask max_concurrency for a length instead")
    return tokens


def derive_longest_context() -> sp.Expr:
    """sympy: the S at which free HBM holds exactly one request, (n*HBM - W) / (2*L*H_kv*d_h*b)."""
    (root,) = sp.solve(sp.Eq(D.concurrency(), 1), D.S)
    return root


def kv_equals_weights_tokens(model: ModelLike, weight_dtype: str = "bf16",
                             kv_dtype: str = "bf16") -> float:
    """Tokens in flight (context x batch) at which a decode step reads as many KV bytes as
    weight bytes (`lclib.derive.kv_equals_weights_tokens`)."""
    return weight_bytes(model, weight_dtype) / kv_bytes_per_token(model, kv_dtype)


def derive_kv_share_of_step() -> sp.Expr:
    """sympy: the KV reads' share of a memory-bound decode step, S*B*kv / (W + S*B*kv)."""
    return sp.simplify(D.kv_cache_bytes() / (D.W + D.kv_cache_bytes()))
