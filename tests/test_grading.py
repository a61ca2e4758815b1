"""Graded exercises: exercises/ is up to date, and a batch of submissions grades as it should.

Fast tests check the pieces (plain data, IDs, flags, the students' notebook finder, bad input).
The slow tests build the autograder into a temporary folder and grade one batch (solved,
untouched, partly wrong, raising, looping, renamed, resubmitted, not JSON, not an exercise) in
the sandbox; the attacks of issue #21 are in test_grading_attacks.py.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lclib import grading
from lclib.grading import batch, check, judge, plain, sandbox

pytestmark = pytest.mark.xdist_group("grading")

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS, EXERCISES = ROOT / "solutions", ROOT / "exercises"
CHAPTER = "intro"  # the set the error-handling tests use
CHAPTERS = sorted(p.name for p in SOLUTIONS.iterdir() if p.is_dir())
POINTS = {"q1": 2, "q2": 2, "q3": 2, "q4": 2, "q5": 2, "q6": 2}  # hidden tests only give points
LOOP_TIMEOUT = 20  # s; a notebook grades in ~2-5 s in the sandbox (the attacks use 20 s too)
needs_sandbox = pytest.mark.skipif(bool(sandbox.unavailable()), reason=sandbox.unavailable()
                                   or "sandbox available")


def solution_sources(master: Path) -> list[str]:
    """Sources of the master's solution cells (between BEGIN and END SOLUTION), in order."""
    cells, inside, found = nbformat.read(master, as_version=4).cells, False, []
    for cell in cells:
        marker = cell.source.strip() if cell.cell_type == "raw" else ""
        if marker in ("# BEGIN SOLUTION", "# END SOLUTION"):
            inside = marker == "# BEGIN SOLUTION"
        elif inside and cell.cell_type == "code":
            found.append(cell.source)
    return found


def answer_cells(nb: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [c for c in nb.cells if "otter_answer_cell" in c.metadata.get("tags", [])]


def exercise(chapter: str = CHAPTER) -> nbformat.NotebookNode:
    return nbformat.read(EXERCISES / chapter / f"{chapter}.ipynb", as_version=4)


def solved(chapter: str = CHAPTER) -> nbformat.NotebookNode:
    """The exercise notebook with every answer cell replaced by the master's solution."""
    nb = exercise(chapter)
    sources = solution_sources(SOLUTIONS / chapter / f"{chapter}.ipynb")
    assert len(sources) == len(answer_cells(nb)), "master and exercise disagree on answer cells"
    for cell, source in zip(answer_cells(nb), sources, strict=True):
        cell.source = source
    return nb


def edited(answer: int, old: str, new: str, prepend: str = "") -> nbformat.NotebookNode:
    """A solved notebook whose `answer`-th answer cell has `old` replaced and `prepend` added."""
    nb = solved()
    cell = answer_cells(nb)[answer]
    assert old in cell.source, f"{old!r} not in answer cell {answer}"
    cell.source = prepend + cell.source.replace(old, new)
    return nb


def read_csv(path: Path) -> dict[str, dict[str, str]]:
    with path.open() as f:
        return {row["file"]: row for row in csv.DictReader(f)}


# --- fast: the pieces ----------------------------------------------------------------------------

def test_import_lclib_does_not_load_grading() -> None:
    code = "import sys, lclib; assert not {'lclib.grading', 'otter'} & set(sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_exercises_hide_solutions_and_hidden_tests() -> None:
    text = (EXERCISES / CHAPTER / f"{CHAPTER}.ipynb").read_text()
    assert "# SOLUTION" not in text and "BEGIN SOLUTION" not in text
    assert "hidden=True" not in text and "test_q4_exact" not in text
    assert "(node_bytes - weights)" not in text
    for q in POINTS:
        assert f'grader.check(\\"{q}\\")' in text


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_exercise_finds_itself_and_public_checks_give_no_points(chapter: str) -> None:
    nb = exercise(chapter)
    assert any(f'checker("{chapter}")' in c.source for c in nb.cells), "stale init cell"
    points = [p for source in nb.metadata.otter.tests.values()
              for p in re.findall(r"@test_case\(points=([\d.]+)", source)]
    assert points and all(float(p) == 0 for p in points), "public checks give feedback, not points"


def test_solution_cells_match_answer_cells() -> None:
    assert len(solution_sources(SOLUTIONS / CHAPTER / f"{CHAPTER}.ipynb")) == len(
        answer_cells(exercise())) == len(POINTS)


plain_data = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4) | st.tuples(inner, inner)
    | st.dictionaries(st.integers() | st.text(max_size=3), inner, max_size=3),
    max_leaves=20)


@given(plain_data)
def test_plain_data_round_trips_with_exact_types(x: object) -> None:
    back = plain.decode(json.loads(json.dumps(plain.encode(x))))

    def shape(v: object) -> object:  # value and exact type, all the way down
        if isinstance(v, (list, tuple)):
            return (type(v), [shape(i) for i in v])
        if isinstance(v, dict):
            return (dict, sorted((repr(shape(k)), repr(shape(i))) for k, i in v.items()))
        return (type(v), v)

    assert shape(back) == shape(x)


class AlwaysEqual(int):
    def __eq__(self, other: object) -> bool:
        return True

    __hash__ = int.__hash__


@pytest.mark.parametrize("value", [AlwaysEqual(7), type("F", (float,), {})(1.0), object()])
def test_foreign_objects_do_not_travel(value: object) -> None:
    back = plain.decode(json.loads(json.dumps(plain.encode(value))))
    assert isinstance(back, plain.Unexportable)
    with pytest.raises(TypeError, match="not plain data"):
        assert back == 7


def test_arrays_tensors_and_lclib_dataclasses_travel() -> None:
    import numpy as np
    import torch

    import lclib
    model = lclib.get_model("llama-3.3-70b")
    values = [np.arange(6, dtype=np.float32).reshape(2, 3), np.int64(5),
              torch.tensor([1.5, -2.0], dtype=torch.bfloat16), model]
    a, n, t, m = (plain.decode(json.loads(json.dumps(plain.encode(v)))) for v in values)
    assert a.dtype == np.float32 and a.shape == (2, 3) and (a == values[0]).all()
    assert type(n) is np.int64 and n == 5
    assert t.dtype == torch.bfloat16 and torch.equal(t, values[2])
    assert m == model and type(m) is type(model)


def test_non_finite_answers_are_refused() -> None:
    ns = judge.bind({"x": plain.encode(math.nan), "y": plain.encode(2.0)}, channel=None)
    assert isinstance(ns["x"], plain.Unexportable) and ns["y"] == 2.0


@pytest.mark.parametrize(("name", "pattern", "expected"), [
    ("s1234567_ch02.ipynb", batch.ID_PATTERN, "s1234567"),
    ("ch02 (1).ipynb", batch.ID_PATTERN, "ch02"),
    ("doejane_12345_678_ch02.ipynb", r"^[^_]+_(?:LATE_)?(?P<id>\d+)_", "12345"),
    ("doejane_LATE_12345_678_ch02.ipynb", r"^[^_]+_(?:LATE_)?(?P<id>\d+)_", "12345"),
])
def test_student_id_from_file_name(name: str, pattern: str, expected: str) -> None:
    assert batch.student_id(name, pattern) == expected


def test_flags_name_answering_library_calls_and_tampering() -> None:
    spec = {"template": ["import lclib\nllama = lclib.get_model('x')"],
            "answer_functions": ["kv_cache_bytes", "max_concurrency"]}
    cells = ["import lclib\nllama = lclib.get_model('x')",  # handed out: not flagged
             "from lclib import max_concurrency as m\nx = m()",
             "import builtins, subprocess\nget_ipython().events.register('post_run_cell', f)",
             "# a comment about otter and /proc is not code\ny = 1"]
    assert judge.flags(cells, spec) == ["lclib.max_concurrency", "builtins", "IPython events",
                                        "subprocess"]


def test_renamed_notebook_finds_itself(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    nbformat.write(exercise("ch02"), tmp_path / "ch02 (1).ipynb")
    nbformat.write(exercise(), tmp_path / "other.ipynb")
    assert check.find("ch02", tmp_path) == tmp_path / "ch02 (1).ipynb"
    with pytest.raises(FileNotFoundError, match="no notebook of exercise 'ch05'"):
        check.find("ch05", tmp_path)


def test_check_output_says_hidden_tests_decide() -> None:
    class Result:
        def __repr__(self) -> str:
            return "q1 results: All test cases passed!"

    shown = check.Checked(Result())
    assert "give no points" in repr(shown) and "Hidden tests" in shown._repr_html_()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["grade", "no/such/dir"], "does not exist"),
        (["grade", "{empty}"], "no .ipynb files"),
        (["grade", "{empty}", "--timeout", "0"], "timeout > 0"),
        (["grade", "{empty}", "--out", "{used}"], "nothing is ever overwritten"),
        (["assign", "no-such-chapter"], "no chapter no-such-chapter"),
        (["assign", "--solutions", "no/such/dir"], "no solutions folder"),
    ],
)
def test_cli_bad_input(args: list[str], message: str, tmp_path: Path,
                       capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "grades.csv").write_text("file\n")
    nbformat.write(exercise(), tmp_path / "empty" / "a.ipynb") if "used" in str(args) else None
    argv = [a.format(empty=tmp_path / "empty", used=tmp_path / "used") for a in args]
    if args[0] == "assign" and "--solutions" not in args:
        argv += ["--solutions", str(SOLUTIONS)]
    with pytest.raises(SystemExit) as exc:
        grading.main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_grade_needs_autograders(tmp_path: Path) -> None:
    nbformat.write(exercise(), tmp_path / "a.ipynb")
    with pytest.raises(ValueError, match="make exercises"):
        grading.grade(tmp_path, tmp_path / "out", build=tmp_path / "nothing")


def test_without_sandbox_grading_refuses_and_says_what_is_lost(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    build = tmp_path / "build" / CHAPTER
    build.mkdir(parents=True)
    (build / f"{CHAPTER}-tests.json").write_text(json.dumps({"assignment": CHAPTER}))
    from lclib.grading.authoring import record_checksums
    record_checksums(build)
    nbformat.write(exercise(), tmp_path / "a.ipynb")
    monkeypatch.setattr(batch, "unavailable", lambda: "bubblewrap is not installed")
    with pytest.raises(sandbox.Unavailable, match="--unsafe-no-sandbox.*read the hidden tests"):
        grading.grade(tmp_path, tmp_path / "out", build=tmp_path / "build")


def test_tampered_autograder_is_refused(tmp_path: Path) -> None:
    from lclib.grading.authoring import record_checksums
    folder = tmp_path / CHAPTER
    folder.mkdir()
    tests = folder / f"{CHAPTER}-tests.json"
    tests.write_text(json.dumps({"assignment": CHAPTER, "questions": []}))
    record_checksums(folder)
    assert CHAPTER in batch.load_specs(tmp_path)
    tests.write_text(json.dumps({"assignment": CHAPTER, "questions": [], "x": 1}))
    with pytest.raises(ValueError, match="does not match the checksum"):
        batch.load_specs(tmp_path)


# --- slow: one real batch in the sandbox ---------------------------------------------------------

def write_submissions(folder: Path) -> None:
    folder.mkdir()
    notebooks = {
        "solved": solved(),
        "untouched": exercise(),
        # q4 forgets the weights: q4 scores 0, the rest full marks
        "partial": edited(3, "max_users = (node_bytes - weights)", "max_users = (node_bytes)"),
        # q3's cell raises before defining the function: q3 scores 0, later cells still run
        "raises": edited(2, "def kv_cache_bytes", "def kv_cache_bytes", prepend="1 / 0\n"),
        "loops": edited(4, 'q5_answer = "c"', 'q5_answer = "c"\nwhile True:\n    pass'),
        "not_an_exercise": nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1")]),
        "intro (1)": solved(),  # a browser's rename
        "late_v1": solved(), "late_v2": exercise(),  # student "late": v2 is newer and counts
    }
    for name, nb in notebooks.items():
        nbformat.write(nb, folder / f"{name}.ipynb")
    os.utime(folder / "late_v1.ipynb", (1e9, 1e9))
    (folder / "not_json.ipynb").write_text('{"cells": [')
    (folder / "notes.txt").write_text("not a notebook, not graded")


@pytest.fixture(scope="module")
def graded(built: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One batch graded into a fresh OUT folder."""
    folder = tmp_path_factory.mktemp("grade") / "submissions"
    write_submissions(folder)
    out = folder.parent / "out"
    grading.main(["grade", str(folder), "--out", str(out), "--build", str(built / "build"),
                  "--timeout", str(LOOP_TIMEOUT), "--jobs", "2"])
    return out


@pytest.fixture(scope="module")
def grades(graded: Path) -> dict[str, dict[str, str]]:
    return read_csv(graded / "grades.csv")


@pytest.mark.slow
@pytest.mark.parametrize("chapter", CHAPTERS)
def test_exercises_up_to_date(built: Path, chapter: str) -> None:
    fresh_dir, committed_dir = built / "exercises" / chapter, EXERCISES / chapter
    assert sorted(p.name for p in fresh_dir.iterdir()) == sorted(
        p.name for p in committed_dir.iterdir()), "run `make exercises` and commit exercises/"
    for fresh in fresh_dir.glob("*.ipynb"):
        new, old = (nbformat.read(p, as_version=4) for p in (fresh, committed_dir / fresh.name))
        assert [(c.cell_type, c.source) for c in new.cells] == [
            (c.cell_type, c.source) for c in old.cells], f"{fresh.name} is stale: make exercises"
        assert new.metadata.otter == old.metadata.otter, f"{fresh.name}'s tests are stale"
    sums = (built / "build" / chapter / "SHA256SUMS").read_text()
    assert f"{chapter}-autograder.zip" in sums and f"{chapter}-tests.json" in sums


@pytest.mark.slow
@needs_sandbox
@pytest.mark.parametrize("chapter", [c for c in CHAPTERS if c != CHAPTER])
def test_every_chapter_grades_solutions_full_and_untouched_zero(
        built: Path, chapter: str, tmp_path: Path) -> None:
    folder = tmp_path / "submissions"
    folder.mkdir()
    nbformat.write(solved(chapter), folder / "solved.ipynb")
    nbformat.write(exercise(chapter), folder / "untouched.ipynb")
    grading.main(["grade", str(folder), "--out", str(tmp_path / "out"),
                  "--build", str(built / "build")])
    rows = read_csv(tmp_path / "out" / "grades.csv")
    assert rows["solved.ipynb"]["percent"] == "100.0", rows["solved.ipynb"]
    assert rows["solved.ipynb"]["error"] == "" and rows["solved.ipynb"]["flags"] == ""
    assert rows["untouched.ipynb"]["total"] == "0"
    assert rows["untouched.ipynb"]["assignment"] == chapter


@pytest.mark.slow
@needs_sandbox
def test_every_notebook_gets_a_row(grades: dict[str, dict[str, str]]) -> None:
    assert sorted(grades) == sorted(f"{n}.ipynb" for n in (
        "solved", "untouched", "partial", "raises", "loops", "not_an_exercise", "not_json",
        "intro (1)", "late_v1", "late_v2"))
    assert list(next(iter(grades.values()))) == [
        "file", "student", "assignment", *POINTS, "total", "possible", "percent", "seconds",
        "status", "error", "flags"]


@pytest.mark.slow
@needs_sandbox
@pytest.mark.parametrize("name", ["solved", "intro (1)"])
def test_solutions_score_full_marks(grades: dict[str, dict[str, str]], name: str) -> None:
    row = grades[f"{name}.ipynb"]
    assert row["error"] == "" and row["status"] == "graded" and row["flags"] == ""
    assert {q: float(row[q]) for q in POINTS} == POINTS
    assert (row["total"], row["possible"], row["percent"]) == ("12", "12", "100.0")


@pytest.mark.slow
@needs_sandbox
def test_untouched_exercise_scores_zero(grades: dict[str, dict[str, str]]) -> None:
    row = grades["untouched.ipynb"]
    assert row["assignment"] == CHAPTER and row["status"] == "graded"
    assert all(float(row[q]) == 0 for q in POINTS) and row["total"] == "0"


@pytest.mark.slow
@needs_sandbox
def test_wrong_answer_gets_partial_credit(grades: dict[str, dict[str, str]]) -> None:
    row = grades["partial.ipynb"]
    assert float(row["q4"]) == 0 and row["total"] == "10" and row["percent"] == "83.3"


@pytest.mark.slow
@needs_sandbox
def test_raising_notebook_is_graded_with_its_error(grades: dict[str, dict[str, str]]) -> None:
    row = grades["raises.ipynb"]
    assert row["error"].startswith("ZeroDivisionError")
    assert float(row["q3"]) == 0 and float(row["q4"]) == float(row["q5"]) == 2
    assert row["total"] == "10"


@pytest.mark.slow
@needs_sandbox
def test_latest_submission_wins_and_the_other_is_kept(graded: Path,
                                                      grades: dict[str, dict[str, str]]) -> None:
    assert grades["late_v2.ipynb"]["status"] == "graded" and grades["late_v2.ipynb"]["total"] == "0"
    assert grades["late_v1.ipynb"]["status"] == "superseded"
    assert "late_v2.ipynb is newer" in grades["late_v1.ipynb"]["error"]
    assert (graded / "submissions" / "late_v1.ipynb").is_file()


@pytest.mark.slow
@needs_sandbox
@pytest.mark.parametrize(("name", "status", "message"), [
    ("loops", f"timed out after {LOOP_TIMEOUT} s", f"timed out after {LOOP_TIMEOUT} s"),
    ("not_json", "not graded", "not a readable exercise notebook"),
    ("not_an_exercise", "not graded", "assignment ''"),
])
def test_ungradable_notebook_gets_an_error_row(grades: dict[str, dict[str, str]], name: str,
                                               status: str, message: str) -> None:
    row = grades[f"{name}.ipynb"]
    assert row["status"] == status and message in row["error"]
    assert row["total"] == "0" and all(row[q] == "" for q in POINTS)


@pytest.mark.slow
@needs_sandbox
def test_feedback_summary_and_exports(graded: Path) -> None:
    page = (graded / "feedback" / "partial.html").read_text()
    assert "10 / 12" in page and "test_q4_exact" in page
    summary = (graded / "summary.md").read_text()
    assert "| q4 |" in summary and "| 100 | 2 |" in summary  # solved and its renamed copy
    with (graded / "canvas.csv").open() as f:
        canvas = list(csv.reader(f))
    assert canvas[0][:2] == ["Student", "ID"] and canvas[1][-1] == "12"
    with (graded / "gradescope.csv").open() as f:
        scores = {r["SID"]: r["Total Score"] for r in csv.DictReader(f)}
    assert scores["solved"] == "12" and scores["late"] == "0"


@pytest.mark.slow
def test_unsafe_mode_still_judges_outside(built: Path, tmp_path: Path) -> None:
    folder = tmp_path / "submissions"
    folder.mkdir()
    nbformat.write(solved(), folder / "solved.ipynb")
    forged = exercise()
    forged.cells.append(nbformat.v4.new_code_cell(
        "class Yes(int):\n    __eq__ = lambda s, o: True\n    __hash__ = int.__hash__\n"
        "kv_per_token = max_users = Yes(1)"))
    nbformat.write(forged, folder / "always_equal.ipynb")
    grading.main(["grade", str(folder), "--out", str(tmp_path / "out"), "--build",
                  str(built / "build"), "--unsafe-no-sandbox"])
    rows = read_csv(tmp_path / "out" / "grades.csv")
    assert rows["solved.ipynb"]["percent"] == "100.0"
    assert rows["always_equal.ipynb"]["total"] == "0"


def test_assign_names_the_master_otter_fails_on_and_writes_nothing(tmp_path: Path) -> None:
    solutions, exercises = tmp_path / "solutions", tmp_path / "exercises"
    (solutions / "a").mkdir(parents=True)
    shutil.copyfile(SOLUTIONS / "intro" / "intro.ipynb", solutions / "a" / "intro.ipynb")
    (solutions / "b").mkdir()
    broken = nbformat.read(SOLUTIONS / "intro" / "intro.ipynb", as_version=4)
    broken.cells[0] = nbformat.v4.new_raw_cell("# ASSIGNMENT CONFIG\nname: [unclosed")
    nbformat.write(broken, solutions / "b" / "broken.ipynb")
    with pytest.raises(RuntimeError, match=r"otter assign failed on .*broken\.ipynb"):
        grading.assign(solutions, exercises, tmp_path / "build", run_tests=False)
    assert not exercises.exists()
