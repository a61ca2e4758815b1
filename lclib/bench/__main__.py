"""Command line: python -m lclib.bench <experiment> [--device cuda] [--sizes 4096 8192 ...]."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .core import MEASUREMENTS, discover, run_experiment


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lclib.bench", description=__doc__)
    parser.add_argument("experiment", choices=sorted(discover()))
    parser.add_argument("--device", default="cpu", help="cpu, cuda, or cuda:N")
    parser.add_argument("--sizes", type=int, nargs="+", help="sequence lengths (tokens)")
    parser.add_argument("--dtype", default=None, help="fp32 (CPU default) or bf16 (GPU default)")
    parser.add_argument("--out", type=Path, default=MEASUREMENTS, help="folder for the JSON")
    args = parser.parse_args(argv)
    dtype = args.dtype or ("fp32" if args.device == "cpu" else "bf16")
    try:
        record = run_experiment(args.experiment, args.device, args.sizes, dtype, args.out)
    except ValueError as err:
        parser.error(str(err))
    summary = {k: v for k, v in record.items() if k != "rows"}
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
