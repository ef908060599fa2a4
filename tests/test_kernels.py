"""Each Numba kernel against its NumPy twin in ``pydebut._reference``.

CI runs this file once more with ``NUMBA_BOUNDSCHECK=1``, so any index the
kernels compute out of bounds fails loudly.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pydebut import _kernels, _reference
from pydebut.operator import _make_plan
from pydebut.testing import chains, dense_chains

DTYPES = [np.float32, np.float64, np.complex64, np.complex128]


def weights_for(chain, rng, dtype):
    return [rng.standard_normal(f.weight_shape).astype(dtype) for f in chain]


def in_window(block, s0, total, dtype):
    """Embed ``block`` (rows, lanes) at column ``s0`` of a NaN-filled (rows, total) array."""
    wide = np.full((block.shape[0], total), np.nan, dtype=dtype)
    wide[:, s0 : s0 + block.shape[1]] = block
    return wide


FIELDS = [(8, 8, 2, 2, 4), (8, 8, 2, 2, 1), (12, 8, 3, 2, 2), (6, 12, 1, 2, 3), (5, 5, 5, 5, 1)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("fields", FIELDS)
def test_vector_kernels_match_reference(fields, dtype):
    from pydebut import FactorSpec

    spec = FactorSpec(*fields)
    rng = np.random.default_rng(0)
    w = rng.standard_normal(spec.weight_shape).astype(dtype)
    x = rng.standard_normal(spec.q).astype(dtype)
    pad = 3  # weights start at an offset, as inside a chain's flat buffer
    flat = np.concatenate([np.zeros(pad, dtype), w.ravel()])
    expected = _reference.apply_factor(spec, w, x[:, None])[:, 0]
    # vector_factor picks vector_2x2 for r = s = 2; vector_general must agree on every factor
    for kernel in (_kernels.vector_factor, _kernels.vector_general):
        out = np.full(spec.p, np.nan, dtype=dtype)
        kernel(spec.p, spec.r, spec.s, spec.t, flat, pad, x, out)
        assert np.allclose(out, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("lanes", [1, 2, 5, 16])
@pytest.mark.parametrize("fields", FIELDS)
def test_lane_kernels_match_reference_inside_their_window(fields, lanes, dtype):
    from pydebut import FactorSpec

    spec = FactorSpec(*fields)
    rng = np.random.default_rng(1)
    w = rng.standard_normal(spec.weight_shape).astype(dtype)
    x = rng.standard_normal((spec.q, lanes)).astype(dtype)
    flat = np.concatenate([np.zeros(2, dtype), w.ravel()])
    expected = _reference.apply_factor(spec, w, x)
    src = in_window(x, 3, lanes + 5, dtype)
    general = spec.r != 2 or spec.s != 2
    for kernel in [_kernels.lanes_general] + ([] if general else [_kernels.lanes_2x2]):
        dst = np.full((spec.p, lanes + 4), np.nan, dtype=dtype)
        if kernel is _kernels.lanes_2x2:
            kernel(spec.p, spec.t, flat, 2, src, 3, dst, 1, lanes)
        else:
            kernel(spec.p, spec.r, spec.s, spec.t, flat, 2, src, 3, dst, 1, lanes)
        assert np.allclose(dst[:, 1 : 1 + lanes], expected, rtol=1e-5, atol=1e-5)
        assert np.isnan(dst[:, :1]).all() and np.isnan(dst[:, 1 + lanes :]).all()


@given(
    st.one_of(chains(max_dim=36, max_factors=5), dense_chains(max_dim=32)),
    st.sampled_from(DTYPES),
    st.integers(1, 40),
    st.integers(1, 4),
    st.integers(1, 20),
)
def test_chain_kernels_match_reference(chain, dtype, batch, n_workers, width):
    rng = np.random.default_rng(batch)
    weights = weights_for(chain, rng, dtype)
    applied = list(reversed(chain.factors))
    plan = _make_plan(applied, weights[::-1], np.dtype(dtype))
    m, n = chain.shape
    x = rng.standard_normal((n, batch)).astype(dtype)
    expected = _reference.apply_chain(chain, weights, x)

    out = np.empty(m, dtype=dtype)
    work = np.empty((2, plan.max_dim), dtype=dtype)
    _kernels.apply_chain_vector(plan.specs, plan.offsets, plan.weights, x[:, 0].copy(), out, work)
    assert np.allclose(out, expected[:, 0], rtol=1e-4, atol=1e-4)

    for paired in (plan.paired, np.zeros_like(plan.paired)):
        out = np.empty((m, batch), dtype=dtype)
        work = np.empty((n_workers, 2, plan.max_dim, width), dtype=dtype)
        _kernels.apply_chain_matrix(
            plan.specs, plan.offsets, paired, plan.weights, x, out, work, width
        )
        assert np.allclose(out, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("width", [1, 3, 16])
@pytest.mark.parametrize(("p", "t_fine"), [(4, 1), (16, 2), (16, 4), (32, 1)])
@pytest.mark.parametrize("coarse_first", [False, True])
def test_radix4_pair_matches_two_reference_factors(p, t_fine, coarse_first, width, dtype):
    from pydebut import FactorSpec

    fine = FactorSpec(p, p, 2, 2, t_fine)
    coarse = FactorSpec(p, p, 2, 2, 2 * t_fine)
    first, second = (coarse, fine) if coarse_first else (fine, coarse)
    rng = np.random.default_rng(p + t_fine)
    w_first, w_second = (rng.standard_normal(f.weight_shape).astype(dtype) for f in (first, second))
    x = rng.standard_normal((p, width)).astype(dtype)
    expected = _reference.apply_factor(second, w_second, _reference.apply_factor(first, w_first, x))
    flat = np.concatenate([w_first.ravel(), w_second.ravel()])
    w_fine, w_coarse = (w_first.size, 0) if coarse_first else (0, w_first.size)
    src = in_window(x, 2, width + 3, dtype)
    out = np.full((p, width + 1), np.nan, dtype=dtype)
    _kernels.lanes_pair_2x2(p, t_fine, flat, w_fine, w_coarse, coarse_first, src, 2, out, 1, width)
    assert np.allclose(out[:, 1:], expected, rtol=1e-4, atol=1e-4)
    assert np.isnan(out[:, 0]).all()


def test_plans_pair_radix4_steps_greedily():
    from pydebut import Chain
    from pydebut.operator import _pair_radix4_steps
    from pydebut.special import butterfly_chain

    applied = list(reversed(butterfly_chain(32).factors))  # t = 1, 2, 4, 8, 16
    assert _pair_radix4_steps(applied).tolist() == [True, False, True, False, False]
    adjoint = [f.T for f in butterfly_chain(32)]  # t = 16, 8, 4, 2, 1
    assert _pair_radix4_steps(adjoint).tolist() == [True, False, True, False, False]
    mixed = list(reversed(Chain([(8, 8, 2, 2, 4), (8, 16, 2, 4, 2), (16, 16, 2, 2, 1)]).factors))
    assert not _pair_radix4_steps(mixed).any()


def test_adjoint_reference_matches_dense():
    from pydebut import Chain

    chain = Chain.from_factorizations([2, 3], [3, 2])
    rng = np.random.default_rng(0)
    weights = [w + 1j * w[::-1] for w in weights_for(chain, rng, np.float64)]
    dense = _reference.chain_to_dense(chain, weights)
    y = rng.standard_normal((6, 4))
    assert np.allclose(_reference.apply_chain_adjoint(chain, weights, y), dense.conj().T @ y)
