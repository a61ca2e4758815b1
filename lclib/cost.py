"""The cost model: KV bytes, prefill FLOPs and time, decode time, capacity.

Conventions (the book's chapter 1 derives them):
- linear FLOPs: 2 per weight per token over the non-embedding weights (Kaplan et al.'s N);
  the LM head and embedding lookup are left out, as in Kaplan et al. 2020 Eq. 2.2.
- attention FLOPs: QK^T and AV, 2 FLOPs per multiply-add, 4 * n_heads * head_dim per
  (query, key) pair and layer; a causal prefill of S tokens visits S^2/2 pairs, a full one S^2.
- memory-bound decode reads every weight and every cached K/V byte once per step.
All sizes are bytes, times seconds, rates per second.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .hardware import GPU, get_gpu
from .models import ModelConfig, get_model
from .units import bytes_for, dtype_bits, positive_float, positive_int

ModelLike = ModelConfig | str
GPULike = GPU | str


def kv_bytes_per_token(model: ModelLike, kv_dtype: str = "bf16") -> int:
    """K and V of one token over all layers: 2 * L * H_kv * d_head * bytes."""
    m = get_model(model)
    return bytes_for(2 * m.n_layers * m.kv_dim, kv_dtype)


def kv_cache_bytes(model: ModelLike, seq_len: int, batch: int = 1, kv_dtype: str = "bf16") -> int:
    """KV cache of `batch` sequences of `seq_len` tokens each.

    A model with a `sliding_window` keeps only the last `sliding_window` tokens per layer.
    """
    seq_len, batch = positive_int("seq_len", seq_len), positive_int("batch", batch)
    window = get_model(model).sliding_window
    return kv_bytes_per_token(model, kv_dtype) * min(seq_len, window or seq_len) * batch


def weight_bytes(model: ModelLike, weight_dtype: str = "bf16") -> int:
    """All parameters stored in `weight_dtype`."""
    return bytes_for(get_model(model).n_params, weight_dtype)


def checkpoint_bytes(model: ModelLike, weight_dtype: str = "int4", group_size: int = 128) -> int:
    """Bytes of a real quantized checkpoint, AWQ/GPTQ style, rather than every weight at
    `weight_dtype` (`weight_bytes`).

    The block matmuls are stored in `weight_dtype`; integer formats add, per group of
    `group_size` weights, a bf16 scale and a zero point of the same width (AWQ packs both so);
    the embedding table, the LM head and the norms stay in bf16. FP8 checkpoints keep one scale
    per tensor or channel (negligible) and bf16 embeddings. bf16/fp16/fp32 = `weight_bytes`.
    """
    m = get_model(model)
    if dtype_bits(weight_dtype) >= 16:
        return weight_bytes(m, weight_dtype)
    group_size = positive_int("group_size", group_size)
    linear = m.n_layers * (m.params_per_layer - 2 * m.hidden_size)  # the norms stay bf16
    scales = 0 if weight_dtype == "fp8" else -(-linear // group_size) * (16 + dtype_bits(
        weight_dtype))
    return (bytes_for(linear, weight_dtype) + -(-scales // 8)
            + bytes_for(m.n_params - linear, "bf16"))


@dataclass(frozen=True)
class Reserve:
    """Memory on each GPU that holds neither weights nor KV cache, named part by part.

    - `utilization`: the fraction of the device total the engine may use at all (vLLM's
      `gpu_memory_utilization`, default 0.9; the rest stays free, and the CUDA context sits in it).
    - `runtime_bytes`: CUDA context, cuBLAS workspaces, NCCL buffers, CUDA graphs, per GPU.
    - `prefill_chunk`: tokens one GPU runs through the model in one step; their activations
      (`activation_bytes`) must fit beside the KV. 0 = not counted.
    """

    utilization: float = 1.0
    runtime_bytes: int = 0
    prefill_chunk: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.utilization <= 1:
            raise ValueError(f"utilization is a fraction of the device total; pass 0 < u <= 1, "
                             f"got {self.utilization!r}")
        if self.runtime_bytes < 0 or self.prefill_chunk < 0:
            raise ValueError("runtime_bytes and prefill_chunk must be >= 0 (0 = not counted)")

    def bytes_per_gpu(self, model: ModelLike, gpu: GPULike, tp: int = 1) -> float:
        """Reserved bytes on each GPU of a tensor-parallel group of `tp` GPUs."""
        unused = (1 - self.utilization) * get_gpu(gpu).hbm_bytes
        chunk = activation_bytes(model, self.prefill_chunk, tp) if self.prefill_chunk else 0
        return unused + self.runtime_bytes + chunk


# The hardware's ceiling: nothing but weights and KV. lclib's default, so that a count is what
# the memory could hold whatever engine runs on it.
NO_RESERVE = Reserve()
# What vLLM leaves for KV (vllm/v1/worker/gpu_worker.py: KV = total * gpu_memory_utilization -
# weights - profiled peak activations - non-torch memory), with its defaults:
# gpu_memory_utilization 0.9 and 8,192 tokens per step (max_num_batched_tokens for the API server
# on GPUs of >= 70 GiB, vllm/engine/arg_utils.py; 2,048 on A100s). Its CUDA graphs and NCCL
# buffers (hundreds of MB, measured by vLLM at start-up) are not counted here.
VLLM_RESERVE = Reserve(utilization=0.9, prefill_chunk=8192)


def activation_bytes(model: ModelLike, tokens: int, tp: int = 1, dtype: str = "bf16") -> int:
    """Activations alive at once when one GPU of a `tp`-way group runs `tokens` tokens.

    The residual stream (tokens x d, replicated on every TP rank) plus the MLP's intermediates
    (gate, up and their product for a gated MLP, up and its activation for a plain one, split by
    TP): the largest tensors of a forward pass. An estimate, not a profiler's peak.
    """
    m = get_model(model)
    tokens, tp = positive_int("tokens", tokens), positive_int("tp", tp)
    mlp = (3 if m.mlp == "gated" else 2) * m.intermediate_size / tp
    return math.ceil(bytes_for(tokens * m.hidden_size, dtype) + bytes_for(tokens, dtype) * mlp)


def kv_budget(model: ModelLike, gpu: GPULike, n_gpus: int = 1, weight_dtype: str = "bf16",
              reserve: Reserve = NO_RESERVE) -> int:
    """Bytes left for KV cache on `n_gpus` GPUs that share the weights (tensor parallelism).

    Device-reported total (`GPU.hbm_bytes`) minus the weights minus `reserve` on every GPU;
    negative when the weights and the reserve alone overflow. The one capacity function:
    `max_concurrency`, `cp_gpus_needed` and the chapters all budget with it.
    """
    n_gpus = positive_int("n_gpus", n_gpus)
    per_gpu = get_gpu(gpu).hbm_bytes - reserve.bytes_per_gpu(model, gpu, n_gpus)
    return math.floor(n_gpus * per_gpu) - weight_bytes(model, weight_dtype)


def max_concurrency(model: ModelLike, gpu: GPULike, seq_len: int, n_gpus: int = 1,
                    weight_dtype: str = "bf16", kv_dtype: str = "bf16",
                    reserve: Reserve = NO_RESERVE) -> int:
    """Requests of `seq_len` tokens whose KV fits in `kv_budget` (0 if none does).

    With the default `NO_RESERVE` this is the hardware's ceiling; pass `VLLM_RESERVE` (or your
    own `Reserve`) for what an engine leaves.
    """
    free = kv_budget(model, gpu, n_gpus, weight_dtype, reserve)
    return max(0, free // kv_cache_bytes(model, seq_len, kv_dtype=kv_dtype))


@dataclass(frozen=True)
class PrefillFlops:
    """FLOPs of one prefill, split into the weight matmuls and the attention core."""

    linear: float
    attention: float

    @property
    def total(self) -> float:
        return self.linear + self.attention

    @property
    def attention_share(self) -> float:
        """Attention as a fraction of all prefill FLOPs."""
        return self.attention / self.total


def attention_pairs(seq_len: float, causal: bool = True) -> float:
    """(query, key) pairs a prefill scores: S^2/2 causal (the mask halves the work), else S^2."""
    return seq_len * seq_len / (2 if causal else 1)


def prefill_flops(model: ModelLike, seq_len: int, causal: bool = True) -> PrefillFlops:
    """FLOPs to prefill one sequence of `seq_len` tokens."""
    m = get_model(model)
    seq_len = positive_int("seq_len", seq_len)
    linear = 2.0 * m.n_params_nonembedding * seq_len
    attention = 4.0 * m.n_layers * m.q_dim * attention_pairs(seq_len, causal)
    return PrefillFlops(linear=linear, attention=attention)


def crossover_seq_len(model: ModelLike, causal: bool = True) -> float:
    """Sequence length at which attention FLOPs equal linear FLOPs.

    Solves 2*N*S = 4*L*q_dim*S^2/k (k = 2 causal, 1 not): S = k*N / (2*L*q_dim).
    """
    m = get_model(model)
    return (2 if causal else 1) * m.n_params_nonembedding / (2 * m.n_layers * m.q_dim)


def prefill_time(model: ModelLike, gpu: GPULike, seq_len: int, n_gpus: int = 1,
                 mfu: float = 0.4, dtype: str = "bf16", causal: bool = True) -> float:
    """Seconds to prefill `seq_len` tokens on `n_gpus` running at a fraction `mfu` of peak."""
    n_gpus = positive_int("n_gpus", n_gpus)
    mfu = positive_float("mfu", mfu)
    if mfu > 1:
        raise ValueError(f"mfu is a fraction of peak; pass 0 < mfu <= 1, got {mfu}")
    rate = n_gpus * get_gpu(gpu).peak_flops(dtype) * mfu
    return prefill_flops(model, seq_len, causal).total / rate


def implied_mfu(model: ModelLike, gpu: GPULike, seq_len: int, seconds: float, n_gpus: int = 1,
                dtype: str = "bf16", causal: bool = True) -> float:
    """The MFU at which lclib's prefill FLOPs take `seconds`: a published time read back as a
    fraction of `n_gpus` GPUs' dense peak (the inverse of `prefill_time`)."""
    rate = positive_int("n_gpus", n_gpus) * get_gpu(gpu).peak_flops(dtype)
    return prefill_flops(model, seq_len, causal).total / (positive_float("seconds", seconds) * rate)


def decode_step_time(model: ModelLike, gpu: GPULike, context_len: int, batch: int = 1,
                     n_gpus: int = 1, weight_dtype: str = "bf16", kv_dtype: str = "bf16") -> float:
    """Seconds for one memory-bound decode step: weights + batch*KV read over HBM bandwidth."""
    n_gpus = positive_int("n_gpus", n_gpus)
    read = weight_bytes(model, weight_dtype) + kv_cache_bytes(model, context_len, batch, kv_dtype)
    return read / (n_gpus * get_gpu(gpu).hbm_bandwidth)


def context_switch_time(model: ModelLike, gpu: GPULike, seq_len: int,
                        kv_dtype: str = "bf16") -> float:
    """Seconds to move one request's KV cache across PCIe (one direction)."""
    return kv_cache_bytes(model, seq_len, kv_dtype=kv_dtype) / get_gpu(gpu).pcie_bandwidth


def cp_gpus_needed(model: ModelLike, gpu: GPULike, seq_len: int, weight_dtype: str = "bf16",
                   kv_dtype: str = "bf16", reserve: Reserve = NO_RESERVE) -> int:
    """Fewest GPUs whose `kv_budget` holds one request's KV (weights and KV sharded evenly).

    Weights split by tensor parallelism, the sequence's KV by context parallelism. A reserve
    with a `prefill_chunk` counts that chunk's activations on every GPU (chunked prefill); a
    one-shot prefill of the whole request is `Reserve(prefill_chunk=seq_len)`.
    """
    g, need = get_gpu(gpu), kv_cache_bytes(model, seq_len, kv_dtype=kv_dtype)
    if reserve.bytes_per_gpu(model, g, tp=2**20) >= g.hbm_bytes:
        raise ValueError(f"the reserve alone fills a {g.name}; pass a smaller Reserve "
                         "(a lower prefill_chunk or runtime_bytes, a higher utilization)")
    n = max(1, math.ceil((weight_bytes(model, weight_dtype) + need) / g.hbm_bytes))
    while kv_budget(model, g, n, weight_dtype, reserve) < need:
        n += 1
    return n


# --- the roofline: arithmetic intensity against the ridge point ----------------------------

@dataclass(frozen=True)
class Roofline:
    """FLOPs and HBM bytes of one kernel (or model pass), and what bounds it on a GPU."""

    flops: float
    bytes: float

    @property
    def intensity(self) -> float:
        """FLOPs per byte moved to or from HBM."""
        return self.flops / self.bytes

    def time(self, gpu: GPULike, dtype: str = "bf16") -> float:
        """Roofline seconds: the slower of compute at peak and traffic at full bandwidth."""
        g = get_gpu(gpu)
        return max(self.flops / g.peak_flops(dtype), self.bytes / g.hbm_bandwidth)

    def bound(self, gpu: GPULike, dtype: str = "bf16") -> str:
        """"compute" above the GPU's ridge point, else "memory"."""
        return "compute" if self.intensity >= get_gpu(gpu).ridge_point(dtype) else "memory"


def linear_roofline(model: ModelLike, tokens: int, weight_dtype: str = "bf16",
                    act_dtype: str = "bf16") -> Roofline:
    """The weight matmuls of one forward pass over `tokens` tokens (a batch or a prompt).

    Each matrix [d_in, d_out] does 2*T*d_in*d_out FLOPs and moves its weights plus T*(d_in +
    d_out) activations: the intensity is about 2T/(bytes per weight), i.e. T in bf16, while T is
    small against the widths.
    """
    m = get_model(model)
    tokens = positive_int("tokens", tokens)
    d, f = m.hidden_size, m.intermediate_size
    shapes = [(d, m.q_dim), (d, m.kv_dim), (d, m.kv_dim), (m.q_dim, d)]
    shapes += [(d, f)] * (2 if m.mlp == "gated" else 1) + [(f, d)]
    flops = sum(2 * tokens * i * o for i, o in shapes) * m.n_layers
    acts = sum(bytes_for(tokens * (i + o), act_dtype) for i, o in shapes) * m.n_layers
    weights = bytes_for(sum(i * o for i, o in shapes) * m.n_layers, weight_dtype)
    return Roofline(flops=flops, bytes=weights + acts)


def attention_roofline(model: ModelLike, context: int, new_tokens: int | None = None,
                       kv_dtype: str = "bf16", act_dtype: str = "bf16",
                       causal: bool = True) -> Roofline:
    """Attention over all layers for `new_tokens` queries at the end of a `context`-token sequence.

    A prefill is new_tokens = context (the default); a decode step is new_tokens = 1. A
    FlashAttention-style kernel reads Q and the cached K, V once and writes O: scores never
    reach HBM. Intensity: about S/2 for an MHA prefill without the mask, the GQA group
    H/H_kv for a decode step with a bf16 KV cache.
    """
    m = get_model(model)
    context = positive_int("context", context)
    new = context if new_tokens is None else positive_int("new_tokens", new_tokens)
    if new > context:
        raise ValueError(f"new_tokens={new} exceeds context={context}; pass new_tokens <= context")
    pairs = new * (context - new) + attention_pairs(new, causal)
    flops = 4.0 * m.n_layers * m.q_dim * pairs
    kv = bytes_for(2 * m.n_layers * m.kv_dim * context, kv_dtype)
    q_and_o = bytes_for(2 * m.n_layers * m.q_dim * new, act_dtype)
    return Roofline(flops=flops, bytes=kv + q_and_o)
