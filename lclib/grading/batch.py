"""Grade a folder of submissions: sandboxed, judged outside, every row kept.

Each notebook is copied into ``OUT/submissions/``, run in the sandbox (`sandbox`), its answers
judged in this process (`judge`), and its row appended to ``OUT/grades.csv`` as soon as it is
done (a crash or Ctrl-C keeps every finished row). ``OUT/feedback/<file>.html`` goes back to the
student; ``summary.md``, ``gradescope.csv`` and ``canvas.csv`` are written at the end. An existing
``OUT/grades.csv`` is never overwritten.
"""

from __future__ import annotations

import csv
import hashlib
import html
import json
import os
import re
import shutil
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from lclib.grading.check import assignment_of
from lclib.grading.judge import Channel, Ended, flags, run_tests
from lclib.grading.sandbox import UNSAFE_LOSES, Limits, Sandbox, Unavailable, unavailable

BUILD = Path("_build/autograder")
ZIP_SUFFIX, TESTS_SUFFIX, SUMS = "-autograder.zip", "-tests.json", "SHA256SUMS"
LIMITS = Limits()
ID_PATTERN = r"^(?P<id>[^_\s.(]+)"  # the file name up to the first _, space, dot or "("
MAX_NOTEBOOK = 20 * 2**20  # bytes; a bigger "notebook" is not graded


@dataclass
class Row:
    """The grade of one submission; `scores` maps question -> (points, possible)."""

    file: str
    student: str = ""
    assignment: str = ""
    scores: dict[str, tuple[float, float]] = field(default_factory=dict)
    status: str = "graded"
    error: str = ""
    flags: list[str] = field(default_factory=list)
    failures: dict[str, list[str]] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def total(self) -> float:
        return sum(s for s, _ in self.scores.values())

    @property
    def possible(self) -> float:
        return sum(p for _, p in self.scores.values())

    @property
    def percent(self) -> float:
        return 100 * self.total / self.possible if self.possible else 0.0


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_specs(build: Path = BUILD) -> dict[str, dict]:
    """Assignment name -> hidden tests, checked against the SHA256SUMS `make exercises` wrote."""
    specs = {}
    for path in sorted(build.glob(f"*/*{TESTS_SUFFIX}")):
        sums = dict(reversed(line.split("  ", 1)) for line in
                    (path.parent / SUMS).read_text().splitlines() if line) \
            if (path.parent / SUMS).is_file() else {}
        for f in sorted(path.parent.iterdir()):
            if f.name != SUMS and sums.get(f.name) != sha256(f):
                raise ValueError(f"{f} does not match the checksum `make exercises` recorded in "
                                 f"{path.parent / SUMS}; run `make exercises` again")
        spec = json.loads(path.read_text())
        specs[spec["assignment"]] = spec
    if not specs:
        raise ValueError(f"no hidden tests (*{TESTS_SUFFIX}) under {build}; run `make exercises`")
    return specs


def submissions(folder: Path) -> list[Path]:
    """The ``.ipynb`` files directly in `folder` (ValueError if none)."""
    if not folder.is_dir():
        raise ValueError(f"submissions folder {folder} does not exist; pass the folder that "
                         "holds the students' .ipynb files, e.g. SUBMISSIONS=submissions/")
    found = sorted(folder.glob("*.ipynb"))
    if not found:
        raise ValueError(f"no .ipynb files in {folder}; pass the folder of collected notebooks")
    return found


def student_id(name: str, pattern: str) -> str:
    """The student ID in a file name: the pattern's group ``id`` (or first group, or match)."""
    m = re.search(pattern, name)
    if not m:
        return ""
    return m.groupdict().get("id") or (m.group(1) if m.groups() else m.group(0))


def grade(folder: Path, out: Path, build: Path = BUILD, timeout: float = 120,
          jobs: int | None = None, id_pattern: str = ID_PATTERN, limits: Limits = LIMITS,
          unsafe: bool = False, progress: bool = False) -> list[Row]:
    """Grade every notebook in `folder` into the folder `out` (see the module docstring)."""
    jobs = jobs or len(os.sched_getaffinity(0))
    if timeout <= 0 or jobs < 1:
        raise ValueError(f"pass timeout > 0 and jobs >= 1, got timeout={timeout}, jobs={jobs}")
    if out.exists() and any(out.iterdir()):
        what = "a previous run" if (out / "grades.csv").exists() else "files"
        raise ValueError(f"{out} already holds {what}; pass a new OUT folder: nothing is ever "
                         "overwritten")
    re.compile(id_pattern)
    originals, specs = submissions(folder), load_specs(build)
    if not unsafe and (why := unavailable()):
        raise Unavailable(f"cannot sandbox the submissions: {why}. Pass --unsafe-no-sandbox "
                          f"(UNSAFE=1) to grade anyway; then {UNSAFE_LOSES}")
    rows, todo = _prepare(originals, out, specs, id_pattern)
    chapters = sorted({r.assignment for r in rows if r.assignment in specs})
    if len(chapters) > 1:
        print(f"warning: {folder} mixes exercises {', '.join(chapters)}; their questions get "
              "separate columns (ch02 q1, ch05 q1, ...)", file=sys.stderr)
    columns = [(c, q["name"]) for c in chapters for q in specs[c]["questions"]]
    (out / "feedback").mkdir()
    with (out / "grades.csv").open("w", newline="") as f:
        writer = _Writer(f, columns, len(chapters) > 1)
        for row in rows:
            if row.status != "queued":
                writer.write(row)
        _run(todo, specs, out, timeout, jobs, limits, unsafe, writer, progress)
    _summary(rows, specs, columns, out)
    return rows


def _prepare(originals: list[Path], out: Path, specs: dict, id_pattern: str
             ) -> tuple[list[Row], list[tuple[Row, Path]]]:
    """Copy the submissions, read their assignment and student; the latest of each one wins."""
    (out / "submissions").mkdir(parents=True)
    rows, latest = [], {}
    for src in originals:
        copy = out / "submissions" / src.name
        shutil.copy2(src, copy)
        row = Row(src.name, student_id(src.name, id_pattern) or src.stem, status="queued")
        rows.append(row)
        if copy.stat().st_size > MAX_NOTEBOOK:
            row.status, row.error = "not graded", f"larger than {MAX_NOTEBOOK // 2**20} MiB"
            continue
        row.assignment = assignment_of(copy)
        if row.assignment not in specs:
            row.status = "not graded"
            row.error = (f"not a readable exercise notebook (assignment {row.assignment!r}; known: "
                         f"{', '.join(specs)}; was it handed out from exercises/?)")
            continue
        key = (row.student, row.assignment)
        when = (src.stat().st_mtime, src.name)
        if key not in latest or when > latest[key][0]:
            latest[key] = (when, row, copy)
    winners = {id(row) for _, row, _ in latest.values()}
    for row in rows:
        if row.status == "queued" and id(row) not in winners:
            newer = latest[(row.student, row.assignment)][1].file
            row.status, row.error = "superseded", f"{newer} is newer; kept, not graded"
    return rows, [(row, copy) for _, row, copy in latest.values()]


class _Writer:
    """Appends one CSV row per submission and flushes it at once."""

    def __init__(self, f, columns: list[tuple[str, str]], qualify: bool) -> None:
        self.f, self.columns, self.lock = f, columns, threading.Lock()
        self.csv = csv.writer(f)
        names = [f"{c} {q}" if qualify else q for c, q in columns]
        self.csv.writerow(["file", "student", "assignment", *names, "total", "possible",
                           "percent", "seconds", "status", "error", "flags"])
        f.flush()

    def write(self, r: Row) -> None:
        points = [f"{r.scores[q][0]:g}" if c == r.assignment and q in r.scores else ""
                  for c, q in self.columns]
        with self.lock:
            self.csv.writerow([r.file, r.student, r.assignment, *points, f"{r.total:g}",
                               f"{r.possible:g}" if r.possible else "", f"{r.percent:.1f}",
                               f"{r.seconds:.1f}", r.status, r.error, "; ".join(r.flags)])
            self.f.flush()


def _run(todo: list[tuple[Row, Path]], specs: dict, out: Path, timeout: float, jobs: int,
         limits: Limits, unsafe: bool, writer: _Writer, progress: bool) -> None:
    """Grade `todo` in `jobs` threads; on Ctrl-C kill what runs, keep the written rows."""
    live: set[Sandbox] = set()
    with ThreadPoolExecutor(jobs) as pool:
        futures = {pool.submit(grade_one, row, copy, specs[row.assignment], timeout, limits,
                               unsafe, live): row for row, copy in todo}
        try:
            pending = set(futures)
            while pending:
                done, pending = wait(pending, timeout=1, return_when=FIRST_COMPLETED)
                for fut in done:
                    row = futures[fut]
                    writer.write(row)
                    _feedback(row, out / "feedback")
                    if progress:
                        print(f"{row.file}: {row.status} {row.total:g}/{row.possible:g} "
                              f"({row.seconds:.1f} s) {row.error[:80]}", file=sys.stderr)
        except KeyboardInterrupt:
            for fut in futures:
                fut.cancel()
            # a worker may be starting a sandbox right now: keep killing until every one is done
            while not all(fut.done() for fut in futures):
                for sb in list(live):
                    sb.kill()
                time.sleep(0.2)
            print(f"interrupted: the finished rows are in {out / 'grades.csv'}", file=sys.stderr)
            raise


def grade_one(row: Row, notebook: Path, spec: dict, timeout: float, limits: Limits = LIMITS,
              unsafe: bool = False, live: set | None = None) -> Row:
    """Run one notebook in the sandbox and judge it; every failure lands in the row."""
    start, sandbox, expired = time.perf_counter(), Sandbox(limits, unsafe), threading.Event()
    live = set() if live is None else live
    names = list(dict.fromkeys(p for q in spec["questions"] for t in q["tests"]
                               for p in t["params"]))
    timer = threading.Timer(timeout, lambda: (expired.set(), sandbox.kill()))
    try:
        with notebook.open(encoding="utf-8") as f:
            cells = json.load(f).get("cells", [])
        sources = [_text(c.get("source", "")) for c in cells if c.get("cell_type") == "code"]
        row.flags = flags(sources, spec)
        live.add(sandbox)
        channel = Channel(sandbox.start(notebook, spec["assignment"]))
        timer.start()
        channel.send({"notebook": sandbox.notebook_path, "names": names})
        report = channel.receive()
        values = report.get("values")
        if type(values) is not dict:
            raise Ended("the notebook's process sent garbled data")
        row.error = str(report.get("error", ""))[:300]
        outcomes = run_tests(spec, values, channel)
        row.scores = {q: (o.points, o.possible) for q, o in outcomes.items()}
        row.failures = {q: o.failures for q, o in outcomes.items() if o.failures}
        row.status = "graded"
    except Ended as e:
        row.status, row.error = "crashed", f"{e} before it reported its answers"
    except (OSError, ValueError, UnicodeError, AttributeError) as e:
        row.status, row.error = "not graded", f"{type(e).__name__}: {e}"[:300]
    finally:
        timer.cancel()
        oom = sandbox.oom()
        sandbox.close()
        live.discard(sandbox)
    if oom or expired.is_set():
        row.status = (f"out of memory (limit {limits.memory_bytes / 1e9:g} GB)" if oom
                      else f"timed out after {timeout:g} s")
        row.error = row.error if row.scores else row.status
    row.seconds = time.perf_counter() - start
    return row


def _text(source: object) -> str:
    return "".join(source) if isinstance(source, list) else str(source)


def _feedback(row: Row, folder: Path) -> None:
    """One HTML page for the student: points per question and why hidden tests failed."""
    items = []
    for q, (points, possible) in row.scores.items():
        why = "".join(f"<li><code>{html.escape(m)}</code></li>" for m in row.failures.get(q, []))
        items.append(f"<tr><td>{q}</td><td>{points:g} / {possible:g}</td>"
                     f"<td><ul>{why}</ul></td></tr>")
    error = f"<p>First error in your notebook: <code>{html.escape(row.error)}</code></p>" \
        if row.error else ""
    page = (f"<!doctype html><meta charset='utf-8'><title>{html.escape(row.file)}</title>"
            f"<h1>{html.escape(row.assignment)}: {row.total:g} / {row.possible:g}</h1>"
            f"<p>{html.escape(row.file)} ({html.escape(row.status)})</p>{error}"
            "<table><tr><th>question</th><th>points</th><th>hidden tests that failed</th></tr>"
            f"{''.join(items)}</table><p>Only hidden tests give points; the public checks in "
            "the notebook give feedback.</p>")
    (folder / f"{Path(row.file).stem}.html").write_text(page, encoding="utf-8")


def _summary(rows: Sequence[Row], specs: dict, columns: list[tuple[str, str]], out: Path) -> None:
    """summary.md (per-question mean, distribution, statuses), gradescope.csv, canvas.csv."""
    lines = ["# Grading summary", ""]
    counted = [r for r in rows if r.status != "superseded" and r.assignment in specs]
    by_chapter = defaultdict(list)
    for r in counted:
        by_chapter[r.assignment].append(r)
    for chapter, group in sorted(by_chapter.items()):
        lines += [f"## {chapter}: {len(group)} students, mean "
                  f"{sum(r.percent for r in group) / len(group):.1f} %", "",
                  "| question | mean points | possible |", "|---|---|---|"]
        for c, q in columns:
            if c == chapter:
                got = [r.scores[q] for r in group if q in r.scores]
                possible = got[0][1] if got else 0
                mean = sum(p for p, _ in got) / len(group)
                lines.append(f"| {q} | {mean:.2f} | {possible:g} |")
        bins = Counter(min(int(r.percent // 10) * 10, 100) for r in group)
        lines += ["", "| percent | students |", "|---|---|"]
        lines += [f"| {b}{'' if b == 100 else f'–{b + 9}'} | {bins[b]} |"
                  for b in range(0, 101, 10)]
        lines.append("")
    statuses = Counter(r.status for r in rows)
    lines += ["## Statuses", ""] + [f"- {s}: {n}" for s, n in sorted(statuses.items())]
    flagged = [f"- {r.file}: {'; '.join(r.flags)}" for r in rows if r.flags]
    lines += ["", "## Flagged for a look", ""] + (flagged or ["- none"])
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    with (out / "gradescope.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["SID", "Assignment", "Total Score", "Max Points"])
        w.writerows([r.student, r.assignment, f"{r.total:g}", f"{r.possible:g}"] for r in counted)
    with (out / "canvas.csv").open("w", newline="") as f:
        w = csv.writer(f)
        names = sorted(by_chapter)
        w.writerow(["Student", "ID", "SIS User ID", "SIS Login ID", "Section", *names])
        w.writerow(["Points Possible", "", "", "", "",
                    *[f"{by_chapter[c][0].possible:g}" for c in names]])
        students = defaultdict(dict)
        for r in counted:
            students[r.student][r.assignment] = f"{r.total:g}"
        w.writerows(["", s, "", "", "", *[g.get(c, "") for c in names]]
                    for s, g in sorted(students.items()))
