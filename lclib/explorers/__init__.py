"""The course's explorers, one module per chapter, built on lclib's cost model.

Each explorer has a compute function (one grid point, plain numbers) and a builder
``<topic>_explorer()`` that wires it to controls, charts and readouts (the machinery is
`lclib.explorer`). Display it in a notebook or a book page as ``two_walls_explorer()``;
``two_walls_explorer().widget()`` gives the ipywidgets version for a live kernel.

This face only re-exports the builders, importing a chapter's module when its name is first
used (chapter 5's explorers need torch; the others do not).
"""

from __future__ import annotations

import importlib
from typing import Any

_MODULES = {
    "two_walls_explorer": "two_walls", "two_walls_point": "two_walls",
    "crossover_explorer": "crossover", "crossover_point": "crossover",
    "kv_wall_explorer": "kv_wall",
    "context_parallel_explorer": "context_parallel",
    "amortize_explorer": "prefix",
    "fp8_capacity_explorer": "fp8", "outlier_explorer": "fp8",
    "rope_explorer": "rope",
    "case_study_explorer": "case_study",
    "compression_explorer": "compression", "compression_point": "compression",
}
__all__ = list(_MODULES)


def __getattr__(name: str) -> Any:
    if name not in _MODULES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_MODULES[name]}", __name__), name)
