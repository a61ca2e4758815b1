"""Write the synthetic device-run fixture in this folder: `python tests/data/measurements/make.py`.

Files shaped like `python -m lclib.bench device-run` output on an H200, with timings made from
known fractions of the H200's datasheet peaks (below), so that a test can check that
`lclib.measurements.show` recovers them. Not a measurement.
"""

import json
from pathlib import Path

from lclib.cost import prefill_flops
from lclib.models import get_model

HERE = Path(__file__).parent
HBM, PEAK, L2 = 4.8e12, 989.4e12, 60 * 2**20  # H200: datasheet HBM B/s, bf16 FLOP/s; L2 bytes
MFU_LINEAR, MFU_ATTENTION, HBM_FRACTION, OVERHEAD_S = 0.6, 0.4, 0.8, 5e-6
PROVENANCE = {"device": "cuda:0", "device_name": "NVIDIA H200", "torch": "2.11.0+cu130",
              "cuda": "13.0", "cudnn": 91300, "git_commit": "0" * 40,
              "date": "2026-12-02T02:00:00+00:00",
              "fixture": "synthetic, written by tests/data/measurements/make.py"}
LAYER = get_model("llama-3.3-70b").with_(n_layers=1)
K = 1024


def write(name: str, rows: list[dict], summary: dict) -> None:
    lines = [{"kind": "header", "experiment": name, "provenance": PROVENANCE, "dtype": "bf16"},
             *({"kind": "row", **r} for r in rows), {"kind": "summary", **summary}]
    path = HERE / f"{name}-cuda-bf16-20261202T020000000000Z.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))


def main() -> None:
    rows = []
    for s in (4 * K, 16 * K, 64 * K, 128 * K):
        f = prefill_flops(LAYER, s)
        rows.append({"seq_len": s, "flops_linear": f.linear, "flops_attention": f.attention,
                     "t_linear": f.linear / (MFU_LINEAR * PEAK),
                     "t_attention": f.attention / (MFU_ATTENTION * PEAK), "backend": "cuda-flash"})
    rows.append({"seq_len": 256 * K, "error": "out of memory: (fixture)"})
    write("crossover", rows, {"peak_flops": PEAK, "crossover_measured": 50000.0,
                              "crossover_predicted": 48000.0})
    kv = 2 * 8 * 128 * 2  # bytes per token of one layer's bf16 K/V
    rows = [{"seq_len": s, "kv_bytes": kv * s, "t_step": OVERHEAD_S + kv * s / (HBM_FRACTION * HBM)}
            for s in (4 * K, 64 * K, 256 * K, 1024 * K)]
    rows[0]["t_step"] *= 0.2  # in L2: faster than HBM, and kept out of the fit
    write("decode", rows, {"hbm_bandwidth": HBM, "last_level_cache_bytes": L2})
    rows = [{"seq_len": s, "bytes_base": kv * s, "bytes_fp8": kv * s // 2,
             "t_sdpa": kv * s / (0.75 * HBM), "t_base": kv * s / (0.5 * HBM),
             "t_fp8": kv * s / 2 / (0.45 * HBM), "time_ratio": 0.5 / 0.45 / 2,
             "time_ratio_vs_sdpa": 0.75 / 0.45 / 2,
             "backend_sdpa": "cuda-flash"} for s in (32 * K, 256 * K, 1024 * K)]
    write("fp8_decode", rows, {"hbm_peak": HBM, "compile_s": {"base": 20.0}})
    rows = []
    for s in (32 * K, 64 * K, 128 * K):
        flops = 4 * 32 * 128 * s * (s + 1) / 2
        rows.append({"seq_len": s, "flops": flops, "t_sdpa": flops / (0.5 * PEAK),
                     "t_ring": flops / (0.45 * PEAK), "throughput_ratio": 0.9,
                     "max_abs_err": 0.004, "backend_sdpa": "cuda-flash"})
    write("ring", rows, {"world_size": 8})
    write("prefix_reuse", [{"doc_tokens": 16 * K, "speedup": 15.0,
                            "predicted_prefill_speedup": 18.0}], {})
    write("rope", [{"method": m, "multiple": x, "length": 256 * x, "accuracy": a}
                   for m, accs in (("none", (1.0, 0.2)), ("yarn", (1.0, 0.9)))
                   for x, a in zip((1, 4), accs, strict=True)], {})
    task = {"accuracy": [1.0, 0.9], "delta": {"FP8 KV, per head": [0.0, -0.05]}}
    write("niah", [], {"lengths": [128, 256], "n_samples": 64, "tasks": {"single_needle": task}})


if __name__ == "__main__":
    main()
