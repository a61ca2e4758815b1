"""Long context vs RAG: the per-query cost model and the retriever in front of TinyLM."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

import lclib
from lclib import rag
from lclib.tinylm import tasks

M, G = "llama-3.1-8b", "h200"


def test_long_context_reads_the_document_and_rag_reads_k_chunks():
    full = rag.query_cost(M, G, 131_072, "long context", question_tokens=64)
    assert full.prefill_tokens == 131_072 + 64
    assert full.kv_bytes == lclib.kv_cache_bytes(M, 131_072 + 64)
    assert full.ttft_s == pytest.approx(lclib.prefill_time(M, G, 131_136))
    r = rag.query_cost(M, G, 131_072, "rag", k=8, chunk=512, question_tokens=64)
    assert r.prefill_tokens == 8 * 512 + 64
    assert r.ttft_s < full.ttft_s and r.kv_bytes < full.kv_bytes
    h = rag.query_cost(M, G, 131_072, "hybrid", hybrid_tokens=32_768)
    assert r.prefill_tokens < h.prefill_tokens < full.prefill_tokens


@given(st.integers(1, 2_000_000), st.integers(1, 64), st.integers(1, 4096))
def test_rag_never_reads_more_than_the_document(doc, k, chunk):
    r = rag.query_cost(M, G, doc, "rag", k=k, chunk=chunk, question_tokens=1)
    assert r.prefill_tokens == min(doc, k * chunk) + 1
    assert r.decode_step_s <= rag.query_cost(M, G, doc, "long context",
                                             question_tokens=1).decode_step_s


def test_bad_modes_and_sizes_say_what_to_pass():
    with pytest.raises(ValueError, match="mode"):
        rag.query_cost(M, G, 1000, "grep")
    with pytest.raises(ValueError, match="k"):
        rag.query_cost(M, G, 1000, "rag", k=0)
    with pytest.raises(ValueError, match="mode"):
        rag.reader_context([1, 2, 3], [3], "grep", 2, 1)


@given(st.lists(st.integers(0, 255), max_size=200), st.integers(1, 50))
def test_chunks_cover_the_document_in_order(tokens, size):
    parts = rag.chunks(tokens, size)
    assert [t for p in parts for t in p] == tokens
    assert all(len(p) == size for p in parts[:-1])


def _doc():
    key, value, other = tasks.KEYS[3], tasks.VALUES[5], tasks.KEYS[9]
    filler = list(tasks.FILLER)[:60]
    doc = [tasks.BOS] + filler[:30] + [tasks.NEEDLE, key, value] + filler[30:]
    doc[50] = other
    return doc, [tasks.QUERY, key], key


def test_retriever_finds_the_chunk_holding_the_questions_key():
    doc, question, key = _doc()
    size = 8
    at = doc.index(key) // size
    assert rag.retrieve(doc, question, size, 1) == [at]
    two = rag.retrieve(doc, question, size, 2)
    assert at in two and two == sorted(two) and two[0] == 0  # a tie goes to the earliest chunk


def test_reader_contexts():
    doc, question, key = _doc()
    size = 8
    at = doc.index(key) // size
    assert rag.reader_context(doc, question, "long context", size, 2) == doc
    r = rag.reader_context(doc, question, "rag", size, 1)
    assert r[0] == tasks.BOS and r[1:] == doc[at * size:(at + 1) * size]
    h = rag.reader_context(doc, question, "hybrid", size, 1)
    assert h[0] == tasks.BOS and h[1:] == doc[at * size:]


def test_evaluate_pairs_the_same_prompts_across_modes():
    from lclib import tinylm
    r = rag.evaluate(tinylm.load().eval(), "single_needle", length=64, n=3, size=8, k=2)
    assert {len(h) for h in r["hits"].values()} == {3}
    assert r["mean_tokens_read"]["rag"] <= 2 * 8 + 1 < r["mean_tokens_read"]["long context"]
