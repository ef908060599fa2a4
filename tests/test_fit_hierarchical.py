"""Hierarchical factorization: exact recovery, error bookkeeping, admissible chains."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.linalg import hadamard

from pydebut import Chain, fit_hierarchical, hierarchy_ranks
from pydebut.special import PAPER_CHAINS
from pydebut.testing import chainable_chains, rank_weighted_chains

from .fit_cases import PAPER_512, POINTWISE_3_TO_64, dense_product, random_weights

VGG_64x576 = PAPER_CHAINS["vgg16-conv1"]
LENET_128x400 = PAPER_CHAINS["lenet-fc1"]
RANK_WEIGHTED = [
    Chain.from_abcd([(1, 2, 2, 2, 1, 2), (2, 2, 2, 1, 2, 1)]),
    Chain.from_abcd([(1, 2, 3, 2, 1, 2), (3, 2, 1, 1, 2, 3), (3, 1, 2, 1, 3, 1)]),
    Chain([(2, 2, 2, 2, 1), (2, 2, 2, 2, 1)]),
    Chain.from_abcd([(1, 1, 2, 2, 1, 3), (2, 2, 1, 1, 3, 1)]),  # rank 3 > R1 = 1: padded
]
ORDERS = ["left-to-right", "balanced"]


def relative_error(chain, weights, target):
    return np.linalg.norm(dense_product(chain, weights) - target) / np.linalg.norm(target)


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("chain", [VGG_64x576, LENET_128x400, *RANK_WEIGHTED], ids=repr)
@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_exact_recovery(chain, order, dtype):
    target = dense_product(chain, random_weights(chain, np.random.default_rng(0), dtype))
    result = fit_hierarchical(target, chain, order=order)
    assert result.error < 1e-10
    assert relative_error(chain, result.operator.weights, target) < 1e-10
    assert result.operator.weights[0].dtype == dtype


@pytest.mark.slow
@pytest.mark.parametrize("order", ORDERS)
def test_exact_recovery_paper_512x2048(order):
    target = dense_product(PAPER_512, random_weights(PAPER_512, np.random.default_rng(1)))
    result = fit_hierarchical(target, PAPER_512, order=order)
    assert result.error < 1e-10
    assert relative_error(PAPER_512, result.operator.weights, target) < 1e-10


@settings(max_examples=40, deadline=None)
@given(
    chain=st.one_of(chainable_chains(max_dim=48), rank_weighted_chains(max_dim=48)),
    seed=st.integers(0, 2**32 - 1),
    order=st.sampled_from(ORDERS),
)
def test_exact_recovery_of_drawn_chains(chain, seed, order):
    target = dense_product(chain, random_weights(chain, np.random.default_rng(seed)))
    result = fit_hierarchical(target, chain, order=order)
    assert relative_error(chain, result.operator.weights, target) < 1e-10


@pytest.mark.parametrize("k", [1, 2, 5, 8])
def test_hadamard(k):
    chain = Chain.from_factorizations([2] * k, [2] * k)
    target = hadamard(2**k)
    result = fit_hierarchical(target, chain)
    assert result.error < 1e-13
    assert relative_error(chain, result.operator.weights, target) < 1e-13


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("chain", [VGG_64x576, LENET_128x400], ids=repr)
def test_reported_error_is_the_true_error(chain, order):
    target = np.random.default_rng(2).standard_normal(chain.shape)
    result = fit_hierarchical(target, chain, order=order)
    assert 0.1 < result.error < 1
    assert result.error == pytest.approx(relative_error(chain, result.operator.weights, target))


def test_block_diagonal_chain_counts_the_unreachable_part():
    chain = Chain([(8, 8, 2, 2, 2), (8, 8, 2, 2, 1)])  # k_1 = 2: block-diagonal product
    assert chain[0].n_blocks == 2
    rng = np.random.default_rng(3)
    target = rng.standard_normal(chain.shape)
    result = fit_hierarchical(target, chain)
    assert result.error == pytest.approx(relative_error(chain, result.operator.weights, target))
    exact = dense_product(chain, random_weights(chain, rng))
    assert fit_hierarchical(exact, chain).error < 1e-12


def test_two_factor_split_is_the_optimal_rank_one_fit():
    chain = Chain.from_factorizations([3, 4], [5, 2])
    target = np.random.default_rng(4).standard_normal(chain.shape)
    # Sub-block (sigma_1, rho_2) is the 3 x 2 matrix target[rho_2::4, 2*sigma_1:2*sigma_1+2];
    # the best rank-one fits leave their second singular values.
    second = [
        np.linalg.svd(target[b::4, 2 * c : 2 * c + 2], compute_uv=False)[1]
        for b in range(4)
        for c in range(5)
    ]
    expected = np.linalg.norm(second) / np.linalg.norm(target)
    assert fit_hierarchical(target, chain).error == pytest.approx(expected)


def test_ranks():
    assert hierarchy_ranks(PAPER_512) == (1,) * 8
    assert hierarchy_ranks(RANK_WEIGHTED[0]) == (2,)
    assert hierarchy_ranks(RANK_WEIGHTED[1]) == (2, 3)


def test_non_chainable_chain_suggests_fit_als():
    with pytest.raises(ValueError, match=r"factors 2 and 3 .* use fit_als"):
        fit_hierarchical(np.ones(POINTWISE_3_TO_64.shape), POINTWISE_3_TO_64)


def test_bad_input():
    chain = Chain.from_factorizations([2, 2], [2, 2])
    with pytest.raises(ValueError, match="order must be"):
        fit_hierarchical(np.ones((4, 4)), chain, order="random")
    with pytest.raises(ValueError, match="non-finite"):
        fit_hierarchical(np.full((4, 4), np.inf), chain)
    with pytest.raises(ValueError, match="shape"):
        fit_hierarchical(np.ones((4, 5)), chain)


def test_zero_target():
    chain = Chain.from_factorizations([2, 2], [2, 2])
    result = fit_hierarchical(np.zeros((4, 4)), chain)
    assert result.error == 0
    assert all(np.all(np.isfinite(w)) for w in result.operator.weights)


NOISY_CHAINS = [
    Chain([(16, 16, 2, 2, 8), (16, 16, 2, 2, 4), (16, 16, 2, 2, 2), (16, 16, 2, 2, 1)]),
    Chain.from_factorizations([4, 2, 2, 4], [2, 4, 4, 2]),
    VGG_64x576,
    LENET_128x400,
]


@pytest.mark.parametrize("chain", NOISY_CHAINS, ids=repr)
def test_balanced_order_matches_left_to_right_on_noisy_targets(chain):
    # Before each split the other pieces are made orthonormal, so the split minimises
    # the error of the whole product; without that, balanced was up to 2.6x worse here.
    # The two orders reach different local optima: within 2% either way (pyfaust's
    # GBfactorize gives the same numbers).
    for seed in range(4):
        rng = np.random.default_rng(seed)
        exact = dense_product(chain, random_weights(chain, rng))
        noise = rng.standard_normal(chain.shape)
        target = exact + 0.1 * np.linalg.norm(exact) / np.linalg.norm(noise) * noise
        peeled = fit_hierarchical(target, chain, order="left-to-right")
        balanced = fit_hierarchical(target, chain, order="balanced")
        assert balanced.error <= 1.025 * peeled.error
        assert balanced.error == pytest.approx(
            relative_error(chain, balanced.operator.weights, target), rel=1e-10
        )
