"""Train TinyLM on the retrieval tasks on a CPU in minutes, and save or load the checkpoint.

The recipe: sequences of random length up to the training context (single needles first,
then a mix with multi-key and variable-tracking samples), with the loss on answer tokens
only. Batches hold a fixed number of tokens, so short sequences come in larger batches.
"""

from __future__ import annotations

import datetime
import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from ..models import ModelConfig
from . import tasks
from .model import TinyLM

CHECKPOINT = Path(__file__).parent / "checkpoint"

CONFIG = ModelConfig(
    name="tinylm", hidden_size=128, n_layers=2, n_heads=4, n_kv_heads=2,
    intermediate_size=512, vocab_size=tasks.VOCAB_SIZE, mlp="gated", norm="rms", bias="none",
    rope_theta=10_000.0, max_position_embeddings=256,
    source="trained in minutes on a CPU by `python -m lclib.tinylm train`",
)


def training_sample(length: int, rng: random.Random, warmup: bool = False) -> tasks.Sample:
    """A random training sequence of `length` tokens: single needles only during `warmup`,
    then 40% single needles, 30% multi-key (every key queried), 30% variable tracking."""
    room = max(1, (length - 8) // 6)  # needles that fit with their queries
    draw = 0.0 if warmup else rng.random()
    if draw < 0.4:
        return tasks.single_needle(length, rng.random(), rng)
    if draw < 0.7:
        n = rng.randint(1, min(4, room))
        return tasks.multi_key(length, rng.random(), rng, n_keys=n, n_queries=n)
    hops = rng.randint(1, min(3, room))
    return tasks.variable_tracking(length, rng.random(), rng, hops=hops,
                                   n_chains=rng.randint(1, max(1, min(2, room // hops))))


def answer_loss(model: TinyLM, tokens: Tensor, answer_mask: Tensor) -> Tensor:
    """Cross-entropy of the answer tokens only (the LM head runs only where it is needed)."""
    targets = answer_mask[:, 1:]
    hidden = model.hidden(tokens[:, :-1])[targets]
    return F.cross_entropy(model.lm_head(hidden), tokens[:, 1:][targets])


def lr_at(step: int, steps: int, peak: float, warmup: int) -> float:
    """Linear warmup, then cosine decay to a tenth of the peak."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def max_length(step: int, steps: int, min_len: int, config: ModelConfig) -> int:
    """The curriculum: the longest sequence at `step`, full context from half-way on."""
    full = config.max_position_embeddings
    return min(full, min_len + round((full - min_len) * 2 * step / steps))


def train(steps: int = 600, seed: int = 0, config: ModelConfig = CONFIG,
          tokens_per_step: int = 2048, min_len: int = 32, lr: float = 3e-3, threads: int = 2,
          log: Callable[[str], None] | None = print, log_every: int = 50,
          ) -> tuple[TinyLM, list[float], float]:
    """Train from scratch; returns the model, the loss of every step and the seconds taken.

    Sequence lengths grow from `min_len` to the full context over the first half of training;
    the first third sees single needles only (they teach the copy-the-value circuit).
    """
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    rng = random.Random(seed)
    model = TinyLM(config)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.0)
    losses: list[float] = []
    start = time.perf_counter()
    for step in range(steps):
        length = rng.randint(min_len, max_length(step, steps, min_len, config))
        warmup = step < steps // 3
        samples = [training_sample(length, rng, warmup)
                   for _ in range(max(1, tokens_per_step // length))]
        for group in opt.param_groups:
            group["lr"] = lr_at(step, steps, lr, warmup=max(1, steps // 20))
        loss = answer_loss(model, *tasks.batch(samples))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        if log and (step % log_every == 0 or step == steps - 1):
            log(f"step {step:5d}  len {length:4d}  loss {loss.item():.4f}  "
                f"{time.perf_counter() - start:6.1f}s")
    return model, losses, time.perf_counter() - start


def save(model: TinyLM, out: str | Path, metrics: dict[str, object]) -> Path:
    """Write model.pt (state dict), config.json and metrics.json into `out`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), out / "model.pt")
    (out / "config.json").write_text(json.dumps(asdict(model.config), indent=2) + "\n")
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return out


def load(path: str | Path = CHECKPOINT) -> TinyLM:
    """The trained model saved at `path` (the committed checkpoint by default), on the CPU."""
    path = Path(path)
    if not (path / "model.pt").is_file():
        raise ValueError(f"no checkpoint at {str(path)!r}; pass a folder written by "
                         "`python -m lclib.tinylm train --out DIR`")
    config = ModelConfig(**json.loads((path / "config.json").read_text()))
    model = TinyLM(config)
    model.load_state_dict(torch.load(path / "model.pt", map_location="cpu", weights_only=True))
    return model.eval()


def metrics_for(model: TinyLM, losses: list[float], seconds: float, seed: int,
                n_samples: int = 32) -> dict[str, object]:
    """Parameters, training time and task accuracy at 1x, 2x and 4x the training length."""
    n, tail = model.config.max_position_embeddings, max(1, len(losses) // 10)
    accuracy = {task: tasks.evaluate(model, task, lengths=(n, 2 * n, 4 * n),
                                     n_samples=n_samples).as_dict()
                for task in tasks.TASKS}
    return {
        "params": sum(p.numel() for p in model.parameters()),
        "train_seconds": round(seconds, 1),
        "steps": len(losses),
        "seed": seed,
        "first_loss": round(losses[0], 4),
        "final_loss": round(sum(losses[-tail:]) / tail, 4),  # mean of the last tenth
        "train_length": n,
        "accuracy": accuracy,
        "torch": torch.__version__,
        "date": datetime.date.today().isoformat(),
    }
