"""Requests beyond the documented limits are refused up front, with a message that names them."""

from __future__ import annotations

import heapq
import itertools
import re
import subprocess
import sys
import tracemalloc
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pydebut import (
    Chain,
    DeButOperator,
    FactorSpec,
    aligned_empty,
    approximate,
    candidate_permutations,
    count_chains,
    enumerate_chains,
    fit_als,
    fit_hierarchical,
    is_dense,
    min_param_chain,
    pareto_front,
    product_support,
)
from pydebut import _memory as memory_module
from pydebut import chains as chains_module
from pydebut import density as density_module
from pydebut.chains import MAX_GRAPH_MOVES, _divisors, _request, graph_size
from pydebut.conv import im2col
from pydebut.density import partial_supports
from pydebut.fit import _search as search_module
from pydebut.special import bit_reversal, butterfly_chain, dft, hadamard

from .example_counts import examples
from .strategies_chains import general_chains


@pytest.fixture
def no_graph_walk(monkeypatch):
    """Fail if a search starts walking its state graph."""

    def refuse(*args, **kwargs):
        raise AssertionError("the state graph was walked before the request was refused")

    monkeypatch.setattr(chains_module._Graph, "moves", refuse)
    monkeypatch.setattr(chains_module._Graph, "summary", refuse)


@pytest.mark.parametrize(
    "call",
    [
        lambda: count_chains(720720, 720720, n_factors=3, kind="monotonic"),
        lambda: min_param_chain(720720, 720720, 3),
        lambda: pareto_front(720720, 720720, n_factors=range(1, 5)),
        lambda: count_chains(64, 64, n_factors=3, rank=10**6),
        lambda: enumerate_chains(5040, 5040, n_factors=range(1, 65), kind="bulging"),
        lambda: enumerate_chains(5040, 5040, n_factors=6, order="params"),
    ],
)
def test_large_state_graphs_are_refused_before_the_walk(call, no_graph_walk):
    with pytest.raises(ValueError, match="MAX_GRAPH_MOVES") as info:
        call()
    message = str(info.value)
    assert f"{MAX_GRAPH_MOVES:,}" in message and "narrow the request" in message


@pytest.mark.parametrize(
    ("size", "request_", "ways"),
    [
        (
            10080,
            dict(n_factors=3, kind="monotonic"),
            'fewer factors, or sizes with fewer divisors; or widen it to kind "any", whose graph '
            "is smaller (1,296,324 moves; pydebut.classify tells the monotonic chains among",
        ),
        (720720, dict(n_factors=3, kind="monotonic"), "fewer factors, or sizes with"),
        (720720, dict(n_factors=3, kind="any", rank=3), "fewer factors, a smaller rank, or sizes"),
        (720720, dict(n_factors=range(2, 7), max_params=10**8), "fewer factors, or sizes"),
    ],
)
def test_the_refusal_names_only_changes_that_narrow_the_request(
    size, request_, ways, no_graph_walk
):
    # kind "any" only where its graph is within the limit (10080: 1.3M moves; 720720: 53M),
    # and not as a narrowing: it asks for chains of every kind
    with pytest.raises(ValueError, match="narrow the request: " + re.escape(ways)):
        count_chains(size, size, **request_)


def test_huge_factor_ranges_are_refused_without_listing_them(no_graph_walk):
    with pytest.raises(ValueError, match=re.escape("at most 64, got range(1, 1000000000000)")):
        count_chains(64, 64, n_factors=range(1, 10**12))
    with pytest.raises(ValueError, match="at most 64, got 65"):
        count_chains(64, 64, n_factors=iter(range(1, 10**12)))


def test_a_listing_whose_first_factor_has_too_many_choices_is_refused(no_graph_walk):
    size = 963761198400  # 6,720 divisors: 45 million choices of (b_1, c_1)
    with pytest.raises(ValueError, match="has 45,158,400 choices"):
        enumerate_chains(size, size, n_factors=2)
    assert count_chains(size, size, n_factors=2) > 0  # closed form


def test_a_count_within_a_budget_follows_at_most_max_budget_moves(monkeypatch):
    # Each (state, remaining budget) pair sums over up to ~1000 moves: the limit counts
    # moves followed (summary lookups), not pairs (the 1,618 pairs of this count).
    request = dict(n_factors=range(1, 6), kind="any", max_params=8000)
    exact = count_chains(64, 4096, **request)
    lookups = 0
    summary = chains_module._Graph.summary

    def counted(self, state):
        nonlocal lookups
        lookups += 1
        return summary(self, state)

    monkeypatch.setattr(chains_module._Graph, "summary", counted)
    everything = count_chains(64, 4096, **(request | dict(max_params=2**60)))  # the graph alone
    assert everything > exact
    graph_lookups, lookups = lookups, 0
    monkeypatch.setattr(chains_module, "MAX_BUDGET_MOVES", 1000, raising=False)
    with pytest.raises(ValueError, match="reached 1,000 moves") as error:
        count_chains(64, 4096, **request)
    assert type(error.value).__name__ == "CountLimitError"
    assert lookups <= graph_lookups + 1000


def test_a_lex_listing_builds_the_moves_it_follows_not_every_choice(monkeypatch):
    # 55440 has 120 divisors: the first factor alone has 14,400 choices (b_1, c_1).
    built = 0
    move = chains_module._Move

    def counted(*fields):
        nonlocal built
        built += 1
        return move(*fields)

    monkeypatch.setattr(chains_module, "_Move", counted)
    first = next(enumerate_chains(55440, 55440, n_factors=4))
    assert first.n_factors == 4 and built < 100


@pytest.mark.parametrize("order", ["params", "max_dim"])
def test_an_ordered_listing_adds_at_most_one_frontier_entry_per_step(monkeypatch, order):
    # 4096 x 4096: a state has up to 13 x 13 choices (b_l, c_l); a step of the search
    # (a pop) pushes its next sibling and its first child, not all of its choices.
    largest, pops = 0, 0

    def push(heap, item):
        nonlocal largest
        heapq.heappush(heap, item)
        largest = max(largest, len(heap))

    def pop(heap):
        nonlocal pops
        pops += 1
        return heapq.heappop(heap)

    counted = SimpleNamespace(**{**vars(heapq), "heappush": push, "heappop": pop})
    monkeypatch.setattr(chains_module, "heapq", counted)
    counts = range(1, 6)
    chains = enumerate_chains(4096, 4096, n_factors=counts, order=order)
    listed = list(itertools.islice(chains, 500))
    assert len(listed) == 500 and pops >= 500
    assert largest <= len(counts) + pops


def test_unfiltered_requests_need_no_graph(no_graph_walk):
    # closed forms: any size, any number of factors, no graph
    assert count_chains(5040, 5040, n_factors=range(1, 65)) == 4159038066048
    assert count_chains(720720, 720720, n_factors=3) == 52971303


def test_unfiltered_enumeration_starts_at_once_on_composite_sizes():
    # The count of completions comes in closed form, so the first chain needs no graph.
    first = next(enumerate_chains(5040, 5040, n_factors=4))
    assert first.shape == (5040, 5040) and first.n_factors == 4
    assert len(list(zip(range(50), enumerate_chains(720720, 720720, n_factors=range(1, 65))))) == 50


@given(
    m=st.integers(1, 200),
    n=st.integers(1, 200),
    n_factors=st.integers(1, 4),
    kind=st.sampled_from(["any", "monotonic", "bulging", "other"]),
    rank=st.integers(1, 3),
)
@settings(deadline=None, max_examples=examples(40))
def test_graph_size_bounds_the_moves_a_search_examines(m, n, n_factors, kind, rank):
    if kind in ("bulging", "other") and n_factors == 1:
        return
    request = _request(m, n, n_factors, kind, None, None, rank, False)
    graph = request.graph(exact=True)
    graph.summary(graph.root(n_factors))
    examined = sum(
        1
        if state.left == 1
        else len(_divisors(state.m_rest)) * len(_divisors(n // state.n_done)) * rank
        for state in graph._summaries
        if state.left
    )
    assert examined <= graph_size(m, n, n_factors, kind=kind, rank=rank)


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        ((8, 8, 2), {"kind": "foo"}, "kind must be one of"),
        ((8, 8, 2), {"kind": ["any"]}, "kind must be one of"),  # was: unhashable type
        ((-8, 8, 0), {}, "m must be"),
        ((8.5, 8, 2), {}, "m must be"),
        ((8, 8, 2), {"rank": 0}, "rank must be"),
    ],
)
def test_graph_size_checks_its_arguments(arguments, error, message):
    with pytest.raises((ValueError, TypeError), match=message):
        graph_size(*arguments, **error)


def test_an_endless_n_factors_iterable_is_refused():
    with pytest.raises(ValueError, match="n_factors gives more than 1024 values"):
        count_chains(8, 8, n_factors=itertools.repeat(3))


# --- density ----------------------------------------------------------------------


@pytest.mark.parametrize("exponent", [20, 40])
def test_block_diagonal_chains_are_decided_from_their_structure(exponent):
    size = 2**exponent
    tracemalloc.start()
    try:
        result = is_dense([(size, size, 2, 2, 1)] * 2)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (result.dense, result.missing) == (False, (0, 2))
    assert peak < 1 << 20


@given(general_chains(max_dim=96, max_factors=3), st.integers(2, 3), st.integers(1, 3))
@settings(deadline=None, max_examples=examples(40))
def test_block_and_residue_reductions_agree_with_reachability(chain, blocks, residues):
    # Widen a chain into `blocks` diagonal copies, each interleaving `residues` copies.
    widened = Chain(
        [
            (f.p * blocks * residues, f.q * blocks * residues, f.r, f.s, f.t * residues)
            for f in chain
        ]
    )
    support = product_support(widened)
    gaps = np.argwhere(~support)
    assert is_dense(widened).missing == tuple(int(x) for x in gaps[0])


def test_density_beyond_the_work_limit_is_refused_up_front(monkeypatch):
    # 16 radix-2 stages, strides alternating from both ends: neither the chain nor its
    # transpose is chainable, nothing to reduce, dense.
    strides = [15, 0, 14, 1, 13, 2, 12, 3, 11, 4, 10, 5, 9, 6, 8, 7]
    chain = Chain([(2**16, 2**16, 2, 2, 2**b) for b in strides])
    monkeypatch.setattr(density_module, "_first_missing", None)  # must not be reached
    with pytest.raises(ValueError, match="MAX_REACH_WORK") as info:
        is_dense(chain)
    assert "every output's reach" in str(info.value)
    assert "cannot decide" in str(info.value)
    with pytest.raises(ValueError, match="MAX_SUPPORT_ENTRIES"):
        product_support([(2**16, 2**16, 2, 2, 1)])
    with pytest.raises(ValueError, match="MAX_SUPPORT_ENTRIES"):
        partial_supports([(2**15, 2**15, 2, 2, 1)] * 2)


def test_partial_supports_count_what_they_return(monkeypatch):
    # F_l ... F_L is p_l x n: a 1 x 256 chain of 30 factors returns 256 (1 + 29 * 256)
    # booleans, where m * sum(q_l) counts 7,680
    monkeypatch.setattr(density_module, "MAX_SUPPORT_ENTRIES", 2**20)
    n = 2**8
    chain = Chain([(1, n, 1, n, 1)] + [(n, n, 1, 1, n)] * 29)
    with pytest.raises(ValueError, match="hold 1,900,800 booleans"):
        partial_supports(chain)
    fits = chain[:4]
    assert sum(s.size for s in partial_supports(fits)) == n * sum(f.p for f in fits) <= 2**20


# --- allocations beyond the machine's memory ------------------------------------------

HUGE = 2**40


@pytest.mark.parametrize(
    ("call", "words"),
    [
        (lambda: DeButOperator.random([(HUGE, HUGE, 2, 2, 1)]), "2,199,023,255,552 weights"),
        (lambda: DeButOperator.identity([(HUGE, HUGE, 2, 2, 1)]), "weights needs 16 TiB"),
        (
            lambda: hadamard(HUGE),
            "hadamard(n) with n = 2**40 (87,960,930,222,080 weights) needs 640 TiB",
        ),
        (lambda: FactorSpec(HUGE, HUGE, 2, 2, 1).support(), "the support of FactorSpec"),
        (lambda: FactorSpec(HUGE, HUGE, 2, 2, 1).support_indices(), "support indices"),
        (lambda: DeButOperator.random([(2**20, 2**20, 1, 1, 1)]).toarray(), "dense 1048576"),
        (lambda: aligned_empty((HUGE, 8)), f"aligned_empty(({HUGE}, 8), float64) needs 64 TiB"),
        (lambda: bit_reversal(HUGE), f"bit_reversal({HUGE}) needs 8 TiB"),
        (lambda: candidate_permutations(HUGE, 8), f"candidate_permutations({HUGE}, 8) needs 8 TiB"),
        # sizes beyond a float's range, and counts beyond 4300 digits (Python will not print them)
        (
            lambda: hadamard(2**3000),
            "n = 2**3000 (about 2**3012 weights) needs about 2**3015 bytes",
        ),
        (lambda: dft(2**14000), "n = 2**14000 (about 2**14014 weights) needs about 2**14018 bytes"),
        (lambda: bit_reversal(2**3000), "bit_reversal(<integer of about 904 digits>)"),
        (lambda: candidate_permutations(2**3000, 2**3000), "needs about 2**3004 bytes"),
        (lambda: FactorSpec(2**1100, 2**1100, 1, 1, 1).support(), "needs about 2**2200 bytes"),
        (lambda: aligned_empty((2**600, 2**600)), "needs about 2**1203 bytes"),
        (lambda: DeButOperator.random([(2**1100,) * 2 + (1, 1, 2**1100)]), "about 2**1100 weights"),
    ],
)
def test_allocations_beyond_memory_are_refused_with_a_value_error(call, words):
    with pytest.raises(ValueError, match="more than this machine's memory") as info:
        call()
    assert words in str(info.value)


@pytest.mark.parametrize("make", [hadamard, dft])
def test_known_operators_are_refused_before_their_chain_is_made(make, monkeypatch):
    made = []
    monkeypatch.setattr(Chain, "from_factorizations", lambda *args: made.append(args))
    with pytest.raises(ValueError, match="more than this machine's memory"):
        make(2**14000)  # 14,000 factors: the chain alone took 4 s
    assert not made


@pytest.mark.parametrize("make", [butterfly_chain, hadamard, dft, bit_reversal])
def test_sizes_of_more_than_4300_digits_are_named_in_the_error(make):
    with pytest.raises(ValueError, match="n must be a power of two .* about 5001 digits"):
        make(10**5000)


def test_the_memory_check_comes_before_the_allocation(monkeypatch):
    monkeypatch.setattr(memory_module, "physical_memory", lambda: 4000)
    chain = [(64, 64, 8, 8, 1)] * 2  # 512 weights each: 8 KiB in float64, 12 KiB while built
    calls = []

    class Recorder:
        def standard_normal(self, shape):
            calls.append(shape)
            return np.zeros(shape)

    monkeypatch.setattr(np.random, "default_rng", lambda seed=None: Recorder())
    with pytest.raises(
        ValueError, match=re.escape("needs 12 KiB, more than this machine's memory (3.91 KiB)")
    ):
        DeButOperator.random(chain)
    assert not calls
    op = DeButOperator.random([(8, 8, 2, 2, 1)], dtype=np.float32)  # 64 bytes
    with pytest.raises(ValueError, match="apply the operator to vectors"):
        DeButOperator.identity([(64, 64, 1, 1, 1)]).toarray()
    assert op.toarray().shape == (8, 8)


def test_the_memory_check_counts_the_weights_in_the_operators_dtype(monkeypatch):
    # 16 weights: 64 bytes in float32 (bool weights), 128 in float64 (int64 weights)
    monkeypatch.setattr(memory_module, "physical_memory", lambda: 100)
    chain = [(8, 8, 2, 2, 1)]
    assert DeButOperator(chain, [np.ones((4, 2, 2, 1), dtype=bool)]).dtype == np.float32
    with pytest.raises(ValueError, match="needs 128 bytes, more than this machine's memory"):
        DeButOperator(chain, [np.ones((4, 2, 2, 1), dtype=np.int64)])
    # weights that are no array yet are counted at the least, float32, before converting
    monkeypatch.setattr(memory_module, "physical_memory", lambda: 40)
    converted = []

    class Lazy:
        def __array__(self, dtype=None, copy=None):
            converted.append(dtype)
            return np.ones((4, 2, 2, 1))

    with pytest.raises(ValueError, match="needs 64 bytes, more than this machine's memory"):
        DeButOperator(chain, [Lazy()])
    assert not converted


def test_hierarchical_splits_decompose_the_gram_matrices_of_the_smaller_side(monkeypatch):
    # The 512 sub-blocks of 256 x 2 (rows 2 r + b and columns 2 c + s of the target) were
    # decomposed through their 256 x 256 Gram matrices M M^H: 256 MiB, and as much for the
    # eigenvectors, for a target of 2 MiB, refused on a machine of 256 MiB (1024 x 1024 on
    # [512, 2], [512, 2]: 27 s and 4.15 GiB; 2048 x 2048 refused, "needs 32 GiB"). Their 2 x 2
    # Gram matrices M^H M give the same rank-one approximations.
    chain = Chain.from_sup_sub("512 512 512 512", "256 256 2 2 2 1")
    target = np.random.default_rng(0).standard_normal(chain.shape)
    blocks = target.reshape(256, 2, 256, 2).transpose(1, 2, 0, 3)
    discarded = np.linalg.svd(blocks, compute_uv=False)[..., 1]
    expected = np.linalg.norm(discarded) / np.linalg.norm(target)
    monkeypatch.setattr(memory_module, "physical_memory", lambda: 2**28)
    assert fit_hierarchical(target, chain).error == pytest.approx(expected, rel=1e-12)
    assert fit_als(target, chain, n_sweeps=0).errors[0] == pytest.approx(expected, rel=1e-12)
    # Per sub-block: the Gram matrix and its eigenvectors (2 x 2 each), M V and its Q (256 x 1
    # each), and its columns of the two parts (256 x 1 and 1 x 2): 3.04 MiB in all.
    monkeypatch.setattr(memory_module, "physical_memory", lambda: 3 * 2**20)
    words = "split into 512 sub-blocks of 256 x 2, with a 2 x 2 Gram matrix each, needs 3.04 MiB"
    with pytest.raises(ValueError, match=re.escape(words) + ".* init='random'"):
        fit_hierarchical(target, chain)
    # fit_als keeps more than the split: its partial products and the target's copies
    with pytest.raises(ValueError, match=re.escape("fit_als on this 2-factor chain")):
        fit_als(target, chain)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_fit_als_refuses_partial_products_beyond_memory_before_any_work(monkeypatch, dtype):
    # A sweep keeps p_l x m and q_l x m partial products for every factor: a 32 MiB target on
    # the 11-factor butterfly grew memory by 0.96 GiB and died mid-fit with a MemoryError.
    # Here, 64 x (6 x 128 + 2 x 128 + 2 x 64) entries in the target's dtype (chainable: no
    # coupled unknowns are solved for in double precision).
    chain = butterfly_chain(64)
    target = np.random.default_rng(0).standard_normal((64, 64)).astype(dtype)
    needed = 73_728 * np.dtype(dtype).itemsize
    monkeypatch.setattr(memory_module, "physical_memory", lambda: needed - 1)
    words = (
        f"fit_als on this 6-factor chain (the partial products of every factor and the "
        f"target's working copies, 73,728 entries in {np.dtype(dtype)})"
    )
    with pytest.raises(ValueError, match=re.escape(words) + ".* fit_hierarchical"):
        fit_als(target, chain, init="random", rng=0)
    monkeypatch.setattr(memory_module, "physical_memory", lambda: needed)
    assert fit_als(target, chain, n_sweeps=1, init="random", rng=0).error < 1


def test_fit_als_counts_coupled_single_precision_fits_in_double(monkeypatch):
    # coupled unknowns are solved for in float64: 4 x (20 + 2 x 12 + 2 x 8) entries of 8 bytes
    chain = Chain([(4, 4, 2, 2, 1), (4, 8, 2, 4, 1)])
    target = np.random.default_rng(0).standard_normal(chain.shape).astype(np.float32)
    monkeypatch.setattr(memory_module, "physical_memory", lambda: 240 * 8 - 1)
    with pytest.raises(ValueError, match=re.escape("240 entries in float64)")):
        fit_als(target, chain, init="random", rng=0)
    monkeypatch.setattr(memory_module, "physical_memory", lambda: 240 * 8)
    assert fit_als(target, chain, n_sweeps=1, init="random", rng=0).operator.dtype == np.float32


def test_the_product_of_a_wide_operator_takes_the_memory_of_the_product(monkeypatch):
    # Built as A @ I_n it needed an n x n identity: 32 GiB for 4 x 65536 (2 MiB).
    monkeypatch.setattr(memory_module, "physical_memory", lambda: 2**24)
    for dtype in (np.float64, np.complex128):
        op = DeButOperator.random(Chain.from_factorizations([2, 2], [256, 256]), rng=0, dtype=dtype)
        dense = op.toarray()
        assert dense.shape == (4, 65536) and dense.flags.c_contiguous
        columns = np.random.default_rng(1).choice(65536, 5, replace=False)
        unit_vectors = np.zeros((65536, 5), dtype=dtype)
        unit_vectors[columns, np.arange(5)] = 1
        np.testing.assert_allclose(dense[:, columns], op @ unit_vectors, rtol=1e-13)


def test_targets_beyond_memory_or_the_search_limit_are_refused_before_being_read(
    monkeypatch, tmp_path
):
    # The file's NaN would be found by reading the target (a 32 GiB one took 51 s to fail
    # with MemoryError): the size checks come first.
    path = str(tmp_path / "nan.npy")
    np.save(path, np.full((64, 64), np.nan))
    chain = butterfly_chain(64)
    monkeypatch.setattr(memory_module, "physical_memory", lambda: 4000)
    words = "a working copy of the 64 x 64 target in float64 needs 32 KiB, more than this"
    for fit in (fit_als, fit_hierarchical):
        with pytest.raises(ValueError, match=re.escape(words)):
            fit(path, chain)
    monkeypatch.setattr(memory_module, "physical_memory", lambda: 2**40)
    monkeypatch.setattr(search_module, "MAX_APPROXIMATE_ENTRIES", 100)
    words = "4,096 entries, more than approximate accepts, MAX_APPROXIMATE_ENTRIES = 100 (pydebut"
    with pytest.raises(ValueError, match=re.escape(words)):
        approximate(path, 1000)


def test_unfolding_beyond_memory_is_refused_and_huge_strides_work():
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    with pytest.raises(ValueError, match="less padding"):
        im2col(x, 3, padding=2**30)
    with pytest.raises(ValueError, match="more than this machine's memory"):
        im2col(np.broadcast_to(np.float32(0), (1, 2**10, 2**10, 2**10)), 32)
    np.testing.assert_array_equal(im2col(x, 3, stride=2**62), im2col(x, 3, stride=2))


ADDRESS_SPACE_SCRIPT = """
import resource, sys
from pydebut import DeButOperator, fit_hierarchical
from pydebut.special import butterfly_chain
with open("/proc/self/statm", "rb") as statm:
    used = int(statm.read().split()[0]) * resource.getpagesize()
hard = resource.getrlimit(resource.RLIMIT_AS)[1]
resource.setrlimit(resource.RLIMIT_AS, (used + 2**26, hard))  # 64 MiB more
for request in (
    lambda: DeButOperator.random([(4096, 4096, 4096, 4096, 1)], rng=0),  # 128 MiB of weights
    lambda: fit_hierarchical(sys.argv[1], butterfly_chain(4096)),  # a target of 128 MiB
):
    try:
        request()
    except ValueError as refused:
        print(refused)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS, /proc/self/statm")
def test_requests_beyond_the_address_space_limit_are_refused_naming_it(tmp_path):
    # only the machine's memory was checked: under ulimit -v, a fit of a target file
    # ended in "[Errno 12] Cannot allocate memory", an operator in NumPy's MemoryError
    target = tmp_path / "target.npy"
    np.lib.format.open_memmap(target, mode="w+", shape=(4096, 4096)).flush()  # sparse
    result = subprocess.run(
        [sys.executable, "-c", ADDRESS_SPACE_SCRIPT, str(target)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    limit = r"more than the process's address-space limit \(ulimit -v, .*\) leaves it"
    operator, fit = result.stdout.splitlines()
    assert re.match(rf"an operator with 16,777,216 weights .* needs 256 MiB, {limit}", operator)
    assert re.match(rf"memory-mapping the target file '{re.escape(str(target))}' .*{limit}", fit)


@pytest.mark.parametrize(
    ("n_bytes", "shown"),
    [(1023, "1023 bytes"), (1024, "1 KiB"), (2**20, "1 MiB"), (2**30, "1 GiB"), (2**40, "1 TiB")],
)
def test_format_bytes_at_exact_powers_of_1024(n_bytes, shown):
    # a ulimit -v of 1 GiB reads "1 GiB", not "1.02e+03 MiB"
    assert memory_module.format_bytes(n_bytes) == shown
