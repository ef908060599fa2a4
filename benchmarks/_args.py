"""Argument types of the benchmarks' command lines.

Each turns one command-line word into a value or raises ``argparse.ArgumentTypeError``,
so that argparse prints a one-line usage error and exits with status 2 before any work.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path


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
