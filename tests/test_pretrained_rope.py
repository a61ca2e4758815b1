"""pretrained_rope: SmolLM2 past its window; the config's rope_scaling reaches the model."""

import math
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from lclib import measurements, pretrained  # noqa: E402
from lclib.bench import pretrained_rope as pr  # noqa: E402
from lclib.bench import run_experiment  # noqa: E402

BOOK_DATA = Path(__file__).resolve().parents[1] / "book" / "data" / "pretrained"
THETA, HEAD_DIM = 100_000.0, 64  # SmolLM2-135M-Instruct config.json: rope_theta, 576 / 9 heads
# the committed small run: a 512-token "window" makes the gaps cheap
SMALL = {"sizes": [128, 64], "n_needles": 2, "window": 512,
         "configs": (("linear", 2.0), ("yarn", 2.0))}


@pytest.fixture(scope="module")
def tokenizer():
    return transformers.AutoTokenizer.from_pretrained(pretrained.smollm2())


@pytest.mark.parametrize("name,factor", [("none", 1.0), ("linear", 4.0), ("dynamic", 2.0),
                                         ("yarn", 2.0)])
def test_config_reaches_the_models_inv_freq(name, factor):
    model, check = pr.load(name, factor=factor)
    rotary = model.model.rotary_emb
    expected, attention = pr.expected_inv_freq(name, HEAD_DIM, THETA, factor=factor)
    assert torch.equal(rotary.inv_freq.float(), expected)
    assert check["inv_freq_max_rel_error"] == 0.0
    assert rotary.attention_scaling == pytest.approx(attention)
    # YaRN's temperature 0.1 ln s + 1 (Peng et al. 2023, eq. 21); 1 for the others
    assert attention == pytest.approx(0.1 * math.log(factor) + 1 if name == "yarn" else 1.0)
    # the slowest pair: divided by the factor (linear, YaRN), unscaled (none)
    divided = {"none": 1.0, "linear": factor, "yarn": factor}
    if name in divided:
        assert check["slowest_pair_divided_by"] == pytest.approx(divided[name], rel=1e-5)


def test_dynamic_is_vllms_static_table():
    # vLLM 0.32 DynamicNTKScalingRotaryEmbedding: base (s * max_pos / trained - (s - 1))^(d/(d-2))
    s, served, trained = 2.0, 16_384, 8192
    base = THETA * (s * served / trained - (s - 1)) ** (HEAD_DIM / (HEAD_DIM - 2))
    table = 1.0 / base ** (torch.arange(0, HEAD_DIM, 2, dtype=torch.float64) / HEAD_DIM)
    expected, _ = pr.expected_inv_freq("dynamic", HEAD_DIM, THETA, factor=s)
    assert torch.allclose(expected.double(), table, rtol=1e-6)
    assert pr.runtime_scaling("dynamic", THETA, HEAD_DIM)["rope_type"] == "default"


def test_unknown_scaling_is_refused():
    with pytest.raises(ValueError, match="pass one of"):
        pr.scaling_dict("ntk-by-parts", THETA)


def test_probe_hides_each_needle_once_in_part_a(tokenizer):
    parts = pr.probe(tokenizer, 200, 50, 3, seed=1)
    assert len(parts["b"]) == 50 and len(parts["a"]) >= 200
    for needle in parts["needles"]:
        text = tokenizer.decode(parts["a"][needle["start"]:needle["stop"]])
        assert text.strip() == f"The secret number for {needle['name']} is {needle['secret']}."
    assert len({n["name"] for n in parts["needles"]}) == 3
    with pytest.raises(ValueError, match="n_needles"):
        pr.probe(tokenizer, 200, 50, 0)


def _small_run():
    committed = [r for r in measurements.runs("pretrained_rope", BOOK_DATA)
                 if r["header"]["sizes"] == SMALL["sizes"]]
    assert committed, "no committed small run of pretrained_rope"
    return committed[-1]


@pytest.mark.slow
def test_rerun_agrees_with_the_committed_small_run(tmp_path):
    committed = _small_run()
    assert committed["header"]["options"]["window"] == SMALL["window"]
    record = run_experiment("pretrained_rope", out=tmp_path, **SMALL)
    before = {pr.label(r): r for r in committed["rows"]}
    assert {pr.label(r) for r in record["rows"]} == set(before) == {"linear x2", "yarn x2"}
    for row in record["rows"]:
        old = before[pr.label(row)]
        assert list(row["levels"]) == list(pr.LEVELS)
        for level, now in row["levels"].items():
            # same tokens, same weights, fp32: only thread-order rounding may differ
            assert now["nll"] == pytest.approx(old["levels"][level]["nll"], abs=0.02)
            assert [n["found"] for n in now["needles"]] == [
                n["found"] for n in old["levels"][level]["needles"]]


def test_committed_run_is_paired_and_checked():
    for run in measurements.runs("pretrained_rope", BOOK_DATA):
        rows = [r for r in run["rows"] if "levels" in r]
        assert rows, run["file"]
        names = [[n["name"] for n in rows[0]["levels"]["1x"]["needles"]]]
        for row in rows:
            assert row["inv_freq_max_rel_error"] <= 1e-6, (run["file"], pr.label(row))
            for level in row["levels"].values():
                assert [n["name"] for n in level["needles"]] == names[0]
                assert level["question_at"] == level["b_start"] + run["summary"]["b_tokens"]
                assert level["gap"] == level["b_start"] - run["summary"]["a_tokens"]
            far = row["levels"]["4x"]["question_at"]
            assert far == 4 * run["summary"]["window"] - pr.MARGIN
