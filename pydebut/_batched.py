"""The batched kernels' plan: a chain's factors grouped into passes, their weights packed.

A block of vectors runs through :func:`pydebut._kernels.apply_chain_matrix`
pass by pass. A pass is one factor with any ``(r, s, t)``, or a *group* of
``2 <= k <= 4`` consecutive square factors with ``r = s = 2`` whose ``t`` are
``T, 2T, ..., 2**(k-1) T`` in some order (the butterfly's factors, in either
direction): their product mixes ``2**k`` rows at stride ``T`` at a time, so
:func:`pydebut._kernels.lanes_2x2_group` reads and writes the window once for
all ``k`` factors. A group's weights are packed so that each of its
sub-problems finds its ``2k 2**k`` weights contiguous, in the order the
kernel uses them.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from . import _kernels, _numba_setup, _workspace
from ._memory import ALIGN_BYTES

#: Bytes of each row's window (128 float64 or 256 float32 columns): one window runs the
#: whole chain before the next starts; fewer vectors use narrower windows, one per worker.
LANE_BYTES = 1024

#: Complex weights run on split planes, whose windows narrow on tall chains so that a
#: window of the chain's largest dimension takes at most this many bytes, down to
#: :data:`PLANES_MIN_LANE_BYTES` per row (:func:`planes_lane_bytes`).
PLANES_WINDOW_BYTES = 2**21
PLANES_MIN_LANE_BYTES = 256

# The fewest columns of a window when a long chain narrows it to keep the work buffers
# within _workspace.KEEP_BYTES (one 64-byte cache line of float64).
_MIN_LANES = 8

#: A second worker thread only for at least this many bytes of columns per worker (16
#: float64 columns: since the eighth session narrow windows no longer run scalar; blocks
#: of 32 and 64 float64 columns on two workers measured 1.2-1.3x one worker on the 4096
#: butterfly (TBB) and 1.7-2.1x on the 2**16 one) ...
MIN_WORKER_BYTES = 128
#: ... and at least this many floating-point operations per worker. On Numba's workqueue
#: layer 2**25, about 2 ms of one core: its fork-join waits for the slower thread, and on
#: the shared 2-core machine of benchmarks/README.md two threads were 0.2-0.7x one thread
#: up to 128 vectors of the 4096 butterfly and 1.1x (median; 1.7x best) at 1024. On TBB
#: 2**21, about 0.1 ms: from there two threads measured 1.0-2.0x one on the paper's chains.
MIN_WORKER_FLOPS = 2**25 if _numba_setup.launches_through_workqueue() else 2**21

#: Bytes of a part's rows, read and written (half of a 2 MiB L2 cache): passes that split
#: into matching parts run part by part, so a part stays in cache from pass to pass
#: (:func:`pydebut._kernels.phase_end`).
PART_BYTES = 2**20


#: A real output of at least this many bytes (half the 32 MiB L3 cache of the machine in
#: benchmarks/README.md) is written past the caches (:func:`streams_output`).
STREAM_BYTES = 2**24
#: ... when the last pass is a group of at least this many 2x2 factors.
STREAM_MIN_GROUP = 3


class Layout(NamedTuple):
    """How a block of one batch size runs: its workers, windows and work buffer."""

    most_workers: int  # the workers the block could use, whatever the threads
    n_workers: int
    width: int  # columns of a window
    part_rows: int  # rows of a part (see pydebut._kernels.phase_end)
    work_shape: tuple[int, int, int]  # (n_workers, rows, real columns)
    work_dtype: np.dtype  # real: complex data runs as split planes


class BatchPlan(NamedTuple):
    """A chain laid out for :func:`pydebut._kernels.apply_chain_matrix`, in application order."""

    specs: np.ndarray  # (L, 5) int64: (p, q, r, s, t)
    passes: np.ndarray  # (n_passes, 4) int64: (first factor, k or 0, w_start, r_start)
    rows: np.ndarray  # int64 row offsets of the groups' sub-problems
    weights: np.ndarray  # packed, of the data's dtype
    layouts: dict[int, Layout]  # by batch size, see layout()


#: Layouts one plan remembers; more batch sizes than this start it afresh.
KEEP_LAYOUTS = 64


def _groups(specs: np.ndarray) -> list[tuple[int, int]]:
    """``(first factor, k)`` of each pass; ``k = 0`` for a factor run alone by the general kernel.

    Greedy: a group grows while the next factor is square, 2x2, of the same size, and
    the ``t`` so far stay ``T, 2T, ..., 2**(k-1) T`` in some order. A 2x2 factor that
    joins no other runs alone: through :func:`pydebut._kernels.lanes_general` it
    measured a median 1.5x (0.8-3.4x) as fast as a group of one in float32 and
    float64, where the group's set-up per sub-problem of two rows outweighs its
    short loop, and 0.7-1.3x in complex128 (``bench_anatomy.py lone``).
    """
    passes = []
    first = 0
    while first < len(specs):
        k = 0
        while first + k < len(specs) and k < _kernels.MAX_GROUP_ROWS.bit_length() - 1:
            if not _extends_group(specs[first : first + k + 1]):
                break
            k += 1
        passes.append((first, k if k > 1 else 0))
        first += max(k, 1)
    return passes


def _extends_group(specs: np.ndarray) -> bool:
    """Whether these consecutive factors form one 2x2 group (see :func:`_groups`)."""
    p, q, r, s = (int(v) for v in specs[0, :4])
    if not (p == q and r == s == 2) or np.any(specs[:, :4] != specs[0, :4]):
        return False
    ts = sorted(int(t) for t in specs[:, 4])
    return all(t == ts[0] << j for j, t in enumerate(ts))


def _group_rows(ts: np.ndarray) -> np.ndarray:
    """Row offsets ``rows[i]`` of a group's sub-problem: bit ``j`` of ``i`` steps by ``ts[j]``."""
    i = np.arange(1 << len(ts))
    return sum(((i >> j) & 1) * int(t) for j, t in enumerate(ts))


def _pack_group(specs: np.ndarray, weights: list[np.ndarray], rows: np.ndarray) -> np.ndarray:
    """The group's 2x2 matrices, sub-problem by sub-problem, in the kernel's order."""
    k = len(specs)
    n = 1 << k
    p, t = int(specs[0, 0]), int(specs[:, 4].min())
    q = np.arange(p // n)
    base = (q // t) * n * t + q % t
    matrices = []
    for step in range((k + 1) // 2):
        h = 1 << (2 * step)
        radix4 = 2 * step + 1 < k
        span = 4 * h if radix4 else 2 * h
        for i0 in range(n):
            if i0 % span >= h:
                continue
            mixes = [(2 * step, i0, i0 + h)]
            if radix4:
                mixes += [
                    (2 * step, i0 + 2 * h, i0 + 3 * h),
                    (2 * step + 1, i0, i0 + 2 * h),
                    (2 * step + 1, i0 + h, i0 + 3 * h),
                ]
            for j, low, _ in mixes:
                t_j = int(specs[j, 4])
                w = weights[j].reshape(-1, 2, 2, t_j)
                row = base + rows[low]
                matrices.append(w[row // (2 * t_j), :, :, row % t_j].reshape(-1, 4))
    return np.stack(matrices, axis=1).ravel()


def make_batch_plan(
    specs: np.ndarray, offsets: np.ndarray, weights: np.ndarray, group: bool = True
) -> BatchPlan:
    """The batch plan of a chain given as the one-vector kernels take it.

    ``specs`` is the ``(L, 5)`` table in application order, ``offsets`` the
    ``(L + 1,)`` starts of each factor's weights in the flat ``weights``.
    With ``group=False`` every factor runs alone through the general kernel
    (a reference for tests and timings).
    """
    passes, rows, packed = [], [], []
    w_start = r_start = 0
    for first, k in _groups(specs) if group else [(f, 0) for f in range(len(specs))]:
        if k == 0:
            flat = weights[offsets[first] : offsets[first + 1]]
        else:
            group = specs[first : first + k]
            offsets_of = [weights[offsets[f] : offsets[f + 1]] for f in range(first, first + k)]
            group_rows = _group_rows(group[:, 4])
            flat = _pack_group(group, offsets_of, group_rows)
            rows.append(group_rows)
        passes.append((first, k, w_start, r_start))
        packed.append(flat)
        w_start += flat.size
        r_start += 0 if k == 0 else 1 << k
    return BatchPlan(
        specs,
        np.array(passes, dtype=np.int64).reshape(-1, 4),
        np.concatenate(rows).astype(np.int64) if rows else np.zeros(0, np.int64),
        np.concatenate(packed).astype(weights.dtype, copy=False),
        {},
    )


def real_flops(weights: np.ndarray, batch: int) -> int:
    """Real floating-point operations of ``batch`` vectors through a chain with ``weights``.

    A multiply-add counts two; a complex one is four real ones (split planes).
    """
    planes = 2 if weights.dtype.kind == "c" else 1
    return 2 * weights.size * batch * planes**2


def streams_output(plan: BatchPlan, out: np.ndarray) -> bool:
    """Whether the last pass writes ``out`` past the caches (non-temporal stores).

    A plain store first reads the cache line it writes and evicts other data;
    for an output too large to stay in cache that is wasted traffic. The last
    pass then writes each sub-problem's rows to scratch, and copies them into
    ``out`` with streaming stores (:func:`pydebut._kernels.lanes_2x2_group`).
    Only for a real row-major ``out`` of at least :data:`STREAM_BYTES` whose
    last pass is a group of at least :data:`STREAM_MIN_GROUP` factors: behind
    a lone factor or a pair, streaming measured slower (benchmarks/README.md).
    A column-major ``out`` receives each window from a work buffer instead.
    """
    return (
        out.dtype.kind != "c"
        and out.flags.c_contiguous
        and out.nbytes >= STREAM_BYTES
        and int(plan.passes[-1, 1]) >= STREAM_MIN_GROUP
    )


def planes_lane_bytes(plan: BatchPlan) -> int:
    """Bytes of each row of a narrow window of ``plan`` (both planes of complex data).

    :data:`LANE_BYTES` for real weights; for complex ones (split planes) the
    largest power of two up to :data:`LANE_BYTES` that keeps a window of the
    chain's largest dimension within :data:`PLANES_WINDOW_BYTES`, but at least
    :data:`PLANES_MIN_LANE_BYTES`: 512 bytes (32 complex128 columns) from 4096
    rows, 256 from 8192. :func:`layout` takes it when a worker would run
    several windows of :data:`LANE_BYTES` anyway.
    """
    if plan.weights.dtype.kind != "c":
        return LANE_BYTES
    fitting = PLANES_WINDOW_BYTES // int(_kernels.largest_dim(plan.specs))
    return min(LANE_BYTES, max(PLANES_MIN_LANE_BYTES, 1 << (fitting.bit_length() - 1)))


def _kept_window(
    plan: BatchPlan, width: int, n_workers: int
) -> tuple[int, int, tuple[int, int, int]]:
    """``(width, part_rows, work_shape)``: ``width`` columns, or fewer, by whole cache
    lines, so that the work buffers of ``n_workers`` stay within ``_workspace.KEEP_BYTES``."""
    dtype = plan.weights.dtype
    planes = 2 if dtype.kind == "c" else 1
    real = np.finfo(dtype).dtype
    line = ALIGN_BYTES // real.itemsize  # real columns of a cache line
    while True:
        part_rows = max(1, PART_BYTES // (width * dtype.itemsize))
        work_shape = (n_workers, _kernels.work_rows(plan.specs, part_rows), planes * width)
        if width <= _MIN_LANES or _workspace.kept(math.prod(work_shape) * real.itemsize):
            return width, part_rows, work_shape
        # narrower, by whole cache lines: the work buffers' rows stay on lines (_workspace)
        width = max(_MIN_LANES, (width - 1) // line * line)


def _new_layout(plan: BatchPlan, batch: int, most_workers: int, n_workers: int) -> Layout:
    """:func:`layout` worked out for ``n_workers`` workers."""
    itemsize = plan.weights.dtype.itemsize
    widest = min(LANE_BYTES // itemsize, -(-batch // n_workers))
    width, part_rows, work_shape = _kept_window(plan, widest, n_workers)
    narrow = planes_lane_bytes(plan) // itemsize
    if narrow < width and -(-batch // width) > n_workers:  # several windows a worker anyway
        width, part_rows, work_shape = _kept_window(plan, narrow, n_workers)
    real = np.finfo(plan.weights.dtype).dtype
    return Layout(most_workers, n_workers, width, part_rows, work_shape, real)


def layout(plan: BatchPlan, batch: int) -> Layout:
    """How a block of ``batch`` columns runs through ``plan``.

    Up to ``numba.get_num_threads()`` workers share the windows, each with at
    least :data:`MIN_WORKER_BYTES` of columns and :data:`MIN_WORKER_FLOPS` of
    work. A window has :data:`LANE_BYTES` per row, or fewer columns so that
    each worker gets one and the work buffers stay within
    ``_workspace.KEEP_BYTES`` (narrower by whole cache lines). Where a worker
    then runs several windows of complex data on a tall chain, they take
    :func:`planes_lane_bytes` per row: complex128 butterflies ran 1.1-1.5x
    faster so (96 to 1024 vectors of 4096 rows, 256 of 8192, 64 of 16384), where
    narrower windows for a batch that one window holds ran 0.83-0.97x
    (benchmarks/README.md). The layout is
    remembered per batch size, and the number of threads read again only where
    the block could use more than one worker (it costs half a microsecond).
    """
    known = plan.layouts.get(batch)
    if known is not None:
        most_workers = known.most_workers
    else:
        by_bytes = batch * plan.weights.dtype.itemsize // MIN_WORKER_BYTES
        by_flops = real_flops(plan.weights, batch) // MIN_WORKER_FLOPS
        most_workers = max(1, min(by_bytes, by_flops))
    n_workers = min(most_workers, _kernels.numba.get_num_threads()) if most_workers > 1 else 1
    if known is not None and known.n_workers == n_workers:
        return known
    new = _new_layout(plan, batch, most_workers, n_workers)
    if len(plan.layouts) >= KEEP_LAYOUTS:
        plan.layouts.clear()
    plan.layouts[batch] = new
    return new


def apply(plan: BatchPlan, x: np.ndarray, out: np.ndarray, launch) -> None:
    """``out = F_1 ... F_L x`` for an ``(n, batch)`` block ``x``, in its batch's :func:`layout`.

    ``x`` and ``out`` are C-contiguous, or, for a real dtype, F-contiguous
    (each window is then copied between their columns and a work buffer's
    rows, see :func:`pydebut._kernels.apply_chain_matrix`), of the plan's dtype.
    ``launch`` is the lock that serialises parallel kernel launches (see
    :mod:`pydebut.operator`); a block on one worker runs without one.
    Complex data runs as split planes in real work buffers, each window of
    ``width`` columns taking ``2 width`` real columns (see :mod:`pydebut._kernels`).
    """
    split = layout(plan, x.shape[1])
    work = _workspace.workspace.get(split.work_shape, split.work_dtype)
    arguments = (plan.specs, plan.passes, plan.rows, plan.weights, x, out, work, split.width)
    arguments += (split.part_rows, streams_output(plan, out))
    if split.n_workers == 1:
        _kernels.apply_chain_chunks(*arguments, 0)
        return
    with launch:
        _kernels.apply_chain_matrix(*arguments)
