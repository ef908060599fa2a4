"""dottest and assert_debut_close fail on wrong operators: a broken helper cannot pass silently."""

from __future__ import annotations

import re

import hypothesis
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.sparse.linalg import LinearOperator, aslinearoperator

from pydebut import Chain, DeButOperator
from pydebut.testing import (
    assert_debut_close,
    chainable_chains,
    chains,
    dense_chains,
    dottest,
    operators,
    rank_weighted_chains,
    tolerance,
)

from .example_counts import examples

CHAIN = [(8, 8, 2, 2, 4), (8, 8, 2, 2, 2), (8, 12, 2, 3, 1)]
DTYPES = [np.float32, np.float64, np.complex64, np.complex128]


def wrong_adjoint(op: DeButOperator, rmatvec) -> LinearOperator:
    """``op`` with its adjoint replaced by ``rmatvec(dense, v)``."""
    dense = op.toarray()
    return LinearOperator(
        op.shape, matvec=op.matvec, rmatvec=lambda v: rmatvec(dense, v), dtype=op.dtype
    )


@pytest.mark.parametrize("dtype", DTYPES)
def test_dottest_passes_the_true_adjoint_and_fails_a_perturbed_one(dtype):
    op = DeButOperator.random(CHAIN, rng=1, dtype=dtype)
    assert dottest(op, rng=0)
    assert dottest(wrong_adjoint(op, lambda a, v: a.conj().T @ v), rng=0)
    # off by a relative 100 times the dtype's tolerance: well above rounding
    size = 100 * tolerance(dtype)
    perturbed = wrong_adjoint(op, lambda a, v: (a.conj().T @ v) * (1 + size))
    with pytest.raises(AssertionError, match="dot test failed"):
        dottest(perturbed, rng=0)


@pytest.mark.parametrize(("rng", "error"), [(True, TypeError), (-1, ValueError), ("0", TypeError)])
def test_dottest_names_an_rng_it_cannot_take(rng, error):
    with pytest.raises(error, match="rng must be None, a non-negative integer seed"):
        dottest(DeButOperator.random(CHAIN, rng=1), rng=rng)


@pytest.mark.parametrize("exponent", [600, -600])
def test_dottest_holds_its_tolerance_at_any_scale(exponent):
    # The squares of 2**600 times the entries overflow, of 2**-600 times them underflow:
    # the tolerance is relative to norms that must not (before: inf passed everything,
    # 0 failed the true adjoint).
    op = DeButOperator.random(CHAIN, rng=1)
    first, *rest = op.weights
    scaled = DeButOperator(CHAIN, [np.ldexp(first, exponent), *rest])
    assert dottest(scaled, rng=0)
    perturbed = wrong_adjoint(scaled, lambda a, v: (a.T @ v) * (1 + 100 * tolerance(np.float64)))
    with pytest.raises(AssertionError, match="dot test failed"):
        dottest(perturbed, rng=0)


@pytest.mark.parametrize(
    ("dtype", "rmatvec"),
    [
        (np.float64, lambda a, v: a[:, ::-1].T @ v),  # the adjoint of another matrix
        (np.float64, lambda a, v: np.zeros(a.shape[1])),
        (np.float64, lambda a, v: np.full(a.shape[1], np.nan)),
        (np.complex128, lambda a, v: a.T @ v),  # transpose without the conjugate
        (np.complex64, lambda a, v: (a.conj().T @ v).real.astype(np.complex64)),  # drops imag
    ],
)
def test_dottest_fails_operators_whose_rmatvec_is_not_the_adjoint(dtype, rmatvec):
    op = DeButOperator.random(CHAIN, rng=2, dtype=dtype)
    with pytest.raises(AssertionError, match="dot test failed"):
        dottest(wrong_adjoint(op, rmatvec), rng=0)


def test_dottest_fails_a_square_operator_whose_rmatvec_is_its_matvec():
    op = DeButOperator.random(CHAIN[:2], rng=3)
    assert not np.allclose(op.toarray(), op.toarray().T)
    with pytest.raises(AssertionError, match="dot test failed"):
        dottest(wrong_adjoint(op, lambda a, v: a @ v), rng=0)


INTEGER = np.array([[1, 2], [3, 4]])


@pytest.mark.parametrize(
    ("matrix", "rmatvec"),
    [
        (INTEGER, lambda v: np.zeros(2, dtype=int)),
        (INTEGER, lambda v: INTEGER @ v),  # A instead of A^T
        (np.array([[5]]), lambda v: 10 * v),
    ],
    ids=["zeros", "not-transposed", "doubled"],
)
def test_dottest_fails_a_wrong_adjoint_of_an_integer_operator_for_every_seed(matrix, rmatvec):
    # Before: the test vectors, normal values cast to int, were mostly zeros: these wrong
    # adjoints failed 14, 11 and 7 of 50 seeds.
    op = LinearOperator(matrix.shape, matvec=lambda x: matrix @ x, rmatvec=rmatvec, dtype=int)
    for seed in range(50):
        assert dottest(aslinearoperator(matrix), rng=seed)
        with pytest.raises(AssertionError, match="dot test failed"):
            dottest(op, rng=seed)


@pytest.mark.parametrize("shape", [(1, 1), (3, 7), (64, 64)])
def test_dottest_passes_a_float16_operator_for_every_seed(shape):
    # Before: float16 was held to double precision's 1e-10: 29 of 50 seeds failed.
    dense = np.random.default_rng(0).standard_normal(shape).astype(np.float16)
    for seed in range(50):
        assert dottest(aslinearoperator(dense), rng=seed)
    doubled = LinearOperator(shape, matvec=lambda x: dense @ x, rmatvec=lambda v: 2 * dense.T @ v)
    with pytest.raises(AssertionError, match="dot test failed"):
        dottest(doubled, rng=0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_assert_debut_close_fails_small_perturbations_at_the_dtypes_tolerance(dtype):
    op = DeButOperator.random(CHAIN, rng=4, dtype=dtype)
    dense = op.toarray().astype(np.complex128 if np.dtype(dtype).kind == "c" else np.float64)
    assert_debut_close(op, dense)
    peak = np.unravel_index(np.abs(dense).argmax(), dense.shape)
    near = dense.copy()
    near[peak] *= 1 + tolerance(dtype) / 10
    assert_debut_close(op, near)
    far = dense.copy()
    far[peak] *= 1 + 10 * tolerance(dtype)
    with pytest.raises(AssertionError, match="largest difference"):
        assert_debut_close(op, far)
    # one small entry wrong is enough, even outside the support
    factor = DeButOperator.random(CHAIN[:1], rng=4, dtype=dtype)
    spot = factor.toarray().astype(dense.dtype)
    zero = tuple(np.argwhere(spot == 0)[0])
    spot[zero] = 10 * tolerance(dtype) * np.abs(spot).max()
    with pytest.raises(AssertionError, match="largest difference"):
        assert_debut_close(factor, spot)


def test_assert_debut_close_fails_nan_shape_and_imaginary_differences():
    op = DeButOperator.random(CHAIN, rng=5, dtype=np.complex128)
    dense = op.toarray()
    with pytest.raises(AssertionError, match="largest difference"):
        assert_debut_close(op, np.where(dense == dense[0, 0], np.nan, dense))
    with pytest.raises(AssertionError, match="shapes differ"):
        assert_debut_close(op, dense[:, :-1])
    with pytest.raises(AssertionError, match="largest difference"):
        assert_debut_close(op, dense.real)
    with pytest.raises(AssertionError, match="largest difference"):
        assert_debut_close(op, dense.conj())
    nan_op = DeButOperator(
        op.chain, [np.full_like(w, np.nan) for w in op.weights], check_finite=False
    )
    with pytest.raises(AssertionError):
        assert_debut_close(nan_op, dense)
    with pytest.raises(AssertionError, match="dot test failed"):
        dottest(nan_op, rng=0)


def test_assert_debut_close_fails_an_infinite_expected_entry_whatever_the_operator():
    # Before: an infinite entry made the bound infinite, and any operator passed.
    op = DeButOperator.random(CHAIN, rng=5)
    for value in (np.inf, -np.inf):
        expected = op.toarray()
        expected[1, 2] = value
        with pytest.raises(AssertionError, match=f"expected has {value!r} at row 1, column 2"):
            assert_debut_close(op, expected)


def test_assert_debut_close_refuses_masked_entries_and_takes_an_unmasked_masked_array():
    # Before: the mask was dropped and the hidden values compared, setting the bound too
    op = DeButOperator.random(CHAIN, rng=5)
    hidden = op.toarray()
    hidden[1, 2] = 1e6
    expected = np.ma.masked_array(hidden, mask=hidden == 1e6)
    with pytest.raises(ValueError, match="expected is a masked array with 1 masked entries"):
        assert_debut_close(op, expected)
    assert_debut_close(op, np.ma.masked_array(op.toarray()))


@pytest.mark.parametrize(
    ("call", "rule"),
    [
        (lambda op: dottest(None), "dottest: op must be a LinearOperator, got NoneType"),
        (lambda op: dottest(np.eye(4)), "dottest: op must be a LinearOperator, got ndarray"),
        (
            lambda op: assert_debut_close(np.eye(4), np.eye(4)),
            "assert_debut_close: op must be a DeButOperator, got ndarray",
        ),
        (
            lambda op: assert_debut_close(op, op.toarray().astype(str)),
            "assert_debut_close: expected must hold real or complex numbers, not <U",
        ),
    ],
)
def test_checks_refuse_what_they_cannot_compare_by_type(call, rule):
    # Before: AttributeError ('NoneType' object has no attribute 'dtype'; no 'matvec', no
    # 'toarray') and NumPy's UFuncTypeError from the subtraction of strings.
    with pytest.raises(TypeError, match=re.escape(rule)):
        call(DeButOperator.random(CHAIN, rng=5))


def test_assert_debut_close_compares_shapes_before_forming_the_product(monkeypatch):
    # Before: hadamard(2**13) was made dense (1.3 s; 8 GiB at 2**15) to say "shapes differ".
    op = DeButOperator.random(CHAIN, rng=5)

    def refuse():
        raise AssertionError("toarray called")

    monkeypatch.setattr(op, "toarray", refuse)
    for wrong in (np.eye(3), np.ones(8 * 12), np.ones((12, 8))):
        with pytest.raises(
            AssertionError, match=re.escape(f"shapes differ: (8, 12) != {wrong.shape}")
        ):
            assert_debut_close(op, wrong)


def test_assert_debut_close_says_where_the_largest_difference_is():
    # Before: only "largest difference 1.000e+00 exceeds 1.256e-10".
    op = DeButOperator.random(CHAIN, rng=5, dtype=np.complex128)
    dense = op.toarray()
    wrong = dense.copy()
    wrong[6, 9] += 0.5j
    actual, expected = dense[6, 9].item(), wrong[6, 9].item()
    there = f"at row 6, column 9: op.toarray() has {actual!r}, expected {expected!r}"
    with pytest.raises(
        AssertionError, match="largest difference 5.000e-01 exceeds .*, " + re.escape(there)
    ):
        assert_debut_close(op, wrong)
    wrong = dense.copy()
    wrong[3, 2] = wrong[5, 1] = np.nan
    with pytest.raises(AssertionError, match=re.escape("at row 3, column 2: op.toarray() has")):
        assert_debut_close(op, wrong)


CHECKS = {
    "dottest": lambda op, **tol: dottest(op, rng=0, **tol),
    "assert_debut_close": lambda op, **tol: assert_debut_close(op, op.toarray(), **tol),
}


@pytest.mark.parametrize(
    ("check", "name"),
    [("dottest", "rtol"), ("assert_debut_close", "rtol"), ("assert_debut_close", "atol")],
)
@pytest.mark.parametrize(
    ("value", "error", "rule"),
    [
        (-1e-6, ValueError, "must be finite and at least 0, got -1e-06"),
        (np.nan, ValueError, "must be finite and at least 0, got nan"),
        (np.inf, ValueError, "must be finite and at least 0, got inf"),
        pytest.param(
            10**400,
            ValueError,
            "must be finite and at least 0, got <integer of about 401",
            id="huge-int",
        ),
        ("1e-6", TypeError, "must be a real number, got str '1e-6'"),
        (True, TypeError, "must be a real number, got bool True"),
    ],
)
def test_checks_refuse_tolerances_no_operator_could_be_judged_by(check, name, value, error, rule):
    # Before: a negative or NaN tolerance failed the exact operator ("dot test failed",
    # "largest difference 0.000e+00 exceeds -1.000e+00"), inf passed any operator, and a
    # string failed inside NumPy naming no argument; an int beyond the largest float passed
    # the range check and overflowed in the comparison (OverflowError).
    op = DeButOperator.random(CHAIN, rng=7)
    with pytest.raises(error, match=re.escape(f"{check}: {name} {rule}")):
        CHECKS[check](op, **{name: value})


@pytest.mark.parametrize(
    ("dtype", "size"), [(np.float64, 1e-7), (np.complex128, 1e-7), (np.float32, 1e-2)]
)
def test_default_tolerances_see_errors_far_above_rounding(dtype, size):
    # Fixed sizes, not derived from tolerance(): a loosened default must be caught.
    op = DeButOperator.random(CHAIN, rng=6, dtype=dtype)
    with pytest.raises(AssertionError, match="dot test failed"):
        dottest(wrong_adjoint(op, lambda a, v: (a.conj().T @ v) * (1 + size)), rng=0)
    with pytest.raises(AssertionError, match="largest difference"):
        assert_debut_close(op, op.toarray() * (1 + size))


@pytest.mark.parametrize("strategy", [chainable_chains, rank_weighted_chains, dense_chains, chains])
def test_strategies_refuse_more_factors_than_the_searches_take(strategy):
    # Before: chains() failed inside hypothesis at the first draw (a list of 8,193 or more
    # factors), dense_chains() hung for minutes, chainable_chains() took 20 s for 20 draws.
    with pytest.raises(ValueError, match=r"max_factors must be at most 64 \(pydebut.chains"):
        strategy(max_factors=10**6)
    strategy(max_factors=64)


@pytest.mark.parametrize(
    ("strategy", "bounds", "rule"),
    [
        (chainable_chains, {"max_dim": 0}, "max_dim must be at least 1 (m, n >= 1), got 0"),
        (
            rank_weighted_chains,
            {"max_factors": 1},
            "max_factors must be at least 2 (a rank-weighted chain has two factors or more)",
        ),
        (dense_chains, {"max_factors": 1}, "max_factors must be at least 2 (a chainable chain"),
        (chains, {"max_factors": 0}, "max_factors must be at least 1 (a chain has a factor)"),
    ],
)
def test_strategies_refuse_bounds_that_no_chain_keeps(strategy, bounds, rule):
    # Before: these drew 2-factor chains for max_factors=1 and 1 x 1 chains for max_dim=0.
    with pytest.raises(ValueError, match=re.escape(f"{strategy.__name__}: {rule}")):
        strategy(**bounds)


@hypothesis.seed(1)  # with hypothesis 6.170, draws d_0 = d_1 = 2**40 - 1 among others above 1e9
@given(st.data())
@settings(max_examples=50, deadline=2000, database=None)
def test_chains_draws_quickly_up_to_its_largest_max_dim(data):
    # Before: the divisors of gcd(d_0, d_1) were found in gcd(d_0, d_1) steps, and hypothesis
    # often draws d_0 = d_1: 10.5 s for 100 draws at 1e8, hours at 2**40 - 1. Trial
    # division takes at most 2**19 steps (0.1 s) there.
    chain = data.draw(chains(max_dim=2**40 - 1, max_factors=1))
    assert chain.max_dim < 2**40


def test_chains_refuses_a_max_dim_it_cannot_draw_quickly():
    rule = r"^chains: max_dim must be below 2\*\*40 .*got 1099511627776"
    with pytest.raises(ValueError, match=rule):
        chains(max_dim=2**40)


@pytest.mark.parametrize(
    "bounds",
    [
        {"max_dim": 1, "max_factors": 6, "max_rank": 10},
        {"max_dim": 2, "max_factors": 8},
        {"max_dim": 3, "max_rank": 50},
        {"max_dim": 12, "max_factors": 6, "max_radix": 4, "max_rank": 12},
    ],
)
def test_rank_weighted_chains_keep_max_dim_without_filtering(bounds):
    # Before: drawn, then filtered by assume(chain.max_dim <= max_dim), and hypothesis
    # failed its health check ("filtering out a lot of inputs") at these bounds.
    bounds = {"max_factors": 4, "max_radix": 3, "max_rank": 3, **bounds}

    @given(rank_weighted_chains(**bounds))
    @settings(max_examples=30, deadline=None, database=None)
    def check(chain):
        assert chain.max_dim <= bounds["max_dim"]
        assert 2 <= chain.n_factors <= bounds["max_factors"]
        assert all(max(f.r, f.s) <= bounds["max_radix"] * bounds["max_rank"] for f in chain)

    check()


@pytest.mark.parametrize("strategy", [chainable_chains, rank_weighted_chains, dense_chains, chains])
@pytest.mark.parametrize("bound", [8.5, 8.0, True, "8"])
def test_strategies_refuse_bounds_that_are_not_integers(strategy, bound):
    # Before: the strategy was built, and 8.5 or "8" failed only when hypothesis drew
    # from it, with a TypeError from deep inside; True passed as max_dim 1.
    with pytest.raises(TypeError, match=f"{strategy.__name__}: max_dim must be an integer"):
        strategy(max_dim=bound)


@pytest.mark.parametrize(
    ("arguments", "error", "rule"),
    [
        ({"dtypes": (np.int32,)}, TypeError, "dtypes[0] is <class 'numpy.int32'>"),
        ({"dtypes": (np.float64, np.float16)}, TypeError, "dtypes[1] is <class 'numpy.float16'>"),
        ({"dtypes": ("foo",)}, TypeError, "dtypes[0] is 'foo'"),
        ({"dtypes": ()}, ValueError, "dtypes, got ()"),
        ({"dtypes": np.float32}, TypeError, "dtypes, got type <class 'numpy.float32'>"),
        ({"dtypes": "float32"}, TypeError, "dtypes, got str 'float32'"),
        ({"dtypes": {np.float64}}, TypeError, "dtypes, got set"),
    ],
)
def test_operators_refuses_dtypes_no_draw_keeps(arguments, error, rule):
    # Before: the strategy was built; drawing failed inside hypothesis ("Cannot sample from
    # a length-zero sequence", "not an ordered collection") or in DeButOperator.random.
    wanted = "operators: dtypes must be a non-empty sequence of float32, float64, complex64"
    with pytest.raises(error, match=re.escape(wanted) + ".*" + re.escape(rule)):
        operators(**arguments)


def test_operators_refuses_a_chain_that_is_not_a_strategy():
    # Before: accepted; drawing failed with hypothesis's "Expected a SearchStrategy".
    chain = Chain([(4, 4, 2, 2, 1)])
    with pytest.raises(TypeError, match="operators: chain_strategy must be None or a hypothesis"):
        operators(chain)


@given(operators(st.just(CHAIN), ["float32", np.dtype(np.complex64), ">f8", complex]))
@settings(max_examples=examples(20), deadline=None)
def test_operators_takes_anything_numpy_reads_as_a_supported_dtype(op):
    assert op.shape == (8, 12)
    assert op.dtype in (np.float32, np.complex64, np.float64, np.complex128)


@given(
    chainable_chains(max_dim=1),
    rank_weighted_chains(max_factors=2),
    dense_chains(max_dim=6, max_factors=2),
)
@settings(max_examples=examples(20), deadline=None)
def test_strategies_keep_the_tightest_bounds(chainable, rank_weighted, dense):
    assert chainable.shape == (1, 1)
    assert rank_weighted.n_factors == dense.n_factors == 2
    assert max(dense.shape) <= 6


# --- what a one-line change of the module went unnoticed by (a mutation audit) -------------


def test_assert_debut_close_bounds_the_difference_by_the_expected_matrix():
    # a bound from max|actual| would pass 3 I against I at rtol 1
    op = DeButOperator.identity([(4, 4, 2, 2, 1)]) * 3.0
    with pytest.raises(AssertionError, match="largest difference"):
        assert_debut_close(op, np.eye(4), rtol=1.0)


@pytest.mark.parametrize("dtype", [int, np.uint8, bool])
def test_assert_debut_close_takes_integer_and_boolean_expected_matrices(dtype):
    assert_debut_close(DeButOperator.identity([(4, 4, 2, 2, 1)]), np.eye(4, dtype=dtype))


def test_dottest_catches_an_adjoint_that_conjugates_its_input():
    # checked with real vectors, a complex operator's conjugated input would pass
    rng = np.random.default_rng(0)
    matrix = rng.standard_normal((5, 4)) + 1j * rng.standard_normal((5, 4))
    wrong = LinearOperator(
        (5, 4),
        matvec=lambda u: matrix @ u,
        rmatvec=lambda v: matrix.conj().T @ v.conj(),
        dtype=complex,
    )
    with pytest.raises(AssertionError, match="dot test failed"):
        dottest(wrong, rng=0)


@settings(max_examples=60, derandomize=True, database=None)
@given(chainable_chains(max_dim=64, max_factors=2, max_radix=2))
def test_chainable_chains_keep_every_radix_within_max_radix(chain):
    assert all(spec.r <= 2 and spec.s <= 2 for spec in chain), chain


def test_operators_draw_their_weights_anew():
    seen = set()

    @settings(max_examples=30, derandomize=True, database=None)
    @given(operators(st.just(Chain([(4, 4, 2, 2, 1)])), dtypes=["float64"]))
    def collect(op):
        seen.add(op.toarray().tobytes())

    collect()
    assert len(seen) > 1


@pytest.mark.parametrize(
    ("profile", "counts"),
    [("ci", [1, 12, 40, 200]), ("dev", [2, 18, 60, 200]), ("thorough", [25, 300, 1000, 1000])],
)
def test_the_profiles_scale_the_counts_tests_set_for_ci(profile, counts):
    # Before: a test's own max_examples overrode every profile's, so "thorough" drew the
    # 12 to 60 examples of 25 of the 41 property tests
    default = settings.default
    settings.load_profile(profile)
    try:
        assert [examples(count) for count in (1, 12, 40, 200)] == counts
    finally:
        settings.register_profile("restored", default)
        settings.load_profile("restored")
