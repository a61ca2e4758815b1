"""RULER-like retrieval tasks over a tiny synthetic vocabulary, generated from a seed.

A sequence is BOS, then filler tokens with "needles" inserted at chosen depths, then a
question and its answer. Every task returns a `Sample` of exactly `length` tokens whose
`answer_mask` marks the tokens the model must predict.

- single needle: ``NEEDLE k v`` somewhere; ``QUERY k`` -> ``v``.
- multi-key: several needles with distinct keys; queries for one or more of them.
- variable tracking: a chain ``ASSIGN v x1``, ``ASSIGN x1 x2``, ... among distractor chains;
  ``TRACK v`` -> ``x1 x2 ...`` (every variable that ends up holding v).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

PAD, BOS, NEEDLE, QUERY, ASSIGN, TRACK = range(6)
N_KEYS, N_VALUES, N_FILLER = 64, 64, 122
KEYS = range(6, 6 + N_KEYS)  # also the variable names of variable tracking
VALUES = range(KEYS.stop, KEYS.stop + N_VALUES)
FILLER = range(VALUES.stop, VALUES.stop + N_FILLER)
VOCAB_SIZE = FILLER.stop  # 256

Item = list[int]


@dataclass(frozen=True)
class Sample:
    """One sequence: `tokens` [T] and `answer_mask` [T] (True where a token is an answer)."""

    tokens: Tensor
    answer_mask: Tensor

    @property
    def prompt(self) -> Tensor:
        """The tokens before the first answer token."""
        return self.tokens[: int(self.answer_mask.int().argmax())]

    @property
    def answer(self) -> Tensor:
        return self.tokens[self.answer_mask]


def _check_depth(depth: float) -> float:
    if not 0.0 <= depth <= 1.0:
        raise ValueError(f"depth is a fraction of the haystack; pass 0 <= depth <= 1, got {depth}")
    return depth


def _assemble(length: int, needles: list[tuple[float, Item]], question: Item, answer: Item,
              rng: random.Random) -> Sample:
    """BOS + filler with `needles` at their depths + question + answer, `length` tokens."""
    n_filler = length - 1 - sum(len(item) for _, item in needles) - len(question) - len(answer)
    if n_filler < 0:
        raise ValueError(f"length {length} cannot hold this task; "
                         f"pass length >= {length - n_filler}")
    filler = rng.choices(FILLER, k=n_filler)
    tokens = [BOS]
    cursor = 0
    for depth, item in sorted(needles, key=lambda n: n[0]):
        at = round(_check_depth(depth) * n_filler)
        tokens += filler[cursor:at] + item
        cursor = at
    tokens += filler[cursor:] + question + answer
    mask = [False] * (length - len(answer)) + [True] * len(answer)
    return Sample(torch.tensor(tokens), torch.tensor(mask))


def _with_queries(length: int, needles: list[tuple[float, Item]], queries: Sequence[Item],
                  rng: random.Random) -> Sample:
    """Like `_assemble`, but with several ``QUERY k v`` questions, each value an answer."""
    tail = [tok for q in queries for tok in (QUERY, q[1], q[2])]
    sample = _assemble(length, needles, tail[:-1], tail[-1:], rng)
    mask = sample.answer_mask.clone()
    mask[len(mask) - len(tail) + 2::3] = True
    return Sample(sample.tokens, mask)


def single_needle(length: int, depth: float, rng: random.Random) -> Sample:
    """One ``NEEDLE k v`` at `depth`; the question ``QUERY k`` has the answer ``v``."""
    key, value = rng.choice(KEYS), rng.choice(VALUES)
    return _assemble(length, [(depth, [NEEDLE, key, value])], [QUERY, key], [value], rng)


def multi_key(length: int, depth: float, rng: random.Random, n_keys: int = 4,
              n_queries: int = 1) -> Sample:
    """`n_keys` needles with distinct keys; the first queried one sits at `depth`."""
    if not 1 <= n_queries <= n_keys:
        raise ValueError(f"n_queries must be in 1..n_keys={n_keys}, got {n_queries}")
    needles = [[NEEDLE, k, rng.choice(VALUES)] for k in rng.sample(KEYS, n_keys)]
    depths = [_check_depth(depth)] + [rng.random() for _ in needles[1:]]
    queries = [needles[0]] + rng.sample(needles[1:], n_queries - 1)
    return _with_queries(length, list(zip(depths, needles, strict=True)), queries, rng)


def variable_tracking(length: int, depth: float, rng: random.Random, hops: int = 3,
                      n_chains: int = 2) -> Sample:
    """`n_chains` chains of `hops` assignments; the queried chain starts at `depth`."""
    if hops < 1 or n_chains < 1 or hops * n_chains > N_KEYS:
        raise ValueError(f"need 1 <= hops * n_chains <= {N_KEYS}, got hops={hops}, "
                         f"n_chains={n_chains}")
    names = rng.sample(KEYS, hops * n_chains)
    starts = rng.sample(VALUES, n_chains)
    needles: list[tuple[float, Item]] = []
    for c in range(n_chains):
        first = _check_depth(depth) if c == 0 else rng.random()
        depths = sorted([first] + [rng.uniform(first, 1.0) for _ in range(hops - 1)])
        chain = [starts[c], *names[c * hops:(c + 1) * hops]]
        pairs = zip(depths, chain[:-1], chain[1:], strict=True)
        needles += [(d, [ASSIGN, a, b]) for d, a, b in pairs]
    return _assemble(length, needles, [TRACK, starts[0]], names[:hops], rng)


TASKS: dict[str, Callable[..., Sample]] = {
    "single_needle": single_needle,
    "multi_key": multi_key,
    "variable_tracking": variable_tracking,
}


def get_task(name: str) -> Callable[..., Sample]:
    """The task generator called `name`."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; pass one of {', '.join(TASKS)}")
    return TASKS[name]


def batch(samples: Sequence[Sample]) -> tuple[Tensor, Tensor]:
    """Stack equal-length samples into tokens [B, T] and answer_mask [B, T]."""
    return (torch.stack([s.tokens for s in samples]),
            torch.stack([s.answer_mask for s in samples]))


@torch.no_grad()
def answer_correct(model: torch.nn.Module, tokens: Tensor, answer_mask: Tensor) -> Tensor:
    """Per sequence [B]: does greedy decoding reproduce every answer token?

    Computed in one pass with teacher forcing: greedy decoding is exact-match correct
    exactly when the argmax at every answer position is the answer token.
    """
    device = next(model.parameters()).device
    tokens, answer_mask = tokens.to(device), answer_mask.to(device)
    hidden = model.hidden(tokens[:, :-1])
    targets = answer_mask[:, 1:]
    predicted = model.lm_head(hidden[targets]).argmax(-1)
    hits = torch.ones_like(answer_mask, dtype=torch.int64)[:, 1:]
    hits[targets] = (predicted == tokens[:, 1:][targets]).long()
    return hits.all(dim=1)


@dataclass(frozen=True)
class Accuracy:
    """Exact-match accuracy [len(lengths), len(depths)] of one task."""

    task: str
    lengths: tuple[int, ...]
    depths: tuple[float, ...]
    accuracy: np.ndarray
    correct: np.ndarray | None = field(default=None, repr=False)  # [length, depth, sample]

    def by_length(self) -> dict[int, float]:
        """Accuracy at each length, averaged over depths."""
        return {n: float(a) for n, a in zip(self.lengths, self.accuracy.mean(1), strict=True)}

    def as_dict(self) -> dict[str, object]:
        return {"task": self.task, "lengths": list(self.lengths), "depths": list(self.depths),
                "accuracy": self.accuracy.round(4).tolist()}


def evaluate(model: torch.nn.Module, task: str = "single_needle",
             lengths: Sequence[int] = (256, 512, 1024),
             depths: Sequence[float] = (0.0, 0.25, 0.5, 0.75, 1.0),
             n_samples: int = 32, seed: int = 1234, batch_size: int = 32,
             **task_kwargs: int) -> Accuracy:
    """Exact-match accuracy of `model` on `task` over a grid of lengths x depths."""
    generate = get_task(task)
    rng = random.Random(seed)
    acc = np.zeros((len(lengths), len(depths)))
    correct = np.zeros((len(lengths), len(depths), n_samples), dtype=bool)
    was_training = model.training
    model.eval()
    for i, length in enumerate(lengths):
        for j, depth in enumerate(depths):
            samples = [generate(length, depth, rng, **task_kwargs) for _ in range(n_samples)]
            hits = [answer_correct(model, *batch(samples[s:s + batch_size]))
                    for s in range(0, n_samples, batch_size)]
            correct[i, j] = torch.cat(hits).cpu().numpy()
            acc[i, j] = correct[i, j].mean()
    model.train(was_training)
    return Accuracy(task, tuple(lengths), tuple(depths), acc, correct)
