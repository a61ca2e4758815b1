"""A tiny Llama-style model, trained here on retrieval tasks, for the course's torch demos.

    from lclib import tinylm
    model = tinylm.load()                       # the committed checkpoint, on the CPU
    logits, cache = model.prefill(tokens)       # tokens [B, T]; cache.nbytes == kv_cache_bytes
    next_logits = model.decode(next_token, cache)
    tinylm.evaluate(model, "single_needle", lengths=(256, 512, 1024))

Train a new one with ``python -m lclib.tinylm train`` (minutes on a CPU).
"""

from .model import (
    KV_CODECS,
    KVCache,
    KVCodec,
    TinyLM,
    get_kv_codec,
    plain_inv_freq,
    register_kv_codec,
)
from .tasks import TASKS, Accuracy, Sample, evaluate, get_task
from .training import CHECKPOINT, CONFIG, load, save, train

__all__ = [
    "CHECKPOINT", "CONFIG", "KV_CODECS", "TASKS", "Accuracy", "KVCache", "KVCodec", "Sample",
    "TinyLM", "evaluate", "get_kv_codec", "get_task", "load", "plain_inv_freq",
    "register_kv_codec", "save", "train",
]
