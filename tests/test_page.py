"""lclib.page: glue with a format, tables from rows, a working that must add up."""

import math
import subprocess
import sys

import myst_nb
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lclib import page


@pytest.fixture
def glued(monkeypatch) -> dict:
    out = {}
    monkeypatch.setattr(myst_nb, "glue", lambda name, text, display: out.update({name: text}))
    return out


def test_glue_formats_and_returns_the_text(glued):
    assert page.glue("kv", 42_949_672_960 / 1e9, ".1f") == "42.9"
    assert page.glue("n", 3) == "3"
    assert glued == {"kv": "42.9", "n": "3"}


def test_working_glues_expression_and_result(glued):
    # Llama-3.3-70B: 80 layers, 8 KV heads of 128 dims, bf16 (config.json on Hugging Face)
    text = page.working("kv_token", "2 · 80 · 8 · 128 · 2 B", 327_680, "B")
    assert text == glued["kv_token"] == "2 · 80 · 8 · 128 · 2 B = 327,680 B"
    # inputs rounded for display pass within rel_tol: 0.4 · 989.4 TFLOP/s (H100 SXM dense bf16)
    assert page.working("rate", "0.4 · 989 TFLOP/s", 0.4 * 989.4, "TFLOP/s", ".1f") \
        == "0.4 · 989 TFLOP/s = 395.8 TFLOP/s"


def test_working_rejects_an_expression_that_does_not_add_up(glued):
    with pytest.raises(ValueError, match="gives 327,680"):
        page.working("bad", "2 · 80 · 8 · 128 · 2 B", 320_000, "B")
    with pytest.raises(ValueError, match="gives 42.9497, not 43.329"):
        page.working("bad", "42,949,672,960 B / 10^9", 42.9 * 1.01, "GB", ".1f")
    assert "bad" not in glued


@given(st.lists(st.integers(1, 10_000), min_size=1, max_size=5))
def test_working_checks_any_product(factors):
    expr = " · ".join(f"{f:,}" for f in factors) + " B"
    assert page._arithmetic(expr) == math.prod(factors)


def test_working_skips_the_check_when_the_expression_is_not_arithmetic(glued):
    assert page.working("s", "12 · d_model", 98_304, "tokens") == "12 · d_model = 98,304 tokens"


def test_table_from_rows():
    md = page.table(["model", "KV per token"], [["llama", "320 KiB"], ["a|b", 2]]).data
    assert md.splitlines() == ["| model | KV per token |", "|---|---|", "| llama | 320 KiB |",
                               "| a\\|b | 2 |"]
    assert page.table(["a"], [[1]], caption="Per GPU:").data == "Per GPU:\n\n| a |\n|---|\n| 1 |"
    with pytest.raises(ValueError, match="row 1 has 1 cells"):
        page.table(["a", "b"], [[1, 2], [3]])
    with pytest.raises(ValueError, match="header"):
        page.table([], [])


def test_page_imports_without_torch_or_numpy():
    code = "import sys, lclib.page; print('torch' in sys.modules, 'numpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
