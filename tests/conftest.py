"""Shared test settings."""

import os

from hypothesis import settings

# Timing deadlines make property tests flaky on a loaded 2-core machine; correctness is the point.
settings.register_profile("default", deadline=None)
settings.register_profile("ci", deadline=None, derandomize=True)
settings.load_profile("ci" if os.environ.get("CI") else "default")
