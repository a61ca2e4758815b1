"""Paired and unpaired statistics for accuracy comparisons (torch-free, numpy-free).

Two setups run on the SAME prompts give paired outcomes; only the prompts on which they
disagree (the discordant pairs) carry information about which is better. McNemar's test asks
whether the discordant pairs split evenly, with an exact binomial p-value, valid for any count.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction
from typing import NamedTuple


class McNemar(NamedTuple):
    """Paired comparison of setups a and b on the same n prompts.

    both: prompts both got right; only_a / only_b: right under one setup only;
    diff: accuracy(a) - accuracy(b); ci95: a 95% (Wald, paired) interval on diff;
    p_value: two-sided exact binomial test of only_a vs only_b.
    """

    n: int
    both: int
    only_a: int
    only_b: int
    p_value: float
    diff: float
    ci95: tuple[float, float]


def _binomial_two_sided(k: int, n: int) -> float:
    """Two-sided exact p of k or fewer (or as extreme) successes in n fair coin flips."""
    if n == 0:
        return 1.0
    k = min(k, n - k)
    tail = sum(math.comb(n, i) for i in range(k + 1))
    return min(1.0, float(Fraction(2 * tail, 2**n)))


def mcnemar(a: Sequence[bool], b: Sequence[bool]) -> McNemar:
    """McNemar's test of paired outcomes a[i], b[i] (True = correct) on the same prompts."""
    a, b = [bool(x) for x in a], [bool(x) for x in b]
    if len(a) != len(b) or not a:
        raise ValueError(f"pass two equal, non-empty sequences of outcomes (got {len(a)} and "
                         f"{len(b)})")
    n = len(a)
    pairs = list(zip(a, b, strict=True))
    both = sum(x and y for x, y in pairs)
    only_a = sum(x and not y for x, y in pairs)
    only_b = sum(y and not x for x, y in pairs)
    diff = (only_a - only_b) / n
    half = 1.96 * math.sqrt(max((only_a + only_b) / n - diff**2, 0.0) / n)
    return McNemar(n, both, only_a, only_b, _binomial_two_sided(only_a, only_a + only_b), diff,
                   (diff - half, diff + half))


def prompts_needed(p: float, delta: float, z: float = 2.0) -> int:
    """Prompts per setup so that an accuracy difference `delta` between two INDEPENDENT samples
    near accuracy `p` stands `z` standard errors clear: n = 2 z² p(1-p) / delta²."""
    if not 0 < p < 1 or not 0 < delta <= 1 or z <= 0:
        raise ValueError("pass 0 < p < 1 (accuracy), 0 < delta <= 1 (difference), z > 0")
    return math.ceil(2 * z**2 * p * (1 - p) / delta**2)


def paired_prompts_needed(discordant: float, delta: float, z: float = 2.0) -> int:
    """Prompts so that a PAIRED difference `delta` stands `z` standard errors clear, when a
    fraction `discordant` of prompts disagree: n = z² (discordant - delta²) / delta²."""
    if not 0 < delta <= discordant <= 1 or z <= 0:
        raise ValueError("pass 0 < delta <= discordant <= 1 (fractions of prompts), z > 0")
    return max(1, math.ceil(z**2 * (discordant - delta**2) / delta**2))
