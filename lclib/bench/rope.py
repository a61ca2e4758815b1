"""Chapter 6: TinyLM past its training length with no scaling, PI, NTK-aware and YaRN.

Each method is the `rope_scaling` dict a runtime would read, applied through TinyLM's RoPE hook
(`set_rope` with `lclib.rope.inv_freq`): the adaptive ones with factor = length / training
length (at 1× they reduce to plain RoPE), the static ones (`STATIC`) with one factor at every
length, as a deployed config does (Qwen2.5 serves YaRN ×4 at any length). `cached_dynamic_ntk`
measures dynamic NTK through a KV cache, whose keys keep the base they were rotated with.
Uses the committed checkpoint; without one, an untrained TinyLM (the record says so) so the
mechanics still run.
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

STATIC = {"pi_x8": ("pi", 8.0), "yarn_x8": ("yarn", 8.0)}  # one factor at every length
METHODS = ("none", "pi", "ntk", "yarn", *STATIC)
DEPTHS = (0.0, 0.25, 0.5, 0.75, 1.0)
SAMPLES = {"cpu": 5, "cuda": 128}  # needles per (method, length, depth)
MULTIPLES = {"cpu": (1, 2, 4, 8), "cuda": (1, 2, 4, 8, 16, 32)}
BATCH_TOKENS = 2**16  # tokens per forward pass: 640 needles of 8K tokens are not one batch


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
    method, factor = STATIC.get(method, (method, max(1.0, length / train_len)))
    model.set_rope(partial(rope.inv_freq, seq_len=length), scaling_for(method, factor, train_len))
    return model


def hidden_in_chunks(model: TinyLM, tokens: torch.Tensor, chunk: int) -> torch.Tensor:
    """Hidden states of `tokens` [B, T] fed through a KV cache `chunk` tokens at a time, the RoPE
    rebuilt before each chunk for the length reached at its end (transformers' dynamic RoPE with
    a cache): the cached keys keep the rotation of the base they were written with."""
    if chunk < 1:
        raise ValueError(f"chunk must be a positive number of tokens, got {chunk}")
    cache, scaling, out = model.new_cache(), model.config.rope_scaling, []
    for start in range(0, tokens.shape[1], chunk):
        stop = min(start + chunk, tokens.shape[1])
        model.set_rope(partial(rope.inv_freq, seq_len=stop), scaling)
        out.append(model.hidden(tokens[:, start:stop], cache))
    return torch.cat(out, dim=1)


@torch.no_grad()
def needles(model: TinyLM, length: int, n_per_depth: int, seed: int = 0,
            chunk: int | None = None) -> tuple[list[bool], float]:
    """Per needle, whether the answer is exact, and the mean answer cross-entropy (nats), on
    single needles of `length` tokens, `n_per_depth` at each of `DEPTHS` (one answer token
    each); in one forward pass, or through a cache `chunk` tokens at a time."""
    rng = random.Random(seed)
    samples = [tasks.single_needle(length, depth, rng) for depth in DEPTHS
               for _ in range(n_per_depth)]
    tokens, mask = (t.to(next(model.parameters()).device) for t in tasks.batch(samples))
    targets, inputs = mask[:, 1:], tokens[:, :-1]
    rows, logits = max(1, BATCH_TOKENS // inputs.shape[1]), []
    for i in range(0, len(inputs), rows):  # batches of at most BATCH_TOKENS tokens
        x = inputs[i:i + rows]
        hidden = model.hidden(x) if chunk is None else hidden_in_chunks(model, x, chunk)
        logits.append(model.lm_head(hidden[targets[i:i + rows]]))
    logits = torch.cat(logits)
    answers = tokens[:, 1:][targets]
    return (logits.argmax(-1) == answers).tolist(), F.cross_entropy(logits, answers).item()


def needle_score(model: TinyLM, length: int, n_per_depth: int,
                 seed: int = 0) -> tuple[float, float]:
    """Exact-match accuracy and mean answer loss of `needles`, in one forward pass."""
    correct, loss = needles(model, length, n_per_depth, seed)
    return sum(correct) / len(correct), loss


def cached_dynamic_ntk(model: TinyLM, length: int, n_per_depth: int, chunk: int,
                       factor: float = 1.0) -> dict[str, Any]:
    """Dynamic NTK ({"rope_type": "dynamic", "factor": factor}) at `length` tokens, two ways on
    the same needles: one pass (every key rotated with the base for `length`) and through a KV
    cache in `chunk`-token pieces (each piece's keys keep the base of the length reached when
    it was written). Per-needle correctness of both, for a paired test; leaves plain RoPE."""
    model.set_rope(rope.inv_freq, {"rope_type": "dynamic", "factor": factor})
    runs = {"one_pass": needles(apply_dynamic(model, length), length, n_per_depth),
            "cached": needles(model, length, n_per_depth, chunk=chunk)}
    apply(model, "none", model.config.max_position_embeddings)
    return {"length": length, "chunk": chunk, "factor": factor,
            **{f"{k}_correct": c for k, (c, _) in runs.items()},
            **{f"{k}_loss": loss for k, (_, loss) in runs.items()}}


def apply_dynamic(model: TinyLM, length: int) -> TinyLM:
    """Rebuild `model`'s dynamic RoPE (its current rope_scaling) for `length` tokens."""
    model.set_rope(partial(rope.inv_freq, seq_len=length), model.config.rope_scaling)
    return model


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
