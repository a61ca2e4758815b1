"""Shared test settings."""

import os
from pathlib import Path

import pytest
from hypothesis import settings

# Parallel workers share the cores: torch's default of one thread per core in every worker (and in
# every notebook kernel a worker starts) oversubscribes them, and OpenMP then runs 5-15x slower.
if workers := int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", 0)):
    os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // workers))

# Timing deadlines make property tests flaky on a loaded 2-core machine; correctness is the point.
settings.register_profile("default", deadline=None)
settings.register_profile("ci", deadline=None, derandomize=True)
settings.load_profile("ci" if os.environ.get("CI") else "default")


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Grading: exercises/ and the autograder built from solutions/ into a temporary folder,
    once per run: parallel workers share it (the first builds, under a lock; ~10 s)."""
    from filelock import FileLock

    from lclib import grading

    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent  # the run's folder, above each worker's own
    out = shared / "assign"
    with FileLock(shared / "assign.lock"):
        if not (out / "done").exists():
            grading.assign(Path(__file__).resolve().parents[1] / "solutions", out / "exercises",
                           out / "build", run_tests=False)
            (out / "done").touch()
    return out


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The slow tests first: parallel workers then end together, not on one long test."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
