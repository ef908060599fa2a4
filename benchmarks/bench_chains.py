"""Benchmark chain design: counting, smallest chains, enumeration, density, memory.

Run as ``python benchmarks/bench_chains.py``; prints machine information and a
markdown table (the figures in benchmarks/README.md, section "Chains").
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pydebut import Chain, count_chains, enumerate_chains, is_dense, min_param_chain

M, N, FACTORS, BUDGET = 512, 4608, range(1, 6), 60_000


def timed(function: Callable[[], object], repeat: int = 3) -> tuple[float, object]:
    """Median wall time over ``repeat`` runs, and the last result."""
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def butterfly_stages(n_bits: int, order: list[int]) -> Chain:
    """Radix-2 stages ``(N, N, 2, 2, 2**b)`` in the given order; chainable only for t decreasing."""
    size = 2**n_bits
    return Chain([(size, size, 2, 2, 2**b) for b in order])


def first(count: int, **request) -> list[Chain]:
    return list(itertools.islice(enumerate_chains(M, N, **request), count))


def peak_memory(count: int) -> float:
    """Peak traced memory (MiB) while walking ``count`` 5-factor chains without keeping them.

    The first chain builds the state graph of the request (its summaries
    explore every state); after that, memory must not grow with ``count``.
    """
    tracemalloc.start()
    for _ in itertools.islice(enumerate_chains(M, N, n_factors=5), count):
        pass
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                 if line.startswith("model name")]  # fmt: skip
        cpu = names[0] if names else cpu
    return (
        f"{cpu}, {os.cpu_count()} logical cores; Python {platform.python_version()}, "
        f"NumPy {np.__version__}, {platform.system()} {platform.release()}"
    )


def main() -> None:
    rows: list[tuple[str, str, str, str]] = []

    def add(task: str, seconds: float, result: str, target: str) -> None:
        rows.append((task, f"{seconds * 1e3:.1f} ms", result, target))

    seconds, total = timed(lambda: count_chains(M, N, n_factors=FACTORS))
    add(f"count all chains, {M} x {N}, 1-5 factors (closed form)", seconds,
        f"{total:,} chains", "< 2 s")  # fmt: skip
    seconds, total = timed(lambda: count_chains(M, N, n_factors=FACTORS, kind="monotonic"))
    add("count monotonic chains (state graph)", seconds, f"{total:,} chains", "< 2 s")
    seconds, smallest = timed(lambda: min_param_chain(M, N, FACTORS, kind="monotonic"))
    add("smallest monotonic chain (DP), 1-5 factors", seconds,
        f"{smallest.n_params:,} params, {smallest.n_factors} factors", "< 2 s")  # fmt: skip
    seconds, total = timed(lambda: count_chains(M, N, n_factors=FACTORS, max_params=BUDGET))
    add(f"count chains with <= {BUDGET:,} params", seconds, f"{total:,} chains", "")
    seconds, listed = timed(lambda: first(1000, n_factors=FACTORS, max_params=BUDGET))
    add(f"first 1,000 chains with <= {BUDGET:,} params (lex)", seconds,
        f"{len(listed):,} chains", "< 1 s")  # fmt: skip
    seconds, listed = timed(
        lambda: first(1000, n_factors=FACTORS, max_params=BUDGET, order="params")
    )
    add("first 1,000 by parameters (best-first)", seconds,
        f"{listed[0].n_params:,} to {listed[-1].n_params:,} params", "")  # fmt: skip

    order = [11, 0, 10, 1, 9, 2, 8, 3, 7, 4, 6, 5]
    dense_chain = butterfly_stages(12, order)
    broken = butterfly_stages(12, [*order[:-1], 4])
    assert not dense_chain.is_chainable and not broken.is_chainable
    seconds, verdict = timed(lambda: is_dense(dense_chain))
    add("is_dense, 4096 x 4096, 12 non-chainable factors", seconds, str(verdict), "< 1 s")
    seconds, verdict = timed(lambda: is_dense(broken))
    add("is_dense, same with one stage repeated", seconds, str(verdict), "< 1 s")

    for count in (1, 1_000, 10_000, 100_000):
        rows.append((f"peak memory walking {count:,} 5-factor chains (tracemalloc)", "",
                     f"{peak_memory(count):.1f} MiB", "flat"))  # fmt: skip

    print(f"Machine: {machine()}\n")
    print("| task | time | result | target |")
    print("| --- | ---: | --- | --- |")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    main()
