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
- the chains drawn exercise every batched path: radix-4 pairs with the fine
  or the coarse factor first and in the last pass, 2x2 factors with
  ``t`` in {1, 2, 3, 8, 16}, general factors around them, and column windows
  that do not divide the batch.
"""

import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pydebut import Chain, FactorSpec, _kernels, _reference
from pydebut.operator import _make_plan, _pair_radix4_steps
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


def assert_chain_close(out, chain, weights, x):
    """``out`` equals ``F_1 ... F_L x`` to a few ulps of ``out``'s dtype per multiply-add.

    The reference runs in double precision on the inputs as given (already
    rounded to the kernel's dtype); the allowed error of each entry is
    ``4 eps (sum_l s_l + L) (|F_1| ... |F_L| |x|)``.
    """
    dtype = out.dtype
    double = wide(dtype)
    x = x.reshape(x.shape[0], -1)
    exact = _reference.apply_chain(chain, [w.astype(double) for w in weights], x.astype(double))
    magnitude = _reference.apply_chain(chain, [np.abs(w) for w in weights], np.abs(x))
    depth = sum(f.s for f in chain) + len(chain)
    allowed = 4 * np.finfo(dtype).eps * depth * magnitude.reshape(exact.shape)
    error = np.abs(out.reshape(exact.shape).astype(double) - exact)
    bad = ~(error <= allowed)  # NaN in out counts as bad
    assert not bad.any(), (
        f"{bad.sum()} of {bad.size} entries wrong for {chain!r} in {np.dtype(dtype).name}; "
        f"first at {np.argwhere(bad)[0].tolist()}: error {error[bad][0]:.3g} "
        f"allowed {allowed[bad][0]:.3g}"
    )


def in_window(block, s0, total, dtype):
    """Embed ``block`` (rows, lanes) at column ``s0`` of a NaN-filled (rows, total) array."""
    wide_block = np.full((block.shape[0], total), np.nan, dtype=dtype)
    wide_block[:, s0 : s0 + block.shape[1]] = block
    return wide_block


def chain_plan(chain, weights, dtype):
    """The forward plan of ``chain`` (factors in application order), as the operator builds it."""
    return _make_plan(list(reversed(chain.factors)), weights[::-1], np.dtype(dtype))


def run_vector(plan, x, dtype):
    out = np.full(plan.specs[-1, 0], np.nan, dtype=dtype)
    work = np.full((2, plan.max_dim), np.nan, dtype=dtype)
    _kernels.apply_chain_vector(plan.specs, plan.offsets, plan.weights, x, out, work)
    return out


def run_matrix(plan, x, n_workers, width, paired=None):
    """The batched kernel on ``x`` with NaN-filled output and work buffers."""
    paired = plan.paired if paired is None else paired
    out = np.full((plan.specs[-1, 0], x.shape[1]), np.nan, dtype=x.dtype)
    work = np.full((n_workers, 2, plan.max_dim, width), np.nan, dtype=x.dtype)
    _kernels.apply_chain_matrix(plan.specs, plan.offsets, paired, plan.weights, x, out, work, width)
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


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("lanes", [1, 2, 5, 16, 19])
@pytest.mark.parametrize("fields", FIELDS)
def test_lane_kernels_match_reference_inside_their_window(fields, lanes, dtype):
    spec = FactorSpec(*fields)
    rng = np.random.default_rng(1)
    w = random_array(rng, spec.weight_shape, dtype)
    x = random_array(rng, (spec.q, lanes), dtype)
    flat = np.concatenate([np.zeros(2, dtype), w.ravel()])
    src = in_window(x, 3, lanes + 5, dtype)
    general = spec.r != 2 or spec.s != 2
    for kernel in [_kernels.lanes_general] + ([] if general else [_kernels.lanes_2x2]):
        dst = np.full((spec.p, lanes + 4), np.nan, dtype=dtype)
        if kernel is _kernels.lanes_2x2:
            kernel(spec.p, spec.t, flat, 2, src, 3, dst, 1, lanes)
        else:
            kernel(spec.p, spec.r, spec.s, spec.t, flat, 2, src, 3, dst, 1, lanes)
        assert_chain_close(dst[:, 1 : 1 + lanes], Chain([spec]), [w], x)
        assert np.isnan(dst[:, :1]).all() and np.isnan(dst[:, 1 + lanes :]).all()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("width", [1, 3, 16, 17])
@pytest.mark.parametrize(("p", "t_fine"), [(4, 1), (16, 2), (24, 3), (16, 4), (32, 1), (64, 8)])
@pytest.mark.parametrize("coarse_first", [False, True])
def test_radix4_pair_matches_two_reference_factors(p, t_fine, coarse_first, width, dtype):
    fine = FactorSpec(p, p, 2, 2, t_fine)
    coarse = FactorSpec(p, p, 2, 2, 2 * t_fine)
    first, second = (coarse, fine) if coarse_first else (fine, coarse)
    rng = np.random.default_rng(p + t_fine)
    w_first, w_second = (random_array(rng, f.weight_shape, dtype) for f in (first, second))
    x = random_array(rng, (p, width), dtype)
    flat = np.concatenate([w_first.ravel(), w_second.ravel()])
    w_fine, w_coarse = (w_first.size, 0) if coarse_first else (0, w_first.size)
    src = in_window(x, 2, width + 3, dtype)
    out = np.full((p, width + 2), np.nan, dtype=dtype)
    _kernels.lanes_pair_2x2(p, t_fine, flat, w_fine, w_coarse, coarse_first, src, 2, out, 1, width)
    assert_chain_close(out[:, 1 : 1 + width], Chain([second, first]), [w_second, w_first], x)
    assert np.isnan(out[:, 0]).all() and np.isnan(out[:, -1]).all()


# --- whole chains -------------------------------------------------------------------


def butterfly_steps(p, ts):
    """Square 2x2 factors of size ``p`` with the given ``t`` in application order, as a chain."""
    return Chain([FactorSpec(p, p, 2, 2, t) for t in reversed(ts)])


# application-order t sequences and the pairs the plan must form
PAIRED_CASES = {
    "fine first": (16, [1, 2], [True, False]),
    "coarse first": (16, [4, 2], [True, False]),
    "pair in the last pass": (32, [8, 1, 2], [False, True, False]),
    "coarse first, last pass": (48, [3, 12, 6], [False, True, False]),
    "two pairs and a single": (64, [1, 2, 8, 4, 16], [True, False, True, False, False]),
    "t = 3, 8, 2, 16 unpaired": (96, [3, 8, 2, 16], [False, False, False, False]),
}


@pytest.mark.parametrize("case", list(PAIRED_CASES))
@pytest.mark.parametrize("dtype", DTYPES)
def test_chains_with_radix4_pairs_match_reference(case, dtype):
    p, ts, pairs = PAIRED_CASES[case]
    chain = butterfly_steps(p, ts)
    rng = np.random.default_rng(len(ts))
    weights = weights_for(chain, rng, dtype)
    plan = chain_plan(chain, weights, dtype)
    assert plan.paired.tolist() == pairs
    for batch, n_workers, width in [(1, 1, 1), (7, 2, 3), (37, 3, 8), (64, 2, 32)]:
        x = random_array(rng, (p, batch), dtype)
        assert_chain_close(run_matrix(plan, x, n_workers, width), chain, weights, x)
        assert_chain_close(
            run_matrix(plan, x, n_workers, width, np.zeros_like(plan.paired)), chain, weights, x
        )
    x = random_array(rng, p, dtype)
    assert_chain_close(run_vector(plan, x, dtype), chain, weights, x)


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
)
def test_chain_kernels_match_reference(chain, dtype, batch, n_workers, width):
    rng = np.random.default_rng(batch)
    weights = weights_for(chain, rng, dtype)
    plan = chain_plan(chain, weights, dtype)
    x = random_array(rng, (chain.shape[1], batch), dtype)

    assert_chain_close(run_vector(plan, x[:, 0].copy(), dtype), chain, weights, x[:, :1])
    for paired in (plan.paired, np.zeros_like(plan.paired)):
        assert_chain_close(run_matrix(plan, x, n_workers, width, paired), chain, weights, x)


def test_plans_pair_radix4_steps_greedily():
    from pydebut.special import butterfly_chain

    applied = list(reversed(butterfly_chain(32).factors))  # t = 1, 2, 4, 8, 16
    assert _pair_radix4_steps(applied).tolist() == [True, False, True, False, False]
    adjoint = [f.T for f in butterfly_chain(32)]  # t = 16, 8, 4, 2, 1
    assert _pair_radix4_steps(adjoint).tolist() == [True, False, True, False, False]
    mixed = list(reversed(Chain([(8, 8, 2, 2, 4), (8, 16, 2, 4, 2), (16, 16, 2, 2, 1)]).factors))
    assert not _pair_radix4_steps(mixed).any()
    apart = [FactorSpec(16, 16, 2, 2, t) for t in (1, 4, 2, 8)]  # t differ by 4, 2, 4
    assert _pair_radix4_steps(apart).tolist() == [False, True, False, False]


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


def test_uncacheable_kernels_fall_back_with_a_warning(monkeypatch):
    calls = []

    def fake_njit(**options):
        calls.append(options)
        if options.get("cache"):
            raise RuntimeError("cannot cache function: no locator available")
        return lambda function: function

    monkeypatch.setattr(_kernels.numba, "njit", fake_njit)
    monkeypatch.setattr(_kernels, "_cache_warning_issued", False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        compiled = _kernels._jit(parallel=True)(len)
        _kernels._jit(parallel=True)(abs)
    assert compiled is len
    assert len(caught) == 1
    assert (
        calls
        == [
            {"cache": True, "nogil": True, "parallel": True},
            {"cache": False, "nogil": True, "parallel": True},
        ]
        * 2
    )
    assert "cannot cache compiled kernels" in str(caught[0].message)
