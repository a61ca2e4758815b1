"""lclib.bench: records that survive failures, the experiments at CPU sizes, the device run.

The device run's dry run (`device-run --dry-run`) runs every step of the GPU run on the CPU at
small sizes; nothing in this file has run on CUDA.
"""

import ast
import json
import math
import time
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from lclib import measurements, torch_env
from lclib.bench import Run, run_experiment
from lclib.bench.__main__ import main
from lclib.bench.crossover import measured_crossover
from lclib.bench.device_run import STEPS, device_run, run_step
from lclib.hardware import get_gpu

ROOT = Path(__file__).resolve().parents[1]


def one_file(folder: Path, experiment: str) -> dict:
    [path] = folder.glob(f"{experiment}-*.jsonl")
    return measurements.read(path)


def test_crossover_writes_jsonl_with_provenance(tmp_path):
    record = run_experiment("crossover", "cpu", [64, 128, 256], "fp32", tmp_path,
                            backends=["math"])
    saved = one_file(tmp_path, "crossover")
    assert Path(record["path"]).name.startswith("crossover-cpu-fp32-")
    prov = saved["header"]["provenance"]
    assert prov["torch"] == torch.__version__
    assert {"device_name", "date", "cuda", "cudnn", "threads", "git_commit", "lclib_sha1"} <= set(
        prov)
    rows = saved["rows"]
    assert [r["seq_len"] for r in rows] == [64, 128, 256]
    assert all(r["t_linear"] > 0 and r["t_attention_math"] > 0 for r in rows)
    assert {r["backend"] for r in rows} == {"cpu-flash"} and rows[0]["backend_math"] == "cpu-math"
    assert rows[2]["flops_attention"] == 16 * rows[0]["flops_attention"]
    assert saved["summary"]["crossover_predicted"] == record["crossover_predicted"] > 0
    assert record["rate_linear"] > 1e7 and record["mfu_linear"] is None  # no CPU peak


def test_a_second_run_does_not_overwrite_the_first(tmp_path):
    for _ in range(2):
        run_experiment("decode", "cpu", [256, 512], "fp32", tmp_path)
    assert len(list(tmp_path.glob("decode-cpu-fp32-*.jsonl"))) == 2


def test_rows_are_on_disk_before_a_late_failure(tmp_path):
    path = tmp_path / "x.jsonl"
    run = Run(path, {"experiment": "x"})

    def fn(size: int) -> dict:
        if size == 3:
            raise RuntimeError("a bug at the third size")
        return {"seq_len": size}

    with pytest.raises(RuntimeError, match="third"):
        run.measure([1, 2, 3, 4], fn)
    assert [r["seq_len"] for r in measurements.read(path)["rows"]] == [1, 2]


def test_out_of_memory_is_a_row_and_the_next_size_runs(tmp_path):
    run = Run(tmp_path / "x.jsonl", {})

    def fn(size: int) -> dict:
        if size == 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 4 GiB")
        return {"seq_len": size}

    assert [r["seq_len"] for r in run.measure([1, 2, 3], fn)] == [1, 3]
    assert "out of memory" in run.rows[1]["error"] and run.rows[1]["seq_len"] == 2


def test_a_size_predicted_to_overrun_the_budget_is_skipped():
    run = Run(None, {}, budget_s=0.05)

    def fn(size: int) -> dict:
        time.sleep(0.03 * size)
        return {"seq_len": size}

    done = run.measure([1, 2], fn)  # size 2 would take 0.06 s; at most 0.02 s are left
    assert [r["seq_len"] for r in done] == [1]
    assert run.rows[1]["seq_len"] == 2 and "predicted" in run.rows[1]["skipped"]


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


def test_decode_keeps_cache_resident_sizes_out_of_the_fit():
    llc = torch_env.last_level_cache_bytes(torch.device("cpu"))
    record = run_experiment("decode", "cpu", [256, 1024], "fp32", None)
    # 256-1024 tokens of 1 KiB of K/V each fit in any last-level cache: nothing to fit
    assert llc is None or (record["fit_sizes"] == [] and record["fitted_bandwidth"] is None)
    assert all(r["backend"] == "cpu-flash" and r["bandwidth"] > 0 for r in record["rows"])


@pytest.mark.parametrize("name", ["NVIDIA H100 80GB HBM3", "NVIDIA H200", "NVIDIA H100 PCIe"])
def test_one_gpu_table(name):
    found = torch_env.known_gpu(name)
    assert found == (None if "PCIe" in name else get_gpu("h200" if "H200" in name else "h100-sxm"))


def test_torch_env_helpers():
    q = torch.zeros(1, 4, 16, 8)
    k = torch.zeros(1, 2, 16, 8)
    with torch_env.forced_backend("math"):
        assert torch_env.sdpa_backend(q, k, k, True, True) == "cpu-math"
    assert torch_env.sdpa_backend(q, k, k, True, True) == "cpu-flash"
    assert torch_env.is_oom(torch.OutOfMemoryError("x")) and not torch_env.is_oom(ValueError())
    with pytest.raises(ValueError, match="flash"), torch_env.forced_backend("fastest"):
        pass
    with pytest.raises(ValueError, match="bf16"):
        torch_env.torch_dtype("int3")


def test_ring_and_torch_env_do_not_import_the_benchmarks():
    for path in [*(ROOT / "lclib" / "ring").glob("*.py"), ROOT / "lclib" / "torch_env.py"]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                assert "bench" not in (node.module or ""), f"{path.name} imports {node.module}"


def test_bad_requests_are_refused(capsys):
    with pytest.raises(ValueError, match="crossover"):
        run_experiment("nope", "cpu", out=None)
    with pytest.raises(ValueError, match="fp32"):
        run_experiment("crossover", "cpu", [64], "int3", out=None)
    with pytest.raises(ValueError, match="backends"):  # crossover takes `backends`, a list
        run_experiment("crossover", "cpu", [64], out=None, backend="flash")
    if not torch.cuda.is_available():
        for argv in (["crossover", "--device", "cuda"], ["device-run", "--device", "cuda"]):
            with pytest.raises(SystemExit):
                main(argv)
            assert "--device cpu" in capsys.readouterr().err
    assert math.isfinite(run_experiment("crossover", "cpu", [32], out=None)["rate_attention"])


def test_cli_writes_under_out_env(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OUT", str(tmp_path))
    main(["ceilings", "--dtype", "bf16"])
    saved = one_file(tmp_path, "ceilings")
    ops = [r["op"] for r in saved["rows"]]
    assert ops[:2] == ["copy", "gemm"] and ops.count("sdpa_choice") == 4
    assert saved["rows"][1]["rate"] > 0 and json.loads(capsys.readouterr().out)["gemm_rate"] > 0


def test_an_isolated_step_runs_in_its_own_process(tmp_path):
    """How the GPU run takes each step: `python -m lclib.bench <step>` with a hard timeout."""
    step = next(s for s in STEPS if s.name == "crossover")
    entry = run_step(step, "cpu", [64], 70.0, tmp_path, isolate=True)
    assert entry["status"] == "ok", entry
    saved = measurements.read(entry["path"])
    assert saved["header"]["options"] == {"backends": ["flash", "cudnn"]}
    assert saved["rows"][0]["backend_flash"] == "cpu-flash"
    assert saved["rows"][0]["backend_cudnn"].startswith("unavailable")
    failed = run_step(step, "cpu", [64], -40.0, tmp_path, isolate=True)  # 5 s: killed
    assert failed["status"].startswith("killed after 5 s"), failed


@pytest.mark.slow
def test_device_run_dry_run(tmp_path):
    """The GPU run's every step, on the CPU at small sizes, under its 2-minute goal."""
    t0 = time.perf_counter()
    log = device_run(420, dry_run=True, out=tmp_path)
    elapsed = time.perf_counter() - t0
    assert [s["step"] for s in log["steps"]] == [s.name for s in STEPS] + ["ring_nccl"]
    assert all(s["status"] == "ok" for s in log["steps"]), log["steps"]
    assert len(list(tmp_path.iterdir())) == len(STEPS) + 2 <= 8  # what comes back from $OUT
    fp8 = one_file(tmp_path, "fp8_decode")
    for row in fp8["rows"]:
        assert row["bytes_fp8"] == row["bytes_base"] // 2 + 2 * 2 * 4  # + per-head fp32 scales
        assert row["t_sdpa"] > 0 and row["rel_error_fp8"] < 0.1 and row["rel_error_base"] < 0.01
    assert fp8["header"]["dtype"] == "bf16" and fp8["summary"]["compile_backend"] == "aot_eager"
    ring = one_file(tmp_path, "ring")
    assert ring["summary"]["calls_per_rank"] == [4] * 4  # N kernel calls a rank, not 2N+1
    assert all(r["backend_sdpa"] == "cpu-flash" and r["max_abs_err"] < 2e-2 for r in ring["rows"])
    [nccl] = tmp_path.glob("ring_nccl-*.json")
    assert json.loads(nccl.read_text())["results"][0]["max_abs_err"] < 1e-4
    for experiment in ("crossover", "decode", "fp8_decode", "ring"):
        assert isinstance(measurements.show(experiment, directory=tmp_path), measurements.Shown)
    assert elapsed < 240, f"dry run took {elapsed:.0f} s"  # goal 120 s on an idle machine
