"""Chapter 6's explorer: what YaRN, PI and dynamic NTK do to each RoPE frequency."""

from __future__ import annotations

from functools import lru_cache

from ..explorer import Explorer, Line, Readout, Slider
from ..rope import correction_range, inv_freq, ntk_base, per_dimension
from ..units import fmt_tokens

HEAD_DIM, THETA = 128, 1_000_000.0  # Qwen2.5-72B's config.json
FACTORS = (2.0, 4.0, 8.0, 16.0, 32.0)
BETA_FAST, BETA_SLOW = (8.0, 16.0, 32.0, 64.0), (0.5, 1.0, 2.0)
ORIGINALS = (4096, 8192, 32768, 131072)


@lru_cache(maxsize=512)
def _yarn(factor: float, beta_fast: float, beta_slow: float, original: int) -> tuple:
    scaling = {"rope_type": "yarn", "factor": factor, "beta_fast": beta_fast,
               "beta_slow": beta_slow, "original_max_position_embeddings": original}
    rows = per_dimension(HEAD_DIM, THETA, scaling)
    return rows, inv_freq(HEAD_DIM, THETA, scaling)[1], correction_range(
        HEAD_DIM, THETA, original, beta_fast, beta_slow)


def rope_point(pair: int, factor: float, beta_fast: float, beta_slow: float,
               original: int) -> dict[str, float | str]:
    """Dimension pair `pair` of a head_dim-128, theta-1e6 RoPE scaled `factor`× from `original`:
    its frequency ratio (scaled / original) under YaRN, PI and NTK-aware scaling (transformers'
    "dynamic" with factor 1 at s × original tokens: base·s^(d/(d−2))), and YaRN's numbers."""
    rows, attention, (low, high) = _yarn(factor, beta_fast, beta_slow, original)
    ntk = (THETA / ntk_base(HEAD_DIM, THETA, 1.0, original, round(factor * original))) ** (
        2 * pair / HEAD_DIM)
    counts = ", ".join(f"{rows['treatment'].count(t)} {t}"
                       for t in ("extrapolated", "ramp", "interpolated"))
    return {"yarn": rows["ratio"][pair], "pi": 1 / factor, "ntk": ntk,
            "turns": rows["turns"][pair], "fast": beta_fast, "slow": beta_slow,
            "attention": attention, "range": f"pairs {low} to {high} (of 0–{HEAD_DIM // 2 - 1}); "
                                             f"{counts}",
            "this_pair": f"wavelength {rows['wavelength'][pair]:,.0f} tokens, "
                         f"{rows['turns'][pair]:,.3g} turns in {fmt_tokens(original)}: "
                         f"{rows['treatment'][pair]}"}


def rope_explorer() -> Explorer:
    """Drag the scale factor, beta_fast/beta_slow and the original length: per-pair frequency
    ratios of YaRN against PI and dynamic NTK, and YaRN's attention factor."""
    pairs = tuple(range(HEAD_DIM // 2))
    return Explorer(
        compute=rope_point,
        title=f"RoPE scaling per dimension pair (head_dim {HEAD_DIM}, theta {THETA:,.0f})",
        controls=[Slider("pair", "dimension pair i (0 = fastest)", pairs, fmt=str, default=32),
                  Slider("factor", "scale factor s", FACTORS, fmt="{:g}×".format, default=4.0),
                  Slider("beta_fast", "beta_fast (turns)", BETA_FAST, fmt="{:g}".format,
                         default=32.0),
                  Slider("beta_slow", "beta_slow (turns)", BETA_SLOW, fmt="{:g}".format,
                         default=1.0),
                  Slider("original", "original context (tokens)", ORIGINALS, fmt=fmt_tokens,
                         default=32768)],
        views=[Line(x="pair", y=["yarn", "pi", "ntk"],
                    labels=["YaRN", "PI (linear)", "NTK-aware (base × s^(d/(d−2)))"],
                    title="Frequency kept (1) or divided by s, per pair",
                    y_label="scaled / original frequency", log_y=True, y_fmt="{:.3g}".format),
               Line(x="pair", y=["turns", "fast", "slow"],
                    labels=["turns within the original context", "beta_fast", "beta_slow"],
                    title="YaRN's rule: count each pair's turns", y_label="turns", log_y=True,
                    y_fmt="{:,.3g}".format)],
        readouts=[Readout("attention", "YaRN attention factor (multiplies cos and sin)",
                          "{:.4f}".format),
                  Readout("range", "YaRN ramp (correction range)"),
                  Readout("this_pair", "this pair")],
    )
