"""Chapter 6 on a real LM: SmolLM2-135M-Instruct past its 8,192-token window, with no scaling,
linear, dynamic NTK and YaRN `rope_scaling`, each a static factor as engines serve them.

This run moves *positions* past the window, not *content* (`pretrained_rope_text` reads whole
documents of 1×, 2× and 4× the window, ~500 s a scaling at 4× here): every configuration
in minutes. RoPE's scores depend on position differences only, and the probe puts them past the
window with ~1,300 real tokens. Part A (the
chat template's opening, then Python's own documentation, ``pydoc_data.topics``, with K needles
"The secret number for <name> is NNNNN.") sits at positions 0..a; part B (the documentation
that follows) and each question sit at the end of a longer range: B's last token at position
P − 1, for P = the length of A + B (no gap), 1×, 2× and 4× the window. The questions then reach
the needles across distances of ~P, and B's tokens see A across a gap of P − a − b. One forward
of A per scaling (its cache reused), one of B per length, one short suffix per question: the
same needles and tokens under every scaling, so comparisons are paired. What this leaves out
is a long context's *content* (attention spread over 16K real tokens): say so where it is shown.

"dynamic" is the table vLLM builds (`DynamicNTKScalingRotaryEmbedding._compute_cos_sin_cache`,
vLLM 0.32: base·(s·max_position/max_trained_positions − (s − 1))^(d/(d−2)), once, for every
length), which is transformers' dynamic base at s × the window (`lclib.rope.ntk_base`), applied
here as a plain table so cached keys and new queries share it.
"""

from __future__ import annotations

import random
import sys
import time
from typing import Any

import torch
import torch.nn.functional as F

from .. import pretrained, rope
from .core import Run, experiment

WINDOW = 8192  # SmolLM2-135M-Instruct config.json: max_position_embeddings
SCALINGS = ("none", "linear", "dynamic", "yarn")
CONFIGS = (("none", 1.0), *((name, f) for f in (2.0, 4.0) for name in SCALINGS[1:]))
LEVELS = {"no gap": None, "1x": 1, "2x": 2, "4x": 4}  # P as a multiple of the window
MARGIN = 64  # positions kept for the question and answer after P
NAMES = ("Alice", "Bruno", "Chiara", "Dmitri", "Elena", "Farid", "Greta", "Hiro", "Ines",
         "Jonas", "Kavya", "Lars", "Mei", "Nadia", "Omar", "Priya", "Quentin", "Rosa", "Sven",
         "Tariq", "Ulla", "Viktor", "Wanda", "Yusuf")
QUESTION = "What is the secret number for {name}? Answer with the number only."


def corpus() -> list[str]:
    """Paragraphs of Python's documentation shipped with the interpreter (``pydoc_data.topics``:
    the language reference's ``help()`` texts), topics in sorted order."""
    from pydoc_data.topics import topics

    return [p.strip("\n") for key in sorted(topics) for p in topics[key].split("\n\n")
            if p.strip()]


def scaling_dict(name: str, theta: float, window: int = WINDOW,
                 factor: float = 2.0) -> dict[str, Any] | None:
    """The `rope_scaling` lclib.rope reads for `name` (None for no scaling); "dynamic" is
    transformers' dynamic NTK, which `runtime_scaling` turns into vLLM's static table."""
    dicts = {"none": None, "linear": {"rope_type": "linear", "factor": factor},
             "dynamic": {"rope_type": "dynamic", "factor": factor},
             "yarn": {"rope_type": "yarn", "factor": factor,
                      "original_max_position_embeddings": window}}
    if name not in dicts:
        raise ValueError(f"unknown scaling {name!r}; pass one of {', '.join(SCALINGS)}")
    return dicts[name]


def expected_inv_freq(name: str, head_dim: int, theta: float, window: int = WINDOW,
                      factor: float = 2.0) -> tuple[torch.Tensor, float]:
    """lclib's inv_freq and attention factor for `name`; "dynamic" at factor × window tokens."""
    return rope.inv_freq(head_dim, theta, scaling_dict(name, theta, window, factor), window,
                         seq_len=int(factor * window) if name == "dynamic" else None)


def runtime_scaling(name: str, theta: float, head_dim: int, window: int = WINDOW,
                    factor: float = 2.0) -> dict[str, Any]:
    """The `rope_scaling` (with rope_theta) passed to transformers' config for `name`: the dict
    itself, or for "dynamic" a default RoPE on vLLM's enlarged base (one table at all lengths;
    transformers' own "dynamic" recomputes it per length, which a KV cache cannot follow)."""
    if name == "dynamic":
        base = rope.ntk_base(head_dim, theta, factor, window, int(factor * window))
        return {"rope_type": "default", "rope_theta": base}
    return {**(scaling_dict(name, theta, window, factor) or {"rope_type": "default"}),
            "rope_theta": theta}


def load(name: str, window: int = WINDOW, factor: float = 2.0):
    """SmolLM2 (fp32, sdpa) with scaling `name` in its config, and lclib's check of the
    rotary inv_freq the loaded model built (max relative error, attention factors)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    folder = pretrained.smollm2()
    config = AutoConfig.from_pretrained(folder)
    theta, head_dim = config.rope_parameters["rope_theta"], config.head_dim
    config.rope_scaling = runtime_scaling(name, theta, head_dim, window, factor)
    config.max_position_embeddings = window
    model = AutoModelForCausalLM.from_pretrained(folder, config=config, dtype=torch.float32,
                                                 attn_implementation="sdpa").eval()
    rotary = model.model.rotary_emb
    expected, attention = expected_inv_freq(name, head_dim, theta, window, factor)
    err = ((rotary.inv_freq.double() - expected.double()).abs() / expected.double()).max()
    check = {"rope_scaling": config.rope_scaling, "lclib_scaling": scaling_dict(
        name, theta, window, factor), "inv_freq_max_rel_error": err.item(),
        "attention_factor": rotary.attention_scaling, "lclib_attention_factor": attention,
        "slowest_pair_divided_by": (theta ** (-(head_dim - 2) / head_dim)
                                    / rotary.inv_freq[-1].item())}
    return model, check


def chat_parts(tokenizer) -> tuple[list[int], str]:
    """Token ids of the chat template before the user's text, and the text after it."""
    text = tokenizer.apply_chat_template([{"role": "user", "content": "\x00"}],
                                         add_generation_prompt=True, tokenize=False)
    before, after = text.split("\x00")
    return tokenizer.encode(before, add_special_tokens=False), after


def probe(tokenizer, a_tokens: int, b_tokens: int, n_needles: int,
          seed: int = 0) -> dict[str, Any]:
    """Part A: the chat template's opening, then documentation paragraphs with `n_needles`
    needle sentences spread evenly over it (~`a_tokens` ids); part B: the next `b_tokens`
    ids of documentation. Each needle's name, secret and token span in A."""
    if not 1 <= n_needles <= len(NAMES):
        raise ValueError(f"pass 1 <= n_needles <= {len(NAMES)}, not {n_needles}")
    rng = random.Random(seed)
    names = rng.sample(NAMES, n_needles)
    secrets = [rng.randrange(10_000, 100_000) for _ in names]
    ids, _ = chat_parts(tokenizer)
    needles, paragraphs = [], iter(corpus())
    while len(ids) < a_tokens or len(needles) < n_needles:
        i = len(needles)
        if i < n_needles and len(ids) >= i / n_needles * a_tokens:
            piece = tokenizer.encode(f"The secret number for {names[i]} is {secrets[i]}.\n\n",
                                     add_special_tokens=False)
            needles.append({"name": names[i], "secret": secrets[i], "start": len(ids),
                            "stop": len(ids) + len(piece)})
        else:
            piece = tokenizer.encode(next(paragraphs) + "\n\n", add_special_tokens=False)
        ids += piece
    rest: list[int] = []
    while len(rest) < b_tokens:
        rest += tokenizer.encode(next(paragraphs) + "\n\n", add_special_tokens=False)
    return {"a": ids, "b": rest[:b_tokens], "needles": needles}


def forward(model, ids: list[int], start: int, cache):
    """Logits [len(ids), vocab] of `ids` at positions start.. on top of `cache` (extended)."""
    positions = torch.arange(start, start + len(ids))[None]
    with torch.no_grad():
        return model(torch.tensor([ids]), position_ids=positions, past_key_values=cache,
                     use_cache=True).logits[0]


def crop(cache, length: int) -> None:
    """Cut `cache` back to its first `length` tokens."""
    drop = cache.get_seq_length() - length
    if drop > 0:
        cache.crop(-drop)


def ask(model, tokenizer, cache, position: int, needle: dict[str, Any]) -> dict[str, Any]:
    """Ask for `needle` at `position` on top of `cache`, the answer opened with "The secret
    number for <name> is": the secret's teacher-forced NLL, and whether greedy decoding would
    emit it (every forced position's argmax is the secret's next token: the same thing, in one
    pass). Leaves the cache as it found it."""
    _, after = chat_parts(tokenizer)
    name, length = needle["name"], cache.get_seq_length()
    prompt = tokenizer.encode(f"\n\n{QUESTION.format(name=name)}{after}The secret number for "
                              f"{name} is", add_special_tokens=False)
    secret = tokenizer.encode(f" {needle['secret']}", add_special_tokens=False)
    forced = forward(model, prompt + secret, position, cache)[len(prompt) - 1:-1]
    crop(cache, length)
    greedy = forced.argmax(-1).tolist()
    return {**needle, "greedy": tokenizer.decode(greedy), "found": greedy == secret,
            "answer_nll": F.cross_entropy(forced, torch.tensor(secret)).item()}


def measure(name: str, factor: float, tokenizer, parts: dict[str, Any],
            window: int) -> dict[str, Any]:
    """One scaling: the runtime check, then per level B's per-token NLL and every needle."""
    from transformers import DynamicCache

    model, check = load(name, window, factor)
    t0 = time.perf_counter()
    a, b = parts["a"], parts["b"]
    cache = DynamicCache(config=model.config)
    forward(model, a, 0, cache)
    levels = {}
    for level, multiple in LEVELS.items():
        end = len(a) + len(b) if multiple is None else multiple * window - MARGIN
        logits = forward(model, b, end - len(b), cache)
        nll = F.cross_entropy(logits[:-1], torch.tensor(b[1:]), reduction="none")
        levels[level] = {"b_start": end - len(b), "question_at": end,
                         "gap": end - len(b) - len(a), "nll": nll.mean().item(),
                         "token_nll": [round(x, 4) for x in nll.tolist()],
                         "needles": [ask(model, tokenizer, cache, end, n)
                                     for n in parts["needles"]]}
        crop(cache, len(a))
    return {"scaling": name, "factor": factor, **check, "wall_s": time.perf_counter() - t0,
            "levels": levels}


def label(row: dict[str, Any]) -> str:
    """"none", or the scaling with its factor ("yarn x2")."""
    return row["scaling"] if row["scaling"] == "none" else f"{row['scaling']} x{row['factor']:g}"


def paired(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """McNemar of each configuration against the first one measured, per level."""
    from ..stats import mcnemar

    done = [r for r in rows if "levels" in r]
    if not done:
        return {}
    base = done[0]
    return {label(row): {level: mcnemar([n["found"] for n in row["levels"][level]["needles"]],
                                        [n["found"] for n in v["needles"]])._asdict()
                         for level, v in base["levels"].items()} for row in done[1:]}


@experiment("pretrained_rope")
def pretrained_rope(device: torch.device, sizes: list[int] | None, dtype: str, run: Run,
                    n_needles: int = 8, window: int = WINDOW,
                    configs: tuple[tuple[str, float], ...] = CONFIGS,
                    seed: int = 0) -> dict[str, Any]:
    """Per (scaling, factor) in `configs`: the NLL of part B and each needle at every level
    of `LEVELS`; `sizes` = [tokens of A, tokens of B] (default 768, 512). `window` below the
    real 8,192 makes the run cheap (the tests); skips a configuration that would overrun
    the time budget."""
    from transformers import AutoTokenizer
    from transformers import __version__ as transformers_version

    folder = pretrained.smollm2()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    a_tokens, b_tokens = sizes or [768, 512]
    parts = probe(tokenizer, a_tokens, b_tokens, n_needles, seed)
    last = None
    for name, factor in configs:
        if last is not None and last > run.left():
            run.row({"scaling": name, "factor": factor,
                     "skipped": f"predicted {last:.0f} s, {run.left():.0f} s left"})
            continue
        last = run.row(measure(name, factor, tokenizer, parts, window))["wall_s"] * 1.2
    return {"model": "SmolLM2-135M-Instruct", "weights": pretrained.ORIGIN,
            "transformers": transformers_version, "attention": "sdpa, fp32",
            "corpus": f"pydoc_data.topics of Python {sys.version.split()[0]}", "seed": seed,
            "a_tokens": len(parts["a"]), "b_tokens": len(parts["b"]), "window": window,
            "levels": {k: v for k, v in LEVELS.items()}, "needles": parts["needles"],
            "paired": paired(run.rows)}
