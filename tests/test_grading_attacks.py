"""The attacks of issue #21, each its own submission in one sandboxed batch: none gains a point,
none damages another submission, the grader's files or the machine. Bounded: memory and process
bombs run inside small limits (1 GB, 256 processes, a 20 s time limit).
"""

from __future__ import annotations

import csv
import hashlib
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import nbformat
import pytest
from test_grading import ROOT, answer_cells, exercise, solved

from lclib import grading
from lclib.grading import sandbox

pytestmark = [pytest.mark.xdist_group("grading"), pytest.mark.slow,
              pytest.mark.skipif(bool(sandbox.unavailable()),
                                 reason=sandbox.unavailable() or "sandbox available")]

TIMEOUT = 20  # s per notebook
MARKER = f"h7-attack-{uuid.uuid4().hex[:8]}"  # in the command line of processes attacks leave


def appended(nb: nbformat.NotebookNode, source: str) -> nbformat.NotebookNode:
    nb.cells.append(nbformat.v4.new_code_cell(source))
    return nb


def attacks(paths: dict[str, Path]) -> dict[str, nbformat.NotebookNode]:
    """Submission name -> notebook; `paths` are the host files the attacks go after."""
    victims = [str(p) for k, p in paths.items() if k != "lclib"]  # lclib/ is bound read-only
    with_wrapper, exits, dies = solved(), solved(), solved()
    answer_cells(with_wrapper)[0].source = "kv_per_token = lclib.kv_bytes_per_token(llama)"
    define = "def kv_cache_bytes(*args, **kwargs):\n    import os, sys\n    "
    answer_cells(exits)[2].source = define + "sys.exit(3)"
    answer_cells(dies)[2].source = define + "os._exit(1)"
    return {
        "patch_otter": appended(exercise(), (
            "import otter.test_files.exception_test as et\n"
            "et.ExceptionTestFile.run = lambda self, env: None")),
        "always_equal": appended(exercise(), (
            "class Yes(int):\n    __eq__ = lambda s, o: True\n    __ne__ = lambda s, o: False\n"
            "    __hash__ = int.__hash__\n"
            "class S(str):\n    __eq__ = lambda s, o: True\n    __hash__ = str.__hash__\n"
            "kv_per_token = max_users = Yes(1)\nkv_128k_gb = kv_128k_gib = Yes(1)\n"
            "q5_answer = S('z')")),
        "optimize_asserts": appended(exercise(), (
            "import builtins\n_compile = builtins.compile\n"
            "builtins.compile = lambda *a, **k: _compile(*a, **{**k, 'optimize': 2})")),
        "post_run_cell": appended(exercise(), (
            "def forge(result):\n    import glob\n"
            "    for p in glob.glob('/tmp/**/*.pkl', recursive=True):\n"
            "        open(p, 'wb').write(b'forged')\n"
            "get_ipython().events.register('post_run_cell', forge)")),
        "forged_line": appended(exercise(), (
            "import json, os, time\n"
            "line = json.dumps({'error': '', 'values': {}, 'scores': {'q1': [2, 2]}}) + '\\n'\n"
            "if os.fork() == 0:\n    for _ in range(50):\n        for fd in range(3, 20):\n"
            "            try:\n                os.write(fd, line.encode())\n"
            "            except OSError:\n                pass\n        time.sleep(0.1)\n"
            "    os._exit(0)")),
        "library_wrapper": with_wrapper,
        "snoop": appended(exercise(), (
            f"import os\nleaks = [p for p in {victims!r} + [{str(ROOT / 'solutions')!r}] "
            "if os.path.exists(p)]\n"
            "cmds = []\nfor p in os.listdir('/proc'):\n    try:\n"
            "        cmds.append(open(f'/proc/{p}/cmdline', 'rb').read())\n"
            "    except OSError:\n        pass\n"
            "q5_answer = 'c' if leaks or any(b'-m\\x00pytest' in c for c in cmds) else 'x'")),
        "vandal": appended(exercise(), (
            f"for p in {victims + [str(paths['lclib'])]!r} + ['/root/{MARKER}']:\n    try:\n"
            "        open(p, 'w').write('vandalized')\n    except OSError:\n        pass")),
        "daemon": appended(exercise(), (  # tries to forge the CSV every 0.1 s for a minute
            "import subprocess, sys\n"
            "code = \"import time\\nfor _ in range(600):\\n    try:\\n"
            f"        open({str(paths['csv'])!r}, 'a').write('forged')\\n"
            "    except OSError:\\n        pass\\n    time.sleep(0.1)\"\n"
            f"subprocess.Popen([sys.executable, '-c', code, '{MARKER}'], start_new_session=True)")),
        "pipe_holder": appended(exercise(), (
            "import os, time\nif os.fork() == 0:\n    time.sleep(600)\n    os._exit(0)")),
        "fork_bomb": appended(exercise(), (
            "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n"
            "        pass")),
        "memory_bomb": appended(exercise(), "hog = b'x' * (3 * 10**9)"),
        "huge_print": appended(exercise(), "for _ in range(8):\n    print('x' * 2**26)"),
        "exits_in_function": exits,
        "dies_in_function": dies,
        "victim": solved(),
        "innocent": solved(),
    }


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def attacked(built: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    base = tmp_path_factory.mktemp("attacks")
    folder, out, build = base / "submissions", base / "out", built / "build"
    folder.mkdir()
    paths = {"victim": folder / "victim.ipynb", "victim_copy": out / "submissions" / "victim.ipynb",
             "csv": out / "grades.csv", "tests": build / "intro" / "intro-tests.json",
             "zip": build / "intro" / "intro-autograder.zip", "repo": ROOT / "README.md",
             "lclib": ROOT / "lclib" / "__init__.py"}
    for name, nb in attacks(paths).items():
        nbformat.write(nb, folder / f"{name}.ipynb")
    protected = {k: sha(p) for k, p in paths.items() if p.exists()}
    start = time.perf_counter()
    grading.main(["grade", str(folder), "--out", str(out), "--build", str(build), "--timeout",
                  str(TIMEOUT), "--jobs", "2", "--memory-gb", "1"])
    wall = time.perf_counter() - start
    csv_after = sha(paths["csv"])
    time.sleep(2)  # a surviving daemon would have written by now
    with paths["csv"].open() as f:
        rows = {r["file"].removesuffix(".ipynb"): r for r in csv.DictReader(f)}
    return {"rows": rows, "paths": paths, "protected": protected, "csv_after": csv_after,
            "wall": wall, "out": out}


SCORE_NOTHING = ["patch_otter", "always_equal", "optimize_asserts", "post_run_cell",
                 "forged_line", "snoop", "vandal", "daemon", "pipe_holder", "huge_print"]


@pytest.mark.parametrize("name", SCORE_NOTHING)
def test_attack_gains_nothing(attacked: dict, name: str) -> None:
    row = attacked["rows"][name]
    assert row["total"] == "0", row
    assert row["status"] == "graded", row


@pytest.mark.parametrize(("name", "flag"), [
    ("library_wrapper", "lclib.kv_bytes_per_token"), ("patch_otter", "otter internals"),
    ("optimize_asserts", "builtins"), ("post_run_cell", "IPython events"), ("snoop", "/proc"),
    ("daemon", "subprocess")])
def test_attack_is_flagged(attacked: dict, name: str, flag: str) -> None:
    assert flag in attacked["rows"][name]["flags"].split("; ")


def test_nothing_outside_the_sandbox_is_damaged(attacked: dict) -> None:
    paths = attacked["paths"]
    for key, digest in attacked["protected"].items():
        assert sha(paths[key]) == digest, f"{paths[key]} changed"
    assert sha(paths["victim_copy"]) == attacked["protected"]["victim"]
    assert not Path(f"/root/{MARKER}").exists()
    assert sha(paths["csv"]) == attacked["csv_after"], "grades.csv changed after the batch"
    assert attacked["rows"]["victim"]["percent"] == "100.0"
    assert attacked["rows"]["innocent"]["percent"] == "100.0"


def test_no_process_or_cgroup_outlives_its_notebook(attacked: dict) -> None:
    left = []
    for p in Path("/proc").iterdir():
        try:
            if p.name.isdigit() and MARKER.encode() in (p / "cmdline").read_bytes():
                left.append(p.name)
        except OSError:
            pass
    assert not left
    assert not list(Path("/sys/fs/cgroup").glob(f"**/lclib-grade-{os.getpid()}-*"))


def test_bombs_are_stopped_inside_their_limits(attacked: dict) -> None:
    rows = attacked["rows"]
    assert rows["fork_bomb"]["status"] == f"timed out after {TIMEOUT} s"
    assert float(rows["fork_bomb"]["seconds"]) < TIMEOUT + 10
    assert rows["memory_bomb"]["status"] == "out of memory (limit 1 GB)"
    assert attacked["wall"] < 300


def test_a_function_that_exits_costs_only_its_question(attacked: dict) -> None:
    for name in ("exits_in_function", "dies_in_function"):
        row = attacked["rows"][name]
        assert row["q3"] == "0" and row["total"] == "10", row


def test_ctrl_c_keeps_the_finished_rows(built: Path, tmp_path: Path) -> None:
    folder, out = tmp_path / "submissions", tmp_path / "out"
    folder.mkdir()
    nbformat.write(solved(), folder / "a_first.ipynb")
    nbformat.write(appended(exercise(), "import time\ntime.sleep(600)"), folder / "b_slow.ipynb")
    # as at a terminal: a shell running us in the background may have left SIGINT ignored
    proc = subprocess.Popen([sys.executable, "-m", "lclib.grading", "grade", str(folder), "--out",
                             str(out), "--build", str(built / "build"), "--jobs", "1"], cwd=ROOT,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (
            (out / "grades.csv").exists() and "a_first" in (out / "grades.csv").read_text()):
        time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) != 0
    rows = (out / "grades.csv").read_text().splitlines()
    assert rows[0].startswith("file,") and rows[1].startswith("a_first.ipynb,")
