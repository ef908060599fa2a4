"""Benchmark the Dask back-end: streaming, many fits, out-of-core fits; prints markdown.

Run from the repository root (needs ``pip install -e ".[dask]" zarr``)::

    python benchmarks/bench_dask.py stream [--columns 10000000] [--chunk 1024]
    python benchmarks/bench_dask.py fits [--count 24]
    python benchmarks/bench_dask.py out-of-core [--n 16384] [--in-memory-n 8192]

``stream`` pushes a ``4096 x columns`` float32 array through the 4096 Hadamard
butterfly; the array is generated chunk by chunk and never materialised: every
chunk is a view of one fixed random block (``--fresh``: a scaled copy of it, so
that generating the data costs a pass over memory too), and the consumer sums
one row of each output chunk. It reports columns per second per core against,
measured side by side in the same run, the in-memory application of the same
operator to a block of 8 chunks and the same generate-apply-consume pipeline as
a plain NumPy loop (Numba on one thread throughout, so "per core" is well
defined).

``fits`` fits ``count`` matrices of 512 x 2048 to 2048 x 2048 (the layers of a
network-sized model) with two ALS sweeps: serially on one core (BLAS and Numba
on one thread) and with :func:`pydebut.dask.fit_many` on a ``LocalCluster`` of
2 worker processes with one thread each, and checks the results are identical.

``out-of-core`` writes an ``n x n`` float64 target to a Zarr store on disk
(chunk by chunk, in column panels), fits the ``n`` butterfly to it out of core,
and fits a smaller ``in-memory-n`` target both ways; every fit runs in a fresh
process whose peak resident memory (``ru_maxrss``) is reported.

The machine may be shared with other work: compare the ratios, which are
measured side by side, rather than absolute figures.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import numpy as np
from _args import at_most, positive_int, power_of_two, require_memory, require_modules

from pydebut import Chain, fit_als, fit_hierarchical, special


def machine() -> str:
    load = os.getloadavg()
    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"load average {load[0]:.1f} at start, Python {platform.python_version()}, "
        f"NumPy {np.__version__}"
    )


# --- streaming ----------------------------------------------------------------------------
def chunk_of_columns(base: np.ndarray, index: int, width: int, fresh: bool) -> np.ndarray:
    """Chunk ``index`` of the streamed data: a fixed random block (times ``1 + index`` if fresh)."""
    return base[:, :width] * base.dtype.type(1 + index) if fresh else base[:, :width]


def generated_columns(base: np.ndarray, columns: int, fresh: bool) -> object:
    """A lazy ``n x columns`` array made of :func:`chunk_of_columns`, never materialised."""
    import dask.array as da

    n, chunk = base.shape
    widths = (chunk,) * (columns // chunk) + ((columns % chunk,) if columns % chunk else ())

    def block(block_info=None):
        (start, stop) = block_info[None]["array-location"][1]
        return chunk_of_columns(base, start // chunk, stop - start, fresh)

    return da.map_blocks(block, chunks=((n,), widths), dtype=base.dtype, meta=base[:0, :0])


def bench_stream(columns: int, chunk: int, workers: int, fresh: bool) -> None:
    import dask

    dtype = np.dtype(np.float32)
    op = special.hadamard(4096, dtype=dtype)
    base = np.random.default_rng(0).standard_normal((4096, chunk)).astype(dtype)
    op @ base  # compile
    check = (op @ generated_columns(base, 2 * chunk, fresh))[0].sum().compute()
    expected = sum(float((op @ chunk_of_columns(base, i, chunk, fresh))[0].sum()) for i in (0, 1))
    assert np.isclose(check, expected, rtol=1e-3), (check, expected)
    lazy = (op @ generated_columns(base, columns, fresh))[0].sum()  # consumer: one row's sum

    def numpy_loop():  # the same pipeline without Dask: generate, apply, consume
        return sum(float((op @ chunk_of_columns(base, i, chunk, fresh))[0].sum()) for i in range(8))

    big = np.concatenate([chunk_of_columns(base, i, chunk, True) for i in range(8)], axis=1)
    rows = []
    for label, scheduler, cores in [
        ("Dask, 1 thread (synchronous)", "synchronous", 1),
        (f"Dask, {workers} threads", "threads", workers),
    ]:
        in_memory = columns_per_second(lambda: op @ big, 8 * chunk, repeat=3)
        loop = columns_per_second(numpy_loop, 8 * chunk, repeat=3)
        start = time.perf_counter()
        with dask.config.set(scheduler=scheduler, num_workers=workers):
            lazy.compute()
        per_core = columns / (time.perf_counter() - start) / cores
        rows.append(
            f"| {label} | {columns:.3g} | {per_core:.4g} | {in_memory:.4g} | {loop:.4g} "
            f"| {per_core / in_memory:.0%} | {per_core / loop:.0%} |"
        )
    data = "fresh (scaled copy)" if fresh else "fixed block (view)"
    print(f"\n4096 Hadamard, float32, chunks 4096 x {chunk}, data {data}; {machine()}\n")
    print(
        "| streaming | columns | columns/s per core | in memory `op @ X`, 1 core "
        "| NumPy loop, same pipeline, 1 core | vs in memory | vs NumPy loop |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    print("\n".join(rows))


def columns_per_second(function, columns: int, repeat: int = 5) -> float:
    best = np.inf
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return columns / best


# --- many fits ----------------------------------------------------------------------------
def radix2_chain(m: int, n: int) -> Chain:
    """Chainable chain of radix-2 factors for powers of two (``r = 1`` or ``s = 1`` pads)."""
    a, b = m.bit_length() - 1, n.bit_length() - 1
    length = max(a, b)
    return Chain.from_factorizations([2] * a + [1] * (length - a), [2] * b + [1] * (length - b))


def model_layers(count: int) -> list[tuple[int, int]]:
    shapes = [(512, 2048), (1024, 2048), (2048, 2048), (2048, 1024), (2048, 512), (1024, 1024)]
    return [shapes[i % len(shapes)] for i in range(count)]


#: Dask's nannies start workers with MALLOC_TRIM_THRESHOLD_=65536, which turns off glibc's
#: adaptive mmap threshold: every large temporary of a fit is then a fresh mmap whose pages
#: fault in again (fits ran about 2x slower). Keep such buffers on the heap instead.
WORKER_MALLOC = {
    "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": 2**32,
    "distributed.nanny.pre-spawn-environ.MALLOC_MMAP_THRESHOLD_": 2**25 + 2**20,
}


def bench_fits(count: int, sweeps: int) -> None:
    import dask
    from dask.distributed import Client, LocalCluster
    from threadpoolctl import threadpool_limits

    from pydebut.dask import fit_many

    rng = np.random.default_rng(2)
    shapes = model_layers(count)
    chains = [
        special.PAPER_CHAINS["resnet50-layer4"] if shape == (512, 2048) else radix2_chain(*shape)
        for shape in shapes
    ]
    targets = [rng.standard_normal(shape) for shape in shapes]
    fit_als(targets[0], chains[0], n_sweeps=1)  # compile
    with threadpool_limits(1):
        start = time.perf_counter()
        serial = [fit_als(t, c, n_sweeps=sweeps) for t, c in zip(targets, chains)]
        serial_time = time.perf_counter() - start
    start = time.perf_counter()
    with (
        dask.config.set(WORKER_MALLOC),
        LocalCluster(
            processes=True, n_workers=2, threads_per_worker=1, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        startup = time.perf_counter() - start
        fit_many(targets[:2], chains[:2], "als", client=client, n_sweeps=1)  # compile
        start = time.perf_counter()
        parallel = fit_many(targets, chains, "als", client=client, n_sweeps=sweeps)
        parallel_time = time.perf_counter() - start
    same = all(
        p.errors == s.errors
        and all(np.array_equal(a, b) for a, b in zip(p.operator.weights, s.operator.weights))
        for p, s in zip(parallel, serial)
    )
    print(f"\n{count} ALS fits ({sweeps} sweeps), shapes {sorted(set(shapes))}; {machine()}\n")
    serial_fits = sum(r.times[-1] for r in serial)
    parallel_fits = sum(r.times[-1] for r in parallel)
    print("| run | wall seconds | speed-up | sum of the fits' own times (s) | identical |")
    print("| --- | --- | --- | --- | --- |")
    print(f"| serial, 1 core | {serial_time:.1f} | 1.00x | {serial_fits:.1f} | |")
    print(
        f"| fit_many, LocalCluster 2 processes x 1 thread | {parallel_time:.1f} "
        f"| {serial_time / parallel_time:.2f}x | {parallel_fits:.1f} "
        f"| {'yes' if same else 'NO'} |"
    )
    print(f"\n(cluster start-up, not counted: {startup:.1f} s)")


# --- out of core ----------------------------------------------------------------------------
def write_target(path: str, n: int) -> None:
    """A random ``n x n`` float64 target in a Zarr store, written panel by panel."""
    import dask.array as da

    panel = max(1, 2**25 // (8 * n))
    target = da.random.default_rng(3).standard_normal((n, n), chunks=(n, panel))
    target.to_zarr(path, overwrite=True, compressors=None)


def fit_child(path: str, mode: str) -> None:
    """Fit the target at ``path`` in this process; print seconds, peak RSS and the error."""
    import dask.array as da

    target = da.from_zarr(path)
    chain = special.butterfly_chain(target.shape[0])
    start = time.perf_counter()
    if mode == "in-memory":
        result = fit_hierarchical(target.compute(), chain)
    else:
        result = fit_hierarchical(target, chain)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    weights = np.concatenate([w.ravel() for w in result.operator.weights])
    np.save(path + f".{mode}.npy", weights)
    print(seconds, peak, result.error)


def run_child(path: str, mode: str) -> tuple[float, int, float]:
    output = subprocess.run(
        [sys.executable, __file__, "fit-child", path, mode],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return float(output[0]), int(output[1]), float(output[2])


def bench_out_of_core(n: int, in_memory_n: int) -> None:
    rows = []
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as folder:
        for size, modes in [(in_memory_n, ("in-memory", "out-of-core")), (n, ("out-of-core",))]:
            path = os.path.join(folder, f"target{size}.zarr")
            start = time.perf_counter()
            write_target(path, size)
            written = time.perf_counter() - start
            results = {mode: run_child(path, mode) for mode in modes}
            if len(modes) == 2:
                a, b = (np.load(path + f".{mode}.npy") for mode in modes)
                gap = f"{np.abs(a - b).max() / np.abs(a).max():.1e}"
            else:
                gap = ""
            for mode, (seconds, peak, error) in results.items():
                rows.append(
                    f"| {size} x {size} ({size * size * 8 / 2**30:.2f} GiB) | {mode} "
                    f"| {seconds:.1f} | {peak / 2**20:.0f} | {error:.6f} | {gap} |"
                )
            print(f"(wrote the {size} x {size} Zarr store in {written:.1f} s)", file=sys.stderr)
    print(f"\nbutterfly fit_hierarchical of a random float64 target in Zarr; {machine()}\n")
    print("| target | fit | seconds | peak RSS (MiB) | relative error | max factor gap |")
    print("| --- | --- | --- | --- | --- | --- |")
    print("\n".join(rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    stream = sub.add_parser("stream")
    stream.add_argument("--columns", type=positive_int, default=10**7)
    stream.add_argument("--chunk", type=positive_int, default=1024)
    stream.add_argument("--workers", type=positive_int, default=2)
    stream.add_argument("--fresh", action="store_true", help="copy and scale every chunk")
    fits = sub.add_parser("fits")
    fits.add_argument("--count", type=at_most(10_000), default=24)
    fits.add_argument("--sweeps", type=positive_int, default=2)
    ooc = sub.add_parser("out-of-core")
    ooc.add_argument("--n", type=power_of_two, default=16384)
    ooc.add_argument("--in-memory-n", type=power_of_two, default=8192)
    child = sub.add_parser("fit-child")
    child.add_argument("path")
    child.add_argument("mode", choices=["in-memory", "out-of-core"])
    args = parser.parse_args()
    needs = {"fits": ("dask", "distributed"), "out-of-core": ("dask", "zarr")}
    require_modules(parser, f"bench_dask.py {args.what}", *needs.get(args.what, ("dask",)))
    if args.what == "stream":
        require_memory(parser, 4 * 4096 * args.chunk * 4, f"chunks of {args.chunk} columns")
        bench_stream(args.columns, args.chunk, args.workers, args.fresh)
    elif args.what == "fits":
        bench_fits(args.count, args.sweeps)
    elif args.what == "out-of-core":
        bench_out_of_core(args.n, args.in_memory_n)
    else:
        fit_child(args.path, args.mode)


if __name__ == "__main__":
    main()
