"""lclib.ring: blockwise attention, the LSE merge, the simulated and the distributed ring."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from lclib import measurements
from lclib.bench import run_experiment
from lclib.bench.ring import calls_per_rank, per_rank_seconds
from lclib.ring import (
    attention_block,
    block_calls,
    block_flops,
    fused_block,
    merge,
    rank_chunks,
    ring_attention,
    shard,
    unshard,
)
from lclib.ring.__main__ import main as ring_main
from lclib.ring.dist import Problem, free_port, run_local

ROOT = Path(__file__).resolve().parents[1]
THREADS = torch.get_num_threads()
TOL = 2e-5  # fp32: different summation orders differ by a few ulps of O(1) outputs


def rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def sdpa(q, k, v, causal):
    return F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=True)


@settings(max_examples=25)
@given(world=st.integers(1, 8), layout=st.sampled_from(["zigzag", "contiguous"]),
       causal=st.booleans(), batch=st.integers(1, 2), kv_heads=st.integers(1, 3),
       group=st.integers(1, 3), head_dim=st.sampled_from([4, 8, 16]), chunk=st.integers(1, 5),
       seed=st.integers(0, 99))
def test_ring_equals_one_sdpa_call(world, layout, causal, batch, kv_heads, group, head_dim,
                                   chunk, seed):
    seq = chunk * world * (2 if layout == "zigzag" else 1)
    q = rand(batch, kv_heads * group, seq, head_dim, seed=seed)
    k, v = rand(batch, kv_heads, seq, head_dim, seed=seed + 1), rand(
        batch, kv_heads, seq, head_dim, seed=seed + 2)
    out = ring_attention(q, k, v, world, causal=causal, layout=layout)
    assert out.shape == q.shape and out.dtype == q.dtype
    torch.testing.assert_close(out, sdpa(q, k, v, causal), atol=TOL, rtol=TOL)


@pytest.mark.parametrize("block", [fused_block, attention_block])
@pytest.mark.parametrize("layout", ["zigzag", "contiguous"])
def test_float64_in_float64_accurate_out(block, layout):
    q = rand(1, 4, 48, 8).double()
    k, v = rand(1, 2, 48, 8, seed=1).double(), rand(1, 2, 48, 8, seed=2).double()
    out = ring_attention(q, k, v, 3, layout=layout, block=block)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, sdpa(q, k, v, True), atol=1e-12, rtol=1e-12)


@given(world=st.integers(1, 8), layout=st.sampled_from(["zigzag", "contiguous"]),
       causal=st.booleans())
def test_block_calls_cover_each_needed_pair_once(world, layout, causal):
    chunks = rank_chunks(world, layout)
    for r in range(world):
        for step in range(world):
            src = (r - step) % world
            covered = []
            for i0, i1, j0, j1, diagonal in block_calls(chunks[r], chunks[src], causal):
                for i in range(i0, i1):
                    for j in range(j0, j1):
                        qc, kc = chunks[r][i], chunks[src][j]
                        # a causal call over the concatenation masks exactly the later chunks
                        if not (diagonal and kc > qc):
                            covered.append((qc, kc))
            needed = [(qc, kc) for qc in chunks[r] for kc in chunks[src]
                      if not causal or kc <= qc]
            assert sorted(covered) == sorted(needed)
    if layout == "zigzag":  # one call a step: N a rank, as ring-flash-attention makes
        assert calls_per_rank(world) == [world] * world


def test_plain_math_block_and_bf16_inputs():
    q, k, v = rand(1, 4, 32, 8), rand(1, 2, 32, 8, seed=1), rand(1, 2, 32, 8, seed=2)
    out = ring_attention(q, k, v, 4, block=attention_block)
    torch.testing.assert_close(out, sdpa(q, k, v, True), atol=TOL, rtol=TOL)
    half = [x.bfloat16() for x in (q, k, v)]
    out16 = ring_attention(*half, 2)
    assert out16.dtype == torch.bfloat16
    torch.testing.assert_close(out16.float(), sdpa(*half, True).float(), atol=2e-2, rtol=2e-2)


@settings(max_examples=15)
@given(causal=st.booleans(), seed=st.integers(0, 99))
def test_fused_and_plain_blocks_agree_with_the_lse(causal, seed):
    q, k, v = rand(2, 6, 12, 8, seed=seed), rand(2, 3, 12, 8, seed=seed + 1), rand(
        2, 3, 12, 8, seed=seed + 2)
    (o1, l1), (o2, l2) = (f(q, k, v, causal, 0.3) for f in (fused_block, attention_block))
    torch.testing.assert_close(o1, o2, atol=TOL, rtol=TOL)
    torch.testing.assert_close(l1, l2, atol=TOL, rtol=TOL)
    scores = (q @ k.repeat_interleave(2, 1).transpose(-1, -2)) * 0.3
    if causal:
        scores = scores.masked_fill(~torch.ones(12, 12, dtype=torch.bool).tril(), -math.inf)
    torch.testing.assert_close(l2, torch.logsumexp(scores, -1), atol=TOL, rtol=TOL)


@settings(max_examples=25)
@given(split=st.integers(1, 15), seed=st.integers(0, 99))
def test_merge_of_two_key_sets_is_attention_over_both(split, seed):
    q, k, v = rand(1, 2, 5, 8, seed=seed), rand(1, 2, 16, 8, seed=seed + 1), rand(
        1, 2, 16, 8, seed=seed + 2)
    a = attention_block(q, k[:, :, :split], v[:, :, :split], False, 8**-0.5)
    b = attention_block(q, k[:, :, split:], v[:, :, split:], False, 8**-0.5)
    out, lse = merge(*a, *b)
    torch.testing.assert_close(out, sdpa(q, k, v, False), atol=TOL, rtol=TOL)
    torch.testing.assert_close(merge(*b, *a)[0], out, atol=TOL, rtol=TOL)  # order-free
    empty = (torch.zeros_like(out), torch.full_like(lse, -math.inf))
    assert torch.equal(merge(*empty, out, lse)[0], out)  # nothing seen yet: take the block
    assert torch.equal(merge(*empty, *empty)[0], empty[0])  # no NaN from -inf - -inf


@given(world=st.integers(1, 8), layout=st.sampled_from(["zigzag", "contiguous"]))
def test_shard_and_unshard_are_inverse(world, layout):
    x = torch.arange(2 * world * 3, dtype=torch.float32).reshape(1, 1, -1, 1)
    parts = shard(x, world, layout)
    assert torch.equal(unshard(parts, layout), x)
    assert len({p.shape[2] for p in parts}) == 1


@pytest.mark.parametrize("world", [1, 2, 3, 4, 8])
def test_zigzag_balances_causal_work(world):
    seq, h, d = 16 * world, 4, 8
    zig = [sum(r) for r in block_flops(seq, world, "zigzag", True, h, d)]
    con = [sum(r) for r in block_flops(seq, world, "contiguous", True, h, d)]
    total = 4 * h * d * seq * seq / 2  # causal: S^2/2 pairs, 4*H*d FLOPs each
    assert sum(zig) == pytest.approx(total) and sum(con) == pytest.approx(total)
    assert max(zig) / min(zig) <= 1.05
    # contiguous: the last rank sees N-1 full chunks and a half one, the first only a half
    assert max(con) / min(con) == pytest.approx(2 * world - 1)
    zig_steps = block_flops(seq, world, "zigzag", True, h, d)
    assert all(len({round(r[s]) for r in zig_steps}) == 1 for s in range(world))


def test_rank_chunks():
    assert rank_chunks(4, "zigzag") == [[0, 7], [1, 6], [2, 5], [3, 4]]
    assert rank_chunks(3, "contiguous") == [[0], [1], [2]]


@pytest.mark.parametrize(("args", "kwargs", "message"), [
    (((1, 4, 12, 8), (1, 2, 12, 8)), {"world_size": 4}, "multiple of 8"),
    (((1, 4, 12, 8), (1, 2, 12, 8)), {"world_size": 5, "layout": "contiguous"}, "multiple of 5"),
    (((1, 4, 16, 8), (1, 3, 16, 8)), {"world_size": 2}, "divides the query heads"),
    (((1, 4, 16, 8), (1, 2, 16, 8)), {"world_size": 2, "layout": "stripe"}, "zigzag, contig"),
    (((1, 4, 16, 8), (1, 2, 16, 8)), {"world_size": 0}, ">= 1"),
    (((1, 4, 16, 8), (1, 2, 8, 8)), {"world_size": 2}, "one sequence"),
    (((4, 16, 8), (2, 16, 8)), {"world_size": 2}, "4-D"),
])
def test_bad_input_raises(args, kwargs, message):
    q, k = torch.zeros(args[0]), torch.zeros(args[1])
    with pytest.raises(ValueError, match=message):
        ring_attention(q, k, k, **kwargs)


@pytest.mark.parametrize(("world", "layout"), [(2, "contiguous"), (4, "zigzag")])
def test_distributed_ring_over_gloo_processes(world, layout):
    problem = Problem(seq_len=64 * world, heads=4, kv_heads=2, head_dim=16, layout=layout)
    results = run_local(world, problem)
    assert [r["rank"] for r in results] == list(range(world))
    flops = [sum(f) for f in block_flops(problem.seq_len, world, layout, True, 4, 16)]
    for r in results:
        assert r["max_abs_err"] < TOL
        assert len(r["compute"]) == len(r["wait"]) == len(r["calls"]) == world
        assert all(t >= 0 for t in r["compute"] + r["wait"])
        assert r["flops"] == flops[r["rank"]]


def test_torchrun_cli_verifies_against_sdpa():
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
           "--master-addr", "127.0.0.1",
           "--master-port", str(free_port()), "-m", "lclib.ring", "--verify", "--seq-len", "128",
           "--heads", "4", "--kv-heads", "1", "--head-dim", "16", "--layout", "contiguous"]
    done = subprocess.run([*cmd, "--tol", "0"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    # --tol 0 is honoured: rank 1 merges two blocks, whose rounding differs from one SDPA call
    assert done.returncode == 1, done.stderr[-2000:]
    assert done.stdout.count("max |ring - SDPA|") == 2 and "backend gloo" in done.stdout
    assert done.stdout.index("GFLOP") < done.stdout.index(" ms")  # the deterministic measure first


ONE_RANK = ["--seq-len", "64", "--heads", "2", "--kv-heads", "1", "--head-dim", "8"]


def test_ring_cli_in_one_process(monkeypatch, capsys):
    for var, value in {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1",
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port())}.items():
        monkeypatch.setenv(var, value)
    # one rank: one causal call of the kernel the reference uses, so even --tol 0 passes
    assert ring_main(["--verify", "--tol", "0", *ONE_RANK]) == 0
    assert "max |ring - SDPA| = 0.00e+00" in capsys.readouterr().out


def test_ring_cli_without_torchrun_says_how_to_start_it(monkeypatch, capsys):
    for var in ("RANK", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(SystemExit) as exit_:
        ring_main(["--verify"])
    assert exit_.value.code == 2 and "start this with torchrun" in capsys.readouterr().err


def test_per_rank_seconds_times_every_rank():
    secs = per_rank_seconds(Problem(seq_len=64, heads=2, kv_heads=1, head_dim=8), 4, rounds=1)
    assert len(secs) == 4 and all(0 < s < 10 for s in secs)
    assert torch.get_num_threads() == THREADS  # restored


def test_ring_bench_runs_tiny_on_cpu(tmp_path):
    record = run_experiment("ring", "cpu", [64, 128], "fp32", tmp_path)
    [path] = tmp_path.glob("ring-cpu-fp32-*.jsonl")
    saved = measurements.read(path)
    assert [r["seq_len"] for r in saved["rows"]] == [64, 128]
    for r in record["rows"]:
        assert r["max_abs_err"] < TOL and r["t_sdpa"] > 0 and r["t_ring"] > 0
        assert r["throughput_ratio"] == pytest.approx(r["t_sdpa"] / r["t_ring"])
        assert r["backend_sdpa"] == "cpu-flash"  # forced: the kernel the ring's blocks call
    assert saved["rows"][1]["flops"] == 4 * saved["rows"][0]["flops"]
    assert saved["summary"]["calls_per_rank"] == [4] * 4
