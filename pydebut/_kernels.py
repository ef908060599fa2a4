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
  ``l + 1`` form a radix-4 butterfly step applied in one pass;
- ``weights``: the flat weight buffer, of the dtype of the data.

A block of vectors is processed in *lanes*: a work buffer holds ``width``
vectors interleaved, entry ``i`` of lane ``c`` at ``i * width + c``, so the
innermost loop runs over contiguous memory whatever ``t`` is.
"""

from __future__ import annotations

import warnings

try:
    import numba
except ImportError as err:  # pragma: no cover - exercised only without numba
    raise ImportError(
        "pydebut needs numba for its kernels; install it with 'pip install numba' "
        f"(import failed: {err})"
    ) from err

# Bytes of each entry's lanes in the batched kernel (64 float64 or 128 float32 vectors):
# the innermost loops run over this many contiguous bytes per weight, which amortises
# the per-weight work; measured best among 128-1024 on the 4096 butterfly chain.
LANE_BYTES = 512


def _jit(**options):
    """``numba.njit(cache=True, nogil=True, ...)``, uncached where no cache can be written.

    Numba raises ``RuntimeError`` at decoration time when neither the package
    folder nor a user-wide cache folder is writable (e.g. a read-only install
    with no writable home); the kernels then compile on first use instead,
    and one ``RuntimeWarning`` says so.
    """

    def decorate(function):
        try:
            return numba.njit(cache=True, nogil=True, **options)(function)
        except RuntimeError as err:
            if not _cache_warning_issued:
                _warn_no_cache(err)
            return numba.njit(cache=False, nogil=True, **options)(function)

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
            if width == 1:  # one vector
                x = src[block * s * t : (block + 1) * s * t]
                if t == 1:  # a short dot product
                    acc = w[0] * x[0]
                    for sigma in range(1, s):
                        acc += w[sigma] * x[sigma]
                    y[0] = acc
                    continue
                w_first, x_first = w[:t], x[:t]  # vectorise along alpha
                for alpha in range(y.shape[0]):
                    y[alpha] = w_first[alpha] * x_first[alpha]
                for sigma in range(1, s):
                    w_sigma = w[sigma * t : (sigma + 1) * t]
                    x_sigma = x[sigma * t : (sigma + 1) * t]
                    for alpha in range(y.shape[0]):
                        y[alpha] += w_sigma[alpha] * x_sigma[alpha]
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


@_jit(fastmath={"contract"})
def apply_pair_2x2(
    p, t, weights, w_fine, w_coarse, coarse_first, src, dst, width
):  # pragma: no cover
    """Apply two ``p x p`` factors with ``r = s = 2`` in one pass: a radix-4 butterfly step.

    The *fine* factor has ``t`` and ``2k`` blocks, the *coarse* one ``2t`` and
    ``k`` blocks. Entry ``(4b + 2u + v) t + alpha`` is ``(block 2b+u, rho v,
    alpha)`` of the fine factor and ``(block b, rho u, alpha' = v t + alpha)``
    of the coarse one, so each group of four entries is read once, mixed along
    ``v`` by the fine factor and along ``u`` by the coarse one (in the order
    the chain applies them) and written once: half the memory traffic of two
    separate passes.
    """
    run = t * width
    for block in range(p // (4 * t)):
        base = 4 * block * run
        x00, x01 = src[base : base + run], src[base + run : base + 2 * run]
        x10, x11 = src[base + 2 * run : base + 3 * run], src[base + 3 * run : base + 4 * run]
        y00, y01 = dst[base : base + run], dst[base + run : base + 2 * run]
        y10, y11 = dst[base + 2 * run : base + 3 * run], dst[base + 3 * run : base + 4 * run]
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
            lo = alpha * width
            hi = lo + width
            s00, s01, s10, s11 = x00[lo:hi], x01[lo:hi], x10[lo:hi], x11[lo:hi]
            o00, o01, o10, o11 = y00[lo:hi], y01[lo:hi], y10[lo:hi], y11[lo:hi]
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
def apply_chain_lanes(
    specs, offsets, paired, weights, src, buf_a, buf_b, out, width
):  # pragma: no cover
    """Apply every factor to the ``width`` lanes in ``src``, writing the result to ``out``.

    Factor ``l`` with ``paired[l]`` set is applied together with factor
    ``l + 1`` by :func:`apply_pair_2x2` (one of the two has twice the other's
    ``t``). The first pass reads ``src``, the last writes ``out`` and the
    others alternate between ``buf_a`` and ``buf_b``.
    """
    n_factors = specs.shape[0]
    l = 0  # noqa: E741 - l numbers factors, as in the maths
    n_passes = 0
    while l < n_factors:
        step = 2 if paired[l] else 1
        if l + step == n_factors:
            dst = out
        elif n_passes % 2 == 0:
            dst = buf_a
        else:
            dst = buf_b
        p, r, s, t = specs[l, 0], specs[l, 2], specs[l, 3], specs[l, 4]
        if step == 2:
            if specs[l + 1, 4] == 2 * t:  # fine factor first
                apply_pair_2x2(p, t, weights, offsets[l], offsets[l + 1], False, src, dst, width)
            else:
                fine_t = specs[l + 1, 4]
                apply_pair_2x2(
                    p, fine_t, weights, offsets[l + 1], offsets[l], True, src, dst, width
                )
        else:
            apply_factor(p, r, s, t, weights, offsets[l], src, dst, width)
        src = dst
        l += step  # noqa: E741
        n_passes += 1


@_jit()
def apply_chain_vector(specs, offsets, paired, weights, x, out, work):  # pragma: no cover
    """``out = F_1 ... F_L @ x`` for one contiguous vector; ``work`` is ``(2, max_dim)``."""
    apply_chain_lanes(specs, offsets, paired, weights, x, work[0], work[1], out, 1)


@_jit(parallel=True)
def apply_chain_matrix(specs, offsets, paired, weights, x, out, work, width):  # pragma: no cover
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
                row = x[i, first : first + lanes]
                chunk_row = gathered[i * lanes : (i + 1) * lanes]
                for lane in range(row.shape[0]):
                    chunk_row[lane] = row[lane]
            result = work[worker, 3]
            apply_chain_lanes(
                specs,
                offsets,
                paired,
                weights,
                gathered,
                work[worker, 1],
                work[worker, 2],
                result,
                lanes,
            )
            for i in range(m):
                row = out[i, first : first + lanes]
                chunk_row = result[i * lanes : (i + 1) * lanes]
                for lane in range(row.shape[0]):
                    row[lane] = chunk_row[lane]
