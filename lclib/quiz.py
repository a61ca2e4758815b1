"""Static self-check quizzes: one HTML block with inline JS, no kernel, no network.

    Quiz([
        multiple_choice("Which wall does FP8 KV move?", ["compute", "memory"], "memory"),
        numeric("KV of Llama-3.3-70B at 128K tokens, in GB?",
                lclib.kv_cache_bytes("llama-3.3-70b", 2**17) / lclib.GB, unit="GB"),
    ])

Numeric answers come from lclib in the page's code, never typed by hand. Readers may type
thousands separators (``42,949``), spaces, scientific notation (``4.29e10``, ``4.29×10^10``)
and the question's unit. The answers sit in the page (it is a self-check, not an exam).
"""

from __future__ import annotations

import html
import math
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from . import static


def _esc(text: str) -> str:
    """Escape HTML, then render `code` spans (the only markup questions take)."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(str(text), quote=True))


def _fmt_number(v: float, digits: int = 4) -> str:
    """`v` to `digits` significant figures, with thousands separators, e.g. '42,950,000,000';
    a whole number (a count, a byte size) exactly, e.g. '327,680' and '5'."""
    if float(v).is_integer() and abs(v) < 1e15:
        return f"{int(v):,}"
    if v == 0 or not 1e-4 <= abs(v) < 1e15:
        return f"{v:.{digits - 1}e}" if v else "0"
    v = float(f"{v:.{digits}g}")
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(v))))
    return f"{v:,.{decimals}f}"


class Question:
    """One question of a quiz; displays on its own as a one-question quiz."""

    kind = ""
    question: str
    explain: str

    def answer_text(self) -> str:
        raise NotImplementedError

    def body_html(self, name: str) -> str:
        """The input part: radios (named `name`) or a text box."""
        raise NotImplementedError

    def data_attrs(self) -> dict[str, str]:
        """The answer encoding the page's JS checks against."""
        raise NotImplementedError

    def to_html(self) -> str:
        return Quiz([self], title="").to_html()

    def _repr_html_(self) -> str:
        return self.to_html()


@dataclass(frozen=True)
class MultipleChoice(Question):
    """Pick one of `options`; `answer` is the correct option's text."""

    question: str
    options: tuple[str, ...]
    answer: str
    explain: str = ""
    kind = "mc"

    def __post_init__(self) -> None:
        if len(self.options) < 2 or len(set(self.options)) != len(self.options):
            raise ValueError(f"pass at least two distinct options, got {list(self.options)}")
        if self.answer not in self.options:
            raise ValueError(f"answer {self.answer!r} is not among the options; pass one of "
                             f"{list(self.options)}")

    def answer_text(self) -> str:
        return self.answer

    def data_attrs(self) -> dict[str, str]:
        return {"answer": str(self.options.index(self.answer))}

    def body_html(self, name: str) -> str:
        return '<div class="lc-options">' + "".join(
            f'<label><input type="radio" name="{name}" value="{i}"> {_esc(opt)}</label>'
            for i, opt in enumerate(self.options)) + "</div>"


@dataclass(frozen=True)
class Numeric(Question):
    """A number, right within `rel_tol` (a fraction of the answer) or `abs_tol`."""

    question: str
    answer: float
    rel_tol: float = 0.01
    abs_tol: float = 0.0
    unit: str = ""
    explain: str = ""
    kind = "numeric"

    def __post_init__(self) -> None:
        if isinstance(self.answer, bool) or not isinstance(self.answer, int | float) or \
                not math.isfinite(self.answer):
            raise ValueError(f"answer must be a finite number (computed with lclib), "
                             f"got {self.answer!r}")
        if not 0 <= self.rel_tol < 1 or not 0 <= self.abs_tol < math.inf:
            raise ValueError(f"pass 0 <= rel_tol < 1 and a finite abs_tol >= 0, got "
                             f"rel_tol={self.rel_tol!r}, abs_tol={self.abs_tol!r}")
        if self.rel_tol == 0 and self.abs_tol == 0:
            raise ValueError("pass a tolerance: rel_tol > 0 or abs_tol > 0")

    def answer_text(self) -> str:
        return f"{_fmt_number(self.answer)} {self.unit}".strip()

    def data_attrs(self) -> dict[str, str]:
        return {"answer": repr(float(self.answer)), "rel-tol": repr(self.rel_tol),
                "abs-tol": repr(self.abs_tol), "unit": self.unit}

    def body_html(self, name: str) -> str:
        unit = f" {_esc(self.unit)}" if self.unit else ""
        return (f'<label class="lc-numeric">answer: <input type="text" class="lc-answer" '
                f'name="{name}" inputmode="decimal" autocomplete="off" spellcheck="false">'
                f"{unit}</label>")


def multiple_choice(question: str, options: Sequence[str], answer: str,
                    explain: str = "") -> MultipleChoice:
    """A multiple-choice question; `answer` must be one of `options` (its text)."""
    return MultipleChoice(question, tuple(options), answer, explain)


def numeric(question: str, answer: float, rel_tol: float = 0.01, abs_tol: float = 0.0,
            unit: str = "", explain: str = "") -> Numeric:
    """A numeric question checked within `rel_tol` (relative) or `abs_tol` (absolute)."""
    return Numeric(question, answer, rel_tol, abs_tol, unit, explain)


class Quiz:
    """Questions under one title, rendered as one self-contained HTML block."""

    def __init__(self, questions: Sequence[Question], title: str = "Self-check") -> None:
        self.questions, self.title = tuple(questions), title
        if not self.questions or not all(isinstance(q, Question) for q in self.questions):
            raise ValueError("pass a non-empty list of multiple_choice(...) / numeric(...)")

    def to_html(self) -> str:
        uid = f"lcq-{uuid.uuid4().hex[:10]}"
        title = f'<div class="lc-quiz-title">{_esc(self.title)}</div>' if self.title else ""
        numbered = len(self.questions) > 1
        body = "".join(_question_html(q, f"{uid}-{i}", f"{i + 1}. " if numbered else "")
                       for i, q in enumerate(self.questions))
        return (f'<div class="lc-quiz" id="{uid}">{_QUIZ_CSS}{title}{body}'
                f"<script>{_QUIZ_JS.replace('__ID__', uid)}</script></div>")

    def _repr_html_(self) -> str:
        return self.to_html()


def _question_html(q: Question, name: str, number: str) -> str:
    attrs = "".join(f' data-{k}="{_esc(v)}"' for k, v in q.data_attrs().items())
    explain = f'<div class="lc-explain" hidden>{_esc(q.explain)}</div>' if q.explain else ""
    return (
        f'<div class="lc-question" data-kind="{q.kind}"{attrs} '
        f'data-answer-text="{_esc(q.answer_text())}">'
        f'<div class="lc-prompt">{number}{_esc(q.question)}</div>{q.body_html(name)}'
        '<div class="lc-actions"><button type="button" class="lc-check">Check</button>'
        '<button type="button" class="lc-reveal">Show answer</button>'
        f'<span class="lc-feedback" role="status" aria-live="polite"></span></div>{explain}</div>'
    )


_QUIZ_CSS = f"<style>\n{static.read('quiz.css')}</style>"

# Parses what a reader types: "42,949,672,960", "4.29e10", "4.29 x 10^10", "42.9 GB"; else null.
_PARSE_JS = static.read("parse_number.js").rstrip("\n")

_QUIZ_JS = _PARSE_JS + "\n" + static.read("quiz.js").rstrip("\n")
