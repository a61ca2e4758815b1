"""A discrete-event simulation of one serving replica with chunked prefill.

Each step the replica runs every decoding request (one token each) and fills what is left of a
per-step token budget with prefill tokens, like vLLM's `max_num_batched_tokens`. With chunking
the budget is the chunk size and a prompt may be split across steps; without it a prompt runs
whole in one step, however long (the budget is then the longest prompt).

The time of a step (`StepCost`), a roofline with no fixed overhead:

    step time = max(compute, memory)
    compute   = sum over the step's pieces of lclib.prefill_time(offset + n) - prefill_time(offset)
                (a decode is a piece of n = 1 token at offset = its context) at `mfu` of peak
    memory    = lclib.decode_step_time(context = all cached tokens the step's pieces attend to)
                (every weight once, plus that KV, at the HBM bandwidth)

Not modelled: KV capacity (admission assumes the KV fits), preemption, per-step overheads.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from .amortize import incremental_prefill_time
from .cost import GPULike, ModelLike, decode_step_time
from .units import positive_float, positive_int

PRIORITIES = ("fcfs", "short_first")


@dataclass(frozen=True)
class StepCost:
    """Seconds of one step of a replica of `model` on `n_gpus` `gpu`s (weights sharded)."""

    model: ModelLike = "llama-3.3-70b"
    gpu: GPULike = "h100-sxm"
    n_gpus: int = 4
    mfu: float = 0.4
    kv_dtype: str = "bf16"

    def compute(self, offset: int, n: int) -> float:
        """Seconds of compute for `n` new tokens after `offset` cached ones."""
        return incremental_prefill_time(self.model, self.gpu, offset, n, self.n_gpus, self.mfu)

    def memory(self, kv_tokens: int) -> float:
        """Seconds to read the weights and `kv_tokens` tokens of KV (at least one token)."""
        return decode_step_time(self.model, self.gpu, max(1, kv_tokens), n_gpus=self.n_gpus,
                                kv_dtype=self.kv_dtype)

    def step(self, pieces: Sequence[tuple[int, int]]) -> float:
        """Seconds of a step running `pieces` = [(offset, new tokens), ...]."""
        if not pieces:
            raise ValueError("a step needs at least one (offset, tokens) piece")
        compute = sum(self.compute(o, n) for o, n in pieces)
        return max(compute, self.memory(sum(o for o, _ in pieces)))

    def decode_coefficients(self) -> tuple[float, float, float, float]:
        """(a, b, m0, m1): a decode-only step of n requests with C context tokens in all takes
        max(n*a + b*C, m0 + m1*C). Both lines are exact: the cost model is affine in context."""
        a, b = self.compute(0, 1), self.compute(1, 1) - self.compute(0, 1)
        m1 = self.memory(2) - self.memory(1)
        return a, b, self.memory(1) - m1, m1


@dataclass(frozen=True)
class Request:
    arrival: float  # seconds
    prompt: int  # tokens
    output: int  # tokens, the first of which the prefill step produces


@dataclass
class Served:
    """A request and when it got its first and last output token."""

    request: Request
    first_token: float = math.nan
    finish: float = math.nan

    @property
    def ttft(self) -> float:
        return self.first_token - self.request.arrival

    @property
    def tpot(self) -> float:
        """Mean seconds per output token after the first (nan for one-token outputs)."""
        n = self.request.output - 1
        return (self.finish - self.first_token) / n if n else math.nan


@dataclass
class _Prefill:
    served: Served
    done: int = 0

    @property
    def left(self) -> int:
        return self.served.request.prompt - self.done


@dataclass
class _Decode:
    served: Served
    context: int
    left: int


@dataclass
class _Replica:
    cost: StepCost
    chunk: int | None
    priority: str
    budget: int
    t: float = 0.0
    queue: list[_Prefill] = field(default_factory=list)
    running: list[_Decode] = field(default_factory=list)

    def prefill_plan(self) -> list[tuple[_Prefill, int]]:
        """Which prompts get how many tokens this step (decodes take one token each first)."""
        order = self.queue if self.priority == "fcfs" else sorted(self.queue, key=lambda p: p.left)
        room, plan = self.budget - len(self.running), []
        for p in order:
            take = p.left if self.chunk is None else min(p.left, room)
            if take <= 0 or (take > room and plan):
                break
            plan.append((p, take))
            room -= take
        return plan

    def mixed_step(self) -> None:
        plan = self.prefill_plan()
        pieces = [(d.context, 1) for d in self.running] + [(p.done, n) for p, n in plan]
        self.t += self.cost.step(pieces)
        self.advance_decodes(1)
        for p, n in plan:
            p.done += n
            if p.left == 0:
                self.queue.remove(p)
                p.served.first_token = self.t
                self.start_decode(p.served)

    def start_decode(self, served: Served) -> None:
        r = served.request
        if r.output > 1:
            self.running.append(_Decode(served, r.prompt + 1, r.output - 1))
        else:
            served.finish = self.t

    def advance_decodes(self, k: int) -> None:
        for d in self.running:
            d.context, d.left = d.context + k, d.left - k
            if d.left == 0:
                d.served.finish = self.t
        self.running = [d for d in self.running if d.left]

    def decode_run(self, until: float, coef: tuple[float, float, float, float]) -> None:
        """Decode-only steps until a request finishes or the step that passes `until` ends."""
        a, b, m0, m1 = coef
        n, ctx = len(self.running), sum(d.context for d in self.running)
        steps = 0
        for _ in range(min(d.left for d in self.running)):
            self.t += max(n * a + b * ctx, m0 + m1 * ctx)
            ctx, steps = ctx + n, steps + 1
            if self.t >= until:
                break
        self.advance_decodes(steps)


def simulate(requests: Sequence[Request], cost: StepCost | None = None, chunk: int | None = 4096,
             priority: str = "fcfs") -> list[Served]:
    """Serve `requests` on one replica; return each with its first-token and finish times.

    `chunk`: the per-step token budget and the largest piece of a prompt per step (None: no
    chunking, prompts run whole). `priority`: order of waiting prompts, "fcfs" (arrival, as
    vLLM's default) or "short_first" (fewest prompt tokens left first).
    """
    if priority not in PRIORITIES:
        raise ValueError(f"unknown priority {priority!r}; pass one of {', '.join(PRIORITIES)}")
    if not requests:
        raise ValueError("pass at least one Request")
    cost = cost or StepCost()
    budget = max(r.prompt for r in requests) if chunk is None else positive_int("chunk", chunk)
    rep, coef = _Replica(cost, chunk, priority, budget), cost.decode_coefficients()
    pending = sorted((Served(r) for r in requests), key=lambda s: s.request.arrival)
    i = 0
    while i < len(pending) or rep.queue or rep.running:
        if not rep.queue and not rep.running:
            rep.t = max(rep.t, pending[i].request.arrival)
        while i < len(pending) and pending[i].request.arrival <= rep.t:
            rep.queue.append(_Prefill(pending[i]))
            i += 1
        if rep.queue:
            rep.mixed_step()
        else:
            rep.decode_run(pending[i].request.arrival if i < len(pending) else math.inf, coef)
    return pending


def mixed_workload(n_requests: int, rate: float, short_prompt: int = 2048,
                   long_prompt: int = 131_072, long_fraction: float = 0.1, output: int = 128,
                   seed: int = 0) -> list[Request]:
    """Poisson arrivals at `rate` per second; a fraction `long_fraction` have long prompts."""
    rng, rate = random.Random(seed), positive_float("rate", rate)
    if not 0 <= long_fraction <= 1:
        raise ValueError(f"long_fraction is a fraction; pass 0 <= long_fraction <= 1, "
                         f"got {long_fraction!r}")
    t, out = 0.0, []
    for _ in range(positive_int("n_requests", n_requests)):
        t += rng.expovariate(rate)
        prompt = long_prompt if rng.random() < long_fraction else short_prompt
        out.append(Request(t, positive_int("prompt", prompt), positive_int("output", output)))
    return out


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile: the smallest value with at least p% of values at or below it."""
    if not values or not 0 < p <= 100:
        raise ValueError("pass a non-empty list and 0 < p <= 100")
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def summarize(served: Sequence[Served], long_above: int) -> dict[str, float]:
    """p50/p99 TTFT and TPOT of short requests, TTFT of long ones (prompt > `long_above`)."""
    short = [s for s in served if s.request.prompt <= long_above]
    long = [s for s in served if s.request.prompt > long_above]
    if not short or not long:
        raise ValueError("summarize needs both short and long requests; pass a mixed workload")
    tpot = [s.tpot for s in short if not math.isnan(s.tpot)]
    out = {f"short_ttft_p{p}": percentile([s.ttft for s in short], p) for p in (50, 99)}
    out |= {f"short_tpot_p{p}": percentile(tpot, p) for p in (50, 99)}
    out |= {f"long_ttft_p{p}": percentile([s.ttft for s in long], p) for p in (50, 99)}
    return out


def worst_short_ttft(cost: StepCost, long_prompt: int, short_prompt: int,
                     chunk: int | None) -> float:
    """TTFT of a short prompt that arrives just as the longest step of a long prefill starts,
    under short-first priority: that step, then its own prefill (no other load)."""
    size = long_prompt if chunk is None else min(positive_int("chunk", chunk), long_prompt)
    return cost.compute(long_prompt - size, size) + cost.step([(0, short_prompt)])
