"""lclib.bench: the crossover experiment runs tiny on CPU and writes JSON with provenance."""

import json
import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from lclib.bench import run_experiment
from lclib.bench.__main__ import main
from lclib.bench.crossover import measured_crossover


def test_crossover_writes_a_record_with_provenance(tmp_path):
    record = run_experiment("crossover", "cpu", [64, 128, 256], "fp32", tmp_path)
    saved = json.loads((tmp_path / "crossover-cpu.json").read_text())
    assert saved["provenance"]["torch"] == torch.__version__
    assert {"device_name", "date", "cuda", "threads"} <= set(saved["provenance"])
    assert [r["seq_len"] for r in saved["rows"]] == [64, 128, 256]
    assert all(r["t_linear"] > 0 and r["t_attention"] > 0 for r in saved["rows"])
    assert saved["rows"][2]["flops_attention"] == 16 * saved["rows"][0]["flops_attention"]
    assert record["crossover_predicted"] > 0 and record["rate_linear"] > 1e8


@given(st.floats(1e-12, 1e-6), st.floats(1e-3, 1e3))
def test_measured_crossover_is_exact_for_power_laws(per_token, crossover):
    # t_linear = a*S and t_attention = a*S^2/crossover meet exactly at S = crossover
    sizes = [2**k for k in range(6, 24)]
    t_lin = [per_token * s for s in sizes]
    t_attn = [per_token * s * s / crossover for s in sizes]
    found = measured_crossover(sizes, t_lin, t_attn)
    if sizes[0] < crossover <= sizes[-1]:
        assert found == pytest.approx(crossover, rel=1e-9)
    else:
        assert found is None


def test_bad_requests_are_refused(capsys):
    with pytest.raises(ValueError, match="crossover"):
        run_experiment("nope", "cpu", out=None)
    with pytest.raises(ValueError, match="fp32"):
        run_experiment("crossover", "cpu", [64], "int3", out=None)
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit):
            main(["crossover", "--device", "cuda"])
        assert "--device cpu" in capsys.readouterr().err
    assert math.isfinite(run_experiment("crossover", "cpu", [32], out=None)["rate_attention"])
