"""Operators applied across processes and threads; run as ``python process_scenarios.py NAME``.

Each scenario first applies a batch in the parent, which starts Numba's
parallel threads, then applies batches (and single vectors) elsewhere and
exits 0 only if every result equals the parent's. ``tests/test_processes.py``
runs each one in a subprocess with a timeout, so a crash or a hang fails.
"""

import faulthandler
import multiprocessing
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

import pydebut
from pydebut import DeButOperator
from pydebut.special import butterfly_chain

CHAIN = [(64, 64, 2, 2, 16), (64, 64, 2, 2, 8), (64, 32, 2, 1, 4), (32, 32, 2, 2, 1)]


def operator() -> DeButOperator:
    return DeButOperator.random(CHAIN, rng=0)


def inputs(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((32, 300))


def apply(op: DeButOperator, seed: int) -> np.ndarray:
    x = inputs(seed)
    y = op @ x
    return np.concatenate([y.ravel(), op @ x[:, 0], (op.H @ y).ravel()])


def apply_in_worker(args: tuple[DeButOperator, int]) -> np.ndarray:
    return apply(*args)


def in_forked_children(op: DeButOperator, expected: list[np.ndarray], busy: bool) -> bool:
    """``os.fork`` after parallel work; with ``busy``, while another thread applies batches."""
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            op @ inputs(0)

    spinner = threading.Thread(target=spin)
    if busy:
        spinner.start()
    statuses = []
    for _ in range(5 if busy else 1):
        pid = os.fork()
        if pid == 0:
            same = all(np.array_equal(apply(op, i), e) for i, e in enumerate(expected))
            os._exit(0 if same else 3)
        statuses.append(os.waitpid(pid, 0)[1])
    stop.set()
    if busy:
        spinner.join()
    return statuses == [0] * len(statuses)


def forked_while_compiling(op: DeButOperator) -> bool:
    """``os.fork`` while another thread holds Numba's compiler lock, as a first call does
    while it compiles or loads a kernel; the child then needs a kernel of its own."""
    from numba.core.compiler_lock import global_compiler_lock

    holding = threading.Event()

    def compile_for_a_while() -> None:
        with global_compiler_lock:
            holding.set()
            time.sleep(1.0)

    compiler = threading.Thread(target=compile_for_a_while)
    compiler.start()
    holding.wait()
    pid = os.fork()
    if pid == 0:
        faulthandler.dump_traceback_later(60, exit=True)  # a hang fails, with its stack
        single = DeButOperator(op.chain, op.weights, np.complex64)  # kernels not loaded yet
        x = inputs(0).astype(np.complex64)
        same = np.allclose(single @ x, op @ x, rtol=1e-4, atol=1e-4)
        os._exit(0 if same else 3)
    status = os.waitpid(pid, 0)[1]
    compiler.join()
    return status == 0


def in_pool(op: DeButOperator, expected: list[np.ndarray], method: str) -> bool:
    with multiprocessing.get_context(method).Pool(2) as pool:
        results = pool.map(apply_in_worker, [(op, i) for i in range(len(expected))])
    return all(np.array_equal(r, e) for r, e in zip(results, expected))


def in_threads(op: DeButOperator, expected: list[np.ndarray]) -> bool:
    seeds = list(range(len(expected))) * 8
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda seed: apply(op, seed), seeds))
    return all(np.array_equal(r, expected[s]) for r, s in zip(results, seeds))


def beside_parallel_code_of_ones_own(op: DeButOperator) -> bool:
    """A ``parallel=True`` function of the user's, under ``pydebut.parallel_launch_lock``, in
    one thread while another applies an operator through pydebut's parallel kernels: on
    Numba's workqueue layer two launches at once end the process. Operators are applied
    inside the lock too (it is re-entrant)."""
    import numba

    @numba.njit(parallel=True)
    def row_sums(a: np.ndarray) -> np.ndarray:
        sums = np.empty(a.shape[0])
        for i in numba.prange(a.shape[0]):
            sums[i] = a[i].sum()
        return sums

    large = DeButOperator.random(butterfly_chain(4096), rng=0)
    block = np.random.default_rng(0).standard_normal((4096, 512))  # split among the threads
    expected = large @ block
    ones = np.ones((2048, 64))
    stop, wrong = threading.Event(), []

    def applying() -> None:
        while not stop.is_set():
            wrong.extend([] if np.array_equal(large @ block, expected) else ["operator"])

    applier = threading.Thread(target=applying)
    applier.start()
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        with pydebut.parallel_launch_lock:
            wrong.extend([] if np.array_equal(row_sums(ones), ones.sum(axis=1)) else ["own"])
            wrong.extend([] if np.array_equal(op @ inputs(0), op @ inputs(0)) else ["inside"])
    stop.set()
    applier.join()
    return not wrong


def main(name: str) -> int:
    op = operator()
    expected = [apply(op, seed) for seed in range(4)]
    if name == "fork":
        ok = in_forked_children(op, expected, busy=False)
    elif name == "fork-while-busy":
        ok = in_forked_children(op, expected, busy=True)
    elif name == "fork-while-compiling":
        ok = forked_while_compiling(op)
    elif name in ("pool-fork", "pool-spawn"):
        ok = in_pool(op, expected, name.removeprefix("pool-"))
    elif name == "threads":
        ok = in_threads(op, expected)
    elif name == "own-parallel-code":
        ok = beside_parallel_code_of_ones_own(op)
    else:
        raise SystemExit(f"unknown scenario {name!r}")
    print(name, "ok" if ok else "WRONG RESULTS")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
