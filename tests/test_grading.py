"""Graded exercises: exercises/ is up to date, and a batch of submissions grades as it should.

The slow tests build the autograder into a temporary folder and grade one batch of submissions
(solved, untouched, partly wrong, raising, looping, not JSON, not an exercise) in one call.
"""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from lclib import grading

pytestmark = pytest.mark.xdist_group("grading")

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS, EXERCISES = ROOT / "solutions", ROOT / "exercises"
CHAPTER = "intro"  # the set the error-handling tests use
CHAPTERS = sorted(p.name for p in SOLUTIONS.iterdir() if p.is_dir())
POINTS = {"q1": 3, "q2": 3, "q3": 3, "q4": 3, "q5": 3}
LOOP_TIMEOUT = 40  # s; a normal notebook grades in ~10 s on 2 busy cores


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
    }
    for name, nb in notebooks.items():
        nbformat.write(nb, folder / f"{name}.ipynb")
    (folder / "not_json.ipynb").write_text('{"cells": [')
    (folder / "notes.txt").write_text("not a notebook, not graded")


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


def test_solution_cells_match_answer_cells() -> None:
    assert len(solution_sources(SOLUTIONS / CHAPTER / f"{CHAPTER}.ipynb")) == len(
        answer_cells(exercise())) == 5


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["grade", "no/such/dir"], "does not exist"),
        (["grade", "{empty}"], "no .ipynb files"),
        (["grade", "{empty}", "--timeout", "0"], "timeout > 0"),
        (["assign", "no-such-chapter"], "no chapter no-such-chapter"),
        (["assign", "--solutions", "no/such/dir"], "no solutions folder"),
    ],
)
def test_cli_bad_input(args: list[str], message: str, tmp_path: Path,
                       capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    argv = [a.format(empty=tmp_path / "empty") for a in args]
    if args[0] == "assign" and "--solutions" not in args:
        argv += ["--solutions", str(SOLUTIONS)]
    with pytest.raises(SystemExit) as exc:
        grading.main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_grade_needs_autograders(tmp_path: Path) -> None:
    nbformat.write(exercise(), tmp_path / "a.ipynb")
    with pytest.raises(ValueError, match="make exercises"):
        grading.grade(tmp_path, build=tmp_path / "nothing")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """exercises/ and autograder zips regenerated from solutions/ into a temporary folder."""
    out = tmp_path_factory.mktemp("assign")
    grading.assign(SOLUTIONS, out / "exercises", out / "build", run_tests=False)
    return out


@pytest.fixture(scope="module")
def grades(built: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, str]]:
    """One batch: every submission graded into one CSV, read back as file -> row."""
    folder = tmp_path_factory.mktemp("grade") / "submissions"
    write_submissions(folder)
    out = folder.parent / "grades.csv"
    grading.main(["grade", str(folder), "--out", str(out), "--build", str(built / "build"),
                  "--timeout", str(LOOP_TIMEOUT), "--jobs", "2"])
    with out.open() as f:
        return {row["file"]: row for row in csv.DictReader(f)}


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
    assert (built / "build" / chapter / f"{chapter}-autograder.zip").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("chapter", [c for c in CHAPTERS if c != CHAPTER])
def test_every_chapter_grades_solutions_full_and_untouched_zero(
        built: Path, chapter: str, tmp_path: Path) -> None:
    folder = tmp_path / "submissions"
    folder.mkdir()
    nbformat.write(solved(chapter), folder / "solved.ipynb")
    nbformat.write(exercise(chapter), folder / "untouched.ipynb")
    out = tmp_path / "grades.csv"
    grading.main(["grade", str(folder), "--out", str(out), "--build", str(built / "build")])
    with out.open() as f:
        rows = {row["file"]: row for row in csv.DictReader(f)}
    assert rows["solved.ipynb"]["percent"] == "100.0" and rows["solved.ipynb"]["error"] == ""
    assert rows["untouched.ipynb"]["total"] == "0"
    assert rows["untouched.ipynb"]["assignment"] == chapter


@pytest.mark.slow
def test_every_notebook_gets_a_row(grades: dict[str, dict[str, str]]) -> None:
    assert sorted(grades) == sorted(f"{n}.ipynb" for n in (
        "solved", "untouched", "partial", "raises", "loops", "not_an_exercise", "not_json"))
    assert list(next(iter(grades.values()))) == [
        "file", "assignment", *POINTS, "total", "possible", "percent", "seconds", "error"]


@pytest.mark.slow
def test_solutions_score_full_marks(grades: dict[str, dict[str, str]]) -> None:
    row = grades["solved.ipynb"]
    assert row["error"] == ""
    assert {q: float(row[q]) for q in POINTS} == POINTS
    assert (row["total"], row["possible"], row["percent"]) == ("15", "15", "100.0")


@pytest.mark.slow
def test_untouched_exercise_scores_zero(grades: dict[str, dict[str, str]]) -> None:
    row = grades["untouched.ipynb"]
    assert row["assignment"] == CHAPTER and row["error"] == ""
    assert all(float(row[q]) == 0 for q in POINTS) and row["total"] == "0"


@pytest.mark.slow
def test_wrong_answer_gets_partial_credit(grades: dict[str, dict[str, str]]) -> None:
    row = grades["partial.ipynb"]
    assert float(row["q4"]) == 0 and row["total"] == "12" and row["percent"] == "80.0"


@pytest.mark.slow
def test_raising_notebook_is_graded_with_its_error(grades: dict[str, dict[str, str]]) -> None:
    row = grades["raises.ipynb"]
    assert row["error"].startswith("ZeroDivisionError")
    assert float(row["q3"]) == 0 and float(row["q4"]) == float(row["q5"]) == 3
    assert row["total"] == "12"


@pytest.mark.slow
@pytest.mark.parametrize(("name", "message"), [
    ("loops", f"timed out after {LOOP_TIMEOUT} s"),
    ("not_json", "not a readable notebook"),
    ("not_an_exercise", "no autograder for assignment ''"),
])
def test_ungradable_notebook_gets_an_error_row(grades: dict[str, dict[str, str]], name: str,
                                               message: str) -> None:
    row = grades[f"{name}.ipynb"]
    assert message in row["error"]
    assert row["total"] == "0" and all(row[q] == "" for q in POINTS)
