"""RadixCache: capacity, pinning, longest block-aligned match, LRU; the workload simulator."""

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lclib import amortize as A
from lclib import prefix as X
from lclib.prefix import RadixCache

seqs = st.lists(st.integers(0, 3), min_size=0, max_size=40)  # small alphabet: many shared prefixes
ops = st.lists(st.tuples(st.sampled_from(["insert", "match", "acquire", "release"]), seqs),
               max_size=60)


def brute_match(stored: set[tuple], tokens: list[int], b: int) -> int:
    """Longest block-aligned prefix of `tokens` that is a prefix of a stored (aligned) one."""
    best = 0
    for n in range(b, len(tokens) + 1, b):
        if any(s[:n] == tuple(tokens[:n]) for s in stored if len(s) >= n):
            best = n
    return best


@settings(max_examples=150)
@given(st.sampled_from([1, 2, 4]), st.integers(1, 64), ops)
def test_invariants_under_random_operations(block, capacity, operations):
    cache = RadixCache(block, max(block, capacity))
    leases = []
    for op, tokens in operations:
        if op == "insert":
            cache.insert(tokens)
        elif op == "match":
            assert cache.match(tokens) % block == 0
        elif op == "acquire":
            leases.append((cache.acquire(tokens), tokens))
        elif leases:
            cache.release(leases.pop(random.Random(len(tokens)).randrange(len(leases)))[0])
        assert cache.size_tokens <= cache.capacity_tokens
        for lease, t in leases:  # a pinned prefix is never evicted
            assert cache.match(t) >= lease.tokens


@given(st.sampled_from([1, 2, 3, 4]), st.lists(seqs, max_size=8), seqs)
def test_match_is_the_longest_cached_block_aligned_prefix(block, inserted, query):
    cache = RadixCache(block, 10_000)  # never evicts
    for s in inserted:
        cache.insert(s)
    stored = {tuple(s[:len(s) // block * block]) for s in inserted}
    assert cache.match(query) == brute_match(stored, query, block)


def test_lru_evicts_the_least_recently_used_leaf():
    cache = RadixCache(block_size=2, capacity_tokens=4)
    a, b, c = [1, 1], [2, 2], [3, 3]
    cache.insert(a)
    cache.insert(b)
    cache.match(a)  # a is now more recent than b
    cache.insert(c)
    assert (cache.match(a), cache.match(b), cache.match(c)) == (2, 0, 2)


def test_pinned_prefix_blocks_eviction_and_insert_stops_short():
    cache = RadixCache(block_size=2, capacity_tokens=4)
    cache.insert([1, 1, 2, 2])
    lease = cache.acquire([1, 1, 2, 2])
    assert lease.tokens == 4
    assert cache.insert([5, 5, 6, 6]) == 0  # everything is pinned
    cache.release(lease)
    assert cache.insert([5, 5, 6, 6]) == 4
    with pytest.raises(ValueError, match="once"):
        cache.release(lease)


def test_stats_count_lookups():
    cache = RadixCache(4, 100)
    cache.insert(list(range(10)))  # 8 tokens cached: two blocks
    cache.match(list(range(10)))
    cache.match([9] * 6)
    s = cache.stats
    assert (s.lookups, s.query_tokens, s.hit_tokens, s.inserted_tokens) == (2, 16, 8, 8)
    assert s.hit_rate == 0.5


def test_unbounded_hit_rate_is_every_repeat_of_a_document():
    # with room for everything, each document misses once and then hits its aligned length
    prompts = X.doc_qa_prompts(n_docs=5, n_queries=40, doc_tokens=100, question_tokens=7, seed=3)
    docs, expected = {}, 0
    for p in prompts:
        doc = tuple(p[:-7])
        expected += len(doc) // 16 * 16 if doc in docs else 0
        docs[doc] = True
    result = X.replay(prompts, block_size=16, capacity_tokens=10**6)
    assert result.saved_tokens == expected
    assert result.prompt_tokens == sum(map(len, prompts))


def test_bigger_blocks_never_match_more_and_more_capacity_never_hurts_much():
    prompts = X.doc_qa_prompts(n_docs=20, n_queries=120, doc_tokens=300, question_tokens=20)
    grid = X.hit_rate_grid(prompts, [16, 32], [2_000, 8_000, 10**6])
    for cap in (2_000, 8_000, 10**6):
        assert grid[(32, cap)] <= grid[(16, cap)] + 0.02
    assert grid[(16, 10**6)] > grid[(16, 2_000)]


def test_rag_order_matters_for_a_prefix_cache():
    kw = dict(n_docs=30, n_queries=150, doc_tokens=64, k=3, system_tokens=128,
              question_tokens=16, seed=1)
    ordered = X.replay(X.rag_prompts(ordered=True, **kw), 16, 10**6).hit_rate
    shuffled = X.replay(X.rag_prompts(ordered=False, **kw), 16, 10**6).hit_rate
    system_only = 128 / (128 + 3 * 64 + 16)
    assert shuffled > system_only * 0.9 and ordered > shuffled


def test_pinned_in_flight_requests_lower_the_hit_rate_under_pressure():
    prompts = X.doc_qa_prompts(n_docs=20, n_queries=100, doc_tokens=200, question_tokens=10)
    free = X.replay(prompts, 16, 1_500, in_flight=1).hit_rate
    pinned = X.replay(prompts, 16, 1_500, in_flight=6).hit_rate
    assert pinned <= free


@pytest.mark.parametrize("call, match", [
    (lambda: RadixCache(0, 10), "block_size"),
    (lambda: RadixCache(16, 8), "capacity_tokens >= block_size"),
    (lambda: RadixCache(4, 16).match("abc"), "token ids"),
    (lambda: RadixCache(4, 16).release("x"), "Lease"),
    (lambda: X.zipf_choices(5, 3, -1, random.Random()), "Zipf"),
    (lambda: X.replay([[1]], 16, 32, in_flight=0), "in_flight"),
])
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_prefix_reuse_bench_on_cpu():
    import torch

    from lclib.bench import run_experiment

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model: threads only add overhead (and the CI is busy)
    try:
        run = run_experiment("prefix_reuse", device="cpu", sizes=[64], out=None)
    finally:
        torch.set_num_threads(threads)
    (row,) = run["rows"]
    assert row["answers_equal"]
    assert row["chunked_logits_diff"] < 1e-4 and row["chunked_kv_diff"] < 1e-4
    assert row["t_reuse"] > row["t_doc_prefill"] > 0
    assert row["predicted_prefill_speedup"] > 1


def test_forked_cache_logits_equal_recomputation():
    import torch

    from lclib.bench.prefix_reuse import tiny_model

    model, _ = tiny_model(torch.device("cpu"))
    doc, q = torch.randint(200, (1, 96)), torch.randint(200, (1, 8))
    with torch.no_grad():
        _, cache = model.prefill(doc)
        reused, _ = model.prefill(q, cache=cache.fork())
        full = model(torch.cat([doc, q], dim=1))[:, -8:]
    assert torch.allclose(reused, full, atol=1e-5)
    assert cache.length == 96  # the fork left the document's cache as it was


def test_explorer_survives_its_slider_ends_and_holds_the_chapters_cases():
    from lclib.explorers import prefix as P

    html = P.amortize_explorer().to_html()
    assert "<svg" in html
    # the page's numbers (20 questions about a 128,000-token contract) are grid points
    assert 20 in P.QUERIES and 128_000 in P.CONTEXTS
    page_case = A.query_cost("llama-3.3-70b", "h100-sxm", 128_000, 200, 1000, 20)
    assert P.amortize_point(20, 128_000, 4096, 1, "off")["per_query"] == pytest.approx(
        page_case.per_query)
    one = P.amortize_point(P.QUERIES[0], P.CONTEXTS[-1], 0, 1, "off")
    many = P.amortize_point(P.QUERIES[-1], P.CONTEXTS[0], 512, 32, "on")
    assert many["per_query"] < one["per_query"]
    assert many["longest_step"] < many["longest_step_none"]
    assert one["longest_step"] == one["longest_step_none"]  # no chunking: one step


@given(st.lists(st.integers(0, 3), max_size=40), st.lists(st.integers(0, 3), max_size=40))
def test_block_size_one_matches_token_granular_like_sglang(a, b):
    # SGLang's radix tree (page size 1) reuses the whole common prefix; vLLM-style 16-token
    # blocks reuse it rounded down to a multiple of 16
    common = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y),
                  min(len(a), len(b)))
    for block in (1, 16):
        cache = RadixCache(block_size=block, capacity_tokens=10**4)
        cache.insert(a)
        assert cache.match(b) == common // block * block


@given(st.sampled_from([1, 2, 4]), st.integers(4, 64), st.lists(seqs, max_size=10))
def test_nodes_are_the_cached_blocks_parents_first(block, capacity, inserted):
    cache = RadixCache(block, max(block, capacity))
    for s in inserted:
        cache.insert(s)
    nodes = cache.nodes()
    assert len(nodes) == cache.n_blocks == len(set(nodes))
    seen = {cache.root}
    for node in nodes:
        assert node.parent in seen and len(node.block) == block  # parents come first
        seen.add(node)
        path, up = [], node
        while up is not cache.root:
            path[:0], up = up.block, up.parent
        assert cache.match(list(path)) == len(path)  # each node ends a cached prefix


@given(st.sampled_from([1, 4, 16]), st.integers(16, 400), st.integers(0, 9))
def test_replay_steps_are_replay_one_request_at_a_time(block, capacity, seed):
    prompts = X.doc_qa_prompts(3, 8, 40, 8, seed=seed)
    steps = list(X.replay_steps(prompts, block, max(block, capacity)))
    result = X.replay(prompts, block, max(block, capacity))
    assert len(steps) == len(prompts)
    assert sum(hit for hit, _ in steps) == result.saved_tokens
    assert steps[-1][1].stats.hit_rate == result.hit_rate
    with pytest.raises(ValueError, match="at least one prompt"):
        X.replay([], block, capacity)
