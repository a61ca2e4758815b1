"""Chapter 7's explorer: one request's KV under a compression scheme, against the GPUs' HBM.

Each family is one direction of Yao Fu's four with one knob, four settings from mild to harsh;
`lclib.compression` computes the bytes, `lclib.kv_budget` the room beside the weights.
"""

from __future__ import annotations

from collections.abc import Callable

from ..compression import KVScheme, decode_step_time, scheme_bytes, users_that_fit
from ..cost import kv_budget
from ..explorer import Dropdown, Explorer, Line, Readout, Slider
from ..units import GB, fmt_seconds, fmt_tokens
from .parts import context_slider

LEVELS = (1, 2, 3, 4)
MODELS = ("llama-3.1-8b", "llama-3.3-70b", "qwen2.5-72b", "yi-34b")
GPU = "h200"
N_GPUS = (1, 8)
GROUPED = dict(group=32, scale_bytes=4)  # fp16 scale + zero point per 32 elements (KIVI)

# family -> (knob label, the knob's four settings, scheme for a setting)
FAMILIES: dict[str, tuple[str, tuple, Callable[[object], KVScheme]]] = {
    "layer: share K/V across adjacent layers (CLA)": (
        "layers per shared cache", (1, 2, 4, 8),
        lambda v: KVScheme(f"cla{v}", "layer", layer_share=v)),
    "layer: hybrid stack, attention in 1 of k layers": (
        "k", (2, 4, 8, 16), lambda v: KVScheme(f"hybrid-1:{v}", "layer",
                                              attention_fraction=1 / v)),
    "head: fewer KV heads (GQA to MQA)": (
        "KV heads", (8, 4, 2, 1), lambda v: KVScheme(f"kv{v}", "head", kv_heads=v)),
    "head: latent cache per token and layer (MLA)": (
        "elements", (1024, 576, 256, 128), lambda v: KVScheme(f"latent{v}", "head", latent=v)),
    "token: sliding window on every layer": (
        "window", (16384, 8192, 4096, 1024),
        lambda v: KVScheme(f"swa{v}", "token", local_fraction=1.0, window=v)),
    "token: 5 local : 1 global layers": (
        "local window", (8192, 4096, 1024, 512),
        lambda v: KVScheme(f"5:1-{v}", "token", local_fraction=5 / 6, window=v)),
    "token: keep a fixed budget per head (SnapKV-style)": (
        "tokens kept", (16384, 8192, 4096, 1024),
        lambda v: KVScheme(f"budget{v}", "token", max_tokens=v)),
    "hidden: INT-n K/V with group scales": (
        "bits", (8, 4, 3, 2), lambda v: KVScheme(f"int{v}", "hidden", bits=v, **GROUPED)),
}


def family_scheme(family: str, level: int) -> tuple[str, KVScheme]:
    """(the setting in words, its scheme) for `family` at `level` (1 = mild ... 4 = harsh)."""
    if family not in FAMILIES or level not in LEVELS:
        raise ValueError(f"pass a family of {list(FAMILIES)} and a level in {LEVELS}")
    label, settings, make = FAMILIES[family]
    value = settings[level - 1]
    shown = fmt_tokens(value) if family.startswith("token") else f"{value:,}"
    return f"{label}: {shown}", make(value)


def compression_point(seq_len: int, model: str, family: str, level: int,
                      n_gpus: int) -> dict[str, float | int | str]:
    """KV per request (compressed and full), the KV budget, users that fit, decode step."""
    setting, scheme = family_scheme(family, level)
    out: dict[str, float | int | str] = {
        "setting": setting, "budget_gb": kv_budget(model, GPU, n_gpus) / GB}
    for key, s in (("", scheme), ("_full", "full")):
        out[f"kv_gb{key}"] = scheme_bytes(model, seq_len, s) / GB
        out[f"users{key}"] = users_that_fit(model, GPU, seq_len, s, n_gpus)
        out[f"tpot{key}"] = decode_step_time(model, GPU, seq_len, s, n_gpus=n_gpus)
    return out


def compression_explorer(steps: int = 11) -> Explorer:
    """Context, model, scheme family and setting, GPUs -> KV per request vs HBM, users, TPOT."""
    return Explorer(
        compute=compression_point,
        title=f"Shrinking the KV: one request against the room left on {GPU.upper()}s",
        controls=[context_slider(steps), Dropdown("model", "model", list(MODELS)),
                  Dropdown("family", "scheme", list(FAMILIES)),
                  Slider("level", "setting (1 mild … 4 harsh)", LEVELS, fmt=str, default=2),
                  Slider("n_gpus", "GPUs (tensor parallel)", N_GPUS, fmt=str, default=8)],
        views=[Line(x="seq_len", y=["kv_gb_full", "kv_gb"], labels=["full cache", "compressed"],
                    title="KV cache of one request", y_label="GB (10^9 bytes)", log_y=True,
                    capacity="budget_gb", capacity_label="HBM left beside the weights"),
               Line(x="seq_len", y=["tpot_full", "tpot"], labels=["full cache", "compressed"],
                    title="Memory-bound decode step, batch 1", y_label="seconds per token",
                    log_y=True, y_fmt=fmt_seconds)],
        readouts=[Readout("setting", "setting", str),
                  Readout("kv_gb", "KV per request, compressed", "{:.3g} GB".format),
                  Readout("users", "requests that fit, compressed", str),
                  Readout("users_full", "requests that fit, full cache", str),
                  Readout("tpot", "decode step, compressed", fmt_seconds)],
    )
