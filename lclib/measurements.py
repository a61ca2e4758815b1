"""Measurements from `python -m lclib.bench`, read back and drawn against lclib's model.

`load(experiment)` returns the rows of every file of that experiment (JSON Lines from
`lclib.bench`, or an older single JSON record), each with its run's provenance and summary.
`show(experiment)` draws the measured points against lclib's line, with the GPU, the
torch/CUDA/cuDNN versions and the fitted MFU or bandwidth fraction in the caption, or says in
one sentence that there is no data. Pages run with cwd `book/`, hence the relative default.
Torch-free; matplotlib is imported when a figure is drawn.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DIRECTORY = "data/measurements"
CACHE_MARGIN = 2  # fit only sizes whose K/V is at least twice the last-level cache


def read(path: str | Path) -> dict[str, Any]:
    """One file as {"header", "rows", "summary"} (JSON Lines, or one JSON record)."""
    path = Path(path)
    text = path.read_text()
    if path.suffix == ".jsonl":
        lines = [json.loads(line) for line in text.splitlines() if line.strip()]
        parts = {kind: [{k: v for k, v in line.items() if k != "kind"} for line in lines
                        if line.get("kind") == kind] for kind in ("header", "row", "summary")}
        return {"header": (parts["header"] or [{}])[0], "rows": parts["row"],
                "summary": (parts["summary"] or [{}])[-1]}
    record = json.loads(text)
    rows = record.pop("rows", [])
    header = {k: record.pop(k) for k in ("experiment", "provenance") if k in record}
    return {"header": header, "rows": rows, "summary": record}


def runs(experiment: str, directory: str | Path = DIRECTORY) -> list[dict[str, Any]]:
    """Every run of `experiment` under `directory`, oldest file name first, with its "file"."""
    if not experiment or "/" in experiment:
        raise ValueError(f"pass an experiment name such as 'decode', got {experiment!r}")
    found = []
    for path in sorted(Path(directory).glob(f"{experiment}-*.json*")):
        run = read(path)
        if run["header"].get("experiment", experiment) == experiment:
            found.append({**run, "file": path.name})
    return found


def load(experiment: str, directory: str | Path = DIRECTORY) -> list[dict[str, Any]]:
    """The rows of every run of `experiment`, each with "provenance", "summary" and "file"."""
    return [{**row, "provenance": run["header"].get("provenance", {}),
             "summary": run["summary"], "file": run["file"]}
            for run in runs(experiment, directory) for row in run["rows"]]


def fit_bandwidth(n_bytes: Sequence[float], seconds: Sequence[float]) -> tuple[float, float]:
    """Least-squares fit of t = t0 + bytes / bandwidth with t0 >= 0; (bandwidth B/s, t0 s).

    A negative fixed overhead is not physical (it means the small sizes ran faster per byte,
    e.g. from a cache): the fit is then redone through the origin, t0 = 0.
    """
    if len(n_bytes) != len(seconds) or len(set(n_bytes)) < 2:
        raise ValueError("pass equally many byte counts and times, with at least two sizes")
    mx, my = sum(n_bytes) / len(n_bytes), sum(seconds) / len(seconds)
    sxx = sum((x - mx) ** 2 for x in n_bytes)
    slope = sum((x - mx) * (y - my) for x, y in zip(n_bytes, seconds, strict=True)) / sxx
    if not slope > 0:
        raise ValueError("time does not grow with bytes here; pass longer contexts")
    if my - slope * mx >= 0:
        return 1 / slope, my - slope * mx
    through_origin = (sum(x * y for x, y in zip(n_bytes, seconds, strict=True))
                      / sum(x * x for x in n_bytes))
    return 1 / through_origin, 0.0


def fit_past_cache(rows: list[dict[str, Any]], cache_bytes: int | None) -> dict[str, Any]:
    """`fit_bandwidth` over the rows whose K/V is past CACHE_MARGIN x the last-level cache."""
    floor = CACHE_MARGIN * (cache_bytes or 0)
    fitted = [r for r in rows if r["kv_bytes"] >= floor]
    try:
        bandwidth, overhead = fit_bandwidth([r["kv_bytes"] for r in fitted],
                                            [r["t_step"] for r in fitted])
    except ValueError:  # fewer than two sizes past the cache, or timings too noisy
        bandwidth = overhead = None
    return {"fitted_bandwidth": bandwidth, "fitted_overhead_s": overhead,
            "fit_sizes": [r["seq_len"] for r in fitted], "last_level_cache_bytes": cache_bytes}


def measured(rows: list[dict[str, Any]], *keys: str) -> list[dict[str, Any]]:
    """Rows that hold a number for every key (not skipped, not out of memory)."""
    return [r for r in rows if all(isinstance(r.get(k), int | float) for k in keys)]


def where(provenance: dict[str, Any]) -> str:
    """"NVIDIA H200, torch 2.11.0, CUDA 13.0, cuDNN 91002, 2026-12-02" from a provenance."""
    parts = [provenance.get("device_name") or provenance.get("device", "unknown device"),
             f"torch {provenance.get('torch', '?')}"]
    for key, label in (("cuda", "CUDA"), ("cudnn", "cuDNN")):
        if provenance.get(key):
            parts.append(f"{label} {provenance[key]}")
    if provenance.get("git_commit"):
        parts.append(f"commit {provenance['git_commit'][:8]}")
    return ", ".join(parts + [str(provenance.get("date", ""))[:10]])


@dataclass
class Shown:
    """A drawn figure (`figure`) with its caption and the fitted numbers (`fit`); renders as
    HTML (an inline PNG and the caption) in a notebook or a built page."""

    figure: Any
    caption: str
    fit: dict[str, Any] = field(default_factory=dict)

    def _repr_html_(self) -> str:
        buf = io.BytesIO()
        self.figure.savefig(buf, format="png", dpi=110)
        png = base64.b64encode(buf.getvalue()).decode()
        text = html.escape(self.caption)
        return (f'<figure><img src="data:image/png;base64,{png}" alt="{text}" '
                f'style="max-width:100%"/><figcaption>{text}</figcaption></figure>')


@dataclass
class Sentence:
    """The one sentence shown when there is nothing to draw."""

    text: str

    def _repr_markdown_(self) -> str:
        return self.text

    def __str__(self) -> str:
        return self.text


# --- one view per experiment: draw on `ax`, return (caption, fitted numbers) ----------------

def _rate(rows: list[dict], work: str, seconds: str) -> float:
    return sum(r[work] for r in rows) / sum(r[seconds] for r in rows)


def _loglog(ax, xlabel: str, ylabel: str) -> None:
    ax.set(xscale="log", yscale="log", xlabel=xlabel, ylabel=ylabel)
    ax.legend(fontsize=8)


def _crossover(ax, run: dict, model: Callable | None) -> tuple[str, dict]:
    rows, s = measured(run["rows"], "t_linear", "t_attention"), run["summary"]
    x = [r["seq_len"] for r in rows]
    fit = {}
    for part, color in (("linear", "C0"), ("attention", "C1")):
        rate = _rate(rows, f"flops_{part}", f"t_{part}")
        fit[f"rate_{part}"] = rate
        fit[f"mfu_{part}"] = rate / s["peak_flops"] if s.get("peak_flops") else None
        ax.plot(x, [r[f"t_{part}"] for r in rows], "o", color=color, label=f"{part}, measured")
        line = model or (lambda r, p=part, k=rate: r[f"flops_{p}"] / k)
        ax.plot(x, [line(r) for r in rows], "-", color=color, alpha=0.6,
                label=f"{part}: lclib FLOPs / fitted rate")
    _loglog(ax, "tokens in the prefill", "seconds (one layer)")
    if fit["mfu_linear"] is not None:
        rates = "fitted MFU " + ", ".join(f"{p} {fit[f'mfu_{p}']:.2f}"
                                          for p in ("linear", "attention"))
    else:  # no datasheet peak for this device
        rates = "fitted rate " + ", ".join(f"{p} {fit[f'rate_{p}'] / 1e12:.3g} TFLOP/s"
                                           for p in ("linear", "attention"))
    backend = rows[-1].get("backend", "?") if rows else "?"
    crossing = s.get("crossover_measured")
    return (f"{rates} (attention kernel {backend}); crossover measured at "
            f"{f'{crossing:,.0f}' if crossing else 'none in range'} tokens, predicted "
            f"{s.get('crossover_predicted', float('nan')):,.0f}", fit)


def _decode(ax, run: dict, model: Callable | None) -> tuple[str, dict]:
    rows, s = measured(run["rows"], "t_step", "kv_bytes"), run["summary"]
    refit = fit_past_cache(rows, s.get("last_level_cache_bytes"))
    bw, t0 = refit["fitted_bandwidth"], refit["fitted_overhead_s"] or 0.0
    fitted = set(refit["fit_sizes"])
    x = [r["seq_len"] for r in rows]
    ax.plot([r["seq_len"] for r in rows if r["seq_len"] in fitted],
            [r["t_step"] for r in rows if r["seq_len"] in fitted], "o", label="measured")
    ax.plot([r["seq_len"] for r in rows if r["seq_len"] not in fitted],
            [r["t_step"] for r in rows if r["seq_len"] not in fitted], "o", mfc="none",
            color="C0", label="measured, K/V in the last-level cache (not fitted)")
    line = model or (lambda r: t0 + r["kv_bytes"] / bw if bw else None)
    if bw or model:
        ax.plot(x, [line(r) for r in rows], "-", color="C1",
                label="lclib: KV bytes / fitted bandwidth")
    _loglog(ax, "cached tokens", "seconds (one layer's decode attention)")
    hbm = s.get("hbm_bandwidth")
    fit = {"bandwidth": bw, "overhead_s": t0, "fraction": bw / hbm if bw and hbm else None}
    if not bw:
        return "too few sizes past the cache to fit a bandwidth", fit
    frac = f" = {fit['fraction']:.0%} of {hbm / 1e12:.2f} TB/s HBM" if fit["fraction"] else ""
    return f"fitted {bw / 1e9:,.1f} GB/s of KV{frac}, fixed {t0 * 1e6:.0f} µs", fit


def _fp8_decode(ax, run: dict, model: Callable | None) -> tuple[str, dict]:
    rows, s = measured(run["rows"], "t_sdpa", "t_fp8"), run["summary"]
    x = [r["seq_len"] for r in rows]
    bw = _rate(rows, "bytes_base", "t_sdpa") if rows else None
    for key, label in (("t_sdpa", "bf16, SDPA"), ("t_base", "bf16, compiled"),
                       ("t_fp8", "e4m3, compiled"), ("t_triton_fp8", "e4m3, Triton")):
        if any(key in r for r in rows):
            ax.plot([r["seq_len"] for r in rows if key in r], [r[key] for r in rows if key in r],
                    "o", label=label)
    for nbytes, label in (("bytes_base", "bf16"), ("bytes_fp8", "e4m3")):
        line = model or (lambda r, b=nbytes: r[b] / bw)
        ax.plot(x, [line(r) for r in rows], "-", alpha=0.6,
                label=f"lclib: {label} bytes / SDPA's bandwidth")
    _loglog(ax, "cached tokens", "seconds (one layer's decode attention)")
    peak = s.get("hbm_peak")
    fit = {"bandwidth": bw, "fraction": bw / peak if bw and peak else None,
           "time_ratio": rows[-1]["time_ratio_vs_sdpa"] if rows else None}
    frac = f" ({fit['fraction']:.0%} of HBM)" if fit["fraction"] else ""
    return (f"SDPA bf16 reads {bw / 1e9:,.1f} GB/s{frac}; at {x[-1]:,} tokens the best e4m3 "
            f"kernel takes {fit['time_ratio']:.2f}x its time for "
            f"{rows[-1]['bytes_fp8'] / rows[-1]['bytes_base']:.2f}x the bytes", fit)


def _ring(ax, run: dict, model: Callable | None) -> tuple[str, dict]:
    rows = measured(run["rows"], "t_sdpa", "t_ring")
    x = [r["seq_len"] for r in rows]
    rate = _rate(rows, "flops", "t_sdpa")
    ax.plot(x, [r["t_sdpa"] for r in rows], "o",
            label=f"one SDPA call ({rows[-1]['backend_sdpa']})")
    ax.plot(x, [r["t_ring"] for r in rows], "s",
            label=f"ring, {run['summary'].get('world_size')} ranks in turn")
    line = model or (lambda r: r["flops"] / rate)
    ax.plot(x, [line(r) for r in rows], "-", alpha=0.6, label="lclib FLOPs / SDPA's rate")
    _loglog(ax, "tokens", "seconds (attention core)")
    return (f"ring / SDPA throughput {rows[-1]['throughput_ratio']:.2f} at {x[-1]:,} tokens, "
            f"max |ring - SDPA| {max(r['max_abs_err'] for r in rows):.1e}",
            {"rate": rate, "throughput_ratio": rows[-1]["throughput_ratio"]})


def _prefix_reuse(ax, run: dict, model: Callable | None) -> tuple[str, dict]:
    rows = measured(run["rows"], "speedup")
    x = [r["doc_tokens"] for r in rows]
    ax.plot(x, [r["speedup"] for r in rows], "o", label="measured (median of runs)")
    line = model or (lambda r: r["predicted_prefill_speedup"])
    ax.plot(x, [line(r) for r in rows], "-", label="lclib: prefill work saved")
    ax.set(xscale="log", xlabel="document tokens", ylabel="reuse speed-up (x)")
    ax.legend(fontsize=8)
    return (f"speed-up {rows[-1]['speedup']:.1f}x measured vs "
            f"{rows[-1]['predicted_prefill_speedup']:.1f}x predicted", {})


def _rope(ax, run: dict, model: Callable | None) -> tuple[str, dict]:
    rows = measured(run["rows"], "multiple", "accuracy")
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == method]
        ax.plot([r["multiple"] for r in mine], [r["accuracy"] for r in mine], "o-", label=method)
    ax.set(xscale="log", xlabel="length / training length", ylabel="needle accuracy")
    ax.legend(fontsize=8)
    return "accuracy only: lclib has no cost-model line for it", {}


def _niah(ax, run: dict, model: Callable | None) -> tuple[str, dict]:
    s = run["summary"]
    for i, (task, rep) in enumerate(s.get("tasks", {}).items()):
        ax.plot(s["lengths"], rep["accuracy"], "o-", color=f"C{i}", label=f"{task}, bf16 KV")
        for name, delta in rep["delta"].items():
            ax.plot(s["lengths"], [a + d for a, d in zip(rep["accuracy"], delta, strict=True)],
                    ":", color=f"C{i}", alpha=0.6, label=f"{task}, {name}")
    ax.set(xscale="log", xlabel="context tokens", ylabel="accuracy")
    ax.legend(fontsize=6, ncol=2)
    return f"{s.get('n_samples')} samples per depth; dotted: candidates", {}


VIEWS = {"crossover": _crossover, "decode": _decode, "fp8_decode": _fp8_decode, "ring": _ring,
         "prefix_reuse": _prefix_reuse, "rope": _rope, "niah": _niah}
COMMANDS = {"niah": "niah --device cuda", "prefix_reuse": "prefix_reuse --device cuda",
            "rope": "rope --device cuda"}


def _has_data(run: dict) -> bool:
    return any("skipped" not in r and "error" not in r for r in run["rows"]) or bool(
        run["summary"].get("tasks"))


def show(experiment: str, model: Callable[[dict], float] | None = None,
         directory: str | Path = DIRECTORY) -> Shown | Sentence:
    """The latest run of `experiment` drawn against lclib's line, or one sentence if none.

    `model(row) -> seconds` replaces lclib's line (the default is the experiment's own: FLOPs
    or bytes over the rate fitted to the measured points).
    """
    if experiment not in VIEWS:
        raise ValueError(f"no view for {experiment!r}; pass one of {', '.join(VIEWS)}")
    found = [r for r in runs(experiment, directory) if _has_data(r)]
    command = COMMANDS.get(experiment, "device-run")
    if not found:
        return Sentence(f"No GPU measurements of `{experiment}` yet in `book/{DIRECTORY}/`: "
                        f"`python -m lclib.bench {command}` writes them there.")
    import matplotlib.pyplot as plt

    run = max(found, key=lambda r: str(r["header"].get("provenance", {}).get("date", "")))
    fig, ax = plt.subplots(figsize=(6.5, 3.6), layout="constrained")
    caption, fit = VIEWS[experiment](ax, run, model)
    plt.close(fig)  # shown once, by Shown's HTML
    prov = run["header"].get("provenance", {})
    return Shown(fig, f"{experiment} on {where(prov)} ({run['file']}): {caption}.", fit)
