"""Chapter 8's recipe calculator: a long-context deployment's knobs, each with its numbers.

`recommend(model, gpu, n_gpus, context, concurrency, ttft_budget_s, queries_per_doc)` picks

- weight and KV precision: the least lossy pair in `PRECISIONS` whose weights, a named
  `reserve` and `concurrency` requests of `context` tokens fit (`lclib.kv_budget`, the one
  capacity function);
- TP and CP degrees: tensor parallelism over a node first (it splits the weights, which CP
  replicates), in a degree the heads allow (`tp_degrees`), context parallelism for the rest;
- the prefill chunk: the largest in `CHUNKS` whose step, at the end of the prompt and with the
  running decodes, stays within their inter-token-latency target (`itl_target_s`);
- prefix caching: on when a document gets more than one query (`lclib.amortize.query_cost`).

`ttft_layout` / `gpus_for_ttft` search TP x CP layouts for a TTFT budget (any CP degree);
`feasible_layouts` lists the layouts that hold a request; `speculation_headroom` says how much
spare compute a decode step leaves. Every number comes from the cost model of chapters 1-5.
Torch-free. `hopper_lecture_recipes()` sets the three production recipes of the Hopper lecture
beside what this calculator computes for the same inputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .amortize import incremental_prefill_time, query_cost
from .context_parallel import kv_split, per_gpu_memory, ring_prefill_time
from .cost import (
    NO_RESERVE,
    VLLM_RESERVE,
    GPULike,
    ModelLike,
    Reserve,
    decode_step_time,
    kv_budget,
    kv_cache_bytes,
    weight_bytes,
)
from .hardware import get_gpu
from .models import get_model
from .scheduler import StepCost, max_chunk_within
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
# per-step token budgets to choose from: Sarathi-Serve runs 512 and 2,048; a step of Llama-70B on
# 4 H100s is compute-bound from ~122 prefill tokens at 40% MFU (chapter 4), so none is wasteful
CHUNKS = (512, 1024, 2048, 4096, 8192, 16384)
GPUS_PER_NODE = 8  # NVLink domain of an HGX/DGX H100 or H200 node
MAX_GPUS = 4096  # search limit for the GPUs a TTFT budget needs


def tp_degrees(model: ModelLike) -> tuple[int, ...]:
    """Tensor-parallel degrees a node can run: at most `GPUS_PER_NODE`, dividing the query
    heads, and dividing the KV heads or a multiple of them (each rank then holds a copy)."""
    m = get_model(model)
    return tuple(t for t in range(1, GPUS_PER_NODE + 1) if m.n_heads % t == 0
                 and (m.n_kv_heads % t == 0 or t % m.n_kv_heads == 0))


def split(model: ModelLike, n_gpus: int) -> tuple[int, int]:
    """(tp, cp): the largest of `tp_degrees` dividing n_gpus (TP splits the weights, which CP
    replicates); CP takes the remaining factor (the sequence is split cp ways)."""
    n_gpus = positive_int("n_gpus", n_gpus)
    tp = max(t for t in tp_degrees(model) if n_gpus % t == 0)
    return tp, n_gpus // tp


def _reserve(reserve: Reserve) -> Reserve:
    if not isinstance(reserve, Reserve):
        raise ValueError(f"reserve is an lclib.Reserve (lclib.NO_RESERVE, lclib.VLLM_RESERVE or "
                         f"Reserve(utilization, runtime_bytes, prefill_chunk)), got {reserve!r}")
    return reserve


def users_that_fit(model: ModelLike, gpu: GPULike, context: int, n_gpus: int,
                   weight_dtype: str = "bf16", kv_dtype: str = "bf16",
                   reserve: Reserve = NO_RESERVE) -> int:
    """Requests of `context` tokens whose KV fits in `lclib.kv_budget` of each TP group (CP
    replicates the weights; a request's KV spreads over min(tp, H_kv) * cp shares)."""
    tp, cp = split(model, n_gpus)
    per_gpu = kv_budget(model, gpu, tp, weight_dtype, _reserve(reserve)) / tp
    share = per_gpu_memory(model, context, tp, cp, weight_dtype, kv_dtype)["kv"]
    return max(0, math.floor(per_gpu / share))


def pick_chunk(cost: StepCost, context: int, decodes: int, itl_target_s: float) -> int:
    """The largest chunk in `CHUNKS` whose step at the end of a `context`-token prompt, with
    `decodes` requests decoding at that context, stays within `itl_target_s` (the smallest
    chunk if none does); never more than the context."""
    largest = max_chunk_within(cost, max(0, context - CHUNKS[0]), itl_target_s,
                               [context] * decodes)
    fits = [c for c in CHUNKS if c <= largest]
    return min(context, max(fits, default=CHUNKS[0]))


def _fits(model: ModelLike, gpu: GPULike, context: int, tp: int, cp: int, weight_dtype: str,
          kv_dtype: str, reserve: Reserve, concurrency: int = 1) -> bool:
    """Whether each GPU of a TP x CP layout holds its weights, reserve and KV share."""
    per_gpu = kv_budget(model, gpu, tp, weight_dtype, reserve) / tp
    kv = concurrency * kv_cache_bytes(model, context, kv_dtype=kv_dtype)
    return per_gpu > 0 and kv / (kv_split(model, tp) * cp) <= per_gpu


def ttft_layout(model: ModelLike, gpu: GPULike, context: int, budget_s: float,
                mfu: float = 0.4, kv_dtype: str = "bf16", weight_dtype: str = "bf16",
                reserve: Reserve = NO_RESERVE, tp: int | None = None) -> tuple[int, int] | None:
    """(tp, cp) with the fewest CP groups that hold the request and prefill its `context`
    tokens within `budget_s`: any CP degree, not only powers of two; the ring runs over
    InfiniBand once it leaves a node. `tp` defaults to the largest of `tp_degrees` (a node:
    fewer weight copies and ring steps). None if `MAX_GPUS` do not suffice."""
    budget_s, reserve = positive_float("budget_s", budget_s), _reserve(reserve)
    tp = max(tp_degrees(model)) if tp is None else tp
    if tp not in tp_degrees(model):
        raise ValueError(f"tp must be one of {tp_degrees(model)} for this model, got {tp!r}")
    for cp in range(1, MAX_GPUS // tp + 1):
        link = "nvlink" if tp * cp <= GPUS_PER_NODE else "infiniband"
        if (_fits(model, gpu, context, tp, cp, weight_dtype, kv_dtype, reserve)
                and ring_prefill_time(model, gpu, context, tp, cp, link, kv_dtype,
                                      mfu) <= budget_s):
            return tp, cp
    return None


def gpus_for_ttft(model: ModelLike, gpu: GPULike, context: int, budget_s: float,
                  mfu: float = 0.4, kv_dtype: str = "bf16", weight_dtype: str = "bf16",
                  reserve: Reserve = NO_RESERVE) -> int | None:
    """Fewest GPUs (`ttft_layout`) that hold and prefill `context` tokens within `budget_s`."""
    layout = ttft_layout(model, gpu, context, budget_s, mfu, kv_dtype, weight_dtype, reserve)
    return layout[0] * layout[1] if layout else None


@dataclass(frozen=True)
class Layout:
    """A TP x CP layout that holds the weights and the requests, and the HBM it leaves."""

    tp: int
    cp: int
    free_per_gpu: float  # bytes of HBM left on each GPU after weights, reserve and KV

    @property
    def n_gpus(self) -> int:
        return self.tp * self.cp


def feasible_layouts(model: ModelLike, gpu: GPULike, context: int, concurrency: int = 1,
                     weight_dtype: str = "bf16", kv_dtype: str = "bf16",
                     reserve: Reserve = NO_RESERVE) -> list[Layout]:
    """For each TP degree, the fewest CP groups that hold `concurrency` requests of `context`
    tokens: layouts an engine can run, unlike ceil(bytes / HBM), which packs bytes as if the
    GPUs were one pool."""
    concurrency, reserve, out = positive_int("concurrency", concurrency), _reserve(reserve), []
    kv = concurrency * kv_cache_bytes(model, context, kv_dtype=kv_dtype)
    for tp in tp_degrees(model):
        cp = next((c for c in range(1, MAX_GPUS // tp + 1) if _fits(
            model, gpu, context, tp, c, weight_dtype, kv_dtype, reserve, concurrency)), None)
        if cp:
            per_gpu = kv_budget(model, gpu, tp, weight_dtype, reserve) / tp
            out.append(Layout(tp, cp, per_gpu - kv / (kv_split(model, tp) * cp)))
    return out


def speculation_headroom(model: ModelLike, gpu: GPULike, n_gpus: int, context: int,
                         batch: int, mfu: float = 0.4, kv_dtype: str = "bf16") -> float:
    """Memory time over compute time of one decode step: roughly how many tokens per request a
    step could verify before it turns compute-bound. Speculative decoding spends that spare
    compute, so it pays most at small batch (and at long context, where each request's own KV
    read keeps the step memory-bound)."""
    m = get_model(model)
    flops = positive_int("batch", batch) * (2 * m.n_params_nonembedding
                                            + 4 * m.n_layers * m.q_dim * context)
    compute = flops / (positive_int("n_gpus", n_gpus) * get_gpu(gpu).peak_flops() * mfu)
    return decode_step_time(model, gpu, context, batch, n_gpus, kv_dtype=kv_dtype) / compute


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
    users: int  # requests of `context` tokens that fit beside weights and reserve
    fits: bool  # users >= concurrency
    within_window: bool  # context <= the model's max_position_embeddings
    ttft_s: float  # a fresh document's prefill (seconds: a latency)
    ttft_cached_s: float  # a follow-up question on the cached document
    tpot_s: float  # one decode step with `concurrency` requests at `context`
    tokens_per_s_per_gpu: float
    per_query_gpu_s: float  # amortized over the document's queries (GPU-seconds: a cost)
    gpus_for_ttft: int | None  # GPUs a fresh document's TTFT needs
    chunk_step_s: float  # the longest step with this chunk: the decodes' worst gap
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
               reserve: Reserve) -> tuple[str, str, int]:
    for w, kv in PRECISIONS:
        users = users_that_fit(model, gpu, context, n_gpus, w, kv, reserve)
        if users >= concurrency:
            return w, kv, users
    return (*PRECISIONS[-1], users)


def _reserve_text(reserve: Reserve, model: ModelLike, gpu: GPULike, tp: int) -> str:
    if reserve == NO_RESERVE:
        return "no reserve (the hardware's ceiling)"
    name = "vLLM's defaults" if reserve == VLLM_RESERVE else "a reserve"
    return f"{reserve.bytes_per_gpu(model, gpu, tp) / GB:,.1f} GB reserved per GPU ({name})"


def recommend(model: ModelLike, gpu: GPULike, n_gpus: int, context: int, concurrency: int = 1,
              ttft_budget_s: float = 20.0, queries_per_doc: int = 1, mfu: float = 0.4,
              question_tokens: int = 200, answer_tokens: int = 1000, itl_target_s: float = 0.1,
              reserve: Reserve = NO_RESERVE) -> Recipe:
    """A recipe for `concurrency` requests of `context` tokens on `n_gpus` `gpu`s.

    Capacity subtracts `reserve` on every GPU (`lclib.VLLM_RESERVE` for vLLM's defaults; the
    default, `lclib.NO_RESERVE`, is the hardware's ceiling). Prefill runs at `mfu` of the dense bf16
    peak whatever the weight precision (no FP8 matmuls are assumed); decode is memory-bound.
    Defaults follow the book's case: 200-token questions, 1,000-token answers, a p99
    inter-token-latency target of 100 ms for the decodes that share a step with a chunk.
    """
    context = positive_int("context", context)
    concurrency = positive_int("concurrency", concurrency)
    queries = positive_int("queries_per_doc", queries_per_doc)
    budget = positive_float("ttft_budget_s", ttft_budget_s)
    itl = positive_float("itl_target_s", itl_target_s)
    reserve = _reserve(reserve)
    tp, cp = split(model, n_gpus)
    link = "nvlink" if n_gpus <= GPUS_PER_NODE else "infiniband"
    w, kv, users = _precision(model, gpu, context, n_gpus, concurrency, reserve)
    ttft = ring_prefill_time(model, gpu, context, tp, cp, link, kv_dtype=kv, mfu=mfu)
    cached = incremental_prefill_time(model, gpu, context, question_tokens, n_gpus, mfu)
    tpot = decode_step_time(model, gpu, context, concurrency, n_gpus, w, kv)
    cost = StepCost(model, gpu, n_gpus, mfu, kv)
    chunk = pick_chunk(cost, context, concurrency, itl)
    step = cost.step([(context - chunk, chunk), *[(context, 1)] * concurrency])
    per_query = query_cost(model, gpu, context, question_tokens, answer_tokens, queries, mfu,
                           concurrency, kv).per_query
    need = gpus_for_ttft(model, gpu, context, budget, mfu, kv, w, reserve)
    window = get_model(model).max_position_embeddings
    binding = tuple(name for name, bad in (("compute", ttft > budget),
                                           ("capacity", users < concurrency)) if bad)
    mem = per_gpu_memory(model, context, tp, cp, w, kv)
    choices = (
        Choice("weights / KV cache", f"{w} / {kv}",
               f"{users} request(s) of {context:,} tokens fit (need {concurrency}): "
               f"{mem['weights'] / GB:,.1f} GB of weights + {mem['kv'] / GB:,.1f} GB of KV per "
               f"request on each GPU of {get_gpu(gpu).hbm_bytes / GB:,.1f} GB, "
               + _reserve_text(reserve, model, gpu, tp)),
        Choice("TP × CP", f"{tp} × {cp}",
               f"TP splits weights and KV within a node; CP splits the sequence "
               f"(first-query TTFT {fmt_seconds(ttft)}; budget {fmt_seconds(budget)} needs "
               + (f"{need} GPUs)" if need else f"more than {MAX_GPUS} GPUs)")),
        Choice("prefill chunk", f"{chunk:,} tokens",
               f"its step at the end of the prompt, with {concurrency} decode(s), takes "
               f"{fmt_seconds(step)} (p99 inter-token target {fmt_seconds(itl)})"),
        Choice("prefix caching", "on" if queries > 1 else "off",
               f"{queries} queries per document: {per_query:,.1f} GPU-s per query with "
               f"{concurrency} answer(s) decoded together; a follow-up question's TTFT "
               f"{fmt_seconds(cached)}"),
        Choice("decode", f"{fmt_seconds(tpot)} per token",
               f"{concurrency} request(s) at {context:,} tokens: "
               f"{concurrency / tpot / n_gpus:,.0f} tokens/s per GPU"),
        Choice("binding wall", " + ".join(binding) or "none",
               f"first TTFT {'within' if ttft <= budget else 'over'} budget; "
               f"{users} requests fit, {concurrency} needed; the model's window is "
               f"{window:,} tokens" + ("" if context <= window else
                                       f": {context:,} needs a context extension (chapter 6)")),
    )
    return Recipe(w, kv, tp, cp, chunk, queries > 1, users, users >= concurrency,
                  context <= window, ttft, cached, tpot, concurrency / tpot / n_gpus, per_query,
                  need, step, binding, choices)


# --- the Hopper lecture, §7: three production recipes at 128K --------------------------------

LLAMA, K128 = "llama-3.3-70b", 131_072
# The lecture counts ~85 GB of headroom beside 35 GB of INT4 weights on the 141 GB label: it keeps
# about 20 GB per GPU for activations and the runtime
LECTURE_RESERVE = Reserve(runtime_bytes=20 * GB)


@dataclass(frozen=True)
class Claim:
    """One statement of a lecture recipe, our number for it, and what closes a gap."""

    recipe: str
    item: str
    stated: str
    ours: float
    lo: float  # the stated value or range, in the unit of `ours`
    hi: float
    note: str

    @property
    def agrees(self) -> bool:
        """Within the stated range, or within 10% of a single stated value."""
        return self.lo * (0.9 if self.lo == self.hi else 1) <= self.ours <= self.hi * (
            1.1 if self.lo == self.hi else 1)


def _tok_per_gpu(weight_dtype: str, gpu: str, n: int, batch: int, context: int) -> float:
    return batch / decode_step_time(LLAMA, gpu, context, batch, n, weight_dtype, "fp8") / n


def _chunk_note(gpu: str, n: int, stated: int, ours: int, decodes: int) -> str:
    cost = StepCost(LLAMA, gpu, n, 0.4, "fp8")
    step = cost.step([(K128 - stated, stated), *[(K128, 1)] * decodes])
    return (f"a {fmt_tokens(stated)} chunk at the end of a 128K prompt stalls {decodes} decode(s) "
            f"{fmt_seconds(step)}; a 100 ms inter-token target picks {fmt_tokens(ours)}")


def hopper_lecture_recipes() -> list[Claim]:
    """The Hopper lecture's §7 recipes for Llama-3.3-70B at 128K (1xH200, 4xH100, 8xH200),
    each statement beside this calculator's number for the same inputs."""
    h200 = get_gpu("h200")
    free_label = (h200.datasheet_hbm_bytes - weight_bytes(LLAMA, "int4")) / GB
    r1 = recommend(LLAMA, "h200", 1, K128, concurrency=3)
    r1_res = recommend(LLAMA, "h200", 1, K128, concurrency=3, reserve=LECTURE_RESERVE)
    r2 = recommend(LLAMA, "h100-sxm", 4, K128, concurrency=1)
    r3 = recommend(LLAMA, "h200", 8, K128, concurrency=32)
    res = f"{LECTURE_RESERVE.runtime_bytes / GB:.0f} GB"
    int4_users = {c: users_that_fit(LLAMA, "h200", c, 1, "int4", "fp8", LECTURE_RESERVE)
                  for c in (K128, 32_768)}
    return [
        Claim("1×H200", "AWQ-INT4 weights (GB)", "35 GB", weight_bytes(LLAMA, "int4") / GB, 35,
              35, "70.55B parameters × 0.5 byte"),
        Claim("1×H200", "FP8 KV per 128K request (GB)", "21 GB",
              kv_cache_bytes(LLAMA, K128, kv_dtype="fp8") / GB, 21, 21, "131,072 × 160 KiB"),
        Claim("1×H200", "HBM headroom beside INT4 weights (GB)", "~85 GB", free_label, 85, 85,
              f"141 GB label − 35.3 GB (the device reports {h200.hbm_bytes / GB:,.1f} GB); the "
              f"lecture keeps ~{res} for activations"),
        Claim("1×H200", "batch at 128K, INT4 + FP8 KV", "~3",
              users_that_fit(LLAMA, "h200", K128, 1, "int4", "fp8"), 3, 3,
              f"no reserve; with the lecture's {res}: {int4_users[K128]}"),
        Claim("1×H200", "batch at 32K, INT4 + FP8 KV", "~12",
              users_that_fit(LLAMA, "h200", 32_768, 1, "int4", "fp8"), 12, 12,
              f"no reserve; with the lecture's {res}: {int4_users[32_768]}"),
        Claim("1×H200", "weight bytes per parameter for 3 users at 128K", "0.5 (INT4)",
              weight_bytes(LLAMA, r1.weight_dtype) / get_model(LLAMA).n_params, 0.5, 0.5,
              f"we pick {r1.weight_dtype} with no reserve, {r1_res.weight_dtype} with the "
              f"lecture's {res}"),
        Claim("1×H200", "prefill chunk (tokens)", "4K", r1.chunk, 4096, 4096,
              _chunk_note("h200", 1, 4096, r1.chunk, 3)),
        Claim("4×H100", "TP degree", "4", r2.tp, 4, 4, "TP over the node; CP = 1"),
        Claim("4×H100", "tokens/s/GPU, 32 users at 16K, BF16 weights", "600–1000",
              _tok_per_gpu("bf16", "h100-sxm", 4, 32, 16_384), 600, 1000,
              "memory-bound decode at 100% of HBM bandwidth"),
        Claim("4×H100", "tokens/s/GPU, 32 users at 16K, FP8 weights", "600–1000",
              _tok_per_gpu("fp8", "h100-sxm", 4, 32, 16_384), 600, 1000,
              "FP8 weights halve the weight reads"),
        Claim("4×H100", "prefill chunk (tokens)", "8K", r2.chunk, 8192, 8192,
              _chunk_note("h100-sxm", 4, 8192, r2.chunk, 1)),
        Claim("8×H200", "TP degree", "8", r3.tp, 8, 8, "TP over the node; CP = 1"),
        Claim("8×H200", "users at 128K, BF16 weights + FP8 KV", "max concurrency",
              users_that_fit(LLAMA, "h200", K128, 8, "bf16", "fp8", VLLM_RESERVE), 1, math.inf,
              "the lecture gives no number; ours with vLLM's default reserve"),
    ]
