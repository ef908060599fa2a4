"""Argument types of the benchmarks' command lines.

Each turns one command-line word into a value or raises ``argparse.ArgumentTypeError``,
so that argparse prints a one-line usage error and exits with status 2 before any work.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
from collections.abc import Callable
from pathlib import Path

from pydebut._memory import check_fits_in_memory


def _number(text: str, convert: Callable[[str], float], what: str, accept: Callable) -> float:
    try:
        value = convert(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and accept(value)):
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    return _number(text, int, "a positive integer", lambda value: value >= 1)


def nonnegative_int(text: str) -> int:
    return _number(text, int, "an integer >= 0", lambda value: value >= 0)


def thread_count(text: str) -> int:
    """A number of threads: at least 1, or -1 for one per CPU."""
    return _number(text, int, "a positive integer or -1", lambda value: value >= 1 or value == -1)


def power_of_two(text: str) -> int:
    return _number(text, int, "a power of two >= 2", lambda v: v >= 2 and v & (v - 1) == 0)


def positive_float(text: str) -> float:
    return _number(text, float, "a positive number", lambda value: value > 0)


def nonnegative_float(text: str) -> float:
    return _number(text, float, "a number >= 0", lambda value: value >= 0)


def fraction(text: str) -> float:
    return _number(text, float, "a fraction in (0, 1]", lambda value: 0 < value <= 1)


def existing_file(text: str) -> Path:
    path = Path(text)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"no such file: {text!r}")
    return path


def output_file(text: str) -> Path:
    """A file to write: its folder must exist and it must not be a folder itself."""
    path = Path(text)
    if not text or path.is_dir():
        raise argparse.ArgumentTypeError(f"must name a file, got {text!r}")
    if not path.resolve().parent.is_dir():
        raise argparse.ArgumentTypeError(f"the folder of {text!r} does not exist")
    return path


def at_most(most: int, least: int = 1) -> Callable[[str], int]:
    """An integer from ``least`` to ``most`` (beyond it a run would not end in a day)."""

    def bounded(text: str) -> int:
        wanted = f"an integer from {least} to {most:,}"
        return _number(text, int, wanted, lambda value: least <= value <= most)

    return bounded


def require_modules(parser: argparse.ArgumentParser, why: str, *modules: str) -> None:
    """``parser.error`` before any work if one of ``modules`` is not installed."""
    missing = [module for module in modules if importlib.util.find_spec(module) is None]
    if missing:
        parser.error(f"{why} needs {' and '.join(missing)}: pip install {' '.join(missing)}")


def require_memory(parser: argparse.ArgumentParser, nbytes: int, what: str) -> None:
    """``parser.error`` before any work if ``what`` needs more than this machine's memory."""
    try:
        check_fits_in_memory(nbytes, what, "ask for less")
    except ValueError as err:
        parser.error(str(err))
