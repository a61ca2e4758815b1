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
from .units import bytes_for, positive_float, positive_int

ModelLike = ModelConfig | str
GPULike = GPU | str


def kv_bytes_per_token(model: ModelLike, kv_dtype: str = "bf16") -> int:
    """K and V of one token over all layers: 2 * L * H_kv * d_head * bytes."""
    m = get_model(model)
    return bytes_for(2 * m.n_layers * m.kv_dim, kv_dtype)


def kv_cache_bytes(model: ModelLike, seq_len: int, batch: int = 1, kv_dtype: str = "bf16") -> int:
    """KV cache of `batch` sequences of `seq_len` tokens each."""
    seq_len, batch = positive_int("seq_len", seq_len), positive_int("batch", batch)
    return kv_bytes_per_token(model, kv_dtype) * seq_len * batch


def weight_bytes(model: ModelLike, weight_dtype: str = "bf16") -> int:
    """All parameters stored in `weight_dtype`."""
    return bytes_for(get_model(model).n_params, weight_dtype)


def max_concurrency(model: ModelLike, gpu: GPULike, seq_len: int, n_gpus: int = 1,
                    weight_dtype: str = "bf16", kv_dtype: str = "bf16") -> int:
    """Requests of `seq_len` tokens whose KV fits beside the weights in the HBM of `n_gpus`.

    An upper bound: activations, fragmentation and runtime reserves are ignored.
    """
    n_gpus = positive_int("n_gpus", n_gpus)
    free = n_gpus * get_gpu(gpu).hbm_bytes - weight_bytes(model, weight_dtype)
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


def cp_gpus_needed(model: ModelLike, gpu: GPULike, seq_len: int,
                   weight_dtype: str = "bf16", kv_dtype: str = "bf16") -> int:
    """Fewest GPUs whose HBM holds the weights plus one request's KV, both sharded evenly.

    Weights split by tensor parallelism, the sequence's KV by context parallelism;
    activations and runtime reserves are ignored, so real deployments need more.
    """
    need = weight_bytes(model, weight_dtype) + kv_cache_bytes(model, seq_len, kv_dtype=kv_dtype)
    return math.ceil(need / get_gpu(gpu).hbm_bytes)
