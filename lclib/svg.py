"""SVG as strings: one element builder for the pictures, which draw lclib's own data structures.

    svg(320, 120, el("rect", x=4, y=4, width=40, height=20, class_="lc-fill-0"),
        el("text", "rank 0", x=24, y=18, text_anchor="middle"), label="the ring")

Attribute names take `_` for `-` (`text_anchor`) and a trailing `_` for Python keywords
(`class_`); text is escaped. Colours come from CSS classes, so pictures follow the page's theme.
"""

from __future__ import annotations

import html


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def _attr(name: str) -> str:
    return name.rstrip("_").replace("_", "-")


def _value(v: object) -> str:
    return f"{v:.2f}".rstrip("0").rstrip(".") if isinstance(v, float) else esc(v)


def el(tag: str, *children: str, text: object = None, **attrs: object) -> str:
    """`<tag attrs>children</tag>`; `text` (escaped) comes before the children; None attrs drop."""
    if not tag.isidentifier():
        raise ValueError(f"tag {tag!r} is not an element name; pass e.g. 'rect' or 'text'")
    a = "".join(f' {_attr(k)}="{_value(v)}"' for k, v in attrs.items() if v is not None)
    body = ("" if text is None else esc(text)) + "".join(children)
    return f"<{tag}{a}>{body}</{tag}>"


def svg(width: float, height: float, *children: str, label: str) -> str:
    """A root <svg> scaled to its box's width, with an accessible name (`label`)."""
    if not label:
        raise ValueError("pass label=, the picture's accessible name (what it shows, in words)")
    return el("svg", el("title", text=label), *children, viewBox=f"0 0 {width} {height}",
              role="img", aria_label=label, class_="lc-svg", xmlns="http://www.w3.org/2000/svg")
