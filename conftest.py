"""Shared test configuration: hypothesis profiles and the doctest namespace.

The ``ci`` profile (chosen when ``CI`` is set, or by ``HYPOTHESIS_PROFILE``)
is deterministic and has no deadline, so CI runs repeat exactly.
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
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))


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
