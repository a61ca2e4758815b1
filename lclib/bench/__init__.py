"""GPU-scalable benchmarks: `python -m lclib.bench <experiment> --device cuda --sizes ...`.

Each experiment runs tiny on a CPU (the tests do) and at full size on a GPU, and writes JSON
Lines with provenance (device, torch/CUDA/cuDNN versions, git commit, clocks, date, inputs,
one line per timing) under `--out` (default `$OUT`, else `book/data/measurements/`), where
the chapters plot it against lclib's model (`lclib.measurements.show`).
`python -m lclib.bench device-run` runs the course's GPU measurements in one budgeted go.
"""

from .core import EXPERIMENTS, Run, discover, experiment, provenance, run_experiment, time_op

__all__ = ["EXPERIMENTS", "Run", "discover", "experiment", "provenance", "run_experiment",
           "time_op"]
