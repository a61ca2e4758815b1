"""Chapter 8's recipe calculator: a long-context deployment's knobs, each with its numbers.

`recommend(model, gpu, n_gpus, context, concurrency, ttft_budget_s, queries_per_doc)` picks

- weight and KV precision: the least lossy pair in `PRECISIONS` whose weights plus
  `concurrency` requests of `context` tokens fit in HBM (`lclib.context_parallel.per_gpu_memory`);
- TP and CP degrees: tensor parallelism over a node first (it splits the weights, which CP
  replicates), context parallelism for the rest (`split`);
- the prefill chunk: the largest in `CHUNKS` that keeps a short prompt's worst wait behind a long
  prefill within `short_ttft_s` (`lclib.scheduler.worst_short_ttft`);
- prefix caching: on when a document gets more than one query (`lclib.amortize.query_cost`).

Every number comes from the cost model of chapters 1-5; nothing here re-derives a formula.
Torch-free. `seed_comparison()` sets the three recipes of the Hopper lecture (seed 002 §7)
beside what this calculator computes for the same inputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .amortize import incremental_prefill_time, query_cost
from .context_parallel import per_gpu_memory, ring_prefill_time
from .cost import GPULike, ModelLike, decode_step_time, kv_cache_bytes, weight_bytes
from .hardware import get_gpu
from .models import get_model
from .scheduler import StepCost, worst_short_ttft
from .units import GB, fmt_seconds, fmt_tokens, positive_float, positive_int

# (weights, KV) from least to most lossy. The order is a claim, not a measurement of this
# course: `PRECISION_EVIDENCE` says where each step comes from (chapter 5 measured FP8 KV only in
# miniature: TinyLM needles with static scales calibrated on the served model).
PRECISIONS: tuple[tuple[str, str], ...] = (
    ("bf16", "bf16"), ("bf16", "fp8"), ("fp8", "fp8"), ("int4", "fp8"))
PRECISION_EVIDENCE: dict[tuple[str, str], str] = {
    ("bf16", "bf16"): "reference: the checkpoint's own precision",
    ("bf16", "fp8"): "claim: the Hopper lecture's RULER table (§4.2), FP8 KV per head < 1 point "
                     "at 128K, not reproduced; chapter 5 measured no loss in miniature with "
                     "calibrated static scales, and a clipped outlier head with scale 1.0",
    ("fp8", "fp8"): "claim: FP8 weights cost more than FP8 KV; not measured here",
    ("int4", "fp8"): "claim: INT4 weights cost more still; INT4 KV (5-10 points, the lecture's "
                     "§4.3) is left out for retrieval workloads; not measured here",
}
CHUNKS = (2048, 4096, 8192, 16384)  # below ~2K a chunk stops being compute-bound (chapter 4)
GPUS_PER_NODE = 8  # NVLink domain of an HGX/DGX H100 or H200 node
MAX_GPUS = 4096  # search limit for the GPUs a TTFT budget needs


def split(model: ModelLike, n_gpus: int) -> tuple[int, int]:
    """(tp, cp): TP is the largest power of two dividing n_gpus and the query heads, at most a
    node; CP takes the remaining factor (the sequence is split cp ways)."""
    n_gpus, heads = positive_int("n_gpus", n_gpus), get_model(model).n_heads
    tp = 1
    while tp * 2 <= GPUS_PER_NODE and n_gpus % (tp * 2) == 0 and heads % (tp * 2) == 0:
        tp *= 2
    return tp, n_gpus // tp


def users_that_fit(model: ModelLike, gpu: GPULike, context: int, n_gpus: int,
                   weight_dtype: str = "bf16", kv_dtype: str = "bf16",
                   reserve_bytes: float = 0.0) -> int:
    """Requests of `context` tokens whose KV fits beside the weights on every GPU.

    Per GPU: weights / tp (CP replicates them) and each request's KV / (min(tp, H_kv) * cp);
    `reserve_bytes` per GPU are kept for activations and the runtime.
    """
    tp, cp = split(model, n_gpus)
    mem = per_gpu_memory(model, context, tp, cp, weight_dtype, kv_dtype)
    free = get_gpu(gpu).hbm_bytes - reserve_bytes - mem["weights"]
    return max(0, math.floor(free / mem["kv"]))


def pick_chunk(cost: StepCost, context: int, short_prompt: int, short_ttft_s: float) -> int:
    """The largest chunk in `CHUNKS` whose worst short-prompt TTFT stays within `short_ttft_s`
    (the smallest chunk if none does); never more than the context."""
    fits = [c for c in CHUNKS if worst_short_ttft(cost, context, short_prompt, c) <= short_ttft_s]
    return min(context, max(fits, default=CHUNKS[0]))


def gpus_for_ttft(model: ModelLike, gpu: GPULike, context: int, budget_s: float,
                  mfu: float = 0.4, kv_dtype: str = "bf16") -> int | None:
    """Fewest GPUs (a power of two, split by `split`) whose ring prefill of `context` tokens
    fits in `budget_s`; None if even `MAX_GPUS` do not."""
    n = 1
    while n <= MAX_GPUS:
        tp, cp = split(model, n)
        if ring_prefill_time(model, gpu, context, tp, cp, kv_dtype=kv_dtype, mfu=mfu) <= budget_s:
            return n
        n *= 2
    return None


@dataclass(frozen=True)
class Choice:
    """One knob of a recipe: its value and the numbers behind it."""

    knob: str
    value: str
    why: str


@dataclass(frozen=True)
class Recipe:
    """What `recommend` chose, and the numbers it chose by (seconds, bytes, GPU-seconds)."""

    weight_dtype: str
    kv_dtype: str
    tp: int
    cp: int
    chunk: int
    prefix_caching: bool
    users: int  # requests of `context` tokens that fit
    fits: bool  # users >= concurrency
    ttft_s: float  # a fresh document's prefill
    ttft_cached_s: float  # a follow-up question on the cached document
    tpot_s: float  # one decode step with `concurrency` requests at `context`
    tokens_per_s_per_gpu: float
    per_query_gpu_s: float  # amortized over the document's queries
    gpus_for_ttft: int | None  # GPUs a fresh document's TTFT needs
    short_wait_s: float  # worst short-prompt TTFT behind this chunk
    binding: tuple[str, ...]  # the walls that bind: "compute", "capacity"
    choices: tuple[Choice, ...] = field(repr=False)

    def table(self) -> str:
        """The choices as a Markdown table."""
        rows = [f"| {c.knob} | {c.value} | {c.why} |" for c in self.choices]
        return "\n".join(["| knob | choice | the numbers behind it |", "|---|---|---|", *rows])

    def _repr_markdown_(self) -> str:
        return self.table()

    def vllm_command(self, model: str, max_model_len: int) -> str:
        """This recipe as a `vllm serve` command line (vLLM 0.32 flags) for the Hugging Face id
        `model`."""
        lines = [f"vllm serve {model}", f"--tensor-parallel-size {self.tp}"]
        if self.cp > 1:  # vLLM's prefill context parallelism splits a prompt's prefill over ranks
            lines.append(f"--prefill-context-parallel-size {self.cp}")
        lines += [f"--max-model-len {positive_int('max_model_len', max_model_len)}",
                  f"--kv-cache-dtype {'fp8' if self.kv_dtype == 'fp8' else 'auto'}",
                  f"--max-num-batched-tokens {self.chunk}",
                  "--enable-prefix-caching" if self.prefix_caching
                  else "--no-enable-prefix-caching"]
        if self.weight_dtype == "fp8":
            lines.append("--quantization fp8")
        command = " \\\n  ".join(lines)
        if self.weight_dtype == "int4":
            command = "# INT4 weights: serve an AWQ or GPTQ checkpoint of the model\n" + command
        return command


def _precision(model: ModelLike, gpu: GPULike, context: int, n_gpus: int, concurrency: int,
               reserve_bytes: float) -> tuple[str, str, int]:
    for w, kv in PRECISIONS:
        users = users_that_fit(model, gpu, context, n_gpus, w, kv, reserve_bytes)
        if users >= concurrency:
            return w, kv, users
    return (*PRECISIONS[-1], users)


def recommend(model: ModelLike, gpu: GPULike, n_gpus: int, context: int, concurrency: int = 1,
              ttft_budget_s: float = 20.0, queries_per_doc: int = 1, mfu: float = 0.4,
              question_tokens: int = 200, answer_tokens: int = 1000, short_prompt: int = 2048,
              short_ttft_s: float = 2.0, reserve_bytes: float = 0.0) -> Recipe:
    """A recipe for `concurrency` requests of `context` tokens on `n_gpus` `gpu`s.

    Prefill runs at `mfu` of the dense bf16 peak whatever the weight precision (no FP8 matmuls
    are assumed); decode is memory-bound. Defaults follow the book's case: 200-token questions,
    1,000-token answers, 2,048-token short prompts.
    """
    context = positive_int("context", context)
    concurrency = positive_int("concurrency", concurrency)
    queries = positive_int("queries_per_doc", queries_per_doc)
    budget = positive_float("ttft_budget_s", ttft_budget_s)
    if not 0 <= reserve_bytes < get_gpu(gpu).hbm_bytes:
        raise ValueError(f"reserve_bytes is HBM kept per GPU; pass 0 <= reserve_bytes < "
                         f"{get_gpu(gpu).hbm_bytes:,}, got {reserve_bytes!r}")
    tp, cp = split(model, n_gpus)
    w, kv, users = _precision(model, gpu, context, n_gpus, concurrency, reserve_bytes)
    ttft = ring_prefill_time(model, gpu, context, tp, cp, kv_dtype=kv, mfu=mfu)
    cached = incremental_prefill_time(model, gpu, context, question_tokens, n_gpus, mfu)
    tpot = decode_step_time(model, gpu, context, concurrency, n_gpus, w, kv)
    cost = StepCost(model, gpu, n_gpus, mfu, kv)
    chunk = pick_chunk(cost, context, short_prompt, short_ttft_s)
    wait = worst_short_ttft(cost, context, short_prompt, chunk)
    per_query = query_cost(model, gpu, context, question_tokens, answer_tokens, queries, mfu,
                           concurrency, kv).per_query
    need = gpus_for_ttft(model, gpu, context, budget, mfu, kv)
    first_ok = ttft <= budget
    binding = tuple(name for name, bad in (("compute", not first_ok), ("capacity",
                                           users < concurrency)) if bad)
    mem = per_gpu_memory(model, context, tp, cp, w, kv)
    hbm = get_gpu(gpu).hbm_bytes
    choices = (
        Choice("weights / KV cache", f"{w} / {kv}",
               f"{users} request(s) of {fmt_tokens(context)} fit (need {concurrency}): "
               f"{mem['weights'] / GB:,.1f} GB of weights + {mem['kv'] / GB:,.1f} GB of KV per "
               f"request on each GPU of {hbm / GB:,.0f} GB"
               + (f", {reserve_bytes / GB:,.0f} GB reserved" if reserve_bytes else "")),
        Choice("TP × CP", f"{tp} × {cp}",
               f"TP splits weights and KV within a node; CP splits the sequence "
               f"(first-query TTFT {fmt_seconds(ttft)}; budget {fmt_seconds(budget)} needs "
               + (f"{need} GPUs)" if need else f"more than {MAX_GPUS} GPUs)")),
        Choice("prefill chunk", f"{chunk:,} tokens",
               f"a {short_prompt:,}-token prompt waits at most {fmt_seconds(wait)} behind a "
               f"{fmt_tokens(context)} prefill (target {fmt_seconds(short_ttft_s)})"),
        Choice("prefix caching", "on" if queries > 1 else "off",
               f"{queries} queries per document: {per_query:,.1f} GPU-s per query; a follow-up "
               f"question's TTFT {fmt_seconds(cached)}"),
        Choice("decode", f"{fmt_seconds(tpot)} per token",
               f"{concurrency} request(s) at {fmt_tokens(context)}: "
               f"{concurrency / tpot / n_gpus:,.0f} tokens/s per GPU"),
        Choice("binding wall", " + ".join(binding) or "none",
               f"first TTFT {'within' if first_ok else 'over'} budget; "
               f"{users} requests fit, {concurrency} needed"),
    )
    return Recipe(w, kv, tp, cp, chunk, queries > 1, users, users >= concurrency, ttft, cached,
                  tpot, concurrency / tpot / n_gpus, per_query, need, wait, binding, choices)


# --- seed 002 §7: three production recipes at 128K on Hopper ---------------------------------

LLAMA, K128 = "llama-3.3-70b", 131_072
SEED_RESERVE = 20 * GB  # the gap between 1xH200's free HBM (105.7 GB) and the seed's ~85 GB


@dataclass(frozen=True)
class Claim:
    """One statement of a seed recipe, our number for it, and what closes a gap."""

    recipe: str
    item: str
    seed: str
    ours: float
    lo: float  # the seed's value or range, in the unit of `ours`
    hi: float
    note: str

    @property
    def agrees(self) -> bool:
        """Within the seed's range, or within 10% of its single value."""
        return self.lo * (0.9 if self.lo == self.hi else 1) <= self.ours <= self.hi * (
            1.1 if self.lo == self.hi else 1)


def _tok_per_gpu(weight_dtype: str, gpu: str, n: int, batch: int, context: int) -> float:
    return batch / decode_step_time(LLAMA, gpu, context, batch, n, weight_dtype, "fp8") / n


def _chunk_note(gpu: str, n: int, seed_chunk: int, ours: int) -> str:
    wait = worst_short_ttft(StepCost(LLAMA, gpu, n, 0.4, "fp8"), K128, 2048, seed_chunk)
    return (f"{fmt_tokens(seed_chunk)} chunks make a 2K prompt wait {fmt_seconds(wait)} behind a "
            f"128K prefill; a 2 s target picks {fmt_tokens(ours)}")


def seed_comparison() -> list[Claim]:
    """Seed 002 §7's recipes for Llama-3.3-70B at 128K (1xH200, 4xH100, 8xH200) vs ours."""
    free = (get_gpu("h200").hbm_bytes - weight_bytes(LLAMA, "int4")) / GB
    r1 = recommend(LLAMA, "h200", 1, K128, concurrency=3)
    r1_res = recommend(LLAMA, "h200", 1, K128, concurrency=3, reserve_bytes=SEED_RESERVE)
    r2 = recommend(LLAMA, "h100-sxm", 4, K128, concurrency=1)
    r3 = recommend(LLAMA, "h200", 8, K128, concurrency=32)
    int4_users = {c: users_that_fit(LLAMA, "h200", c, 1, "int4", "fp8", SEED_RESERVE)
                  for c in (K128, 32_768)}
    return [
        Claim("1×H200", "AWQ-INT4 weights (GB)", "35 GB", weight_bytes(LLAMA, "int4") / GB, 35,
              35, "70.55B parameters × 0.5 byte"),
        Claim("1×H200", "FP8 KV per 128K request (GB)", "21 GB",
              kv_cache_bytes(LLAMA, K128, kv_dtype="fp8") / GB, 21, 21, "131,072 × 160 KiB"),
        Claim("1×H200", "HBM headroom beside INT4 weights (GB)", "~85 GB", free, 85, 85,
              f"141 GB − 35.3 GB; the seed keeps ~{SEED_RESERVE / GB:.0f} GB for activations"),
        Claim("1×H200", "batch at 128K, INT4 + FP8 KV", "~3",
              users_that_fit(LLAMA, "h200", K128, 1, "int4", "fp8"), 3, 3,
              f"with a {SEED_RESERVE / GB:.0f} GB reserve: {int4_users[K128]}"),
        Claim("1×H200", "batch at 32K, INT4 + FP8 KV", "~12",
              users_that_fit(LLAMA, "h200", 32_768, 1, "int4", "fp8"), 12, 12,
              f"with a {SEED_RESERVE / GB:.0f} GB reserve: {int4_users[32_768]}; ~12 needs "
              "~7 GB per request, more than FP8 KV's 5.4 GB"),
        Claim("1×H200", "weight bytes per parameter for 3 users at 128K", "0.5 (INT4)",
              weight_bytes(LLAMA, r1.weight_dtype) / get_model(LLAMA).n_params, 0.5, 0.5,
              f"we pick {r1.weight_dtype}: it fits 3 users; with the reserve we pick "
              f"{r1_res.weight_dtype}"),
        Claim("1×H200", "prefill chunk (tokens)", "4K", r1.chunk, 4096, 4096,
              _chunk_note("h200", 1, 4096, r1.chunk)),
        Claim("4×H100", "TP degree", "4", r2.tp, 4, 4, "TP over the node; CP = 1"),
        Claim("4×H100", "tokens/s/GPU, 32 users at 16K, BF16 weights", "600–1000",
              _tok_per_gpu("bf16", "h100-sxm", 4, 32, 16_384), 600, 1000,
              "memory-bound decode at 100% of HBM bandwidth"),
        Claim("4×H100", "tokens/s/GPU, 32 users at 16K, FP8 weights", "600–1000",
              _tok_per_gpu("fp8", "h100-sxm", 4, 32, 16_384), 600, 1000,
              "FP8 weights halve the weight reads"),
        Claim("4×H100", "prefill chunk (tokens)", "8K", r2.chunk, 8192, 8192,
              _chunk_note("h100-sxm", 4, 8192, r2.chunk)),
        Claim("8×H200", "TP degree", "8", r3.tp, 8, 8, "TP over the node; CP = 1"),
        Claim("8×H200", "users at 128K, BF16 weights + FP8 KV", "max concurrency",
              users_that_fit(LLAMA, "h200", K128, 8, "bf16", "fp8"), 1, math.inf,
              "the seed gives no number; ours is an upper bound (no reserve)"),
    ]
