"""lclib.tinylm: the model agrees with its config and cost model, the KV cache is exact,
the tasks are well formed, and the committed checkpoint and training script work."""

from __future__ import annotations

import json
import random

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lclib import ModelConfig, kv_cache_bytes, tinylm
from lclib.rope import plain_inv_freq
from lclib.tinylm import tasks
from lclib.tinylm.__main__ import main
from lclib.tinylm.training import copy_sample

SMALL = ModelConfig("test", hidden_size=32, n_layers=2, n_heads=4, n_kv_heads=2,
                    intermediate_size=48, vocab_size=64)


def close(a: torch.Tensor, b: torch.Tensor) -> None:
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


@pytest.fixture(scope="module")
def model() -> tinylm.TinyLM:
    torch.manual_seed(0)
    return tinylm.TinyLM(SMALL).eval()


@pytest.fixture(scope="module")
def trained() -> tinylm.TinyLM:
    return tinylm.load()


def tokens(batch: int, length: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, SMALL.vocab_size, (batch, length),
                         generator=torch.Generator().manual_seed(seed))


# --- the model matches its ModelConfig ------------------------------------------------


@pytest.mark.parametrize("config", [SMALL, SMALL.with_(tie_embeddings=True), tinylm.CONFIG,
                                    SMALL.with_(n_kv_heads=4, head_dim=16)])
def test_parameter_count_is_the_configs(config: ModelConfig) -> None:
    assert sum(p.numel() for p in tinylm.TinyLM(config).parameters()) == config.n_params


@pytest.mark.parametrize("kv_dtype", ["fp32", "bf16"])
@pytest.mark.parametrize(("batch", "length"), [(1, 1), (2, 7), (3, 33)])
def test_cache_bytes_are_the_cost_models(model: tinylm.TinyLM, kv_dtype: str, batch: int,
                                         length: int) -> None:
    with torch.no_grad():
        _, cache = model.prefill(tokens(batch, length), chunk_size=5, kv_dtype=kv_dtype)
    stored = sum(t.numel() * t.element_size()
                 for layer in cache.keys + cache.values for t in layer)
    assert cache.nbytes == stored == kv_cache_bytes(SMALL, length, batch, kv_dtype)


# --- the KV cache reproduces the full forward pass --------------------------------------


@torch.no_grad()
def test_prefill_then_decode_equals_full_forward(model: tinylm.TinyLM) -> None:
    x = tokens(2, 20)
    full = model(x)
    logits, cache = model.prefill(x[:, :12])
    close(logits, full[:, :12])
    for i in range(12, 20):
        close(model.decode(x[:, i], cache), full[:, i])
    assert cache.length == 20


@settings(max_examples=15, deadline=None)
@given(length=st.integers(1, 24), chunk=st.integers(1, 24), seed=st.integers(0, 99))
def test_chunked_prefill_equals_one_shot(model: tinylm.TinyLM, length: int, chunk: int,
                                         seed: int) -> None:
    x = tokens(2, length, seed)
    with torch.no_grad():
        one_shot, _ = model.prefill(x)
        chunked, cache = model.prefill(x, chunk_size=chunk)
    close(chunked, one_shot)
    assert cache.length == length


@torch.no_grad()
def test_forked_prefix_equals_recomputation(model: tinylm.TinyLM) -> None:
    prefix, suffixes = tokens(1, 10, seed=1), [tokens(1, n, seed=2 + n) for n in (1, 4, 6)]
    _, shared = model.prefill(prefix)
    for suffix in suffixes:
        logits, fork = model.prefill(suffix, cache=shared.fork())
        close(logits, model(torch.cat([prefix, suffix], dim=1))[:, prefix.shape[1]:])
        assert fork.length == 10 + suffix.shape[1]
    assert shared.length == 10
    assert shared.nbytes == kv_cache_bytes(SMALL, 10, 1, "fp32")


@torch.no_grad()
def test_bf16_cache_is_close_but_not_exact(model: tinylm.TinyLM) -> None:
    x = tokens(2, 16)
    fp32, _ = model.prefill(x[:, :8])
    bf16_cache = model.prefill(x[:, :8], kv_dtype="bf16")[1]
    exact = model.prefill(x[:, 8:], cache=model.prefill(x[:, :8])[1])[0]
    rounded = model.prefill(x[:, 8:], cache=bf16_cache)[0]
    assert not torch.equal(exact, rounded)
    torch.testing.assert_close(rounded, exact, atol=2e-2, rtol=2e-2)
    assert torch.isfinite(fp32).all()


@torch.no_grad()
@pytest.mark.parametrize("kv_dtype", ["fp32", "bf16", "e4m3-head"])
def test_cache_writes_in_place_and_equals_decoding_every_chunk(model: tinylm.TinyLM,
                                                               kv_dtype: str) -> None:
    """KVCache keeps a preallocated decoded buffer (gpt-fast style): a decode step writes one
    token into it instead of decoding and concatenating the whole cache."""
    x = tokens(2, 40, seed=5)
    _, cache = model.prefill(x[:, :30], kv_dtype=kv_dtype)
    codec = tinylm.get_kv_codec(kv_dtype)
    buffer = cache.append(0, *(torch.randn(2, 2, 1, 8) for _ in range(2)))[0]
    cache.truncate(30)
    for t in range(30, 40):
        model.decode(x[:, t], cache)
    k, _ = cache.append(0, *(torch.zeros(2, 2, 1, 8) for _ in range(2)))
    assert k.data_ptr() == buffer.data_ptr()  # the same storage: written in place
    every_chunk = torch.cat([codec.decode(c) for c in cache.keys[0]], dim=2)
    assert torch.equal(k, every_chunk)  # what the old cache returned, bit for bit
    cache.truncate(40)
    fork = cache.fork()
    model.decode(x[:, 0], fork)
    assert cache.length == 40 and fork.length == 41 and len(cache.keys[0]) == 11
    assert cache.nbytes == kv_cache_bytes(SMALL, 40, 2, codec.dtype)
    with pytest.raises(ValueError, match="chunk boundary"):
        cache.truncate(15)  # inside the prefill chunk


def test_registered_codec_is_used(model: tinylm.TinyLM) -> None:
    calls = []
    codec = tinylm.KVCodec("fp16", lambda x: calls.append(x.shape) or x.half(),
                           lambda s: s.float())
    tinylm.register_kv_codec("test-fp16", codec)
    try:
        with torch.no_grad():
            _, cache = model.prefill(tokens(1, 6), kv_dtype="test-fp16")
    finally:
        del tinylm.KV_CODECS["test-fp16"]
    assert len(calls) == 2 * SMALL.n_layers
    assert cache.nbytes == kv_cache_bytes(SMALL, 6, 1, "fp16")


@torch.no_grad()
def test_generate_matches_teacher_forced_scoring(trained: tinylm.TinyLM) -> None:
    rng = random.Random(7)
    samples = [tasks.variable_tracking(200, rng.random(), rng) for _ in range(8)]
    x, mask = tasks.batch(samples)
    n_answer = int(mask[0].sum())
    generated = trained.generate(x[:, :-n_answer], n_answer)
    expected = (generated == x[:, -n_answer:]).all(dim=1)
    assert torch.equal(tasks.answer_correct(trained, x, mask), expected)


# --- the RoPE hook --------------------------------------------------------------------------


@torch.no_grad()
def test_rope_hook_sets_positions() -> None:
    torch.manual_seed(0)
    m = tinylm.TinyLM(SMALL.with_(n_layers=1)).eval()
    a, b = torch.tensor([[5, 6, 7, 8]]), torch.tensor([[6, 5, 7, 8]])
    assert not torch.allclose(m(a)[0, -1], m(b)[0, -1])
    seen = []

    def no_rotation(head_dim, theta, scaling, max_pos):  # noqa: ANN001, ANN202
        seen.append((head_dim, theta, scaling, max_pos))
        return torch.zeros(head_dim // 2), 1.0

    m.set_rope(no_rotation, {"rope_type": "none"})
    assert seen == [(SMALL.head_dim, SMALL.rope_theta, {"rope_type": "none"},
                     SMALL.max_position_embeddings)]
    assert m.config.rope_scaling == {"rope_type": "none"}
    close(m(a)[0, -1], m(b)[0, -1])  # one layer without rotation ignores the order


@torch.no_grad()
def test_attention_factor_scales_logits() -> None:
    torch.manual_seed(0)
    m = tinylm.TinyLM(SMALL).eval()
    x = tokens(1, 9)
    before = m(x)
    m.set_rope(lambda d, theta, s, n: (plain_inv_freq(d, theta)[0], 1.5))
    assert not torch.allclose(m(x), before)
    m.set_rope(plain_inv_freq)
    close(m(x), before)


def test_plain_rope_frequencies() -> None:
    inv_freq, factor = plain_inv_freq(8, 10_000.0)
    close(inv_freq, torch.tensor([1.0, 0.1, 0.01, 0.001]))
    assert factor == 1.0


# --- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize("changes", [dict(n_kv_heads=3), dict(hidden_size=0), dict(n_layers=0),
                                     dict(vocab_size=0), dict(hidden_size=30, head_dim=0)])
def test_bad_configs_raise(changes: dict) -> None:
    with pytest.raises(ValueError, match="pass"):
        tinylm.TinyLM(SMALL.with_(**changes))


@pytest.mark.parametrize("changes", [dict(mlp="plain"), dict(norm="layer"), dict(bias="qkv"),
                                     dict(learned_positions=8), dict(head_dim=7)])
def test_unsupported_architectures_raise(changes: dict) -> None:
    with pytest.raises(ValueError, match="pass"):
        tinylm.TinyLM(SMALL.with_(**changes))


def test_bad_calls_raise(model: tinylm.TinyLM) -> None:
    with pytest.raises(ValueError, match="pass one of"):
        model.new_cache("fp5")
    with pytest.raises(ValueError, match="chunk_size"):
        model.prefill(tokens(1, 4), chunk_size=0)
    with pytest.raises(ValueError, match=r"tokens\[None\]"):
        model(torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="rope_scaling=None"):
        plain_inv_freq(8, 10_000.0, {"rope_type": "yarn", "factor": 2.0})
    rng = random.Random(0)
    with pytest.raises(ValueError, match="0 <= depth <= 1"):
        tasks.single_needle(64, 1.5, rng)
    with pytest.raises(ValueError, match="pass length >= 7"):
        tasks.single_needle(6, 0.5, rng)
    with pytest.raises(ValueError, match="pass one of"):
        tasks.get_task("needle")


# --- the tasks ------------------------------------------------------------------------------


def triples(seq: list[int], marker: int) -> list[tuple[int, int]]:
    return [(seq[i + 1], seq[i + 2]) for i in range(len(seq) - 2) if seq[i] == marker]


@pytest.mark.parametrize("depth", [0.0, 0.3, 1.0])
@pytest.mark.parametrize("length", [16, 100])
def test_single_needle_is_well_formed(length: int, depth: float) -> None:
    s = tasks.single_needle(length, depth, random.Random(3))
    seq = s.tokens.tolist()
    assert len(seq) == length and seq[0] == tasks.BOS
    [(key, value)] = triples(seq[:-2], tasks.NEEDLE)
    assert seq[-3:] == [tasks.QUERY, key, value] and s.answer.tolist() == [value]
    n_filler = length - 7  # BOS, NEEDLE k v, QUERY k, v
    assert seq.index(tasks.NEEDLE) == 1 + round(depth * n_filler)
    assert all(t in tasks.FILLER for t in seq if t not in (tasks.BOS, tasks.NEEDLE, tasks.QUERY,
                                                          key, value))


def test_multi_key_queries_answer_their_keys() -> None:
    s = tasks.multi_key(120, 0.5, random.Random(4), n_keys=5, n_queries=3)
    seq = s.tokens.tolist()
    table = dict(triples(seq, tasks.NEEDLE))
    assert len(table) == 5
    asked = [(k, v) for k, v in triples(seq, tasks.QUERY)]
    assert len(asked) == 3 and all(table[k] == v for k, v in asked)
    assert s.answer.tolist() == [v for _, v in asked]


@pytest.mark.parametrize("hops", [1, 3])
def test_variable_tracking_answer_follows_the_chain(hops: int) -> None:
    s = tasks.variable_tracking(150, 0.2, random.Random(5), hops=hops, n_chains=3)
    seq = s.tokens.tolist()
    assigned = dict(triples(seq, tasks.ASSIGN))  # name-of-source -> new variable
    chain, current = [], seq[seq.index(tasks.TRACK) + 1]
    while current in assigned:
        current = assigned[current]
        chain.append(current)
    assert s.answer.tolist() == chain and len(chain) == hops
    assert s.prompt.tolist() == seq[:-hops]


def test_tasks_are_seeded() -> None:
    for name, task in tasks.TASKS.items():
        a, b = task(64, 0.5, random.Random(9)), task(64, 0.5, random.Random(9))
        assert torch.equal(a.tokens, b.tokens), name


# --- the trained checkpoint and the training script ------------------------------------------


def test_checkpoint_is_small_and_described() -> None:
    metrics = json.loads((tinylm.CHECKPOINT / "metrics.json").read_text())
    assert (tinylm.CHECKPOINT / "model.pt").stat().st_size <= 20 * 2**20
    model = tinylm.load()
    assert metrics["params"] == model.config.n_params == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("task", list(tasks.TASKS))
def test_checkpoint_solves_every_task_at_training_length(trained: tinylm.TinyLM,
                                                          task: str) -> None:
    n = trained.config.max_position_embeddings
    acc = tinylm.evaluate(trained, task, lengths=(n,), depths=(0.0, 0.5, 1.0),
                          n_samples=16, seed=99)
    assert acc.accuracy.shape == (1, 3)
    assert acc.accuracy.mean() > 0.9


def test_training_script_writes_a_loadable_checkpoint(tmp_path) -> None:  # noqa: ANN001
    main(["train", "--max-copy-steps", "1", "--task-steps", "1", "--out", str(tmp_path),
          "--eval-samples", "1"])
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["steps"] == 2 and metrics["copy_steps"] == 1
    assert set(metrics["accuracy"]) == set(tasks.TASKS)
    assert tinylm.load(tmp_path).config == tinylm.CONFIG


@pytest.mark.parametrize(("copy_steps", "task_steps", "drop"), [(0, 30, 0.5), (40, 0, 0.1)])
def test_training_loss_falls(copy_steps: int, task_steps: int, drop: float) -> None:
    _, losses, _ = tinylm.train(copy_steps, task_steps, log=None)
    assert sum(losses[-5:]) / 5 < sum(losses[:3]) / 3 - drop


def test_copy_phase_ends_once_the_loss_is_below_formed_loss() -> None:
    _, losses, _ = tinylm.train(200, 0, formed_loss=10.0, log=None)  # any loss counts
    assert len(losses) == 51  # the first check comes after 50 steps of warmup


def test_training_rejects_no_steps() -> None:
    with pytest.raises(ValueError, match="max_copy_steps"):
        tinylm.train(0, 0, log=None)


@given(st.integers(5, 200), st.integers(0, 2**32))
def test_copy_sample_answers_repeat_the_segment(length: int, seed: int) -> None:
    sample = copy_sample(length, random.Random(seed))
    half = (length - 1) // 2
    assert sample.tokens.shape == sample.answer_mask.shape == (length,)
    assert torch.equal(sample.tokens[1:1 + half], sample.tokens[1 + half:1 + 2 * half])
    assert torch.equal(sample.answer, sample.tokens[2:1 + half])
    assert int(sample.answer_mask.sum()) == half - 1


def test_copy_sample_needs_room() -> None:
    with pytest.raises(ValueError, match="length >= 5"):
        copy_sample(4, random.Random(0))
