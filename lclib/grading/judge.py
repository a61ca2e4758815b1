"""The judge: run the hidden tests, in this clean process, on a notebook's exported plain data.

The notebook ran in the sandbox; what came back is plain data (`plain.decode` builds exact types
only), and its functions are called through the sandbox (`Remote`) on the hidden tests' inputs.
Expected values and the tests' code never enter the sandbox.
"""

from __future__ import annotations

import ast
import json
import math
import re
import subprocess
from dataclasses import dataclass, field
from typing import Any

from lclib.grading.plain import Function, Unexportable, decode, encode

MAX_LINE = 64 * 2**20  # bytes of one message from the sandbox


class Ended(RuntimeError):
    """The notebook's process ended or broke the protocol."""


class Raised(Exception):
    """The student's function raised (the message is its error)."""


class Channel:
    """Line-delimited JSON to and from the runner; anything malformed ends the conversation."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc

    def send(self, message: dict) -> None:
        try:
            self.proc.stdin.write(json.dumps(message).encode() + b"\n")
            self.proc.stdin.flush()
        except (OSError, ValueError) as e:
            raise Ended("the notebook's process has ended") from e

    def receive(self) -> dict:
        try:
            line = self.proc.stdout.readline(MAX_LINE + 1)
        except (OSError, ValueError) as e:
            raise Ended("the notebook's process has ended") from e
        if not line.endswith(b"\n"):
            raise Ended("the notebook's process ended" if len(line) <= MAX_LINE
                        else "the notebook sent more than 64 MiB")
        try:
            message = json.loads(line)
        except (ValueError, RecursionError) as e:
            raise Ended("the notebook's process sent garbled data") from e
        if type(message) is not dict:
            raise Ended("the notebook's process sent garbled data")
        return message


class Remote:
    """A student's function, called in the sandbox; returns plain data decoded here."""

    def __init__(self, channel: Channel, name: str) -> None:
        self.channel, self.__name__ = channel, name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.channel.send({"call": self.__name__, "args": encode(list(args), top=False),
                           "kwargs": encode(kwargs, top=False)})
        reply = self.channel.receive()
        if "ok" in reply:
            return decode(reply["ok"])
        raise Raised(str(reply.get("raised", "the function failed"))[:300])


def bind(values: dict, channel: Channel) -> dict[str, Any]:
    """The test namespace: decoded answers, functions as `Remote`, non-finite numbers refused."""
    ns: dict[str, Any] = {}
    for name, data in values.items():
        if type(data) is dict and data.get("$missing") is True:
            continue
        value = decode(data)
        if isinstance(value, Function):
            value = Remote(channel, name)
        elif type(value) is float and not math.isfinite(value):
            value = Unexportable(f"{value} is not a finite number")
        ns[name] = value
    return ns


@dataclass
class Outcome:
    """A question's result: points earned, possible, and why hidden tests failed."""

    points: float = 0.0
    possible: float = 0.0
    failures: list[str] = field(default_factory=list)


def run_tests(spec: dict, values: dict, channel: Channel) -> dict[str, Outcome]:
    """Run every hidden test of `spec` on the exported `values` (fresh decode per test)."""
    results = {}
    for question in spec["questions"]:
        outcome = results[question["name"]] = Outcome()
        for test in question["tests"]:
            outcome.possible += test["points"]
            ns = bind({p: values[p] for p in test["params"] if p in values}, channel)
            try:
                exec(compile(test["source"], f"<hidden test {test['name']}>", "exec"),
                     {"__name__": "hidden_test", **ns})
            except Exception as e:  # a failed test, however it fails
                outcome.failures.append(f"{test['name']}: {_why(e)}")
            else:
                outcome.points += test["points"]
    return results


def _why(e: Exception) -> str:
    if isinstance(e, NameError):
        return f"not defined ({e})"
    text = str(e).strip() if not isinstance(e, AssertionError) or e.args else ""
    return (f"{type(e).__name__}: {text}" if text else type(e).__name__)[:300]


# --- flags ----------------------------------------------------------------------------------------

SUSPICIOUS = {  # what a grader wants to know about; found in the student's own cells
    "otter internals": r"\botter\b",
    "builtins": r"\b__builtins__\b|\bbuiltins\b",
    "IPython events": r"\.events\b|\bpost_run_cell\b|\bpre_run_cell\b",
    "/proc": r"/proc\b",
    "subprocess": r"\bsubprocess\b|\bos\.(system|popen|fork|exec\w*|spawn\w*|posix_spawn\w*)\b"
                  r"|\bmultiprocessing\b|\bpty\b|!\s*\w",
    "ctypes": r"\bctypes\b",
    "exit": r"\bos\._exit\b|\bsys\.exit\b",
}


def lclib_names(sources: list[str]) -> set[str]:
    """Names of lclib functions the sources use: ``lclib.a.b`` and ``from lclib.x import b``."""
    names = set()
    for source in sources:
        names |= {m.rsplit(".", 1)[-1] for m in re.findall(r"\blclib(?:\.\w+)+", source)}
        for match in re.finditer(r"from\s+lclib[\w.]*\s+import\s+\(?([\w\s,]+)", source):
            names |= {n.split(" as ")[0].strip() for n in match.group(1).split(",") if n.strip()}
    return names


def flags(cells: list[str], spec: dict) -> list[str]:
    """What the student's own cells (not in the handed-out notebook) do that graders should see."""
    own = [c for c in cells if c not in set(spec["template"])]
    found = sorted(f"lclib.{n}" for n in lclib_names(own) & set(spec["answer_functions"]))
    text = "\n".join(_code_only(c) for c in own)
    return found + [label for label, pattern in SUSPICIOUS.items() if re.search(pattern, text)]


def _code_only(source: str) -> str:
    """The source without comments and docstrings where it parses (so prose does not flag)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return source
    for node in ast.walk(tree):
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            node.value = ast.Constant(None)
    return ast.unparse(tree) + "\n" + "\n".join(
        line for line in source.splitlines() if line.lstrip().startswith(("!", "%")))
