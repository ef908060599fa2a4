"""Numba kernels that apply a whole DeBut chain in one call.

Only kernels live here: they take arrays and integers, write into a
preallocated output and validate nothing (the operator validates first).

A chain is passed as a *plan*:

- ``specs``: int64 array ``(L, 5)`` of ``(p, q, r, s, t)`` in **application
  order** (the factor applied first comes first);
- ``offsets``: int64 array ``(L + 1,)``; factor ``l``'s weights are
  ``weights[offsets[l]:offsets[l + 1]]``, the C-order ravel of
  ``W[b, rho, sigma, alpha]``;
- ``paired``: bool array ``(L,)``; ``paired[l]`` means factors ``l`` and
  ``l + 1`` form a radix-4 butterfly step applied in one pass (blocks of
  vectors only);
- ``weights``: the flat weight buffer, of the dtype of the data.

One vector is a 1-D array; the ``vector_*`` kernels vectorise along the
diagonal index ``alpha``, and :func:`apply_chain_vector_parallel` splits a long
vector between threads, synchronising only where the split of the rows changes.
A block of vectors is a C-ordered ``(rows, batch)`` array and the ``lanes_*``
kernels work on a window of ``lanes`` columns starting at a given column, so
the innermost loop runs over contiguous columns whatever ``t`` is, and the
input and output blocks are read and written in place, with no copies.

Floating point: the only fast-math flag is ``contract``, which lets LLVM fuse
``a * b + c`` into one FMA (one rounding instead of two, so never less
accurate); reassociation, reciprocal tricks and no-NaN/no-Inf assumptions
stay off, so NaN and Inf propagate and each sum over ``sigma`` is taken in
order whatever the batch size, window or thread count (whether LLVM fuses a
given product may still differ between the vector and the block kernels).
"""

from __future__ import annotations

import warnings

import numpy as np

try:
    import numba
except ImportError as err:  # pragma: no cover - exercised only without numba
    raise ImportError(
        "pydebut needs numba for its kernels; install it with 'pip install numba' "
        f"(import failed: {err})"
    ) from err

from . import _numba_setup

_numba_setup.choose_threading_layer()

# Bytes of each row's window in the batched kernel (128 float64 or 256 float32 columns):
# the innermost loops run over this many contiguous bytes per weight, which amortises
# the per-weight work; measured best among 64-2048 bytes on the paper's 512 x 2048
# chain and the 4096 butterfly for 256 to 2048 vectors (fewer vectors use narrower
# windows, one per worker thread).
LANE_BYTES = 1024


def _jit(**options):
    """``numba.njit(nogil=True, ...)``, cached outside the package, uncached where it cannot be.

    :func:`_numba_setup.enable_kernel_cache` raises ``RuntimeError`` when
    neither ``NUMBA_CACHE_DIR`` nor the per-user cache folder is writable
    (e.g. a read-only home); the kernels then compile on first use instead,
    and one ``RuntimeWarning`` says so.
    """

    def decorate(function):
        dispatcher = numba.njit(nogil=True, **options)(function)
        try:
            _numba_setup.enable_kernel_cache(dispatcher)
        except RuntimeError as err:
            if not _cache_warning_issued:
                _warn_no_cache(err)
        return dispatcher

    return decorate


_cache_warning_issued = False


def _warn_no_cache(err: RuntimeError) -> None:
    global _cache_warning_issued
    _cache_warning_issued = True
    warnings.warn(
        f"pydebut: numba cannot cache compiled kernels ({err}); they will be compiled "
        "on first use in every process (set NUMBA_CACHE_DIR to a writable folder to cache them)",
        RuntimeWarning,
        stacklevel=3,
    )


@_jit(fastmath={"contract"}, inline="always")
def _vector_2x2_small_t(n_blocks, t, w, x, y):  # pragma: no cover
    """One vector through an ``r = s = 2`` factor with small ``t``, by plain indexing.

    Called with a literal ``t`` and inlined, so the compiler sees the strides
    as constants and vectorises across blocks.
    """
    for block in range(n_blocks):
        i0 = 2 * block * t
        w0 = 4 * block * t
        for alpha in range(t):
            a = x[i0 + alpha]
            b = x[i0 + t + alpha]
            y[i0 + alpha] = w[w0 + alpha] * a + w[w0 + t + alpha] * b
            y[i0 + t + alpha] = w[w0 + 2 * t + alpha] * a + w[w0 + 3 * t + alpha] * b


@_jit(fastmath={"contract"})
def vector_2x2(p, t, weights, w_start, src, dst):  # pragma: no cover
    """``dst = F @ src`` for one vector and a factor with ``r = s = 2``.

    Each pair of inputs is loaded once and both outputs are formed from it:
    ``y0 = W[b,0,0,a] x0 + W[b,0,1,a] x1`` and ``y1 = W[b,1,0,a] x0 + W[b,1,1,a] x1``.
    Loops run over slices (views) whose length Numba knows, which drops its
    negative-index checks and lets the loop over ``alpha`` vectorise.
    """
    n_blocks = p // (2 * t)
    if t <= 8 and (t & (t - 1)) == 0:
        size = 2 * n_blocks * t
        w = weights[w_start : w_start + 2 * size]
        x = src[:size]
        y = dst[:size]
        if t == 1:
            _vector_2x2_small_t(n_blocks, 1, w, x, y)
        elif t == 2:
            _vector_2x2_small_t(n_blocks, 2, w, x, y)
        elif t == 4:
            _vector_2x2_small_t(n_blocks, 4, w, x, y)
        else:
            _vector_2x2_small_t(n_blocks, 8, w, x, y)
        return
    for block in range(n_blocks):
        x0 = src[2 * block * t : (2 * block + 1) * t]
        x1 = src[(2 * block + 1) * t : (2 * block + 2) * t]
        y0 = dst[2 * block * t : (2 * block + 1) * t]
        y1 = dst[(2 * block + 1) * t : (2 * block + 2) * t]
        w = weights[w_start + 4 * block * t : w_start + 4 * (block + 1) * t]
        w00, w01, w10, w11 = w[:t], w[t : 2 * t], w[2 * t : 3 * t], w[3 * t :]
        for alpha in range(x0.shape[0]):
            a = x0[alpha]
            b = x1[alpha]
            y0[alpha] = w00[alpha] * a + w01[alpha] * b
            y1[alpha] = w10[alpha] * a + w11[alpha] * b


@_jit(fastmath={"contract"})
def vector_alphas(p, r, s, t, a0, a1, weights, w_start, src, dst):  # pragma: no cover
    """Entries ``alpha`` in ``[a0, a1)`` of ``dst = F @ src`` for one vector and any factor.

    ``y[b, rho, alpha] = sum_sigma W[b, rho, sigma, alpha] * x[b, sigma, alpha]``,
    vectorised along ``alpha``.
    """
    width = a1 - a0
    for block in range(p // (r * t)):
        for rho in range(r):
            out = (block * r + rho) * t + a0
            y = dst[out : out + width]
            w_row = w_start + (block * r + rho) * s * t + a0
            x_row = block * s * t + a0
            w_first, x_first = weights[w_row : w_row + width], src[x_row : x_row + width]
            for alpha in range(y.shape[0]):
                y[alpha] = w_first[alpha] * x_first[alpha]
            for sigma in range(1, s):
                w_sigma = weights[w_row + sigma * t : w_row + sigma * t + width]
                x_sigma = src[x_row + sigma * t : x_row + sigma * t + width]
                for alpha in range(y.shape[0]):
                    y[alpha] += w_sigma[alpha] * x_sigma[alpha]


@_jit(fastmath={"contract"}, inline="always")
def _vector_alphas_small_t(n_blocks, r, s, t, w, x, y):  # pragma: no cover
    """One vector through any factor with small ``t``, by plain indexing.

    Called with a literal ``t`` and inlined, so the loops over ``alpha`` have
    a constant length: per output row, ``t`` sums over ``sigma`` run side by
    side without building a slice per ``(rho, sigma)``.
    """
    for block in range(n_blocks):
        x0 = block * s * t
        for rho in range(r):
            y0 = (block * r + rho) * t
            w0 = y0 * s
            for alpha in range(t):
                y[y0 + alpha] = w[w0 + alpha] * x[x0 + alpha]
            for sigma in range(1, s):
                for alpha in range(t):
                    y[y0 + alpha] += w[w0 + sigma * t + alpha] * x[x0 + sigma * t + alpha]


@_jit(fastmath={"contract"})
def vector_dots(p, r, s, weights, w_start, src, dst):  # pragma: no cover
    """``dst = F @ src`` for one vector and a factor with ``t = 1``: a dot product per row.

    Four rows of a block share each load of ``x[b, sigma]`` and their four sums
    run side by side, so the multiply-adds do not wait on each other (one sum
    at a time is bound by the latency of the multiply-add).
    """
    for block in range(p // r):
        x = src[block * s : (block + 1) * s]
        w = weights[w_start + block * r * s : w_start + (block + 1) * r * s]
        y = dst[block * r : (block + 1) * r]
        rho = 0
        while rho + 4 <= r:
            w0, w1 = w[rho * s : (rho + 1) * s], w[(rho + 1) * s : (rho + 2) * s]
            w2, w3 = w[(rho + 2) * s : (rho + 3) * s], w[(rho + 3) * s : (rho + 4) * s]
            acc0, acc1, acc2, acc3 = w0[0] * x[0], w1[0] * x[0], w2[0] * x[0], w3[0] * x[0]
            for sigma in range(1, x.shape[0]):
                value = x[sigma]
                acc0 += w0[sigma] * value
                acc1 += w1[sigma] * value
                acc2 += w2[sigma] * value
                acc3 += w3[sigma] * value
            y[rho], y[rho + 1], y[rho + 2], y[rho + 3] = acc0, acc1, acc2, acc3
            rho += 4
        while rho < r:
            w0 = w[rho * s : (rho + 1) * s]
            acc0 = w0[0] * x[0]
            for sigma in range(1, x.shape[0]):
                acc0 += w0[sigma] * x[sigma]
            y[rho] = acc0
            rho += 1


@_jit(fastmath={"contract"})
def vector_general(p, r, s, t, weights, w_start, src, dst):  # pragma: no cover
    """``dst = F @ src`` for one vector and any factor."""
    if t == 1:
        vector_dots(p, r, s, weights, w_start, src, dst)
        return
    if t > 16 or (t & (t - 1)) != 0:
        vector_alphas(p, r, s, t, 0, t, weights, w_start, src, dst)
        return
    n_blocks = p // (r * t)
    w = weights[w_start : w_start + p * s]
    x = src[: n_blocks * s * t]
    y = dst[:p]
    if t == 2:
        _vector_alphas_small_t(n_blocks, r, s, 2, w, x, y)
    elif t == 4:
        _vector_alphas_small_t(n_blocks, r, s, 4, w, x, y)
    elif t == 8:
        _vector_alphas_small_t(n_blocks, r, s, 8, w, x, y)
    else:
        _vector_alphas_small_t(n_blocks, r, s, 16, w, x, y)


@_jit()
def vector_factor(p, r, s, t, weights, w_start, src, dst):  # pragma: no cover
    """``dst = F @ src`` for one vector; picks the specialised kernel."""
    if r == 2 and s == 2:
        vector_2x2(p, t, weights, w_start, src, dst)
    else:
        vector_general(p, r, s, t, weights, w_start, src, dst)


@_jit()
def largest_dim(specs):  # pragma: no cover
    """The largest ``p`` or ``q`` of a chain's ``(L, 5)`` array of ``(p, q, r, s, t)``."""
    max_dim = 0
    for l in range(specs.shape[0]):  # noqa: E741 - l numbers factors, as in the maths
        max_dim = max(max_dim, specs[l, 0], specs[l, 1])
    return max_dim


@_jit()
def apply_chain_vector(specs, weights, x, out):  # pragma: no cover
    """``out = F_1 ... F_L @ x`` for one contiguous vector.

    Factor ``l``'s weights follow factor ``l - 1``'s in ``weights`` (each
    holds ``p * s`` of them). The first factor reads ``x``, the last writes
    ``out`` and the others alternate between the two rows of a work array
    allocated here (cheaper than passing one in: each argument of a Numba
    call costs a fraction of a microsecond to type-check).
    """
    n_factors = specs.shape[0]
    work = np.empty((2, largest_dim(specs)), dtype=out.dtype)
    src = x
    w_start = 0
    for l in range(n_factors):  # noqa: E741
        p, q, r, s, t = specs[l, 0], specs[l, 1], specs[l, 2], specs[l, 3], specs[l, 4]
        dst = out if l == n_factors - 1 else work[l % 2]
        vector_factor(p, r, s, t, weights, w_start, src[:q], dst[:p])
        src = dst
        w_start += p * s


@_jit()
def _part_bounds(specs, index, part, n_parts):  # pragma: no cover
    """How factor ``index`` is split: ``(by_blocks, lo, hi)`` for part ``part`` of ``n_parts``.

    By blocks ``[lo, hi)`` when the factor has at least ``n_parts`` blocks, else
    along the diagonal index, ``alpha`` in ``[lo, hi)``; a factor with fewer
    blocks and fewer ``alpha`` than parts runs whole in part 0 (the others get
    an empty range).
    """
    p, r, t = specs[index, 0], specs[index, 2], specs[index, 4]
    n_blocks = p // (r * t)
    if n_blocks >= n_parts:
        return True, part * n_blocks // n_parts, (part + 1) * n_blocks // n_parts
    if t >= n_parts:
        return False, part * t // n_parts, (part + 1) * t // n_parts
    return True, 0, n_blocks if part == 0 else 0


@_jit()
def _stays_in_part(specs, index, n_parts):  # pragma: no cover
    """Whether each part of factor ``index + 1`` reads only the rows its part of ``index`` wrote.

    Both factors must be split by blocks, with equal row boundaries between parts.
    """
    for part in range(n_parts):
        by_blocks, _, hi = _part_bounds(specs, index, part, n_parts)
        next_by_blocks, _, next_hi = _part_bounds(specs, index + 1, part, n_parts)
        if not (by_blocks and next_by_blocks):
            return False
        rows_written = hi * specs[index, 2] * specs[index, 4]
        if rows_written != next_hi * specs[index + 1, 3] * specs[index + 1, 4]:
            return False
    return True


@_jit()
def _largest_part(specs, n_parts):  # pragma: no cover
    """The most rows a part of a factor split by blocks reads or writes."""
    largest = 0
    for l in range(specs.shape[0]):  # noqa: E741 - l numbers factors, as in the maths
        for part in range(n_parts):
            by_blocks, lo, hi = _part_bounds(specs, l, part, n_parts)
            if by_blocks:
                size = (hi - lo) * max(specs[l, 2], specs[l, 3]) * specs[l, 4]
                largest = max(largest, size)
    return largest


@_jit()
def _factor_part(
    specs, index, part, n_parts, weights, w_start, src, src_local, dst, dst_local
):  # pragma: no cover
    """Part ``part`` of ``n_parts`` of ``dst = F @ src``, ``F`` the factor ``index``.

    The parts are those of :func:`_part_bounds`.

    With ``src_local`` (``dst_local``) the part's rows of the input (output)
    start at row 0 of ``src`` (``dst``), else at their place in the vector.
    """
    row = specs[index]
    p, q, r, s, t = row[0], row[1], row[2], row[3], row[4]
    by_blocks, lo, hi = _part_bounds(specs, index, part, n_parts)
    if lo == hi:
        return
    if by_blocks:
        x0 = 0 if src_local else lo * s * t
        y0 = 0 if dst_local else lo * r * t
        vector_factor(
            (hi - lo) * r * t, r, s, t, weights, w_start + lo * r * s * t,
            src[x0 : x0 + (hi - lo) * s * t], dst[y0 : y0 + (hi - lo) * r * t],
        )  # fmt: skip
    else:
        vector_alphas(p, r, s, t, lo, hi, weights, w_start, src[:q], dst[:p])


@_jit(parallel=True)
def apply_chain_vector_parallel(specs, weights, x, out, n_parts):  # pragma: no cover
    """:func:`apply_chain_vector` split into ``n_parts`` parts run in parallel, in few phases.

    Each factor is split by blocks, or along ``alpha`` when it has fewer
    blocks than parts (:func:`_part_bounds`). Consecutive factors whose parts
    line up (part ``i`` of the next factor reads exactly the rows part ``i``
    of this one wrote, :func:`_stays_in_part`) form one *phase*: each part
    runs all of the phase's factors on its own rows, in a work array of its
    own, and the parts wait for each other only between phases, whose inputs
    and outputs alternate between two shared rows. A chainable chain splits
    by blocks until its factors have fewer blocks than parts, so two threads
    need two or three phases (one parallel launch each) however long the chain.
    """
    n_factors = specs.shape[0]
    shared = np.empty((2, largest_dim(specs)), dtype=out.dtype)
    private = np.empty((n_parts, 2, _largest_part(specs, n_parts)), dtype=out.dtype)
    w_starts = np.zeros(n_factors + 1, dtype=np.int64)
    for l in range(n_factors):  # noqa: E741 - l numbers factors, as in the maths
        w_starts[l + 1] = w_starts[l] + specs[l, 0] * specs[l, 3]
    first = 0
    phase = 0
    while first < n_factors:
        last = first + 1  # the phase is factors [first, last)
        while last < n_factors and _stays_in_part(specs, last - 1, n_parts):
            last += 1
        src = x if first == 0 else shared[(phase - 1) % 2]
        dst = out if last == n_factors else shared[phase % 2]
        for part in numba.prange(n_parts):
            for l in range(first, last):  # noqa: E741
                step_src = src if l == first else private[part, (l - first - 1) % 2]
                step_dst = dst if l == last - 1 else private[part, (l - first) % 2]
                _factor_part(
                    specs, l, part, n_parts, weights, w_starts[l],
                    step_src, l != first, step_dst, l != last - 1,
                )  # fmt: skip
        first = last
        phase += 1


@_jit(fastmath={"contract"})
def lanes_2x2(p, t, weights, w_start, src, s0, dst, d0, lanes):  # pragma: no cover
    """``dst = F @ src`` on columns ``s0:s0+lanes`` of ``src`` (into ``d0:d0+lanes`` of ``dst``).

    For a factor with ``r = s = 2``: rows ``(2b) t + alpha`` and
    ``(2b + 1) t + alpha`` are mixed by the 2x2 matrix ``W[b, :, :, alpha]``,
    each pair loaded once.
    """
    for block in range(p // (2 * t)):
        w = weights[w_start + 4 * block * t : w_start + 4 * (block + 1) * t]
        for alpha in range(t):
            w00, w01, w10, w11 = w[alpha], w[t + alpha], w[2 * t + alpha], w[3 * t + alpha]
            row0 = 2 * block * t + alpha
            row1 = row0 + t
            x0, x1 = src[row0, s0 : s0 + lanes], src[row1, s0 : s0 + lanes]
            y0, y1 = dst[row0, d0 : d0 + lanes], dst[row1, d0 : d0 + lanes]
            for lane in range(x0.shape[0]):
                a = x0[lane]
                b = x1[lane]
                y0[lane] = w00 * a + w01 * b
                y1[lane] = w10 * a + w11 * b


@_jit(fastmath={"contract"})
def lanes_general(p, r, s, t, weights, w_start, src, s0, dst, d0, lanes):  # pragma: no cover
    """``dst = F @ src`` on a window of ``lanes`` columns, for any factor.

    ``y[b, rho, alpha] = sum_sigma W[b, rho, sigma, alpha] * x[b, sigma, alpha]``,
    one output row at a time so it stays in cache while ``sigma`` runs.
    """
    for block in range(p // (r * t)):
        for rho in range(r):
            w_row = w_start + (block * r + rho) * s * t
            for alpha in range(t):
                y = dst[(block * r + rho) * t + alpha, d0 : d0 + lanes]
                weight = weights[w_row + alpha]
                x = src[block * s * t + alpha, s0 : s0 + lanes]
                for lane in range(y.shape[0]):
                    y[lane] = weight * x[lane]
                for sigma in range(1, s):
                    weight = weights[w_row + sigma * t + alpha]
                    x = src[(block * s + sigma) * t + alpha, s0 : s0 + lanes]
                    for lane in range(y.shape[0]):
                        y[lane] += weight * x[lane]


@_jit(fastmath={"contract"})
def lanes_pair_2x2(
    p, t, weights, w_fine, w_coarse, coarse_first, src, s0, dst, d0, lanes
):  # pragma: no cover
    """Two ``p x p`` factors with ``r = s = 2`` in one pass: a radix-4 butterfly step.

    The *fine* factor has ``t`` and ``2k`` blocks, the *coarse* one ``2t`` and
    ``k`` blocks. Row ``(4b + 2u + v) t + alpha`` is ``(block 2b+u, rho v,
    alpha)`` of the fine factor and ``(block b, rho u, alpha' = v t + alpha)``
    of the coarse one, so each group of four rows is read once, mixed along
    ``v`` by the fine factor and along ``u`` by the coarse one (in the order
    the chain applies them) and written once: half the memory traffic of two
    separate passes.
    """
    for block in range(p // (4 * t)):
        fine0 = weights[w_fine + 8 * block * t : w_fine + (8 * block + 4) * t]
        fine1 = weights[w_fine + (8 * block + 4) * t : w_fine + (8 * block + 8) * t]
        coarse = weights[w_coarse + 8 * block * t : w_coarse + 8 * (block + 1) * t]
        for alpha in range(t):
            # fine block 2b + u mixes (x[u, 0], x[u, 1])
            a00, a01, a10, a11 = (
                fine0[alpha],
                fine0[t + alpha],
                fine0[2 * t + alpha],
                fine0[3 * t + alpha],
            )
            b00, b01, b10, b11 = (
                fine1[alpha],
                fine1[t + alpha],
                fine1[2 * t + alpha],
                fine1[3 * t + alpha],
            )
            # coarse W[b, rho, sigma, alpha'] mixes (x[0, v], x[1, v]) at alpha' = v t + alpha
            c00, c01, c10, c11 = (
                coarse[alpha],
                coarse[2 * t + alpha],
                coarse[4 * t + alpha],
                coarse[6 * t + alpha],
            )
            d00, d01, d10, d11 = (
                coarse[t + alpha],
                coarse[3 * t + alpha],
                coarse[5 * t + alpha],
                coarse[7 * t + alpha],
            )
            row = 4 * block * t + alpha
            s00, s01 = src[row, s0 : s0 + lanes], src[row + t, s0 : s0 + lanes]
            s10, s11 = src[row + 2 * t, s0 : s0 + lanes], src[row + 3 * t, s0 : s0 + lanes]
            o00, o01 = dst[row, d0 : d0 + lanes], dst[row + t, d0 : d0 + lanes]
            o10, o11 = dst[row + 2 * t, d0 : d0 + lanes], dst[row + 3 * t, d0 : d0 + lanes]
            if coarse_first:
                for lane in range(s00.shape[0]):
                    m00 = c00 * s00[lane] + c01 * s10[lane]
                    m10 = c10 * s00[lane] + c11 * s10[lane]
                    m01 = d00 * s01[lane] + d01 * s11[lane]
                    m11 = d10 * s01[lane] + d11 * s11[lane]
                    o00[lane] = a00 * m00 + a01 * m01
                    o01[lane] = a10 * m00 + a11 * m01
                    o10[lane] = b00 * m10 + b01 * m11
                    o11[lane] = b10 * m10 + b11 * m11
            else:
                for lane in range(s00.shape[0]):
                    m00 = a00 * s00[lane] + a01 * s01[lane]
                    m01 = a10 * s00[lane] + a11 * s01[lane]
                    m10 = b00 * s10[lane] + b01 * s11[lane]
                    m11 = b10 * s10[lane] + b11 * s11[lane]
                    o00[lane] = c00 * m00 + c01 * m10
                    o10[lane] = c10 * m00 + c11 * m10
                    o01[lane] = d00 * m01 + d01 * m11
                    o11[lane] = d10 * m01 + d11 * m11


@_jit()
def lanes_pass(specs, offsets, paired, weights, index, src, s0, dst, d0, lanes):  # pragma: no cover
    """Apply factor ``index`` (and the next one if paired) to a window of columns."""
    p, r, s, t = specs[index, 0], specs[index, 2], specs[index, 3], specs[index, 4]
    if paired[index]:
        if specs[index + 1, 4] == 2 * t:  # the fine factor comes first
            lanes_pair_2x2(
                p, t, weights, offsets[index], offsets[index + 1], False, src, s0, dst, d0, lanes
            )
        else:
            lanes_pair_2x2(
                p, specs[index + 1, 4], weights, offsets[index + 1], offsets[index], True,
                src, s0, dst, d0, lanes,
            )  # fmt: skip
    elif r == 2 and s == 2:
        lanes_2x2(p, t, weights, offsets[index], src, s0, dst, d0, lanes)
    else:
        lanes_general(p, r, s, t, weights, offsets[index], src, s0, dst, d0, lanes)


@_jit(parallel=True)
def apply_chain_matrix(specs, offsets, paired, weights, x, out, work, width):  # pragma: no cover
    """``out = F_1 ... F_L @ x`` for ``x`` of shape ``(n, batch)`` (C-contiguous).

    Columns are split into chunks of at most ``width``. ``work`` has shape
    ``(n_workers, 2, max_dim, width)``: worker ``w`` runs the whole chain on
    chunks ``w, w + n_workers, ...``, the first pass reading its columns of
    ``x`` in place, the last writing its columns of ``out`` and the others
    alternating between the worker's two buffers.
    """
    batch = x.shape[1]
    n_factors = specs.shape[0]
    n_workers = work.shape[0]
    n_chunks = (batch + width - 1) // width
    for worker in numba.prange(n_workers):
        for chunk in range(worker, n_chunks, n_workers):
            first = chunk * width
            lanes = min(width, batch - first)
            src, s0 = x, first
            l = 0  # noqa: E741 - l numbers factors, as in the maths
            n_passes = 0
            while l < n_factors:
                step = 2 if paired[l] else 1
                if l + step == n_factors:
                    dst, d0 = out, first
                else:
                    dst, d0 = work[worker, n_passes % 2], 0
                lanes_pass(specs, offsets, paired, weights, l, src, s0, dst, d0, lanes)
                src, s0 = dst, d0
                l += step  # noqa: E741
                n_passes += 1
