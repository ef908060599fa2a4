"""Numba kernels that apply a whole DeBut chain in one call.

Only kernels live here: they take arrays and integers, write into a
preallocated output and validate nothing (the operator validates first).

A chain is passed as a *plan*:

- ``specs``: int64 array ``(L, 5)`` of ``(p, q, r, s, t)`` in **application
  order** (the factor applied first comes first);
- ``offsets``: int64 array ``(L + 1,)``; factor ``l``'s weights are
  ``weights[offsets[l]:offsets[l + 1]]``, the C-order ravel of
  ``W[b, rho, sigma, alpha]``;
- ``weights``: the flat weight buffer, of the dtype of the data.

A block of vectors is processed in *lanes*: a work buffer holds ``width``
vectors interleaved, entry ``i`` of lane ``c`` at ``i * width + c``, so the
innermost loop runs over contiguous memory whatever ``t`` is.
"""

from __future__ import annotations

import os
import warnings

try:
    import numba
except ImportError as err:  # pragma: no cover - exercised only without numba
    raise ImportError(
        "pydebut needs numba for its kernels; install it with 'pip install numba' "
        f"(import failed: {err})"
    ) from err

# Lanes per work buffer in the batched kernel: wide enough for the innermost loop
# to vectorise, narrow enough that two buffers of the largest dimension stay in cache.
LANE_WIDTH = 16


def _jit(**options):
    """``numba.njit(cache=True, nogil=True, ...)``, uncached where no cache can be written.

    Numba raises ``RuntimeError`` at decoration time when neither the package
    folder nor a user-wide cache folder is writable (e.g. a read-only install
    with no home directory); the kernels then compile on first use instead.
    """

    def decorate(function):
        try:
            return numba.njit(cache=True, nogil=True, **options)(function)
        except RuntimeError as err:
            if os.environ.get("PYDEBUT_WARN_NO_CACHE", "1") != "0":
                warnings.warn(
                    f"pydebut: numba cannot cache compiled kernels ({err}); "
                    "they will be compiled on first use in every process",
                    RuntimeWarning,
                    stacklevel=2,
                )
            return numba.njit(cache=False, nogil=True, **options)(function)

    return decorate


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
def apply_factor_2x2(p, t, weights, w_start, src, dst, width):  # pragma: no cover
    """``dst = F @ src`` for a factor with ``r = s = 2`` on ``width`` interleaved vectors.

    Each pair of inputs is loaded once and both outputs are formed from it:
    ``y0 = W[b,0,0,a] x0 + W[b,0,1,a] x1`` and ``y1 = W[b,1,0,a] x0 + W[b,1,1,a] x1``.
    Loops run over slices (views) whose length Numba knows, which drops its
    negative-index checks and lets the innermost loop vectorise.
    """
    n_blocks = p // (2 * t)
    if width == 1 and t <= 8 and (t & (t - 1)) == 0:
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
    run = t * width
    for block in range(n_blocks):
        x0 = src[2 * block * run : (2 * block + 1) * run]
        x1 = src[(2 * block + 1) * run : (2 * block + 2) * run]
        y0 = dst[2 * block * run : (2 * block + 1) * run]
        y1 = dst[(2 * block + 1) * run : (2 * block + 2) * run]
        w = weights[w_start + 4 * block * t : w_start + 4 * (block + 1) * t]
        if width == 1:  # vectorise over alpha: four weight streams
            w00, w01, w10, w11 = w[:t], w[t : 2 * t], w[2 * t : 3 * t], w[3 * t :]
            for alpha in range(x0.shape[0]):
                a = x0[alpha]
                b = x1[alpha]
                y0[alpha] = w00[alpha] * a + w01[alpha] * b
                y1[alpha] = w10[alpha] * a + w11[alpha] * b
            continue
        for alpha in range(t):  # vectorise over the lanes
            w00, w01, w10, w11 = w[alpha], w[t + alpha], w[2 * t + alpha], w[3 * t + alpha]
            x0a = x0[alpha * width : (alpha + 1) * width]
            x1a = x1[alpha * width : (alpha + 1) * width]
            y0a = y0[alpha * width : (alpha + 1) * width]
            y1a = y1[alpha * width : (alpha + 1) * width]
            for lane in range(x0a.shape[0]):
                a = x0a[lane]
                b = x1a[lane]
                y0a[lane] = w00 * a + w01 * b
                y1a[lane] = w10 * a + w11 * b


@_jit(fastmath={"contract"})
def apply_factor_general(p, r, s, t, weights, w_start, src, dst, width):  # pragma: no cover
    """``dst = F @ src`` for any factor on ``width`` interleaved vectors.

    ``y[b, rho, alpha] = sum_sigma W[b, rho, sigma, alpha] * x[b, sigma, alpha]``.
    """
    n_blocks = p // (r * t)
    run = t * width  # contiguous entries sharing (b, rho), or (b, sigma)
    for block in range(n_blocks):
        for rho in range(r):
            out = (block * r + rho) * run
            y = dst[out : out + run]
            w_row = w_start + (block * r + rho) * s * t
            w = weights[w_row : w_row + s * t]
            if run == 1:  # one vector and t == 1: a short dot product
                x = src[block * s : (block + 1) * s]
                acc = w[0] * x[0]
                for sigma in range(1, s):
                    acc += w[sigma] * x[sigma]
                y[0] = acc
                continue
            for i in range(run):
                y[i] = 0
            for sigma in range(s):
                inp = (block * s + sigma) * run
                x = src[inp : inp + run]
                w_sigma = w[sigma * t : (sigma + 1) * t]
                for alpha in range(t):
                    weight = w_sigma[alpha]
                    at = alpha * width
                    x_lanes = x[at : at + width]
                    y_lanes = y[at : at + width]
                    for lane in range(width):
                        y_lanes[lane] += weight * x_lanes[lane]


@_jit()
def apply_factor(p, r, s, t, weights, w_start, src, dst, width):  # pragma: no cover
    """``dst = F @ src`` on ``width`` interleaved vectors; picks the specialised kernel."""
    if r == 2 and s == 2:
        apply_factor_2x2(p, t, weights, w_start, src, dst, width)
    else:
        apply_factor_general(p, r, s, t, weights, w_start, src, dst, width)


@_jit()
def apply_chain_lanes(specs, offsets, weights, src, buf_a, buf_b, out, width):  # pragma: no cover
    """Apply every factor to the ``width`` lanes in ``src``, writing the result to ``out``.

    The first factor reads ``src``, the last writes ``out`` and the others
    alternate between the work buffers ``buf_a`` and ``buf_b``.
    """
    n_factors = specs.shape[0]
    for l in range(n_factors):  # noqa: E741 - l numbers factors, as in the maths
        p, r, s, t = specs[l, 0], specs[l, 2], specs[l, 3], specs[l, 4]
        if l == n_factors - 1:
            dst = out
        elif l % 2 == 0:
            dst = buf_a
        else:
            dst = buf_b
        apply_factor(p, r, s, t, weights, offsets[l], src, dst, width)
        src = dst


@_jit()
def apply_chain_vector(specs, offsets, weights, x, out, work):  # pragma: no cover
    """``out = F_1 ... F_L @ x`` for one contiguous vector; ``work`` is ``(2, max_dim)``."""
    apply_chain_lanes(specs, offsets, weights, x, work[0], work[1], out, 1)


@_jit(parallel=True)
def apply_chain_matrix(specs, offsets, weights, x, out, work, width):  # pragma: no cover
    """``out = F_1 ... F_L @ x`` for ``x`` of shape ``(n, batch)`` (C-contiguous).

    Columns are split into chunks of at most ``width`` lanes. ``work`` has
    shape ``(n_workers, 4, max_dim * width)``: worker ``w`` runs the whole
    chain on chunks ``w, w + n_workers, ...``, gathering each chunk into its
    first buffer, ping-ponging between the next two and scattering from the
    last.
    """
    n, batch = x.shape
    m = out.shape[0]
    n_workers = work.shape[0]
    n_chunks = (batch + width - 1) // width
    for worker in numba.prange(n_workers):
        for chunk in range(worker, n_chunks, n_workers):
            first = chunk * width
            lanes = min(width, batch - first)
            gathered = work[worker, 0]
            for i in range(n):
                for lane in range(lanes):
                    gathered[i * lanes + lane] = x[i, first + lane]
            result = work[worker, 3]
            apply_chain_lanes(
                specs, offsets, weights, gathered, work[worker, 1], work[worker, 2], result, lanes
            )
            for i in range(m):
                for lane in range(lanes):
                    out[i, first + lane] = result[i * lanes + lane]
