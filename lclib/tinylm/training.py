"""Train TinyLM on the retrieval tasks on a CPU in minutes, and save or load the checkpoint.

Every task here is solved by one circuit, the induction head: find where the current token
occurred before and copy what followed it. Trained on the tasks alone, a small model first
learns a shortcut (copy any value in the context) and sits on that plateau. So the recipe has
two phases: a copy phase on short repeated random segments, whose every second-half token needs
the induction head, until it has formed (the loss drops abruptly, after a number of steps that
depends on the seed); then the task mix, with the loss on answer tokens only and sequence
lengths growing to the training context.
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

COPY_LENGTHS = (16, 32)  # the copy phase: short sequences, so many per step
COPY_TOKENS = 512  # tokens per step in the copy phase
TASK_TOKENS = 2048  # tokens per step in the task phase
TASK_MIN_LENGTH = 32


def copy_sample(length: int, rng: random.Random) -> tasks.Sample:
    """BOS, a random segment, the same segment again (then filler up to `length`).

    The answers are the repeat's tokens after its first: each is predictable only by finding
    the previous token's earlier occurrence and copying what followed it.
    """
    half = (length - 1) // 2
    if half < 2:
        raise ValueError(f"a copy sample needs length >= 5, got {length}")
    segment = rng.choices(range(tasks.KEYS.start, tasks.VOCAB_SIZE), k=half)
    tail = rng.choices(tasks.FILLER, k=length - 1 - 2 * half)
    tokens = [tasks.BOS, *segment, *segment, *tail]
    mask = [False] * (half + 2) + [True] * (half - 1) + [False] * len(tail)
    return tasks.Sample(torch.tensor(tokens), torch.tensor(mask))


def task_sample(length: int, rng: random.Random) -> tasks.Sample:
    """A random retrieval sequence of `length` tokens: 20% single needles, 40% multi-key
    (1-8 keys, all queried), 40% variable tracking (1-3 hops, 1-3 chains)."""
    room = max(1, (length - 8) // 6)  # needles that fit with their queries
    draw = rng.random()
    if draw < 0.2:
        return tasks.single_needle(length, rng.random(), rng)
    if draw < 0.6:
        n = rng.randint(1, min(8, room))
        return tasks.multi_key(length, rng.random(), rng, n_keys=n, n_queries=n)
    hops = rng.randint(1, min(3, room))
    return tasks.variable_tracking(length, rng.random(), rng, hops=hops,
                                   n_chains=rng.randint(1, max(1, min(3, room // hops))))


def answer_loss(model: TinyLM, tokens: Tensor, answer_mask: Tensor) -> Tensor:
    """Cross-entropy of the answer tokens only (the LM head runs only where it is needed)."""
    targets = answer_mask[:, 1:]
    hidden = model.hidden(tokens[:, :-1])[targets]
    return F.cross_entropy(model.lm_head(hidden), tokens[:, 1:][targets])


def lr_at(step: int, steps: int, peak: float, warmup: int = 0) -> float:
    """Linear warmup over `warmup` steps, then cosine decay to a tenth of the peak at `steps`."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, steps - warmup))
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def copy_batch(rng: random.Random) -> list[tasks.Sample]:
    """One copy-phase step: copy samples of one random length."""
    length = rng.randint(*COPY_LENGTHS)
    return [copy_sample(length, rng) for _ in range(COPY_TOKENS // length)]


def task_batch(step: int, task_steps: int, config: ModelConfig,
               rng: random.Random) -> list[tasks.Sample]:
    """Task-phase step `step`: the longest length grows to the full context by half-way."""
    full = config.max_position_embeddings
    longest = TASK_MIN_LENGTH + (full - TASK_MIN_LENGTH) * 2 * step / task_steps
    length = rng.randint(TASK_MIN_LENGTH, min(full, round(longest)))
    return [task_sample(length, rng) for _ in range(max(1, TASK_TOKENS // length))]


def train(max_copy_steps: int = 3000, task_steps: int = 500, seed: int = 0,
          config: ModelConfig = CONFIG, lr: float = 2e-3, formed_loss: float = 0.5,
          threads: int | None = None, log: Callable[[str], None] | None = print,
          log_every: int = 100) -> tuple[TinyLM, list[float], float]:
    """Train from scratch; returns the model, the loss of every step and the seconds taken.

    The copy phase runs at a constant `lr` until the mean loss of its last 50 steps is below
    `formed_loss` (or for `max_copy_steps`); the task phase decays it by a cosine. `threads`
    sets torch's CPU threads for good; None keeps the current setting.
    """
    if max_copy_steps < 0 or task_steps < 0 or max_copy_steps + task_steps == 0:
        raise ValueError(f"pass max_copy_steps >= 0 and task_steps >= 0, not both 0; got "
                         f"{max_copy_steps} and {task_steps}")
    torch.manual_seed(seed)
    if threads:
        torch.set_num_threads(threads)
    rng = random.Random(seed)
    model = TinyLM(config)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.0)
    losses: list[float] = []
    start = time.perf_counter()

    def step(samples: list[tasks.Sample], rate: float, phase: str) -> None:
        for group in opt.param_groups:
            group["lr"] = rate
        loss = answer_loss(model, *tasks.batch(samples))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        if log and len(losses) % log_every == 1:
            log(f"step {len(losses) - 1:5d}  {phase}  len {samples[0].tokens.numel():4d}  "
                f"loss {losses[-1]:.4f}  {time.perf_counter() - start:6.1f}s")

    for i in range(max_copy_steps):
        step(copy_batch(rng), lr * min(1.0, (i + 1) / 50), "copy")
        if i >= 50 and sum(losses[-50:]) / 50 < formed_loss:
            break
    for i in range(task_steps):
        step(task_batch(i, task_steps, config, rng), lr_at(i, task_steps, lr), "task")
    if log:
        log(f"{len(losses)} steps ({len(losses) - task_steps} copy) in "
            f"{time.perf_counter() - start:.1f}s, final loss {losses[-1]:.4f}")
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
                task_steps: int, n_samples: int = 32) -> dict[str, object]:
    """Parameters, training time and task accuracy at 1x, 2x and 4x the training length."""
    n, tail = model.config.max_position_embeddings, max(1, len(losses) // 10)
    accuracy = {task: tasks.evaluate(model, task, lengths=(n, 2 * n, 4 * n),
                                     n_samples=n_samples).as_dict()
                for task in tasks.TASKS}
    return {
        "params": sum(p.numel() for p in model.parameters()),
        "train_seconds": round(seconds, 1),
        "steps": len(losses),
        "copy_steps": len(losses) - task_steps,
        "threads": torch.get_num_threads(),
        "seed": seed,
        "first_loss": round(losses[0], 4),
        "final_loss": round(sum(losses[-tail:]) / tail, 4),  # mean of the last tenth
        "train_length": n,
        "accuracy": accuracy,
        "torch": torch.__version__,
        "date": datetime.date.today().isoformat(),
    }
