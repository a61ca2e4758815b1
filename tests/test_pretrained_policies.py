"""Token policies on a real LM's cache: the pruning keeps what each policy names, within its
budget; a compressed cache decodes like the model; the committed run reproduces."""

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from lclib import measurements, pretrained  # noqa: E402
from lclib.bench import pretrained_policies as P  # noqa: E402
from lclib.tinylm import compress  # noqa: E402

BOOK_DATA = Path(__file__).resolve().parents[1] / "book" / "data" / "pretrained"
LAYERS, KV_HEADS = 2, 2


@pytest.fixture(scope="module")
def tiny_llama():
    """A random 2-layer Llama (GQA: 4 query heads, 2 KV heads) with eager attention."""
    torch.manual_seed(0)
    config = transformers.LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64,
                                      num_hidden_layers=LAYERS, num_attention_heads=4,
                                      num_key_value_heads=KV_HEADS, max_position_embeddings=256,
                                      attn_implementation="eager")
    return transformers.LlamaForCausalLM(config).eval()


def _ids(n: int, seed: int) -> list[int]:
    return torch.randint(0, 64, (n,), generator=torch.Generator().manual_seed(seed)).tolist()


@settings(max_examples=25, deadline=None)
@given(t=st.integers(8, 80), frac=st.floats(0.1, 1.0), seed=st.integers(0, 999))
def test_each_policy_keeps_its_own_positions_within_budget(t, frac, seed):
    budget = max(compress.SINKS + 1, round(frac * t))
    scores = [torch.rand(1, KV_HEADS, t, generator=torch.Generator().manual_seed(seed + i))
              for i in range(LAYERS)]
    last = set(range(t - budget, t))
    for policy in ("window", "sinks", "h2o", "snapkv"):
        pos = P.kept(scores if policy in ("h2o", "snapkv") else
                     [compress.policy_scores(policy, torch.zeros(1, 4, t, t), KV_HEADS)] * LAYERS,
                     policy, budget)
        assert pos.shape == (LAYERS, KV_HEADS, budget)
        for layer in range(LAYERS):
            for head in range(KV_HEADS):
                kept = pos[layer, head].tolist()
                assert kept == sorted(set(kept)) and len(kept) == budget  # distinct, ascending
                if policy == "window":
                    assert set(kept) == last
                if policy == "sinks":  # the first four always, then the most recent
                    assert set(kept) == set(range(compress.SINKS)) | set(
                        range(t - budget + compress.SINKS, t))
                if policy == "h2o":  # half recent, half the highest accumulated scores
                    recent = set(range(t - budget // 2, t))
                    s = scores[layer][0, head]
                    rest = sorted(set(range(t)) - recent, key=lambda i: -float(s[i]))
                    assert set(kept) == recent | set(rest[:budget - budget // 2])
                if policy == "snapkv":
                    s = scores[layer][0, head]
                    assert set(kept) == set(sorted(range(t), key=lambda i: -float(s[i]))[:budget])


def test_snapkv_always_keeps_its_observation_window():
    t, obs = 100, P.SNAPKV["observation"]
    probs = torch.rand(1, 4, t, t).softmax(-1)
    score = compress.policy_scores("snapkv", probs, KV_HEADS, **P.SNAPKV)
    pos = compress.kept_positions(score, "snapkv", obs + 10)
    for head in range(KV_HEADS):
        assert set(range(t - obs, t)) <= set(pos[0, head].tolist())
    with pytest.raises(ValueError, match="pooling"):
        compress.policy_scores("snapkv", probs, KV_HEADS, pooling="median")


def test_hooks_score_the_attention_the_model_computes(tiny_llama):
    ids = _ids(40, 1)
    cache, scores = P.prefill_scores(tiny_llama, ids)
    out = tiny_llama(torch.tensor([ids]), output_attentions=True)
    for layer, probs in enumerate(out.attentions):
        expect = compress.policy_scores("h2o", probs, KV_HEADS)
        assert torch.allclose(scores["h2o"][layer], expect, atol=1e-5)
    assert cache.layers[0].keys.shape[2] == len(ids)


def test_pruned_cache_holds_exactly_the_kept_entries(tiny_llama):
    ids = _ids(30, 2)
    cache, scores = P.prefill_scores(tiny_llama, ids)
    positions = [P.kept(scores["full"], "full", 30), P.kept(scores["snapkv"], "snapkv", 12)]
    small, mask = P.pruned_cache(cache, positions)
    assert mask.tolist() == [[1] * 30, [1] * 12 + [0] * 18]
    for layer, entries in enumerate(small.layers):
        for head in range(KV_HEADS):
            want = cache.layers[layer].keys[0, head, positions[1][layer, head]]
            assert torch.equal(entries.keys[1, head, :12], want)
            assert torch.equal(entries.keys[0, head], cache.layers[layer].keys[0, head])
            assert not entries.values[1, head, 12:].any()  # padding, masked out


def test_full_cache_decodes_like_generate_and_padding_changes_nothing(tiny_llama):
    ids = _ids(24, 3)
    context, last = ids[:-1], ids[-1]
    cache, scores = P.prefill_scores(tiny_llama, context)
    full = P.kept(scores["full"], "full", len(context))
    window = P.kept(scores["window"], "window", 8)
    together = P.decode(tiny_llama, *P.pruned_cache(cache, [full, window]), last, len(context),
                        eos=-1, max_new=6)
    alone = P.decode(tiny_llama, *P.pruned_cache(cache, [window]), last, len(context), eos=-1,
                     max_new=6)
    ref = tiny_llama.generate(torch.tensor([ids]), max_new_tokens=6, do_sample=False,
                              min_new_tokens=6)[0, len(ids):].tolist()
    assert together[0] == ref
    assert together[1] == alone[0]


def test_needle_span_spells_the_needle():
    tok = transformers.AutoTokenizer.from_pretrained(pretrained.smollm2())
    ids = pretrained.needle_prompt(tok, 200, 0.5, 31337, 0)
    start, end = P.needle_span(tok, ids, 31337)
    assert tok.decode(ids[start:end]).strip() == "The secret number is 31337."
    with pytest.raises(ValueError, match="needle"):
        P.needle_span(tok, ids, 11111)


def test_committed_run_reproduces_on_its_shortest_prompt():
    """Re-run the committed run's first shortest prompt through the same code: the same
    answers, and the same kept positions (as counts per position) to within float ties."""
    rows = [r for r in measurements.load("pretrained_policies", BOOK_DATA) if "kept_count" in r]
    row = min(rows, key=lambda r: (r["seq_len"], r["depth"]))
    model, tokenizer, _ = P._load()
    case = {k: row[k] for k in ("seq_len", "depth", "secret", "seed")}
    keep = [float(k) for k in row["budget_tokens"]]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the committed run (OMP_NUM_THREADS=1)
    try:
        again = P.run_prompt(model, tokenizer, case, keep, detail=True)
    finally:
        torch.set_num_threads(threads)
    assert again["found"] == row["found"] and again["budget_tokens"] == row["budget_tokens"]
    assert again["needle"] == row["needle"]
    for key, counts in row["kept_count"].items():
        moved = sum(abs(a - b) for a, b in zip(again["kept_count"][key], counts, strict=True))
        assert moved <= 0.01 * sum(counts), key
