"""pretrained_rope_text: SmolLM2 reading a real text of 1×, 2× and 4× its window."""

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from lclib import measurements, pretrained  # noqa: E402
from lclib.bench import pretrained_rope as pr  # noqa: E402
from lclib.bench import pretrained_rope_text as prt  # noqa: E402
from lclib.bench import run_experiment  # noqa: E402

BOOK_DATA = Path(__file__).resolve().parents[1] / "book" / "data" / "pretrained"
# the committed small run: a 256-token "window" keeps every document inside the real one
SMALL = {"window": 256, "n_needles": 2, "levels": [1, 4], "scalings": ["none", "yarn"]}


@pytest.fixture(scope="module")
def tokenizer():
    return transformers.AutoTokenizer.from_pretrained(pretrained.smollm2())


def test_factor_is_two_up_to_twice_the_window_then_the_multiple():
    assert [c[0] for c in prt.configs(1)] == list(prt.ORDER)
    assert dict(prt.configs(1)) == {"none": 1.0, "yarn": 2.0, "dynamic": 2.0, "linear": 2.0}
    assert dict(prt.configs(2))["yarn"] == 2.0
    assert dict(prt.configs(4)) == {"none": 1.0, "yarn": 4.0, "dynamic": 4.0, "linear": 4.0}


def test_document_is_cut_to_length_with_every_needle_inside(tokenizer):
    doc = prt.document(tokenizer, 1500, 4, seed=3)
    assert len(doc["ids"]) == 1500
    starts = [n["start"] for n in doc["needles"]]
    assert starts == sorted(starts) and starts[-1] > 1500 // 2  # spread, not bunched
    for needle in doc["needles"]:
        assert needle["stop"] <= 1500
        text = tokenizer.decode(doc["ids"][needle["start"]:needle["stop"]])
        assert text.strip() == f"The secret number for {needle['name']} is {needle['secret']}."


def test_unknown_scalings_are_refused(tmp_path):
    with pytest.raises(ValueError, match="pass some of none, yarn"):
        run_experiment("pretrained_rope_text", out=tmp_path, scalings=["ntk-by-parts"])


def test_chunked_reading_scores_as_one_forward(tokenizer, monkeypatch):
    from transformers import DynamicCache

    model, _ = pr.load("none")
    monkeypatch.setattr(prt, "BUCKET", 300)
    doc = prt.document(tokenizer, 600, 2)
    whole = prt.text_nll(model, doc["ids"], DynamicCache(config=model.config), doc["needles"])
    monkeypatch.setattr(prt, "CHUNK", 150)
    cache = DynamicCache(config=model.config)
    chunked = prt.text_nll(model, doc["ids"], cache, doc["needles"])
    assert cache.get_seq_length() == 600
    assert len(chunked) == 2 and chunked == pytest.approx(whole, abs=1e-4)
    assert 0.5 < chunked[0] < 6  # documentation, read by a language model: nats per token
    # the needles' random numbers are left out: scoring them raises the loss
    assert prt.text_nll(model, doc["ids"], DynamicCache(config=model.config), [])[0] > whole[0]


def _row(multiple, scaling, found, answer_nll, buckets):
    return {"multiple": multiple, "scaling": scaling, "factor": 2.0, "nll_buckets": buckets,
            "needles": [{"found": f, "answer_nll": a}
                        for f, a in zip(found, answer_nll, strict=True)]}


def test_compare_pairs_each_scaling_with_none_on_the_same_length():
    rows = [_row(2, "none", [True, False, False], [0.1, 3.0, 2.0], [2.0, 2.0, 6.0, 8.0]),
            _row(2, "yarn", [True, True, True], [0.2, 0.5, 0.4], [2.2, 2.4, 3.0, 3.0]),
            {"multiple": 4, "scaling": "none", "skipped": "predicted 900 s, 10 s left"}]
    none, yarn = prt.compare(rows, window=2 * prt.BUCKET)
    assert (none["found"], none["n"], none["nll_inside"], none["nll_past"]) == (1, 3, 2.0, 7.0)
    assert "found_vs_none" not in none
    assert (yarn["nll_inside"], yarn["nll_past"]) == (pytest.approx(2.3), 3.0)
    # found: two needles only with YaRN; answer NLL lower on two, higher on one
    assert (yarn["found_vs_none"]["only_a"], yarn["found_vs_none"]["only_b"]) == (2, 0)
    assert (yarn["answer_nll_vs_none"]["only_a"], yarn["answer_nll_vs_none"]["only_b"]) == (2, 1)
    # inside the window only: no "past"
    (one,) = prt.compare([_row(1, "none", [True], [0.1], [2.0, 2.5])], window=2 * prt.BUCKET)
    assert one["nll_past"] is None and one["nll_inside"] == 2.25


def test_merged_keeps_the_newest_row_of_runs_on_the_same_documents():
    first = {"header": {"options": {"n_needles": 4}}, "rows": [
        _row(4, "none", [True], [0.1], [2.0]), _row(4, "linear", [False], [3.0], [4.0]),
        {"multiple": 4, "scaling": "dynamic", "skipped": "predicted 900 s, 10 s left"}]}
    again = {"header": {"options": {"n_needles": 4, "levels": [4], "scalings": ["dynamic"]}},
             "rows": [_row(4, "dynamic", [True], [0.2], [2.5])]}
    other = {"header": {"options": {"n_needles": 8}}, "rows": [_row(1, "none", [True], [0.1],
                                                                    [2.0])]}
    rows = prt.merged([other, first, again])
    assert [(r["multiple"], r["scaling"]) for r in rows] == [(4, "none"), (4, "dynamic"),
                                                             (4, "linear")]
    assert rows[1] is again["rows"][0]
    assert prt.merged([]) == []


def _runs(small: bool):
    return [r for r in measurements.runs("pretrained_rope_text", BOOK_DATA)
            if ("window" in r["header"]["options"]) == small]


@pytest.mark.slow
def test_rerun_agrees_with_the_committed_small_run(tmp_path):
    committed = [r for r in _runs(small=True) if r["header"]["options"] == SMALL]
    assert committed, "no committed small run of pretrained_rope_text"
    record = run_experiment("pretrained_rope_text", out=tmp_path, **SMALL)
    before = {(r["multiple"], r["scaling"]): r for r in committed[-1]["rows"]}
    assert {(r["multiple"], r["scaling"]) for r in record["rows"]} == set(before)
    assert len(before) == 4
    for row in record["rows"]:
        old = before[row["multiple"], row["scaling"]]
        # same tokens, same weights, fp32: only thread-order rounding may differ
        assert row["nll_buckets"] == pytest.approx(old["nll_buckets"], abs=0.02)
        assert [n["found"] for n in row["needles"]] == [n["found"] for n in old["needles"]]


def test_committed_full_run_is_paired_and_checked():
    done = prt.merged(_runs(small=False))
    assert {(r["multiple"], r["scaling"]) for r in done} == {
        (m, name) for m in prt.LEVELS for name in prt.ORDER}
    for multiple in prt.LEVELS:
        rows = [r for r in done if r["multiple"] == multiple]
        assert rows[0]["scaling"] == "none"
        for row in rows:
            assert row["inv_freq_max_rel_error"] <= 1e-6, (multiple, row["scaling"])
            assert row["tokens"] == multiple * pr.WINDOW - pr.MARGIN
            assert len(row["nll_buckets"]) == -(-(row["tokens"] - 1) // prt.BUCKET)
            assert [n["name"] for n in row["needles"]] == [n["name"] for n in rows[0]["needles"]]
            assert row["factor"] == dict(prt.configs(multiple))[row["scaling"]]
    for entry in prt.compare(done, pr.WINDOW):
        assert (entry["nll_past"] is None) == (entry["multiple"] == 1)
        if entry["scaling"] != "none":
            assert entry["found_vs_none"]["n"] == entry["answer_nll_vs_none"]["n"] == entry["n"]
