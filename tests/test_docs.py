"""The documentation's own checks: doctests in the pages and API coverage.

The ``>>>`` examples in ``docs/*.rst`` run here, so the numbers the pages show
come from running code. (The Sphinx build itself is a separate CI step:
``sphinx-build -W -b html docs docs/_build/html``.)
"""

import doctest
import re
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


def test_api_page_lists_every_public_name():
    listed = set(re.findall(r"^   (\w+)$", (DOCS / "api.rst").read_text(), flags=re.M))
    modules = {"special"}
    missing = set(pydebut.__all__) - listed - modules - {"__version__"}
    assert not missing, f"docs/api.rst does not list {sorted(missing)}"
