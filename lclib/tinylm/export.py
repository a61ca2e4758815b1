"""Write a TinyLM as a Hugging Face Llama folder that transformers and vLLM load.

    path = tinylm.export_hf(tinylm.load(), "/tmp/tinylm-hf")
    # transformers.LlamaForCausalLM.from_pretrained(path); vllm.LLM(model=str(path), ...)

The folder holds config.json and model.safetensors (fp32). TinyLM's layers map one to one onto
Llama's: same RMSNorm eps (1e-5), rotate-half RoPE, SwiGLU, GQA and untied head. The config
carries the model's RoPE scaling both as ``rope_scaling`` (the key transformers 4.x and most
published checkpoints use) and as ``rope_parameters`` (transformers 5.x).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import tasks

if TYPE_CHECKING:
    from .model import TinyLM

WEIGHTS = "model.safetensors"


def hf_config(model: TinyLM) -> dict[str, Any]:
    """The config.json of `model` as a Llama checkpoint."""
    c = model.config
    scaling = dict(c.rope_scaling) if c.rope_scaling else None
    parameters = {"rope_type": "default", **(scaling or {}), "rope_theta": c.rope_theta}
    parameters.pop("type", None)
    return {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "vocab_size": c.vocab_size, "hidden_size": c.hidden_size,
        "intermediate_size": c.intermediate_size, "num_hidden_layers": c.n_layers,
        "num_attention_heads": c.n_heads, "num_key_value_heads": c.n_kv_heads,
        "head_dim": c.head_dim, "hidden_act": "silu", "rms_norm_eps": 1e-5,
        "attention_bias": False, "mlp_bias": False, "tie_word_embeddings": c.tie_embeddings,
        "max_position_embeddings": c.max_position_embeddings, "sliding_window": c.sliding_window,
        "rope_theta": c.rope_theta, "rope_scaling": scaling, "rope_parameters": parameters,
        "bos_token_id": tasks.BOS, "pad_token_id": tasks.PAD, "eos_token_id": None,
        "torch_dtype": "float32",
    }


def hf_state_dict(model: TinyLM) -> dict[str, Any]:
    """`model`'s weights under Llama's parameter names (contiguous fp32 copies)."""
    names = {"embed.weight": "model.embed_tokens.weight", "norm.weight": "model.norm.weight",
             "lm_head.weight": "lm_head.weight"}
    parts = {"attn_norm": "input_layernorm", "mlp_norm": "post_attention_layernorm",
             "attn.q": "self_attn.q_proj", "attn.k": "self_attn.k_proj",
             "attn.v": "self_attn.v_proj", "attn.o": "self_attn.o_proj",
             "mlp.gate": "mlp.gate_proj", "mlp.up": "mlp.up_proj", "mlp.down": "mlp.down_proj"}
    for i in range(model.config.n_layers):
        for ours, theirs in parts.items():
            names[f"blocks.{i}.{ours}.weight"] = f"model.layers.{i}.{theirs}.weight"
    state = model.state_dict()
    if model.config.tie_embeddings:
        del names["lm_head.weight"]
    return {hf: state[ours].detach().float().contiguous().clone() for ours, hf in names.items()}


def export_hf(model: TinyLM, path: str | Path) -> Path:
    """Write `model` into the folder `path` (created) as a Llama checkpoint; returns the path."""
    from safetensors.torch import save_file

    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{str(path)!r} is a file; pass a folder to export into")
    path.mkdir(parents=True, exist_ok=True)
    save_file(hf_state_dict(model), str(path / WEIGHTS), metadata={"format": "pt"})
    (path / "config.json").write_text(json.dumps(hf_config(model), indent=2) + "\n")
    return path
