"""A tiny Llama-style model, trained here on retrieval tasks, for the course's torch demos.

    from lclib import tinylm
    model = tinylm.load()                       # the committed checkpoint, on the CPU
    logits, cache = model.prefill(tokens)       # tokens [B, T]; cache.nbytes == kv_cache_bytes
    next_logits = model.decode(next_token, cache)
    tinylm.evaluate(model, "single_needle", lengths=(256, 512, 1024))
    tinylm.evaluate(tinylm.CachedKV(model, "e4m3-head"))   # through an FP8 cache
    tinylm.export_hf(model, "tinylm-hf")      # a Llama folder for transformers and vLLM

Train a new one with ``python -m lclib.tinylm train`` (minutes on a CPU).
"""

from .export import export_hf
from .kv_codecs import (
    KV_CODECS,
    CachedKV,
    KVCodec,
    get_kv_codec,
    kv_codec,
    register_kv_codec,
    with_outlier_head,
)
from .model import KVCache, TinyLM
from .tasks import TASKS, Accuracy, Sample, evaluate, get_task
from .training import CHECKPOINT, CONFIG, load, save, train

__all__ = [
    "CHECKPOINT", "CONFIG", "KV_CODECS", "TASKS", "Accuracy", "CachedKV", "KVCache", "KVCodec",
    "Sample", "TinyLM", "evaluate", "export_hf", "get_kv_codec", "get_task", "kv_codec", "load",
    "register_kv_codec", "save", "train", "with_outlier_head",
]
