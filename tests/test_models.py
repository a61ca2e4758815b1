"""Model presets and Hugging Face config parsing."""

import json

import pytest

import lclib
from lclib import ModelConfig

# Published parameter counts (model cards / safetensors index totals).
PUBLISHED = {
    "llama-3.3-70b": 70_553_706_496,
    "qwen2.5-72b": 72_706_203_648,
    "yi-34b": 34_388_917_248,
    "llama-2-70b": 68_976_648_192,
    "mistral-7b": 7_241_732_096,
    "llama-3.1-8b": 8_030_261_248,
}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_presets_match_published_parameter_counts(name):
    model = lclib.get_model(name)
    assert model.n_params == PUBLISHED[name]
    assert model.source


LLAMA_8B_JSON = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 4096,
    "intermediate_size": 14336, "num_attention_heads": 32, "num_hidden_layers": 32,
    "num_key_value_heads": 8, "vocab_size": 128256, "rope_theta": 500000.0,
    "max_position_embeddings": 131072, "tie_word_embeddings": False,
    "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                     "original_max_position_embeddings": 8192, "rope_type": "llama3"},
}


def test_from_hf_config_dict_and_path(tmp_path):
    from_dict = ModelConfig.from_hf_config(LLAMA_8B_JSON)
    (tmp_path / "config.json").write_text(json.dumps(LLAMA_8B_JSON))
    from_dir = ModelConfig.from_hf_config(tmp_path)
    from_file = ModelConfig.from_hf_config(tmp_path / "config.json")
    preset = lclib.get_model("llama-3.1-8b")
    for m in (from_dict, from_dir, from_file):
        assert m.n_params == preset.n_params
        assert lclib.kv_bytes_per_token(m) == lclib.kv_bytes_per_token(preset) == 131_072
        assert m.rope_scaling["rope_type"] == "llama3"


def test_transformers5_rope_parameters():
    # transformers 5 moves rope_theta and rope_scaling into `rope_parameters`; SmolLM2-135M's
    # config (HuggingFaceTB/SmolLM2-135M-Instruct config.json: theta 100,000) as it writes it.
    smol = {"model_type": "llama", "hidden_size": 576, "num_hidden_layers": 30,
            "num_attention_heads": 9, "num_key_value_heads": 3, "intermediate_size": 1536,
            "vocab_size": 49152, "head_dim": 64, "tie_word_embeddings": True,
            "max_position_embeddings": 8192,
            "rope_parameters": {"rope_theta": 100000.0, "rope_type": "default"}}
    m = ModelConfig.from_hf_config(smol)
    assert (m.rope_theta, m.rope_scaling) == (100_000.0, None)
    assert lclib.kv_bytes_per_token(m) == 2 * 30 * 3 * 64 * 2
    yarn = {**smol, "rope_parameters": {"rope_theta": 1e6, "rope_type": "yarn", "factor": 4.0}}
    assert ModelConfig.from_hf_config(yarn).rope_scaling == {"rope_type": "yarn", "factor": 4.0}
    assert ModelConfig.from_hf_config(yarn).rope_theta == 1e6


def test_gpt2_plain_mlp_layernorm_biases_tied():
    gpt2 = {"model_type": "gpt2", "n_embd": 768, "n_layer": 12, "n_head": 12,
            "vocab_size": 50257, "n_positions": 1024}
    m = ModelConfig.from_hf_config(gpt2)
    assert (m.mlp, m.norm, m.bias, m.tie_embeddings) == ("plain", "layer", "all", True)
    assert m.n_params == 124_439_808  # GPT-2 small, as reported by transformers


def test_gpt_neox_untied_by_default():
    # EleutherAI/pythia-160m config.json
    neox = {"model_type": "gpt_neox", "hidden_size": 768, "num_hidden_layers": 12,
            "num_attention_heads": 12, "intermediate_size": 3072, "vocab_size": 50304,
            "max_position_embeddings": 2048}
    m = ModelConfig.from_hf_config(neox)
    assert not m.tie_embeddings and m.mlp == "plain"
    assert m.n_params == 162_322_944  # pythia-160m's parameter count


def test_explicit_head_dim_and_gqa():
    m = lclib.get_model("llama-3.3-70b")
    assert (m.q_dim, m.kv_dim, m.gqa_group) == (8192, 1024, 8)
    wide = ModelConfig("x", 4096, 2, 32, 8, 100, 10, head_dim=256)
    assert wide.q_dim == 8192


@pytest.mark.parametrize("changes, match", [
    ({"n_kv_heads": 7}, "n_kv_heads"),
    ({"n_heads": 60, "head_dim": 0}, "head_dim"),
    ({"n_layers": 0}, "n_layers"),
    ({"hidden_size": -8}, "hidden_size"),
    ({"mlp": "moe"}, "mlp"),
])
def test_bad_configs_raise(changes, match):
    with pytest.raises(ValueError, match=match):
        lclib.get_model("mistral-7b").with_(**changes)


def test_from_hf_config_rejects_missing_file_and_encoder_configs(tmp_path):
    with pytest.raises(ValueError, match="config.json"):
        ModelConfig.from_hf_config(tmp_path / "nope")
    with pytest.raises(ValueError, match="decoder-only"):
        ModelConfig.from_hf_config({"model_type": "t5", "d_model": 512})
