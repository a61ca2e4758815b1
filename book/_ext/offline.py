"""Serve MathJax and the ipywidgets embedder from the site itself, so pages work offline.

Sphinx loads MathJax from a CDN and myst-nb loads require.js and the widget embed manager from
CDNs on pages with widget state. This extension downloads pinned npm tarballs once into
``_build/vendor/`` (each checked against its pinned sha512), copies the files pages need into
``<html>/_vendor/<package>-<version>/`` and points ``mathjax_path`` and ``nb_ipywidgets_js`` at
them. Not under ``_static/``: Jupyter Book would add every .js file there to every page.
"""

from __future__ import annotations

import base64
import hashlib
import tarfile
import urllib.request
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path

from sphinx.application import Sphinx
from sphinx.config import Config
from sphinx.errors import ExtensionError
from sphinx.util import logging

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Package:
    """One npm tarball, pinned by version and integrity, and the files of it the site needs."""

    name: str
    version: str
    integrity: str  # the registry's dist.integrity: sha512 of the .tgz, base64
    files: tuple[str, ...]  # glob patterns relative to the tarball's package/ folder

    @property
    def stem(self) -> str:
        return f"{self.name.rsplit('/', 1)[-1]}-{self.version}"

    @property
    def url(self) -> str:
        return f"https://registry.npmjs.org/{self.name}/-/{self.stem}.tgz"

    @property
    def site_dir(self) -> str:
        return f"_vendor/{self.stem}"


MATHJAX = Package(
    "mathjax",
    "3.2.2",  # Sphinx 7.4's default is mathjax@3 (tex-mml-chtml) from jsDelivr
    "sha512-Bt+SSVU8eBG27zChVewOicYs7Xsdt40qm4+UpHyX7k0/O9NliPc+x77k1/FEsPsjKPZGJvtRZM1vO+geW0OhGw==",
    (
        "es5/tex-mml-chtml.js",
        "es5/output/chtml/fonts/woff-v2/*",
        "es5/input/*/extensions/*",  # loaded on demand by \require and autoload
        "es5/a11y/*",  # the accessibility menu's explorer and speech
        "es5/sre/*",
    ),
)
REQUIREJS = Package(
    "requirejs",
    "2.3.4",  # myst-nb's default (from cdnjs)
    "sha512-qPD5gRrj6kGQ0ZySAJgqbArkaDqPMbQIT0zSZDkIv1mfA17w/tR2Faq5l2qqRf2CdQx6FWln9nUrgd2UDzb19A==",
    ("require.js",),
)
WIDGETS = Package(
    "@jupyter-widgets/html-manager",
    "1.0.6",  # myst-nb's default (from jsDelivr); renders ipywidgets 8 state
    "sha512-+Mn+Ra8wyIHrYaUpfmf9A3dsLkt/NuwzPQN8sthdxBD35VV5cOJbpmgMhNR27n/rmP3mKyEe0PWCJrtZrXTXDQ==",
    ("dist/embed-amd.js", "dist/*.woff2", "dist/*.woff"),  # woff*: Font Awesome icons
)
PACKAGES = (MATHJAX, REQUIREJS, WIDGETS)


def _check(pkg: Package, data: bytes) -> bool:
    algorithm, digest = pkg.integrity.split("-", 1)
    return hashlib.new(algorithm, data).digest() == base64.b64decode(digest)


def fetch(pkg: Package, cache: Path) -> Path:
    """Return the verified tarball of ``pkg`` in ``cache``, downloading it if needed."""
    path = cache / f"{pkg.stem}.tgz"
    if path.exists() and _check(pkg, path.read_bytes()):
        return path
    logger.info(f"offline: downloading {pkg.url}")
    with urllib.request.urlopen(pkg.url, timeout=120) as response:
        data = response.read()
    if not _check(pkg, data):
        raise ExtensionError(f"offline: {pkg.url} does not match its pinned {pkg.integrity}")
    cache.mkdir(parents=True, exist_ok=True)
    path.with_suffix(".part").write_bytes(data)
    path.with_suffix(".part").replace(path)
    return path


def install(pkg: Package, tarball: Path, outdir: Path) -> None:
    """Copy the files of ``pkg`` that the site needs from ``tarball`` into ``outdir``."""
    with tarfile.open(tarball) as tar:
        for member in tar:
            name = member.name.removeprefix("package/")
            if member.isfile() and any(fnmatch(name, pattern) for pattern in pkg.files):
                target = outdir / pkg.site_dir / name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(tar.extractfile(member).read())


def configure(app: Sphinx, config: Config) -> None:
    """Point MathJax and the widget embedder at the site's own copies."""
    # Sphinx resolves local script paths against _static/, so step out of it.
    config.mathjax_path = f"../{MATHJAX.site_dir}/es5/tex-mml-chtml.js"
    config.nb_ipywidgets_js = {
        f"../{REQUIREJS.site_dir}/require.js": {},
        f"../{WIDGETS.site_dir}/dist/embed-amd.js": {},
    }


def locate_widget_modules(app: Sphinx, pagename: str, templatename: str, context: dict,
                          doctree: object) -> None:
    """On pages with widgets, map the embedder's module names to its folder for require.js.

    The embedder loads its Font Awesome fonts from next to its module's URL, which require.js
    otherwise resolves against the page's folder (``book/@jupyter-widgets/...``: 404s).
    """
    if any(str(js.filename).endswith("embed-amd.js") for js in context.get("script_files", [])):
        dist = f"{WIDGETS.site_dir}/dist"
        app.add_js_file(None, priority=499, body=(  # before require.js reads it
            f"var require = {{paths: (d => ({{'@jupyter-widgets/html-manager/dist': d, "
            f"'@jupyter-widgets': d}}))(new URL('{dist}', new URL("
            "document.documentElement.dataset.content_root, location)).href)};"))


def vendor(app: Sphinx) -> None:
    """Fetch (or reuse) and install every package before pages are written."""
    if app.builder.format != "html":
        return
    outdir = Path(app.outdir)
    for pkg in PACKAGES:
        install(pkg, fetch(pkg, outdir.parent / "vendor"), outdir)


def setup(app: Sphinx) -> dict:
    app.connect("config-inited", configure)
    app.connect("builder-inited", vendor)
    app.connect("html-page-context", locate_widget_modules, priority=600)  # after myst-nb's
    return {"parallel_read_safe": True, "parallel_write_safe": True}
