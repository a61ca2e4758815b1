"""The built site in headless Chromium with the network cut off.

Every page of the table of contents loads without errors or requests leaving 127.0.0.1, math is
typeset, explorers redraw and quizzes grade. Screenshots go to ``_build/screenshots/`` and the
measurements (page loads, explorer redraw, site size) to ``_build/site-metrics.json``.
Needs ``_build/html`` (``make book``); builds it when missing.
"""

from __future__ import annotations

import functools
import json
import re
import statistics
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Locator, Page, sync_playwright

from lclib.execute import toc_pages

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "_build"
HTML = BUILD / "html"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"]  # offline
VIEWPORT = {"width": 1280, "height": 900}
LOAD_JS = "performance.getEntriesByType('navigation')[0].loadEventEnd"
REDRAW_BUDGET_MS = 16  # one frame at 60 Hz
# Page loads. "cold": first visit, empty cache: 0.8-2 s measured on 2 busy cores (MathJax ~0.4
# s), so its bound is lenient. "warm": a revisit with theme and MathJax cached, as for a reader
# moving through the book. A page over either budget is loaded again, up to LOAD_TRIES times, and
# the best counts: what a retry filters out is other jobs on shared CI cores, not the page.
LOAD_BUDGET_MS = 1000
COLD_LOAD_BUDGET_MS = 3000
LOAD_TRIES = 3


PAGES = toc_pages()  # lclib.execute reads the same table of contents


def pages_with(css_class: str) -> list[str]:
    """Pages whose built HTML has an element of `css_class`."""
    pattern = re.compile(rf"""class=["'](?:[^"']*\s)?{css_class}[\s"']""")
    return [p for p in PAGES if pattern.search((HTML / f"{p}.html").read_text(encoding="utf-8"))]


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="session")
def site() -> Iterator[str]:
    """Base URL of _build/html served on 127.0.0.1 (built first if missing)."""
    if not (HTML / "index.html").exists():
        jupyter_book = Path(sys.executable).with_name("jupyter-book")
        cmd = [str(jupyter_book), "build", ".", "--path-output", ".", "-q"]
        subprocess.run(cmd, cwd=ROOT, check=True)
    server = ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(HTML)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def metrics(site: str) -> Iterator[dict]:
    """Measurements the tests add to; printed and written to _build/site-metrics.json."""
    data: dict = {"page_load_ms": {}, "redraw_median_ms": {}}
    yield data
    data["site_bytes"] = sum(f.stat().st_size for f in HTML.rglob("*") if f.is_file())
    for kind in ("cold", "warm"):
        loads = [load[kind] for load in data["page_load_ms"].values()]
        data[f"heaviest_page_load_ms_{kind}"] = max(loads, default=None)
    if data["redraw_median_ms"]:
        data["worst_redraw_median_ms"] = max(data["redraw_median_ms"].values())
    (BUILD / "site-metrics.json").write_text(json.dumps(data, indent=2) + "\n")
    print("\nsite metrics:", json.dumps(data, indent=2))


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class Visit:
    """A page in a fresh context (cold cache) that records every problem while it is open.

    `mode` is the theme's: "light" or "dark", set as a reader's choice is (the theme keeps it in
    localStorage) and as the system's colour scheme (the theme's default mode is "auto").
    """

    def __init__(self, browser: Browser, site: str, name: str, mode: str = "light") -> None:
        self.problems: list[str] = []
        self.context = browser.new_context(viewport=VIEWPORT, color_scheme=mode)
        self.context.add_init_script(
            f"localStorage.setItem('mode', '{mode}'); localStorage.setItem('theme', '{mode}');")
        # Offline proof: anything not served by our server is aborted and fails the test.
        self.context.route(re.compile(rf"^(?!{re.escape(site)})"), self._block)
        self.page: Page = self.context.new_page()
        self.page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        self.page.on("requestfailed", lambda r: self.problems.append(
            f"request failed: {r.url} ({r.failure})"))
        self.page.on("response", lambda r: r.status >= 400 and self.problems.append(
            f"HTTP {r.status}: {r.url}"))
        self.page.on("console", lambda m: m.type == "error" and not m.location["url"].endswith(
            "/favicon.ico") and self.problems.append(f"console error: {m.text}"))
        self.page.goto(f"{site}{name}.html", wait_until="load")
        self.page.wait_for_load_state("networkidle")

    def _block(self, route) -> None:
        self.problems.append(f"external request: {route.request.url}")
        route.abort()

    def check(self) -> None:
        """Fail on the problems recorded since the last check."""
        problems, self.problems = self.problems, []
        assert not problems, "\n".join(problems)

    def close(self) -> None:
        self.context.close()
        self.check()


@pytest.fixture
def visit(browser: Browser, site: str) -> Iterator:
    """Open pages by name, each fresh; each is checked for problems when the test ends."""
    visits: list[Visit] = []

    def open_page(name: str, mode: str = "light") -> Visit:
        visits.append(Visit(browser, site, name, mode))
        assert visits[-1].page.evaluate("document.documentElement.dataset.theme") == mode, name
        return visits[-1]

    yield open_page
    for v in visits:
        v.close()


@pytest.fixture(scope="session")
def opened(browser: Browser, site: str) -> Iterator[dict[str, Visit]]:
    """One light visit per page, kept open for the session."""
    visits: dict[str, Visit] = {}
    yield visits
    for v in visits.values():
        v.context.close()


@pytest.fixture
def driven(browser: Browser, site: str, opened: dict[str, Visit]) -> Iterator:
    """Open pages by name in the session's shared visit (for the tests that drive one kind of
    block each: explorers, quizzes, pictures; none touches another's); its problems are checked
    when each test ends."""
    used: list[Visit] = []

    def open_page(name: str) -> Visit:
        if name not in opened:
            opened[name] = Visit(browser, site, name)
            assert opened[name].page.evaluate("document.documentElement.dataset.theme") == "light"
        used.append(opened[name])
        return opened[name]

    yield open_page
    for v in used:
        v.check()


@pytest.mark.parametrize("name", PAGES)
def test_page(name: str, visit, metrics: dict) -> None:
    """Loads clean; math typeset (no TeX errors), widgets drawn, blocks legible; screenshot."""
    v = visit(name)
    n_math = v.page.locator(".math").count()
    if n_math:
        v.page.wait_for_function(
            "n => document.querySelectorAll('mjx-container').length >= n", arg=n_math)
        assert v.page.locator("mjx-merror").count() == 0, "MathJax reports a TeX error"
    n_widgets = v.page.locator("script[type='application/vnd.jupyter.widget-view+json']").count()
    if n_widgets:
        v.page.wait_for_function(
            "n => document.querySelectorAll('.jupyter-widgets').length >= n", arg=n_widgets)
    shot = BUILD / "screenshots" / f"{name}.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    v.page.screenshot(path=shot, full_page=True)
    _check_theme(v.page, name, "light")


def _loads(browser: Browser, url: str, n: int) -> list[float]:
    """loadEventEnd (ms) of `n` loads of `url` in a fresh context: the first cold, then cached."""
    context = browser.new_context(viewport=VIEWPORT)
    page, times = context.new_page(), []
    for _ in range(n):
        page.goto(url, wait_until="load")
        times.append(page.evaluate(LOAD_JS))
    context.close()
    return times


def test_load_times(browser: Browser, site: str, metrics: dict) -> None:
    """Each page's load from localhost (navigation timing), cold and warm.

    Timed without the route handler (it adds a round trip per request); the browser's
    --host-resolver-rules still keep it offline.
    """
    _loads(browser, f"{site}{PAGES[0]}.html", 1)  # warms the browser process, not a cache
    for name in PAGES:
        cold, warm = [], []
        while len(cold) < LOAD_TRIES and not (
                cold and min(cold) <= COLD_LOAD_BUDGET_MS and min(warm) <= LOAD_BUDGET_MS):
            first, again = _loads(browser, f"{site}{name}.html", 2)
            cold.append(first)
            warm.append(again)
        metrics["page_load_ms"][name] = {"cold": round(min(cold)), "warm": round(min(warm)),
                                         "loads": 2 * len(cold)}
    loads = metrics["page_load_ms"]
    assert max(t["warm"] for t in loads.values()) <= LOAD_BUDGET_MS, loads
    assert max(t["cold"] for t in loads.values()) <= COLD_LOAD_BUDGET_MS, loads


def test_book_has_math(site: str) -> None:
    assert pages_with("math"), "no page has math; book/appendix/notation should"


# Explorers drawn by lclib; not the copies inside an ipywidget's HTML output.
EXPLORER = ".lc-explorer:not(.jupyter-widgets .lc-explorer)"
STATE_JS = """root => JSON.stringify({
    readouts: [...root.querySelectorAll('.lc-readout-value')].map(e => e.textContent),
    charts: [...root.querySelectorAll('svg.lc-chart')].map(e => e.innerHTML),
    markers: [...root.querySelectorAll('.lc-marker')].map(e => e.outerHTML)})"""
SET_JS = """(el, value) => {
    el.value = value;
    el.dispatchEvent(new Event(el.tagName === 'SELECT' ? 'change' : 'input', {bubbles: true}));
}"""
TIMED_STEPS_JS = """(el, n) => {
    const lo = +el.min, hi = +el.max, step = +el.step || 1, root = el.closest('.lc-explorer');
    const values = []; for (let v = lo; v <= hi; v += step) values.push(v);
    const sweep = values.concat(values.slice(1, -1).reverse());
    const times = [];
    for (let i = 1; i <= n; i++) {
        const t0 = performance.now();
        el.value = sweep[i % sweep.length];
        el.dispatchEvent(new Event('input', {bubbles: true}));
        root.offsetHeight;  // include the style and layout the redraw causes
        times.push(performance.now() - t0);
    }
    return times;
}"""


def test_explorers(driven, metrics: dict) -> None:
    """Every slider and dropdown of every explorer changes what it shows; redraws are fast."""
    pages = pages_with("lc-explorer")
    assert pages, "no page of the book has an explorer (.lc-explorer)"
    for name in pages:
        explorers = driven(name).page.locator(EXPLORER)
        assert explorers.count(), f"{name}: explorer markup but nothing rendered"
        for i in range(explorers.count()):
            root, where = explorers.nth(i), f"{name} explorer {i}"
            sliders, selects = root.locator("input[type=range]"), root.locator("select")
            assert sliders.count(), f"{where} has no slider"
            shown = {k for k, v in json.loads(root.evaluate(STATE_JS)).items() if v}
            moved = set()
            for j in range(sliders.count()):
                slider = sliders.nth(j)
                lo, hi = (float(slider.get_attribute(a)) for a in ("min", "max"))
                changed = _changes(root, slider, [lo, hi, (lo + hi) / 2])
                assert changed, f"{where}: slider {j} changes nothing"
                moved |= changed
            assert shown <= moved, f"{where}: no slider changes {shown - moved}"
            for j in range(selects.count()):
                select = selects.nth(j)
                options = select.locator("option").evaluate_all("os => os.map(o => o.value)")
                changed = _changes(root, select, options)
                assert "readouts" in changed or "readouts" not in shown, (
                    f"{where}: dropdown {j} does not change the readout")
            times = sliders.first.evaluate(TIMED_STEPS_JS, 50)
            metrics["redraw_median_ms"][where] = round(statistics.median(times), 3)
    worst = max(metrics["redraw_median_ms"].values())
    assert worst <= REDRAW_BUDGET_MS, f"slider-to-redraw median {worst} ms"


def _changes(root: Locator, control: Locator, values: list) -> set[str]:
    """Which parts of the explorer (readouts, charts, markers) differ across control values."""
    states = []
    for value in values:
        control.evaluate(SET_JS, str(value))
        states.append(json.loads(root.evaluate(STATE_JS)))
    return {k for k in states[0] if any(s[k] != states[0][k] for s in states)}


def test_quizzes(driven) -> None:
    """Each question says wrong to a wrong answer and correct to the answer in its HTML."""
    pages = pages_with("lc-quiz")
    assert pages, "no page of the book has a quiz (.lc-quiz)"
    for name in pages:
        questions = driven(name).page.locator(".lc-quiz .lc-question")
        assert questions.count(), f"{name}: quiz markup but no questions"
        for i in range(questions.count()):
            q, where = questions.nth(i), f"{name} question {i}"
            answer = q.get_attribute("data-answer")
            if q.get_attribute("data-kind") == "mc":
                radio = "input[type=radio]"
                answers = [(q.locator(f"{radio}:not([value='{answer}'])").first.check, "lc-wrong"),
                           (q.locator(f"{radio}[value='{answer}']").check, "lc-correct")]
            else:
                box = q.locator("input.lc-answer")
                answers = [(functools.partial(box.fill, repr(float(answer) * 10 + 1)), "lc-wrong"),
                           (functools.partial(box.fill, answer), "lc-correct")]
            for give, verdict in answers:
                give()
                q.locator("button.lc-check").click()
                feedback = q.locator(".lc-feedback")
                assert verdict in feedback.get_attribute("class").split(), where
                assert feedback.inner_text().strip(), f"{where}: no feedback text"


# Pictures (lclib.picture) drawn by lclib; not the copies inside an ipywidget's HTML output.
PICTURE = ".lc-picture:not(.jupyter-widgets .lc-picture)"
SHOWN_JS = """root => [root.getAttribute('data-point'),
                       root.querySelector('.lc-stage').innerHTML]"""
# How many distinct data-point values each animated picture shows while `ms` pass (every 20 ms).
WATCH_JS = """ms => new Promise(done => {
    const roots = [...document.querySelectorAll('.lc-picture button.lc-play')]
        .map(b => b.closest('.lc-picture')).filter(r => !r.closest('.jupyter-widgets'));
    const seen = roots.map(r => new Set([r.getAttribute('data-point')]));
    const timer = setInterval(() => roots.forEach((r, i) => seen[i].add(
        r.getAttribute('data-point'))), 20);
    setTimeout(() => { clearInterval(timer); done(seen.map(s => s.size)); }, ms);
})"""
ANIMATES_WITHIN_MS = 2000


def test_pictures(driven) -> None:
    """Every picture draws; every control changes the frame shown; play animates, pause stops."""
    pages = pages_with("lc-picture")
    assert pages, "no page of the book has a picture (.lc-picture)"
    for name in pages:
        page = driven(name).page
        roots = page.locator(PICTURE)
        assert roots.count(), f"{name}: picture markup but nothing rendered"
        for i in range(roots.count()):
            root, where = roots.nth(i), f"{name} picture {i}"
            box = root.locator(".lc-stage svg").first.bounding_box()
            assert box and box["width"] > 0 and box["height"] > 0, f"{where}: no drawing"
            controls = root.locator("[data-axis]")
            for j in range(controls.count()):
                control = controls.nth(j)
                if control.evaluate("el => el.tagName") == "SELECT":
                    values = control.locator("option").evaluate_all("os => os.map(o => o.value)")
                else:
                    hi = int(control.get_attribute("max"))
                    values = sorted({0, hi // 2, hi})
                shown = []
                for value in values:
                    control.evaluate(SET_JS, str(value))
                    shown.append(root.evaluate(SHOWN_JS))
                points, stages = zip(*shown, strict=True)
                assert len(set(points)) == len(values), f"{where}: control {j} moves no point"
                assert len(set(stages)) > 1, f"{where}: control {j} changes no frame"
        _plays_and_pauses(page, name)


def _plays_and_pauses(page: Page, name: str) -> None:
    """All animated pictures of a page at once: frames change within ~2 s; pause stops them."""
    buttons = page.locator(f"{PICTURE} button.lc-play")
    if not buttons.count():
        return
    interval = max(json.loads(b.evaluate(
        "b => b.closest('.lc-picture').querySelector('script.lc-data').textContent"))["interval"]
        for b in buttons.all())
    window = max(ANIMATES_WITHIN_MS, 2 * interval)
    for i in range(buttons.count()):
        buttons.nth(i).click()
        assert buttons.nth(i).get_attribute("aria-pressed") == "true", f"{name}: play {i}"
    seen = page.evaluate(WATCH_JS, window)
    assert all(n >= 2 for n in seen), f"{name}: frames shown while playing for {window} ms: {seen}"
    for i in range(buttons.count()):
        buttons.nth(i).click()
        assert buttons.nth(i).get_attribute("aria-pressed") == "false", f"{name}: pause {i}"
    seen = page.evaluate(WATCH_JS, int(1.5 * interval))
    assert all(n == 1 for n in seen), f"{name}: frames shown after pause: {seen}"


# WCAG 2.1 contrast of each rendered text inside `root` against what is behind it: the text's
# colour (SVG text: its fill) with its alpha and its ancestors' opacity, over the backgrounds of
# its ancestors composited from <html> down, or over the SVG shape it is drawn on (a filled box).
CONTRAST_JS = """root => {
    const rgba = s => { const v = (s.match(/[\\d.]+/g) || []).map(Number);
        return v.length >= 3 ? [v[0], v[1], v[2], v.length > 3 ? v[3] : 1] : null; };
    const over = (top, bottom) => { const a = top[3] + bottom[3] * (1 - top[3]);
        return [0, 1, 2].map(k => (top[k] * top[3] + bottom[k] * bottom[3] * (1 - top[3])) / a)
            .concat([a]); };
    const lum = c => { const l = c.slice(0, 3).map(v => { v /= 255;
        return v <= 0.04045 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
        return 0.2126 * l[0] + 0.7152 * l[1] + 0.0722 * l[2]; };
    const page = el => {
        const chain = []; for (let e = el; e; e = e.parentElement) chain.unshift(e);
        let bg = [255, 255, 255, 1];
        for (const e of chain)
            bg = over(rgba(getComputedStyle(e).backgroundColor) || [0, 0, 0, 0], bg);
        return bg; };
    const shapeBehind = (el, bg) => {
        let r = el.getBoundingClientRect();
        if (r.top < 0 || r.bottom > innerHeight) { el.scrollIntoView({block: 'center'});
                                                   r = el.getBoundingClientRect(); }
        for (const x of [0.5, 0.1, 0.3, 0.7, 0.9])  // a spaced-out text may centre on a gap
            for (const h of document.elementsFromPoint(r.x + x * r.width, r.y + r.height / 2)) {
                if (h === el || el.contains(h) || h.contains(el)) continue;
                if (!(h instanceof SVGGeometryElement)) break;
                const s = getComputedStyle(h), f = rgba(s.fill);
                const a = f ? f[3] * +s.fillOpacity * +s.opacity : 0;
                if (a > 0) return over([f[0], f[1], f[2], a], bg);
            }
        return bg; };
    const background = page(root), walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
    const worst = {};
    for (let n = walker.nextNode(); n; n = walker.nextNode()) {
        const el = n.parentElement, text = n.textContent.trim();
        if (!text || el.closest('script, style, option, title, desc')) continue;
        if (!el.getClientRects().length) continue;
        const style = getComputedStyle(el), svg = el instanceof SVGElement;
        let c = rgba(svg ? style.fill : style.color);
        if (!c) continue;
        let alpha = c[3] * (svg ? +style.fillOpacity : 1);
        for (let e = el; e && e !== root.parentElement; e = e.parentElement)
            alpha *= +getComputedStyle(e).opacity;
        const bg = svg ? shapeBehind(el, background) : page(el);
        c = over([c[0], c[1], c[2], alpha], bg);
        const [hi, lo] = [lum(c), lum(bg)].sort((a, b) => b - a);
        const ratio = (hi + 0.05) / (lo + 0.05);
        if (!(text in worst) || ratio < worst[text]) worst[text] = ratio;
    }
    return {background: lum(background), worst};
}"""
MIN_CONTRAST = 4.5  # WCAG 2.1 AA, normal text


# Every quiz answer revealed, and one feedback of each verdict shown (test_quizzes gives them by
# answering), so that all of a quiz's text is on screen.
QUIZ_OPEN_JS = """root => {
    root.querySelectorAll('.lc-reveal').forEach(b => b.click());
    const fb = root.querySelectorAll('.lc-feedback');
    fb.forEach((f, i) => f.classList.add(i % 2 ? 'lc-wrong' : 'lc-correct'));
}"""


def test_dark_mode(visit) -> None:
    """In the theme's dark mode, explorers, pictures and quizzes are dark too, text legible."""
    with_blocks = {p for kind in ("lc-explorer", "lc-picture", "lc-quiz") for p in pages_with(kind)}
    assert with_blocks, "no page of the book has an explorer, a picture or a quiz"
    for name in [p for p in PAGES if p in with_blocks]:
        _check_theme(visit(name, "dark").page, name, "dark")


def _check_theme(page: Page, name: str, mode: str) -> None:
    """Each block's background follows `mode`; its text keeps 4.5:1; block screenshots saved."""
    for quiz in page.locator(".lc-quiz").all():
        quiz.evaluate(QUIZ_OPEN_JS)
    shots = BUILD / "screenshots" / mode
    shots.mkdir(parents=True, exist_ok=True)
    for i, root in enumerate(page.locator(f"{EXPLORER}, {PICTURE}, .lc-quiz").all()):
        where = f"{name} block {i} ({mode})"
        found = root.evaluate(CONTRAST_JS)
        root.screenshot(path=shots / f"{name.replace('/', '-')}-{i}.png")
        if mode == "dark":
            assert found["background"] < 0.1, f"{where}: a light box on a dark page"
        else:
            assert found["background"] > 0.7, f"{where}: a dark box on a light page"
        low = {t: round(r, 2) for t, r in found["worst"].items() if r < MIN_CONTRAST}
        assert found["worst"] and not low, f"{where}: text below {MIN_CONTRAST}:1: {low}"


def test_sympy_is_mathjax(driven) -> None:
    """sympy results reach the page as LaTeX that MathJax typesets, not as PNG pictures."""
    for notebook in (BUILD / "jupyter_execute").rglob("*.ipynb"):
        for cell in json.loads(notebook.read_text(encoding="utf-8"))["cells"]:
            for out in cell.get("outputs", []):
                data = out.get("data", {})
                assert not ("text/latex" in data and "image/png" in data), (
                    f"{notebook.name}: a sympy result carries a PNG; call "
                    "sp.init_printing(use_latex='mathjax')")
    page = driven("book/ch01-crossover").page
    n_latex = page.locator(".cell_output .text_latex").count()
    assert n_latex, "ch01 shows no sympy result as LaTeX"
    page.wait_for_function(
        "n => document.querySelectorAll('.cell_output .text_latex mjx-container').length >= n",
        arg=n_latex)
    assert page.locator(".cell_output .text_latex img").count() == 0
