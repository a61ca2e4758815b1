"""The cost model in sympy: each formula of `lclib.cost` as a symbolic expression.

Chapters derive with these; the tests lambdify each one and check it against its
numeric twin in `lclib.cost` on random inputs.
"""

from __future__ import annotations

import sympy as sp

# architecture
L, d, H, H_kv, d_h, F = sp.symbols("L d H H_kv d_h F", positive=True)
m = sp.Symbol("m", positive=True)  # matrices in the MLP: 3 gated (SwiGLU), 2 plain
# workload and hardware
S, B, b = sp.symbols("S B b", positive=True)  # sequence length, batch, bytes per element
N, W = sp.symbols("N W", positive=True)  # non-embedding parameters, weight bytes
P, mfu, n_gpu = sp.symbols("P mfu n_gpu", positive=True)  # peak FLOP/s, utilisation, GPUs
BW, HBM, PCIE = sp.symbols("BW HBM PCIe", positive=True)  # bytes/s, bytes, bytes/s
causal_k = sp.Symbol("k", positive=True)  # 2 for a causal prefill, 1 without the mask


def params_per_layer() -> sp.Expr:
    """Q, K, V, O projections, the MLP, and two RMSNorm weights."""
    return 2 * d * H * d_h + 2 * d * H_kv * d_h + m * d * F + 2 * d


def n_params_nonembedding() -> sp.Expr:
    """All blocks plus the final norm (no biases)."""
    return L * params_per_layer() + d


def kv_bytes_per_token() -> sp.Expr:
    return 2 * L * H_kv * d_h * b


def kv_cache_bytes() -> sp.Expr:
    return kv_bytes_per_token() * S * B


def linear_flops(n: sp.Expr = N) -> sp.Expr:
    """2 FLOPs per weight per token."""
    return 2 * n * S


def attention_flops() -> sp.Expr:
    """QK^T and AV over S^2/k (query, key) pairs, 4*H*d_h FLOPs each, every layer."""
    return 4 * L * H * d_h * S**2 / causal_k


def crossover(n: sp.Expr = N) -> sp.Expr:
    """The positive S at which attention FLOPs equal linear FLOPs."""
    roots = sp.solve(sp.Eq(attention_flops(), linear_flops(n)), S)
    (root,) = [r for r in roots if r != 0]
    return sp.simplify(root)


def prefill_time() -> sp.Expr:
    return (linear_flops() + attention_flops()) / (n_gpu * P * mfu)


def decode_step_time() -> sp.Expr:
    """Memory-bound decode: every weight and every cached K/V byte read once."""
    return (W + kv_cache_bytes()) / (n_gpu * BW)


def concurrency() -> sp.Expr:
    """Requests that fit (before rounding down): free HBM over one request's KV."""
    return (n_gpu * HBM - W) / kv_cache_bytes().subs(B, 1)


def context_switch_time() -> sp.Expr:
    return kv_cache_bytes().subs(B, 1) / PCIE


def kv_equals_weights_tokens() -> sp.Expr:
    """Tokens in flight (context x batch) at which a decode step reads as much KV as weights."""
    return sp.solve(sp.Eq(kv_bytes_per_token() * S, W), S)[0]


def mha(mlp_matrices: int) -> dict[sp.Symbol, sp.Expr]:
    """MHA (H*d_h = d, H_kv = H) with a 4d MLP of `mlp_matrices` matrices; norms ignored.

    2 matrices is Kaplan et al.'s transformer; 3 (gated) is the JAX scaling book's.
    """
    return {d_h: d / H, H_kv: H, m: mlp_matrices, F: 4 * d}


def mha_crossover(mlp_matrices: int = 2, causal: bool = True) -> sp.Expr:
    """Crossover of an MHA transformer with a 4d MLP, in units of d."""
    n = (L * (params_per_layer() - 2 * d)).subs(mha(mlp_matrices))
    root = crossover(sp.expand(n)).subs(mha(mlp_matrices))
    return sp.simplify(root.subs(causal_k, 2 if causal else 1))


def attention_to_linear_ratio() -> sp.Expr:
    """Attention FLOPs over linear FLOPs for a whole prefill."""
    return sp.simplify(attention_flops() / linear_flops(n_params_nonembedding()))
