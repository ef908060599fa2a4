"""Shared test configuration: hypothesis profiles and the doctest namespace.

The ``ci`` profile, the default, is deterministic and has no deadline: every run of
the suite draws the same examples, so the README's test command passes or fails the
same way on every machine. ``HYPOTHESIS_PROFILE=dev`` (or ``thorough``) draws new
examples each run, to explore; tests that set their own count scale it with
``tests/example_counts.py``.
"""

import importlib.util
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    derandomize=True,
    deadline=None,
    max_examples=40,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", deadline=None, max_examples=60)
settings.register_profile("thorough", deadline=None, max_examples=1000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def _missing(package: str) -> bool:
    try:
        return importlib.util.find_spec(package) is None
    except (ImportError, ValueError):  # e.g. sys.modules[package] = None
        return True


# Modules whose doctests need an optional package: not collected without it.
collect_ignore = [
    path
    for path, package in [("pydebut/faust.py", "pyfaust"), ("pydebut/torch_layer.py", "torch")]
    if _missing(package)
]


@pytest.fixture(autouse=True)
def _doctest_names(doctest_namespace):
    doctest_namespace["np"] = np
