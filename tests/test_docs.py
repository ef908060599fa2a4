"""The documentation's own checks: doctests in the pages, API coverage, and the
checker of built pages (``docs/check_html.py``).

The ``>>>`` examples in ``docs/*.rst`` run here, so the numbers the pages show
come from running code. (The Sphinx build itself is a separate CI step:
``sphinx-build -W -b html docs docs/_build/html``, followed by
``python docs/check_html.py docs/_build/html --browser chromium``.)
"""

import dataclasses
import doctest
import importlib
import importlib.util
import inspect
import pkgutil
import re
import shutil
import types
from pathlib import Path

import pytest

import pydebut

DOCS = Path(__file__).resolve().parent.parent / "docs"
PAGES = sorted(path for path in DOCS.glob("*.rst") if ">>>" in path.read_text())
FLAGS = doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS


@pytest.mark.parametrize("page", PAGES, ids=[path.name for path in PAGES])
def test_page_doctests(page):
    result = doctest.testfile(str(page), module_relative=False, optionflags=FLAGS, verbose=False)
    assert result.attempted > 0
    assert result.failed == 0, f"{result.failed} doctest(s) failed in {page.name}"


# Modules whose ``__all__`` and ``MAX_*`` limits docs/api.rst documents: every public one
# but the subcommands' own modules (``pydebut COMMAND --help`` is their reference).
PUBLIC_MODULES = ["pydebut"] + [
    f"pydebut.{info.name}"
    for info in pkgutil.iter_modules(pydebut.__path__)
    if not info.name.startswith("_") and info.name != "commands"
]


def _api_page_names() -> set[str]:
    """Qualified names documented by docs/api.rst (autosummary entries and auto* lines)."""
    module, names = "pydebut", set()
    for line in (DOCS / "api.rst").read_text().splitlines():
        if match := re.fullmatch(r"\.\. currentmodule:: (\S+)", line):
            module = match[1]
        elif match := re.fullmatch(r"\.\. auto(?:data|class|function):: (\S+)", line):
            names.add(match[1] if "." in match[1] else f"{module}.{match[1]}")
        elif match := re.fullmatch(r"   (\w+)", line):
            names.add(f"{module}.{match[1]}")
    return names


def _resolve(qualified: str) -> object:
    module, name = qualified.rsplit(".", 1)
    return getattr(importlib.import_module(module), name)


def test_api_page_lists_every_public_name_and_limit():
    documented = _api_page_names()
    objects = {id(_resolve(name)) for name in documented}  # re-exports count once
    missing = []
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        missing += [
            f"{module_name}.{name}"
            for name in getattr(module, "__all__", [])
            if name != "__version__"
            and not inspect.ismodule(getattr(module, name))
            and id(getattr(module, name)) not in objects
        ]
        missing += [
            f"{module_name}.{name}"
            for name in vars(module)
            if name.startswith("MAX_") and f"{module_name}.{name}" not in documented
        ]
    assert not missing, f"docs/api.rst does not list {missing}"


def _documented_parameters(obj: object) -> set[str]:
    """Names listed in the numpydoc ``Parameters`` section of ``obj``'s docstring.

    A line such as ``x, y : int`` names two; ``*args`` and ``**options`` are given
    without their stars, as the signature names them.
    """
    doc = inspect.getdoc(obj) or ""
    section = re.search(r"^Parameters\n-+\n(.*?)(?=^\w[\w ]*\n-+\n|\Z)", doc, re.S | re.M)
    lines = section.group(1).splitlines() if section else []
    return {
        name.strip().lstrip("*")
        for line in lines
        if line and not line[0].isspace()
        for name in line.split(":")[0].split(",")
    }


def _is_record(cls: type) -> bool:
    """A dataclass or named tuple that documents its fields under ``Attributes``."""
    record = dataclasses.is_dataclass(cls) or (issubclass(cls, tuple) and hasattr(cls, "_fields"))
    return record and re.search(r"^Attributes\n-+$", inspect.getdoc(cls) or "", re.M) is not None


def _public_callables() -> dict[str, object]:
    """Each public callable once, by its first qualified name.

    The names in ``__all__`` of pydebut and of its public modules (the command line's
    too), and the public methods the classes among them define (properties take no
    arguments). Exceptions, and records whose fields are their constructor's
    arguments, are left out.
    """
    found: dict[str, object] = {}
    seen: set[int] = set()
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        for name in getattr(module, "__all__", []):
            obj = getattr(module, name)
            if id(obj) in seen or not callable(obj):
                continue
            seen.add(id(obj))
            if inspect.isclass(obj) and (issubclass(obj, BaseException) or _is_record(obj)):
                continue
            found[f"{module_name}.{name}"] = obj
            if inspect.isclass(obj):
                found |= {
                    f"{module_name}.{name}.{attr}": getattr(obj, attr)
                    for attr, raw in vars(obj).items()
                    if not attr.startswith("_")
                    and isinstance(raw, (types.FunctionType, classmethod, staticmethod))
                }
    return found


PUBLIC_CALLABLES = _public_callables()


@pytest.mark.parametrize("name", PUBLIC_CALLABLES)
def test_parameters_section_names_every_parameter(name):
    obj = PUBLIC_CALLABLES[name]
    parameters = set(inspect.signature(obj).parameters) - {"self", "cls"}
    missing = parameters - _documented_parameters(obj)
    assert not missing, f"{name}: the Parameters section does not name {sorted(missing)}"


def test_public_callables_walk_the_api():
    # The walk reaches functions, constructors, methods and classmethods of every module,
    # and leaves out records and exceptions.
    assert {
        "pydebut.fit_als",
        "pydebut.DeButOperator",
        "pydebut.DeButOperator.matmat",
        "pydebut.DeButOperator.identity",
        "pydebut.Chain.from_r_shapes",
        "pydebut.matrix_to_kernel",
        "pydebut.testing.tolerance",
        "pydebut.cli.main",
    } <= set(PUBLIC_CALLABLES)
    assert not any(".FitResult" in name or "Warning" in name for name in PUBLIC_CALLABLES)
    fit_many = PUBLIC_CALLABLES["pydebut.dask.fit_many"]  # documents **options
    assert {"targets", "options"} <= _documented_parameters(fit_many)


# --- docs/check_html.py: what a reader without network sees ---------------------------

_spec = importlib.util.spec_from_file_location("check_html", DOCS / "check_html.py")
check_html = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check_html)

MATH = '<span class="math notranslate nohighlight">\\(F_1 F_2\\)</span>'


def _page(tmp_path, head, body=MATH):
    script = tmp_path / "_static" / "mathjax" / "tex-chtml.js"
    if not script.exists():
        script.parent.mkdir(parents=True)
        script.write_text("// stands in for MathJax")
    page = tmp_path / "page.html"
    page.write_text(f"<html><head>{head}</head><body><p>{body}</p></body></html>")
    return page


def test_static_check_accepts_local_mathjax(tmp_path):
    page = _page(tmp_path, '<script defer src="_static/mathjax/tex-chtml.js"></script>')
    assert check_html.static_problems(page, tmp_path) == []


@pytest.mark.parametrize(
    ("head", "problem"),
    [
        ('<script src="https://cdn.example/mathjax@4/tex-mml-chtml.js"></script>', "remote"),
        ('<script src="_static/mathjax/tex-chtml.js"></script>'
         '<link rel="stylesheet" href="//fonts.example/css">', "remote resource: <link"),
        ('<script src="_static/mathjax/missing.js"></script>', "not in the build"),
        ("", "does not load MathJax from _static/"),
    ],
)  # fmt: skip
def test_static_check_flags_remote_or_missing_math(tmp_path, head, problem):
    problems = check_html.static_problems(_page(tmp_path, head), tmp_path)
    assert any(problem in each for each in problems), problems


def test_rendered_check_flags_raw_tex_outside_code():
    typeset = "<mjx-container>F</mjx-container>"
    assert check_html.rendered_problems(f"<p>{MATH}</p>") == [
        "raw TeX left after rendering: ...\\(F_1 F_2\\)...",
        "no formula was typeset (no <mjx-container>)",
    ]
    assert check_html.rendered_problems(f"<pre>re.compile(r'\\(')</pre><p>{typeset}</p>") == []
    broken = '<span class="math"><mjx-container><mjx-merror>x</mjx-merror></mjx-container></span>'
    assert check_html.rendered_problems(broken) == ["1 formula(s) failed to typeset (<mjx-merror>)"]


BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(BROWSER is None, reason="needs a headless Chromium")
def test_packaged_mathjax_typesets_without_network(tmp_path):
    """The MathJax of the docs extra typesets a page opened from file:// (no network)."""
    pytest.importorskip("sphinx-mathjax-offline")
    mathjax = Path(importlib.import_module("sphinx-mathjax-offline").__file__).parent
    shutil.copytree(mathjax / "static" / "mathjax", tmp_path / "_static" / "mathjax")
    page = _page(tmp_path, '<script defer src="_static/mathjax/tex-chtml.js"></script>')
    assert check_html.rendered_problems(check_html.render(BROWSER, page)) == []
    offline = _page(tmp_path, '<script src="https://cdn.invalid/tex-chtml.js"></script>')
    assert check_html.rendered_problems(check_html.render(BROWSER, offline))
