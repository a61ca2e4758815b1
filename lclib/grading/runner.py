"""Runs inside the sandbox: execute one notebook, export its answers, call its functions.

Protocol (one JSON object a line, on the process's original stdin and stdout; the notebook's own
stdin, stdout and stderr are /dev/null): the judge sends ``{"notebook": path, "names": [...]}``;
the runner executes every code cell, then answers ``{"error": first cell error, "values":
{name: plain data}}``; then, for each ``{"call": name, "args": [...], "kwargs": {...}}`` it
answers ``{"ok": plain data}`` or ``{"raised": "Error: message"}``. Nothing here is trusted:
the judge only ever reads plain data from it.
"""

from __future__ import annotations

import json
import os
import sys
import types
from typing import Any

from lclib.grading.plain import decode, encode


class _Silent:
    """Stands in for otter's Notebook inside the sandbox: checks do nothing, grading is outside."""

    def __init__(self, *_: Any, **__: Any) -> None:
        pass

    def __getattr__(self, name: str) -> Any:
        return lambda *_, **__: None


class _Discard:
    """A text stream that drops everything written to it."""

    encoding, errors = "utf-8", "strict"

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return 1


def describe(e: BaseException) -> str:
    """``'Error: message'``, short, even when the student's exception misbehaves."""
    try:
        return f"{type(e).__name__}: {e}"[:300]
    except Exception:  # a __str__ that raises
        return type(e).__name__[:100]


def _shell() -> Any:
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    config = Config()
    config.HistoryManager.enabled = False
    return InteractiveShell.instance(config=config)


def execute(cells: list[dict], shell: Any) -> str:
    """Run the code cells in order, going on after errors; return the first error."""
    first = ""
    for cell in cells:
        if cell.get("cell_type") != "code":
            continue
        source = cell.get("source", "")
        source = "".join(source) if isinstance(source, list) else str(source)
        result = shell.run_cell(source, store_history=False)
        error = result.error_before_exec or result.error_in_exec
        if error is not None and not first:
            line = source.strip().splitlines()[0][:60] if source.strip() else ""
            first = f'{describe(error)} (in the cell starting "{line}")'[:300]
    return first


def _encode(ns: dict, name: str) -> Any:
    if name not in ns:
        return {"$missing": True}
    try:
        return encode(ns[name])
    except Exception as e:  # a student's object whose attributes raise
        return {"$bad": describe(e)}


def main() -> None:
    """Serve the protocol on the original stdin/stdout (see the module docstring)."""
    rx, tx = os.fdopen(os.dup(0), "rb"), os.fdopen(os.dup(1), "wb")
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    sys.stdout = sys.stderr = _Discard()  # the notebook's output goes nowhere, unbuffered

    def send(message: dict) -> None:
        tx.write(json.dumps(message).encode() + b"\n")
        tx.flush()

    request = json.loads(rx.readline())
    with open(request["notebook"], encoding="utf-8") as f:
        cells = json.load(f).get("cells", [])
    sys.modules["otter"] = types.ModuleType("otter")
    sys.modules["otter"].Notebook = _Silent
    shell = _shell()
    error = execute(cells, shell)
    ns = shell.user_ns
    values = {n: _encode(ns, n) for n in request["names"]}
    send({"error": error, "values": values})
    for line in rx:
        call = json.loads(line)
        try:
            out = ns[call["call"]](*decode(call["args"]), **decode(call["kwargs"]))
            reply = {"ok": encode(out, top=False)}
            json.dumps(reply)
        except BaseException as e:  # noqa: BLE001 - sys.exit and KeyboardInterrupt included
            reply = {"raised": describe(e)}
        send(reply)


if __name__ == "__main__":
    main()
