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
BW, PCIE = sp.symbols("BW PCIe", positive=True)  # HBM and PCIe bytes/s
HBM = sp.Symbol(r"M_{\mathrm{HBM}}", positive=True)  # device-reported HBM bytes of one GPU
R = sp.Symbol("R", nonnegative=True)  # reserve per GPU (lclib.Reserve): neither weights nor KV
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


def concurrency(reserve: sp.Expr = 0) -> sp.Expr:
    """Requests that fit (before rounding down): the KV budget over one request's KV.

    The budget is what `lclib.kv_budget` computes: n GPUs' memory minus the weights minus a
    reserve per GPU (pass `R` to show it; lclib's default is none).
    """
    return (n_gpu * (HBM - reserve) - W) / kv_cache_bytes().subs(B, 1)


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


# --- the roofline -----------------------------------------------------------------------------
T, d_in, d_out = sp.symbols("T d_in d_out", positive=True)  # tokens through a matmul, its shape


def matmul_intensity() -> sp.Expr:
    """FLOPs per HBM byte of a [T, d_in] x [d_in, d_out] matmul: weights and activations moved."""
    return 2 * T * d_in * d_out / (b * (d_in * d_out + T * d_in + T * d_out))


def attention_intensity(new: sp.Expr, context: sp.Expr = S) -> sp.Expr:
    """FLOPs per byte of attention for `new` queries over a `context`-token cache (per layer or
    for all layers alike).

    Q and O of the new tokens and the cache's K and V cross HBM once (FlashAttention-style);
    `new = S` with the causal mask is a prefill, `new = 1` a decode step.
    """
    pairs = new * (context - new) + new**2 / causal_k
    return 4 * H * d_h * pairs / (b * (2 * H_kv * d_h * context + 2 * H * d_h * new))
