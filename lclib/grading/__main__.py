"""Command line: ``python -m lclib.grading assign|grade`` (see ``--help``)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from lclib.grading import batch, sandbox


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m lclib.grading",
                                description="Build the exercises; grade submissions in a sandbox.")
    sub = p.add_subparsers(dest="command", required=True)
    a = sub.add_parser("assign", help="regenerate exercises/ and the autograder files")
    a.add_argument("chapters", nargs="*", help="chapters to build (default: all in solutions/)")
    a.add_argument("--solutions", type=Path, default=Path("solutions"))
    a.add_argument("--exercises", type=Path, default=Path("exercises"))
    a.add_argument("--build", type=Path, default=batch.BUILD, help="where the autograder goes")
    a.add_argument("--no-run-tests", action="store_true",
                   help="skip otter's check that the solutions pass their own tests")
    g = sub.add_parser("grade", help="grade every .ipynb in a folder (sandboxed)")
    g.add_argument("submissions", type=Path, help="folder of collected .ipynb files")
    g.add_argument("--out", type=Path, default=Path("grades"),
                   help="new folder for grades.csv, feedback/, summary.md, exports (grades)")
    g.add_argument("--build", type=Path, default=batch.BUILD, help="where the autograder is")
    g.add_argument("--timeout", type=float, default=120, help="seconds per notebook (120)")
    g.add_argument("--jobs", type=int, default=None, help="notebooks in parallel (the cores)")
    g.add_argument("--id-pattern", default=batch.ID_PATTERN,
                   help="regex on the file name; group 'id' is the student ID")
    g.add_argument("--memory-gb", type=float, default=2.0, help="memory per notebook (2 GB)")
    g.add_argument("--pids", type=int, default=256, help="processes per notebook (256)")
    g.add_argument("--unsafe-no-sandbox", action="store_true",
                   help=f"grade without bubblewrap and cgroups: {sandbox.UNSAFE_LOSES}")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        if args.command == "assign":
            from lclib.grading import authoring  # imports nbformat and otter's tools (slow)

            for path in authoring.assign(args.solutions, args.exercises, args.build,
                                         args.chapters, run_tests=not args.no_run_tests):
                print(path)
            return 0
        limits = sandbox.Limits(int(args.memory_gb * 1e9), args.pids)
        rows = batch.grade(args.submissions, args.out, args.build, args.timeout, args.jobs,
                           args.id_pattern, limits, args.unsafe_no_sandbox, progress=True)
        failed = sum(r.status != "graded" for r in rows)
        print(f"graded {len(rows)} notebooks ({failed} not fully graded) in "
              f"{time.perf_counter() - start:.0f} s -> {args.out}{os.sep}grades.csv")
    except ValueError as e:  # bad input: say what to pass
        parser.exit(2, f"{parser.prog}: error: {e}\n")
    except RuntimeError as e:  # no sandbox, or otter assign failed
        parser.exit(1, f"{parser.prog}: error: {e}\n")
    except KeyboardInterrupt:  # the rows graded so far are in the CSV already
        parser.exit(130, f"{parser.prog}: interrupted\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
