"""lclib.quiz: answer encoding, the DOM contract, bad input, and the JS number parser."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

import lclib
from lclib.quiz import _PARSE_JS, Quiz, multiple_choice, numeric

KV_GB = lclib.kv_cache_bytes("llama-3.3-70b", 2**17) / lclib.GB


@pytest.fixture(scope="module")
def quiz_html() -> str:
    return Quiz([
        multiple_choice("Which wall does `fp8` KV move?", ["compute", "memory", "neither"],
                        "memory", explain="It halves the bytes per token."),
        numeric("KV of Llama-3.3-70B at 128K tokens?", KV_GB, rel_tol=0.02, unit="GB",
                explain="2·L·H_kv·d_head·2 bytes × 131,072 tokens."),
    ], title="Chapter 2 self-check").to_html()


def questions(html: str) -> list[str]:
    return re.findall(r'<div class="lc-question"[^>]*>', html)


def test_dom_contract(quiz_html: str) -> None:
    assert quiz_html.startswith('<div class="lc-quiz" id="lcq-')
    mc, num = questions(quiz_html)
    assert 'data-kind="mc"' in mc and 'data-kind="numeric"' in num
    assert len(re.findall(r'<label><input type="radio" name="(lcq-[0-9a-f]+-0)"', quiz_html)) == 3
    assert quiz_html.count('<input type="text" class="lc-answer"') == 1
    assert quiz_html.count('<button type="button" class="lc-check">') == 2
    assert quiz_html.count('class="lc-feedback"') == 2
    assert "lc-correct" in quiz_html and "lc-wrong" in quiz_html  # toggled by the script
    assert quiz_html.count('class="lc-explain" hidden') == 2


def test_answers_and_tolerance_are_encoded(quiz_html: str) -> None:
    mc, num = questions(quiz_html)
    assert 'data-answer="1"' in mc and 'data-answer-text="memory"' in mc
    answer = float(re.search(r'data-answer="([^"]+)"', num).group(1))
    assert answer == KV_GB
    assert 'data-rel-tol="0.02"' in num and 'data-abs-tol="0.0"' in num
    assert 'data-unit="GB"' in num and 'data-answer-text="42.95 GB"' in num


def test_text_is_escaped_and_code_rendered() -> None:
    html = multiple_choice("Is `a<b` <script>?", ["yes", "no"], "no").to_html()
    assert "<code>a&lt;b</code> &lt;script&gt;?" in html
    assert html.count("<script>") == 1


def test_no_network_and_no_eval(quiz_html: str) -> None:
    assert not re.search(r"https?://|\b(src|href)=|\beval\(|new Function|fetch\(", quiz_html)


def test_each_render_is_independent() -> None:
    q = numeric("2 + 2?", 4, abs_tol=0.5)
    first, second = q.to_html(), q._repr_html_()
    ids = [re.search(r'id="(lcq-[0-9a-f]+)"', h).group(1) for h in (first, second)]
    assert ids[0] != ids[1]
    assert 'class="lc-quiz-title"' not in first  # one question needs no title


@pytest.mark.parametrize(("build", "message"), [
    (lambda: multiple_choice("q", ["a", "b"], "c"), "not among the options"),
    (lambda: multiple_choice("q", ["a"], "a"), "at least two"),
    (lambda: multiple_choice("q", ["a", "a"], "a"), "distinct"),
    (lambda: numeric("q", float("nan")), "finite number"),
    (lambda: numeric("q", True), "finite number"),
    (lambda: numeric("q", "42"), "finite number"),
    (lambda: numeric("q", 1.0, rel_tol=-0.1), "rel_tol"),
    (lambda: numeric("q", 1.0, rel_tol=1.5), "rel_tol"),
    (lambda: numeric("q", 1.0, rel_tol=0), "pass a tolerance"),
    (lambda: Quiz([]), "non-empty"),
    (lambda: Quiz(["not a question"]), "non-empty"),
])
def test_bad_input_raises(build, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()


@pytest.mark.skipif(not shutil.which("node"), reason="node not installed")
def test_quiz_script_is_valid_javascript(quiz_html: str, tmp_path) -> None:
    (script,) = re.findall(r"<script>(.*?)</script>", quiz_html, re.S)
    path = tmp_path / "quiz.js"
    path.write_text(script)
    subprocess.run(["node", "--check", str(path)], check=True)


@pytest.mark.skipif(not shutil.which("node"), reason="node not installed")
def test_number_parser_accepts_separators_and_scientific_notation() -> None:
    cases = {
        "42,949,672,960": 42949672960, "4.29e10": 4.29e10, "4.29E+10": 4.29e10,
        "4.29×10^10": 4.29e10, "4.29 x 10^10": 4.29e10, "10^3": 1000, "1 234.5": 1234.5,
        "42.9 GB": 42.9, "42.9gb": 42.9, "−3": -3, ".5": 0.5, "7.": 7, " 12 ": 12,
        "1,2": None, "1.2.3": None, "abc": None, "": None, "4e": None, "12,34,567": None,
    }
    program = f"{_PARSE_JS}\nconsole.log(JSON.stringify({json.dumps(list(cases))}" \
              ".map(function (t) { return lcParseNumber(t, 'GB'); })));"
    out = subprocess.run(["node", "-e", program], check=True, capture_output=True, text=True)
    assert dict(zip(cases, json.loads(out.stdout), strict=True)) == cases


def test_whole_number_answers_show_exactly():
    # chapter 2's quiz printed "327,700 bytes" for 327,680 and "4.000" for a count of requests
    from lclib.quiz import numeric

    assert numeric("bytes?", 327_680, unit="bytes").answer_text() == "327,680 bytes"
    assert numeric("requests?", 5).answer_text() == "5"
    assert numeric("GB?", 42.94967296, unit="GB").answer_text() == "42.95 GB"
