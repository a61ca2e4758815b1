"""Write yarn_reference.json: YaRN inv_freq from Hugging Face transformers itself, for the
chapter 6 exercise's hidden tests (students' environments may lack transformers).

    .venv/bin/python solutions/ch06/make_reference.py

The master notebook's hidden test of question 3 embeds every case but the first (inv_freq to 9
significant digits); tests/test_rope.py checks this file against transformers and the master
against this file.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from transformers import LlamaConfig
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

from lclib.rope import correction_range

CASES = [  # head_dim, rope_theta, factor, original length, beta_fast, beta_slow
    (128, 1_000_000.0, 4.0, 32768, 32, 1),  # Qwen2.5-72B with its model card's YaRN
    (128, 10_000.0, 16.0, 4096, 32, 1),  # a Llama-2-style base, 4K -> 64K
    (64, 500_000.0, 8.0, 8192, 32, 1),
    (128, 5_000_000.0, 2.0, 4096, 16, 2),
    (96, 50_000.0, 32.0, 2048, 64, 0.5),
    (32, 10_000.0, 8.0, 256, 32, 1),  # TinyLM's geometry, trained at 256 tokens
]


def case(head_dim: int, theta: float, factor: float, original: int, fast: float,
         slow: float) -> dict:
    cfg = LlamaConfig(hidden_size=4 * head_dim, num_attention_heads=4, head_dim=head_dim,
                      max_position_embeddings=original, rope_theta=theta,
                      rope_scaling={"rope_type": "yarn", "factor": factor, "beta_fast": fast,
                                    "beta_slow": slow,
                                    "original_max_position_embeddings": original})
    inv_freq, attention = ROPE_INIT_FUNCTIONS["yarn"](cfg, "cpu")
    low, high = correction_range(head_dim, theta, original, fast, slow)
    keep = [1 / theta ** (2 * i / head_dim) for i in range(head_dim // 2)]
    ramp = [(k - f) / (k - k / factor) for k, f in zip(keep, inv_freq.tolist(), strict=True)]
    return {"head_dim": head_dim, "rope_theta": theta, "factor": factor, "original": original,
            "beta_fast": fast, "beta_slow": slow, "low": low, "high": high,
            "n_pairs": head_dim // 2, "ramp": [round(min(max(r, 0.0), 1.0), 6) for r in ramp],
            "inv_freq": inv_freq.tolist(), "attention_factor": attention,
            "attention_factor_check": 1 + 0.1 * math.log(factor)}


if __name__ == "__main__":
    out = Path(__file__).with_name("yarn_reference.json")
    out.write_text(json.dumps([case(*c) for c in CASES], indent=1) + "\n")
    print(f"wrote {out}")
