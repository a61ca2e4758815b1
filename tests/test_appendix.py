"""The appendices: the instructor guide's launch address, the notation table's symbols."""

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_binder_address_is_the_repository_of_config():
    url = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]
    owner_repo = url.removeprefix("https://github.com/")
    guide = (ROOT / "book/appendix/instructor-guide.md").read_text()
    binder = re.findall(r"https://mybinder\.org/v2/gh/([^>\s)]+)/main", guide)
    assert binder == [owner_repo], "the guide's Binder link must follow repository.url"
    assert "<owner>" not in guide and "<repo>" not in guide


def test_every_chapter_has_objectives_in_the_instructor_guide():
    guide = (ROOT / "book/appendix/instructor-guide.md").read_text()
    chapters = sorted(p.stem.split("-")[0].removeprefix("ch").lstrip("0")
                      for p in (ROOT / "book").glob("ch0*.md"))
    for n in chapters:
        assert re.search(rf"^\| {n}, ", guide, re.M), f"chapter {n} has no learning objectives"
    for folder in sorted((ROOT / "solutions").iterdir()):
        if folder.is_dir() and list(folder.glob("*.ipynb")):
            assert re.search(rf"^\| {folder.name} \| q", guide, re.M), (
                f"no misconception listed for {folder.name}'s exercises")


def test_notation_appendix_defines_the_amortization_symbols_once():
    import sympy as sp

    from lclib import amortize as A

    table = (ROOT / "book/appendix/notation.md").read_text()
    rows = [r for r in table.splitlines() if r.startswith("| $")]
    for sym in (A.C_pre, A.C_m, A.q, A.C_max, A.M_kv, A.M_hbm):
        tex = sp.latex(sym)
        assert sum(f"${tex}$" in r.split("|")[1] for r in rows) == 1, f"${tex}$ not defined once"
    first = [r.split("|")[1].strip() for r in rows]
    assert len(first) == len(set(first)), "a symbol is defined twice"


def test_appendix_tables_fit_a_page():
    # eleven columns were clipped at 1280 px (KV per token, max positions and θ off-screen)
    page = (ROOT / "book/appendix/models-and-gpus.md").read_text()
    headers = [re.findall(r'"([^"]*)"', h) for h in re.findall(r"page\.table\(\[([^\]]*)\]", page)]
    assert [h[0] for h in headers] == ["model", "model", "GPU"]
    for h in headers:
        assert len(h) <= 8, f"too many columns: {h}"
