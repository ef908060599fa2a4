"""Where a batched apply spends its time: the set-up of each step, and memory at large batches.

Run from the repository root, on one core for steady numbers::

    OPENBLAS_NUM_THREADS=1 NUMBA_NUM_THREADS=1 taskset -c 1 \\
        python benchmarks/bench_anatomy.py [steps] [memory] [warm] [passes] [lone] [sweeps] \\
        [windows] [columns] [--quick]

**steps.** The 2x2-group kernel (``pydebut._kernels.lanes_2x2_group``) runs
four butterfly factors (``t = 1, 2, 4, 8``) on a 256-row window that stays in
cache: per 16-row sub-problem two radix-4 steps of four *mixes* each, a mix
being one loop over the columns of four rows. A least-squares line through
the time per mix at 16 to 128 columns splits it into a fixed **set-up** (the
weights, the row addresses, entering the loop) and a cost per column, given as
the loop's floating-point rate beside a dense GEMM's. A float32 SIMD vector
holds twice the columns of a float64 one while the set-up stays the same, which
is why float32 gains less than 2x over float64 on narrow windows.

**memory.** The 4096 butterfly at 1024 float64 columns runs window by window,
128 columns each, through the whole chain. It is timed into a preallocated
``out``, through ``op @ x`` (a new 32 MiB result whose pages the OS maps and
zeroes on first write), and as eight blocks of 128 columns with the blocks' ``x``
and ``out`` either the same arrays each time (they stay in cache) or eight
different ones (read from or written to memory). Filling a new 32 MiB array and
copying 32 MiB measure the page faults and the memory bandwidth alone.

**warm.** The same 4096 butterfly at 32 to 256 float64 columns, given the same
``x`` and ``out`` every call (they stay in cache between calls, as in
``bench_apply.py`` and for dense GEMM there) or :data:`WARM_BLOCKS` different
ones in turn (read from and written to memory): the time per column says what
memory adds to a batch that is not already in cache.

**passes.** Each pass of the 4096 butterfly's and the 512 x 2048 chain's batch
plans alone, beside the whole chain and a copy of ``x``, in float64 and float32
(interleaved, with float32's rate over float64's), at 64 columns or
``--pass-columns``: at 1024 the 4096 butterfly's ``x`` and ``out`` leave the caches, and
a pass alone shows what reading the one and writing the other costs.

**lone.** A square 2x2 factor that joins no group, run by the batched kernel
(``pydebut._kernels.apply_chain_chunks``, :data:`CALLS_PER_TIMING` calls from
one compiled loop) as a group of one and alone through the general kernel, as
the plan runs it (``pydebut._batched._groups``), in float32, float64 and complex128.

**sweeps.** The general kernel (``pydebut._kernels.lanes_general``) against the
group kernel, per unit of work, at 64 float64 columns: a lone 2x2 factor and a
``(2, 4)`` factor (one *sweep* computes two output rows over the columns) beside
groups of three and four 2x2 factors (a *sub-problem* is 8 or 16 rows), each on
32 rows (input and output in the L1 cache) and on 256 and 1024 rows (in the L2
cache), from one compiled loop as in **lone**, less the time of a call on one row.

**windows.** Complex butterflies of 4096 to 16384 rows, complex64 and
complex128, on one worker: windows as the plan lays them out
(``pydebut._batched.layout``: narrower on tall chains where a worker runs
several windows, :func:`pydebut._batched.planes_lane_bytes`) against windows of
``LANE_BYTES`` per row, with the same results bit for bit.

**columns.** A block of fewer than ``pydebut.operator.COLUMNS_ALONE`` columns runs
column by column through the one-vector kernel
(``pydebut._kernels.apply_chain_columns``) unless one vector is split between
threads; here both ways, and the batched kernels on one worker
(``pydebut._batched.apply``), at 2 to 6 columns of the paper's chains and of
butterflies of 4096 to ``2**16`` rows (whose weights outgrow the caches), in
float32, float64 and complex128, with the same results bit for bit.

Timings are interleaved round by round (``bench_apply.time_interleaved``) and
the medians are reported; on a shared machine the differences between rows
mean more than the times themselves.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import os
import sys
import time
from collections.abc import Callable

import numba
import numpy as np
from _args import require_memory
from bench_apply import machine, time_interleaved

from pydebut import Chain, DeButOperator, FactorSpec, _batched, _kernels, aligned_empty
from pydebut._reference import apply_chain
from pydebut.special import PAPER_CHAINS, butterfly_chain

#: Rows of the window of the steps section (16 sub-problems of 16 rows: 256 KiB in float64
#: at 128 columns, inside the 1 MiB L2 cache of the machine in benchmarks/README.md).
STEP_ROWS = 256
STEP_TS = (1, 2, 4, 8)
STEP_WIDTHS = (16, 32, 64, 96, 128, 256)
#: The widest window of the fitted line (wider windows' rows leave the L2 cache here).
FIT_UP_TO = 128
#: Floating-point operations of a radix-4 mix per column, counted as bench_apply counts
#: them: a multiply-add (two) for each of its 16 weights.
FLOPS_PER_COLUMN = 32


def group_call(dtype: np.dtype, width: int) -> Callable[[], None]:
    """One call of the steps section's group kernel at ``width`` columns of ``dtype``."""
    rng = np.random.default_rng(0)
    ts = np.array(STEP_TS)
    specs = np.array([[STEP_ROWS, STEP_ROWS, 2, 2, t] for t in ts])
    rows = _batched._group_rows(ts)
    weights = [rng.standard_normal(2 * STEP_ROWS).astype(dtype) for _ in ts]
    packed = _batched._pack_group(specs, weights, rows).astype(dtype)
    # on cache lines, as the chain's work buffers are
    src = aligned_empty((STEP_ROWS, width), dtype)
    src[...] = rng.standard_normal(src.shape)
    dst = aligned_empty(src.shape, dtype)
    scratch = aligned_empty((2 * _kernels.MAX_GROUP_ROWS, width), dtype)
    arguments = (STEP_ROWS, len(ts), 1, rows, packed, 0, src, 0, dst, 0, width, scratch, 0, 1)

    def call() -> None:
        repeat_group(CALLS_PER_TIMING, *arguments, (0, 0), False)

    _kernels.lanes_2x2_group(*arguments, (0, 0), False)  # increasing t: the chain lists them
    chain = Chain([FactorSpec(STEP_ROWS, STEP_ROWS, 2, 2, t) for t in reversed(STEP_TS)])
    expected = apply_chain(
        chain, [w.reshape(f.weight_shape) for f, w in zip(chain, weights[::-1])], src
    )
    np.testing.assert_allclose(
        dst, expected, rtol=1e-4 if dtype == np.float32 else 1e-12, atol=1e-4
    )
    return call


#: Kernel calls per call of group_call, made from one jitted loop: called from Python
#: with its 16 arguments, the kernel costs about 0.5 us more per call, which the 128
#: mixes of one call would count as 4 ns of set-up each.
CALLS_PER_TIMING = 32
#: Radix-4 mixes per call of group_call: four per step, two steps per 16-row sub-problem.
MIXES_PER_CALL = CALLS_PER_TIMING * STEP_ROWS // 2 ** len(STEP_TS) * 4 * (len(STEP_TS) // 2)


@numba.njit(nogil=True)
def repeat_group(repeats, *arguments):  # pragma: no cover - compiled by Numba
    """``lanes_2x2_group(*arguments)``, ``repeats`` times in one compiled loop."""
    for _ in range(repeats):
        _kernels.lanes_2x2_group(*arguments)


def gemm_rate(dtype: np.dtype, rounds: int, budget: float) -> float:
    """FLOP/s of a 1024 x 1024 GEMM of ``dtype`` (two per multiply-add)."""
    rng = np.random.default_rng(1)
    a, b = (rng.standard_normal((1024, 1024)).astype(dtype) for _ in range(2))
    c = np.empty_like(a)
    median, _ = time_interleaved({"gemm": lambda: np.matmul(a, b, out=c)}, rounds, budget)
    return 2 * 1024**3 / median["gemm"]


def steps_section(rounds: int, budget: float) -> None:
    print("## Set-up per radix-4 step (2x2-group kernel, 256 rows in cache)\n")
    dtypes = [np.dtype("float64"), np.dtype("float32")]
    calls = {
        f"{dtype} {width}": group_call(dtype, width) for dtype in dtypes for width in STEP_WIDTHS
    }
    median, _ = time_interleaved(calls, rounds, budget)
    times = {
        dtype: {width: median[f"{dtype} {width}"] / MIXES_PER_CALL for width in STEP_WIDTHS}
        for dtype in dtypes
    }
    print("| columns | float64 ns per mix | float32 ns per mix | float32 rate over float64 |")
    print("| --- | --- | --- | --- |")
    for width in STEP_WIDTHS:
        t64, t32 = (times[dtype][width] for dtype in dtypes)
        print(f"| {width} | {t64 * 1e9:.1f} | {t32 * 1e9:.1f} | {t64 / t32:.2f} |")
    print()
    for dtype in dtypes:
        fitted = [w for w in STEP_WIDTHS if w <= FIT_UP_TO]
        per_column, setup = np.polyfit(fitted, [times[dtype][w] for w in fitted], 1)
        print(
            f"{dtype}: set-up {setup * 1e9:.1f} ns per mix, then {per_column * 1e9:.3f} ns per"
            f" column: the loop at {FLOPS_PER_COLUMN / per_column / 1e9:.0f} GFLOP/s"
            f" (a GEMM here: {gemm_rate(dtype, rounds, budget) / 1e9:.0f})"
        )
    print(
        f"\n(a line through 16 to {FIT_UP_TO} columns; a mix applies 16 weights to each column,"
        f" {FLOPS_PER_COLUMN} floating-point operations as bench_apply counts them)"
    )


def memory_section(rounds: int, budget: float) -> None:
    print("\n## Memory at 1024 columns (4096 butterfly, float64)\n")
    rng = np.random.default_rng(0)
    op = DeButOperator.random(butterfly_chain(4096), rng=1)
    n, batch, width = op.shape[1], 1024, 128
    x = rng.standard_normal((n, batch))
    out = np.empty_like(x)
    blocks = [rng.standard_normal((n, width)) for _ in range(batch // width)]
    block_outs = [np.empty_like(block) for block in blocks]
    source, target = rng.standard_normal((n, batch)), np.empty((n, batch))
    cases = {
        "op.apply(x, out)": lambda: op.apply(x, out),
        "op @ x (new result)": lambda: op @ x,
        "8 blocks of 128, x and out in cache": lambda: [
            op.apply(blocks[0], block_outs[0]) for _ in blocks
        ],
        "8 blocks of 128, x from memory": lambda: [
            op.apply(block, block_outs[0]) for block in blocks
        ],
        "8 blocks of 128, out to memory": lambda: [
            op.apply(blocks[0], block_out) for block_out in block_outs
        ],
        "fill a new 32 MiB array": lambda: np.empty_like(x).fill(0.0),
        "copy 32 MiB": lambda: np.copyto(target, source),
    }
    median, _ = time_interleaved(cases, rounds, budget)
    for name, seconds in median.items():
        print(f"  {name:38s} {seconds * 1e3:7.2f} ms")
    extra = {
        "reading x from memory": (
            "8 blocks of 128, x from memory",
            "8 blocks of 128, x and out in cache",
        ),
        "writing out to memory": (
            "8 blocks of 128, out to memory",
            "8 blocks of 128, x and out in cache",
        ),
        "a new result (op @ x)": ("op @ x (new result)", "op.apply(x, out)"),
    }
    print()
    for name, (slower, faster) in extra.items():
        print(f"  {name:24s} +{(median[slower] - median[faster]) * 1e3:.2f} ms")


#: Blocks taken in turn by the warm section: 16 blocks of 64 float64 columns of 4096 rows
#: are 32 MiB of ``x`` and as much of ``out``, as large as the L3 cache of the machine in
#: benchmarks/README.md.
WARM_BLOCKS = 16
WARM_WIDTHS = (32, 64, 128, 256)


def warm_section(rounds: int, budget: float) -> None:
    """Time per column of the same block each call against :data:`WARM_BLOCKS` in turn."""
    print("\n## Warm and cold blocks (4096 butterfly, float64)\n")
    rng = np.random.default_rng(0)
    op = DeButOperator.random(butterfly_chain(4096), rng=1)
    cases = {}
    for width in WARM_WIDTHS:
        blocks = [rng.standard_normal((op.shape[1], width)) for _ in range(WARM_BLOCKS)]
        outs = [np.empty_like(block) for block in blocks]
        pairs = itertools.cycle(zip(blocks, outs))
        cases[width, "same"] = lambda x=blocks[0], out=outs[0]: op.apply(x, out)
        cases[width, "in turn"] = lambda pairs=pairs: op.apply(*next(pairs))
    median, _ = time_interleaved(cases, rounds, budget)
    print(f"  columns   same x and out   {WARM_BLOCKS} blocks in turn   (us per column)")
    for width in WARM_WIDTHS:
        same, turn = (median[width, how] * 1e6 / width for how in ("same", "in turn"))
        print(f"  {width:7d}   {same:14.2f}   {turn:17.2f}")


#: The chains of the passes section, at PASS_COLUMNS columns (unless --pass-columns) of each
#: of PASS_DTYPES.
PASS_CHAINS = {
    "4096 butterfly": butterfly_chain(4096),
    "ResNet 512x2048": PAPER_CHAINS["resnet50-layer4"],
}
PASS_COLUMNS = 64
PASS_DTYPES = ("float64", "float32")


def pass_chains(chain: Chain) -> list[Chain]:
    """The factors of each pass of ``chain``'s batch plan, as chains, in application order."""
    specs = np.array([(f.p, f.q, f.r, f.s, f.t) for f in reversed(chain)], dtype=np.int64)
    factors = list(reversed(chain))  # application order, as the plan's specs
    return [Chain(factors[first : first + max(k, 1)][::-1]) for first, k in _batched._groups(specs)]


def passes_section(rounds: int, budget: float, columns: int = PASS_COLUMNS) -> None:
    """Each pass of a chain alone against the whole chain and a copy of the same data."""
    print(f"\n## Passes alone ({columns} columns, x and out the same each call)\n")
    rng = np.random.default_rng(0)
    wide, narrow = PASS_DTYPES
    print(f"| chain | what | {wide} | GFLOP/s | {narrow} | GFLOP/s | {narrow} rate over {wide} |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, chain in PASS_CHAINS.items():
        cases, flops = {}, {}
        for label, part in [("whole chain", chain)] + [
            (f"pass {i}: {len(c)} x ({c[0].r}, {c[0].s}), {c[0].q} -> {c[-1].p}", c)
            for i, c in enumerate(pass_chains(chain), start=1)
        ]:
            for dtype in PASS_DTYPES:
                op = DeButOperator.random(part, rng=1, dtype=dtype)
                x = aligned_empty((op.shape[1], columns), dtype)  # see docs/speed.md
                x[...] = rng.standard_normal(x.shape)
                out = aligned_empty((op.shape[0], columns), dtype)
                cases[label, dtype] = lambda op=op, x=x, out=out: op.apply(x, out)
            flops[label] = _batched.real_flops(op._plan(x.dtype, False).weights, columns)
        for dtype in PASS_DTYPES:
            source = aligned_empty((chain.shape[1], columns), dtype)
            source[...] = rng.standard_normal(source.shape)
            target = aligned_empty(source.shape, dtype)
            cases["copy x", dtype] = lambda source=source, target=target: np.copyto(target, source)
        median, _ = time_interleaved(cases, rounds, budget)
        for label in dict.fromkeys(label for label, _ in cases):
            times = [median[label, dtype] for dtype in PASS_DTYPES]
            rates = [f"{flops[label] / t / 1e9:.1f}" if label in flops else "" for t in times]
            print(
                f"| {name} | {label} | {times[0] * 1e6:,.0f} us | {rates[0]} "
                f"| {times[1] * 1e6:,.0f} us | {rates[1]} | {times[0] / times[1]:.2f} |"
            )


#: The lone 2x2 factors of the lone section, (rows, t), at these columns and dtypes.
LONE_FACTORS = ((512, 1), (512, 256), (4096, 1), (4096, 64))
LONE_WIDTHS = (2, 8, 16, 64, 256)
LONE_DTYPES = ("float32", "float64", "complex128")


@numba.njit(nogil=True)
def repeat_chunks(repeats, *arguments):  # pragma: no cover - compiled by Numba
    """``apply_chain_chunks(*arguments)``, ``repeats`` times in one compiled loop."""
    for _ in range(repeats):
        _kernels.apply_chain_chunks(*arguments)


def repeated_chunks(
    plan: _batched.BatchPlan,
    x: np.ndarray,
    out: np.ndarray,
    split: _batched.Layout | None = None,
    repeats: int = CALLS_PER_TIMING,
) -> Callable:
    """``out = plan @ x`` once, and a call that repeats it ``repeats`` times.

    The block runs on one worker in the windows of ``split`` (by default the
    plan's :func:`pydebut._batched.layout`).
    """
    split = split or _batched.layout(plan, x.shape[1])
    work = aligned_empty(split.work_shape, split.work_dtype)
    arguments = (plan.specs, plan.passes, plan.rows, plan.weights, x, out, work)
    arguments += (split.width, split.part_rows, False, 0)
    _kernels.apply_chain_chunks(*arguments)
    return lambda: repeat_chunks(repeats, *arguments)


def lone_plans(spec: FactorSpec, weights: np.ndarray) -> dict[str, _batched.BatchPlan]:
    """One 2x2 factor as a group of one (``k = 1``) and alone through the general kernel."""
    specs = np.array([spec.as_tuple()], dtype=np.int64)
    ts = specs[:, 4]
    rows = _batched._group_rows(ts)
    packed = _batched._pack_group(specs, [weights], rows).astype(weights.dtype)
    group = _batched.BatchPlan(specs, np.array([[0, 1, 0, 0]]), rows, packed, {})
    offsets = np.array([0, weights.size])
    return {"group of one": group, "general": _batched.make_batch_plan(specs, offsets, weights)}


def lone_section(rounds: int, budget: float) -> None:
    """A lone square 2x2 factor as a group of one against the general kernel (why it runs alone)."""
    print("\n## A lone 2x2 factor: group of one against the general kernel (kernel calls)\n")
    print("| dtype | rows | t | columns | group of one | general | group / general |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    rng = np.random.default_rng(0)
    for dtype, (p, t), width in itertools.product(LONE_DTYPES, LONE_FACTORS, LONE_WIDTHS):
        spec = FactorSpec(p, p, 2, 2, t)
        weights = rng.standard_normal(spec.nnz).astype(dtype)
        x = aligned_empty((p, width), dtype)
        x[...] = rng.standard_normal(x.shape)
        out = aligned_empty(x.shape, dtype)
        expected = apply_chain(Chain([spec]), [weights.reshape(spec.weight_shape)], x)
        calls = {}
        for name, plan in lone_plans(spec, weights).items():
            calls[name] = repeated_chunks(plan, x, out)
            np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)
        median, _ = time_interleaved(calls, rounds, budget)
        group, general = (median[name] / CALLS_PER_TIMING for name in calls)
        print(
            f"| {dtype} | {p} | {t} | {width} | {group * 1e6:.2f} us | {general * 1e6:.2f} us "
            f"| {group / general:.2f} |"
        )


#: The sweeps section's passes (application order) on ``rows`` input rows, each given as
#: (label, factors of ``rows``, work units of ``rows``: sweeps or sub-problems).
SWEEP_PASSES = (
    ("lone (2, 2), t = 1", lambda n: [(n, n, 2, 2, 1)], lambda n: n // 2),
    ("(2, 4), t = 8", lambda n: [(n // 2, n, 2, 4, 8)], lambda n: n // 4),
    ("three 2x2, t = 1, 2, 4", lambda n: [(n, n, 2, 2, t) for t in (1, 2, 4)], lambda n: n // 8),
    ("four 2x2, t = 1 to 8", lambda n: [(n, n, 2, 2, t) for t in (1, 2, 4, 8)], lambda n: n // 16),
)
#: Rows of each pass: 32 keep a pass's input and output within the 48 KiB L1 cache of the
#: machine in benchmarks/README.md at 64 float64 columns; 256 and 1024 only within L2.
SWEEP_ROWS = (32, 256, 1024)
SWEEP_COLUMNS = 64


def _chunks_call(factors: list[tuple[int, ...]], rng: np.random.Generator) -> tuple[Callable, int]:
    """Repeated batched-kernel calls of a pass (as its plan runs it) and its flops per call."""
    specs = np.array(factors, dtype=np.int64)
    weights = [rng.standard_normal(FactorSpec(*f).nnz) for f in factors]
    offsets = np.cumsum([0] + [w.size for w in weights])
    plan = _batched.make_batch_plan(specs, offsets, np.concatenate(weights))
    x = aligned_empty((factors[0][1], SWEEP_COLUMNS))
    x[...] = rng.standard_normal(x.shape)
    out = aligned_empty((factors[-1][0], SWEEP_COLUMNS))
    call = repeated_chunks(plan, x, out)
    chain = Chain([FactorSpec(*f) for f in reversed(factors)])
    expected = apply_chain(
        chain, [w.reshape(f.weight_shape) for f, w in zip(chain, weights[::-1])], x
    )
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)
    return call, _batched.real_flops(plan.weights, SWEEP_COLUMNS)


def sweeps_section(rounds: int, budget: float) -> None:
    """The general kernel's cost per sweep against a group's per sub-problem."""
    print(f"\n## General sweeps and group sub-problems ({SWEEP_COLUMNS} float64 columns)\n")
    print("| pass | rows | per call | per sweep or sub-problem | GFLOP/s |")
    print("| --- | --- | --- | --- | --- |")
    rng = np.random.default_rng(0)
    calls, flops = {"one row": _chunks_call([(1, 1, 1, 1, 1)], rng)[0]}, {}
    for (label, factors, _), rows in itertools.product(SWEEP_PASSES, SWEEP_ROWS):
        calls[label, rows], flops[label, rows] = _chunks_call(factors(rows), rng)
    median, _ = time_interleaved(calls, rounds, budget)
    empty = median["one row"] / CALLS_PER_TIMING
    for (label, _, units), rows in itertools.product(SWEEP_PASSES, SWEEP_ROWS):
        net = median[label, rows] / CALLS_PER_TIMING - empty
        print(
            f"| {label} | {rows} | {net * 1e6:.2f} us | {net / units(rows) * 1e9:.1f} ns"
            f" | {flops[label, rows] / net / 1e9:.1f} |"
        )
    print(f"\n(a call on one row, subtracted: {empty * 1e6:.2f} us)")


def operator_plan(op: DeButOperator, dtype: str) -> _batched.BatchPlan:
    """The batch plan ``op`` runs blocks of ``dtype`` through."""
    kernels = op._plan(np.dtype(dtype), False)
    return _batched.make_batch_plan(kernels.specs, kernels.offsets, kernels.weights)


def one_worker(plan: _batched.BatchPlan, width: int) -> _batched.Layout:
    """One worker's windows of ``width`` columns (fewer where its buffers would not be kept)."""
    kept = _batched._kept_window(plan, width, 1)
    return _batched.Layout(1, 1, *kept, np.finfo(plan.weights.dtype).dtype)


#: The windows section's complex butterflies: (rows, columns).
WINDOW_CASES = ((4096, 64), (4096, 256), (4096, 1024), (8192, 64), (8192, 256), (16384, 64))
WINDOW_DTYPES = ("complex64", "complex128")


def windows_section(rounds: int, budget: float) -> None:
    """Complex windows as the plan lays them out against windows of LANE_BYTES per row."""
    print("\n## Complex windows: the plan's against LANE_BYTES per row (one worker)\n")
    print("| rows | dtype | columns | windows | time | LANE_BYTES windows | time | speed-up |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    rng = np.random.default_rng(0)
    for (n, columns), dtype in itertools.product(WINDOW_CASES, WINDOW_DTYPES):
        plan = operator_plan(DeButOperator.random(butterfly_chain(n), rng=0, dtype=dtype), dtype)
        x = aligned_empty((n, columns), dtype)
        x[...] = rng.standard_normal(x.shape) + 1j * rng.standard_normal(x.shape)
        outs = {"plan": aligned_empty(x.shape, dtype), "wide": aligned_empty(x.shape, dtype)}
        widest = _batched.LANE_BYTES // np.dtype(dtype).itemsize
        splits = {
            "plan": _batched._new_layout(plan, columns, 1, 1),
            "wide": one_worker(plan, min(widest, columns)),
        }
        calls = {how: repeated_chunks(plan, x, outs[how], splits[how], 1) for how in splits}
        np.testing.assert_array_equal(outs["plan"], outs["wide"])  # each column as before
        median, _ = time_interleaved(calls, rounds, budget)
        cells = [
            f"{-(-columns // splits[how].width)} of {splits[how].width} | "
            f"{median[how] * 1e6:,.0f} us"
            for how in ("plan", "wide")
        ]
        speed_up = median["wide"] / median["plan"]
        print(f"| {n} | {dtype} | {columns} | " + " | ".join(cells) + f" | {speed_up:.2f} |")


#: Chains and columns of the columns section.
COLUMN_CHAINS = {
    **PAPER_CHAINS,
    **{f"butterfly 2^{k}": butterfly_chain(2**k) for k in (12, 14, 16)},
}
FEW_COLUMNS = (2, 3, 4, 5, 6)
COLUMN_DTYPES = ("float32", "float64", "complex128")


def columns_section(rounds: int, budget: float) -> None:
    """A few columns: column by column against the batched kernels on one worker."""
    print("\n## A few columns: column by column over the batched kernels' time (one worker)\n")
    print("| chain | dtype | " + " | ".join(f"{c} columns" for c in FEW_COLUMNS) + " |")
    print("| --- | --- |" + " --- |" * len(FEW_COLUMNS))
    rng = np.random.default_rng(0)
    for name, dtype in itertools.product(COLUMN_CHAINS, COLUMN_DTYPES):
        op = DeButOperator.random(COLUMN_CHAINS[name], rng=0, dtype=dtype)
        kernels = op._plan(np.dtype(dtype), False)
        plan = operator_plan(op, dtype)
        calls = {}
        for columns in FEW_COLUMNS:
            x = rng.standard_normal((op.shape[1], columns)).astype(dtype)
            if np.dtype(dtype).kind == "c":
                x += 1j * rng.standard_normal(x.shape)
            outs = [np.empty((op.shape[0], columns), dtype) for _ in range(2)]

            def alone(x=x, out=outs[0], kernels=kernels):
                _kernels.apply_chain_columns(kernels.specs, kernels.weights, x, out)

            alone()
            calls["alone", columns] = alone
            calls["batched", columns] = repeated_chunks(
                plan, x, outs[1], one_worker(plan, columns), 1
            )
            np.testing.assert_array_equal(outs[0], outs[1])
        median, _ = time_interleaved(calls, rounds, budget / 10)
        ratios = [median["alone", c] / median["batched", c] for c in FEW_COLUMNS]
        print(f"| {name} | {dtype} | " + " | ".join(f"{r:.2f}" for r in ratios) + " |")
    print(
        "\n(above 1 the batched kernels are faster; blocks of fewer than"
        " COLUMNS_ALONE columns run column by column unless one vector is split)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "sections",
        nargs="*",
        help="steps, memory, warm, passes, lone, sweeps, windows, columns (default: all)",
    )
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    parser.add_argument(
        "--pass-columns",
        type=int,
        default=PASS_COLUMNS,
        help=f"columns of the passes section (default {PASS_COLUMNS})",
    )
    args = parser.parse_args()
    if args.pass_columns < 1:
        parser.error("--pass-columns must be at least 1")
    require_memory(parser, 4 * 4096 * args.pass_columns * 8, f"{args.pass_columns} columns")
    known = {
        "steps": steps_section,
        "memory": memory_section,
        "warm": warm_section,
        "passes": functools.partial(passes_section, columns=args.pass_columns),
        "lone": lone_section,
        "sweeps": sweeps_section,
        "windows": windows_section,
        "columns": columns_section,
    }
    sections = args.sections or list(known)
    if set(sections) - set(known):
        parser.error(f"unknown sections {sorted(set(sections) - set(known))}")
    rounds, budget = (5, 0.05) if args.quick else (11, 0.1)
    print(f"machine: {machine()}")
    print(f"load average {os.getloadavg()[0]:.1f} at the start; {time.strftime('%Y-%m-%d')}\n")
    for name, section in known.items():
        if name in sections:
            section(rounds, budget)
    print(f"\nload average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    sys.exit(main())
