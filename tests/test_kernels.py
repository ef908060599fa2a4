"""Each Numba kernel against its NumPy twin in ``pydebut._reference``.

CI runs this file once more with ``NUMBA_BOUNDSCHECK=1``, so any index the
kernels compute out of bounds fails loudly. This file alone must catch a
wrong kernel, so:

- outputs are filled with NaN before each call (a row, lane or window the
  kernel forgets to write stays NaN);
- the reference runs in double precision on the same (rounded) inputs and
  the tolerance is a few units in the last place of the kernel's dtype per
  multiply-add along the chain, scaled by ``|F_1| ... |F_L| |x|`` (the
  forward error bound of a product of sums), so a kernel that loses
  precision fails as surely as one that mixes the wrong rows;
- the chains drawn exercise every batched path: groups of one to four 2x2
  factors with their ``t`` in any order, at the start, in the middle and in
  the last pass of a chain, ``t`` that are and are not powers of two,
  general and ``(2, 4)`` factors around them, and column windows that do not
  divide the batch; the work buffers (with the groups' scratch rows) are
  filled with NaN too;
- blocks run as the operator runs them (complex ones as split planes in real
  work buffers), and each column must equal that vector alone bit for bit.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pydebut import Chain, FactorSpec, _batched, _kernels, _reference
from pydebut.operator import _make_plan
from pydebut.special import PAPER_CHAINS
from pydebut.testing import chains, dense_chains

DTYPES = [np.float32, np.float64, np.complex64, np.complex128]


def random_array(rng, shape, dtype):
    values = rng.standard_normal(shape)
    if np.dtype(dtype).kind == "c":
        values = values + 1j * rng.standard_normal(shape)
    return values.astype(dtype)


def weights_for(chain, rng, dtype):
    return [random_array(rng, f.weight_shape, dtype) for f in chain]


def wide(dtype):
    """The double-precision dtype of the same kind, for reference results."""
    return np.dtype(np.complex128 if np.dtype(dtype).kind == "c" else np.float64)


def reference_and_bound(chain, weights, x, dtype):
    """``F_1 ... F_L x`` in double precision and the error allowed in ``dtype``, entry by entry.

    The reference runs on the inputs as given (already rounded to ``dtype``);
    the allowed error is ``4 eps (sum_l s_l + L) (|F_1| ... |F_L| |x|)``.
    """
    double = wide(dtype)
    x = x.reshape(x.shape[0], -1)
    exact = _reference.apply_chain(chain, [w.astype(double) for w in weights], x.astype(double))
    magnitude = _reference.apply_chain(chain, [np.abs(w) for w in weights], np.abs(x))
    depth = sum(f.s for f in chain) + len(chain)
    return exact, 4 * np.finfo(dtype).eps * depth * magnitude


def assert_within(out, exact, allowed, what):
    error = np.abs(out.reshape(exact.shape).astype(exact.dtype) - exact)
    bad = ~(error <= allowed)  # NaN in out counts as bad
    assert not bad.any(), (
        f"{bad.sum()} of {bad.size} entries wrong for {what} in {out.dtype.name}; first at "
        f"{np.argwhere(bad)[0].tolist()}: error {error[bad][0]:.3g} allowed {allowed[bad][0]:.3g}"
    )


def assert_chain_close(out, chain, weights, x):
    """``out`` equals ``F_1 ... F_L x`` to a few ulps of ``out``'s dtype per multiply-add."""
    exact, allowed = reference_and_bound(chain, weights, x, out.dtype)
    assert_within(out, exact, allowed, repr(chain))


def in_window(block, s0, total, dtype):
    """Embed ``block`` (rows, lanes) at column ``s0`` of a NaN-filled (rows, total) array."""
    wide_block = np.full((block.shape[0], total), np.nan, dtype=dtype)
    wide_block[:, s0 : s0 + block.shape[1]] = block
    return wide_block


def as_rows(block):
    """``block`` as the batched kernels hold a window: complex as split planes.

    A complex ``(rows, lanes)`` block becomes a real ``(rows, 2 lanes)`` one,
    the real parts of each row and then its imaginary parts.
    """
    if block.dtype.kind != "c":
        return block
    return np.concatenate([block.real, block.imag], axis=1)


def from_rows(rows, dtype):
    """The inverse of :func:`as_rows` for data of ``dtype``."""
    if np.dtype(dtype).kind != "c":
        return rows
    half = rows.shape[1] // 2
    return (rows[:, :half] + 1j * rows[:, half:]).astype(dtype)


def chain_plan(chain, weights, dtype):
    """The forward plan of ``chain`` (factors in application order), as the operator builds it."""
    return _make_plan(list(reversed(chain.factors)), weights[::-1], np.dtype(dtype))


def run_vector(plan, x, dtype, n_parts=None):
    """The one-vector kernel (in ``n_parts`` parallel parts if given) into a NaN-filled output."""
    out = np.full(plan.n_out, np.nan, dtype=dtype)
    if n_parts is None:
        _kernels.apply_chain_vector(plan.specs, plan.weights, x, out)
    else:
        # NaN-filled work: no output may depend on what the work array held
        work = np.full(_kernels.vector_parallel_work(plan.specs, n_parts), np.nan, dtype=dtype)
        _kernels.apply_chain_vector_parallel(plan.specs, plan.weights, x, out, work, n_parts)
    return out


def batch_plan(plan, group=True):
    return _batched.make_batch_plan(plan.specs, plan.offsets, plan.weights, group)


def spec_table(specs):
    return np.array([f.as_tuple() for f in specs], dtype=np.int64).reshape(-1, 5)


def run_matrix(plan, x, n_workers, width, group=True, part_rows=1, stream=False, order="C"):
    """The batched kernel on ``x`` with NaN-filled output and work buffers.

    One worker runs :func:`_kernels.apply_chain_chunks` directly, as the
    operator does; more run the parallel kernel. ``part_rows = 1`` runs
    every pass alone; more lets passes run part by part (in phases).
    ``stream`` has a last pass that is a group write ``out`` past the caches.
    Complex work buffers are real, with two columns per lane (split
    planes), as the operator makes them. ``order="F"`` passes ``x`` and
    ``out`` column-major (real data), as the operator does for row-major data.
    """
    batched = batch_plan(plan, group)
    x = np.asarray(x, order=order)
    out = np.full((plan.n_out, x.shape[1]), np.nan, dtype=x.dtype, order=order)
    rows = _kernels.work_rows(batched.specs, part_rows)
    planes = 2 if x.dtype.kind == "c" else 1  # complex windows run as split planes
    work = np.full((n_workers, rows, planes * width), np.nan, dtype=np.finfo(x.dtype).dtype)
    arguments = (
        batched.specs, batched.passes, batched.rows, batched.weights, x, out, work, width,
        part_rows, stream,
    )  # fmt: skip
    if n_workers == 1:
        _kernels.apply_chain_chunks(*arguments, 0)
    else:
        _kernels.apply_chain_matrix(*arguments)
    return out


# --- single factors -----------------------------------------------------------------

FIELDS = [
    (8, 8, 2, 2, 4),
    (8, 8, 2, 2, 1),
    (12, 12, 2, 2, 3),
    (32, 32, 2, 2, 8),
    (64, 64, 2, 2, 16),
    (48, 48, 2, 2, 12),
    (12, 8, 3, 2, 2),
    (6, 12, 1, 2, 3),
    (5, 5, 5, 5, 1),
    (16, 32, 2, 4, 2),
    (48, 16, 6, 2, 1),
    (64, 72, 8, 9, 8),
    (16, 64, 1, 4, 4),
    (64, 32, 2, 1, 16),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("fields", FIELDS)
def test_vector_kernels_match_reference(fields, dtype):
    spec = FactorSpec(*fields)
    rng = np.random.default_rng(0)
    w = random_array(rng, spec.weight_shape, dtype)
    x = random_array(rng, spec.q, dtype)
    pad = 3  # weights start at an offset, as inside a chain's flat buffer
    flat = np.concatenate([np.zeros(pad, dtype), w.ravel()])
    # vector_factor picks vector_2x2 for r = s = 2; vector_general must agree on every factor
    for kernel in (_kernels.vector_factor, _kernels.vector_general):
        out = np.full(spec.p + 2, np.nan, dtype=dtype)
        kernel(spec.p, spec.r, spec.s, spec.t, flat, pad, x, out)
        assert_chain_close(out[: spec.p], Chain([spec]), [w], x)
        assert np.isnan(out[spec.p :]).all(), "wrote past the factor's rows"


@pytest.mark.parametrize("dtype", [np.complex64, np.complex128])
@pytest.mark.parametrize("fields", FIELDS)
def test_vector_kernels_take_real_weights_part_by_part(fields, dtype):
    """Real weights on complex data: each part as the real kernel maps it, bit for bit."""
    spec = FactorSpec(*fields)
    rng = np.random.default_rng(0)
    real = np.finfo(dtype).dtype
    flat = random_array(rng, spec.weight_shape, real).ravel()
    x = random_array(rng, spec.q, dtype)
    x.imag[::3] = np.inf  # 0 * inf of a complex weight's zero imaginary part would be NaN
    for kernel in (_kernels.vector_factor, _kernels.vector_general):
        out = np.empty(spec.p, dtype=dtype)
        kernel(spec.p, spec.r, spec.s, spec.t, flat, 0, x, out)
        for part in ("real", "imag"):
            expected = np.empty(spec.p, dtype=real)
            kernel(
                spec.p,
                spec.r,
                spec.s,
                spec.t,
                flat,
                0,
                np.ascontiguousarray(getattr(x, part)),
                expected,
            )
            np.testing.assert_array_equal(getattr(out, part), expected)


def test_parallel_vector_kernel_takes_real_weights_part_by_part():
    chain = Chain([(64, 64, 2, 2, 32), (64, 64, 2, 2, 1), (64, 64, 4, 4, 4), (64, 64, 2, 2, 16)])
    rng = np.random.default_rng(3)
    plan = chain_plan(chain, weights_for(chain, rng, np.float64), np.float64)
    x = random_array(rng, chain.shape[1], np.complex128)
    for n_parts in (None, 2, 3):
        out = run_vector(plan, x, np.complex128, n_parts)
        np.testing.assert_array_equal(out.real, run_vector(plan, x.real.copy(), np.float64))
        np.testing.assert_array_equal(out.imag, run_vector(plan, x.imag.copy(), np.float64))


@pytest.mark.parametrize("dtype", [np.float64, np.complex64])
@pytest.mark.parametrize("fields", [(12, 12, 2, 2, 6), (12, 8, 3, 2, 2), (16, 32, 2, 4, 8)])
def test_vector_alphas_writes_only_its_window(fields, dtype):
    spec = FactorSpec(*fields)
    rng = np.random.default_rng(2)
    w = random_array(rng, spec.weight_shape, dtype)
    x = random_array(rng, spec.q, dtype)
    exact, allowed = reference_and_bound(Chain([spec]), [w], x, dtype)
    exact, allowed = exact.reshape(-1, spec.t), allowed.reshape(-1, spec.t)
    for a0, a1 in [(0, spec.t), (1, spec.t - 1), (spec.t - 1, spec.t)]:
        out = np.full(spec.p, np.nan, dtype=dtype)
        _kernels.vector_alphas(spec.p, spec.r, spec.s, spec.t, a0, a1, w.ravel(), 0, x, out)
        out = out.reshape(-1, spec.t)
        assert_within(out[:, a0:a1], exact[:, a0:a1], allowed[:, a0:a1], f"alpha in [{a0}, {a1})")
        assert np.isnan(out[:, :a0]).all() and np.isnan(out[:, a1:]).all()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("lanes", [1, 2, 5, 16, 19])
@pytest.mark.parametrize("fields", FIELDS)
def test_lane_kernels_match_reference_inside_their_window(fields, lanes, dtype):
    spec = FactorSpec(*fields)
    rng = np.random.default_rng(1)
    w = random_array(rng, spec.weight_shape, dtype)
    x = random_array(rng, (spec.q, lanes), dtype)
    flat = np.concatenate([np.zeros(2, dtype), w.ravel()])
    rows = as_rows(x)
    width = rows.shape[1]
    src = in_window(rows, 3, width + 5, rows.dtype)
    dst = np.full((spec.p, width + 4), np.nan, dtype=rows.dtype)
    _kernels.lanes_general(
        spec.p, spec.r, spec.s, spec.t, flat, 2, src, 3, dst, 1, width, 0, 1, (0, 0)
    )  # fmt: skip
    assert_chain_close(from_rows(dst[:, 1 : 1 + width], dtype), Chain([spec]), [w], x)
    assert np.isnan(dst[:, :1]).all() and np.isnan(dst[:, 1 + width :]).all()


def run_in_parts(kernel, n_rows_in, n_rows_out, n_parts, src):
    """``kernel(src_part, dst_part, part, row0)`` part by part, each part in buffers of its own.

    Part ``c`` reads rows ``c n_rows_in / n_parts`` onwards of the window
    ``src`` (as :func:`as_rows` lays it out) from a copy that holds only them
    and writes its output rows into a NaN-filled buffer that holds only them
    (both with a padding column on the left), as the passes inside a phase
    do; returns the parts stacked, of ``src``'s dtype.
    """
    parts = []
    rows = as_rows(src)
    rows_in, rows_out = n_rows_in // n_parts, n_rows_out // n_parts
    for part in range(n_parts):
        src_part = np.full((rows_in, rows.shape[1] + 1), np.nan, dtype=rows.dtype)
        src_part[:, 1:] = rows[part * rows_in : (part + 1) * rows_in]
        dst_part = np.full_like(src_part, np.nan, shape=(rows_out, rows.shape[1] + 1))
        kernel(src_part, dst_part, part, (part * rows_in, part * rows_out))
        parts.append(dst_part[:, 1:])
    return from_rows(np.concatenate(parts), src.dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("fields", FIELDS)
def test_lane_kernels_match_reference_part_by_part(fields, dtype):
    spec = FactorSpec(*fields)
    rng = np.random.default_rng(2)
    w = random_array(rng, spec.weight_shape, dtype)
    x = random_array(rng, (spec.q, 5), dtype)
    width = as_rows(x).shape[1]
    n_blocks = spec.p // (spec.r * spec.t)
    for n_parts in [d for d in range(1, n_blocks + 1) if n_blocks % d == 0]:

        def kernel(src, dst, part, row0, n_parts=n_parts):
            _kernels.lanes_general(
                spec.p, spec.r, spec.s, spec.t, w.ravel(), 0, src, 1, dst, 1, width,
                part, n_parts, row0,
            )  # fmt: skip

        out = run_in_parts(kernel, spec.q, spec.p, n_parts, x)
        assert_chain_close(out, Chain([spec]), [w], x)


# application-order exponents j of t = 2**j T within a group of k = len(order) factors
GROUP_ORDERS = [[0, 1], [1, 0], [0, 1, 2], [2, 1, 0], [1, 0, 2], [0, 1, 2, 3], [3, 2, 1, 0],
                [1, 0, 2, 3], [2, 3, 1, 0]]  # fmt: skip


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("order", GROUP_ORDERS, ids=str)
def test_2x2_group_matches_reference_factors(order, dtype):
    n = 1 << len(order)
    for smallest_t, lanes in [(1, 1), (3, 17), (2, 16)]:
        p = 2 * n * smallest_t  # two blocks of sub-problems
        applied = [FactorSpec(p, p, 2, 2, smallest_t << j) for j in order]
        table = spec_table(applied)
        assert _batched._groups(table) == [(0, len(order))]
        rng = np.random.default_rng(len(order) + smallest_t)
        weights = [random_array(rng, f.weight_shape, dtype) for f in applied]
        rows = _batched._group_rows(table[:, 4])
        packed = np.concatenate([np.zeros(2, dtype), _batched._pack_group(table, weights, rows)])
        x = random_array(rng, (p, lanes), dtype)
        window = as_rows(x)
        width = window.shape[1]
        src = in_window(window, 2, width + 3, window.dtype)
        out = np.full((p, width + 2), np.nan, dtype=window.dtype)
        scratch = np.full((2 * _kernels.MAX_GROUP_ROWS, width), np.nan, dtype=window.dtype)
        chain = Chain(applied[::-1])
        results = []
        for stream in (False, True):  # the last step into dst, or through scratch past the caches
            out = np.full((p, width + 2), np.nan, dtype=window.dtype)
            _kernels.lanes_2x2_group(
                p, len(order), smallest_t, rows, packed, 2, src, 2, out, 1, width, scratch,
                0, 1, (0, 0), stream,
            )  # fmt: skip
            results.append(from_rows(out[:, 1 : 1 + width], dtype))
            assert_chain_close(results[-1], chain, weights[::-1], x)
            assert np.isnan(out[:, 0]).all() and np.isnan(out[:, -1]).all()
        np.testing.assert_array_equal(results[1], results[0])

        for stream in (False, True):
            before, between = (p, len(order), smallest_t, rows, packed, 2), (width, scratch)

            def kernel(src, dst, part, row0, before=before, between=between, stream=stream):
                _kernels.lanes_2x2_group(*before, src, 1, dst, 1, *between, part, 2, row0, stream)

            in_parts = run_in_parts(kernel, p, p, 2, x)  # one block per part
            np.testing.assert_array_equal(in_parts, results[0])


# --- whole chains -------------------------------------------------------------------


def butterfly_steps(p, ts):
    """Square 2x2 factors of size ``p`` with the given ``t`` in application order, as a chain."""
    return Chain([FactorSpec(p, p, 2, 2, t) for t in reversed(ts)])


# application-order t sequences and the passes (first factor, k) the plan must form
GROUP_CASES = {
    "fine first": (16, [1, 2], [(0, 2)]),
    "coarse first": (16, [4, 2], [(0, 2)]),
    "group in the last pass": (32, [8, 1, 2], [(0, 0), (1, 2)]),
    "coarse first, last pass": (48, [3, 12, 6], [(0, 0), (1, 2)]),
    "a pair and a triple": (64, [1, 2, 8, 4, 16], [(0, 2), (2, 3)]),
    "four in any order, then one": (64, [2, 1, 4, 8, 16], [(0, 4), (4, 0)]),
    "four coarse first, then two": (64, [8, 4, 2, 1, 16, 32], [(0, 4), (4, 2)]),
    "t = 3, 8, 2, 16 alone": (96, [3, 8, 2, 16], [(0, 0), (1, 0), (2, 0), (3, 0)]),
}


@pytest.mark.parametrize("case", list(GROUP_CASES))
@pytest.mark.parametrize("dtype", DTYPES)
def test_chains_with_2x2_groups_match_reference(case, dtype):
    p, ts, groups = GROUP_CASES[case]
    chain = butterfly_steps(p, ts)
    rng = np.random.default_rng(len(ts))
    weights = weights_for(chain, rng, dtype)
    plan = chain_plan(chain, weights, dtype)
    assert [(first, k) for first, k, _, _ in batch_plan(plan).passes.tolist()] == groups
    for batch, n_workers, width in [(1, 1, 1), (7, 2, 3), (37, 3, 8), (64, 2, 32), (70, 1, 64)]:
        x = random_array(rng, (p, batch), dtype)
        outs = []
        for group, part_rows in [(True, 1), (False, 1), (True, 2 * p // 8), (False, 4 * p)]:
            outs.append(run_matrix(plan, x, n_workers, width, group, part_rows))
            assert_chain_close(outs[-1], chain, weights, x)
        # a group takes the same products and sums in the same order as its factors alone
        for out in outs[1:]:
            np.testing.assert_array_equal(out, outs[0])
    x = random_array(rng, p, dtype)
    assert_chain_close(run_vector(plan, x, dtype), chain, weights, x)
    for n_parts in (2, 3, 5):
        assert_chain_close(run_vector(plan, x, dtype, n_parts), chain, weights, x)


@st.composite
def butterfly_like_chains(draw):
    """Square 2x2 steps whose ``t`` often double or halve (radix-4 pairs), between general factors.

    The size ``p`` is a multiple of 32 or 3 times a power of two so that
    ``t`` takes the values 2, 3, 8 and 16 among others.
    """
    p = draw(st.sampled_from([8, 16, 32, 48, 64, 96]))
    divisors = [t for t in range(1, p // 2 + 1) if p % (2 * t) == 0]
    ts = [draw(st.sampled_from(divisors))]
    for _ in range(draw(st.integers(0, 5))):
        previous = ts[-1]
        halves = (previous // 2,) if previous % 2 == 0 else ()
        pairing = [t for t in (2 * previous, *halves) if p % (2 * t) == 0]
        any_t = st.sampled_from(divisors)
        ts.append(draw(st.one_of(st.sampled_from(pairing), any_t) if pairing else any_t))
    factors = list(butterfly_steps(p, ts).factors)
    if draw(st.booleans()):  # a general factor on the output side
        m = draw(st.sampled_from([1, 3, 4, 6, p, 2 * p]))
        kt = draw(st.sampled_from([d for d in range(1, p + 1) if p % d == 0 and m % d == 0]))
        factors.insert(0, FactorSpec(m, p, m // kt, p // kt, draw(st.sampled_from(
            [t for t in range(1, kt + 1) if kt % t == 0]))))  # fmt: skip
    if draw(st.booleans()):  # a general factor on the input side
        n = draw(st.sampled_from([p // 2, p, 3 * p // 2]))
        kt = draw(st.sampled_from([d for d in range(1, p + 1) if p % d == 0 and n % d == 0]))
        factors.append(FactorSpec(p, n, p // kt, n // kt, draw(st.sampled_from(
            [t for t in range(1, kt + 1) if kt % t == 0]))))  # fmt: skip
    return Chain(factors)


@given(
    st.one_of(butterfly_like_chains(), chains(max_dim=36, max_factors=5), dense_chains(max_dim=32)),
    st.sampled_from(DTYPES),
    st.integers(1, 40),
    st.integers(1, 4),
    st.integers(1, 20),
    st.integers(1, 200),
)
def test_chain_kernels_match_reference(chain, dtype, batch, n_workers, width, part_rows):
    rng = np.random.default_rng(batch)
    weights = weights_for(chain, rng, dtype)
    plan = chain_plan(chain, weights, dtype)
    x = random_array(rng, (chain.shape[1], batch), dtype)

    vector = x[:, 0].copy()
    assert_chain_close(run_vector(plan, vector, dtype), chain, weights, vector)
    assert_chain_close(run_vector(plan, vector, dtype, n_workers), chain, weights, vector)
    for group in (True, False):
        out = run_matrix(plan, x, n_workers, width, group, part_rows)
        assert_chain_close(out, chain, weights, x)


@given(
    st.one_of(butterfly_like_chains(), chains(max_dim=36, max_factors=5)),
    st.sampled_from([np.float32, np.float64]),
    st.integers(1, 40),
    st.integers(1, 3),
    st.integers(1, 20),
    st.integers(1, 200),
)
def test_column_major_blocks_equal_row_major(chain, dtype, batch, n_workers, width, part_rows):
    """Column-major ``x`` and ``out`` (row-major data, transposed) give the same bits.

    Each window is copied out of ``x``'s columns into a work buffer's rows
    and back into ``out``'s columns: all of ``out`` is written (it starts as
    NaN), nothing beyond it, whether the chain widens or narrows.
    """
    rng = np.random.default_rng(batch)
    weights = weights_for(chain, rng, dtype)
    plan = chain_plan(chain, weights, dtype)
    x = random_array(rng, (chain.shape[1], batch), dtype)
    row_major = run_matrix(plan, x, n_workers, width, True, part_rows)
    column_major = run_matrix(plan, x, n_workers, width, True, part_rows, order="F")
    assert column_major.flags.f_contiguous
    np.testing.assert_array_equal(column_major, row_major)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "chain",
    [
        butterfly_steps(64, [2, 1, 4, 8, 16, 32]),
        Chain.from_factorizations([2, 4, 8], [4, 4, 4]),
        PAPER_CHAINS["vgg16-conv1"],
        PAPER_CHAINS["lenet-fc1"],
    ],
    ids=["2x2 groups", "general factors", "vgg16-conv1", "lenet-fc1"],
)
def test_results_do_not_depend_on_the_window(chain, dtype):
    """The block kernels and the one-vector kernels round every product alike.

    Each column of a block equals, bit for bit, that vector alone, whatever
    the window: its place in a SIMD loop or in the scalar remainder, or a
    one-vector kernel that sums a row's terms in another loop order (the
    dot products of ``t = 1`` factors, as in the paper's VGG and LeNet
    chains), does not change how its products round (what Dask's chunks
    rely on).
    """
    rng = np.random.default_rng(5)
    weights = weights_for(chain, rng, dtype)
    plan = chain_plan(chain, weights, dtype)
    x = random_array(rng, (chain.shape[1], 40), dtype)
    alone = np.stack([run_vector(plan, x[:, j].copy(), dtype) for j in range(40)], axis=1)
    assert_chain_close(alone, chain, weights, x)
    for width, part_rows in [(1, 1), (3, 1), (8, 1), (17, 64), (40, 1), (40, 256)]:
        np.testing.assert_array_equal(run_matrix(plan, x, 1, width, True, part_rows), alone)
        streamed = run_matrix(plan, x, 2, width, True, part_rows, stream=True)
        np.testing.assert_array_equal(streamed, alone)


@pytest.mark.parametrize("n_parts", [2, 3, 5])
@pytest.mark.parametrize(
    "factors",
    [
        # dimensions 2, 2, 4, 4, 2: the parts' rows move between factors of one phase
        [(2, 2, 2, 2, 1), (2, 4, 1, 2, 2), (4, 4, 1, 1, 2), (4, 2, 2, 1, 1), (2, 2, 1, 1, 1)],
        # a butterfly: blocks while there are enough, then alpha; three blocks do not split evenly
        [(64, 64, 2, 2, 32), (64, 64, 2, 2, 16), (64, 64, 2, 2, 8), (64, 64, 2, 2, 4),
         (64, 64, 2, 2, 2), (64, 64, 2, 2, 1)],
        [(24, 24, 2, 2, 4), (24, 24, 3, 3, 1), (24, 48, 2, 4, 3)],
    ],
)  # fmt: skip
def test_parallel_vector_phases_match_reference(factors, n_parts):
    chain = Chain(factors)
    rng = np.random.default_rng(n_parts)
    weights = weights_for(chain, rng, np.float64)
    plan = chain_plan(chain, weights, np.float64)
    x = random_array(rng, chain.shape[1], np.float64)
    x.flags.writeable = False  # a read-only input is read in place
    assert_chain_close(run_vector(plan, x, np.float64, n_parts), chain, weights, x)


def test_plans_group_2x2_factors_greedily():
    from pydebut.special import butterfly_chain

    def groups(specs):
        return _batched._groups(spec_table(specs))

    applied = list(reversed(butterfly_chain(32).factors))  # t = 1, 2, 4, 8, 16
    assert groups(applied) == [(0, 4), (4, 0)]  # a 2x2 factor that joins no group runs alone
    adjoint = [f.T for f in butterfly_chain(32)]  # t = 16, 8, 4, 2, 1
    assert groups(adjoint) == [(0, 4), (4, 0)]
    assert groups(reversed(butterfly_chain(4096).factors)) == [(0, 4), (4, 4), (8, 4)]
    paper = list(reversed(PAPER_CHAINS["resnet50-layer4"].factors))  # (2, 4) at t = 8 and 128
    assert groups(paper) == [(0, 3), (3, 0), (4, 3), (7, 0), (8, 0)]
    mixed = list(reversed(Chain([(8, 8, 2, 2, 4), (8, 16, 2, 4, 2), (16, 16, 2, 2, 1)]).factors))
    assert groups(mixed) == [(0, 0), (1, 0), (2, 0)]
    apart = [FactorSpec(16, 16, 2, 2, t) for t in (1, 4, 2, 8)]  # {1, 4} is no group
    assert groups(apart) == [(0, 0), (1, 3)]
    repeated = [FactorSpec(16, 16, 2, 2, t) for t in (2, 2, 4)]  # the same t twice
    assert groups(repeated) == [(0, 0), (1, 2)]


def test_tolerance_sees_a_loss_of_double_precision():
    chain = butterfly_steps(16, [1, 2, 4, 8])
    rng = np.random.default_rng(0)
    weights = weights_for(chain, rng, np.float64)
    x = random_array(rng, (16, 3), np.float64)
    exact = _reference.apply_chain(chain, weights, x)
    assert_chain_close(exact, chain, weights, x)
    single = _reference.apply_chain(
        chain, [w.astype(np.float32) for w in weights], x.astype(np.float32)
    )
    with pytest.raises(AssertionError, match="entries wrong"):
        assert_chain_close(single.astype(np.float64), chain, weights, x)


def test_adjoint_reference_matches_dense():
    chain = Chain.from_factorizations([2, 3], [3, 2])
    rng = np.random.default_rng(0)
    weights = [w + 1j * w[::-1] for w in weights_for(chain, rng, np.float64)]
    dense = _reference.chain_to_dense(chain, weights)
    y = rng.standard_normal((6, 4))
    assert np.allclose(_reference.apply_chain_adjoint(chain, weights, y), dense.conj().T @ y)


def test_real_radix_loops_fold_their_tails_where_masks_are_native():
    """A 2x2 mix gives each lane the same bits at any width; on AVX-512 the tail is masked.

    There the real radix loops carry LLVM's tail-folding hint (``_kernels._lanewise_loop``),
    so the lanes past the last whole SIMD register run as one masked iteration
    rather than a scalar remainder. Elsewhere they must not: LLVM masks every
    iteration of a folded loop, and AVX2's masked moves made the batched kernels
    2.5x slower on AMD Zen 3.
    """
    import llvmlite.binding as llvm
    import numba

    @numba.njit
    def mix(m, a, b, c, d):
        _kernels._each_radix2(m, (a, b), (c, d))

    rng = np.random.default_rng(0)
    m = tuple(rng.standard_normal(4))
    a, b = rng.standard_normal((2, 41))
    lanes = {}
    for width in (1, 7, 8, 9, 15, 16, 17, 41):
        c, d = np.full(width, np.nan), np.full(width, np.nan)
        mix(m, a[:width], b[:width], c, d)
        np.testing.assert_allclose(c, m[0] * a[:width] + m[1] * b[:width], rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(d, m[2] * a[:width] + m[3] * b[:width], rtol=1e-13, atol=1e-15)
        lanes[width] = c, d
    for width, (c, d) in lanes.items():  # each lane alike, whether masked, whole or scalar
        np.testing.assert_array_equal(c, lanes[41][0][:width])
        np.testing.assert_array_equal(d, lanes[41][1][:width])
    native_masks = "+avx512f" in llvm.get_host_cpu_features().flatten().split(",")
    assert ("llvm.masked.store" in next(iter(mix.inspect_llvm().values()))) == native_masks


@pytest.mark.parametrize(
    ("features", "native"),
    [("+avx2,+fma,-avx512f,-avx512vl", False), ("+avx2,+avx512f,+avx512vl", True), ("", False)],
)
def test_only_avx512_counts_as_native_masks(features, native):
    assert _kernels._has_avx512(features) is native


def test_lane_loops_prefer_the_widest_vectors():
    """A caller of a lane loop asks LLVM for 512-bit vectors (``_kernels._prefer_wide_vectors``).

    LLVM's tuning for Intel server CPUs prefers 256-bit vectors even with
    AVX-512; on an AVX-512 host the radix-4 loop must use the 512-bit registers.
    """
    import llvmlite.binding as llvm
    import numba

    @numba.njit
    def mix(m, a, b, c, d, e, f, g, h):
        _kernels._each_radix4(m, (a, b, c, d), (e, f, g, h))

    m = tuple(np.full(16, 0.5))
    rows = np.ones((8, 64))
    mix(m, *rows)
    np.testing.assert_array_equal(rows[4:], 1.0)
    signature = mix.signatures[0]
    assert _kernels.PREFER_WIDE_VECTORS in mix.inspect_llvm(signature)
    if "+avx512f" in llvm.get_host_cpu_features().flatten().split(","):
        assert "zmm" in mix.inspect_asm(signature)


# --- the operator's application path ------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(), (1,), (5,), (70,)])
def test_apply_writes_into_out(shape, dtype):
    from pydebut import DeButOperator

    chain = PAPER_CHAINS["lenet-fc1"]
    op = DeButOperator.random(chain, rng=0, dtype=dtype)
    x = random_array(np.random.default_rng(1), (chain.shape[1], *shape), dtype)
    out = np.full((chain.shape[0], *shape), np.nan, dtype=dtype)
    assert op.apply(x, out=out) is out
    assert_chain_close(out, chain, op.weights, x)
    assert_chain_close(op.apply(x), chain, op.weights, x)
    assert_chain_close(op @ x, chain, op.weights, x)
    if shape == ():
        assert_chain_close(op.matvec(x), chain, op.weights, x)
        y = random_array(np.random.default_rng(2), chain.shape[0], dtype)
        assert_chain_close(op.rmatvec(y), op.H.chain, op.H.weights, y)


@pytest.mark.parametrize("dtype", DTYPES)
def test_apply_streams_large_real_outputs_behind_a_group_of_three(monkeypatch, dtype):
    """``op.apply`` writes ``out`` past the caches only where that measured faster.

    That is a real ``out`` of at least ``STREAM_BYTES`` whose last pass is a
    group of at least three 2x2 factors; the result is the same bit for bit.
    """
    from pydebut import DeButOperator
    from pydebut.special import butterfly_chain

    streamed = []
    one_worker = _kernels.apply_chain_chunks

    def record(*arguments):
        streamed.append(arguments[-2])
        one_worker(*arguments)

    monkeypatch.setattr(_kernels, "apply_chain_chunks", record)
    itemsize = np.dtype(dtype).itemsize
    rng = np.random.default_rng(3)
    real = np.dtype(dtype).kind == "f"
    # 7 factors are a group of four and a group of three; 6 a group of four and a pair
    for size, batch, expected in [(128, 8, real), (128, 7, False), (64, 16, False)]:
        op = DeButOperator.random(butterfly_chain(size), rng=0, dtype=dtype)
        x = random_array(rng, (size, batch), dtype)
        monkeypatch.setattr(_batched, "STREAM_BYTES", 128 * 8 * itemsize)
        streamed.clear()
        out = op.apply(x)
        assert streamed == [expected], (size, batch)
        assert_chain_close(out, op.chain, op.weights, x)
        monkeypatch.setattr(_batched, "STREAM_BYTES", 2**62)
        np.testing.assert_array_equal(op.apply(x), out)


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_few_columns_run_one_at_a_time_with_the_same_result(monkeypatch, dtype):
    """Fewer than ``COLUMNS_ALONE`` columns take the one-vector kernel, column by column.

    The result equals the batched kernels' bit for bit. Columns long enough
    to be split between threads keep the batched kernels.
    """
    import numba

    from pydebut import DeButOperator, operator

    widths = []
    one_by_one = _kernels.apply_chain_columns

    def record(*arguments):
        widths.append(arguments[2].shape[1])
        one_by_one(*arguments)

    monkeypatch.setattr(_kernels, "apply_chain_columns", record)
    alone = operator.COLUMNS_ALONE
    chain = PAPER_CHAINS["lenet-fc1"]
    op = DeButOperator.random(chain, rng=0, dtype=dtype)
    rng = np.random.default_rng(4)
    for batch in range(2, alone + 1):
        x = random_array(rng, (chain.shape[1], batch), dtype)
        widths.clear()
        out = op.apply(x)
        assert widths == ([batch] if batch < alone else [])
        assert_chain_close(out, chain, op.weights, x)
        assert_chain_close(op.H @ out, op.H.chain, op.H.weights, out)
        monkeypatch.setattr(operator, "COLUMNS_ALONE", 1)  # the batched kernels
        np.testing.assert_array_equal(op.apply(x), out)
        monkeypatch.setattr(operator, "COLUMNS_ALONE", alone)
    if numba.get_num_threads() > 1:
        split_every_vector(monkeypatch)
        widths.clear()
        assert_chain_close(op.apply(x[:, :2]), chain, op.weights, x[:, :2])
        assert widths == []


@pytest.fixture(scope="module")
def lanewise_calls():
    """Jitted callers of the kernels' lanewise intrinsics (``_kernels._lanewise``)."""
    import numba

    @numba.njit
    def sums_onto(w, v, x0, x1, y, z):
        _kernels._each_sums_onto((w, v), (x0, x1), (y, z))

    @numba.njit
    def radix2_planes(m, x0, x1, y0, y1):
        _kernels._each_radix2_planes(m, (x0, x1), (y0, y1))

    @numba.njit
    def radix4(m, x0, x1, x2, x3, y0, y1, y2, y3):
        _kernels._each_radix4(m, (x0, x1, x2, x3), (y0, y1, y2, y3))

    @numba.njit
    def split_join(x, planes, back):
        _kernels._each_split((), (x,), (planes,))
        _kernels._each_join((), (planes,), (back,))

    return sums_onto, radix2_planes, radix4, split_join


@pytest.mark.parametrize("lanes", [0, 1, 7, 8, 9, 17, 33, 64])
def test_lanewise_rows_match_numpy(lanewise_calls, lanes):
    """The lanewise loop over ``noalias`` rows: each mode against NumPy, every lane written.

    ``updates`` adds to the targets, ``planes`` reads rows of split planes,
    the radix-4 step orders its outputs as its rows, and a complex row goes
    into split planes and back; the lane counts cover the SIMD loop, its
    remainder and neither.
    """
    sums_onto, radix2_planes, radix4, split_join = lanewise_calls
    rng = np.random.default_rng(lanes)
    x = rng.standard_normal((4, lanes))
    w, v = (1.5, -0.25), (0.5, 2.0)
    y, z = rng.standard_normal((2, lanes))
    expected = (y + w[0] * x[0] + w[1] * x[1], z + v[0] * x[0] + v[1] * x[1])
    sums_onto(w, v, x[0], x[1], y, z)
    np.testing.assert_allclose((y, z), expected, rtol=1e-14, atol=1e-14)

    m = tuple(complex(a, b) for a, b in rng.standard_normal((4, 2)))
    a, b = x[0] + 1j * x[1], x[2] + 1j * x[3]
    rows = np.full((4, 2 * lanes), np.nan)
    radix2_planes(m, np.hstack([x[0], x[1]]), np.hstack([x[2], x[3]]), rows[0], rows[2])
    mixed = rows[[0, 2], :lanes] + 1j * rows[[0, 2], lanes:]
    expected = np.array([[m[0], m[1]], [m[2], m[3]]]) @ np.array([a, b])
    np.testing.assert_allclose(mixed, expected, rtol=1e-14, atol=1e-14)
    assert np.isnan(rows[[1, 3]]).all()

    m = tuple(rng.standard_normal(16))
    stage = [np.array(m[k : k + 4]).reshape(2, 2) for k in range(0, 16, 4)]
    first = np.vstack([stage[0] @ x[:2], stage[1] @ x[2:]])
    expected = np.empty_like(x)
    expected[[0, 2]] = stage[2] @ first[[0, 2]]
    expected[[1, 3]] = stage[3] @ first[[1, 3]]
    out = np.full((4, lanes), np.nan)
    radix4(m, *x, *out)
    np.testing.assert_allclose(out, expected, rtol=1e-13, atol=1e-13)

    for dtype in (np.complex64, np.complex128):
        values = (x[0] + 1j * x[1]).astype(dtype)
        planes = np.full(2 * lanes, np.nan, dtype=values.real.dtype)
        back = np.full(lanes, np.nan, dtype=dtype)
        split_join(values, planes, back)
        np.testing.assert_array_equal(planes, np.concatenate([values.real, values.imag]))
        np.testing.assert_array_equal(back, values)


def test_lanewise_inlines_even_a_large_lane_function():
    """The loop vectorises only with the lane function inlined, whatever its size.

    Sixteen chained radix-4 steps per lane (256 multiply-adds) are more than
    LLVM's inliner takes by its own measure; the ``alwaysinline`` call site
    (``_kernels._inline_call``) must leave no call of it in the optimised code.
    """
    import numba

    radix4 = _kernels._radix4_lane_of(_kernels._radix2_lane, 1)

    @numba.njit(inline="always")
    def chained(m, x):
        for _ in range(16):
            x = radix4(m, x)
        return x

    each = _kernels._lanewise(chained)

    @numba.njit
    def run(m, x0, x1, x2, x3, y0, y1, y2, y3):
        each(m, (x0, x1, x2, x3), (y0, y1, y2, y3))

    rows = np.ones((8, 16))
    m = tuple(np.full(16, 0.5))
    run(m, *rows)
    np.testing.assert_array_equal(rows[4:], 1.0)  # each step maps (1, 1) to (1, 1)
    for ir_text in run.inspect_llvm().values():
        calls = [line for line in ir_text.splitlines() if "call" in line and "chained" in line]
        assert calls == [], calls[:3]


@pytest.mark.skipif(not _kernels._BOUNDSCHECK, reason="checked only under NUMBA_BOUNDSCHECK=1")
def test_lanewise_rows_of_different_lengths_fail_under_boundscheck(lanewise_calls):
    sums_onto = lanewise_calls[0]
    rows = np.zeros((4, 8))
    with pytest.raises(IndexError, match="lanewise rows"):
        sums_onto((1.0, 1.0), (1.0, 1.0), rows[0], rows[1, :7], rows[2], rows[3])


@pytest.fixture(scope="module")
def radix8_reading():
    """A jitted radix-8 step that reads its 48 weights in its loop (``read_weights``)."""
    import numba

    @numba.njit
    def radix8(weights, start, rows, out, width):
        x = [_kernels._row(rows, i, 0, width) for i in range(8)]
        y = [_kernels._row(out, i, 0, width) for i in range(8)]
        sources = (x[0], x[1], x[2], x[3], x[4], x[5], x[6], x[7])
        _kernels._each_radix8(
            weights, start, sources, (y[0], y[1], y[2], y[3], y[4], y[5], y[6], y[7])
        )

    return radix8


#: The row pairs a radix-8 step mixes, in the order of its 12 2x2 matrices; the first four
#: are a radix-4 step's (``_kernels._radix4_lane_of``).
RADIX8_PAIRS = [(0, 1), (2, 3), (0, 2), (1, 3), (4, 5), (6, 7), (4, 6), (5, 7),
                (0, 4), (1, 5), (2, 6), (3, 7)]  # fmt: skip


def mixed_in_turn(x, weights, pairs):
    """``x``'s rows mixed pair by pair, the 2x2 matrices (row major) ``weights`` in turn."""
    y = x.astype(np.complex128 if np.iscomplexobj(x) else np.float64)
    for pair, matrix in zip(pairs, np.reshape(weights, (len(pairs), 2, 2)), strict=True):
        y[list(pair)] = matrix @ y[list(pair)]
    return y


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_radix8_reading_its_weights_matches_numpy_at_every_width(radix8_reading, dtype):
    """Whole registers (weights read per register) and the lanes left over agree, lane by lane.

    The weights start inside a longer array; widths cover no lane, fewer than
    a register, whole registers and registers with lanes left over.
    """
    rng = np.random.default_rng(8)
    weights = rng.standard_normal(60).astype(dtype)
    x = rng.standard_normal((8, 70)).astype(dtype)
    expected = mixed_in_turn(x, weights[5:53], RADIX8_PAIRS)
    full = np.full((8, 70), np.nan, dtype=dtype)
    radix8_reading(weights, 5, x, full, 70)
    tolerance = 1e-5 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(full, expected, rtol=tolerance, atol=tolerance)
    for width in (0, 1, 7, 8, 9, 15, 16, 17, 33, 64):
        out = np.full((8, width + 1), np.nan, dtype=dtype)
        radix8_reading(weights, 5, x, out, width)
        np.testing.assert_array_equal(out[:, :width], full[:, :width])  # the same bits
        assert np.isnan(out[:, width]).all()


def test_radix8_reads_its_weights_as_broadcast_operands(radix8_reading):
    """On AVX-512 each weight is a broadcast operand of its product (``{1to8}``), not spilled.

    Read once before the loop, LLVM broadcast all 48 into registers and spilled them.
    """
    import llvmlite.binding as llvm

    if "+avx512f" not in llvm.get_host_cpu_features().flatten().split(","):
        pytest.skip("AVX-512 only")
    rows = np.ones((8, 16))
    radix8_reading(np.ones(48), 0, rows, np.empty_like(rows), 16)
    for assembly in radix8_reading.inspect_asm().values():  # {1to8} or {1to16}
        assert assembly.count("{1to") >= 48


@pytest.fixture(scope="module")
def radix4_planes_reading():
    """A jitted radix-4 step on split planes that reads its 16 complex weights in its loop."""
    import numba

    @numba.njit
    def radix4_planes(weights, start, rows, out, lanes):
        x = [_kernels._row(rows, i, 0, 2 * lanes) for i in range(4)]
        y = [_kernels._row(out, i, 0, 2 * lanes) for i in range(4)]
        _kernels._each_radix4_planes(
            weights, start, (x[0], x[1], x[2], x[3]), (y[0], y[1], y[2], y[3])
        )

    return radix4_planes


@pytest.mark.parametrize("lanes", [0, 1, 7, 8, 9, 17, 64])
def test_radix4_planes_reading_their_weights_match_numpy(radix4_planes_reading, lanes):
    """Complex weights on rows of split planes (real parts, then imaginary), at every width."""
    rng = np.random.default_rng(lanes)
    weights = rng.standard_normal(20) + 1j * rng.standard_normal(20)
    x = rng.standard_normal((4, lanes)) + 1j * rng.standard_normal((4, lanes))
    out = np.full((4, 2 * lanes + 1), np.nan)
    radix4_planes_reading(weights, 3, np.hstack([x.real, x.imag]), out, lanes)
    expected = mixed_in_turn(x, weights[3:19], RADIX8_PAIRS[:4])
    mixed = out[:, :lanes] + 1j * out[:, lanes : 2 * lanes]
    np.testing.assert_allclose(mixed, expected, rtol=1e-13, atol=1e-13)
    assert np.isnan(out[:, 2 * lanes]).all()


@pytest.mark.skipif(not _kernels._BOUNDSCHECK, reason="checked only under NUMBA_BOUNDSCHECK=1")
def test_lanewise_weights_past_the_end_fail_under_boundscheck(radix8_reading):
    rows, weights = np.ones((8, 4)), np.ones(50)
    radix8_reading(weights, 2, rows, np.empty_like(rows), 4)  # the last 48
    for start in (3, -1):
        with pytest.raises(IndexError, match="lanewise weights"):
            radix8_reading(weights, start, rows, np.empty_like(rows), 4)


@pytest.fixture(scope="module")
def transposes():
    """Jitted callers of :func:`_kernels._transpose` and of one 8 x 8 tile."""
    import numba

    move = _kernels._tile_moves[8]

    @numba.njit
    def transpose(source, s_row, s_col, target, t_row, t_col, n_rows, n_cols):
        _kernels._transpose(source, s_row, s_col, target, t_row, t_col, n_rows, n_cols)

    @numba.njit
    def tile(source, s_row, s_col, target, t_row, t_col):
        move(source, s_row, s_col, target, t_row, t_col)

    return transpose, tile


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    ("n_rows", "n_cols"), [(8, 8), (16, 24), (13, 9), (7, 20), (3, 3), (32, 48), (33, 17)]
)
def test_transpose_moves_tiles_and_edges(transposes, dtype, n_rows, n_cols):
    """Whole tiles (SIMD shuffles) and the edges land where NumPy's transpose puts them.

    A tile is 8 x 8 in float64 and 16 x 16 in float32, a cache line on a side,
    or 8 x 8 in float32 where the block is narrower. The offsets leave the rows
    off their cache lines, as windows of a block are; nothing outside the
    target's block is written.
    """
    transpose, _ = transposes
    rng = np.random.default_rng(n_rows * n_cols)
    source = rng.standard_normal((n_rows + 5, n_cols + 3)).astype(dtype)
    target = np.full((n_cols + 4, n_rows + 6), np.nan, dtype=dtype)
    transpose(source, 2, 1, target, 3, 5, n_rows, n_cols)
    expected = np.full_like(target, np.nan)
    expected[3 : 3 + n_cols, 5 : 5 + n_rows] = source[2 : 2 + n_rows, 1 : 1 + n_cols].T
    np.testing.assert_array_equal(target, expected)


@pytest.mark.skipif(not _kernels._BOUNDSCHECK, reason="checked only under NUMBA_BOUNDSCHECK=1")
def test_a_tile_past_the_edge_fails_under_boundscheck(transposes):
    _, tile = transposes
    source, target = np.zeros((8, 12)), np.zeros((12, 8))
    tile(source, 0, 4, target, 4, 0)  # the last whole tile
    with pytest.raises(IndexError, match="row view out of bounds"):
        tile(source, 1, 4, target, 4, 0)
    with pytest.raises(IndexError, match="row view out of bounds"):
        tile(source, 0, 4, target, 5, 0)


def split_every_vector(monkeypatch):
    """Send every vector of at least 16 rows through the parallel kernel."""
    from pydebut import operator

    monkeypatch.setattr(operator, "PARALLEL_VECTOR_SIZE", 16)
    monkeypatch.setattr(operator, "VECTOR_WORKER_FLOPS", 0)


def literal_or_unsigned(numba_type):
    """Whether a Numba argument type is a literal or an unsigned integer, or holds one."""
    from numba.core import types

    if isinstance(numba_type, types.BaseTuple):
        return any(literal_or_unsigned(member) for member in numba_type.types)
    if isinstance(numba_type, types.Literal):
        return True
    return isinstance(numba_type, types.Integer) and not numba_type.signed


def test_kernels_are_compiled_for_plain_int64_arguments_only(monkeypatch):
    """Every route of ``op.apply`` calls the kernels with ``int64`` offsets and indices.

    A constant ``0`` typed as a literal, or a ``prange`` index typed as
    unsigned, would compile a second copy of a kernel and everything it calls
    (it once doubled the compile time of every dtype). Every kernel that
    calls another is swapped for an uncached copy, so that compiling it types
    its calls afresh whatever the Numba cache holds; the kernels they call
    are loaded from the cache and record the signatures they are asked for.
    Complex data takes every route real data takes, and the split planes too.
    """
    import numba

    from pydebut import DeButOperator
    from pydebut.special import butterfly_chain

    kernels = {
        name: kernel
        for name, kernel in vars(_kernels).items()
        if isinstance(kernel, numba.core.registry.CPUDispatcher)
        and kernel.targetoptions.get("inline") != "always"  # inlined ones are typed in place
    }
    for name, kernel in kernels.items():
        if set(kernel.py_func.__code__.co_names) & set(kernels):
            options = {k: v for k, v in kernel.targetoptions.items() if k != "nopython"}
            monkeypatch.setattr(_kernels, name, numba.njit(**options)(kernel.py_func))
    split_every_vector(monkeypatch)
    monkeypatch.setattr(_batched, "MIN_WORKER_BYTES", 1)
    monkeypatch.setattr(_batched, "MIN_WORKER_FLOPS", 1)
    chain = Chain([(16, 32, 1, 2, 1), *butterfly_chain(32)])  # a general factor, then 2x2 groups
    dtype = np.complex128
    op = DeButOperator.random(chain, rng=0, dtype=dtype)
    rng = np.random.default_rng(0)
    threads = numba.get_num_threads()
    try:
        for n_threads in sorted({1, threads}):  # one thread, then parallel launches
            numba.set_num_threads(n_threads)
            for shape in [(32,), (32, 3), (32, 8)]:  # a vector, columns alone, a block
                x = random_array(rng, shape, dtype)
                assert_chain_close(op.apply(x), chain, op.weights, x)
    finally:
        numba.set_num_threads(threads)
    called = {"vector_2x2", "vector_dots", "lanes_general", "lanes_2x2_group"}
    assert called - {name for name, kernel in kernels.items() if kernel.signatures} == set()
    compiled_for = [  # the copies took the calls of the kernels they replace
        (name, signature)
        for name in kernels
        for signature in getattr(_kernels, name).signatures
        if any(literal_or_unsigned(argument) for argument in signature)
    ]
    assert compiled_for == [], "\n".join(f"{name}{signature}" for name, signature in compiled_for)


def test_long_vectors_run_in_parallel_parts(monkeypatch):
    from pydebut import DeButOperator

    split_every_vector(monkeypatch)
    chain = Chain([(32, 32, 2, 2, 16), (32, 64, 2, 4, 1), (64, 64, 2, 2, 1), (64, 16, 4, 1, 1)])
    op = DeButOperator.random(chain, rng=0)
    x = random_array(np.random.default_rng(1), 16, np.float64)
    assert_chain_close(op.apply(x), chain, op.weights, x)
    assert_chain_close(op @ x[:, None], chain, op.weights, x)


@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_a_vector_is_split_only_with_enough_work_per_thread(monkeypatch, dtype):
    import numba

    from pydebut import DeButOperator, operator
    from pydebut.special import butterfly_chain

    if numba.get_num_threads() < 2:
        pytest.skip("one Numba thread: vectors are never split")
    op = DeButOperator.random(butterfly_chain(64), rng=0, dtype=dtype)
    plan = op._plan(np.dtype(dtype), False)
    threads = numba.get_num_threads()
    flops = 2 * plan.weights.size * (4 if np.dtype(dtype).kind == "c" else 1)
    monkeypatch.setattr(operator, "VECTOR_WORKER_FLOPS", flops // threads)
    assert not operator._splits_vector(plan)  # 64 rows < PARALLEL_VECTOR_SIZE
    monkeypatch.setattr(operator, "PARALLEL_VECTOR_SIZE", 64)
    assert operator._splits_vector(plan)
    monkeypatch.setattr(operator, "VECTOR_WORKER_FLOPS", flops // threads + 1)
    assert not operator._splits_vector(plan)
    if np.dtype(dtype).kind == "f":  # a complex vector through real weights: two real ones
        assert operator._splits_vector(op._plan(np.dtype(np.complex128), False))
    numba.set_num_threads(1)
    try:
        monkeypatch.setattr(operator, "VECTOR_WORKER_FLOPS", 0)
        assert not operator._splits_vector(plan)  # one thread: nothing to split between
    finally:
        numba.set_num_threads(threads)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch", [(), (2,), (8,)])
def test_vectors_go_straight_to_the_kernel(monkeypatch, dtype, batch):
    """One vector, a few columns and a block skip the general path once the plan is built."""
    from pydebut import DeButOperator

    chain = PAPER_CHAINS["vgg16-conv1"]
    op = DeButOperator.random(chain, rng=0, dtype=dtype)
    x = random_array(np.random.default_rng(1), (chain.shape[1], *batch), dtype)
    assert_chain_close(op.apply(x), chain, op.weights, x)  # builds the plan on the general path

    def general_path(*args, **kwargs):
        raise AssertionError("took the general path")

    monkeypatch.setattr(op, "_apply_permuted", general_path)
    out = np.full((chain.shape[0], *batch), np.nan, dtype=dtype)
    assert op.apply(x, out=out) is out
    assert_chain_close(out, chain, op.weights, x)
    products = (op.matvec, op.dot) if batch == () else (op.matmat, op.dot)
    for result in (op.apply(x), op @ x, *(product(x) for product in products)):
        assert_chain_close(result, chain, op.weights, x)
    y = random_array(np.random.default_rng(2), (chain.shape[0], *batch), dtype)
    monkeypatch.undo()
    adjoint = op.rmatvec if batch == () else op.rmatmat
    assert_chain_close(adjoint(y), op.H.chain, op.H.weights, y)  # builds the adjoint plan
    monkeypatch.setattr(op, "_apply_permuted", general_path)
    assert_chain_close(adjoint(y), op.H.chain, op.H.weights, y)


def test_the_direct_call_takes_the_general_path_when_it_must():
    from pydebut import DeButOperator

    chain = Chain([(16, 16, 4, 4, 2)])  # one factor: its kernel reads x while writing out
    op = DeButOperator.random(chain, rng=0)
    rng = np.random.default_rng(1)
    x = rng.standard_normal(16)
    expected = op.toarray() @ x
    in_place = x.copy()
    assert op.apply(in_place, out=in_place) is in_place
    assert np.allclose(in_place, expected)
    two = DeButOperator.random([(16, 16, 2, 2, 4), (16, 16, 4, 4, 1)], rng=2)
    in_place = x.copy()  # the first factor reads x before the last writes out: no copy needed
    assert two.apply(in_place, out=in_place) is in_place
    assert np.allclose(in_place, two.toarray() @ x)
    strided = np.full((16, 2), np.nan)
    strided[:, 0] = x
    assert np.allclose(op.apply(strided[:, 0]), expected)
    assert np.allclose(op.apply(x.astype(np.float32)), expected, rtol=1e-5)
    assert np.allclose(op.apply(x.tolist()), expected)
    out = np.full((16, 2), np.nan)
    assert op.apply(x, out=out[:, 1]) is not None and np.allclose(out[:, 1], expected)
    assert np.isnan(out[:, 0]).all()
    permuted = op.with_permutations(row_perm=rng.permutation(16), col_perm=rng.permutation(16))
    out = np.empty(16)
    assert permuted.apply(x, out=out) is out
    assert np.allclose(out, permuted.toarray() @ x)


@pytest.mark.parametrize("batch", [2, 8])
def test_a_block_takes_the_general_path_when_it_must(batch):
    """A block in place, in another layout or dtype, or into a strided ``out``."""
    from pydebut import DeButOperator
    from pydebut.special import butterfly_chain

    op = DeButOperator.random(butterfly_chain(16), rng=0)
    dense = op.toarray()
    x = np.random.default_rng(1).standard_normal((16, batch))
    expected = dense @ x
    assert np.allclose(op.apply(x), expected)  # the direct path is set up
    in_place = x.copy()
    assert op.apply(in_place, out=in_place) is in_place
    assert np.allclose(in_place, expected)
    strided = np.repeat(x, 2, axis=1)[:, ::2]
    for data in (np.asfortranarray(x), x.astype(np.float32), strided, x.tolist()):
        assert np.allclose(op.apply(data), expected, rtol=1e-5)
        assert np.allclose(op @ np.asarray(data), expected, rtol=1e-5)
    out = np.full((16, 2 * batch), np.nan)
    assert op.apply(x, out=out[:, ::2]) is not None and np.allclose(out[:, ::2], expected)
    assert np.isnan(out[:, 1::2]).all()
    fortran = np.full((batch, 16), np.nan).T
    assert op.apply(x, out=fortran) is fortran and np.allclose(fortran, expected)
    assert np.allclose(op.apply(x[:, :1]), expected[:, :1])


def test_block_layouts_are_remembered_per_batch_and_follow_the_threads(monkeypatch):
    """A batch size's windows and workers are worked out once, the threads read on each call."""
    import numba

    from pydebut import DeButOperator
    from pydebut.special import butterfly_chain

    monkeypatch.setattr(_batched, "MIN_WORKER_FLOPS", 1)  # workers by the bytes rule alone
    monkeypatch.setattr(_batched, "KEEP_LAYOUTS", 3)
    op = DeButOperator.random(butterfly_chain(64), rng=0)
    rng = np.random.default_rng(0)
    threads = numba.get_num_threads()
    try:
        for n_threads in sorted({1, threads}):
            numba.set_num_threads(n_threads)
            for batch in (8, 16, 32, 64):
                x = random_array(rng, (64, batch), np.float64)
                assert_chain_close(op @ x, op.chain, op.weights, x)
                plan = op._plan(np.dtype(np.float64), False).batched[0]
                split = plan.layouts[batch]
                most = max(1, batch * 8 // _batched.MIN_WORKER_BYTES)
                assert (split.most_workers, split.n_workers) == (most, min(most, n_threads))
                assert -(-batch // split.width) >= split.n_workers  # a window for every worker
                assert _batched.layout(plan, batch) is split
                assert len(plan.layouts) <= _batched.KEEP_LAYOUTS
    finally:
        numba.set_num_threads(threads)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex64, np.complex128])
def test_split_plane_windows_narrow_on_tall_chains_for_several_windows(dtype):
    """Complex windows of a tall chain narrow to PLANES_WINDOW_BYTES over the largest
    dimension (a power of two from PLANES_MIN_LANE_BYTES) where a worker runs several
    windows of LANE_BYTES; a batch that one such window holds keeps it; real ones never."""
    from pydebut import DeButOperator
    from pydebut.special import butterfly_chain

    # a butterfly of n rows, and one 2x2 factor of 6144 rows (2 MiB / 6144 = 341 bytes)
    chains = {n: butterfly_chain(n) for n in (2**10, 2**11, 2**12, 2**13)}
    chains[6144] = [(6144, 6144, 2, 2, 1)]
    expected = {2**10: 1024, 2**11: 1024, 2**12: 512, 2**13: 256, 6144: 256}
    itemsize = np.dtype(dtype).itemsize
    widest = _batched.LANE_BYTES // itemsize
    for n, chain in chains.items():
        op = DeButOperator.random(chain, rng=0, dtype=dtype)
        kernels = op._plan(np.dtype(dtype), False)
        plan = _batched.make_batch_plan(kernels.specs, kernels.offsets, kernels.weights)
        narrow = expected[n] if np.dtype(dtype).kind == "c" else _batched.LANE_BYTES
        assert _batched.planes_lane_bytes(plan) == narrow
        for n_workers in (1, 2) if n <= 2**12 else (1,):  # 2 x 8192 rows narrow to keep
            one_each = _batched._new_layout(plan, n_workers * widest, n_workers, n_workers)
            assert one_each.width == widest
            several = _batched._new_layout(plan, n_workers * widest + 1, n_workers, n_workers)
            assert several.width * itemsize == narrow
        for batch in (widest, 3 * widest):
            x = random_array(np.random.default_rng(batch), (n, batch), dtype)
            assert_chain_close(op @ x, op.chain, op.weights, x)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex128])
def test_windows_are_as_wide_as_the_kept_work_buffers_allow(dtype, monkeypatch):
    """Work buffers fit in what a thread keeps; a window narrowed to fit is whole cache
    lines wide, and one line more would not fit."""
    import math

    from pydebut import DeButOperator, _workspace
    from pydebut._memory import ALIGN_BYTES
    from pydebut.special import butterfly_chain

    monkeypatch.setattr(_batched, "PLANES_WINDOW_BYTES", 2**40)  # complex as wide as real

    def work_bytes(plan, width, n_workers):
        part_rows = max(1, _batched.PART_BYTES // (width * plan.weights.itemsize))
        return n_workers * _kernels.work_rows(plan.specs, part_rows) * width * plan.weights.itemsize

    widest = _batched.LANE_BYTES // np.dtype(dtype).itemsize
    line = ALIGN_BYTES // np.finfo(dtype).dtype.itemsize  # columns of a cache line
    planes = 2 if np.dtype(dtype).kind == "c" else 1
    narrowed = 0
    for n in (4096, 2**14):
        op = DeButOperator.random(butterfly_chain(n), rng=0, dtype=dtype)
        kernels = op._plan(np.dtype(dtype), False)
        plan = _batched.make_batch_plan(kernels.specs, kernels.offsets, kernels.weights)
        for n_workers in (1, 2, 3):
            split = _batched._new_layout(plan, 2048, n_workers, n_workers)
            rows = _kernels.work_rows(plan.specs, split.part_rows)
            assert split.work_shape == (n_workers, rows, planes * split.width)
            assert split.work_dtype == np.finfo(dtype).dtype
            nbytes = math.prod(split.work_shape) * split.work_dtype.itemsize
            assert nbytes == work_bytes(plan, split.width, n_workers)
            assert _workspace.kept(nbytes)
            if split.width < widest:
                narrowed += 1
                assert split.width % line == 0
                assert not _workspace.kept(work_bytes(plan, split.width + line, n_workers))
            if n == 4096 and n_workers <= 2:  # two workers once took 127 float64 columns
                assert split.width == widest
    assert narrowed > 0


def test_the_direct_call_checks_its_input_before_any_work():
    from pydebut import DeButOperator

    op = DeButOperator.random([(4, 8, 1, 2, 4), (8, 8, 2, 2, 2)], rng=0)
    op.apply(np.ones(8))  # the direct path is set up
    with pytest.raises(ValueError, match=r"expected an array of shape \(8,\) or \(8, batch\)"):
        op.apply(np.ones(9))
    with pytest.raises(ValueError, match=r"array of shape \(9,\): expected \(8,\)"):
        op @ np.ones(9)
    with pytest.raises(TypeError, match="out has dtype complex128; the result has dtype float64"):
        op.apply(np.ones(8), out=np.empty(4, complex))
    with pytest.raises(ValueError, match=r"out must have shape \(4,\), got \(5,\)"):
        op.apply(np.ones(8), out=np.empty(5))
    with pytest.raises(TypeError, match="cannot apply a DeButOperator to an array of dtype"):
        op.apply(np.array(["a"] * 8))


@pytest.mark.parametrize("long_vectors", [False, True])
def test_four_threads_share_one_operator(monkeypatch, long_vectors):
    from concurrent.futures import ThreadPoolExecutor

    from pydebut import DeButOperator

    if long_vectors:  # every vector through the parallel kernel
        split_every_vector(monkeypatch)
    chain = PAPER_CHAINS["lenet-fc1"]
    op = DeButOperator.random(chain, rng=0)
    inputs = [random_array(np.random.default_rng(i), chain.shape[1], np.float64) for i in range(8)]
    outs = [np.full(chain.shape[0], np.nan) for _ in range(4)]

    def apply_many(worker):
        results = []
        for round_ in range(25):
            x = inputs[(worker + round_) % len(inputs)]
            results.append((x, op.apply(x, out=outs[worker]).copy()))
            results.append((x, op @ x))
        return results

    with ThreadPoolExecutor(4) as pool:
        for results in pool.map(apply_many, range(4)):
            for x, y in results:
                assert_chain_close(y, chain, op.weights, x)


def test_threads_applying_blocks_at_once_each_get_their_own_work_buffers():
    # A block on one worker runs without the launch lock: threads sharing one work buffer
    # would overwrite each other's intermediate rows (15 of 120 products came out wrong).
    # The test above applies vectors (no work buffer) too short for threads to overlap.
    from concurrent.futures import ThreadPoolExecutor

    import numba

    from pydebut import DeButOperator
    from pydebut.special import butterfly_chain

    op = DeButOperator.random(butterfly_chain(4096), rng=0)  # about 2 ms a block of 64
    inputs = [np.random.default_rng(i).standard_normal((4096, 64)) for i in range(4)]
    expected = [op @ x for x in inputs]  # in one thread

    def apply_many(worker):
        numba.set_num_threads(1)  # in this thread: one worker, no parallel launch, no lock
        return [
            np.array_equal(op.apply(inputs[(worker + i) % 4]), expected[(worker + i) % 4])
            for i in range(30)
        ]

    with ThreadPoolExecutor(4) as pool:
        agree = [same for results in pool.map(apply_many, range(4)) for same in results]
    assert all(agree), f"{agree.count(False)} of {len(agree)} products differ"


def test_every_kernel_releases_the_gil():
    # holding it, threads sharing an operator would run its products one at a time
    import numba

    kernels = {
        name: value
        for name, value in vars(_kernels).items()
        if isinstance(value, numba.core.registry.CPUDispatcher)
    }
    assert {"apply_chain_vector", "apply_chain_matrix"} <= kernels.keys()
    assert [name for name, k in kernels.items() if not k.targetoptions.get("nogil")] == []


def test_apply_names_what_is_wrong_with_out():
    from pydebut import DeButOperator

    op = DeButOperator.random([(4, 8, 1, 2, 4), (8, 8, 2, 2, 2)], rng=0)
    x = np.ones((8, 3))
    with pytest.raises(TypeError, match="out has dtype float32; the result has dtype float64"):
        op.apply(x, out=np.empty((4, 3), np.float32))
    with pytest.raises(ValueError, match=r"out must have shape \(4, 3\), got \(4, 2\)"):
        op.apply(x, out=np.empty((4, 2)))
    read_only = np.empty((4, 3))
    read_only.flags.writeable = False
    with pytest.raises(ValueError, match="out is read-only"):
        op.apply(x, out=read_only)
    fortran = np.full((3, 4), np.nan).T
    assert op.apply(x, out=fortran) is fortran
    assert_chain_close(fortran, op.chain, op.weights, x)
    with pytest.raises(TypeError, match="must be a NumPy array"):
        op.apply(x, out=[0.0] * 4)
    with pytest.raises(
        ValueError, match=r"dimension mismatch: expected an array of shape \(8,\) or \(8, batch\)"
    ):
        op.apply(np.ones(4))


def test_workspace_hands_out_its_last_view_again(monkeypatch):
    """A repeated request gets the same view, a new shape or dtype a new one, a large one
    an array of its own; views always fit in the kept buffer and start on a cache line."""
    from pydebut import _workspace
    from pydebut._memory import ALIGN_BYTES

    monkeypatch.setattr(_workspace, "KEEP_BYTES", 2**16)
    space = _workspace.Workspace()
    first = space.get((2, 8, 16), np.dtype(np.float64))
    assert space.get((2, 8, 16), np.dtype(np.float64)) is first
    assert np.shares_memory(first, space.buffer)
    other = space.get((2, 8, 16), np.dtype(np.float32))
    assert other is not first and other.dtype == np.float32 and other.shape == (2, 8, 16)
    wider = space.get((4, 64, 16), np.dtype(np.float64))
    assert wider.shape == (4, 64, 16) and np.shares_memory(wider, space.buffer)
    again = space.get((2, 8, 16), np.dtype(np.float64))  # after the buffer grew: no stale view
    assert np.shares_memory(again, space.buffer) and not np.shares_memory(again, first)
    large = space.get((1, 2**13), np.dtype(np.float64))  # 64 KiB and the alignment: too large
    assert not np.shares_memory(large, space.buffer) and space.nbytes <= 2**16
    assert space.get((1, 2**13), np.dtype(np.float64)) is not large
    for view in (first, other, wider, again, large):
        assert view.ctypes.data % ALIGN_BYTES == 0
        assert view.flags.c_contiguous and view.flags.writeable
    assert space.get((4, 4, 16), np.dtype(np.float64)).shape == (4, 4, 16)  # first's size


def test_workspace_grows_for_a_request_within_the_alignment_slack():
    # a request up to 64 bytes larger than the last found too little room past the
    # buffer's first cache line ("cannot reshape"), wherever that line fell
    from pydebut import _workspace
    from pydebut._memory import ALIGN_BYTES

    for n in range(8, 80, 8):
        space = _workspace.Workspace()
        space.get((n,), np.dtype(np.float64))
        for grown in range(n + 1, n + 9):
            view = space.get((grown,), np.dtype(np.float64))
            assert view.shape == (grown,) and view.ctypes.data % ALIGN_BYTES == 0


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex128, np.int8, np.bool_])
@pytest.mark.parametrize("shape", [0, 5, (3, 7), (0, 4), (4096, 64), (2, 3, 5)])
def test_aligned_empty_starts_on_a_cache_line(shape, dtype):
    from pydebut import aligned_empty

    array = aligned_empty(shape, dtype)
    assert array.shape == ((shape,) if isinstance(shape, int) else shape)
    assert array.dtype == dtype and array.flags.c_contiguous and array.flags.writeable
    assert array.size == 0 or array.ctypes.data % 64 == 0  # an empty array has no data
    array[...] = 1
    assert np.all(array == 1)


def test_aligned_empty_refuses_what_it_cannot_make():
    from pydebut import aligned_empty

    with pytest.raises(ValueError, match="negative dimensions are not allowed, got shape"):
        aligned_empty((4, -1))
    with pytest.raises(TypeError, match="holds Python objects; use np.empty"):
        aligned_empty(4, object)
    with pytest.raises(TypeError, match="shape must be an int or a tuple of ints, got float"):
        aligned_empty(2.5)
    with pytest.raises(TypeError, match="shape must be an int or a tuple of ints, got tuple"):
        aligned_empty((2, 2.0))
    # Before: True made shape (1,), where np.empty refuses it
    for shape in (True, (2, np.True_)):
        with pytest.raises(TypeError, match="shape must be an int or a tuple of ints"):
            aligned_empty(shape)


@pytest.mark.parametrize("dtype", ["V0", "S0", "U0"])
def test_aligned_empty_of_a_dtype_without_bytes_is_numpys(dtype):
    # Before: NumPy's "cannot reshape array of size 0" or "changing to a smaller dtype"
    from pydebut import aligned_empty

    array, expected = aligned_empty((3, 2), dtype), np.empty((3, 2), dtype)
    assert (array.shape, array.dtype) == (expected.shape, expected.dtype)


def test_aligned_empty_of_a_subarray_dtype_appends_its_shape():
    # NumPy's internal "changing the dtype to a subarray type" error, where np.empty gives (3, 2)
    from pydebut import aligned_empty

    array = aligned_empty(3, ("f8", (2,)))
    expected = np.empty(3, ("f8", (2,)))
    assert (array.shape, array.dtype) == (expected.shape, expected.dtype) == ((3, 2), np.float64)
    assert array.ctypes.data % 64 == 0


def test_blocks_on_cache_lines_give_the_same_products():
    from pydebut import DeButOperator, aligned_empty
    from pydebut.special import butterfly_chain

    op = DeButOperator.random(butterfly_chain(64), rng=0)
    x = aligned_empty((64, 48))
    x[...] = np.random.default_rng(0).standard_normal(x.shape)
    out = aligned_empty((64, 48))
    assert op.apply(x, out) is out
    np.testing.assert_array_equal(out, op @ x.copy())
    assert_chain_close(out, op.chain, op.weights, x)


def test_work_buffers_kept_between_calls_are_bounded(monkeypatch):
    import gc
    import tracemalloc

    from pydebut import DeButOperator, _workspace
    from pydebut.special import butterfly_chain

    monkeypatch.setattr(_workspace, "KEEP_BYTES", 2**20)
    monkeypatch.setattr(_workspace, "workspace", _workspace.Workspace())
    op = DeButOperator.random(butterfly_chain(1024), rng=0)
    x = np.ones((1024, 64))
    op @ x  # compile before measuring
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        big = DeButOperator.random(butterfly_chain(8192), rng=0)
        y = big @ np.ones((8192, 64))  # 2 buffers of 8192 x 8+ float64 per worker: > 1 MiB
        del big, y
        gc.collect()
        left = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert _workspace.workspace.nbytes <= 2**20
    assert left < 2**20, f"{left} bytes left after the operator and its result were deleted"
    small = op @ x
    assert _workspace.workspace.nbytes > 0, "small work buffers are kept for the next call"
    assert_chain_close(small, op.chain, op.weights, x)


def test_a_remembered_layout_follows_a_change_of_threads(monkeypatch):
    """numba.set_num_threads between two calls of one batch size is obeyed."""
    import numba

    from pydebut import DeButOperator
    from pydebut.special import butterfly_chain

    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs two Numba threads")
    monkeypatch.setattr(_batched, "MIN_WORKER_FLOPS", 1)  # workers by the bytes rule alone
    op = DeButOperator.random(butterfly_chain(64), rng=0)
    x = np.random.default_rng(0).standard_normal((64, 64))
    threads = numba.get_num_threads()
    try:
        for n_threads in (1, 2, 1):
            numba.set_num_threads(n_threads)
            assert_chain_close(op @ x, op.chain, op.weights, x)
            plan = op._plan(np.dtype(np.float64), False).batched[0]
            assert plan.layouts[64].n_workers == n_threads
    finally:
        numba.set_num_threads(threads)
