"""Check a built copy of these docs for what a reader without network would see.

Usage (from the repository root, after ``sphinx-build -W -b html docs docs/_build/html``)::

    python docs/check_html.py docs/_build/html                     # static checks only
    python docs/check_html.py docs/_build/html --browser chromium  # and render the math
    python docs/check_html.py docs/_build/html --browser chromium --screenshots shots/

Static checks, on every page: no script, stylesheet, image or frame is loaded
from an ``http(s)://`` address, and a page with formulas loads MathJax from the
build's own ``_static/``. With ``--browser``, every page with formulas is opened
in the headless browser (from ``file://``, so nothing can come from a network);
after MathJax has run, the page must hold typeset formulas and no raw TeX
delimiters (``\\(`` or ``\\[``) outside code. Exit status 1 lists the failures.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
from pathlib import Path

#: (tag, attribute) pairs that make a browser fetch a resource.
LOADING = {("script", "src"), ("img", "src"), ("iframe", "src"), ("source", "src")}
LOADING_LINKS = {"stylesheet", "preload", "icon", "modulepreload", "prefetch"}
REMOTE = re.compile(r"^\s*(https?:)?//", re.I)
RAW_TEX = re.compile(r"\\\(|\\\[")
#: Elements whose text is code or machinery, where a backslash-parenthesis is not math.
SKIPPED = {"script", "style", "pre", "code", "textarea", "mjx-assistive-mml"}


class _Page(HTMLParser):
    """Collect loaded resources, math markers and the visible text of a page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.remote: list[str] = []
        self.scripts: list[str] = []
        self.has_math = False
        self.typeset = 0
        self.errors = 0
        self.text: list[str] = []
        self._skip_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        for name, value in values.items():
            if (tag, name) in LOADING and REMOTE.match(value):
                self.remote.append(f"<{tag} {name}={value!r}>")
        rel = set(values.get("rel", "").lower().split())
        if tag == "link" and rel & LOADING_LINKS and REMOTE.match(values.get("href", "")):
            self.remote.append(f"<link rel={values['rel']!r} href={values['href']!r}>")
        if tag == "script" and values.get("src"):
            self.scripts.append(values["src"])
        classes = values.get("class", "").split()
        if "math" in classes and tag in {"span", "div"}:
            self.has_math = True
        if tag == "mjx-container":
            self.typeset += 1
        if tag == "mjx-merror":
            self.errors += 1
        if tag in SKIPPED:
            self._skip_depth += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in SKIPPED and self._skip_depth:
            self._skip_depth -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip_depth:
            self.text.append(data)


def parse(html: str) -> _Page:
    page = _Page()
    page.feed(html)
    page.close()
    return page


def static_problems(page_path: Path, root: Path) -> list[str]:
    """Problems of one built page as written by Sphinx (before any script runs)."""
    page = parse(page_path.read_text(encoding="utf-8"))
    problems = [f"loads a remote resource: {item}" for item in page.remote]
    if page.has_math:
        local = [
            src
            for src in page.scripts
            if "mathjax" in src.lower() and (page_path.parent / src.split("?")[0]).resolve()
            .is_relative_to((root / "_static").resolve())
        ]  # fmt: skip
        if not local:
            problems.append("has formulas but does not load MathJax from _static/")
        for src in local:
            if not (page_path.parent / src.split("?")[0]).is_file():
                problems.append(f"loads {src}, which is not in the build")
    return problems


def rendered_problems(dom: str) -> list[str]:
    """Problems of a page's DOM after its scripts ran: raw TeX left, or no typeset formula."""
    page = parse(dom)
    problems = []
    text = "".join(page.text)
    for match in list(RAW_TEX.finditer(text))[:3]:
        context = " ".join(text[max(match.start() - 30, 0) : match.end() + 40].split())
        problems.append(f"raw TeX left after rendering: ...{context}...")
    if page.has_math and page.typeset == 0:
        problems.append("no formula was typeset (no <mjx-container>)")
    if page.errors:
        problems.append(f"{page.errors} formula(s) failed to typeset (<mjx-merror>)")
    return problems


def _browser_args(browser: str) -> list[str]:
    return [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--virtual-time-budget=20000",
    ]


def render(browser: str, page: Path, timeout: float = 120) -> str:
    """The DOM of ``page`` after its scripts ran, dumped by a headless browser."""
    with tempfile.TemporaryDirectory() as profile:
        result = subprocess.run(
            [*_browser_args(browser), f"--user-data-dir={profile}", "--dump-dom",
             page.resolve().as_uri()],
            capture_output=True, text=True, timeout=timeout, check=True,
        )  # fmt: skip
    return result.stdout


def screenshot(browser: str, page: Path, out: Path, timeout: float = 120) -> None:
    """Save a 1280 x 2400 screenshot of ``page`` (after its scripts ran) to ``out``."""
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [*_browser_args(browser), f"--user-data-dir={profile}", "--window-size=1280,2400",
             f"--screenshot={out.resolve()}", page.resolve().as_uri()],
            capture_output=True, timeout=timeout, check=True,
        )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("build", type=Path, help="the HTML output directory of sphinx-build")
    parser.add_argument("--browser", help="a Chromium-like browser to render the math with")
    parser.add_argument(
        "--screenshots",
        type=Path,
        help="with --browser, save screenshots of index, concepts and one tutorial here",
    )
    args = parser.parse_args(argv)
    pages = sorted(args.build.rglob("*.html"))
    if not pages:
        parser.error(f"no HTML pages under {args.build}")
    failures = []
    math_pages = []
    for page in pages:
        name = page.relative_to(args.build)
        failures += [f"{name}: {problem}" for problem in static_problems(page, args.build)]
        if parse(page.read_text(encoding="utf-8")).has_math:
            math_pages.append(page)
    if args.browser:
        for page in math_pages:
            name = page.relative_to(args.build)
            dom = render(args.browser, page)
            failures += [f"{name}: {problem}" for problem in rendered_problems(dom)]
        if args.screenshots:
            args.screenshots.mkdir(parents=True, exist_ok=True)
            for name in ("index", "concepts", "tutorials/plot_a_scipy_solvers"):
                out = args.screenshots / f"{name.replace('/', '-')}.png"
                screenshot(args.browser, args.build / f"{name}.html", out)
                print(f"wrote {out}")
    checked = f"{len(pages)} pages, {len(math_pages)} with formulas"
    checked += ", rendered in a headless browser" if args.browser else " (static checks only)"
    if failures:
        print("\n".join(failures), file=sys.stderr)
        print(f"{len(failures)} problem(s) in {checked}", file=sys.stderr)
        return 1
    print(f"ok: {checked}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
