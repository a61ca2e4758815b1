"""Drop inline scripts that Sphinx 7.4 writes twice into every page.

Inline scripts that extensions add after the builder starts (sphinx-thebe's config, the
togglebutton selector) are re-added at write time with filename ``""`` instead of ``None``, so
Sphinx's de-duplication misses them; sphinx-thebe's repeated ``const THEBE_JS_URL`` is then a
SyntaxError on every page.
"""

from __future__ import annotations

from typing import Any

from sphinx.application import Sphinx


def dedupe(app: Sphinx, pagename: str, templatename: str, context: dict, doctree: Any) -> None:
    """Keep the first of each inline script (the list is restored after every page)."""
    scripts, seen = context.get("script_files", []), set()
    for js in list(scripts):
        if js.filename:
            continue
        key = tuple(sorted(js.attributes.items()))
        if key in seen:
            scripts.remove(js)
        seen.add(key)


def setup(app: Sphinx) -> dict:
    app.connect("html-page-context", dedupe)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
