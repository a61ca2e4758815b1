"""Graded exercises with otter-grader: build them from solutions/, grade a folder to one CSV.

    python -m lclib.grading assign [CHAPTER ...] [--no-run-tests]
    python -m lclib.grading grade SUBMISSIONS [--out grades.csv] [--timeout 120] [--jobs 2]

`assign` runs ``otter assign`` on every master notebook ``solutions/<chapter>/*.ipynb``. It writes
the student notebook to ``exercises/<chapter>/`` (outputs stripped, cell ids renumbered, so the
result is deterministic) and the autograder to ``_build/autograder/<chapter>/<name>-autograder.zip``
(``<name>`` is the assignment name from the master's config cell).

`grade` grades each ``.ipynb`` of a folder with ``otter run`` (no containers) in its own process
with a time limit, picks the autograder by the notebook's ``otter.assignment_name`` metadata, and
writes one CSV: a row per notebook, points per question, total, percent and an error column. A
notebook that raises, loops or is not a notebook still gets a row; the batch goes on.

Not imported by ``import lclib``: otter is slow to import and only instructors need it.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

SOLUTIONS, EXERCISES, BUILD = Path("solutions"), Path("exercises"), Path("_build/autograder")
ZIP_SUFFIX = "-autograder.zip"
# jsonschema imports rfc3987_syntax, which compiles a grammar for ~4 s on every start of otter and
# of each grading kernel. nbformat never validates IRIs, so the grading processes see a stub.
_STUB = 'raise ImportError("rfc3987_syntax is stubbed out by lclib.grading (import time)")\n'


# --- assign ------------------------------------------------------------------------------------

def masters(solutions: Path = SOLUTIONS, chapters: Sequence[str] = ()) -> list[Path]:
    """Master notebooks ``solutions/<chapter>/*.ipynb``, for the given chapters or all of them."""
    if not solutions.is_dir():
        raise ValueError(f"no solutions folder {solutions}; pass the folder of master notebooks")
    dirs = [solutions / c for c in chapters] or sorted(
        p for p in solutions.iterdir() if p.is_dir() and not p.name.startswith("."))
    missing = [d.name for d in dirs if not d.is_dir()]
    if missing:
        known = ", ".join(sorted(p.name for p in solutions.iterdir() if p.is_dir()))
        raise ValueError(f"no chapter {', '.join(missing)} in {solutions}; pass one of {known}")
    found = [nb for d in dirs for nb in sorted(d.glob("*.ipynb"))]
    if not found:
        raise ValueError(f"no master notebooks (*.ipynb) in {solutions}/<chapter>/")
    return found


def assign(solutions: Path = SOLUTIONS, exercises: Path = EXERCISES, build: Path = BUILD,
           chapters: Sequence[str] = (), run_tests: bool = True) -> list[Path]:
    """Regenerate the student notebooks and autograder zips; return the files written.

    With `run_tests`, otter also checks that each master's solutions pass all its tests. Each
    chapter's folders are replaced only once all of its masters have been built.
    """
    todo = masters(solutions, chapters)
    with tempfile.TemporaryDirectory() as tmp:
        stage, env = Path(tmp), _otter_env(Path(tmp))
        for master in todo:
            _assign_one(master, stage / "out" / master.parent.name / master.stem,
                        stage / "exercises", stage / "build", env, run_tests)
        written = []
        for chapter in sorted({nb.parent.name for nb in todo}):
            for staged, final in ((stage / "exercises", exercises), (stage / "build", build)):
                shutil.rmtree(final / chapter, ignore_errors=True)
                shutil.copytree(staged / chapter, final / chapter)
                written += sorted(p for p in (final / chapter).rglob("*") if p.is_file())
    return written


def _assign_one(master: Path, out: Path, exercises: Path, build: Path, env: dict[str, str],
                run_tests: bool) -> None:
    """Run ``otter assign`` on one master; put its student files and autograder zip in place."""
    cmd = [sys.executable, "-m", "otter", "assign", "--no-pdfs", str(master.resolve()), str(out)]
    if not run_tests:
        cmd.insert(4, "--no-run-tests")
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"otter assign failed on {master}:\n{proc.stdout}{proc.stderr}")
    chapter = master.parent.name
    for src in sorted(p for p in (out / "student").rglob("*") if p.is_file()):
        dest = exercises / chapter / src.relative_to(out / "student")
        dest.parent.mkdir(parents=True, exist_ok=True)
        if src.suffix == ".ipynb":
            nbformat.write(normalized(nbformat.read(src, as_version=4)), dest)
        else:
            shutil.copyfile(src, dest)
    name = nbformat.read(out / "student" / master.name, as_version=4).metadata.otter.assignment_name
    if name != master.stem:  # grading names each submission <name>.ipynb, as its init cell wants
        raise ValueError(f"{master}: its config says name: {name}; rename the file {name}.ipynb "
                         f"or set name: {master.stem}")
    (zip_src,) = (out / "autograder").glob("*.zip")
    (build / chapter).mkdir(parents=True, exist_ok=True)
    shutil.copyfile(zip_src, build / chapter / f"{name}{ZIP_SUFFIX}")


def normalized(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The notebook without outputs, with cell ids ``cell-00``, ``cell-01``, ... (deterministic)."""
    for i, cell in enumerate(nb.cells):
        cell.id = f"cell-{i:02d}"
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    return nb


def _otter_env(tmp: Path) -> dict[str, str]:
    """Environment for otter and its kernels: the import-time stub first, then this lclib."""
    (tmp / "rfc3987_syntax.py").write_text(_STUB)
    lclib_root = str(Path(__file__).resolve().parents[1])
    path = [str(tmp), lclib_root, *filter(None, [os.environ.get("PYTHONPATH")])]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(path)}


# --- grade -------------------------------------------------------------------------------------

@dataclass
class Row:
    """The grade of one submission; `scores` maps question -> (points, possible)."""

    file: str
    assignment: str = ""
    scores: dict[str, tuple[float, float]] = field(default_factory=dict)
    error: str = ""
    seconds: float = 0.0

    @property
    def total(self) -> float:
        return sum(s for s, _ in self.scores.values())

    @property
    def possible(self) -> float:
        return sum(p for _, p in self.scores.values())


def autograders(build: Path = BUILD) -> dict[str, Path]:
    """Assignment name -> autograder zip, from ``<build>/<chapter>/<name>-autograder.zip``."""
    zips = {z.name.removesuffix(ZIP_SUFFIX): z for z in sorted(build.glob(f"*/*{ZIP_SUFFIX}"))}
    if not zips:
        raise ValueError(f"no autograder zips under {build}; run `make exercises` first")
    return zips


def submissions(folder: Path) -> list[Path]:
    """The ``.ipynb`` files directly in `folder` (ValueError if none)."""
    if not folder.is_dir():
        raise ValueError(f"submissions folder {folder} does not exist; pass the folder that "
                         "holds the students' .ipynb files, e.g. SUBMISSIONS=submissions/")
    found = sorted(folder.glob("*.ipynb"))
    if not found:
        raise ValueError(f"no .ipynb files in {folder}; pass the folder of collected notebooks")
    return found


def grade(folder: Path, out: Path | None = None, build: Path = BUILD, timeout: float = 120,
          jobs: int = 2, progress: bool = False) -> list[Row]:
    """Grade every notebook in `folder` (in `jobs` parallel processes); write the CSV to `out`."""
    if timeout <= 0 or jobs < 1:
        raise ValueError(f"pass timeout > 0 and jobs >= 1, got timeout={timeout}, jobs={jobs}")
    notebooks, zips = submissions(folder), autograders(build)
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(jobs) as pool:
        env = _otter_env(Path(tmp))
        rows = list(pool.map(lambda nb: _timed(nb, zips, timeout, env, progress), notebooks))
    if out is not None:
        write_csv(rows, out)
    return rows


def _timed(nb: Path, zips: dict[str, Path], timeout: float, env: dict[str, str],
           progress: bool) -> Row:
    start = time.perf_counter()
    try:
        row = grade_one(nb, zips, timeout, env)
    except Exception as e:  # never lose a submission: an unexpected failure is its error
        row = Row(nb.name, error=f"grading failed: {type(e).__name__}: {e}")
    row.seconds = time.perf_counter() - start
    if progress:
        status = row.error or f"{row.total:g} / {row.possible:g}"
        print(f"{nb.name}: {status} ({row.seconds:.1f} s)", file=sys.stderr, flush=True)
    return row


def grade_one(nb: Path, zips: dict[str, Path], timeout: float, env: dict[str, str]) -> Row:
    """Grade one notebook in a child process; any failure becomes the row's error."""
    row = Row(nb.name)
    try:
        meta = nbformat.read(nb, as_version=4).metadata
    except Exception as e:  # nbformat raises JSON, validation and encoding errors alike
        row.error = f"not a readable notebook: {type(e).__name__}: {e}"[:300]
        return row
    row.assignment = meta.get("otter", {}).get("assignment_name", "")
    if row.assignment not in zips:
        row.error = (f"no autograder for assignment {row.assignment!r}; known: "
                     f"{', '.join(zips)} (was it handed out from exercises/?)")
        return row
    cmd = [sys.executable, "-m", "lclib.grading", "run-one", str(zips[row.assignment]), str(nb)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the kernel notices its parent is gone and exits
        proc.communicate()
        row.error = f"timed out after {timeout:g} s (an endless loop?); not graded"
        return row
    if proc.returncode:
        last = stderr.strip().splitlines()[-1:] or [f"exit status {proc.returncode}"]
        row.error = f"otter failed: {last[0]}"
        return row
    result = json.loads(stdout.strip().splitlines()[-1])
    row.scores = {q: tuple(s) for q, s in result["scores"].items()}
    row.error = result["error"]
    return row


def run_one(autograder: Path, notebook: Path) -> dict[str, object]:
    """Grade one notebook with ``otter run`` in this process: scores and first cell error.

    The notebook is graded as ``<assignment>.ipynb``, the file its ``otter.Notebook`` cell opens,
    whatever the student renamed it to.
    """
    import otter.run

    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(sys.stderr):
        copy = Path(tmp) / f"{autograder.name.removesuffix(ZIP_SUFFIX)}.ipynb"
        shutil.copyfile(notebook, copy)
        results = otter.run.main(str(copy), autograder=str(autograder), output_dir=None,
                                 no_logo=True)
    scores = {name: (tf.score, tf.possible) for name, tf in results.results.items()}
    return {"scores": scores, "error": first_error(results.notebook.cells)}


def first_error(cells: Iterable[nbformat.NotebookNode]) -> str:
    """``'<Error>: <message> (in the cell starting "<line>")'`` for the first failing cell."""
    for cell in cells:
        for out in cell.get("outputs", []):
            if out.output_type == "error":
                line = cell.source.strip().splitlines()[0][:60] if cell.source.strip() else ""
                return f'{out.ename}: {out.evalue} (in the cell starting "{line}")'[:300]
    return ""


def write_csv(rows: Sequence[Row], out: Path) -> None:
    """One row per submission: file, assignment, a column per question, total, possible,
    percent, seconds, error. Unknown scores (the notebook could not be graded) are left empty."""
    questions = list(dict.fromkeys(q for r in rows for q in r.scores))
    header = ["file", "assignment", *questions, "total", "possible", "percent", "seconds", "error"]
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for r in rows:
            points = [f"{r.scores[q][0]:g}" if q in r.scores else "" for q in questions]
            percent = f"{100 * r.total / r.possible:.1f}" if r.possible else "0.0"
            possible = f"{r.possible:g}" if r.possible else ""
            writer.writerow([r.file, r.assignment, *points, f"{r.total:g}", possible, percent,
                             f"{r.seconds:.1f}", r.error])


# --- command line ------------------------------------------------------------------------------

def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m lclib.grading", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    a = sub.add_parser("assign", help="regenerate exercises/ and the autograder zips")
    a.add_argument("chapters", nargs="*", help="chapters to build (default: all in solutions/)")
    a.add_argument("--solutions", type=Path, default=SOLUTIONS)
    a.add_argument("--exercises", type=Path, default=EXERCISES)
    a.add_argument("--build", type=Path, default=BUILD, help="where the autograder zips go")
    a.add_argument("--no-run-tests", action="store_true",
                   help="skip otter's check that the solutions pass their own tests")
    g = sub.add_parser("grade", help="grade every .ipynb in a folder into one CSV")
    g.add_argument("submissions", type=Path, help="folder of collected .ipynb files")
    g.add_argument("--out", type=Path, default=Path("grades.csv"))
    g.add_argument("--build", type=Path, default=BUILD, help="where the autograder zips are")
    g.add_argument("--timeout", type=float, default=120, help="seconds per notebook (120)")
    g.add_argument("--jobs", type=int, default=2, help="notebooks graded in parallel (2)")
    r = sub.add_parser("run-one", help="grade one notebook here; print its scores as JSON")
    r.add_argument("autograder", type=Path)
    r.add_argument("notebook", type=Path)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        if args.command == "assign":
            for path in assign(args.solutions, args.exercises, args.build, args.chapters,
                               run_tests=not args.no_run_tests):
                print(path)
        elif args.command == "grade":
            rows = grade(args.submissions, args.out, args.build, args.timeout, args.jobs,
                         progress=True)
            failed = sum(bool(r.error) for r in rows)
            print(f"graded {len(rows)} notebooks ({failed} with errors) in "
                  f"{time.perf_counter() - start:.0f} s -> {args.out}")
        else:
            print(json.dumps(run_one(args.autograder, args.notebook)))
    except ValueError as e:  # bad input: say what to pass
        parser.exit(2, f"{parser.prog}: error: {e}\n")
    except RuntimeError as e:  # otter assign failed, e.g. a solution fails its own tests
        parser.exit(1, f"{parser.prog}: error: {e}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
