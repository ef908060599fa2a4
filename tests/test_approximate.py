"""``pydebut.approximate``: the chain search and its guarantees."""

from __future__ import annotations

import itertools
import re
import threading
import warnings
from fractions import Fraction

import numpy as np
import pytest
import scipy.sparse.linalg as spla
from hypothesis import given, settings
from hypothesis import strategies as st

from pydebut import (
    Chain,
    DeButOperator,
    SearchNarrowedWarning,
    approximate,
    classify,
    fit_als,
    fit_hierarchical,
)
from pydebut.fit import _search
from pydebut.special import PAPER_CHAINS

from .example_counts import examples
from .fit_cases import svd_error


def smooth_kernel(m, n, scale=30.0):
    x, y = np.linspace(0, 1, m), np.linspace(0, 1, n)
    return np.exp(-scale * (x[:, None] - y) ** 2)


def true_error(op, target):
    return np.linalg.norm(op.toarray() - target) / np.linalg.norm(target)


def test_result_reports_the_true_error_and_the_search():
    target = smooth_kernel(32, 64)
    result = approximate(target, 600, n_sweeps=2, rng=0)
    assert result.chain.shape == (32, 64)
    assert result.chain.n_params <= 600
    assert result.error == pytest.approx(true_error(result.operator, target), rel=1e-12)
    assert result.explored and result.n_splits > 0 and result.narrowed is None
    estimates = [e.estimate for e in result.explored]
    assert estimates == sorted(estimates)
    assert all(e.n_params <= 600 for e in result.explored)
    fitted = [e for e in result.explored if e.error is not None]
    assert fitted and min(e.error for e in fitted) >= result.error * (1 - 1e-12)
    assert result.baseline.rank == 6 and not result.baseline.randomized
    assert result.baseline.error == pytest.approx(svd_error(target, 6), rel=1e-10)


def test_the_bars_count_the_splits_and_fits_as_they_are_done(capsys):
    # the search's bar counted splits as they were planned, with no total and no depth:
    # it jumped ahead of the work, then stood still while the spectra were computed; the
    # fits' bar had no total either
    pytest.importorskip("tqdm")
    target = smooth_kernel(16, 32)
    result = approximate(target, 300, n_sweeps=1, max_factors=4, rng=0, progress=True)
    err = capsys.readouterr().err
    shown = re.findall(
        r"pass (\d) of 2 \((D|D\^H)\): searching chains, factor (\d) of 4: +\d+%\|[^|]*\| "
        r"(\d+)/(\d+) ",
        err,
    )
    bars = []  # (factor, done, total) of each bar: one per pass (the target, its adjoint)
    passes = []  # the label of each bar: the target, then its adjoint
    for index, matrix, *counts in shown:
        factor, done, total = map(int, counts)
        if factor == 1 and done == 0:
            bars.append([])
            passes.append((index, matrix))
        bars[-1].append((factor, done, total))
    assert passes == [("1", "D"), ("2", "D^H")]
    for bar in bars:
        assert bar == sorted(bar) and all(done <= total for _, done, total in bar)
        assert bar[-1][0] == 3 and bar[-1][1] == bar[-1][2]
    assert sum(bar[-1][1] for bar in bars) == result.n_splits
    fits = re.findall(
        r"pass \d of 2 \(D(?:\^H)?\): fitting candidates: +\d+%\|[^|]*\| (\d+)/(\d+) ", err
    )
    fit_bars = []  # (done, total) of each bar: one per pass
    for done, total in ((int(a), int(b)) for a, b in fits):
        if done == 0:
            fit_bars.append([])
        fit_bars[-1].append((done, total))
    assert len(fit_bars) == 2 and all(bar[-1][0] == bar[-1][1] > 1 for bar in fit_bars)
    fitted = sum(e.error is not None for e in result.explored)
    assert sum(bar[-1][0] for bar in fit_bars) >= fitted


def test_estimates_are_the_left_to_right_hierarchical_errors():
    target = np.random.default_rng(1).standard_normal((16, 32))
    result = approximate(target, 200, n_sweeps=0, rng=0)
    for explored in result.explored[:: max(1, len(result.explored) // 12)]:
        hierarchical = fit_hierarchical(target, explored.chain).error
        assert explored.estimate == pytest.approx(hierarchical, rel=1e-6, abs=1e-7)


@pytest.mark.parametrize(
    "target",
    [
        smooth_kernel(32, 64),
        np.random.default_rng(2).standard_normal((16, 32)),
        np.random.default_rng(3).standard_normal((32, 8))
        @ np.random.default_rng(4).standard_normal((8, 64))
        + 1e-3 * np.random.default_rng(5).standard_normal((32, 64)),
    ],
    ids=["smooth", "gaussian", "low-rank-plus-noise"],
)
@pytest.mark.parametrize("fraction", [0.1, 0.3])
def test_never_worse_than_the_truncated_svd(target, fraction):
    m, n = target.shape
    budget = int(fraction * m * n)
    result = approximate(target, budget, n_sweeps=1, rng=0)
    rank = budget // (m + n)
    assert result.baseline.rank == rank
    assert result.error <= svd_error(target, rank) * (1 + 1e-9) + 1e-14
    assert result.error <= result.baseline.error


RECOVERABLE = [
    Chain.from_factorizations([2, 2, 2, 2], [2, 2, 4, 2]),  # butterfly, 16 x 32
    Chain([(16, 3, 16, 3, 1), (3, 32, 3, 32, 1)]),  # rank 3
    Chain([(16, 8, 16, 8, 1), (8, 32, 2, 8, 1)]),  # block low rank: 4 column blocks of rank 2
    Chain.from_abcd([(1, 4, 4, 4, 1, 2), (4, 4, 8, 1, 2, 1)]),  # Monarch-like, rank 2
    Chain.from_abcd([(1, 2, 2, 8, 1, 2), (2, 2, 4, 4, 2, 3), (8, 4, 4, 1, 3, 1)]),  # ranks 2, 3
    Chain.from_factorizations([2, 4, 4], [8, 4, 2]),  # bulging: dimensions 64, 128, 128, 32
]


@pytest.mark.parametrize("chain", RECOVERABLE, ids=lambda c: f"{c.shape}-{c.n_factors}")
def test_recovers_a_product_of_any_chain_in_the_family(chain):
    target = DeButOperator.random(chain, rng=7).toarray()
    result = approximate(target, chain.n_params, n_sweeps=0, rng=0)
    assert result.error < 1e-11
    assert result.chain.n_params <= chain.n_params


@pytest.mark.parametrize(
    "chain",
    [*RECOVERABLE, Chain([(64, 64, 4, 4, 16), (64, 64, 2, 2, 8), (64, 64, 8, 8, 1)])],
    ids=lambda c: f"{c.shape}-{c.n_factors}",
)
def test_recovers_the_transpose_of_a_product_it_recovers(chain):
    # the beam search grows chains from one side; the transposes of the chains it finds are
    # found in the search of D^H (before it, five of these seven were not)
    target = DeButOperator.random(chain, rng=7).toarray()
    result = approximate(target.T, chain.n_params, n_sweeps=0, rng=0)
    assert result.error < 1e-11
    assert result.chain.n_params <= chain.n_params
    np.testing.assert_allclose(result.operator.toarray(), target.T, atol=1e-11)


def test_a_hermitian_target_is_searched_once():
    # D^H = D: its search would repeat D's
    searches = []
    run = _search._BeamSearch.run

    def counted(self, each):
        searches.append(self)
        return run(self, each)

    kernel = smooth_kernel(32, 32)
    for target, expected in [
        (kernel, 1),
        (kernel + 1j * np.triu(kernel, 1) - 1j * np.tril(kernel, -1), 1),
        (kernel[:, ::-1], 2),
    ]:
        searches.clear()
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(_search._BeamSearch, "run", counted)
            result = approximate(target, 300, n_sweeps=1, rng=0)
        assert len(searches) == expected
        assert result.error <= result.baseline.error


def test_an_included_chain_that_qualifies_only_transposed_keeps_its_hierarchical_fit():
    # ALS cannot update this chain's wide factor (coupling limit): the split is kept, as it is
    # for the chain itself
    chain = Chain([(8, 4, 8, 4, 1), (4, 16384, 2, 8192, 1)])
    target = DeButOperator.random(chain, rng=0).toarray()
    target += 0.01 * np.abs(target).mean() * np.random.default_rng(0).standard_normal(target.shape)
    options = dict(n_sweeps=1, max_factors=2, beam_width=2, max_splits=20, rng=0)
    as_given = approximate(target, chain.n_params, include=[chain], **options)
    transposed = approximate(target.T, chain.n_params, include=[chain.T], **options)
    assert transposed.error == pytest.approx(as_given.error, rel=1e-12)


@pytest.mark.slow
@pytest.mark.parametrize("transposed", [False, True], ids=["as-given", "transposed"])
@pytest.mark.parametrize("name", ["vgg16-conv1", "lenet-fc1"])
def test_recovers_the_papers_chains_at_their_own_budget(name, transposed):
    # transposed: a layer kept input-major, (in, out)
    chain = PAPER_CHAINS[name]
    target = DeButOperator.random(chain, rng=8).toarray()
    result = approximate(target.T if transposed else target, chain.n_params, n_sweeps=0, rng=0)
    assert result.error < 1e-11


def test_recovers_a_noisy_product_of_a_papers_chain_near_the_noise_level():
    # the product of the VGG conv1 chain plus relative noise 1e-4: its first prefix discards
    # only noise, yet came behind prefixes that keep the full rank (which discard nothing
    # whatever the target) and left the beam; the answer was 0.239
    chain = PAPER_CHAINS["vgg16-conv1"]
    target = noisy_product(chain, 1e-4, 0)
    result = approximate(target, chain.n_params, max_factors=4, n_sweeps=0, beam_width=8, rng=0)
    assert result.error < 1e-3


def noisy_product(chain, level, seed):
    product = DeButOperator.random(chain, rng=seed).toarray()
    noise = np.random.default_rng(seed + 1).standard_normal(product.shape)
    return product + level * np.linalg.norm(product) / np.linalg.norm(noise) * noise


#: Small targets of several kinds, with the options they are searched with. The last one
#: has a beam of 2 per band on a noisy two-level structure: there the beam drops most
#: prefixes, so its selection matters.
MONOTONE_TARGETS = {
    "noisy butterfly": (
        noisy_product(Chain.from_factorizations([2, 2, 4], [4, 2, 4]), 0.05, 20),
        {},
    ),
    "smooth kernel": (smooth_kernel(16, 32, scale=60.0), {}),
    "Gaussian": (np.random.default_rng(21).standard_normal((12, 24)), {}),
    "narrow beam": (
        noisy_product(Chain.from_abcd([(1, 4, 4, 4, 1, 2), (4, 4, 8, 1, 2, 1)]), 0.02, 22),
        {"beam_width": 2, "max_factors": 4},
    ),
}


def fitted_chains(result):
    return {e.chain: e.error for e in result.explored if e.error is not None}


@settings(max_examples=examples(12), deadline=None)
@given(
    name=st.sampled_from(sorted(MONOTONE_TARGETS)),
    budgets=st.tuples(st.floats(0.0, 1.0), st.floats(0.0, 1.0)),
    seed=st.integers(0, 3),
)
def test_a_larger_budget_is_never_worse(name, budgets, seed):
    target, options = MONOTONE_TARGETS[name]
    m, n = target.shape
    smallest = 3 * (m + n) // 2  # below it, few budgets have any chain
    small, large = sorted(smallest + round(f * (m * n // 2 - smallest)) for f in budgets)
    first = approximate(target, small, n_sweeps=1, rng=seed, **options)
    second = approximate(target, large, n_sweeps=1, rng=seed, **options)
    assert second.error <= first.error
    # the mechanism, in the search of D and in that of D^H (the answer is the better of the
    # two): the smaller budget's search and fits are part of the larger one's
    passes = _search._passes
    for adjoint in (False, True):
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(
                _search,
                "_passes",
                lambda *a, adjoint=adjoint: [p for p in passes(*a) if p[0] == adjoint],
            )
            first, second = (
                approximate(target, budget, n_sweeps=1, rng=seed, **options)
                for budget in (small, large)
            )
        assert second.error <= first.error
        estimates = {e.chain: e.estimate for e in second.explored}
        assert {e.chain: e.estimate for e in first.explored}.items() <= estimates.items()
        assert fitted_chains(first).items() <= fitted_chains(second).items()


@pytest.mark.parametrize("budget", [240, 750, 1600])
def test_never_worse_than_a_chain_it_estimated(budget):
    # A front chain's estimate is the error of its hierarchical factorization, so one below
    # every error measured with fewer parameters is fitted. Fitting only those below half of
    # it, the answer at 1600 was 0.0431 beside an unfitted chain estimated at 0.0403.
    target = noisy_product(Chain.from_factorizations([2, 4, 4], [4, 4, 8]), 0.05, 3)
    result = approximate(target, budget, n_sweeps=1, rng=0)
    assert result.error <= min(e.estimate for e in result.explored) * (1 + 1e-9)


def test_a_sweep_over_growing_budgets_never_gets_worse():
    target = smooth_kernel(16, 32, scale=60.0)
    errors = [approximate(target, budget, n_sweeps=1, rng=0).error for budget in range(60, 300, 24)]
    assert errors == sorted(errors, reverse=True)
    assert errors[-1] < errors[0]


def test_budgets_with_sketched_splits_are_nested(monkeypatch):
    # blocks of 48 x 96 against ranks below 16: the range finder scores the low ranks
    import pydebut.fit._search as search

    sketches = []
    captured = search._captured_energies
    monkeypatch.setattr(
        search, "_captured_energies", lambda *a: sketches.append(a[1]) or captured(*a)
    )
    target = smooth_kernel(48, 96, scale=200.0)
    small = approximate(target, 400, n_sweeps=1, max_factors=4, rng=5)
    large = approximate(target, 1000, n_sweeps=1, max_factors=4, rng=5)
    assert sketches
    assert large.error <= small.error
    estimates = {e.chain: e.estimate for e in large.explored}
    assert {e.chain: e.estimate for e in small.explored}.items() <= estimates.items()
    assert fitted_chains(small).items() <= fitted_chains(large).items()


@pytest.mark.parametrize("budget", [16 * 32, (16 + 32) * 16, 10**6], ids=["mn", "full-svd", "1e6"])
@pytest.mark.parametrize("permutation", [None, "auto"])
def test_a_budget_that_holds_the_dense_matrix_returns_it_without_a_search(
    monkeypatch, budget, permutation
):
    # The one-factor dense chain is exact from m n weights on, yet the search ran over every
    # band up to m n (a 256 x 256 kernel at 65,536: 20,440 split spectra, 99 s, 1.1 GB), and
    # at 131,072 the full-rank SVD, with twice the weights of D, won on rounding.
    monkeypatch.setattr(_search._BeamSearch, "run", lambda self, each: pytest.fail("searched"))
    monkeypatch.setattr(_search, "_fit", lambda *args: pytest.fail("fitted"))
    target = 3 * smooth_kernel(16, 32, scale=60.0)
    result = approximate(target, budget, permutation=permutation, rng=0)
    assert result.chain == Chain([(16, 32, 16, 32, 1)])
    assert result.error == 0 and result.n_splits == 0
    np.testing.assert_array_equal(result.operator.toarray(), target)
    assert [(e.chain, e.error) for e in result.explored] == [(result.chain, 0.0)]
    assert result.baseline.rank == min(budget // 48, 16)


@pytest.mark.parametrize("target", [[[2.5]], [[1.0, -2.0, 3.0]], [[1.0], [-2.0], [3.0]]])
def test_a_scalar_or_vector_target_within_the_budget_is_its_dense_chain(target):
    # a 1 x 1 target was refused ("no chain for a 1 x 1 target ... which chains leave
    # out") at any budget, though from m n weights on the dense chain holds it
    target = np.array(target)
    m, n = target.shape
    for budget in (m * n, 100):
        result = approximate(target, budget, rng=0)
        assert result.chain == Chain([(m, n, m, n, 1)]) and result.error == 0
        np.testing.assert_array_equal(result.operator.toarray(), target)


def test_include_adds_candidates():
    target = smooth_kernel(16, 32, scale=60.0)
    chain = Chain.from_factorizations([4, 4], [4, 8])
    plain = approximate(target, 240, n_sweeps=1, rng=0)
    carried = approximate(target, 240, n_sweeps=1, include=[chain], rng=0)
    assert carried.error <= plain.error
    assert carried.error <= fit_hierarchical(target, chain).error


def test_include_is_read_up_to_a_limit_and_each_chain_fitted_once(monkeypatch):
    target = smooth_kernel(16, 32, scale=60.0)
    chain = Chain.from_factorizations([4, 4], [4, 8])
    # an endless iterator was read until MemoryError
    words = r"more than MAX_INCLUDE = 1,024 chains \(pydebut.fit\): list each chain once"
    with pytest.raises(ValueError, match=words):
        approximate(target, 240, include=itertools.repeat(chain))
    fitted = []
    fit = _search._fit
    monkeypatch.setattr(
        _search, "_fit", lambda matrix, c, *args: fitted.append(c) or fit(matrix, c, *args)
    )
    once = approximate(target, 240, n_sweeps=1, include=[chain], rng=0)
    times = len(fitted)
    assert chain in fitted
    fitted.clear()
    repeated = approximate(target, 240, n_sweeps=1, include=[chain] * 1024, rng=0)
    assert len(fitted) == times  # 1023 more fits of the same chain before
    assert repeated.chain == once.chain and repeated.error == once.error


def test_same_rng_same_result():
    target = np.random.default_rng(9).standard_normal((32, 64))
    first = approximate(target, 500, n_sweeps=2, rng=3)
    second = approximate(target, 500, n_sweeps=2, rng=3)
    assert first.chain == second.chain and first.error == second.error
    assert [e.chain for e in first.explored] == [e.chain for e in second.explored]
    assert np.array_equal(first.operator.toarray(), second.operator.toarray())


def test_the_search_checks_and_sizes_chain_objects_only_for_the_chains_it_fits(monkeypatch):
    # every chain met is recorded with its weights; a Chain is validated and its n_params summed
    # only for the chains fitted (the explored list is built from validated factors), not once
    # or more for each of the thousands recorded
    counts = {"validated": 0, "n_params": 0, "fits": 0}
    init, n_params, fit = Chain.__init__, Chain.n_params.fget, _search._fit

    def validated(self, factors):
        counts["validated"] += 1
        init(self, factors)

    def counted_n_params(self):
        counts["n_params"] += 1
        return n_params(self)

    def counted_fit(*args):
        counts["fits"] += 1
        return fit(*args)

    monkeypatch.setattr(Chain, "__init__", validated)
    monkeypatch.setattr(Chain, "n_params", property(counted_n_params))
    monkeypatch.setattr(_search, "_fit", counted_fit)
    result = approximate(np.random.default_rng(1).standard_normal((16, 32)), 200, rng=0)
    monkeypatch.undo()
    assert len(result.explored) > 1000 and 0 < counts["fits"] < 40  # D's and D^H's
    assert counts["validated"] + counts["n_params"] <= 20 * counts["fits"]
    for explored in result.explored:  # what was not checked again is a valid chain
        assert Chain([spec.as_tuple() for spec in explored.chain]) == explored.chain
        assert explored.n_params == sum(spec.nnz for spec in explored.chain) <= 200


def _pinned_host() -> str | None:
    """Which pinned bookkeeping of the search this host reproduces, if any.

    The search's split counts and explored lists depend on the last bits of the spectra
    the BLAS computes: near-tied estimates fall in another order (1,881 splits for 1,877,
    say), with the same chain and error. They were pinned with NumPy 2.2 to 2.4 on hosts
    with AVX-512 (``"avx512"``), and on an AVX2 host, AMD Zen 3, where NumPy's OpenBLAS runs
    its Haswell kernels (``"haswell"``). NumPy 2.5 bundles a newer OpenBLAS; there, and on
    other hosts, only the chain and the error are compared.
    """
    import llvmlite.binding as llvm
    import threadpoolctl

    if tuple(int(part) for part in np.__version__.split(".")[:2]) >= (2, 5):
        return None
    if "+avx512f" in llvm.get_host_cpu_features().flatten().split(","):
        return "avx512"
    # NumPy's and SciPy's OpenBLAS, each listed once it is loaded
    kernels = {
        i.get("architecture")
        for i in threadpoolctl.threadpool_info()
        if i["internal_api"] == "openblas"
    }
    return "haswell" if kernels == {"Haswell"} else None


PINNED_HOST = _pinned_host()


@pytest.mark.parametrize(
    "target, budget, options, chosen, error, bookkeeping",
    [
        (
            np.random.default_rng(1).standard_normal((16, 32)),
            200,
            {},
            [(16, 16, 4, 4, 4), (16, 32, 4, 8, 1)],
            0.6720029558330479,
            {
                "avx512": (1877, 1008, [0, 12, 48, 121, 349, 378, 600, 659, 770]),
                "haswell": (1881, 1008, [0, 12, 48, 121, 349, 378, 600, 659, 770]),
            },
        ),
        (
            smooth_kernel(32, 64),
            600,
            {"n_sweeps": 2},
            [(32, 12, 32, 12, 1), (12, 64, 3, 16, 1)],
            0.01461952815453936,
            {
                "avx512": (
                    2365,
                    1354,
                    [0, 6, 10, 22, 40, 43, 161, 175, 176, 181, 572, 606, 626, 678, 841, 920, 1162],
                ),
                "haswell": (
                    2365,
                    1354,
                    [0, 6, 10, 23, 42, 160, 175, 180, 564, 605, 622, 681, 841, 919, 1163],
                ),
            },
        ),
        (
            np.random.default_rng(6).standard_normal((32, 64)),
            1500,
            {"max_splits": 5},
            [(32, 15, 32, 15, 1), (15, 64, 15, 64, 1)],
            0.4839364348730944,
            {
                "avx512": (
                    50,
                    51,
                    [0, 3, 4, 7, 10, 12, 16, 18, 22, 25, 27, 32, 33, 38, 43, 45, 48, 49, 50],
                ),
                "haswell": (50, 51, [0, 4, 12, 18, 33, 38, 43, 45, 48, 49, 50]),
            },
        ),
    ],
    ids=["gaussian", "smooth", "narrowed"],
)
@pytest.mark.parametrize("workers", [1, 2])
def test_fixed_seed_searches_keep_their_answers(
    target, budget, options, chosen, error, bookkeeping, workers
):
    # pinned from the search before its records of complete chains became factor tuples with
    # their weights (same chain, error, split count, explored list and fitted chains in it);
    # the split counts since then include the search of D^H; the same on two threads. The
    # counts, explored lists and fitted chains since the beam ranks the prefixes that kept the
    # full rank after those that compressed (the same chains and errors)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SearchNarrowedWarning)
        result = approximate(target, budget, rng=0, workers=workers, **options)
    assert result.chain == Chain(chosen)
    assert result.error == pytest.approx(error, rel=1e-12)
    if PINNED_HOST is not None:
        n_splits, n_explored, fitted_at = bookkeeping[PINNED_HOST]
        assert (result.n_splits, len(result.explored)) == (n_splits, n_explored)
        assert [i for i, e in enumerate(result.explored) if e.error is not None] == fitted_at
    keys = [(e.estimate, e.n_params) for e in result.explored]
    assert keys == sorted(keys)


@settings(max_examples=examples(200), deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from([0.0, 0.25, 0.5, 1.0]), st.integers(1, 5), st.integers(0, 30)),
        max_size=16,
        unique_by=lambda record: record[2],
    )
)
def test_the_front_in_one_pass_is_the_front_by_parameters(records):
    # _front reads the front off the estimates in their order (estimate, parameters, factors);
    # the reference sorts by (parameters, estimate, factors) and keeps each chain whose estimate
    # is below every earlier one's
    from pydebut.fit._search import _Estimate, _front

    estimates = sorted(_Estimate(e, p, ((k, 1, 1, 1, 1),)) for e, p, k in records)
    expected, lowest = [], np.inf
    for estimate in sorted(estimates, key=lambda e: (e.n_params, e.estimate, e.factors)):
        if estimate.estimate < lowest:
            expected.append(estimate)
            lowest = estimate.estimate
    assert _front(estimates) == expected


@pytest.mark.parametrize("factor", [8.0, -0.25, 3.0])
def test_scale_invariant(factor):
    target = np.random.default_rng(10).standard_normal((16, 32))
    base = approximate(target, 160, n_sweeps=1, rng=0)
    scaled = approximate(factor * target, 160, n_sweeps=1, rng=0)
    assert scaled.chain == base.chain
    assert scaled.error == pytest.approx(base.error, rel=1e-9)
    assert np.allclose(scaled.operator.toarray(), factor * base.operator.toarray(), atol=1e-12)


@pytest.mark.parametrize(
    ("dtype", "exponent"),
    [(np.float64, 900), (np.float64, -900), (np.float32, 100), (np.float32, -100)],
)
def test_extreme_scales_give_the_same_answer(dtype, exponent):
    # 2**exponent times entries of 1e-3 to 4 stays normal: the scaled problem is the same
    # one exactly, so the search must make the same choices, report the same error and
    # return 2**exponent times the operator (squares of such entries over- or underflow).
    target = np.random.default_rng(10).standard_normal((16, 32)).astype(dtype)
    target[np.abs(target) < 1e-3] = 1e-3
    base = approximate(target, 160, n_sweeps=1, rng=0, permutation="auto")
    scaled = approximate(np.ldexp(target, exponent), 160, n_sweeps=1, rng=0, permutation="auto")
    assert scaled.chain == base.chain
    assert scaled.error == base.error
    assert scaled.baseline == base.baseline
    assert [(e.chain, e.estimate, e.error) for e in scaled.explored] == [
        (e.chain, e.estimate, e.error) for e in base.explored
    ]
    assert np.array_equal(scaled.operator.toarray(), np.ldexp(base.operator.toarray(), exponent))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_a_target_near_the_largest_float_keeps_the_guarantees(dtype):
    # A fit whose product would overflow once scaled back is shrunk, which raises its
    # error: at 0.999 times the largest double the chain chosen at 360 weights came back
    # at 0.565 against the truncated SVD's 0.326, and 300 weights gave 0.637 where 256
    # gave 0.491. The candidates are compared after they are scaled back.
    gaussian = np.random.default_rng(3).standard_normal((16, 24))
    target = (gaussian / np.abs(gaussian).max() * (0.999 * np.finfo(dtype).max)).astype(dtype)
    exponent = np.finfo(dtype).maxexp - 1
    down = np.ldexp(target.astype(np.float64), -exponent)  # exact: no entry falls subnormal
    errors = []
    for budget in (256, 300, 360):
        result = approximate(target, budget, rng=0)
        product = np.ldexp(result.operator.toarray().astype(np.float64), -exponent)
        true_error = np.linalg.norm(down - product) / np.linalg.norm(down)
        assert result.error == pytest.approx(true_error, rel=1e-5)
        assert result.error <= result.baseline.error
        errors.append(result.error)
    assert errors == sorted(errors, reverse=True)


@pytest.mark.parametrize("dtype", [np.float32, np.complex64])
def test_single_precision_targets_are_searched_in_double(dtype):
    # In single precision a split's residual (energy less what its kept vectors capture)
    # is noise below about 3e-4 of the total: the search picked a four-factor chain at
    # 1.8e-4 (3.1e-4 for complex64) where the double search finds 2.3e-5.
    x, y = np.linspace(0, 1, 64), np.linspace(0, 1, 128)
    target = np.exp(-30 * (x[:, None] - y) ** 2)
    if np.dtype(dtype).kind == "c":
        target = target * np.exp(3j * x)[:, None]
    single = approximate(target.astype(dtype), 2000, rng=0)
    double = approximate(
        target.astype(dtype).astype(np.promote_types(dtype, np.float64)), 2000, rng=0
    )
    assert single.operator.dtype == dtype
    assert single.chain == double.chain
    assert single.error <= 1.01 * double.error


def test_complex_targets():
    rng = np.random.default_rng(11)
    target = rng.standard_normal((16, 32)) + 1j * rng.standard_normal((16, 32))
    result = approximate(target, 200, n_sweeps=1, rng=0)
    assert result.operator.dtype == np.complex128
    assert result.error == pytest.approx(true_error(result.operator, target), rel=1e-10)
    assert result.error <= result.baseline.error


def test_workers_compute_the_splits_on_threads_with_the_same_answer(monkeypatch):
    threads = set()
    discarded = _search._BeamSearch._discarded

    def recorded(search, split):
        threads.add((threading.current_thread().name, np.geterr()["under"]))
        return discarded(search, split)

    monkeypatch.setattr(_search._BeamSearch, "_discarded", recorded)
    target = smooth_kernel(32, 64) + 0.01 * np.random.default_rng(0).standard_normal((32, 64))
    with np.errstate(under="warn"):  # NumPy's error state is per thread
        alone = approximate(target, 600, n_sweeps=1, rng=0)
    assert threads == {(threading.current_thread().name, "warn")}
    threads.clear()
    monkeypatch.setattr(_search, "usable_cpus", lambda: 2)  # -1: two threads on any machine
    with np.errstate(under="warn"):
        side_by_side = approximate(target, 600, n_sweeps=1, rng=0, workers=-1)
    assert threads and all(name.startswith("pydebut-search") for name, _ in threads)
    assert {under for _, under in threads} == {"warn"}  # the caller's, not the default
    assert side_by_side.error == alone.error and side_by_side.chain == alone.chain
    assert [(e.chain, e.estimate, e.error) for e in side_by_side.explored] == [
        (e.chain, e.estimate, e.error) for e in alone.explored
    ]
    assert np.array_equal(side_by_side.operator.toarray(), alone.operator.toarray())


def test_workers_fit_later_chains_ahead_and_drop_those_an_earlier_fit_rules_out(monkeypatch):
    # Three rank-k chains of one band for a 16 x 8 target, estimated 0.5 (k = 3),
    # 0.3 (k = 4) and 0.2 (k = 5, the band's best: always fitted). k = 3 fits to 0.1,
    # which rules out k = 4 (0.3 > 0.1). One thread never fits k = 4; two fit it
    # ahead, while k = 3 is fitted, and then drop it.
    rank_chain = {k: ((16, k, 16, k, 1), (k, 8, k, 8, 1)) for k in (3, 4, 5)}
    estimates = sorted(
        _search._Estimate(estimate, 24 * k, rank_chain[k])
        for k, estimate in ((3, 0.5), (4, 0.3), (5, 0.2))
    )
    errors = {3: 0.1, 4: 0.05, 5: 0.2}
    calls = []
    rank_4_started = threading.Event()

    def stub_fit(matrix, norm, chain, options, seed):
        k = chain[0].q
        calls.append(k)
        if k == 4:
            rank_4_started.set()
        elif k == 3 and options.workers == 2:  # still fitting when k = 4 is started
            assert rank_4_started.wait(timeout=30)
        return f"operator of rank {k}", errors[k]

    class NoSVD:
        def best_within(self, n_params):
            return np.inf

    monkeypatch.setattr(_search, "_best_fit", stub_fit)
    monkeypatch.setattr(_search, "usable_cpus", lambda: 2)
    fitted = {}
    for workers in (1, 2):
        options, _ = _search._checked_options(
            10**4, 10, 1, 1e-4, 16, 1, 5000, (), None, False, workers
        )
        calls.clear()
        with _search._threads(workers) as threads:
            result = _search._refine(
                np.zeros((16, 8)), 1.0, estimates, [], NoSVD(), options, 0, threads, "pass 1 of 1"
            )
        fitted[workers] = [(chain[0].q, fit) for chain, fit in result]
        assert sorted(calls) == ([3, 5] if workers == 1 else [3, 4, 5])
    assert (
        fitted[1]
        == fitted[2]
        == [(3, ("operator of rank 3", 0.1)), (5, ("operator of rank 5", 0.2))]
    )


def test_a_small_search_is_narrowed_with_a_warning():
    target = smooth_kernel(32, 64)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = approximate(target, 600, n_sweeps=0, max_splits=5, rng=0)
    # one warning a pass, each naming its pass
    messages = [str(w.message) for w in caught if w.category is SearchNarrowedWarning]
    assert len(messages) == 2 and messages[0] == result.narrowed
    assert "of its pass 2 of 2 (D^H);" in messages[1]
    assert "max_splits=5" in result.narrowed and "of its pass 1 of 2 (D);" in result.narrowed
    # at most 5 per band of committed parameters; the search runs at 1024 (10 bands)
    assert 0 < result.n_splits <= 5 * 10
    assert result.error <= result.baseline.error


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"target": np.full((4, 4), np.nan)}, ValueError, "non-finite"),
        ({"target": np.ones(8)}, ValueError, "2-D"),
        ({"target": np.array([["a"]])}, TypeError, "numbers"),
        ({"target": np.ones((0, 8))}, ValueError, "at least one row and one column, got (0, 8)"),
        ({"target": np.ma.masked_equal(np.eye(4), 0)}, ValueError, "12 masked entries"),
        ({"max_params": 5}, ValueError, "the smallest has 12"),
        ({"max_params": 10.5}, TypeError, "max_params must be an int"),
        ({"max_factors": 0}, ValueError, "max_factors must be >= 1"),
        ({"beam_width": True}, TypeError, "beam_width must be an int"),
        ({"n_sweeps": -1}, ValueError, "n_sweeps must be >= 0"),
        ({"n_sweeps": 100_001}, ValueError, "n_sweeps must be at most MAX_SWEEPS = 100,000"),
        ({"tol": -1.0}, ValueError, "tol must be finite"),
        ({"tol": "0"}, TypeError, "tol must be a real number or None"),
        ({"progress": "yes"}, TypeError, "progress must be a bool"),
        ({"workers": 0}, ValueError, "workers must be >= 1, or -1 for every CPU"),
        ({"workers": -2}, ValueError, "got -2"),
        ({"workers": 2.0}, TypeError, "workers must be an int, got float"),
        ({"workers": True}, TypeError, "workers must be an int, got bool"),
        ({"include": [[(4, 8, 4, 8, 1)]]}, TypeError, "include[0] must be a Chain"),
        ({"include": [Chain([(8, 8, 8, 8, 1)])]}, ValueError, "include[0] is 8 x 8"),
        ({"include": None}, TypeError, "include must be an iterable of Chain"),
        ({"include": Chain([(4, 8, 4, 8, 1)])}, TypeError, "(e.g. [chain]), got Chain"),
    ],
)
def test_bad_input_is_refused_before_any_work(kwargs, error, message):
    arguments = {"target": np.ones((4, 8)), "max_params": 40, **kwargs}
    with pytest.raises(error, match=re.escape(message)):
        approximate(arguments.pop("target"), arguments.pop("max_params"), **arguments)


@pytest.mark.parametrize(
    "options",
    [
        {"max_params": 0},
        {"beam_width": 0},
        {"permutation": "bogus"},
        {"workers": 0},
        {"include": [1]},
        {"include": None},
        {"rng": 1.5},
        {"rng": -3},
    ],
)
def test_options_are_refused_before_an_operator_target_is_made_dense(options):
    def refuse(x):
        raise AssertionError("the target was read before the options were checked")

    target = spla.LinearOperator((64, 64), matvec=refuse, matmat=refuse, dtype=float)
    arguments = {"max_params": 400, **options}
    with pytest.raises((ValueError, TypeError)):
        approximate(target, arguments.pop("max_params"), **arguments)


@pytest.mark.parametrize(
    "chain",
    [
        Chain([(12, 2, 6, 1, 2), (2, 8, 1, 4, 2), (8, 4, 2, 1, 1), (4, 20, 1, 5, 1)]),
        Chain([(64, 4, 16, 1, 4), (4, 8, 4, 8, 1), (8, 16, 1, 2, 1)]),
        Chain([(36, 12, 3, 1, 12), (12, 4, 3, 1, 4), (4, 2, 2, 1, 2), (2, 6, 2, 6, 1),
               (6, 36, 1, 6, 1)]),
    ],
)  # fmt: skip
def test_an_exact_chain_above_the_budget_does_not_hide_one_within_it(chain):
    # Each product also admits an exact chain with more parameters in the same band of
    # the search (48 -> 52 and 64, ...); that one must not drop the prefixes of the one
    # within the budget.
    target = DeButOperator.random(chain, rng=0).toarray()
    result = approximate(target, chain.n_params, n_sweeps=0, rng=0)
    assert result.chain.n_params <= chain.n_params
    assert result.error < 1e-12


def test_the_budget_is_checked_before_the_target_is_read(tmp_path):
    # A .npy target was read whole (its NaN check) before the budget was refused.
    path = tmp_path / "nan.npy"
    np.save(path, np.full((64, 256), np.nan))
    with pytest.raises(ValueError, match="the smallest has 320"):
        approximate(str(path), 100, max_factors=3)
    products = []
    operator = spla.LinearOperator(
        (64, 256), matvec=lambda x: products.append(x) or np.zeros(64), dtype=np.float64
    )
    with pytest.raises(ValueError, match="the smallest has 320"):
        approximate(operator, 100, max_factors=3)
    assert not products


def test_tol_takes_any_real_number_as_fit_als_does():
    target = np.random.default_rng(0).standard_normal((8, 8))
    for same in [(0.0, np.int64(0)), (0.001, Fraction(1, 1000)), (1.0, 2**64)]:
        results = [approximate(target, 40, tol=tol, n_sweeps=3, rng=0) for tol in same]
        assert len({result.error for result in results}) == 1


def test_targets_with_coinciding_singular_values_are_searched():
    # A DFT's sub-blocks have Gram matrices that are multiples of the identity: the subset
    # eigensolver must still return every kept vector.
    dft = np.fft.fft(np.eye(64), axis=0)
    for target in (dft, dft[::-1], np.eye(64)):
        result = approximate(target, 204, n_sweeps=1, rng=0)
        assert result.error <= result.baseline.error * (1 + 1e-12)


def test_chains_fit_als_refuses_keep_their_hierarchical_factorization(monkeypatch):
    # fit_als refuses chains whose factor updates couple beyond MAX_SYSTEM_ENTRIES
    # (the search proposes such rank-weighted chains on large oscillatory kernels);
    # with the limit below zero, every chain with a coupled update is refused here.
    from pydebut.fit import _als

    target = smooth_kernel(32, 64)
    coupled = Chain([(32, 14, 32, 14, 1), (14, 64, 7, 32, 1)])  # its first update couples
    monkeypatch.setattr(_als, "MAX_SYSTEM_ENTRIES", -1)
    with pytest.raises(_als.CouplingLimitError):
        fit_als(target, coupled, n_sweeps=1)
    result = approximate(target, 900, n_sweeps=2, include=[coupled], rng=0)
    hierarchical = fit_hierarchical(target, coupled).error
    assert result.error <= hierarchical * (1 + 1e-12)
    assert result.error == pytest.approx(true_error(result.operator, target), rel=1e-12)
    fitted = {e.chain: e.error for e in result.explored if e.error is not None}
    if coupled in fitted:
        assert fitted[coupled] == pytest.approx(hierarchical, rel=1e-10)


def test_the_baseline_survives_a_divide_and_conquer_svd_failure(monkeypatch):
    # gesdd can fail to converge on finite matrices (seen single-threaded on a 256 x 256
    # bit-reversed oscillatory kernel); the baseline then comes from gesvd.
    target = smooth_kernel(32, 64)
    expected = approximate(target, 600, n_sweeps=0, rng=0).baseline

    def no_convergence(*args, **kwargs):
        raise np.linalg.LinAlgError("SVD did not converge")

    monkeypatch.setattr(_search.np.linalg, "svd", no_convergence)
    baseline = approximate(target, 600, n_sweeps=0, rng=0).baseline
    assert baseline.rank == expected.rank
    assert baseline.error == pytest.approx(expected.error, rel=1e-10)


def test_butterflies_are_candidates_on_an_oscillatory_kernel():
    # exp(i w x y) with w = 2n, rows in bit-reversed order: the complementary low-rank
    # structure a butterfly captures; at one butterfly's budget the beam alone had kept
    # a block low-rank chain at 0.42 (SVD 0.84), the radix-4 butterfly reaches 0.22.
    from pydebut.fit._search import _Options, butterfly_candidates
    from pydebut.special import bit_reversal

    n = 64
    x = np.arange(n) / n
    target = np.exp(2j * n * np.outer(x, x))[bit_reversal(n)]
    options = _Options.checked(768, 10, 2, 1e-4, 16, 1, 5000, False, 1)
    butterflies = butterfly_candidates(n, n, options)
    assert [len(chain) for chain in butterflies] == [6, 3]
    assert all(chain.n_params <= 768 for chain in butterflies)
    result = approximate(target, 768, n_sweeps=2, rng=0)
    assert result.error <= min(fit_hierarchical(target, c).error for c in butterflies)
    assert 2 * result.error < result.baseline.error


def test_summary_and_repr_stay_one_line_however_many_chains_were_explored():
    target = smooth_kernel(64, 64)
    result = approximate(target, 1500, n_sweeps=1, rng=0)
    assert len(result.explored) > 100
    line = result.summary()
    assert "\n" not in line and len(line) < 300
    assert repr(result) == f"<ApproximationResult: {line}>"
    fitted = sum(e.error is not None for e in result.explored)
    assert f"relative error {result.error:.4g} against {result.baseline.error:.4g}" in line
    assert f"{len(result.explored)} chains explored ({fitted} fitted)" in line


@pytest.mark.parametrize("shape, budget", [((64, 32), 96), ((64, 32), 127), ((12, 8), 20)])
def test_permutation_auto_at_budgets_below_the_search_ladder_top(shape, budget):
    # Every chain of the bit-reversed passes was skipped (over budget, or estimated above
    # the SVD): min() of no candidates raised ValueError.
    target = np.random.default_rng(0).standard_normal(shape)
    plain = approximate(target, budget, rng=0)
    auto = approximate(target, budget, permutation="auto", rng=0)
    assert auto.error <= plain.error
    assert auto.error == pytest.approx(true_error(auto.operator, target), rel=1e-12)


def test_an_included_chain_no_fit_can_take_is_refused_before_the_search(monkeypatch):
    # It was refused by fit_als after the whole search (12 s for a 128 x 128 target), unnamed.
    target = np.random.default_rng(0).standard_normal((64, 64))
    wide = 2048  # the target's shape, outside the hierarchical family, couples too many weights
    chain = Chain([(64, wide, 64, wide, 1), (wide, wide, 1, 1, wide), (wide, 64, wide, 64, 1)])
    included = [Chain.from_factorizations([8, 8], [8, 8]), chain]
    monkeypatch.setattr(_search._BeamSearch, "run", lambda self, each: pytest.fail("searched"))
    with pytest.raises(ValueError, match=r"^include\[1\]: factor 3 of the chain: .* couple"):
        approximate(target, chain.n_params, include=included, rng=0)


@pytest.mark.parametrize(
    "chain",
    [RECOVERABLE[0], RECOVERABLE[3], RECOVERABLE[5]],
    ids=["butterfly", "monarch-like", "bulging"],
)
def test_explored_chains_are_chains_of_the_target(chain):
    # the search of D^H wins on these transposed products: its chains come back as D's
    target = DeButOperator.random(chain, rng=7).toarray().T
    result = approximate(target, chain.n_params, n_sweeps=0, rng=0)
    assert result.error < 1e-11
    assert {e.chain.shape for e in result.explored} == {target.shape}
    assert result.chain in {e.chain for e in result.explored}


def test_the_baseline_rank_of_a_tall_target_is_at_most_its_columns():
    target = np.random.default_rng(0).standard_normal((32, 16))
    result = approximate(target, 10**6, rng=0)
    assert (result.baseline.rank, result.baseline.n_params) == (16, 16 * 48)


def test_workers_beyond_the_usable_cpus_run_as_that_many(monkeypatch):
    sizes = []
    pool = _search.ThreadPoolExecutor

    def recorded(workers, **kwargs):
        sizes.append(workers)
        return pool(workers, **kwargs)

    monkeypatch.setattr(_search, "usable_cpus", lambda: 2)
    monkeypatch.setattr(_search, "ThreadPoolExecutor", recorded)
    target = np.random.default_rng(0).standard_normal((8, 16))
    approximate(target, 60, n_sweeps=0, max_factors=3, rng=0, workers=64)
    assert sizes and set(sizes) == {2}


def test_an_included_chain_above_the_budget_is_skipped_not_refused(monkeypatch):
    # outside the hierarchical family and far above the budget: its ALS updates would
    # couple too many weights, but no fit is asked of it
    target = np.random.default_rng(0).standard_normal((64, 64))
    wide = 2048
    chain = Chain([(64, wide, 64, wide, 1), (wide, wide, 1, 1, wide), (wide, 64, wide, 64, 1)])
    monkeypatch.setattr(_search._BeamSearch, "run", lambda self, each: None)
    result = approximate(target, 400, include=[chain], n_sweeps=0, rng=0)
    assert chain not in {e.chain for e in result.explored}
    assert result.error <= result.baseline.error


def test_an_included_chain_with_exactly_the_budget_is_fitted(monkeypatch):
    # shuffled strides: outside the hierarchical family, the search cannot find it
    chain = Chain([(16, 16, 2, 2, t) for t in (2, 8, 1, 4)])
    assert classify(chain).family == "general" and classify(chain.T).family == "general"
    fitted = []
    fit = _search._fit
    monkeypatch.setattr(
        _search, "_fit", lambda matrix, c, *args: fitted.append(c) or fit(matrix, c, *args)
    )
    target = np.random.default_rng(0).standard_normal((16, 16))
    approximate(target, chain.n_params, include=[chain], n_sweeps=1, max_factors=3, rng=0)
    assert chain in fitted


def test_the_best_estimated_chain_of_a_band_is_polished_by_als(monkeypatch):
    # the refine best front chains of a band (lowest estimates) get ALS, not the worst
    polished = {}
    best_fit = _search._best_fit

    def recorded(matrix, norm, chain, options, seed):
        polished[chain] = options.n_sweeps > 0
        return best_fit(matrix, norm, chain, options, seed)

    monkeypatch.setattr(_search, "_best_fit", recorded)
    x = np.linspace(0, 1, 32)
    target = np.exp(-30 * (x[:, None] - np.linspace(0, 1, 64)) ** 2)
    result = approximate(target, 512, n_sweeps=1, rng=0)  # a power of two: no chain beyond
    best = min(result.explored, key=lambda e: (e.estimate, e.chain.n_params))
    assert polished.get(best.chain) is True
