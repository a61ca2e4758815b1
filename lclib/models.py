"""Transformer architectures as plain numbers, with exact parameter counts.

A `ModelConfig` is what the cost model (and `lclib.tinylm`) needs to know about a
decoder-only transformer. Presets carry the source of their numbers; any Hugging
Face ``config.json`` can be read with `ModelConfig.from_hf_config`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .units import positive_int

MLP_KINDS = ("gated", "plain")  # SwiGLU-style (3 matrices) or GELU-style (2 matrices)
NORM_KINDS = ("rms", "layer")  # RMSNorm (weight) or LayerNorm (weight + bias)
BIAS_KINDS = ("none", "qkv", "all")  # which linear layers carry a bias


@dataclass(frozen=True)
class ModelConfig:
    """A decoder-only transformer. Sizes are counts; `head_dim` defaults to hidden/heads."""

    name: str
    hidden_size: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    intermediate_size: int
    vocab_size: int
    head_dim: int = 0
    mlp: str = "gated"
    norm: str = "rms"
    bias: str = "none"
    tie_embeddings: bool = False
    learned_positions: int = 0  # rows of a learned position table (GPT-2), else 0
    rope_theta: float = 10_000.0
    rope_scaling: dict[str, Any] | None = field(default=None, compare=False)
    max_position_embeddings: int = 4096
    sliding_window: int | None = None
    source: str = ""

    def __post_init__(self) -> None:
        for name in ("hidden_size", "n_layers", "n_heads", "n_kv_heads",
                     "intermediate_size", "vocab_size", "max_position_embeddings"):
            positive_int(name, getattr(self, name))
        if self.head_dim == 0:
            if self.hidden_size % self.n_heads:
                raise ValueError(
                    f"hidden_size {self.hidden_size} is not divisible by n_heads "
                    f"{self.n_heads}; pass head_dim explicitly or a dividing head count"
                )
            object.__setattr__(self, "head_dim", self.hidden_size // self.n_heads)
        positive_int("head_dim", self.head_dim)
        if self.n_heads % self.n_kv_heads:
            raise ValueError(
                f"n_heads {self.n_heads} is not a multiple of n_kv_heads {self.n_kv_heads}; "
                "pass a KV head count that divides the query heads (GQA groups must be equal)"
            )
        for attr, allowed in (("mlp", MLP_KINDS), ("norm", NORM_KINDS), ("bias", BIAS_KINDS)):
            if getattr(self, attr) not in allowed:
                raise ValueError(f"{attr}={getattr(self, attr)!r}; pass one of {allowed}")

    # --- shapes -------------------------------------------------------------
    @property
    def q_dim(self) -> int:
        """Width of all query heads together, n_heads * head_dim."""
        return self.n_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        """Width of all key (or value) heads together, n_kv_heads * head_dim."""
        return self.n_kv_heads * self.head_dim

    @property
    def gqa_group(self) -> int:
        """Query heads sharing one KV head (1 = MHA, n_heads = MQA)."""
        return self.n_heads // self.n_kv_heads

    # --- parameters -----------------------------------------------------------
    @property
    def params_per_layer(self) -> int:
        """Weights of one block: attention, MLP, two norms, and biases."""
        d, f = self.hidden_size, self.intermediate_size
        attn = d * self.q_dim + 2 * d * self.kv_dim + self.q_dim * d
        mlp = (3 if self.mlp == "gated" else 2) * d * f
        norm_width = 2 * d if self.norm == "layer" else d
        qkv_bias = self.q_dim + 2 * self.kv_dim
        mlp_bias = (2 if self.mlp == "gated" else 1) * f + d  # up (and gate), down
        bias = {"none": 0, "qkv": qkv_bias, "all": qkv_bias + d + mlp_bias}[self.bias]
        return attn + mlp + 2 * norm_width + bias

    @property
    def n_params_nonembedding(self) -> int:
        """Parameters outside the embedding tables and LM head (Kaplan et al.'s N)."""
        final_norm = 2 * self.hidden_size if self.norm == "layer" else self.hidden_size
        return self.n_layers * self.params_per_layer + final_norm

    @property
    def n_embedding_params(self) -> int:
        """Token embedding, learned positions, and an untied LM head."""
        tables = self.vocab_size * (1 if self.tie_embeddings else 2)
        return (tables + self.learned_positions) * self.hidden_size

    @property
    def n_params(self) -> int:
        """All parameters."""
        return self.n_params_nonembedding + self.n_embedding_params

    def with_(self, **changes: Any) -> ModelConfig:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    # --- Hugging Face -----------------------------------------------------------
    @classmethod
    def from_hf_config(cls, config: dict[str, Any] | str | Path, name: str = "") -> ModelConfig:
        """Read a Hugging Face ``config.json`` (a dict, or a path to the file or its folder).

        Understands Llama/Mistral/Qwen2-style configs (gated MLP, RMSNorm, GQA) and
        GPT-2/GPT-NeoX-style ones (plain GELU MLP, LayerNorm, biases).
        """
        if not isinstance(config, dict):
            path = Path(config)
            path = path / "config.json" if path.is_dir() else path
            if not path.is_file():
                raise ValueError(f"no config.json at {str(config)!r}; pass a dict or a file path")
            config = json.loads(path.read_text())
        return cls(**_hf_fields(config), name=name or str(config.get("_name_or_path", "")),
                   source="Hugging Face config.json")


_PLAIN_MLP_TYPES = {"gpt2", "gpt_neox", "gptj", "gpt_bigcode", "opt", "phi", "falcon"}


def _first(config: dict[str, Any], *keys: str, default: Any = None) -> Any:
    for key in keys:
        if config.get(key) is not None:
            return config[key]
    if default is None:
        raise ValueError(f"config has none of {keys}; pass a decoder-only transformer config")
    return default


def _rope_fields(c: dict[str, Any]) -> dict[str, Any]:
    """RoPE base and scaling from a config of either era: transformers < 5 writes `rope_theta`
    and `rope_scaling` at the top; transformers 5 writes both into `rope_parameters`."""
    params = c.get("rope_parameters") or {}
    theta = params.get("rope_theta", c.get("rope_theta", 10_000.0))
    scaling = c.get("rope_scaling")
    if scaling is None and params.get("rope_type", "default") != "default":
        scaling = {k: v for k, v in params.items() if k != "rope_theta"}
    return {"rope_theta": float(theta), "rope_scaling": scaling}


def _hf_fields(c: dict[str, Any]) -> dict[str, Any]:
    model_type = str(c.get("model_type", "")).lower()
    plain = model_type in _PLAIN_MLP_TYPES
    hidden = _first(c, "hidden_size", "n_embd", "d_model")
    heads = _first(c, "num_attention_heads", "n_head")
    qkv_bias = model_type == "qwen2" or c.get("attention_bias")
    bias = "all" if plain else ("qkv" if qkv_bias else "none")
    return dict(
        hidden_size=hidden,
        n_layers=_first(c, "num_hidden_layers", "n_layer"),
        n_heads=heads,
        n_kv_heads=_first(c, "num_key_value_heads", default=heads),
        head_dim=c.get("head_dim") or 0,
        intermediate_size=_first(c, "intermediate_size", "n_inner", default=4 * hidden),
        vocab_size=_first(c, "vocab_size"),
        mlp="plain" if plain else "gated",
        norm="layer" if plain else "rms",
        bias=bias,
        tie_embeddings=bool(c.get("tie_word_embeddings", model_type != "gpt_neox")),
        learned_positions=c.get("n_positions", 0) if model_type == "gpt2" else 0,
        **_rope_fields(c),
        max_position_embeddings=_first(c, "max_position_embeddings", "n_positions", default=4096),
        sliding_window=c.get("sliding_window") if c.get("use_sliding_window", True) else None,
    )


_LLAMA3_ROPE = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}
_HF = "config.json of the model on the Hugging Face Hub"

MODELS: dict[str, ModelConfig] = {
    m.name: m
    for m in (
        ModelConfig("llama-3.3-70b", 8192, 80, 64, 8, 28672, 128256, head_dim=128,
                    rope_theta=500_000.0, rope_scaling=_LLAMA3_ROPE,
                    max_position_embeddings=131072,
                    source=f"meta-llama/Llama-3.3-70B-Instruct {_HF}"),
        ModelConfig("qwen2.5-72b", 8192, 80, 64, 8, 29568, 152064, head_dim=128, bias="qkv",
                    rope_theta=1_000_000.0, max_position_embeddings=32768,
                    rope_scaling={"rope_type": "yarn", "factor": 4.0,
                                  "original_max_position_embeddings": 32768},
                    source=f"Qwen/Qwen2.5-72B-Instruct {_HF}; YaRN block from its model card"),
        ModelConfig("yi-34b", 7168, 60, 56, 8, 20480, 64000, head_dim=128,
                    rope_theta=5_000_000.0, max_position_embeddings=4096,
                    source=f"01-ai/Yi-34B {_HF} (the -200K variant: max_position_embeddings "
                           "200000); Yao Fu's 34B example (arXiv 2405.08944)"),
        ModelConfig("llama-2-70b", 8192, 80, 64, 8, 28672, 32000, head_dim=128,
                    max_position_embeddings=4096,
                    source=f"meta-llama/Llama-2-70b-hf {_HF}"),
        ModelConfig("mistral-7b", 4096, 32, 32, 8, 14336, 32000, head_dim=128,
                    max_position_embeddings=32768, sliding_window=4096,
                    source=f"mistralai/Mistral-7B-v0.1 {_HF}"),
        ModelConfig("llama-3.1-8b", 4096, 32, 32, 8, 14336, 128256, head_dim=128,
                    rope_theta=500_000.0, rope_scaling=_LLAMA3_ROPE,
                    max_position_embeddings=131072,
                    source=f"meta-llama/Llama-3.1-8B {_HF}"),
        ModelConfig("llama-3.1-405b", 16384, 126, 128, 8, 53248, 128256, head_dim=128,
                    rope_theta=500_000.0, rope_scaling=_LLAMA3_ROPE,
                    max_position_embeddings=131072,
                    source=f"meta-llama/Llama-3.1-405B {_HF}; Meta's 1M-token CP prefill "
                           "(arXiv 2411.01783) runs this architecture"),
        ModelConfig("qwen2.5-14b-1m", 5120, 48, 40, 8, 13824, 152064, head_dim=128, bias="qkv",
                    rope_theta=10_000_000.0, max_position_embeddings=1_010_000,
                    source=f"Qwen/Qwen2.5-14B-Instruct-1M {_HF} (trained to 256K, served to 1M "
                           "with dual chunk attention: dual_chunk_attention_config chunk_size "
                           "262144; sparse prefill 3.2-6.7x faster at 1M, Qwen2.5-1M report, "
                           "arXiv 2501.15383)"),
    )
}


def get_model(name: str | ModelConfig) -> ModelConfig:
    """The preset called `name` (a ModelConfig passes through)."""
    if isinstance(name, ModelConfig):
        return name
    key = str(name).lower()
    if key not in MODELS:
        raise ValueError(f"unknown model {name!r}; pass one of {', '.join(MODELS)}")
    return MODELS[key]
