"""Chapter 6: TinyLM past its training length with no scaling, PI, NTK-aware and YaRN.

Each method is the `rope_scaling` dict a runtime would read, with factor = length / training
length, applied through TinyLM's RoPE hook (`set_rope` with `lclib.rope.inv_freq`). At 1× every
method reduces to plain RoPE. Uses the committed checkpoint; without one, an untrained TinyLM
(the record says so) so the mechanics still run.
"""

from __future__ import annotations

import random
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F

from .. import rope
from ..tinylm import TinyLM, load, tasks
from ..tinylm.training import CONFIG
from .core import experiment

METHODS = ("none", "pi", "ntk", "yarn")
DEPTHS = (0.0, 0.25, 0.5, 0.75, 1.0)
SAMPLES = {"cpu": 5, "cuda": 128}  # needles per (method, length, depth)
MULTIPLES = {"cpu": (1, 2, 4, 8), "cuda": (1, 2, 4, 8, 16, 32)}


def scaling_for(method: str, factor: float, train_len: int) -> dict[str, Any] | None:
    """The rope_scaling dict of `method` for a context `factor` times the training length.

    NTK-aware scaling is transformers' "dynamic" type with factor 1, evaluated at the sequence
    length (see `apply`): its base grows by (length/train)^(d/(d−2)). A dynamic factor of s at
    s× the length would stretch by s² − s + 1 instead.
    """
    dicts = {"none": None,
             "pi": {"rope_type": "linear", "factor": factor},
             "ntk": {"rope_type": "dynamic", "factor": 1.0},  # base·(length/train)^(d/(d-2))
             "yarn": {"rope_type": "yarn", "factor": factor,
                      "original_max_position_embeddings": train_len}}
    if method not in dicts:
        raise ValueError(f"unknown method {method!r}; pass one of {', '.join(METHODS)}")
    return dicts[method]


def apply(model: TinyLM, method: str, length: int) -> TinyLM:
    """Set `model`'s RoPE for sequences of `length` tokens (dynamic NTK is evaluated there)."""
    train_len = model.config.max_position_embeddings
    factor = max(1.0, length / train_len)
    model.set_rope(partial(rope.inv_freq, seq_len=length), scaling_for(method, factor, train_len))
    return model


@torch.no_grad()
def needle_score(model: TinyLM, length: int, n_per_depth: int,
                 seed: int = 0) -> tuple[float, float]:
    """Exact-match accuracy and mean answer cross-entropy (nats) on single needles of `length`
    tokens, `n_per_depth` at each of `DEPTHS`, in one forward pass (one answer token each)."""
    rng = random.Random(seed)
    samples = [tasks.single_needle(length, depth, rng) for depth in DEPTHS
               for _ in range(n_per_depth)]
    tokens, mask = (t.to(next(model.parameters()).device) for t in tasks.batch(samples))
    targets = mask[:, 1:]
    logits = model.lm_head(model.hidden(tokens[:, :-1])[targets])
    answers = tokens[:, 1:][targets]
    return ((logits.argmax(-1) == answers).float().mean().item(),
            F.cross_entropy(logits, answers).item())


def extrapolation(model: TinyLM, lengths: list[int], n_per_depth: int,
                  methods: tuple[str, ...] = METHODS) -> list[dict[str, Any]]:
    """Needle accuracy and answer loss per method and length (the same needles for every
    method); leaves the model with plain RoPE."""
    rows = []
    was_training = model.training
    model.eval()
    for method in methods:
        for length in lengths:
            accuracy, loss = needle_score(apply(model, method, length), length, n_per_depth)
            rows.append({"method": method, "length": length,
                         "multiple": length / model.config.max_position_embeddings,
                         "attention_factor": model.attention_factor,
                         "accuracy": accuracy, "loss": loss})
    model.train(was_training)
    apply(model, "none", model.config.max_position_embeddings)
    return rows


def trained_model() -> tuple[TinyLM, bool]:
    """The committed checkpoint, or an untrained TinyLM (False) when there is none."""
    try:
        return load(), True
    except ValueError:
        torch.manual_seed(0)
        return TinyLM(CONFIG).eval(), False


@experiment("rope")
def rope_extrapolation(device: torch.device, sizes: list[int] | None = None,
                       dtype: str = "fp32") -> dict[str, Any]:
    """TinyLM accuracy and loss at `sizes` tokens (default 1×–8× its training length on a CPU,
    to 32× on a GPU) under each RoPE scaling method. `dtype` is ignored: TinyLM runs in fp32."""
    model, trained = trained_model()
    model = model.to(device)
    train_len = model.config.max_position_embeddings
    lengths = sorted(sizes or [m * train_len for m in MULTIPLES[device.type]])
    return {"inputs": {"task": "single_needle", "depths": list(DEPTHS), "methods": list(METHODS),
                       "lengths": lengths, "samples_per_depth": SAMPLES[device.type]},
            "trained": trained, "train_length": train_len,
            "rows": extrapolation(model, lengths, SAMPLES[device.type])}
