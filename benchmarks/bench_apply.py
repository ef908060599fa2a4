"""Apply benchmark: DeButOperator against dense BLAS, a CSR chain and NumPy einsum.

Run from the repository root::

    python benchmarks/bench_apply.py            # full table (about ten minutes)
    python benchmarks/bench_apply.py --quick    # fewer repeats

Every implementation is timed in interleaved rounds within one run and the
median round counts (the best round is reported too), so the ratios compare
like with like on a shared, noisy machine; absolute times mean little. A
round times back-to-back calls for ``--budget`` seconds, so a 10 ms call is
timed warm, as in a loop, not once after the pause between turns. Each
result is checked against the dense product before it is timed. The
first-call JIT cost and the cost of a cached import are measured in fresh
subprocesses.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

import numpy as np
import scipy
import scipy.sparse as sp
from _args import nonnegative_int, positive_float, positive_int, require_memory

import pydebut
from pydebut import Chain, DeButOperator, aligned_empty
from pydebut._reference import apply_chain as einsum_chain
from pydebut.special import PAPER_CHAINS, butterfly_chain

CHAINS = {
    "VGG conv1 64x576": PAPER_CHAINS["vgg16-conv1"],
    "LeNet fc1 128x400": PAPER_CHAINS["lenet-fc1"],
    "ResNet 512x2048": PAPER_CHAINS["resnet50-layer4"],
    "butterfly 4096 (12 x 2x2)": butterfly_chain(4096),
}


# Longer than the 200 ms that LLVM's OpenMP runtime (bundled with pyfaust) keeps its
# threads spinning after a parallel region by default (KMP_BLOCKTIME).
SETTLE_SECONDS = 0.25
#: Vectors per call in the small layers' section: one, and a block that the batched kernels take.
SMALL_BATCHES = (1, 8)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            cpu = next(line.split(":", 1)[1].strip() for line in handle if "model name" in line)
    except (OSError, StopIteration):
        pass
    import numba

    blas = ""
    try:
        from threadpoolctl import threadpool_info

        blas = ", ".join(
            f"{i['internal_api']} {i.get('architecture', '')} ({i['num_threads']} threads)"
            for i in threadpool_info()
            if i["user_api"] == "blas"
        )
    except ImportError:
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores; Python {platform.python_version()}, "
        f"NumPy {np.__version__}, SciPy {scipy.__version__}, Numba {numba.__version__}, "
        f"numba threads {numba.get_num_threads()}" + (f"; BLAS: {blas}" if blas else "")
    )


#: The clock of time_interleaved: wall time, or with --clock cpu the CPU time of the process.
CLOCK = time.perf_counter


def time_interleaved(
    functions: dict[str, Callable[[], object]], rounds: int, budget: float
) -> tuple[dict[str, float], dict[str, float]]:
    """Median and best time per call of each function, measured round-robin.

    A pause follows each function's turn, so worker threads it left spinning
    (OpenBLAS's, Numba's, pyfaust's OpenMP) go to sleep before the next one is
    timed; otherwise they steal a core from it.
    """
    clock = CLOCK
    numbers = {}
    for name, function in functions.items():
        function()
        start = clock()
        function()
        elapsed = clock() - start
        numbers[name] = max(1, int(budget / max(elapsed, 1e-7)))
    samples: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(rounds):
        for name, function in functions.items():
            start = clock()
            for _ in range(numbers[name]):
                function()
            samples[name].append((clock() - start) / numbers[name])
            time.sleep(SETTLE_SECONDS)
    median = {name: float(np.median(values)) for name, values in samples.items()}
    best = {name: min(values) for name, values in samples.items()}
    return median, best


def optional_faust(op: DeButOperator) -> object | None:
    """pyfaust's ``Faust`` of the same factors, if pyfaust is installed.

    Square chains of 2x2 butterfly factors use ``pyfaust.opt_butterfly_faust``,
    its C++ butterfly kernel; other chains use a Faust of CSR factors.
    """
    try:
        import pyfaust
    except ImportError:
        return None
    faust = pyfaust.Faust([sp.csr_matrix(f) for f in op.factors()])
    if all(f.r == f.s == 2 and f.p == f.q for f in op.chain):
        faust = pyfaust.opt_butterfly_faust(faust)
    return faust


def bench_chain(name: str, chain: Chain, dtype: type, batch: int, args) -> dict:
    rng = np.random.default_rng(0)
    op = DeButOperator.random(chain, rng=rng, dtype=dtype)
    dense = op.toarray()
    factors_csr = [sp.csr_array(f) for f in op.factors()]
    weights = op.weights
    shape = (chain.shape[1],) if batch == 1 else (chain.shape[1], batch)
    x = rng.standard_normal(shape)
    complex_data = np.dtype(dtype).kind == "c"
    x = (x + 1j * rng.standard_normal(shape) if complex_data else x).astype(dtype)
    x2 = x.reshape(chain.shape[1], -1)

    def csr_chain():
        y = x
        for factor in reversed(factors_csr):
            y = factor @ y
        return y

    out_debut = np.empty((chain.shape[0], *shape[1:]), dtype=dtype)
    out_dense = np.empty_like(out_debut)
    # x and out on cache lines (docs/speed.md): NumPy's own arrays start 16 bytes past one
    x_aligned = aligned_empty(x.shape, dtype)
    x_aligned[...] = x
    out_aligned = aligned_empty(out_debut.shape, dtype)
    functions = {
        "debut": lambda: op @ x,
        "apply": lambda: op.apply(x),
        "apply out": lambda: op.apply(x, out=out_debut),
        "apply aligned": lambda: op.apply(x_aligned, out=out_aligned),
        "dense": lambda: dense @ x,
        "dense out": lambda: np.matmul(dense, x, out=out_dense),
        "csr": csr_chain,
        "einsum": lambda: einsum_chain(chain, weights, x2),
    }
    faust = optional_faust(op)
    if faust is not None:
        x_fortran = np.asfortranarray(x)  # pyfaust's layout, converted outside the timing
        functions["pyfaust"] = lambda: faust @ x_fortran
    double = np.complex128 if complex_data else np.float64
    expected = dense.astype(double) @ x.astype(double)
    tolerance = 1e-3 if np.dtype(dtype).itemsize == (8 if complex_data else 4) else 1e-10
    for label, function in functions.items():
        result = np.asarray(function()).reshape(expected.shape)
        error = np.abs(result - expected).max() / np.abs(expected).max()
        if error > tolerance:
            raise AssertionError(f"{name}: {label} differs from the dense product by {error:.1e}")
    times, best = time_interleaved(functions, args.rounds, args.budget)
    real_per_complex = 4 if complex_data else 1  # a complex multiply-add is 4 real ones
    flops = 2 * chain.n_params * batch * real_per_complex
    dense_flops = 2 * chain.shape[0] * chain.shape[1] * batch * real_per_complex
    return {
        "chain": name,
        "dtype": np.dtype(dtype).name,
        "batch": batch,
        "times": times,
        "best": best,
        "dense_flops_ratio": chain.n_params / (chain.shape[0] * chain.shape[1]),
        "gflops_debut": flops / times["debut"] / 1e9,
        "kernel_rate_ratio": (flops / times["apply out"]) / (dense_flops / times["dense out"]),
        "aligned_rate_ratio": (flops / times["apply aligned"]) / (dense_flops / times["dense out"]),
        "gflops_dense": dense_flops / times["dense"] / 1e9,
    }


def print_dtype_rates(args) -> None:
    """Each dtype's DeBut rate over float64's, the dtypes timed in the same interleaved rounds.

    Issue 11's targets: float32 at least 1.8; complex at least 1, that is a
    complex product (4 real multiply-adds per complex one, as in the GFLOP/s
    above) costing no more than 4 real ones. The kernels alone are timed
    (``op.apply(x, out)``), each dtype's turn next to the others', so the
    ratio does not drift with the load the way rows of the table measured
    minutes apart do.
    """
    dtypes = [np.dtype(d) for d in args.dtypes]
    if np.dtype(np.float64) not in dtypes or len(dtypes) < 2:
        return
    print("\nrate over the float64 rate, dtypes interleaved (op.apply(x, out); median, best)")
    print("\n| chain | batch | " + " | ".join(d.name for d in dtypes if d != np.float64) + " |")
    print("| --- | --- |" + " --- |" * (len(dtypes) - 1))
    rng = np.random.default_rng(0)
    for name in args.chains:
        for batch in (b for b in args.batches if b > 1):
            functions, flops = {}, {}
            for dtype in dtypes:
                op = DeButOperator.random(CHAINS[name], rng=0, dtype=dtype)
                x = rng.standard_normal((op.shape[1], batch))
                if dtype.kind == "c":
                    x = x + 1j * rng.standard_normal(x.shape)
                x, out = x.astype(dtype), np.empty((op.shape[0], batch), dtype)
                functions[dtype.name] = lambda op=op, x=x, out=out: op.apply(x, out=out)
                flops[dtype.name] = op.n_params * batch * (4 if dtype.kind == "c" else 1)
            median, best = time_interleaved(functions, args.rounds, args.budget)
            cells = [
                f"{flops[d] / median[d] / (flops['float64'] / median['float64']):.2f}, "
                f"{flops[d] / best[d] / (flops['float64'] / best['float64']):.2f}"
                for d in functions
                if d != "float64"
            ]
            print(f"| {name} | {batch} | " + " | ".join(cells) + " |")


def print_complex_data(args) -> None:
    """Complex128 data through a float64 operator and through its complex128 copy, interleaved.

    A real operator maps the real and imaginary parts of complex data as real
    columns side by side: each complex multiply-add costs two real ones where
    complex weights take four. Each time is given over the time of float64 data
    of as many vectors through the float64 operator, timed in the same rounds
    (``op.apply(x, out)``): the cost of a complex product in real ones, so 2 and
    4 are the two costs at the float64 rate.
    """
    if "complex128" not in args.dtypes:
        return
    print("\ncomplex128 data: time over float64 data's through the float64 operator (apply out)")
    print("\n| chain | batch | float64 operator | complex128 operator |")
    print("| --- | --- | --- | --- |")
    rng = np.random.default_rng(0)
    for name in args.chains:
        real_op = DeButOperator.random(CHAINS[name], rng=0)
        complex_op = real_op.astype(np.complex128)
        for batch in args.batches:
            shape = (real_op.shape[1],) if batch == 1 else (real_op.shape[1], batch)
            x = rng.standard_normal(shape)
            z = x + 1j * rng.standard_normal(shape)
            out = np.empty((real_op.shape[0], *shape[1:]))
            out_z = out.astype(np.complex128)
            np.testing.assert_allclose(real_op.apply(z), complex_op.apply(z), atol=1e-10)
            functions = {
                "real data": lambda op=real_op, x=x, out=out: op.apply(x, out),
                "real operator": lambda op=real_op, z=z, out=out_z: op.apply(z, out),
                "complex operator": lambda op=complex_op, z=z, out=out_z: op.apply(z, out),
            }
            median, _ = time_interleaved(functions, args.rounds, args.budget)
            real_time = median["real data"]
            print(
                f"| {name} | {batch} | {median['real operator'] / real_time:.2f} |"
                f" {median['complex operator'] / real_time:.2f} |"
            )


def print_small_layers(args) -> None:
    """One float64 vector and a few through the small layers: direct call and ``@`` against dense.

    Many short interleaved rounds (hundreds of calls each) with the best round
    beside the median: a call takes microseconds, so on a shared machine
    the best rounds show what the code costs and the medians what the load adds.
    """
    print(f"\nsmall layers, float64, {args.small_rounds} interleaved rounds of hundreds of calls")
    print(
        "\n| chain | vectors | dense | op.apply(x) | op.apply(x, out) | op @ x"
        " | medians, same order |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name in ("VGG conv1 64x576", "LeNet fc1 128x400"):
        op = DeButOperator.random(CHAINS[name], rng=0)
        dense = op.toarray()
        for batch in SMALL_BATCHES:
            shape = () if batch == 1 else (batch,)
            x = np.random.default_rng(0).standard_normal((op.shape[1], *shape))
            out = np.empty((op.shape[0], *shape))
            np.testing.assert_allclose(op.apply(x, out), dense @ x, atol=1e-10)
            functions = {
                "dense": lambda dense=dense, x=x: dense @ x,
                "apply": lambda op=op, x=x: op.apply(x),
                "apply out": lambda op=op, x=x, out=out: op.apply(x, out),
                "matmul": lambda op=op, x=x: op @ x,
            }
            median, best = time_interleaved(functions, args.small_rounds, 500 * 4e-6 * batch)
            cells = [
                f"{best[key] * 1e6:.2f} us ({best[key] / best['dense']:.2f}x)" for key in functions
            ]
            medians = ", ".join(f"{median[key] / median['dense']:.2f}x" for key in functions)
            print(f"| {name} | {batch} | " + " | ".join(cells) + f" | medians {medians} |")


def print_row_major(args) -> None:
    """Row-major data (``(batch, n)``, as PyTorch and scikit-learn hold it) through ``apply_rows``.

    Against the same product on the column layout (``op @ X.T`` of a C-ordered
    copy, the copy made beforehand) and a dense GEMM on the rows (``X @ A.T``);
    each float64, interleaved. ``apply_rows`` reads the rows where they are.
    """
    batches = [b for b in args.batches if b > 1]
    if not batches:
        return
    print("\nrow-major data, float64: op.apply_rows(X) against op @ X.T (C copy) and X @ A.T")
    print("\n| chain | batch | apply_rows | op @ (n, batch) | dense X @ A.T |")
    print("| --- | --- | --- | --- | --- |")
    rng = np.random.default_rng(0)
    for name in args.chains:
        op = DeButOperator.random(CHAINS[name], rng=0)
        dense_t = np.ascontiguousarray(op.toarray().T)
        for batch in batches:
            rows = rng.standard_normal((batch, op.shape[1]))
            columns = np.ascontiguousarray(rows.T)
            np.testing.assert_allclose(op.apply_rows(rows), rows @ dense_t, atol=1e-8)
            functions = {
                "rows": lambda op=op, rows=rows: op.apply_rows(rows),
                "columns": lambda op=op, columns=columns: op @ columns,
                "dense": lambda rows=rows, dense_t=dense_t: rows @ dense_t,
            }
            median, _ = time_interleaved(functions, args.rounds, args.budget)
            rows_time, columns_time, dense_time = (median[k] for k in functions)
            print(
                f"| {name} | {batch} | {rows_time * 1e6:,.0f} us |"
                f" {columns_time * 1e6:,.0f} us (apply_rows {rows_time / columns_time:.2f}x) |"
                f" {dense_time * 1e6:,.0f} us ({dense_time / rows_time:.1f}x apply_rows) |"
            )


def _independent_parts(n_parts: int) -> Callable:
    """A parallel kernel that runs ``n_parts`` unrelated one-vector chains, one per thread.

    Nothing is shared between the parts and they meet only at the end, so
    its speed-up over the same parts run one after another is the most that
    ``n_parts`` threads gain on this machine for work of this kind: the
    ceiling for the split kernel.
    """
    import numba

    from pydebut import _kernels

    @numba.njit(parallel=True, nogil=True)
    def run(specs, weights, x, out):
        for part in numba.prange(n_parts):
            _kernels.apply_chain_vector(specs[part], weights[part], x[part], out[part])

    return run


def print_long_vectors(args) -> None:
    """One vector through 2^16 to 2^20 butterflies: one thread against all threads.

    Times the one-thread kernel, the split kernel on all Numba threads and
    ``op.apply(x, out)`` (which picks one of the two by
    ``pydebut.operator.PARALLEL_VECTOR_SIZE`` and ``VECTOR_WORKER_FLOPS``), interleaved. For the
    ceiling, the same threads run ``n_parts`` unrelated butterflies of ``1 / n_parts``
    the length (``n_parts`` the largest power of two up to the number of
    threads), against one thread running them in turn
    (:func:`_independent_parts`).
    """
    import numba

    from pydebut import _kernels

    threads = numba.get_num_threads()
    if threads == 1:  # one thread against one thread: noise
        print("\none vector on all threads: skipped, Numba has one thread (NUMBA_NUM_THREADS=1)")
        return
    n_parts = 1 << (threads.bit_length() - 1)
    print(f"\nthreading layer {numba.threading_layer()}, load average {os.getloadavg()[0]:.1f}")
    print(
        f"\n| one vector, float64 | 1 thread | {threads} threads | speed-up | op.apply "
        f"| ceiling: {n_parts} unrelated parts, speed-up |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    parts = _independent_parts(n_parts)
    for size in (2**k for k in range(16, 21)):
        op = DeButOperator.random(butterfly_chain(size), rng=0)
        x = np.random.default_rng(0).standard_normal(size)
        out = np.empty(size)
        plan = op._plan(np.dtype(np.float64), False)
        work = np.empty(_kernels.vector_parallel_work(plan.specs, threads))
        part_plans = [
            DeButOperator.random(butterfly_chain(size // n_parts), rng=seed)._plan(
                np.dtype(np.float64), False
            )
            for seed in range(n_parts)
        ]
        part_specs = np.stack([p.specs for p in part_plans])
        part_weights = np.stack([p.weights for p in part_plans])
        part_x = x.reshape(n_parts, -1)
        part_out = np.empty_like(part_x)

        def serial(plan=plan, x=x, out=out):
            _kernels.apply_chain_vector(plan.specs, plan.weights, x, out)

        def parallel(plan=plan, x=x, out=out, work=work):
            _kernels.apply_chain_vector_parallel(plan.specs, plan.weights, x, out, work, threads)

        def direct(op=op, x=x, out=out):
            op.apply(x, out)

        def parts_in_turn(s=part_specs, w=part_weights, x=part_x, out=part_out):
            for part in range(n_parts):
                _kernels.apply_chain_vector(s[part], w[part], x[part], out[part])

        def parts_together(s=part_specs, w=part_weights, x=part_x, out=part_out):
            parts(s, w, x, out)

        functions = {
            "serial": serial,
            "parallel": parallel,
            "apply": direct,
            "in turn": parts_in_turn,
            "together": parts_together,
        }
        times, _ = time_interleaved(functions, 3 * args.rounds, 0.02)
        print(
            f"| butterfly 2^{size.bit_length() - 1} | {times['serial'] * 1e6:,.0f} us | "
            f"{times['parallel'] * 1e6:,.0f} us | {times['serial'] / times['parallel']:.2f}x | "
            f"{times['apply'] * 1e6:,.0f} us | {times['in turn'] / times['together']:.2f}x |"
        )


def startup_costs() -> tuple[float, float]:
    """Seconds for import + first apply with an empty Numba cache, then with a warm one."""
    code = (
        "import time; t = time.perf_counter(); import numpy as np, pydebut; "
        "from pydebut.special import butterfly_chain; "
        "op = pydebut.DeButOperator.random(butterfly_chain(64), rng=0); "
        "op @ np.ones(64); op @ np.ones((64, 8)); print(time.perf_counter() - t)"
    )
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        runs = [
            float(
                subprocess.run(
                    [sys.executable, "-c", code],
                    env=env,
                    check=True,
                    capture_output=True,
                    text=True,
                ).stdout
            )
            for _ in range(2)
        ]
    return runs[0], runs[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds, shorter budget")
    parser.add_argument("--batches", type=positive_int, nargs="+", default=[1, 64, 1024])
    parser.add_argument(
        "--dtypes",
        nargs="+",
        default=["float32", "float64"],
        choices=["float32", "float64", "complex64", "complex128"],
        help="also complex64, complex128 (GFLOP/s count 4 real multiply-adds per complex one)",
    )
    parser.add_argument("--chains", nargs="+", default=list(CHAINS), choices=list(CHAINS))
    parser.add_argument(
        "--small-rounds",
        type=nonnegative_int,
        default=45,
        help="rounds of the small layers' section, 1 and 8 vectors (0 skips it)",
    )
    parser.add_argument(
        "--no-rows",
        dest="rows",
        action="store_false",
        help="skip row-major data through apply_rows against the column layout and dense",
    )
    parser.add_argument(
        "--no-long-vectors",
        dest="long_vectors",
        action="store_false",
        help="skip one vector through 2^16 to 2^20 butterflies, one thread against all",
    )
    parser.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="cpu: time the process's CPU time (all its threads), which waiting for a core "
        "shared with other work does not count; meaningful with one thread",
    )
    parser.add_argument(
        "--budget",
        type=positive_float,
        help="seconds of back-to-back calls per implementation per round (default 0.1 with "
        "--quick, else 0.2); a call longer than that is timed alone, after a pause (cold)",
    )
    args = parser.parse_args()
    # x, out and their copies for the 4096 butterfly, complex128 at most
    require_memory(parser, 4 * 4096 * max(args.batches) * 16, f"{max(args.batches)} vectors")
    global CLOCK
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    args.rounds = 3 if args.quick else 7
    if args.budget is None:
        args.budget = 0.1 if args.quick else 0.2

    print(f"pydebut {pydebut.__version__} apply benchmark")
    print(f"machine: {machine()}")
    print(f"clock: {args.clock} time; load average {os.getloadavg()[0]:.1f} at the start\n")
    cold, warm = startup_costs()
    print(f"import + first apply, empty Numba cache (JIT compile): {cold:.2f} s")
    print(f"import + first apply, cached kernels:                  {warm:.2f} s\n")

    rows = [
        bench_chain(name, CHAINS[name], np.dtype(dtype).type, batch, args)
        for name in args.chains
        for dtype in args.dtypes
        for batch in args.batches
    ]
    has_faust = any("pyfaust" in row["times"] for row in rows)
    header = (
        "| chain | dtype | batch | op @ x | vs dense @ | op.apply(x) / dense |"
        " vs CSR chain | vs einsum |"
        + (" vs pyfaust |" if has_faust else "")
        + " DeBut GFLOP/s | dense GFLOP/s | DeBut / dense rate | same, best rounds |"
        " same, into out | same, aligned |"
    )
    print(header)
    print("|" + " --- |" * (header.count("|") - 1))
    for row in rows:
        t = row["times"]
        cells = [
            row["chain"],
            row["dtype"],
            str(row["batch"]),
            f"{t['debut'] * 1e6:,.0f} us",
            f"{t['dense'] / t['debut']:.1f}x",
            f"{t['apply'] / t['dense']:.2f}",
            f"{t['csr'] / t['debut']:.1f}x",
            f"{t['einsum'] / t['debut']:.1f}x",
        ]
        if has_faust:
            cells.append(f"{t['pyfaust'] / t['debut']:.1f}x" if "pyfaust" in t else "-")
        cells += [
            f"{row['gflops_debut']:.2f}",
            f"{row['gflops_dense']:.1f}",
            f"{row['gflops_debut'] / row['gflops_dense']:.0%}",
            f"{row['best']['dense'] / row['best']['debut'] * row['dense_flops_ratio']:.0%}",
            f"{row['kernel_rate_ratio']:.0%}",
            f"{row['aligned_rate_ratio']:.0%}",
        ]
        print("| " + " | ".join(cells) + " |")
    print(
        "\nRatios are (other time) / (DeBut time): above 1 means DeBut is faster; "
        "op.apply(x) / dense is a time ratio (at most 1: the direct call is as fast as dense). "
        "The rates are those of op @ x and dense @ x, which allocate their results; "
        "'into out' compares op.apply(x, out=...) with np.matmul(dense, x, out=...) "
        "(medians), the kernels' rates without the allocation; 'aligned' the same with x and "
        "out from pydebut.aligned_empty, which start on a cache line."
    )
    print(f"\nload average {os.getloadavg()[0]:.1f} at the end of the table")
    print_dtype_rates(args)
    print_complex_data(args)
    if args.rows:
        print_row_major(args)
    if args.small_rounds:
        print_small_layers(args)
    if args.long_vectors:
        print_long_vectors(args)


if __name__ == "__main__":
    main()
