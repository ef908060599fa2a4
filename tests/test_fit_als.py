"""ALS: exact factor updates, monotone histories, reproducibility, argument checks."""

from __future__ import annotations

import re
import sys
import warnings

import numpy as np
import pytest
import scipy.sparse.csgraph
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pydebut import Chain, DeButOperator, fit_als, fit_hierarchical
from pydebut._reference import factor_to_dense
from pydebut.fit import MAX_SWEEPS, FitResult
from pydebut.fit import _als as als
from pydebut.fit._als import _across_from_columns, _across_from_rows, _couplings, _Sweeper
from pydebut.testing import chains, dense_chains

from .example_counts import examples
from .fit_cases import (
    CHAINABLE,
    COUPLED,
    PAPER_512,
    POINTWISE_3_TO_64,
    dense_product,
    random_target,
    random_weights,
)


def kronecker_update(chain, weights, target, index):
    """Brute force: minimum-norm lstsq of vec(A F B) = vec(D) over F's support."""
    dense = [factor_to_dense(spec, w) for spec, w in zip(chain, weights, strict=True)]
    a = np.linalg.multi_dot([np.eye(chain.shape[0]), *dense[:index], np.eye(chain[index].p)])
    b = np.linalg.multi_dot([np.eye(chain[index].q), *dense[index + 1 :], np.eye(chain.shape[1])])
    rows, cols = chain[index].support_indices()
    system = np.stack([np.outer(a[:, i], b[j]).ravel() for i, j in zip(rows, cols, strict=True)], 1)
    solution = np.linalg.lstsq(system, target.ravel(), rcond=None)[0]
    return solution.reshape(chain[index].weight_shape)


def structured_update(chain, weights, target, index):
    sweeper = _Sweeper(chain, list(weights), target, _couplings(chain))
    sweeper.forward(update=False)
    sweeper.backward(update=False)
    return sweeper._solve(index, sweeper.left[index], sweeper.right[index])


@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
@pytest.mark.parametrize("chain", CHAINABLE + COUPLED + [POINTWISE_3_TO_64.T], ids=repr)
def test_update_equals_kronecker_lstsq(chain, dtype):
    rng = np.random.default_rng(1)
    weights = random_weights(chain, rng, dtype)
    target = random_target(chain.shape, rng, dtype)
    for index in range(len(chain)):
        expected = kronecker_update(chain, weights, target, index)
        got = structured_update(chain, weights, target, index)
        np.testing.assert_allclose(got, expected, rtol=1e-8, atol=1e-10)


@settings(max_examples=examples(40), deadline=None)
@given(
    chain=chains(max_dim=12, max_factors=3),
    seed=st.integers(0, 2**32 - 1),
    dtype=st.sampled_from([np.float64, np.complex128]),
)
# singular updates whose zero eigenvalues came out just above numpy.linalg.pinv's cut-off
@example(Chain([(6, 3, 6, 3, 1), (3, 8, 3, 8, 1), (8, 1, 8, 1, 1)]), 3, np.complex128)
@example(Chain([(12, 9, 4, 3, 3), (9, 11, 9, 11, 1), (11, 1, 11, 1, 1)]), 59391823, np.float64)
def test_update_equals_kronecker_lstsq_on_drawn_chains(chain, seed, dtype):
    rng = np.random.default_rng(seed)
    weights = random_weights(chain, rng, dtype)
    target = random_target(chain.shape, rng, dtype)
    index = int(rng.integers(len(chain)))
    expected = kronecker_update(chain, weights, target, index)
    got = structured_update(chain, weights, target, index)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-8)


@settings(max_examples=examples(25), deadline=None)
@given(chain=dense_chains(max_dim=16, max_factors=4), seed=st.integers(0, 2**32 - 1))
def test_error_never_increases_on_drawn_dense_chains(chain, seed):
    target = random_target(chain.shape, np.random.default_rng(seed))
    errors = np.array(fit_als(target, chain, n_sweeps=3, init="random", rng=seed).errors)
    # Over-parametrised drawn chains fit the target exactly; the error then only
    # wanders at the rounding level of the coupled normal equations, which act on
    # the squared error: a change of eps * cond(K) there is sqrt of it in the error
    # ([(12, 12, 3, 3, 4), (12, 12, 4, 4, 1), (12, 12, 1, 1, 1), (12, 12, 12, 12, 1)],
    # seed 3: errors of 3.4e-9 and 5.6e-5 alternate, squares rising by 3.1e-9).
    assert np.all(np.diff(errors**2) <= 1e-8)


def test_coupled_chains_have_coupled_components():
    for chain in COUPLED:
        assert any(c.groups or c.rectangles for c in _couplings(chain)), chain
    # Both solvers are exercised: general components and full rectangles.
    assert any(c.groups for chain in COUPLED for c in _couplings(chain))
    assert any(c.rectangles for chain in COUPLED for c in _couplings(chain))


def test_chainable_and_pointwise_chains_decouple():
    for chain in [*CHAINABLE, PAPER_512, POINTWISE_3_TO_64.T]:
        assert not any(c.groups for c in _couplings(chain)), chain


@pytest.mark.parametrize("chain", [CHAINABLE[1], COUPLED[1]], ids=repr)
def test_singular_update_is_minimum_norm(chain):
    rng = np.random.default_rng(2)
    weights = random_weights(chain, rng)
    weights[0][..., 0] = 0  # zero columns of A and rows of B: singular normal equations
    weights[-1][:, 0] = 0
    target = random_target(chain.shape, rng)
    for index in range(len(chain)):
        expected = kronecker_update(chain, weights, target, index)
        got = structured_update(chain, weights, target, index)
        assert np.all(np.isfinite(got))
        np.testing.assert_allclose(got, expected, rtol=1e-8, atol=1e-10)


def test_all_zero_start_gives_zero_not_nan():
    chain = CHAINABLE[0]
    zeros = [np.zeros(spec.weight_shape) for spec in chain]
    op = fit_als(np.ones(chain.shape), chain, n_sweeps=1, init="random", rng=0).operator
    start = type(op)(chain, zeros)
    result = fit_als(np.ones(chain.shape), chain, n_sweeps=2, init=start)
    assert all(np.all(w == 0) for w in result.operator.weights)
    assert result.errors == [1.0] * 5


@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_targets_spanning_hundreds_of_orders_of_magnitude_fit_without_overflow(dtype):
    # Entries from 1 down to 1e-219: the Gram blocks of the weights that carry the tiny
    # entries are subnormal, and their reciprocal eigenvalues (and products of two in a
    # coupled rectangle's Kronecker solve) overflowed: NaN weights and a ValueError.
    target = np.diag(np.exp(-8.0 * np.arange(64))).astype(dtype)
    chain = Chain([(64, 128, 4, 8, 16), (128, 128, 8, 8, 4), (128, 64, 8, 4, 1)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = fit_als(target, chain, n_sweeps=2, rng=0)
    dense = result.operator.toarray()
    assert np.all(np.isfinite(dense))
    true_error = np.linalg.norm(dense - target) / np.linalg.norm(target)
    assert result.error == pytest.approx(true_error, rel=1e-9) and result.error < 1e-12


@pytest.mark.parametrize(
    "chain", [*CHAINABLE, *COUPLED, POINTWISE_3_TO_64, POINTWISE_3_TO_64.T], ids=repr
)
@pytest.mark.parametrize("dtype", [np.float64, np.complex128, np.float32, np.complex64])
def test_error_never_increases(chain, dtype):
    rng = np.random.default_rng(3)
    target = random_target(chain.shape, rng, dtype)
    result = fit_als(target, chain, n_sweeps=6, init="random", rng=4)
    errors = np.array(result.errors)
    assert len(errors) == 13 and len(result.times) == 13
    single = dtype in (np.float32, np.complex64)
    # The normal equations act on the squared error: rounding there is eps * cond.
    slack = 1e-5 if single else 1e-12
    assert np.all(np.diff(errors**2) <= slack * errors[0] ** 2)
    assert result.operator.weights[0].dtype == dtype
    dense = dense_product(chain, result.operator.weights)
    true_error = np.linalg.norm(target - dense) / np.linalg.norm(target)
    assert true_error == pytest.approx(
        errors[-1], rel=1e-3 if single else 1e-9, abs=1e-5 if single else 1e-12
    )


def test_single_precision_targets_fit_as_closely_as_their_precision_allows():
    # Solved in float32, the normal equations of these coupled chains lost most of the fit:
    # one update of the first raised the error from 0.165 to 0.650; the second, which double
    # precision fits to 1e-9, ended at 0.02-0.12 (seeds 0-9) and rose by up to 0.17.
    first = Chain([(4, 6, 2, 3, 1), (6, 12, 2, 4, 1), (12, 6, 4, 2, 1), (6, 8, 3, 4, 1)])
    over = Chain([(24, 24, 8, 8, 1), (24, 16, 12, 8, 1), (16, 24, 8, 12, 1), (24, 8, 24, 8, 1)])
    for chain, seed in ((first, 10), (over, 0), (over, 7)):
        assert any(c.groups for c in _couplings(chain))
        target = np.random.default_rng(seed).standard_normal(chain.shape).astype(np.float32)
        result = fit_als(target, chain, n_sweeps=10, rng=seed)
        single = np.array(result.errors)
        double = fit_als(target.astype(np.float64), chain, n_sweeps=10, rng=seed).errors
        assert result.operator.dtype == np.float32
        assert np.all(np.diff(single**2) <= 1e-5 * single[0] ** 2)
        assert single[-1] <= max(1.001 * double[-1], 1e-3)
        # the reported error is that of the returned single precision factors
        dense = dense_product(chain, [w.astype(np.float64) for w in result.operator.weights])
        true_error = np.linalg.norm(target - dense) / np.linalg.norm(target)
        assert true_error == pytest.approx(single[-1], rel=1e-6, abs=1e-9)


def test_fixed_seed_reproduces_history():
    chain, rng = COUPLED[2], np.random.default_rng(5)
    target = random_target(chain.shape, rng)
    first = fit_als(target, chain, n_sweeps=3, init="random", rng=7)
    second = fit_als(target, chain, n_sweeps=3, init="random", rng=7)
    other = fit_als(target, chain, n_sweeps=3, init="random", rng=8)
    assert first.errors == second.errors
    assert first.errors != other.errors


def test_recovers_a_product_of_random_factors():
    chain = CHAINABLE[1]
    target = dense_product(chain, random_weights(chain, np.random.default_rng(6)))
    assert fit_als(target, chain, n_sweeps=1, init="hierarchical").errors[-1] < 1e-10
    assert fit_als(target, chain, n_sweeps=200, tol=0, init="random", rng=0).errors[-1] < 1e-6


@pytest.mark.slow
def test_als_from_hierarchical_never_ends_above_it_on_the_paper_chain():
    target = np.random.default_rng(9).standard_normal(PAPER_512.shape)
    hierarchical = fit_hierarchical(target, PAPER_512).error
    result = fit_als(target, PAPER_512, n_sweeps=2, init="hierarchical")
    assert result.errors[0] == pytest.approx(hierarchical, rel=1e-10)
    assert result.errors[-1] < hierarchical


def test_hierarchical_init_is_not_worse_than_hierarchical():
    chain = Chain.from_factorizations([2, 2, 2], [3, 2, 2])
    target = np.random.default_rng(10).standard_normal(chain.shape)
    hierarchical = fit_hierarchical(target, chain).error
    for init in ("hierarchical", "auto"):
        result = fit_als(target, chain, n_sweeps=3, init=init)
        assert result.errors[0] == pytest.approx(hierarchical, rel=1e-10)
        assert result.errors[-1] <= hierarchical * (1 + 1e-12)


def test_tol_and_callback_stop_early():
    chain = CHAINABLE[1]
    target = np.random.default_rng(11).standard_normal(chain.shape)
    assert len(fit_als(target, chain, n_sweeps=50, tol=1e30, init="random").errors) == 3
    # the most sweeps allowed, as a bound for tol to stop within
    assert len(fit_als(target, chain, n_sweeps=MAX_SWEEPS, tol=1e30, init="random").errors) == 3
    seen = []

    def stop_after_two(result):
        seen.append(len(result.errors))
        return len(seen) == 2

    result = fit_als(target, chain, n_sweeps=50, init="random", callback=stop_after_two)
    assert seen == [3, 5] and len(result.errors) == 5


@pytest.mark.parametrize("scale", [1.0, 1e-200, 2.0**-1070, 1e300])
def test_a_zero_target_reports_the_start_operators_norm_at_any_scale(scale):
    # ||F||_F of a start of norm 1.9e-200 was reported as 0: its squares underflowed
    chain = CHAINABLE[0]
    start = DeButOperator.random(chain, rng=4)
    start = DeButOperator(chain, [start.weights[0] * scale, *start.weights[1:]])
    expected = np.linalg.norm(start.toarray() / scale) * scale
    result = fit_als(np.zeros(chain.shape), chain, n_sweeps=1, init=start)
    assert result.errors[0] == pytest.approx(expected, rel=1e-14, abs=0)
    assert result.errors[1:] == [0.0, 0.0] and not result.operator.toarray().any()


def test_a_complex_target_with_nan_is_refused_before_any_work():
    # every non-finite target of the tests was real: a complex NaN could have run the fit
    target = np.eye(4, dtype=complex)
    target[0, 1] = complex(np.nan, 0)
    with pytest.raises(ValueError, match="the target has non-finite entries"):
        fit_als(target, Chain.from_factorizations([2, 2], [2, 2]), n_sweeps=1)


def test_a_numpy_true_from_the_callback_stops_and_a_bool_tol_is_refused():
    chain = Chain.from_factorizations([2, 2], [2, 2])
    target = np.random.default_rng(0).standard_normal((4, 4))
    result = fit_als(target, chain, n_sweeps=5, init="random", rng=0, callback=lambda r: np.True_)
    assert result.n_sweeps == 1
    with pytest.raises(TypeError, match="tol must be a real number or None, got bool"):
        fit_als(target, chain, tol=True)


def test_the_summary_gives_the_whole_fits_time():
    op = DeButOperator.random(Chain.from_factorizations([2, 2], [2, 2]), rng=0)
    summary = FitResult(op, [0.9, 0.5, 0.4], [0.25, 1.0, 4.0], "als").summary()
    assert summary.endswith("after 1 sweeps in 4 s")


def test_zero_sweeps_reports_the_initial_error():
    chain = CHAINABLE[0]
    target = np.random.default_rng(12).standard_normal(chain.shape)
    result = fit_als(target, chain, n_sweeps=0, init="random", rng=3)
    dense = dense_product(chain, result.operator.weights)
    assert result.errors == [pytest.approx(np.linalg.norm(target - dense) / np.linalg.norm(target))]
    assert "als fit" in result.summary()


def test_npy_path_and_lists(tmp_path):
    chain = CHAINABLE[0]
    target = np.random.default_rng(13).standard_normal(chain.shape)
    np.save(tmp_path / "target.npy", target)
    from_path = fit_als(tmp_path / "target.npy", chain, n_sweeps=1, init="random", rng=1)
    from_str = fit_als(str(tmp_path / "target.npy"), chain, n_sweeps=1, init="random", rng=1)
    from_list = fit_als(target.tolist(), chain, n_sweeps=1, init="random", rng=1)
    assert from_path.errors == from_str.errors == from_list.errors


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"n_sweeps": -1}, ValueError, "n_sweeps must be >= 0"),
        ({"n_sweeps": 10**30}, ValueError, "n_sweeps must be at most MAX_SWEEPS = 100,000"),
        ({"n_sweeps": 2.0}, TypeError, "n_sweeps must be an integer"),
        ({"n_sweeps": True}, TypeError, "n_sweeps must be an integer"),
        ({"init": "svd"}, ValueError, "unknown init 'svd'"),
        ({"init": 3}, TypeError, "init must be a method name"),
        ({"tol": -1.0}, ValueError, "tol must be finite"),
        ({"tol": 10**400}, ValueError, "tol must be finite and >= 0, got <integer of about"),
        ({"callback": 5}, TypeError, "callback must be callable"),
        ({"init": "random", "rng": True}, TypeError, "rng must be None, .* got bool True"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    chain = CHAINABLE[0]
    with pytest.raises(error, match=match):
        fit_als(np.ones(chain.shape), chain, **kwargs)


def test_a_coupling_limit_names_the_factor_of_the_user_s_chain():
    # fit_als works on the transpose of a tall chain: the refusal counts from the user's end
    chain = Chain([(8, 4, 8, 4, 1), (4, 16384, 2, 8192, 1)])
    for user_chain, factor in [(chain, 2), (chain.T, 1)]:
        with pytest.raises(als.CouplingLimitError, match=f"^factor {factor} of the chain: about"):
            fit_als(np.ones(user_chain.shape), user_chain, n_sweeps=1)


def test_bad_targets():
    chain = CHAINABLE[0]
    bad = np.ones(chain.shape)
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        fit_als(bad, chain)
    with pytest.raises(ValueError, match=r"shape \(6, 5\) but the chain is 6 x 6"):
        fit_als(np.ones((6, 5)), chain)
    with pytest.raises(ValueError, match="2-D"):
        fit_als(np.ones(36), chain)
    with pytest.raises(TypeError, match="dtype object"):
        fit_als(np.full(chain.shape, None), chain)


def test_hierarchical_init_on_non_chainable_chain_fails_before_work():
    with pytest.raises(ValueError, match="use fit_als"):
        fit_als(np.ones(POINTWISE_3_TO_64.shape), POINTWISE_3_TO_64, init="hierarchical")


def test_init_operator_with_another_chain():
    chain = CHAINABLE[0]
    op = fit_als(np.ones(chain.shape), chain, n_sweeps=0, init="random").operator
    other = Chain.from_factorizations([3, 2], [2, 3])
    with pytest.raises(ValueError, match="initial operator's chain"):
        fit_als(np.ones(other.shape), other, init=op)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_init_operator_with_weights_that_are_not_finite(bad):
    # Before: accepted; errors began with nan and the fit returned all-zero weights, silently
    chain = CHAINABLE[0]
    op = DeButOperator.random(chain, rng=0)
    weights = [w.copy() for w in op.weights]
    weights[1][0, 0, 0, 0] = bad
    init = DeButOperator(chain, weights, check_finite=False)
    with pytest.raises(ValueError, match="initial operator's factor F_2 has infinite or NaN"):
        fit_als(np.ones(chain.shape), chain, init=init)


def test_progress_bar(capsys):
    pytest.importorskip("tqdm")
    chain = CHAINABLE[0]
    fit_als(np.ones(chain.shape), chain, n_sweeps=2, init="random", progress=True)
    assert "ALS" in capsys.readouterr().err


def test_progress_bar_with_standard_error_closed(monkeypatch):
    # A process started with 2>&- has sys.stderr None: tqdm failed writing the bar
    pytest.importorskip("tqdm")
    monkeypatch.setattr(sys, "stderr", None)
    chain = CHAINABLE[0]
    result = fit_als(np.ones(chain.shape), chain, n_sweeps=2, init="random", progress=True)
    assert len(result.errors) == 5


def test_progress_without_tqdm_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)  # makes "from tqdm.auto import" fail
    chain = CHAINABLE[0]
    with pytest.raises(ImportError, match=r"pip install pydebut\[progress\]"):
        fit_als(np.ones(chain.shape), chain, progress=True)


def brute_force_partition(chain, index):
    """Components of the coupling graph from dense boolean G and H (small chains)."""
    dense = [factor_to_dense(spec, np.ones(spec.weight_shape)) != 0 for spec in chain]
    a = np.eye(chain.shape[0], dtype=bool)
    for f in dense[:index]:
        a = (a.astype(int) @ f) > 0
    b = np.eye(chain[index].q, dtype=bool)
    for f in dense[index + 1 :]:
        b = (b.astype(int) @ f) > 0
    g, h = (a.T.astype(int) @ a) > 0, (b.astype(int) @ b.T) > 0
    rows, cols = chain[index].support_indices()
    coupled = g[rows][:, rows] & h[cols][:, cols]
    _, labels = scipy.sparse.csgraph.connected_components(coupled, directed=False)
    return labels


def partition_from(coupling, nnz):
    labels = np.arange(nnz)
    for members in (*coupling.groups, *(r.reshape(len(r), -1) for r in coupling.rectangles)):
        labels[members] = members[:, :1]
    return labels


@settings(max_examples=examples(60), deadline=None)
@given(chain=chains(max_dim=12, max_factors=4))
def test_coupling_components_match_a_brute_force_graph(chain):
    for index, coupling in enumerate(_couplings(chain)):
        expected = brute_force_partition(chain, index)
        got = partition_from(coupling, chain[index].nnz)
        # Same partition: labels correspond one to one.
        pairs = set(zip(expected.tolist(), got.tolist(), strict=True))
        assert len(pairs) == len(set(expected.tolist())) == len(set(got.tolist()))


def assert_cross_edges_agree(chain):
    """Both enumerations of cross-rectangle edges give the same set; return its size."""
    dense = [factor_to_dense(spec, np.ones(spec.weight_shape)) for spec in chain]
    found = 0
    for index, spec in enumerate(chain):
        a = np.linalg.multi_dot([np.eye(chain.shape[0]), *dense[:index], np.eye(spec.p)])
        b = np.linalg.multi_dot([np.eye(spec.q), *dense[index + 1 :], np.eye(chain.shape[1])])
        pattern, gram = (a.T != 0).astype(float), b @ b.T
        flat = np.arange(spec.nnz).reshape(spec.weight_shape)
        col_pairs = np.nonzero(gram)
        same = (col_pairs[0] // (spec.s * spec.t) == col_pairs[1] // (spec.s * spec.t)) & (
            col_pairs[0] % spec.t == col_pairs[1] % spec.t
        )
        cross = (col_pairs[0][~same], col_pairs[1][~same])
        from_columns = _across_from_columns(spec, pattern, cross, flat)
        from_rows = _across_from_rows(spec, pattern, gram, flat)
        as_set = lambda edges: {frozenset(e) for e in zip(*edges, strict=True)}  # noqa: E731
        assert as_set(from_columns) == as_set(from_rows)
        found += len(as_set(from_rows))
    return found


def test_cross_rectangle_candidates_are_examined_a_chunk_at_a_time(monkeypatch):
    # The rank-weighted radix-4 butterfly of a 128 x 128 matrix has 1,161,216 candidate pairs
    # of weights across rectangles in one factor update; both ends of all of them were held at
    # once (18.6 MB; 38.4 million pairs and 642 MiB for the one of a 256 x 256 matrix)
    import tracemalloc

    chain = Chain(
        [(128, 384, 4, 12, 32), (384, 384, 12, 12, 8), (384, 384, 12, 12, 2), (384, 128, 6, 2, 1)]
    )
    expected = _couplings.__wrapped__(chain)
    monkeypatch.setattr(als, "PAIR_CHUNK", 1 << 12)
    tracemalloc.start()
    try:
        got = _couplings.__wrapped__(chain)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1_161_216 * 16 / 2
    for mine, theirs in zip(got, expected, strict=True):
        for ours, reference in [(mine.groups, theirs.groups), (mine.rectangles, theirs.rectangles)]:
            assert len(ours) == len(reference)
            for a, b in zip(ours, reference, strict=True):
                np.testing.assert_array_equal(a, b)


def test_gram_blocks_of_rectangles_do_not_gather_every_row_of_every_component():
    # The last factor's 256 components of 16 rows each share 16 sets of rows; the update
    # gathered all 256 x 16 rows of length 256 (8 MiB, and 8 MiB conjugated) for a 0.5 MiB
    # target: 21.1 MiB traced (8 GiB and a MemoryError for 4096 x 4096 and b = 64)
    import tracemalloc

    m, b = 256, 16
    chain = Chain([(m, m, b, b, 1), (m, m, 2, 2, b // 2), (m, m, b, b, 1)])
    assert [x.shape for x in _couplings(chain)[2].rectangles] == [(256, 16, 1)]
    target = np.random.default_rng(0).standard_normal(chain.shape)
    tracemalloc.start()
    try:
        fit_als(target, chain, n_sweeps=1, init="random", rng=0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 24 * target.nbytes


@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_gram_blocks_are_the_same_a_chunk_at_a_time(monkeypatch, dtype):
    rng = np.random.default_rng(0)
    vectors = random_target((12, 7), rng, dtype)
    index = rng.integers(0, 12, size=(40, 3))
    index[20:] = index[:20]  # components sharing their rows
    picked = vectors[index]
    expected = np.matmul(picked, np.conj(np.swapaxes(picked, -1, -2)))
    for chunk in [1, 3 * 7 * 5, 1 << 22]:
        monkeypatch.setattr(als, "GATHER_CHUNK", chunk)
        np.testing.assert_array_equal(als._row_grams(vectors, index), expected)


def test_cross_rectangle_edges_agree_on_cross_coupled_chains():
    for chain in COUPLED[-2:]:
        assert assert_cross_edges_agree(chain) > 0, chain


@settings(max_examples=examples(60), deadline=None)
@given(chain=chains(max_dim=12, max_factors=4))
def test_cross_rectangle_edges_agree_from_rows_and_from_columns(chain):
    assert_cross_edges_agree(chain)


@pytest.mark.parametrize("chain", [COUPLED[4], COUPLED[-1]], ids=repr)
def test_too_much_coupling_is_refused_before_any_work(monkeypatch, chain):
    monkeypatch.setattr(als, "MAX_SYSTEM_ENTRIES", 10)
    _couplings.cache_clear()
    words = r"factor \d of the chain: .*, more than MAX_SYSTEM_ENTRIES = 10 \(pydebut.fit\)"
    with pytest.raises(ValueError, match=words):
        fit_als(np.ones(chain.shape), chain, init="random")
    _couplings.cache_clear()


def test_wide_rectangles_are_counted_against_the_coupling_limit():
    # a 4 x 16384 rectangle of coupled weights: its H_J alone is 2**28 entries, and its
    # pairs along rows 5e8 edges; fit_als ran out of memory after about 10 s
    n = 16384
    chain = Chain([(4, n, 4, n, 1), (n, 4, n, 4, 1)])
    _couplings.cache_clear()
    words = "factor 2 of the chain: about 268,435,472 pairs of rows and of columns within its "
    words += "rectangles, more than MAX_SYSTEM_ENTRIES = 67,108,864 (pydebut.fit): fit_als"
    with pytest.raises(ValueError, match=re.escape(words)):
        fit_als(np.ones((4, 4)), chain, n_sweeps=1)
    _couplings.cache_clear()


def assert_same_coupling(got, expected):
    for ours, reference in [(got.groups, expected.groups), (got.rectangles, expected.rectangles)]:
        assert len(ours) == len(reference)
        for a, b in zip(ours, reference, strict=True):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("factor, n_factors", [((8, 8, 8, 8, 1), 200), ((4, 4, 2, 2, 1), 550)])
def test_couplings_of_a_long_chain_are_those_of_a_short_one(factor, n_factors):
    # The coupling test ran the normal equations with all weights one, whose path counts
    # (8**200) overflowed: on these chains it found no coupled weight at all. The supports
    # of A^H and H, which decide the coupling, are the same for every factor but the ends.
    long, short = _couplings(Chain([factor] * n_factors)), _couplings(Chain([factor] * 3))
    for index, expected in [(0, 0), (n_factors // 2, 1), (n_factors - 1, 2)]:
        assert_same_coupling(long[index], short[expected])


def test_als_on_a_long_chain_never_raises_the_error():
    # With the coupled weights of every factor missed (above), one sweep raised the error
    # of this fit from 1.1e-14 to 3.35, with 490 RuntimeWarnings (overflow)
    chain = Chain([(8, 8, 8, 8, 1)] * 200)
    target = np.random.default_rng(0).standard_normal(chain.shape)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = fit_als(target, chain, n_sweeps=1)
    assert result.errors[-1] <= result.errors[0] * (1 + 1e-9) + 1e-14


def test_a_random_start_on_a_long_chain_is_balanced():
    # The product of 600 random scalars is about e**-380 (2**-548): its Gram terms left the
    # doubles, every update gave 0, and ALS stayed at error 1.0 on a 1 x 1 target
    chain = Chain([(1, 1, 1, 1, 1)] * 600)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = fit_als(np.array([[3.0]]), chain, n_sweeps=1, init="random", rng=0)
    assert result.errors[-1] < 1e-12


def _lstsq_als_errors(chain, weights, target, n_sweeps):
    """Errors of ALS as documented (left to right, then right to left, each factor the
    dense least-squares solution with the others fixed), skipping nothing."""
    weights = [np.array(w, dtype=np.float64) for w in weights]

    def error():
        residual = target - dense_product(chain, weights)
        return np.linalg.norm(residual) / np.linalg.norm(target)

    errors = [error()]
    for _ in range(n_sweeps):
        for order in (range(len(chain)), reversed(range(len(chain)))):
            for index in order:
                weights[index] = kronecker_update(chain, weights, target, index)
            errors.append(error())
    return errors


@pytest.mark.parametrize(
    "chain",
    [
        Chain.from_factorizations([2, 2, 2], [2, 2, 2]),
        Chain.from_factorizations([2, 2], [2, 4]),
        Chain.from_factorizations([2, 4], [2, 2]),  # tall: solved through the transpose
    ],
    ids=["square", "wide", "tall"],
)
def test_als_updates_every_factor_in_the_documented_order(chain):
    # a pass that skipped the wrong factor left one factor out of every later half-sweep,
    # and the error still never rose
    rng = np.random.default_rng(5)
    target = rng.standard_normal(chain.shape)
    init = DeButOperator.random(chain, rng=rng)
    result = fit_als(target, chain, init=init, n_sweeps=2)
    expected = _lstsq_als_errors(chain, init.weights, target, 2)
    np.testing.assert_allclose(result.errors, expected, rtol=1e-7)


def test_a_double_precision_initial_operator_gives_double_weights_to_a_single_target():
    chain = Chain.from_factorizations([2, 2], [2, 2])
    target = np.random.default_rng(0).standard_normal((4, 4)).astype(np.float32)
    result = fit_als(target, chain, init=DeButOperator.random(chain, rng=1), n_sweeps=1)
    assert result.operator.dtype == np.float64


def test_tol_stops_a_fit_whose_error_is_already_zero():
    chain = Chain.from_factorizations([2, 2], [2, 2])
    identity = DeButOperator.identity(chain)
    result = fit_als(np.eye(4), chain, init=identity, n_sweeps=50, tol=1e-6)
    assert result.errors[0] == 0 and result.error == 0
    assert result.n_sweeps == 1


def test_a_callbacks_results_keep_the_history_they_were_given():
    # a result handed to the callback shared the fit's list of times, which grew after it
    chain = Chain.from_factorizations([2, 2], [2, 2])
    target = np.random.default_rng(0).standard_normal((4, 4))
    seen = []
    fit_als(target, chain, n_sweeps=3, init="random", rng=0, callback=seen.append)
    assert [len(r.errors) for r in seen] == [3, 5, 7]
    assert [len(r.times) for r in seen] == [3, 5, 7]


def test_a_random_start_matches_the_norm_of_a_wide_target():
    # "scaled to the target's norm": a 4 x 64 target's start had a quarter of it
    chain = Chain.from_factorizations([2, 2], [8, 8])
    target = np.random.default_rng(0).standard_normal(chain.shape)
    starts = [
        fit_als(target, chain, n_sweeps=0, init="random", rng=seed).operator.toarray()
        for seed in range(20)
    ]
    ratios = [np.linalg.norm(start) / np.linalg.norm(target) for start in starts]
    assert 0.5 < np.mean(ratios) < 2


def test_a_complex_target_below_the_normal_range_is_refused():
    chain = Chain.from_factorizations([2, 2], [2, 2])
    with pytest.raises(ValueError, match="underflow"):
        fit_als(np.full((4, 4), 1e-310 + 1e-310j), chain, n_sweeps=1)


def test_the_memory_check_of_an_integer_target_counts_its_double_working_copy(monkeypatch):
    import pydebut.fit._common as common

    asked = []
    monkeypatch.setattr(
        common, "check_fits_in_memory", lambda n, what, hint: asked.append((n, what))
    )
    chain = Chain.from_factorizations([2, 2], [2, 2])
    fit_als(np.eye(4, dtype=np.int8), chain, n_sweeps=0)
    copies = [(n, what) for n, what in asked if "working copy" in what]
    assert copies and all(n == 4 * 4 * 8 and what.endswith("float64") for n, what in copies)


def test_an_operator_declared_real_may_return_complex_values_of_zero_imaginary_part():
    from scipy.sparse.linalg import LinearOperator

    matrix = np.random.default_rng(0).standard_normal((4, 4)).astype(complex)
    op = LinearOperator((4, 4), matvec=matrix.__matmul__, matmat=matrix.__matmul__, dtype=float)
    chain = Chain.from_factorizations([2, 2], [2, 2])
    result = fit_als(op, chain, n_sweeps=1, init="random", rng=0)
    assert result.operator.dtype == np.float64


def test_a_sparse_target_of_exactly_max_entries_is_made_dense(monkeypatch):
    import scipy.sparse as sp

    import pydebut.fit._dense_target as dense_target

    monkeypatch.setattr(dense_target, "MAX_DENSE_ENTRIES", 16)
    chain = Chain.from_factorizations([2, 2], [2, 2])
    assert fit_als(sp.eye_array(4).tocsr(), chain, n_sweeps=1).operator.shape == (4, 4)
    with pytest.raises(ValueError, match=r"at most MAX_DENSE_ENTRIES = 16 entries \(pydebut.fit\)"):
        fit_als(sp.eye_array(4, 8).tocsr(), Chain.from_factorizations([2, 2], [2, 4]))
