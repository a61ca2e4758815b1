"""Where a submission runs: bubblewrap (namespaces, read-only binds, uid 65534) in a cgroup.

`Sandbox(limits).start(notebook, name)` starts ``lclib.grading.runner`` on a copy of the notebook
seen as ``/tmp/<name>.ipynb``; `kill()` ends every process of that submission and `oom()` says
whether the memory limit killed one. The sandbox sees only /usr, the Python install, the venv and
lclib/, all read-only, a private /tmp, no network, no other process. With ``unsafe=True`` the
runner is a plain child process: no isolation and no limits (``UNSAFE_LOSES`` says what is lost).
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import lclib

NOBODY = 65534
UNSAFE_LOSES = (
    "without the sandbox a submission runs as you: it can read the hidden tests' code and the "
    "solutions on disk, write into the repository, $HOME and other submissions, use the network, "
    "leave processes behind and exhaust memory and processes (no limits). Scores are still judged "
    "outside the notebook's process, from plain data.")
CGROUP_ROOT = Path("/sys/fs/cgroup")
_NUMBERS = itertools.count()  # one cgroup name per submission (next() is atomic under the GIL)


@dataclass(frozen=True)
class Limits:
    """Per-submission limits: memory (bytes, tmpfs included), processes, CPUs."""

    memory_bytes: int = 2 * 10**9
    pids: int = 256
    cpus: float = 1.0


class Unavailable(RuntimeError):
    """The sandbox cannot run on this machine (the message says why and what to do)."""


def _own_cgroup(controller: str) -> str:
    """This process's cgroup path for `controller` ('' for the v2 unified hierarchy)."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, names, path = line.split(":", 2)
        if controller in names.split(",") or (controller == "" and names == ""):
            return path.lstrip("/")
    return ""


class Cgroup:
    """One submission's cgroup: v2 (memory, pids, cpu in one folder) or v1 (one per controller)."""

    def __init__(self, name: str, limits: Limits) -> None:
        self.v2 = (CGROUP_ROOT / "cgroup.controllers").is_file()
        if self.v2:
            parent = CGROUP_ROOT / _own_cgroup("")
            (parent / "cgroup.subtree_control").write_text("+memory +pids +cpu")
            self.dirs = {"all": parent / name}
        else:
            self.dirs = {c: CGROUP_ROOT / c / _own_cgroup(c) / name
                         for c in ("memory", "pids", "cpu")}
        for d in self.dirs.values():
            d.mkdir()
        quota = int(limits.cpus * 100_000)
        if self.v2:
            d = self.dirs["all"]
            _write(d / "memory.max", limits.memory_bytes)
            _write(d / "memory.swap.max", 0, optional=True)
            _write(d / "pids.max", limits.pids)
            _write(d / "cpu.max", f"{quota} 100000")
        else:
            _write(self.dirs["memory"] / "memory.limit_in_bytes", limits.memory_bytes)
            _write(self.dirs["memory"] / "memory.memsw.limit_in_bytes", limits.memory_bytes,
                   optional=True)
            _write(self.dirs["pids"] / "pids.max", limits.pids)
            _write(self.dirs["cpu"] / "cpu.cfs_period_us", 100_000)
            _write(self.dirs["cpu"] / "cpu.cfs_quota_us", quota)

    @property
    def procs_files(self) -> list[Path]:
        return [d / "cgroup.procs" for d in self.dirs.values()]

    def pids(self) -> set[int]:
        return {int(p) for f in self.procs_files if f.exists() for p in f.read_text().split()}

    def kill(self) -> None:
        """SIGKILL every member until none is left (v2: cgroup.kill)."""
        if self.v2 and (self.dirs["all"] / "cgroup.kill").exists():
            _write(self.dirs["all"] / "cgroup.kill", 1)
        deadline = time.monotonic() + 30  # a fork bomb's 256 processes take a while to reap
        while (pids := self.pids()) and time.monotonic() < deadline:
            for pid in pids:
                with _quiet():
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.02)

    def oom(self) -> bool:
        """Whether the kernel killed a member for exceeding the memory limit."""
        d = self.dirs.get("all") or self.dirs["memory"]
        f = d / ("memory.events" if self.v2 else "memory.oom_control")
        for line in f.read_text().splitlines() if f.exists() else []:
            key, _, n = line.partition(" ")
            if key == "oom_kill" and int(n) > 0:
                return True
        return not self.v2 and int((d / "memory.failcnt").read_text()) > 0

    def remove(self) -> None:
        """Kill the members and delete the cgroup (an exiting member can hold it a moment)."""
        self.kill()
        deadline = time.monotonic() + 30
        for d in self.dirs.values():
            while d.exists():
                try:
                    d.rmdir()
                except OSError:
                    if time.monotonic() > deadline:
                        break  # left behind empty-handed; harmless, and rmdir-able later
                    time.sleep(0.05)


class _quiet:
    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type | None, *_: object) -> bool:
        return kind is not None and issubclass(kind, OSError)


def _write(path: Path, value: object, optional: bool = False) -> None:
    try:
        path.write_text(str(value))
    except OSError:
        if not optional:
            raise


def unavailable() -> str:
    """Why the sandbox cannot run here ('' when it can)."""
    if not shutil.which("bwrap"):
        return "bubblewrap is not installed (apt-get install bubblewrap)"
    if os.geteuid() != 0:
        return "the grader must run as root (bwrap without user namespaces, then setpriv to nobody)"
    if not shutil.which("setpriv"):
        return "setpriv (util-linux) is not installed"
    try:
        Cgroup(f"lclib-probe-{os.getpid()}", Limits()).remove()
    except OSError as e:
        return f"cannot create a cgroup under {CGROUP_ROOT} ({e}); mount cgroups read-write"
    return ""


def _binds(path: Path) -> list[str]:
    """Read-only bind of `path`, its parent directories created traversable (0755)."""
    args = []
    for parent in reversed(path.parents[:-1]):
        if parent != Path("/tmp"):  # the private tmpfs, mounted already (mode 1777)
            args += ["--perms", "0755", "--dir", str(parent)]
    return args + ["--ro-bind", str(path), str(path)]


def bwrap_argv(notebook: Path, name: str) -> list[str]:
    """The bwrap command line that runs the runner on `notebook`, seen as /tmp/<name>.ipynb."""
    pkg = Path(lclib.__file__).resolve().parent
    argv = ["bwrap", "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
            "--unshare-cgroup-try", "--die-with-parent", "--new-session", "--clearenv",
            "--ro-bind", "/usr", "/usr", "--perms", "1777", "--tmpfs", "/tmp"]  # /tmp first:
    # the binds below may live under /tmp (a clone in /tmp) and must sit on top of the tmpfs
    for top in ("bin", "sbin", "lib", "lib64", "lib32"):
        p = Path("/") / top
        if p.is_symlink():
            argv += ["--symlink", os.readlink(p), str(p)]
        elif p.is_dir():
            argv += ["--ro-bind", str(p), str(p)]
    if Path("/etc/ld.so.cache").exists():
        argv += ["--ro-bind", "/etc/ld.so.cache", "/etc/ld.so.cache"]
    for path in {Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve(), pkg}:
        if not str(path).startswith("/usr/"):
            argv += _binds(path)
    env = {"HOME": "/tmp", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(pkg.parent),
           "LANG": "C.UTF-8", "MPLBACKEND": "Agg", "IPYTHONDIR": "/tmp/.ipython",
           "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1", "TMPDIR": "/tmp"}
    for key, value in env.items():
        argv += ["--setenv", key, value]
    argv += ["--proc", "/proc", "--dev", "/dev", "--ro-bind", str(notebook), f"/tmp/{name}.ipynb",
             "--chdir", "/tmp",
             "setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
             "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs",
             sys.executable, "-m", "lclib.grading.runner"]
    return argv


class Sandbox:
    """One submission's process: started, talked to through its stdin/stdout, killed whole."""

    def __init__(self, limits: Limits | None = None, unsafe: bool = False) -> None:
        self.limits, self.unsafe = limits or Limits(), unsafe
        self.cgroup: Cgroup | None = None
        self.proc: subprocess.Popen | None = None
        self._tmp: tempfile.TemporaryDirectory | None = None

    def start(self, notebook: Path, name: str) -> subprocess.Popen:
        """Start the runner; the notebook path to send it is `self.notebook_path`."""
        pipes = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "stderr": subprocess.DEVNULL}
        if self.unsafe:
            self._tmp = tempfile.TemporaryDirectory(prefix="lclib-grade-")
            copy = Path(self._tmp.name) / f"{name}.ipynb"
            shutil.copyfile(notebook, copy)
            self.notebook_path = str(copy)
            env = {"PATH": os.environ.get("PATH", "/usr/bin"), "HOME": self._tmp.name,
                   "PYTHONPATH": str(Path(lclib.__file__).resolve().parents[1]),
                   "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}
            self.proc = subprocess.Popen([sys.executable, "-m", "lclib.grading.runner"],
                                         cwd=self._tmp.name, env=env, start_new_session=True,
                                         **pipes)
            return self.proc
        self.notebook_path = f"/tmp/{name}.ipynb"
        self.cgroup = Cgroup(f"lclib-grade-{os.getpid()}-{next(_NUMBERS)}", self.limits)
        join = " && ".join(f'echo $$ > "{f}"' for f in self.cgroup.procs_files)
        self.proc = subprocess.Popen(["/bin/sh", "-c", f'{join} && exec "$@"', "sh",
                                      *bwrap_argv(notebook, name)], env={"PATH": "/usr/bin:/bin"},
                                     start_new_session=True, **pipes)
        return self.proc

    def kill(self) -> None:
        """End every process of this submission (idempotent)."""
        if self.cgroup is not None:
            self.cgroup.kill()
        if self.proc is not None:
            with _quiet():
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def oom(self) -> bool:
        return self.cgroup is not None and self.cgroup.oom()

    def close(self) -> None:
        self.kill()
        if self.cgroup is not None:
            self.cgroup.remove()
        if self._tmp is not None:
            self._tmp.cleanup()
