"""Time and memory of requests that used to run for minutes: answers and refusals.

Run as ``python benchmarks/bench_limits.py``; prints one line per call: wall
time, the process's peak resident memory so far, the call and the first
characters of its answer or of the ``ValueError`` that refuses it.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pydebut import count_chains, enumerate_chains, is_dense, min_param_chain, pareto_front

CASES: dict[str, Callable[[], object]] = {
    "count_chains(720720, 720720, n_factors=3, kind='monotonic')": lambda: count_chains(
        720720, 720720, n_factors=3, kind="monotonic"
    ),
    "min_param_chain(720720, 720720, 3)": lambda: min_param_chain(720720, 720720, 3),
    "pareto_front(720720, 720720, n_factors=range(1, 5))": lambda: pareto_front(
        720720, 720720, n_factors=range(1, 5)
    ),
    "count_chains(5040, 5040, n_factors=range(1, 65))": lambda: count_chains(
        5040, 5040, n_factors=range(1, 65)
    ),
    "count_chains(64, 64, n_factors=3, rank=10**6)": lambda: count_chains(
        64, 64, n_factors=3, rank=10**6
    ),
    "count_chains(64, 64, n_factors=range(1, 10**12))": lambda: count_chains(
        64, 64, n_factors=range(1, 10**12)
    ),
    "next(enumerate_chains(5040, 5040, n_factors=4))": lambda: next(
        enumerate_chains(5040, 5040, n_factors=4)
    ),
    "min_param_chain(5040, 5040, 3)": lambda: min_param_chain(5040, 5040, 3),
    "is_dense([(2**20, 2**20, 2, 2, 1)] * 2)": lambda: is_dense([(2**20, 2**20, 2, 2, 1)] * 2),
    "is_dense([(2**40, 2**40, 2, 2, 1)] * 2)": lambda: is_dense([(2**40, 2**40, 2, 2, 1)] * 2),
}


def main() -> None:
    for name, call in CASES.items():
        start = time.perf_counter()
        try:
            answer = str(call())
        except ValueError as err:
            answer = f"ValueError: {err}"
        seconds = time.perf_counter() - start
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
        print(f"{seconds:8.3f} s  {peak:7.0f} MiB  {name} -> {answer[:70]}", flush=True)


if __name__ == "__main__":
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    main()
