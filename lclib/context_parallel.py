"""Context parallelism, the cost side: memory per GPU, ring steps, when communication hides.

A deployment runs tensor parallelism of degree `tp` (weights and heads split) times context
parallelism of degree `cp` (the sequence split); it has tp * cp GPUs. Ring attention
(Liu et al. 2023) passes each rank's K/V block to the next rank while attending to the block
it holds; a step's communication hides behind its compute when the block is long enough:
c >= P/BW_link tokens for MHA in bf16 without a mask (P peak FLOP/s, BW_link the link's bytes/s
one way).
The all-gather alternative (the Llama 3 report's context parallelism) gathers a layer's whole
K/V on every rank before attention instead. Torch-free; sizes in bytes, times in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from .cost import (
    NO_RESERVE,
    GPULike,
    ModelLike,
    Reserve,
    attention_pairs,
    kv_budget,
    kv_bytes_per_token,
    kv_cache_bytes,
    prefill_flops,
    weight_bytes,
)
from .hardware import get_gpu
from .models import get_model
from .units import bytes_for, positive_float, positive_int


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
    kv = kv_cache_bytes(model, seq_len, kv_dtype=kv_dtype) / (kv_split(model, tp) * cp)
    return {"weights": weights, "kv": kv, "total": weights + kv}


def min_cp(model: ModelLike, gpu: GPULike, seq_len: int, tp: int = 8,
           weight_dtype: str = "bf16", kv_dtype: str = "bf16",
           reserve: Reserve = NO_RESERVE) -> int | None:
    """Smallest power-of-two CP degree whose per-GPU KV fits that GPU's share of
    `lclib.kv_budget` (one TP group); None if the weights and the reserve alone overflow."""
    free = kv_budget(model, gpu, tp, weight_dtype, reserve) / tp
    if free <= 0:
        return None
    cp = 1
    while per_gpu_memory(model, seq_len, tp, cp, weight_dtype, kv_dtype)["kv"] > free:
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
    Liu et al.'s c >= P/BW_link (their F/B) is the MHA, bf16, unmasked, mfu = 1 case.
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

c, H, H_kv, d_h, b, P, f = sp.symbols("c H H_kv d_h b P f", positive=True)  # P: FLOP/s
BW_link = sp.Symbol("BW_{link}", positive=True)  # link bytes/s, one way


def derive_step_compute_time() -> sp.Expr:
    """One ring step: c queries against a c-token block, a fraction f unmasked (1/2 causal)."""
    return 4 * H * d_h * c**2 * f / P


def derive_step_comm_time() -> sp.Expr:
    """Sending one K/V block of c tokens: 2 tensors of H_kv * d_h values, b bytes each."""
    return 2 * H_kv * d_h * b * c / BW_link


def derive_overlap_threshold() -> sp.Expr:
    """The block length c* at which compute and communication of a step take equally long."""
    (root,) = sp.solve(sp.Eq(derive_step_compute_time(), derive_step_comm_time()), c)
    return sp.simplify(root)



# --- the ring's schedule: layouts, which K/V block a rank holds, which tiles it computes ------
# lclib.ring runs this schedule on tensors; the pictures draw it. A sequence of S tokens is cut
# into equal chunks: `contiguous` gives rank r chunk r of N, `zigzag` cuts 2N chunks and gives
# rank r chunks r and 2N-1-r, so that under the causal mask every rank does the same work (the
# load balance of ring-flash-attention and of the Llama 3 report).

LAYOUTS = ("zigzag", "contiguous")
FULL, DIAGONAL, SKIP = "full", "diagonal", "skip"


def rank_chunks(world_size: int, layout: str = "zigzag") -> list[list[int]]:
    """Chunk indices each rank holds, in sequence order: zigzag [[0, 2N-1], [1, 2N-2], ...]."""
    n = positive_int("world_size", world_size)
    if layout == "contiguous":
        return [[r] for r in range(n)]
    if layout == "zigzag":
        return [[r, 2 * n - 1 - r] for r in range(n)]
    raise ValueError(f"unknown layout {layout!r}; pass one of {', '.join(LAYOUTS)}")


def n_chunks(world_size: int, layout: str) -> int:
    """Chunks the sequence is cut into: N contiguous, 2N zigzag."""
    return sum(len(c) for c in rank_chunks(world_size, layout))


def chunk_len(seq_len: int, world_size: int, layout: str) -> int:
    """Tokens per chunk; ValueError unless the chunks are equal."""
    seq_len, n = positive_int("seq_len", seq_len), n_chunks(world_size, layout)
    if seq_len % n:
        raise ValueError(f"seq_len {seq_len} does not split into {n} equal chunks for the "
                         f"{layout} layout over {world_size} ranks; pass a multiple of {n}")
    return seq_len // n


def pair_kind(q_chunk: int, k_chunk: int, causal: bool) -> str:
    """What a (query chunk, key chunk) pair needs: full attention, the causal diagonal, or skip."""
    if not causal or k_chunk < q_chunk:
        return FULL
    return DIAGONAL if k_chunk == q_chunk else SKIP


def ring_source(rank: int, step: int, world_size: int) -> int:
    """The rank whose K/V block `rank` holds at ring `step` (blocks move to rank + 1)."""
    return (rank - step) % world_size


def step_tiles(world_size: int, layout: str, rank: int, step: int,
               causal: bool = True) -> dict[tuple[int, int], str]:
    """The (query chunk, key chunk) tiles `rank` meets at ring `step`, each with its
    `pair_kind`: its own query chunks against the chunks of the K/V block it holds."""
    chunks = rank_chunks(world_size, layout)
    return {(qc, kc): pair_kind(qc, kc, causal) for qc in chunks[rank]
            for kc in chunks[ring_source(rank, step, world_size)]}


def block_flops(seq_len: int, world_size: int, layout: str = "zigzag", causal: bool = True,
                n_heads: int = 1, head_dim: int = 1) -> list[list[float]]:
    """Attention FLOPs (QK^T and AV, 4*H*d per pair) of each rank at each ring step.

    A diagonal chunk pair counts half its pairs, as `lclib.cost.attention_pairs` does.
    """
    c, per_pair = chunk_len(seq_len, world_size, layout), 4.0 * n_heads * head_dim
    pairs = {FULL: attention_pairs(c, causal=False), DIAGONAL: attention_pairs(c, causal=True),
             SKIP: 0.0}
    return [[per_pair * sum(pairs[kind] for kind in step_tiles(world_size, layout, r, s,
                                                                causal).values())
             for s in range(world_size)] for r in range(world_size)]


# --- load balance, other layouts, serving -------------------------------------------------------

def ring_wall_clock(cp: int, layout: str = "zigzag") -> float:
    """Causal ring attention's wall-clock in units of one full block (S/cp queries x S/cp keys).

    Ring steps are synchronized: each lasts as long as its busiest rank. Contiguous: a
    half-masked diagonal block, then a full block on some rank at every later step, N - 1/2.
    Zigzag: every rank does half a block's work at every step, N/2. Their ratio is (2N-1)/N,
    not the 2N-1 of the busiest over the idlest rank's total work.
    """
    cp = positive_int("cp", cp)
    if layout not in ("contiguous", "zigzag"):
        raise ValueError(f"unknown layout {layout!r}; pass 'contiguous' or 'zigzag'")
    return cp / 2 if layout == "zigzag" or cp == 1 else cp - 0.5


def ulysses_max_degree(model: ModelLike, tp: int = 1) -> int:
    """Largest Ulysses (all-to-all over heads) degree on top of TP without replicating K/V heads.

    Ulysses turns a sequence shard into a head shard, so each rank needs whole K/V heads: the
    degree divides the K/V heads a TP rank holds. Llama-3.3-70B at TP = 8 holds one: 1.
    """
    tp, _ = _degrees(model, tp, 1)
    per_rank = max(1, get_model(model).n_kv_heads // kv_split(model, tp))
    return per_rank


def pass_kv_vs_pass_q(model: ModelLike, new_tokens: int, cached_tokens: int = 0,
                      kv_dtype: str = "bf16", act_dtype: str = "bf16") -> dict[str, float]:
    """Bytes one layer's ring moves (all ranks' blocks, before the (N-1)/N each rank receives):
    pass-KV sends every K/V block, new and cached tokens; pass-Q sends the new tokens' queries
    and brings their partial outputs and log-sum-exps back (Meta's two variants, arXiv
    2411.01783). The fewer the new tokens against the cache, the more pass-Q saves."""
    m = get_model(model)
    new = positive_int("new_tokens", new_tokens)
    if not isinstance(cached_tokens, int) or cached_tokens < 0:
        raise ValueError(f"cached_tokens must be an int >= 0, got {cached_tokens!r}")
    kv = bytes_for(2 * m.kv_dim * (new + cached_tokens), kv_dtype)
    q = bytes_for(2 * m.q_dim * new, act_dtype) + bytes_for(m.n_heads * new, "fp32")
    return {"pass_kv": kv, "pass_q": q}


def kv_transfer_time(model: ModelLike, gpu: GPULike, seq_len: int, n_gpus: int = 8,
                     link: str = "infiniband", kv_dtype: str = "bf16") -> float:
    """Seconds to move one request's KV from a prefill node to a decode node (disaggregated
    serving), each of `n_gpus` GPUs sending its shard over its own `link`."""
    n_gpus = positive_int("n_gpus", n_gpus)
    kv = kv_bytes_per_token(model, kv_dtype) * positive_int("seq_len", seq_len)
    return kv / (n_gpus * link_bandwidth(link, gpu))
