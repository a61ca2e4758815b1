"""python -m lclib.bench <experiment> [--device cuda] [--sizes 4096 8192 ...] [--out DIR]
python -m lclib.bench device-run [--budget-s 420] [--dry-run] [--out DIR]

Files go to --out, by default $OUT when it is set, else book/data/measurements (relative to
the current directory).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .core import default_out, discover, run_experiment
from .device_run import device_run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lclib.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiment", choices=[*sorted(discover()), "device-run"])
    parser.add_argument("--device", default="cpu", help="cpu, cuda, or cuda:N")
    parser.add_argument("--sizes", type=int, nargs="+", help="sequence lengths (tokens)")
    parser.add_argument("--dtype", default=None, help="fp32 (CPU default) or bf16 (GPU default)")
    parser.add_argument("--backend", default=None,
                        help="force an SDPA backend where the experiment takes one "
                             "(flash, cudnn, efficient, math)")
    parser.add_argument("--budget-s", type=float, default=None, help="time budget (seconds)")
    parser.add_argument("--dry-run", action="store_true",
                        help="device-run: the same steps on the CPU at small sizes")
    parser.add_argument("--options", type=json.loads, default={},
                        help='JSON of experiment options, e.g. \'{"backends": ["flash"]}\'')
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for the output (default $OUT, else book/data/measurements)")
    args = parser.parse_args(argv)
    out = args.out or default_out()
    try:
        if args.experiment == "device-run":
            log = device_run(args.budget_s or 420.0, args.dry_run, out,
                             "cuda" if args.device == "cpu" else args.device)
            print(json.dumps({"elapsed_s": log["elapsed_s"], "dry_run": args.dry_run,
                              "steps": [(s["step"], s["status"]) for s in log["steps"]]}))
            return
        dtype = args.dtype or ("fp32" if args.device == "cpu" else "bf16")
        options = {**args.options, **({"backend": args.backend} if args.backend else {})}
        record = run_experiment(args.experiment, args.device, args.sizes, dtype, out,
                                budget_s=args.budget_s, **options)
    except ValueError as err:
        parser.error(str(err))
    summary = {k: v for k, v in record.items() if k != "rows"}
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
