"""Exact density (the paper's bipolar test) against boolean and numeric products."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings

from pydebut import Chain, classify, is_dense, product_support, rank_weights
from pydebut import _reference as reference_module
from pydebut import density as density_module
from pydebut.density import DensityResult, is_dense_numeric, partial_supports
from pydebut.special import butterfly_chain

from .strategies_chains import chainable_chains, general_chains, rank_weighted_chains

# The 3 -> 64 point-wise convolution chain of DESIGN.md section 2, application order.
R_SHAPES_3_TO_64 = [[4, 3, 4, 3, 1], [8, 4, 2, 1, 4], [16, 8, 2, 1, 4], [32, 16, 2, 1, 16],
                    [64, 32, 2, 1, 32]]  # fmt: skip


def boolean_product(chain: Chain) -> np.ndarray:
    """Support of F_1 ... F_L from dense boolean matrices, multiplied as integers."""
    product = chain[0].support().astype(np.int64)
    for spec in chain.factors[1:]:
        product = ((product @ spec.support().astype(np.int64)) > 0).astype(np.int64)
    return product > 0


def first_gap(support: np.ndarray) -> tuple[int, int] | None:
    gaps = np.argwhere(~support)
    return None if gaps.size == 0 else (int(gaps[0, 0]), int(gaps[0, 1]))


def assert_agrees(chain: Chain) -> None:
    expected = boolean_product(chain)
    result = is_dense(chain)
    assert result.dense == expected.all()
    assert bool(result) == result.dense
    assert result.missing == first_gap(expected)
    np.testing.assert_array_equal(product_support(chain), expected)
    numeric = is_dense_numeric(chain, random_state=0)
    assert numeric.dense == result.dense
    assert numeric.missing == result.missing


@given(general_chains())
def test_is_dense_agrees_with_boolean_product_on_any_valid_chain(chain):
    assert_agrees(chain)


@given(general_chains(max_dim=200, max_factors=3))
@settings(deadline=None)
def test_reachability_in_small_chunks_agrees(chain):
    saved = density_module._REACH_CHUNK_BYTES
    density_module._REACH_CHUNK_BYTES = 1  # one 64-bit word of inputs per chunk
    try:
        n_chunks = len(list(density_module._reach_chunks(chain)))
        assert n_chunks == -(-chain.shape[1] // 64)
        assert_agrees(chain)
    finally:
        density_module._REACH_CHUNK_BYTES = saved


@given(chainable_chains())
def test_chainable_chains_are_dense_in_constant_time(chain):
    result = is_dense(chain)
    assert result == DensityResult(True, None, "chainable")
    assert boolean_product(chain).all()


@given(rank_weighted_chains())
def test_rank_weighted_chains_are_recognised_and_dense(drawn):
    chain, weights = drawn
    assert rank_weights(chain) == weights
    assert classify(chain).rank == max(weights)
    expected_method = "chainable" if set(weights) == {1} else "rank-weighted"
    assert is_dense(chain).method == expected_method
    assert classify(chain).family == expected_method
    assert boolean_product(chain).all()


@given(general_chains())
def test_recognised_rank_weights_rebuild_the_chain(chain):
    weights = rank_weights(chain)
    if weights is None:
        assert classify(chain).family == "general"
        return
    # Rebuild through Le et al.'s (a, b, c, d, p, q) tuples, as DESIGN.md writes them.
    ws = (1, *weights, 1)
    bs = [f.r // ws[l] for l, f in enumerate(chain)]  # noqa: E741
    cs = [f.s // ws[l + 1] for l, f in enumerate(chain)]  # noqa: E741
    tuples = [
        (int(np.prod(cs[:l])), bs[l], cs[l], int(np.prod(bs[l + 1 :])), ws[l], ws[l + 1])
        for l in range(len(chain))  # noqa: E741
    ]
    assert Chain.from_abcd(tuples) == chain


def test_design_three_to_sixty_four_chain_is_dense_but_not_chainable():
    chain = Chain.from_r_shapes(R_SHAPES_3_TO_64)
    assert chain.shape == (64, 3)
    assert not chain.is_chainable
    assert rank_weights(chain) is None
    result = is_dense(chain)
    assert result.dense and result.method == "reachability"
    assert_agrees(chain)


def radix2_stages(n_bits: int, strides: list[int]) -> Chain:
    """Butterfly stages ``(N, N, 2, 2, 2**b)`` in the given order; each toggles bit ``b``."""
    size = 2**n_bits
    return Chain([(size, size, 2, 2, 2**b) for b in strides])


def test_butterfly_stages_in_reverse_order_are_dense_not_chainable():
    chain = radix2_stages(8, list(range(8)))  # t grows left to right: k_1 = 128
    assert not chain.is_chainable
    assert_agrees(chain)
    assert is_dense(chain).dense


def test_a_chain_whose_transpose_is_chainable_is_dense_at_once(monkeypatch):
    # Before: butterfly_chain(2**16).T asked every output's reach, 2,147,483,648 word
    # operations, and was refused above MAX_REACH_WORK while butterfly_chain(2**16) answered.
    monkeypatch.setattr(density_module, "_decide", None)  # must not be reached
    result = is_dense(butterfly_chain(2**16).T)
    assert result.dense and result.method == "transpose chainable"
    assert str(result) == "dense (transpose chainable)"
    assert is_dense(butterfly_chain(2**16)).method == "chainable"
    weighted = Chain.from_abcd([(1, 2, 2, 2, 1, 3), (2, 2, 2, 1, 3, 1)])
    assert is_dense(weighted.T).method == "transpose rank-weighted"


def test_butterfly_missing_a_bit_reports_first_unreachable_input():
    strides = [0, 1, 2, 3, 4, 5, 6, 6]  # bit 7 is never toggled
    chain = radix2_stages(8, strides)
    assert_agrees(chain)
    assert is_dense(chain).missing == (0, 128)


def test_large_non_chainable_chain_is_decided_exactly():
    strides = [11, 0, 10, 1, 9, 2, 8, 3, 7, 4, 6, 5]
    assert is_dense(radix2_stages(12, strides)).dense
    broken = radix2_stages(12, [*strides[:-1], 4])  # bit 5 is never toggled
    result = is_dense(broken)
    assert not result.dense
    assert result.missing == (0, 32)
    assert result.method == "reachability"


def test_wide_chain_uses_outputs_as_bits():
    # m < n: the transposed chain is propagated; the first gap is still row-major.
    chain = Chain([(2, 2, 1, 1, 2), (2, 8, 1, 4, 2)])
    assert chain.shape == (2, 8)
    assert_agrees(chain)
    assert is_dense(chain).missing == (0, 1)


def packed_work(chain: Chain) -> int:
    """MAX_REACH_WORK's count: ceil(min(m, n) / 64) words for each of the sum(p_l + q_l)."""
    return -(-min(chain.shape) // 64) * sum(spec.p + spec.q for spec in chain)


def test_supports_of_a_wide_chain_pack_its_outputs(monkeypatch):
    # 2 x 2**16: packing the 65,536 inputs would cost 1,024 words per coordinate
    # (67 M word operations, 16.7 s at 2 x 2**19); packing the 2 outputs costs one.
    chain = Chain([(2, 8, 1, 4, 2), (8, 2**16, 1, 2**13, 8)])
    words_moved = []
    propagate = density_module._propagate

    def counted(weight_shape, words):
        rows = propagate(weight_shape, words)
        words_moved.append(words.size + rows.size)
        return rows

    monkeypatch.setattr(density_module, "_propagate", counted)
    np.testing.assert_array_equal(product_support(chain), boolean_product(chain))
    assert sum(words_moved) <= packed_work(chain) == 2**16 + 18
    words_moved.clear()
    supports = partial_supports(chain)
    for support, first in zip(supports, [1, 0], strict=True):
        np.testing.assert_array_equal(support, boolean_product(chain[first:]))
        assert support.flags.c_contiguous
    assert sum(words_moved) <= packed_work(chain[1:]) + packed_work(chain)


def test_partial_supports_densify_towards_the_output():
    chain = Chain.from_factorizations([2, 2, 2], [2, 2, 2])
    supports = partial_supports(chain)
    assert [s.shape for s in supports] == [(8, 8)] * 3
    assert [int(s.sum()) for s in supports] == [16, 32, 64]
    np.testing.assert_array_equal(supports[-1], boolean_product(chain))


def test_density_result_reads_as_a_sentence():
    assert str(is_dense(Chain.from_factorizations([2], [3]))) == "dense (chainable)"
    text = str(is_dense([(4, 4, 2, 2, 1), (4, 4, 2, 2, 1)]))
    assert text == "not dense: output 0 is not connected to input 2 (reachability)"


@pytest.mark.parametrize("bad", [[], "chain", [(4, 4, 2, 2, 3)]])
def test_is_dense_rejects_invalid_chains(bad):
    with pytest.raises((TypeError, ValueError)):
        is_dense(bad)


def test_first_missing_pair_in_a_later_chunk_beats_earlier_chunks_gaps():
    # With 64-input chunks, chunk 0 has gaps (the first at (96, 0)) but the first
    # missing pair in row-major order, (0, 64), lies in chunk 1.
    chain = Chain([(192, 192, 2, 2, 8), (192, 96, 4, 2, 24), (96, 128, 24, 32, 1)])
    support = boolean_product(chain)
    assert not support[:, :64].all() and support[0, :64].all()
    saved = density_module._REACH_CHUNK_BYTES
    density_module._REACH_CHUNK_BYTES = 1
    try:
        assert len(list(density_module._reach_chunks(chain))) == 2
        assert density_module._first_missing(chain) == (0, 64)
        assert density_module._first_missing(chain.T) == (0, 96)
        assert is_dense(chain).missing == (0, 64)
        np.testing.assert_array_equal(product_support(chain), support)
    finally:
        density_module._REACH_CHUNK_BYTES = saved
    assert is_dense_numeric(chain, random_state=0).missing == (0, 64)


def _no_dense_product(chain, weights):
    raise AssertionError("is_dense_numeric formed a dense product it should have refused")


@pytest.mark.parametrize(
    ("chain", "limit"),
    [
        (butterfly_chain(4096), "MAX_NUMERIC_WORK"),  # 7.6e11 multiply-adds
        (butterfly_chain(2**20), "MAX_NUMERIC_WORK"),  # 8 TiB per dense factor
        (Chain([(2**14, 2**14, 1, 1, 2**14)]), "MAX_NUMERIC_ENTRIES"),  # one 2 GiB factor
    ],
)
def test_is_dense_numeric_refuses_large_chains_before_any_dense_work(chain, limit, monkeypatch):
    monkeypatch.setattr(reference_module, "chain_to_dense", _no_dense_product)
    with pytest.raises(ValueError, match=rf"{limit} = .* of pydebut\.density; is_dense\(\)"):
        is_dense_numeric(chain, random_state=0)


def test_is_dense_numeric_names_a_bad_random_state():
    chain = [(4, 4, 2, 2, 1), (4, 4, 2, 2, 2)]
    # NumPy takes True as the seed 1
    with pytest.raises(TypeError, match="random_state must be None, a non-negative integer"):
        is_dense_numeric(chain, random_state=True)
    with pytest.raises(ValueError, match="random_state must be .* got -1"):
        is_dense_numeric(chain, random_state=-1)


def counted_steps(monkeypatch) -> list:
    """The weight shapes of the factor steps the reach sets take from now on."""
    steps = []
    propagate = density_module._propagate

    def counted(weight_shape, words):
        steps.append(weight_shape)
        return propagate(weight_shape, words)

    monkeypatch.setattr(density_module, "_propagate", counted)
    return steps


def test_partial_supports_of_a_long_chain_take_one_pass(monkeypatch):
    # Before: each of the L partial products was computed from scratch, L (L + 1) / 2 factor
    # steps of about 9 us each: 2,000 factors of 2 x 2 took 57 s, all within MAX_REACH_WORK.
    steps = counted_steps(monkeypatch)
    chain = Chain([(4, 4, 2, 2, 1), (4, 4, 2, 2, 2)] * 150)
    supports = partial_supports(chain)
    assert len(steps) == chain.n_factors
    for first in (0, 1, 150, 298, 299):
        np.testing.assert_array_equal(supports[-1 - first], boolean_product(chain[first:]))


@pytest.mark.parametrize(
    ("chain", "n_steps"),
    [
        (Chain([(2, 8, 1, 4, 2), (8, 2**12, 1, 2**9, 8)]), 3),  # wide: each alone
        (Chain([(2**12, 8, 2**9, 1, 8), (8, 2, 4, 1, 2)]), 2),  # tall: one pass
        (Chain.from_factorizations([3, 2, 2], [2, 5, 3]), 3),
    ],
)
def test_partial_supports_either_way_are_the_boolean_products(monkeypatch, chain, n_steps):
    steps = counted_steps(monkeypatch)
    supports = partial_supports(chain)
    assert len(steps) == n_steps
    for first in range(chain.n_factors):
        support = supports[chain.n_factors - 1 - first]
        np.testing.assert_array_equal(support, boolean_product(chain[first:]))
        assert support.flags.c_contiguous


def test_a_wide_chain_whose_first_gap_is_past_row_0_reports_it():
    # m < n reads the reach sets bit by bit; a test never reached a gap past row 0 there
    chain = Chain([(8, 24, 1, 3, 1), (24, 12, 2, 1, 4), (12, 24, 4, 8, 3)])
    assert is_dense(chain).missing == (1, 2)
    assert_agrees(chain)
    assert_agrees(chain.T)


#: Radix-2 stages of the 128 x 128 butterfly in a shuffled order: dense, neither it nor its
#: transpose chainable or rank-weighted, and gcd(k_l) = gcd(t_l) = 1.
SHUFFLED_BUTTERFLY = Chain([(128, 128, 2, 2, t) for t in (8, 1, 64, 2, 32, 4, 16)])


def test_every_outputs_reach_is_refused_beyond_max_reach_work(monkeypatch):
    # output 0's reach costs sum(p + q) = 1792 word operations, every output's twice that
    assert is_dense(SHUFFLED_BUTTERFLY).method == "reachability"
    monkeypatch.setattr(density_module, "MAX_REACH_WORK", 2 * 1792)
    assert is_dense(SHUFFLED_BUTTERFLY).dense  # at the limit: computed
    monkeypatch.setattr(density_module, "MAX_REACH_WORK", 2 * 1792 - 1)
    with pytest.raises(ValueError, match="every output's reach"):
        is_dense(SHUFFLED_BUTTERFLY)


def test_a_common_diagonal_stride_is_decided_from_the_reduced_chain():
    # gcd(t_l) = h > 1: the product keeps i mod h and the chain shrunk by h decides, at
    # once, where the 2**30 x 2**30 chain itself is beyond MAX_REACH_WORK
    n = 2**30
    result = is_dense([(n, n, 2, 2, n // 2), (n, n, 2, 2, n // 4)])
    assert (result.dense, result.missing) == (False, (0, 1))


def test_product_support_limit_is_inclusive(monkeypatch):
    chain = [(4, 4, 2, 2, 1), (4, 4, 2, 2, 2)]  # a 4 x 4 support: 16 booleans
    monkeypatch.setattr(density_module, "MAX_SUPPORT_ENTRIES", 16)
    assert product_support(chain).shape == (4, 4)
    monkeypatch.setattr(density_module, "MAX_SUPPORT_ENTRIES", 15)
    with pytest.raises(ValueError, match="MAX_SUPPORT_ENTRIES"):
        product_support(chain)


def test_partial_supports_are_refused_only_when_the_cheaper_way_is_too_costly(monkeypatch):
    # each partial product alone costs 32,776 word operations, one pass through the
    # chain 278,912
    chain = Chain([(2, 2, 2, 2, 1), (2, 4096, 1, 2048, 2)])
    monkeypatch.setattr(density_module, "MAX_REACH_WORK", 100_000)
    assert [s.shape for s in partial_supports(chain)] == [(2, 4096), (2, 4096)]
    monkeypatch.setattr(density_module, "MAX_REACH_WORK", 32_775)
    with pytest.raises(ValueError, match="MAX_REACH_WORK"):
        partial_supports(chain)


def test_is_dense_numeric_limit_counts_every_product(monkeypatch):
    chain = [(4, 4, 2, 2, 1), (4, 4, 2, 2, 2)]  # m * p_2 * q_2 = 64 multiply-adds
    monkeypatch.setattr(density_module, "MAX_NUMERIC_WORK", 64)
    assert is_dense_numeric(chain, random_state=0)
    monkeypatch.setattr(density_module, "MAX_NUMERIC_WORK", 63)
    with pytest.raises(ValueError, match="MAX_NUMERIC_WORK"):
        is_dense_numeric(chain, random_state=0)
