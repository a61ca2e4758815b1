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

A fixed token budget is not a fixed time: a chunk's attention to the prefix before it grows
with its offset (`chunk_profile`), and every decode sharing the step waits for it. Size the
chunk by the decodes' inter-token-latency target (`max_chunk_within`), judged on the p99 of
their token gaps (`Served.itl`), not on a mean time per output token, which hides the stalls.
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
    token_times: list[float] = field(default_factory=list, repr=False)  # after the first

    @property
    def ttft(self) -> float:
        return self.first_token - self.request.arrival

    @property
    def itl(self) -> list[float]:
        """Inter-token latencies: the gap before each output token after the first."""
        times = [self.first_token, *self.token_times]
        return [b - a for a, b in zip(times, times[1:], strict=False)]

    @property
    def tpot(self) -> float:
        """Mean seconds per output token after the first (nan for one-token outputs)."""
        n = self.request.output - 1
        return (self.finish - self.first_token) / n if n else math.nan


@dataclass(frozen=True)
class Step:
    """One engine step of `simulate`: from `start` to `end` (s), the prompt pieces it computed,
    (request, offset, tokens), and the requests that decoded one token, (request, context);
    a request is its index in `simulate`'s returned list."""

    start: float
    end: float
    prefill: tuple[tuple[int, int, int], ...]
    decode: tuple[tuple[int, int], ...]


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
    log: list[Step] | None = None
    index: dict[int, int] = field(default_factory=dict)  # id(Served) -> its returned position

    def record(self, start: float, plan: Sequence[tuple[_Prefill, int]], ahead: int = 0) -> None:
        """Log the step [start, self.t]: `plan`'s pieces, and the running decodes, each `ahead`
        tokens past its current context."""
        if self.log is not None:
            at = self.index
            self.log.append(Step(start, self.t,
                                 tuple((at[id(p.served)], p.done, n) for p, n in plan),
                                 tuple((at[id(d.served)], d.context + ahead)
                                       for d in self.running)))

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
        start = self.t
        self.t += self.cost.step(pieces)
        self.record(start, plan)
        self.advance_decodes([self.t])
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

    def advance_decodes(self, times: list[float]) -> None:
        """Every running request gets one token at each of `times`."""
        k = len(times)
        for d in self.running:
            d.context, d.left = d.context + k, d.left - k
            d.served.token_times.extend(times)
            if d.left == 0:
                d.served.finish = self.t
        self.running = [d for d in self.running if d.left]

    def decode_run(self, until: float, coef: tuple[float, float, float, float]) -> None:
        """Decode-only steps until a request finishes or the step that passes `until` ends."""
        a, b, m0, m1 = coef
        n, ctx = len(self.running), sum(d.context for d in self.running)
        times = []
        for k in range(min(d.left for d in self.running)):
            start = self.t
            self.t += max(n * a + b * ctx, m0 + m1 * ctx)
            self.record(start, (), k)
            ctx = ctx + n
            times.append(self.t)
            if self.t >= until:
                break
        self.advance_decodes(times)


def simulate(requests: Sequence[Request], cost: StepCost | None = None, chunk: int | None = 4096,
             priority: str = "fcfs", log: list[Step] | None = None) -> list[Served]:
    """Serve `requests` on one replica; return each with its first-token and finish times,
    in order of arrival.

    `chunk`: the per-step token budget and the largest piece of a prompt per step (None: no
    chunking, prompts run whole). `priority`: order of waiting prompts, "fcfs" (arrival, as
    vLLM's default) or "short_first" (fewest prompt tokens left first). `log`: a list that
    gets every step, a `Step`, in order.
    """
    if priority not in PRIORITIES:
        raise ValueError(f"unknown priority {priority!r}; pass one of {', '.join(PRIORITIES)}")
    if not requests:
        raise ValueError("pass at least one Request")
    cost = cost or StepCost()
    budget = max(r.prompt for r in requests) if chunk is None else positive_int("chunk", chunk)
    rep, coef = _Replica(cost, chunk, priority, budget, log=log), cost.decode_coefficients()
    pending = sorted((Served(r) for r in requests), key=lambda s: s.request.arrival)
    rep.index = {id(s): i for i, s in enumerate(pending)}
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
    """p50/p99 TTFT, TPOT (mean per request) and ITL (every token gap; and the longest) of short
    requests, and TTFT of long ones (prompt > `long_above`)."""
    short = [s for s in served if s.request.prompt <= long_above]
    long = [s for s in served if s.request.prompt > long_above]
    if not short or not long:
        raise ValueError("summarize needs both short and long requests; pass a mixed workload")
    tpot = [s.tpot for s in short if not math.isnan(s.tpot)]
    out = {f"short_ttft_p{p}": percentile([s.ttft for s in short], p) for p in (50, 99)}
    out |= {f"short_tpot_p{p}": percentile(tpot, p) for p in (50, 99)}
    gaps = [g for s in short for g in s.itl]
    out |= {f"short_itl_p{p}": percentile(gaps, p) for p in (50, 99)} | {"short_itl_max": max(gaps)}
    out |= {f"long_ttft_p{p}": percentile([s.ttft for s in long], p) for p in (50, 99)}
    return out


def worst_short_ttft(cost: StepCost, long_prompt: int, short_prompt: int,
                     chunk: int | None) -> float:
    """TTFT of a short prompt that arrives just as the longest step of a long prefill starts,
    under short-first priority: that step, then its own prefill (no other load)."""
    size = long_prompt if chunk is None else min(positive_int("chunk", chunk), long_prompt)
    return cost.compute(long_prompt - size, size) + cost.step([(0, short_prompt)])


def chunk_profile(cost: StepCost, prompt: int, chunk: int) -> list[tuple[int, float]]:
    """(offset, seconds) of each step of a `prompt`-token prefill split into `chunk`s, alone."""
    prompt, chunk = positive_int("prompt", prompt), positive_int("chunk", chunk)
    return [(o, cost.step([(o, min(chunk, prompt - o))])) for o in range(0, prompt, chunk)]


def _largest(fits, hi: int) -> int:
    """Largest n in 1..hi with fits(n) (fits is monotone: true then false); 0 if none."""
    lo = 0
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid - 1)
    return lo


def compute_bound_tokens(cost: StepCost, offset: int = 0) -> int:
    """Fewest prefill tokens at `offset` whose compute time reaches the step's memory time
    (weights plus the prefix's KV): below it a step costs the same however few tokens it has."""
    return 1 + _largest(lambda n: cost.compute(offset, n) < cost.memory(offset), 10**7)


def max_chunk_within(cost: StepCost, offset: int, itl_s: float,
                     decodes: Sequence[int] = ()) -> int:
    """Largest chunk at `offset` whose step, with one token for each decode of the given
    contexts, lasts at most `itl_s` seconds: the decodes' inter-token latency. 0 if none."""
    itl_s, rest = positive_float("itl_s", itl_s), [(c, 1) for c in decodes]
    return _largest(lambda n: cost.step([(offset, n), *rest]) <= itl_s, 10**7)
