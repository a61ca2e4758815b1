"""Chapter 6 on a real LM reading a real long text: SmolLM2-135M-Instruct with no scaling and
with linear, dynamic NTK and YaRN `rope_scaling` (static factors, as engines serve them) on
documents of 1×, 2× and 4× its 8,192-token window.

Each document is the chat template's opening and then Python's own documentation
(`pretrained_rope.corpus`) with K needles "The secret number for <name> is NNNNN." spread
evenly through it, `multiple` × window − `MARGIN` tokens long. Per (scaling, length) the model
reads the document into its cache, `CHUNK` tokens a forward, scoring its own text (the NLL of
every token but the needles', by 1,024-token bucket of position), and is then asked for each
needle on top of the cache (`pretrained_rope.ask`: teacher-forced, the greedy answer in one
pass). Every scaling reads the same document at a length, so needles pair across scalings
(McNemar). The factor is 2 at 1× and 2× (what an engine serving 16K would set; at 1× it
shows the cost on text that fits) and 4 at 4×. Measured here (2 cores, fp32): 8K tokens take
~40 s, 16K ~150 s, 32K ~500 s.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import torch
import torch.nn.functional as F

from .. import pretrained
from . import pretrained_rope as pr
from .core import Run, experiment

LEVELS = (1, 2, 4)  # the document's length as a multiple of the window
ORDER = ("none", "yarn", "dynamic", "linear")  # the run's order: a budget cut drops the last
BUCKET = 1024  # tokens per NLL bucket
CHUNK = 4096  # tokens a forward while the cache fills (measured: 16K in 150 s, 32K in 505 s)


def configs(multiple: int) -> list[tuple[str, float]]:
    """(scaling, factor) measured at `multiple` × the window, in `ORDER`."""
    factor = float(max(multiple, 2))
    return [(name, 1.0 if name == "none" else factor) for name in ORDER]


def document(tokenizer, length: int, n_needles: int, seed: int = 0) -> dict[str, Any]:
    """`length` token ids of documentation with `n_needles` needles (`pr.probe`'s part A,
    cut to length) and the needles' names, secrets and spans."""
    parts = pr.probe(tokenizer, length, 0, n_needles, seed)
    return {"ids": parts["a"][:length], "needles": parts["needles"]}


def text_nll(model, ids: list[int], cache, needles: list[dict[str, Any]]) -> list[float]:
    """Fill `cache` with `ids`, `CHUNK` tokens a forward; mean NLL of each next token by
    `BUCKET` of position, the needles' own tokens left out (their numbers are random)."""
    nll = []
    with torch.no_grad():
        for s in range(0, len(ids), CHUNK):
            chunk = ids[s:s + CHUNK]
            hidden = model.model(torch.tensor([chunk]), past_key_values=cache, use_cache=True,
                                 position_ids=torch.arange(s, s + len(chunk))[None]
                                 ).last_hidden_state[0]
            target = torch.tensor(ids[s + 1:s + len(chunk) + 1])
            hidden = hidden[:len(target)]
            nll += [F.cross_entropy(model.lm_head(hidden[t:t + BUCKET]).float(),
                                    target[t:t + BUCKET], reduction="none")
                    for t in range(0, len(target), BUCKET)]
    nll = torch.cat(nll)
    keep = torch.ones(len(nll), dtype=torch.bool)
    for n in needles:
        keep[max(n["start"] - 1, 0):n["stop"] - 1] = False
    return [nll[b:b + BUCKET][keep[b:b + BUCKET]].mean().item()
            for b in range(0, len(nll), BUCKET)]


def measure(name: str, factor: float, tokenizer, doc: dict[str, Any],
            window: int) -> dict[str, Any]:
    """One scaling on one document: the runtime check, the NLL buckets and every needle."""
    from transformers import DynamicCache

    model, check = pr.load(name, window, factor)
    t0 = time.perf_counter()
    cache = DynamicCache(config=model.config)
    buckets = text_nll(model, doc["ids"], cache, doc["needles"])
    prefill_s = time.perf_counter() - t0
    needles = [pr.ask(model, tokenizer, cache, len(doc["ids"]), n) for n in doc["needles"]]
    return {"scaling": name, "factor": factor, **check, "tokens": len(doc["ids"]),
            "nll_buckets": buckets, "prefill_s": prefill_s, "needles": needles,
            "wall_s": time.perf_counter() - t0}


def merged(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The measured rows of `runs` (``measurements.runs``, oldest first) that read the newest
    run's documents (the same options but `levels` and `scalings`), one per (multiple,
    scaling), the newest kept: a configuration a budget cut skipped can be run on its own."""
    def documents(run: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in run["header"]["options"].items()
                if k not in ("levels", "scalings")}

    rows: dict[tuple[int, str], dict[str, Any]] = {}
    for run in (r for r in runs if documents(r) == documents(runs[-1])):
        rows.update({(r["multiple"], r["scaling"]): r for r in run["rows"] if "needles" in r})
    return sorted(rows.values(), key=lambda r: (r["multiple"], ORDER.index(r["scaling"])))


def compare(rows: list[dict[str, Any]], window: int) -> list[dict[str, Any]]:
    """Each measured row: needles found, the mean NLL of its `BUCKET`s that start inside the
    first `window` and of those past it, and against no scaling on the same document: McNemar
    on the needles found, and a sign test on the answers' NLL (McNemar of "lower than with
    none" against "higher")."""
    from ..stats import mcnemar

    done = [r for r in rows if "needles" in r]
    inside = -(-window // BUCKET)
    out = []
    for row in done:
        base = next((r for r in done if r["multiple"] == row["multiple"]
                     and r["scaling"] == "none"), None)
        found = [n["found"] for n in row["needles"]]
        buckets = row["nll_buckets"]
        entry = {"multiple": row["multiple"], "scaling": row["scaling"], "factor": row["factor"],
                 "found": sum(found), "n": len(found),
                 "nll_inside": sum(buckets[:inside]) / len(buckets[:inside]),
                 "nll_past": (sum(buckets[inside:]) / len(buckets[inside:])
                              if buckets[inside:] else None)}
        if base is not None and base is not row:
            ours, theirs = ([n["answer_nll"] for n in r["needles"]] for r in (row, base))
            pairs = list(zip(ours, theirs, strict=True))
            entry["found_vs_none"] = mcnemar(found, [n["found"] for n in base["needles"]])._asdict()
            entry["answer_nll_vs_none"] = mcnemar([a < b for a, b in pairs],
                                                  [a > b for a, b in pairs])._asdict()
        out.append(entry)
    return out


@experiment("pretrained_rope_text")
def pretrained_rope_text(device: torch.device, sizes: list[int] | None, dtype: str, run: Run,
                         n_needles: int = 16, window: int = pr.WINDOW,
                         levels: tuple[int, ...] = LEVELS, seed: int = 0,
                         scalings: tuple[str, ...] = ORDER) -> dict[str, Any]:
    """Each length of `levels` (multiples of `window`), each of `configs` there whose scaling
    is in `scalings`: the NLL buckets and the needles found. `window` below the real 8,192
    makes a cheap run (the tests); `sizes` is unused. Skips a configuration the time budget
    cannot finish: predicted from the last one measured, times the square of the lengths'
    ratio (attention's share grows as the length)."""
    from transformers import AutoTokenizer
    from transformers import __version__ as transformers_version

    if unknown := set(scalings) - set(ORDER):
        raise ValueError(f"unknown scalings {sorted(unknown)}; pass some of {', '.join(ORDER)}")
    tokenizer = AutoTokenizer.from_pretrained(pretrained.smollm2())
    last: tuple[int, float] | None = None  # (multiple, wall seconds) of the last measured
    for multiple in levels:
        doc = document(tokenizer, multiple * window - pr.MARGIN, n_needles, seed)
        for name, factor in (c for c in configs(multiple) if c[0] in scalings):
            predicted = last[1] * (multiple / last[0]) ** 2 if last else 0.0
            if predicted > run.left():
                run.row({"multiple": multiple, "scaling": name, "factor": factor,
                         "skipped": f"predicted {predicted:.0f} s, {run.left():.0f} s left"})
                continue
            row = run.row({"multiple": multiple,
                           **measure(name, factor, tokenizer, doc, window)})
            last = (multiple, row["wall_s"] * 1.1)
    return {"model": "SmolLM2-135M-Instruct", "weights": pretrained.ORIGIN,
            "transformers": transformers_version, "attention": "sdpa, fp32",
            "corpus": f"pydoc_data.topics of Python {sys.version.split()[0]}", "seed": seed,
            "window": window, "margin": pr.MARGIN, "bucket": BUCKET, "levels": list(levels),
            "compared": compare(run.rows, window)}
