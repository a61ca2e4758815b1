"""GPU-scalable benchmarks: `python -m lclib.bench <experiment> --device cuda --sizes ...`.

Each experiment runs tiny on a CPU (the tests do) and at full size on a GPU, and writes
JSON with provenance (device, torch/CUDA versions, date, inputs, timings) under
`book/data/measurements/`, where the chapters plot it against lclib's model.
"""

from .core import EXPERIMENTS, discover, experiment, provenance, run_experiment, time_op

__all__ = ["EXPERIMENTS", "discover", "experiment", "provenance", "run_experiment", "time_op"]
