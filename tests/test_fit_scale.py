"""Fitting is scale-invariant and reports the true error, for both methods and every init.

Fitting ``c * D`` must give ``c`` times the fit of ``D`` for any finite scale the
dtype holds (exactly for powers of two: both fits then solve the same normalised
problem), and ``FitResult.error`` must equal the error measured on the operator.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.linalg import hadamard

from pydebut import Chain, DeButOperator, approximate, fit_als, fit_hierarchical, hierarchy_ranks
from pydebut.fit import _common as fit_common

from .example_counts import examples
from .fit_cases import COUPLED, random_target

SQUARE = Chain.from_factorizations([2, 2, 2], [2, 2, 2])
TALL = Chain([(12, 6, 2, 1, 3), (6, 6, 3, 3, 1)])
# Chains with free ends: k_1 > 1 or t_L > 1 (block-diagonal or diagonal-block products).
FREE_ENDS = [
    Chain([(8, 8, 2, 2, 2), (8, 8, 2, 2, 1)]),  # k_1 = 2
    Chain([(8, 8, 2, 2, 4), (8, 8, 2, 2, 2)]),  # t_L = 2
    Chain([(8, 8, 2, 2, 2), (8, 8, 2, 2, 2)]),  # both, through a rank-2 link
    Chain([(12, 12, 3, 3, 2), (12, 12, 2, 2, 1)]),  # k_1 = 2, radix 3 then 2
]
METHODS = ["als-auto", "als-random", "als-hierarchical", "als-operator", "ltr", "balanced"]
# Binary exponents k with 2**k times the target's entries (between 1e-3 and 4 in absolute
# value) normal numbers of the dtype: no subnormal rounding, so powers of two are exact.
EXPONENTS = {np.float32: 100, np.float64: 1000}


def fit(method: str, target: np.ndarray, chain: Chain, init_scale: float = 1.0):
    if method in ("ltr", "balanced"):
        order = "left-to-right" if method == "ltr" else "balanced"
        return fit_hierarchical(target, chain, order=order)
    init = method.removeprefix("als-")
    if init == "operator":
        start = DeButOperator.random(chain, rng=3, dtype=target.dtype)
        first, *rest = start.weights
        init = DeButOperator(chain, [first * target.dtype.type(init_scale), *rest])
    return fit_als(target, chain, n_sweeps=2, init=init, rng=0)


def measured_error(result, target: np.ndarray, scale: float) -> float:
    """``||D - D_hat|| / ||D||`` in float64, on ``D / scale`` so no norm overflows."""
    double = np.result_type(target.dtype, np.float64)
    reference = target.astype(double) / scale
    approx = result.operator.toarray().astype(double) / scale
    return float(np.linalg.norm(approx - reference) / np.linalg.norm(reference))


def assert_reports_true_error(result, target: np.ndarray, scale: float = 1.0) -> None:
    measured = measured_error(result, target, scale)
    eps = np.finfo(target.real.dtype).eps
    assert abs(result.error - measured) <= 1e-5 * measured + 100 * eps, (result.error, measured)


@settings(max_examples=examples(30), deadline=None)
@given(
    dtype=st.sampled_from([np.float32, np.float64]),
    fraction=st.floats(-1, 1),
    mantissa=st.sampled_from([1.0, 1.0, 0.7, 1.37]),
    method=st.sampled_from(METHODS),
)
def test_fitting_c_times_the_target_gives_c_times_the_fit(dtype, fraction, mantissa, method):
    exponent = round(fraction * EXPONENTS[dtype])
    scale = mantissa * 2.0**exponent
    target = random_target(SQUARE.shape, np.random.default_rng(1), dtype)
    scaled = (target.astype(np.float64) * scale).astype(dtype)
    base, result = fit(method, target, SQUARE), fit(method, scaled, SQUARE, scale)
    assert all(np.isfinite(w).all() for w in result.operator.weights)
    assert result.operator.dtype == base.operator.dtype == dtype
    expected = base.operator.toarray().astype(np.float64)
    got = result.operator.toarray().astype(np.float64) / scale
    if mantissa == 1.0:  # the very same normalised problem: equal to the last bit
        np.testing.assert_array_equal(got, expected)
        assert result.errors == base.errors
    else:
        rtol = 1e-3 if dtype == np.float32 else 1e-9
        np.testing.assert_allclose(got, expected, rtol=rtol, atol=rtol * np.abs(expected).max())
        np.testing.assert_allclose(result.errors, base.errors, rtol=rtol)
    assert_reports_true_error(result, scaled, scale)


@pytest.mark.parametrize(
    ("scale", "dtype", "method"),
    [
        (1e-20, np.float32, "als-auto"),  # was a zero operator (errors 0.534 then 1.0)
        (1e200, np.float64, "als-random"),  # was NaN errors and zero weights
        (1e-170, np.float64, "als-auto"),  # reported error 0, true error 1.0
        (1e-170, np.float64, "ltr"),
        (1e200, np.float64, "als-auto"),  # blamed factor weights after all the work
        (1e-300, np.float64, "balanced"),
        (3e37, np.float32, "als-random"),
    ],
)
def test_extreme_scales_of_the_issue(scale, dtype, method):
    target = random_target(SQUARE.shape, np.random.default_rng(2))
    scaled = (target * scale).astype(dtype)
    base = fit(method, target.astype(dtype), SQUARE)
    result = fit(method, scaled, SQUARE, scale)
    assert 0.1 < result.error < 1
    assert result.error == pytest.approx(base.error, rel=1e-3)
    assert_reports_true_error(result, scaled, scale)


@pytest.mark.parametrize(
    ("dtype", "method", "chain"),
    [
        (np.float64, "als-random", Chain.from_factorizations([2, 4], [2, 4])),  # 16 inf entries
        (np.complex128, "ltr", Chain.from_factorizations([4, 4], [4, 4])),  # 128 inf entries
    ],
)
def test_a_target_of_the_largest_float_is_fitted_by_a_finite_operator(dtype, method, chain):
    # the fit of the target scaled to [0.5, 1) rounds a hair above 1 in places, which
    # scaled back was infinity while the error reported was 1e-16
    largest = np.finfo(dtype).max
    target = np.full(chain.shape, largest, dtype=dtype) * (1j if dtype == np.complex128 else 1)
    result = fit(method, target, chain)
    assert np.isfinite(result.operator.toarray()).all()
    assert result.error < 1e-15
    assert_reports_true_error(result, target, float(largest))


def test_approximate_fits_a_target_of_the_largest_float_by_a_finite_operator():
    target = hadamard(16) * np.finfo(np.float64).max  # 3 entries of its fit were infinite
    result = approximate(target, 40, rng=0)
    assert np.isfinite(result.operator.toarray()).all()
    assert_reports_true_error(result, target, np.finfo(np.float64).max)


@pytest.mark.parametrize("panel", [None, 24], ids=["whole", "column by column"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_fit_whose_sums_overflow_at_the_largest_float_is_shrunk_until_it_evaluates(
    dtype, panel, monkeypatch
):
    # docs/fitting.rst's coupled chain: its factors' partial products cancel, and scaled
    # back to a target of largest entry 0.99 times the largest float, the operator's
    # product held 156 infinities or NaNs in 192 entries while the error reported was
    # 9e-10 (float64). The product checked a panel of columns (rows) at a time must see
    # every panel.
    if panel is not None:
        monkeypatch.setattr(fit_common, "PRODUCT_PANEL", panel)
    chain = Chain([(24, 24, 8, 8, 1), (24, 16, 12, 8, 1), (16, 24, 8, 12, 1), (24, 8, 24, 8, 1)])
    noise = np.random.default_rng(4).standard_normal(chain.shape)
    largest = np.finfo(dtype).max * 0.99
    target = (noise / np.abs(noise).max() * largest).astype(dtype)
    result = fit_als(target, chain, n_sweeps=4, rng=0)
    m, n = chain.shape
    columns = result.operator @ np.eye(n, dtype=dtype)
    rows = result.operator.H @ np.eye(m, dtype=dtype)
    assert np.isfinite(columns).all() and np.isfinite(rows).all()
    assert_reports_true_error(result, target, float(largest))


def start_error(target: np.ndarray, product: np.ndarray, exponent: int) -> float:
    """``||D - 2**exponent P|| / ||D||`` in double precision, the larger term scaled to ``D``'s."""
    top = max(exponent, 0)
    residual = target * 2.0**-top - product * 2.0 ** (exponent - top)
    return float(np.ldexp(np.linalg.norm(residual) / np.linalg.norm(target), top))


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex128])
@pytest.mark.parametrize("chain", [SQUARE, TALL, COUPLED[2]], ids=repr)
def test_an_initial_operator_far_from_the_target_s_scale(chain, dtype):
    """The same start for ``c * D`` gives ``c`` times the fit of ``D`` after its first update,
    and the start error at the operator's own scale. Was: 2**1000 * D fitted from a random
    operator gave the zero operator (every Gram diagonal below tiny) and errors 1.0; an
    operator 2**990 times too large a start error inf."""
    rng = np.random.default_rng(8)
    target = random_target(chain.shape, rng, dtype)
    start = DeButOperator.random(chain, rng=9, dtype=dtype)
    base = fit_als(target, chain, n_sweeps=2, init=start)
    double = target.astype(np.complex128)
    product = start.toarray().astype(np.complex128)
    exponent = EXPONENTS[np.finfo(dtype).dtype.type]
    for k in (exponent, -exponent):
        result = fit_als(target * np.finfo(dtype).dtype.type(2.0**k), chain, n_sweeps=2, init=start)
        assert result.errors[1:] == base.errors[1:]
        got = result.operator.toarray() * np.finfo(dtype).dtype.type(2.0**-k)
        np.testing.assert_array_equal(got, base.operator.toarray())
        # ||2**k D - P|| / ||2**k D|| = ||D - 2**-k P|| / ||D||
        assert result.errors[0] == pytest.approx(start_error(double, product, -k), rel=1e-5)
    if dtype == np.float64:
        for power in (330, -330):  # every factor: the product 2**(+-990) times the start's
            far = DeButOperator(chain, [np.ldexp(w, power) for w in start.weights])
            result = fit_als(target, chain, n_sweeps=2, init=far)
            assert result.errors[1:] == base.errors[1:]
            expected = start_error(double, product, len(chain) * power)
            assert result.errors[0] == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("power", [600, -600])
def test_no_sweep_from_an_operator_far_from_the_target_s_scale_returns_it(power):
    # the factors of a start 2**600 times the target's scale are divided by 2**600 (shift)
    # to be fitted; with no update they were returned so, the start error (1.3e180) reported
    target = random_target(SQUARE.shape, np.random.default_rng(1))
    start = DeButOperator.random(SQUARE, rng=0)
    far = DeButOperator(SQUARE, [np.ldexp(start.weights[0], power), *start.weights[1:]])
    result = fit_als(target, SQUARE, n_sweeps=0, init=far)
    product = result.operator.toarray()
    np.testing.assert_allclose(product, far.toarray(), rtol=1e-13, atol=0)
    expected = start_error(target, np.ldexp(product, -power), power)
    assert result.error == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("order", ["left-to-right", "balanced"])
@pytest.mark.parametrize("chain", FREE_ENDS, ids=repr)
def test_hierarchical_on_free_ends_reports_the_true_error(chain, order):
    hierarchy_ranks(chain)  # admissible
    assert chain[0].n_blocks > 1 or chain[-1].t > 1
    rng = np.random.default_rng(4)
    target = random_target(chain.shape, rng)
    result = fit_hierarchical(target, chain, order=order)
    assert 0.1 < result.error < 1
    assert_reports_true_error(result, target)
    exact = DeButOperator.random(chain, rng=5).toarray()
    result = fit_hierarchical(exact, chain, order=order)
    assert result.error < 1e-13
    assert_reports_true_error(result, exact)


def test_hadamard_reports_the_error_of_its_factors():
    chain = Chain.from_factorizations([2] * 10, [2] * 10)
    target = hadamard(1024).astype(np.float64)
    result = fit_hierarchical(target, chain)
    measured = measured_error(result, target, 1.0)
    assert result.error == pytest.approx(measured, rel=0.5, abs=1e-17)


@pytest.mark.parametrize("dtype", [np.complex64, np.complex128])
@pytest.mark.parametrize("chain", [TALL, COUPLED[2].T], ids=repr)
def test_complex_tall_fit_from_a_given_operator(chain, dtype):
    assert chain.shape[0] > chain.shape[1]
    rng = np.random.default_rng(6)
    target = random_target(chain.shape, rng, dtype)
    start = DeButOperator.random(chain, rng=7, dtype=dtype)
    result = fit_als(target, chain, n_sweeps=3, init=start)
    assert result.operator.dtype == dtype
    initial = np.linalg.norm(start.toarray() - target) / np.linalg.norm(target)
    assert result.errors[0] == pytest.approx(initial, rel=1e-4)
    assert np.all(np.diff(result.errors) <= 1e-5 * result.errors[0])
    assert result.error < initial
    assert_reports_true_error(result, target)


@settings(max_examples=examples(25), deadline=None)
@given(
    tol=st.one_of(st.just(0.0), st.floats(1e-6, 0.5)),
    seed=st.integers(0, 2**16),
    chain=st.sampled_from([SQUARE, TALL, COUPLED[1]]),
)
def test_tol_stops_at_the_first_sweep_that_improves_less(tol, seed, chain):
    target = random_target(chain.shape, np.random.default_rng(seed))
    n_sweeps = 6
    result = fit_als(target, chain, n_sweeps=n_sweeps, tol=tol, init="random", rng=seed)
    sweeps = result.errors[::2]  # before the first sweep, then after each
    assert len(result.errors) == 2 * (len(sweeps) - 1) + 1
    gains = [before - after for before, after in itertools.pairwise(sweeps)]
    *kept_going, last = [gain >= tol * before for gain, before in zip(gains, sweeps)]
    assert all(kept_going)
    assert not last or len(gains) == n_sweeps


@pytest.mark.parametrize(
    ("dtype", "working"), [("f2", np.float32), ("f4", np.float32), ("c8", np.complex64)]
)
def test_a_big_endian_single_precision_target_is_fitted_in_single_precision(dtype, working):
    # working_dtype compared dtypes with ==, which sees byte order: '>f4' fitted in float64.
    from pydebut import approximate

    target = np.random.default_rng(0).standard_normal((16, 32)).astype("<" + dtype)
    native, swapped = (approximate(t, 200, rng=0) for t in (target, target.astype(">" + dtype)))
    assert native.operator.dtype == swapped.operator.dtype == working
    assert swapped.error == native.error


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex64, np.complex128])
def test_scaling_by_a_power_of_two_is_ldexp_bit_for_bit(dtype):
    # by a product where the power of two is a normal number, else by ldexp itself
    from pydebut.fit._common import _times_power_of_two

    rng = np.random.default_rng(0)
    real = np.empty(0, dtype).real.dtype
    info = np.finfo(real)
    magnitudes = np.array([1, info.tiny * 3, info.max / 8], real).reshape(3, 1, 1)
    values = rng.uniform(-4, 4, (3, 40, 2)).astype(real) * magnitudes
    values[0, 0] = [info.smallest_subnormal, -info.max]
    array = values.view(dtype)  # complex: the pairs are its parts
    exponents = [0, 1, -1, 77, -77, info.maxexp - 1, info.maxexp, info.minexp, info.minexp - 1]
    exponents += [-3 * info.maxexp, 3 * info.maxexp]
    for exponent in [*exponents, rng.integers(-70, 70, size=(3, 1, 1))]:
        with np.errstate(over="ignore", under="ignore"):
            scaled = _times_power_of_two(array, exponent)
            expected = np.ldexp(array.view(real), exponent).view(dtype)
        assert scaled.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(scaled, expected)
