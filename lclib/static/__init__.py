"""The explorers' and quizzes' CSS and JS, kept as real files that editors and linters read."""

from __future__ import annotations

from importlib import resources


def read(name: str) -> str:
    """The text of static file `name` (e.g. "explorer.js"), shipped as package data."""
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")
