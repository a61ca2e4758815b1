"""Execute the book's pages into jupyter-book's cache, several at a time.

myst-nb runs a page when the build reads it, one page after another, and a fresh build spends
nearly all its time there; much of a page is single-threaded (the kernel's start, imports, sympy,
the engine's start). So ``make book`` first runs the pages the cache lacks in parallel, `jobs` at
once, each kernel with cores / jobs torch threads, the largest source first. The build then
finds every page in the cache. A page that fails here is not cached: the build runs it again and
reports its error as it would have anyway.

    python -m lclib.execute [--jobs 2] [--root .] [--cache ROOT/_build/.jupyter_cache]
"""

from __future__ import annotations

import argparse
import os
import re
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import nullcontext
from multiprocessing import Lock
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def toc_pages(root: Path = ROOT) -> list[str]:
    """Every page of `_toc.yml` (root, parts, chapters, sections) in its order, no suffix."""
    import yaml

    found: list[str] = []

    def walk(entry: dict) -> None:
        for key in ("root", "file"):
            if key in entry:
                found.append(re.sub(r"\.(md|ipynb)$", "", entry[key]))
        for key in ("parts", "chapters", "sections"):
            for child in entry.get(key, []):
                walk(child)

    walk(yaml.safe_load((root / "_toc.yml").read_text()))
    return found


def pages(root: Path = ROOT) -> list[Path]:
    """The MyST notebooks of the table of contents, largest first."""
    from myst_nb.core.read import is_myst_markdown_notebook

    paths = [root / f"{name}.md" for name in toc_pages(root)]
    notebooks = [p for p in paths if p.exists() and is_myst_markdown_notebook(p.read_text())]
    return sorted(notebooks, key=lambda p: p.stat().st_size, reverse=True)


def stale(cache_dir: Path, paths: list[Path]) -> list[Path]:
    """The pages whose code the cache holds no executed notebook for."""
    from jupyter_cache import get_cache
    from myst_nb.core.read import myst_nb_reader_plugin

    cache, out = get_cache(str(cache_dir)), []
    for path in paths:
        try:
            cache.match_cache_notebook(myst_nb_reader_plugin(str(path)))
        except KeyError:
            out.append(path)
    return out


_STARTING: Any = None  # a lock the pool's workers share (`_share`)


def _share(lock: Any) -> None:
    global _STARTING
    _STARTING = lock


def execute(path: Path, timeout: int, threads: int) -> tuple[Path, Any, float, str]:
    """Run one page in its own folder, as the build does: (page, the executed notebook,
    seconds, the error or ""). Kernels start one at a time: two starting at once can draw the
    same free TCP port ("Address already in use")."""
    from myst_nb.core.read import myst_nb_reader_plugin
    from nbclient import NotebookClient

    os.environ["OMP_NUM_THREADS"] = str(threads)  # the kernel inherits it
    notebook = myst_nb_reader_plugin(str(path))
    client = NotebookClient(notebook, timeout=timeout, record_timing=False)  # timing: in the hash
    start, error = time.perf_counter(), ""
    try:
        with _STARTING or nullcontext():
            client.km = client.create_kernel_manager()
            client.start_new_kernel(cwd=str(path.parent))
            client.start_new_kernel_client()
        client.execute()
    except Exception as err:  # noqa: BLE001 - reported; the build runs the page again
        error = f"{type(err).__name__}: {err}"[:300]
    return path, notebook, time.perf_counter() - start, error


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lclib.execute", description=__doc__.split(
        "\n")[0])
    parser.add_argument("--jobs", type=int, default=2, help="pages at once (default 2)")
    parser.add_argument("--root", type=Path, default=ROOT, help="the book (with _toc.yml)")
    parser.add_argument("--cache", type=Path, default=None,
                        help="jupyter-cache folder (default ROOT/_build/.jupyter_cache)")
    parser.add_argument("--timeout", type=int, default=300, help="seconds per cell")
    args = parser.parse_args(argv)
    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn

    if args.jobs < 1:
        raise SystemExit(f"pass --jobs 1 or more, not {args.jobs}")
    cache_dir = args.cache or args.root / "_build" / ".jupyter_cache"
    todo = stale(cache_dir, pages(args.root))
    threads = max(1, (os.cpu_count() or 1) // args.jobs)
    start = time.perf_counter()
    cache = get_cache(str(cache_dir))
    with ProcessPoolExecutor(args.jobs, initializer=_share, initargs=(Lock(),)) as pool:
        futures = [pool.submit(execute, p, args.timeout, threads) for p in todo]
        for future in as_completed(futures):  # cached here, one writer for the database
            path, notebook, seconds, error = future.result()
            if not error:
                cache.cache_notebook_bundle(CacheBundleIn(notebook, str(path), data={
                    "execution_seconds": seconds}), check_validity=False, overwrite=True)
            print(f"{path.relative_to(args.root)}: {seconds:.0f} s" + (f", failed ({error}); the "
                  "build runs it again" if error else ""), flush=True)
    print(f"{len(todo)} pages executed in {time.perf_counter() - start:.0f} s, {args.jobs} at "
          f"a time ({threads} torch threads each)")


if __name__ == "__main__":
    main()
