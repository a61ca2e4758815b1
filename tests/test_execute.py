"""lclib.execute: the book's pages run into jupyter-book's cache before the build reads them."""

from pathlib import Path

import pytest

from lclib import execute

HEADER = """---
jupytext:
  text_representation:
    extension: .md
    format_name: myst
kernelspec:
  display_name: Python 3
  language: python
  name: python3
---
"""


def _page(folder: Path, name: str, code: str, pad: int = 0) -> Path:
    path = folder / f"{name}.md"
    cell = f"```{{code-cell}} ipython3\n{code}\n```\n"
    path.write_text(f"{HEADER}\n# {name}\n\n{'x' * pad}\n\n{cell}")
    return path


@pytest.fixture
def book(tmp_path: Path) -> Path:
    (tmp_path / "book").mkdir()
    _page(tmp_path / "book", "small", "print(2 + 2)")
    _page(tmp_path / "book", "large", "import os\nprint(os.getcwd())", pad=500)
    _page(tmp_path / "book", "broken", "1 / 0", pad=100)
    (tmp_path / "book" / "prose.md").write_text("# Only prose\n\nNo code.\n")
    (tmp_path / "_toc.yml").write_text(
        "format: jb-book\nroot: book/small\nparts:\n  - caption: All\n    chapters:\n"
        "      - file: book/large\n      - file: book/prose\n      - file: book/broken\n")
    return tmp_path


def test_pages_are_the_tocs_notebooks_largest_first(book: Path):
    assert execute.toc_pages(book) == ["book/small", "book/large", "book/prose", "book/broken"]
    assert [p.name for p in execute.pages(book)] == ["large.md", "broken.md", "small.md"]


def test_the_book_is_found_in_its_own_toc():
    names = {p.name for p in execute.pages()}
    assert {"ch01-crossover.md", "ch08-case-study.md", "intro.md"} <= names


def test_a_page_runs_in_its_folder(book: Path):
    path, notebook, seconds, error = execute.execute(book / "book" / "large.md", 60, 1)
    assert error == "" and seconds > 0
    assert notebook.cells[-1].outputs[0]["text"].strip() == str(book / "book")
    _, _, _, error = execute.execute(book / "book" / "broken.md", 60, 1)
    assert "ZeroDivisionError" in error


def test_main_caches_what_ran_and_leaves_failures_to_the_build(book: Path, tmp_path: Path,
                                                               capsys):
    cache = tmp_path / "cache"
    assert len(execute.stale(cache, execute.pages(book))) == 3
    execute.main(["--root", str(book), "--cache", str(cache)])
    out = capsys.readouterr().out
    assert "book/broken.md" in out and "failed (CellExecutionError" in out
    assert "3 pages executed" in out
    assert [p.name for p in execute.stale(cache, execute.pages(book))] == ["broken.md"]
    execute.main(["--root", str(book), "--cache", str(cache)])  # the cache is kept
    assert "1 pages executed" in capsys.readouterr().out


def test_jobs_must_be_positive():
    with pytest.raises(SystemExit, match="--jobs 1 or more"):
        execute.main(["--jobs", "0"])
