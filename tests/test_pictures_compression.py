"""Chapter 7's picture: the bars drawn are the run's kept counts, the needle and the verdicts
are the run's, and it reads the committed JSON."""

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lclib.picture import MAX_HTML_BYTES
from lclib.pictures import compression as C

BOOK_DATA = Path(__file__).resolve().parents[1] / "book" / "data" / "pretrained"
BAR = re.compile(r"M([\d.]+) ([\d.]+)v-([\d.]+)h([\d.]+)v[\d.]+z")


def synthetic(t: int, budget: int, pairs: int = 6, needle: tuple[int, int] = (10, 14)) -> dict:
    """A row shaped like a pretrained_policies row: window keeps the last `budget` positions in
    every cache, sinks the first 4 and the rest recent, H2O/SnapKV a stripe."""
    recent = [0] * (t - budget) + [pairs] * budget
    sinks = [pairs] * 4 + [0] * (t - budget) + [pairs] * (budget - 4)
    stripe = [pairs // 2 if i % 3 == 0 else 0 for i in range(t)]
    counts = {"full": [pairs] * t, "window@0.5": recent, "sinks@0.5": sinks,
              "h2o@0.5": stripe, "snapkv@0.5": stripe[::-1]}
    found = {k: k in ("full", "sinks@0.5") for k in counts}
    return {"seq_len": t, "depth": 0.25, "secret": 12345, "needle": list(needle),
            "budget_tokens": {"0.5": budget}, "kept_count": counts, "found": found,
            "answer": {k: "The secret number is 12345." if v else "11" for k, v in found.items()},
            "needle_kept": {k: sum(c[needle[0]:needle[1]]) / (pairs * 4) for k, c in
                            counts.items()}}


def bars(svg: str) -> list[list[tuple[float, float, float]]]:
    """Per strip (in drawing order), each bar's (x, height, width)."""
    paths = re.findall(r'<path d="([^"]*)" class="lc-fill-0"', svg)
    return [[(float(x), float(h), float(w)) for x, _, h, w in BAR.findall(d)] for d in paths]


def covered(strip, cell_w: float) -> list[float]:
    """The strip's drawn height in each cell (0 where no bar)."""
    out: dict[int, float] = {}
    for x, h, w in strip:
        first = round((x - C.LEFT) / cell_w)
        for c in range(first, first + round(w / cell_w)):
            out[c] = h
    return [out.get(c, 0.0) for c in range(max(out) + 1)]


@settings(max_examples=20, deadline=None)
@given(counts=st.lists(st.integers(0, 5), min_size=1, max_size=60), bin_tokens=st.integers(1, 9))
def test_cell_share_is_the_kept_fraction_of_its_tokens(counts, bin_tokens):
    shares = C.cell_shares(counts, 5, bin_tokens)
    assert len(shares) == -(-len(counts) // bin_tokens)
    assert sum(s * len(counts[i * bin_tokens:(i + 1) * bin_tokens])
               for i, s in enumerate(shares)) * 5 == pytest.approx(sum(counts))
    with pytest.raises(ValueError, match="counts"):
        C.cell_shares([6], 5)


def test_strips_draw_the_kept_positions_and_the_verdicts():
    t, budget, b = 96, 40, 8
    row = synthetic(t, budget)
    frame = C._frame(row, 0.5, b)
    strips = bars(frame.svg)
    assert len(strips) == len(C.POLICY_NAMES)
    cell_w = (C.WIDTH - C.LEFT - C.RIGHT) / (t // b)
    full, window, sinks = (covered(strips[i], cell_w) for i in range(3))
    assert full == [C.STRIP] * (t // b)
    # the window: full height exactly over its last 40 = 5 cells of 8, nothing before
    assert window == [0.0] * ((t - budget) // b) + [C.STRIP] * (budget // b)
    assert sinks[0] == pytest.approx(C.STRIP * 4 / b, abs=0.1)  # 4 of 8 tokens in cell 0
    h2o = covered(strips[3], cell_w)
    shares = C.cell_shares(row["kept_count"]["h2o@0.5"], 6, b)
    assert h2o == pytest.approx([s * C.STRIP for s in shares][:len(h2o)], abs=0.1)
    assert "tokens 10–13" in frame.svg and "12345" in frame.svg
    assert frame.svg.count("✓ found") == 2 and frame.svg.count("✗ missed") == 3
    assert "4 sinks + window found" in frame.caption and "H2O missed" in frame.caption
    assert f"keeps {budget:,}/head" in frame.svg


def test_bad_rows_are_refused():
    with pytest.raises(ValueError, match="kept_count"):
        C.compression_picture([{"depth": 0.5}])
    with pytest.raises(ValueError, match="no pretrained_policies"):
        C.detailed_rows(Path("/nonexistent"))


def test_picture_of_the_committed_run():
    rows = C.detailed_rows(BOOK_DATA)
    pic = C.compression_picture(rows)
    html = pic.to_html()
    assert len(html.encode()) <= MAX_HTML_BYTES
    keeps = [float(k) for k in rows[0]["budget_tokens"]]
    for i, row in enumerate(rows):
        for j, keep in enumerate(keeps):
            frame = pic.frames[i * len(keeps) + j]
            budget = row["budget_tokens"][str(keep)]
            assert f"keeping {budget:,} tokens" in frame.caption
            for policy, name in C.POLICY_NAMES.items():
                verdict = "found" if row["found"][C._key(policy, keep)] else "missed"
                assert f"{name} {verdict}" in frame.caption
            assert f"The secret number is {row['secret']}." in frame.svg


def test_chapter_7_draws_what_it_glues():
    """The page's table pools the same committed rows the picture draws (same directory, the
    same prompts once each), so a verdict in the picture is a cell count of the table."""
    page = (BOOK_DATA.parents[1] / "ch07-kv-compression.md").read_text()
    assert 'measurements.load("pretrained_policies", "data/pretrained")' in page
    assert "compression_picture()" in page and Path("data/pretrained") == C.DIRECTORY
    pooled = {r["seed"]: r for r in C.measurements.load(C.EXPERIMENT, BOOK_DATA)
              if "found" in r}
    for row in C.detailed_rows(BOOK_DATA):
        assert pooled[row["seed"]]["found"] == row["found"]
