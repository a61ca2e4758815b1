"""Helpers for the book's pages: glue a number, a table from rows, a calculation's working.

    from lclib import page
    page.glue("kv_128k_gb", kv / GB, ".1f")                  # {glue:text}`kv_128k_gb` -> 42.9
    page.working("kv_token", "2 · 80 · 8 · 128 · 2 B", kv_per_token, "B")
    #   glues "2 · 80 · 8 · 128 · 2 B = 327,680 B" (the expression is checked against the value)
    page.table(["model", "KV per token"], [[m.name, f"{b:,} B"] for m, b in rows])
    page.measurements("crossover")                           # measured points, or one sentence

Torch-free; myst_nb and IPython are imported when a page calls these.
"""

from __future__ import annotations

import ast
import math
import operator
import re
from collections.abc import Sequence
from typing import Any

_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
        ast.Div: operator.truediv, ast.Pow: operator.pow, ast.USub: operator.neg}
_SYMBOLS = {"·": "*", "×": "*", "−": "-", "÷": "/", "^": "**"}


def glue(name: str, value: Any, fmt: str = "") -> str:
    """Glue `format(value, fmt)` as text under `name` (for {glue:text}`name`); return the text."""
    from myst_nb import glue as nb_glue

    text = format(value, fmt)
    nb_glue(name, text, display=False)
    return text


def table(header: Sequence[str], rows: Sequence[Sequence[Any]], caption: str = "") -> Any:
    """A Markdown table (IPython `Markdown`) with `header` and one line per row; cells via str.

    A `caption` (Markdown) goes above the table.
    """
    from IPython.display import Markdown

    if not header:
        raise ValueError("pass a non-empty header: a list of column titles")
    bad = [i for i, row in enumerate(rows) if len(row) != len(header)]
    if bad:
        raise ValueError(f"row {bad[0]} has {len(rows[bad[0]])} cells, the header "
                         f"{len(header)}; pass one cell per column")

    def line(cells: Sequence[Any]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    lines = [line(header), "|" + "---|" * len(header), *map(line, rows)]
    return Markdown("\n".join([caption, ""] * bool(caption) + lines))


def _arithmetic(expr: str) -> float | None:
    """The value of `expr` read as arithmetic once unit words are dropped; None if it is not."""
    text = expr
    for symbol, op in _SYMBOLS.items():
        text = text.replace(symbol, op)
    text = re.sub(r"(?<=\d),(?=\d{3})", "", text)  # thousands separators
    text = re.sub(r"(?<![\deE.])[A-Za-zµ/]*[A-Za-zµ]+(/[A-Za-zµ]+)?", " ", text)  # B, GB, GB/s
    try:
        return _evaluate(ast.parse(text.strip(), mode="eval").body)
    except (SyntaxError, ValueError, TypeError, ZeroDivisionError):
        return None


def _evaluate(node: ast.AST) -> float:
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        return _OPS[type(node.op)](_evaluate(node.left), _evaluate(node.right))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _OPS:
        return _OPS[type(node.op)](_evaluate(node.operand))
    raise ValueError("not arithmetic")


def working(name: str, expr_str: str, value: float, unit: str = "", fmt: str = ",",
            rel_tol: float = 5e-3) -> str:
    """Glue "`expr_str` = `value` `unit`" under `name` (the working and its result); return it.

    When `expr_str` reads as arithmetic (``·``/``×`` for times, unit words ignored), it must
    give `value` within `rel_tol` (its inputs may be rounded for display); ValueError if not,
    so a page cannot show a working that does not add up.
    """
    computed = _arithmetic(expr_str)
    if computed is not None and not math.isclose(computed, value, rel_tol=rel_tol):
        raise ValueError(f"{expr_str!r} gives {computed:,.6g}, not {value:,.6g}; pass the "
                         "expression that computes the value (or its display rounding)")
    text = f"{expr_str} = {format(value, fmt)}" + (f" {unit}" if unit else "")
    return glue(name, text)


def measurements(experiment: str, **kwargs: Any) -> Any:
    """`lclib.measurements.show(experiment, ...)`: measured points against lclib's line."""
    from .measurements import show

    return show(experiment, **kwargs)
