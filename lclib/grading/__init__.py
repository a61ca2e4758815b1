"""Graded exercises: authored with otter, graded in a sandbox, judged outside it.

    python -m lclib.grading assign [CHAPTER ...] [--no-run-tests]
    python -m lclib.grading grade SUBMISSIONS [--out DIR] [--timeout 120] [--jobs N] ...

`authoring` builds exercises/ and the hidden tests from solutions/ (``make exercises``);
`batch` grades a folder (``make grade``): each notebook runs in `sandbox` (bubblewrap and a
cgroup) through `runner`, which exports its answers as `plain` data; `judge` runs the hidden
tests on them in the grader's own process. `check` is the students' side (``grader.check``).

Not imported by ``import lclib``; the names below load their module on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {"assign": "authoring", "masters": "authoring", "normalized": "authoring",
          "grade": "batch", "grade_one": "batch", "load_specs": "batch", "Row": "batch",
          "submissions": "batch", "main": "__main__"}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f"lclib.grading.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'lclib.grading' has no attribute {name!r}")
