"""Chapter 7's picture: which prompt tokens each token policy keeps in a real LM's cache.

`compression_picture()` reads the committed `pretrained_policies` run (SmolLM2-135M-Instruct,
`lclib.bench.pretrained_policies`), no model needed: for one needle prompt, one strip per
policy along the prompt's tokens, binned (`BIN` tokens a cell). A cell's bar is the share of
the model's (layer, KV head) caches that keep its tokens: full height for all of them, none for
a dropped cell. The needle's tokens are marked and labelled, and each strip says whether the
answer decoded from that cache found the secret. A dropdown picks the prompt (needle depth), a
slider the fraction of the prompt kept.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .. import measurements
from ..explorer import Dropdown, Slider
from ..picture import Frame, Picture
from ..svg import el, svg

EXPERIMENT = "pretrained_policies"
DIRECTORY = Path("data/pretrained")  # as the pages see it (they run in book/)
BIN = 8  # tokens per cell
POLICY_NAMES = {"full": "full cache", "window": "recent window", "sinks": "4 sinks + window",
                "h2o": "H2O", "snapkv": "SnapKV"}
WIDTH, LEFT, RIGHT, STRIP, GAP, TOP = 900, 118, 214, 30, 14, 58


def detailed_rows(directory: str | Path = DIRECTORY, seq_len: int | None = None,
                  ) -> list[dict[str, Any]]:
    """The committed runs' prompts that record kept positions, of length `seq_len` (default:
    the longest), each once, by needle depth."""
    rows = [r for r in measurements.load(EXPERIMENT, directory) if "kept_count" in r]
    if not rows:
        raise ValueError(f"no {EXPERIMENT} rows with kept_count under {directory}; run "
                         f"python -m lclib.bench {EXPERIMENT} or pass directory=")
    length = seq_len or max(r["seq_len"] for r in rows)
    once = {r["seed"]: r for r in rows if r["seq_len"] == length}  # a prompt two runs reached
    return sorted(once.values(), key=lambda r: r["depth"])


def cell_shares(counts: Sequence[int], pairs: int, bin_tokens: int = BIN) -> list[float]:
    """Per cell of `bin_tokens` positions: the share of (position, cache) pairs kept, where
    `counts[i]` of the `pairs` caches keep position i."""
    if pairs < 1 or bin_tokens < 1 or any(not 0 <= c <= pairs for c in counts):
        raise ValueError("pass counts in [0, pairs], pairs >= 1 and bin_tokens >= 1")
    cells = [counts[i:i + bin_tokens] for i in range(0, len(counts), bin_tokens)]
    return [sum(c) / (pairs * len(c)) for c in cells]


def _key(policy: str, keep: float) -> str:
    return "full" if policy == "full" else f"{policy}@{keep}"


def _strip(y: float, shares: Sequence[float], cell_w: float) -> str:
    """Dropped background and one path of kept bars (height = share kept; a run of equal
    cells is one bar)."""
    runs = [(i, len(list(group)), s) for i, (s, group) in _runs(shares) if s > 0]
    bars = "".join(f"M{LEFT + i * cell_w:.1f} {y + STRIP}v{-s * STRIP:.1f}h{n * cell_w:.2f}"
                   f"v{s * STRIP:.1f}z" for i, n, s in runs)
    return (el("rect", x=LEFT, y=y, width=len(shares) * cell_w, height=STRIP,
               class_="lc-idle") + (el("path", d=bars, class_="lc-fill-0") if bars else ""))


def _runs(values: Sequence[float]):
    """(start index, (value, items)) of each run of equal `values`."""
    start = 0
    for value, group in itertools.groupby(values):
        items = list(group)
        yield start, (value, items)
        start += len(items)


def _verdict(row: dict[str, Any], key: str) -> str:
    answer = row["answer"][key].strip() or "(nothing)"
    short = answer if len(answer) <= 22 else "…" + answer[-21:]
    return ("✓ found: " if row["found"][key] else "✗ missed: ") + short


def _frame(row: dict[str, Any], keep: float, bin_tokens: int) -> Frame:
    counts = row["kept_count"]
    t, pairs = len(counts["full"]), max(counts["full"])
    n_cells = -(-t // bin_tokens)
    cell_w = (WIDTH - LEFT - RIGHT) / n_cells
    start, end = row["needle"]
    budget = row["budget_tokens"][str(keep)]
    x0, x1 = LEFT + start / bin_tokens * cell_w, LEFT + end / bin_tokens * cell_w
    bottom = TOP + len(POLICY_NAMES) * (STRIP + GAP)
    parts = [
        el("text", text=f"bar height: share of the {pairs} (layer, KV head) caches keeping the "
                        f"cell's tokens ({bin_tokens} tokens a cell); grey: dropped by all",
           x=LEFT, y=14),
        el("text", text=f"needle: “The secret number is {row['secret']}.” "
                        f"(tokens {start}–{end - 1})", x=min(x0, WIDTH - RIGHT - 300), y=36),
        el("rect", x=x0 - 1, y=TOP - 16, width=max(x1 - x0, 2) + 2, height=bottom - TOP + 12,
           class_="lc-fill-warn", fill_opacity=0.25, stroke="currentColor",
           stroke_dasharray="3 2"),
    ]
    for i, policy in enumerate(POLICY_NAMES):
        key = _key(policy, keep)
        y = TOP + i * (STRIP + GAP)
        kept = budget if policy != "full" else t
        parts += [
            _strip(y, cell_shares(counts[key], pairs, bin_tokens), cell_w),
            el("text", text=POLICY_NAMES[policy], x=LEFT - 6, y=y + 13, text_anchor="end"),
            el("text", text=f"keeps {kept:,}/head", x=LEFT - 6, y=y + 27, text_anchor="end"),
            el("text", text=_verdict(row, key), x=WIDTH - RIGHT + 8, y=y + 13),
            el("text", text=f"needle kept in {row['needle_kept'][key]:.0%} of caches",
               x=WIDTH - RIGHT + 8, y=y + 27),
        ]
    for pos in range(0, t + 1, 256):
        x = LEFT + pos / bin_tokens * cell_w
        parts += [el("line", x1=x, x2=x, y1=bottom - GAP + 2, y2=bottom - GAP + 6,
                     class_="lc-ink"),
                  el("text", text=f"{pos:,}", x=x, y=bottom + 6, text_anchor="middle")]
    parts.append(el("text", text=f"prompt position (tokens; the question and chat template "
                                 f"are the last ones, {t:,} in all)", x=LEFT, y=bottom + 22))
    verdicts = ", ".join(f"{POLICY_NAMES[p]} {'found' if row['found'][_key(p, keep)] else 'missed'}"
                         for p in POLICY_NAMES)
    caption = (f"Needle at depth {row['depth']:.0%} of a {t:,}-token prompt, each policy "
               f"keeping {budget:,} tokens ({keep:.0%}) per layer and KV head: {verdicts}.")
    label = (f"Which of {t:,} prompt tokens each KV policy keeps at {keep:.0%}, "
             f"needle at tokens {start}–{end - 1}")
    return Frame(svg(WIDTH, bottom + 30, *parts, label=label), caption)


def compression_picture(rows: Sequence[Mapping[str, Any]] | None = None,
                        bin_tokens: int = BIN) -> Picture:
    """The kept tokens of every policy on each of `rows` (default: `detailed_rows()`), one
    dropdown entry per prompt, a slider over the fractions kept."""
    rows = detailed_rows() if rows is None else list(rows)
    if not rows or any("kept_count" not in r for r in rows):
        raise ValueError("pass rows of a pretrained_policies run that record kept_count")
    keeps = sorted(float(k) for k in rows[0]["budget_tokens"])
    by_depth = {f"needle at {r['depth']:.0%}": r for r in rows}

    def draw(prompt: str, keep: float) -> Frame:
        return _frame(by_depth[prompt], keep, bin_tokens)

    return Picture(draw, [Dropdown("prompt", "prompt", tuple(by_depth)),
                          Slider("keep", "kept", tuple(keeps), fmt="{:.0%}".format,
                                 default=keeps[0])],
                   title="What each token policy keeps of a real needle prompt "
                         "(SmolLM2-135M, equal budgets)")
