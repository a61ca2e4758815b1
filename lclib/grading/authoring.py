"""Authoring: build exercises/ and the graders' files from the master notebooks in solutions/.

`assign` runs ``otter assign`` on every master ``solutions/<chapter>/*.ipynb``. It writes the
student notebook to ``exercises/<chapter>/`` (outputs stripped, cell ids renumbered, the init cell
made to find its notebook under any name) and, to ``_build/autograder/<chapter>/``, otter's
autograder zip, ``<name>-tests.json`` (the hidden tests that `grade` runs outside the sandbox)
and ``SHA256SUMS`` of both, which `grade` checks.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import nbformat
import yaml

from lclib.grading.batch import BUILD, SUMS, TESTS_SUFFIX, ZIP_SUFFIX, sha256
from lclib.grading.judge import lclib_names

SOLUTIONS, EXERCISES = Path("solutions"), Path("exercises")
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
        stage = Path(tmp)
        outs = [stage / "out" / m.parent.name / m.stem for m in todo]
        _run_otter(todo, outs, _otter_env(stage), run_tests)
        for master, out in zip(todo, outs, strict=True):
            _place(master, out, stage / "exercises", stage / "build")
        written = []
        for chapter in sorted({nb.parent.name for nb in todo}):
            for staged, final in ((stage / "exercises", exercises), (stage / "build", build)):
                shutil.rmtree(final / chapter, ignore_errors=True)
                shutil.copytree(staged / chapter, final / chapter)
                written += sorted(p for p in (final / chapter).rglob("*") if p.is_file())
    return written


# One process for every master: importing otter takes ~5 s, its assign ~1 s a notebook.
_OTTER = """import json, sys
from otter.assign import main
for master, out in json.loads(sys.argv[1]):
    print("otter assign", master, flush=True)
    main(master, out, no_pdfs=True, no_run_tests=sys.argv[2] == "no-tests")
"""


def _run_otter(masters_: Sequence[Path], outs: Sequence[Path], env: dict[str, str],
               run_tests: bool) -> None:
    """Run ``otter assign`` on each master, writing its output folder."""
    pairs = [[str(m.resolve()), str(o)] for m, o in zip(masters_, outs, strict=True)]
    cmd = [sys.executable, "-c", _OTTER, json.dumps(pairs), "tests" if run_tests else "no-tests"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode:
        started = re.findall(r"^otter assign (.+)$", proc.stdout, re.M) or ["its start"]
        raise RuntimeError(f"otter assign failed on {started[-1]}:\n{proc.stdout}{proc.stderr}")


def _place(master: Path, out: Path, exercises: Path, build: Path) -> None:
    """Put one master's student files and autograder zip in place."""
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
    student = normalized(nbformat.read(out / "student" / master.name, as_version=4))
    spec = grading_spec(nbformat.read(master, as_version=4), student, name)
    (build / chapter / f"{name}{TESTS_SUFFIX}").write_text(json.dumps(spec, indent=1))
    record_checksums(build / chapter)


def record_checksums(folder: Path) -> None:
    """Write ``SHA256SUMS`` for the autograder files of one chapter."""
    lines = [f"{sha256(p)}  {p.name}" for p in sorted(folder.iterdir()) if p.name != SUMS]
    (folder / SUMS).write_text("\n".join(lines) + "\n")


def grading_spec(master: nbformat.NotebookNode, student: nbformat.NotebookNode, name: str) -> dict:
    """What `grade` needs: each question's hidden tests (source, points, the names they take),
    the handed-out code cells, and the lclib functions the hidden tests use to check answers."""
    questions, in_tests = [], False
    for cell in master.cells:
        text = cell.source.strip()
        if cell.cell_type == "raw" and text.startswith("# BEGIN QUESTION"):
            questions.append({"name": yaml.safe_load(text.split("\n", 1)[1])["name"], "tests": []})
        elif cell.cell_type == "raw" and text in ("# BEGIN TESTS", "# END TESTS"):
            in_tests = text == "# BEGIN TESTS"
        elif in_tests and cell.cell_type == "code":
            test = _test(cell.source, name)
            if test["hidden"]:
                questions[-1]["tests"].append(test)
    template = [c.source for c in student.cells if c.cell_type == "code"]
    hidden = [t["source"] for q in questions for t in q["tests"]]
    answers = sorted(lclib_names(hidden) - lclib_names(template))
    return {"assignment": name, "questions": questions, "template": template,
            "answer_functions": answers}


_CONFIG = re.compile(r'^"""\s*# BEGIN TEST CONFIG\n(.*?)"""\s*# END TEST CONFIG\n', re.S)


def _test(source: str, name: str) -> dict:
    """One test cell: its config, source and the parameters of its test function."""
    match = _CONFIG.match(source)
    config = yaml.safe_load(match.group(1)) if match else {}
    body = source[match.end():] if match else source
    funcs = [n for n in ast.parse(body).body if isinstance(n, ast.FunctionDef)]
    if config.get("hidden") and "points" not in config:
        raise ValueError(f"{name}: hidden test {funcs[0].name if funcs else '?'} needs points:")
    return {"name": funcs[0].name if funcs else "test", "points": config.get("points", 0),
            "hidden": bool(config.get("hidden")), "source": body,
            "params": list(dict.fromkeys(a.arg for f in funcs for a in f.args.args))}


def normalized(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The notebook without outputs, with cell ids ``cell-00``, ``cell-01``, ... (deterministic)
    and an init cell that finds the notebook whatever its file is called."""
    name = nb.metadata.get("otter", {}).get("assignment_name", "")
    for i, cell in enumerate(nb.cells):
        cell.id = f"cell-{i:02d}"
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
            if "otter.Notebook(" in cell.source and name:
                cell.source = INIT_CELL.format(name=name)
    return nb


INIT_CELL = """# Initialize Otter (finds this notebook even if renamed, e.g. "{name} (1).ipynb")
from lclib.grading.check import checker

grader = checker("{name}")"""


def _otter_env(tmp: Path) -> dict[str, str]:
    """Environment for otter and its kernels: the import-time stub first, then this lclib."""
    (tmp / "rfc3987_syntax.py").write_text(_STUB)
    lclib_root = str(Path(__file__).resolve().parents[1])
    path = [str(tmp), lclib_root, *filter(None, [os.environ.get("PYTHONPATH")])]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(path)}


