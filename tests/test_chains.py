"""Enumeration, counting, smallest chains and Pareto fronts against brute force."""

from __future__ import annotations

import itertools
from functools import cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pydebut import (
    Chain,
    count_chains,
    enumerate_chains,
    is_dense,
    min_param_chain,
    pareto_front,
    product_support,
    rank_weights,
)
from pydebut import chains as chains_module
from pydebut.chains import graph_size

KINDS = ("any", "monotonic", "bulging", "other")


# --- brute force, written from the definitions of DESIGN.md section 2 ------------


def is_valid_factor(p: int, q: int, r: int, s: int, t: int) -> bool:
    return p % (r * t) == 0 and q % (s * t) == 0 and p // (r * t) == q // (s * t)


@cache
def brute_force_chainable(m: int, n: int, n_factors: int) -> frozenset[tuple[tuple[int, ...]]]:
    """Every (p, q, r, s, t) sequence with p_1 = m, q_L = n and the chainable relations.

    Factor by factor, every r with r * t equal to the previous t (to p for the
    first factor, where k_1 = 1) and every s in 1..n is tried; validity and
    k_{l+1} = k_l s_l are checked as filters. Since t_L = 1 forces
    n = q_L = s_1 ... s_L = k_l s_l ... s_L, a prefix with k_l s_l not dividing n
    is dropped.
    """
    found = set()

    def extend(prefix: tuple[tuple[int, ...], ...], p: int) -> None:
        if len(prefix) == n_factors:
            if prefix[-1][1] == n and prefix[-1][4] == 1:
                found.add(prefix)
            return
        r_times_t = prefix[-1][4] if prefix else p
        for r in range(1, r_times_t + 1):
            if r_times_t % r:
                continue
            t = r_times_t // r
            if p % (r * t):
                continue
            k = p // (r * t)
            if prefix:
                p0, _, r0, s0, t0 = prefix[-1]
                if k != p0 // (r0 * t0) * s0:
                    continue
            for s in range(1, n + 1):
                q = k * s * t
                if n % (k * s) == 0 and is_valid_factor(p, q, r, s, t):
                    extend((*prefix, (p, q, r, s, t)), q)

    extend((), m)
    return frozenset(found)


@cache
def as_chain(factors: tuple[tuple[int, ...], ...]) -> Chain:
    return Chain(factors)


def keep(chains, kind="any", allow_diagonal=False, max_params=None, max_dim=None):
    kept = set()
    for factors in chains:
        chain = as_chain(factors)
        if kind != "any" and chain.kind != kind:
            continue
        if not allow_diagonal and any(f[2] == f[3] == 1 for f in factors):
            continue
        if max_params is not None and chain.n_params > max_params:
            continue
        if max_dim is not None and chain.max_dim > max_dim:
            continue
        kept.add(factors)
    return kept


def as_tuples(chains) -> list[tuple[tuple[int, ...], ...]]:
    return [tuple(f.as_tuple() for f in chain) for chain in chains]


# --- completeness --------------------------------------------------------------


@pytest.mark.parametrize("n_factors", [1, 2, 3])
def test_enumeration_equals_brute_force_up_to_24(n_factors):
    for m, n in itertools.product(range(1, 25), repeat=2):
        brute = brute_force_chainable(m, n, n_factors)
        for allow_diagonal in (False, True):
            listed = as_tuples(
                enumerate_chains(m, n, n_factors=n_factors, allow_diagonal=allow_diagonal)
            )
            expected = keep(brute, allow_diagonal=allow_diagonal)
            assert len(listed) == len(set(listed)), (m, n)
            assert set(listed) == expected, (m, n, allow_diagonal)
            assert count_chains(m, n, n_factors=n_factors, allow_diagonal=allow_diagonal) == len(
                expected
            )


@pytest.mark.parametrize("kind", KINDS[1:])
def test_kind_filter_equals_brute_force(kind):
    for m, n in itertools.product(range(1, 13), repeat=2):
        for n_factors in (2, 3):
            listed = as_tuples(enumerate_chains(m, n, n_factors=n_factors, kind=kind))
            expected = keep(brute_force_chainable(m, n, n_factors), kind=kind)
            assert set(listed) == expected, (m, n, n_factors)
            assert count_chains(m, n, n_factors=n_factors, kind=kind) == len(expected)


def test_budget_and_dimension_filters_equal_brute_force():
    for m, n in [(12, 18), (16, 16), (24, 8), (6, 20)]:
        brute = brute_force_chainable(m, n, 3)
        params = sorted({Chain(f).n_params for f in brute})
        dims = sorted({Chain(f).max_dim for f in brute})
        for max_params, max_dim in itertools.product(params[:: max(1, len(params) // 4)], dims):
            listed = as_tuples(
                enumerate_chains(m, n, n_factors=3, max_params=max_params, max_dim=max_dim)
            )
            expected = keep(brute, max_params=max_params, max_dim=max_dim)
            assert set(listed) == expected
            assert len(listed) == len(expected)
            counted = count_chains(m, n, n_factors=3, max_params=max_params, max_dim=max_dim)
            assert counted == len(expected)


def test_rank_weighted_enumeration_equals_le_et_al_tuples():
    # Build every chain of Le et al.'s (a, b, c, d, p, q) form with weights up to the rank.
    def ordered_factorizations(x: int, parts: int):
        return [
            combo
            for combo in itertools.product(range(1, x + 1), repeat=parts)
            if _product(combo) == x
        ]

    rank = 2
    for m, n in [(4, 6), (6, 4), (8, 2), (1, 9), (12, 12)]:
        for n_factors in (2, 3):
            expected = set()
            for bs in ordered_factorizations(m, n_factors):
                for cs in ordered_factorizations(n, n_factors):
                    for inner in itertools.product(range(1, rank + 1), repeat=n_factors - 1):
                        ws = (1, *inner, 1)
                        tuples = [
                            (
                                _product(cs[:l]),
                                bs[l],
                                cs[l],
                                _product(bs[l + 1 :]),
                                ws[l],
                                ws[l + 1],
                            )
                            for l in range(n_factors)  # noqa: E741
                        ]
                        chain = Chain.from_abcd(tuples)
                        if all(not (f.r == f.s == 1) for f in chain):
                            expected.add(tuple(f.as_tuple() for f in chain))
            listed = list(enumerate_chains(m, n, n_factors=n_factors, rank=rank))
            assert set(as_tuples(listed)) == expected, (m, n, n_factors)
            assert len(listed) == len(expected)
            assert count_chains(m, n, n_factors=n_factors, rank=rank) == len(expected)
            assert all(max(rank_weights(chain), default=1) <= rank for chain in listed)


def _product(values) -> int:
    result = 1
    for v in values:
        result *= v
    return result


# --- properties of what is enumerated -------------------------------------------

SIZES = st.sampled_from([1, 2, 3, 4, 6, 8, 9, 12, 16, 18, 24, 32, 36])


@given(
    m=SIZES,
    n=SIZES,
    n_factors=st.sampled_from([1, 2, 3, 4, range(1, 4), range(2, 5)]),
    kind=st.sampled_from(KINDS),
    max_params=st.one_of(st.none(), st.integers(1, 3000)),
    max_dim_extra=st.one_of(st.none(), st.integers(1, 100)),
    rank=st.integers(1, 2),
    allow_diagonal=st.booleans(),
)
@settings(deadline=None)
def test_enumerated_chains_are_valid_dense_unique_and_filtered(
    m, n, n_factors, kind, max_params, max_dim_extra, rank, allow_diagonal
):
    counts = [n_factors] if isinstance(n_factors, int) else list(n_factors)
    if kind in ("bulging", "other") and max(counts) == 1:
        return
    max_dim = None if max_dim_extra is None else max(m, n) + max_dim_extra
    arguments = dict(
        n_factors=n_factors,
        kind=kind,
        max_params=max_params,
        max_dim=max_dim,
        rank=rank,
        allow_diagonal=allow_diagonal,
    )
    listed = list(itertools.islice(enumerate_chains(m, n, **arguments), 2000))
    assert len(set(listed)) == len(listed)
    for chain in listed:
        assert chain.shape == (m, n)
        assert chain.n_factors in counts
        assert kind == "any" or chain.kind == kind
        assert max_params is None or chain.n_params <= max_params
        assert max_dim is None or chain.max_dim <= max_dim
        assert allow_diagonal or all(not (f.r == f.s == 1) for f in chain)
        assert max(rank_weights(chain), default=1) <= rank
        assert is_dense(chain)
    if len(listed) < 2000:
        assert count_chains(m, n, **arguments) == len(listed)
    lengths = [chain.n_factors for chain in listed]
    assert lengths == sorted(lengths)
    for order, key in (("params", _by_params), ("max_dim", _by_dim)):
        ordered = list(itertools.islice(enumerate_chains(m, n, order=order, **arguments), 300))
        assert [key(c) for c in ordered] == sorted(key(c) for c in ordered)
        if len(listed) < 300:  # ties as listed: by number of factors, then lex
            assert ordered == sorted(listed, key=key)


def _by_params(chain: Chain) -> tuple[int, int]:
    return (chain.n_params, chain.max_dim)


def _by_dim(chain: Chain) -> tuple[int, int]:
    return (chain.max_dim, chain.n_params)


@pytest.mark.parametrize(
    "m, n, arguments",
    [
        (24, 36, dict(n_factors=range(1, 4))),
        (16, 64, dict(n_factors=range(2, 5), kind="bulging", max_params=1500)),
        (24, 36, dict(n_factors=range(1, 4), rank=2, max_dim=72)),
        (36, 36, dict(n_factors=[3, 1], kind="other", allow_diagonal=True)),
    ],
)
def test_ordered_modes_sort_the_whole_lex_listing(m, n, arguments):
    listed = list(enumerate_chains(m, n, **arguments))
    assert 300 < len(listed) < 3000
    for order, key in (("params", _by_params), ("max_dim", _by_dim)):
        # sorted is stable: ties keep the lex order (number of factors first)
        assert list(enumerate_chains(m, n, order=order, **arguments)) == sorted(listed, key=key)


def test_lex_order_is_by_factorizations():
    listed = list(enumerate_chains(12, 8, n_factors=2))
    keys = [tuple(x for f in chain for x in (f.r, f.s)) for chain in listed]
    assert keys == sorted(keys)


def test_ordered_modes_start_with_the_smallest():
    first = next(enumerate_chains(64, 576, n_factors=4, kind="monotonic", order="params"))
    assert first == min_param_chain(64, 576, 4)


def test_dense_support_of_small_enumerated_chains():
    for chain in enumerate_chains(12, 18, n_factors=range(1, 4), rank=2, max_params=400):
        assert product_support(chain).all()


# --- smallest chains and Pareto fronts --------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_min_param_chain_equals_brute_force_minimum(kind):
    for m, n in itertools.product(range(1, 25), repeat=2):
        for n_factors in (1, 2, 3):
            if kind in ("bulging", "other") and n_factors == 1:
                continue
            candidates = keep(brute_force_chainable(m, n, n_factors), kind)
            best = min_param_chain(m, n, n_factors, kind=kind)
            if not candidates:
                assert best is None
                continue
            smallest = min(as_chain(factors).n_params for factors in candidates)
            assert best.n_params == smallest, (m, n, n_factors)
            assert tuple(f.as_tuple() for f in best) in candidates


def test_min_param_chain_over_a_range_and_with_rank():
    best = min_param_chain(24, 36, range(1, 4))
    per_count = [min_param_chain(24, 36, count) for count in (1, 2, 3)]
    assert best.n_params == min(c.n_params for c in per_count if c is not None)
    ranked = min_param_chain(24, 36, 3, rank=3, kind="any")
    listed = list(enumerate_chains(24, 36, n_factors=3, rank=3))
    assert ranked.n_params == min(c.n_params for c in listed)
    assert ranked == next(c for c in listed if c.n_params == ranked.n_params)


def test_factor_counts_no_chain_can_have_cost_nothing():
    # Before: range(1, 65) for 64 x 64 was refused, a state graph of up to 4,605,805 moves
    # above MAX_GRAPH_MOVES, though no chain of it has more than Omega(64) + Omega(64) = 12
    # factors (each non-diagonal rank-1 factor takes a prime of m or n).
    best = min_param_chain(64, 64, range(1, 65))
    assert best == min_param_chain(64, 64, range(1, 13))
    assert best.n_params == 768
    assert count_chains(64, 64, n_factors=range(1, 65), kind="monotonic") == 32
    assert pareto_front(64, 64, n_factors=range(1, 65)) == pareto_front(
        64, 64, n_factors=range(1, 13)
    )
    assert list(enumerate_chains(64, 64, n_factors=[13, 40], max_dim=64)) == []
    # The bound is exact: the closed form has chains of Omega(m) + Omega(n) factors, none more.
    for m, n in itertools.product(range(1, 13), repeat=2):
        longest = sum(e for _, e in chains_module._factorize(m * n))
        pairs = [chains_module._count_factorization_pairs(m, n, L, False) for L in (1, 2, 3, 4, 5)]
        assert [count > 0 for count in pairs] == [0 < L <= longest for L in (1, 2, 3, 4, 5)]
    # Diagonal factors or rank weights make chains of any length: no cap then.
    assert count_chains(1, 1, n_factors=64, allow_diagonal=True, max_dim=1) == 1
    assert count_chains(1, 1, n_factors=range(1, 6), rank=2) == 7


@pytest.mark.parametrize(("m", "n", "kind"), [(24, 36, "monotonic"), (16, 12, "any"),
                                              (18, 8, "bulging")])  # fmt: skip
def test_pareto_front_is_exactly_the_non_dominated_set(m, n, kind):
    front = pareto_front(m, n, n_factors=range(1, 5), kind=kind, rank=2)
    listed = list(enumerate_chains(m, n, n_factors=range(1, 5), kind=kind, rank=2))

    def point(chain: Chain) -> tuple[int, int, int]:
        return (chain.n_params, chain.n_factors, chain.max_dim)

    def dominates(a, b):
        return all(x <= y for x, y in zip(a, b, strict=True)) and a != b

    points = {point(c) for c in listed}
    expected = sorted(p for p in points if not any(dominates(o, p) for o in points))
    assert [point(c) for c in front] == expected
    # each point's chain is the first in enumerate_chains order among its equals
    assert front == [next(c for c in listed if point(c) == p) for p in expected]
    assert all(c.flops == 2 * c.n_params for c in front)


@pytest.mark.parametrize(("m", "n", "n_factors"), [(8, 1, 3), (8, 2, 4), (12, 2, 3), (12, 1, 4)])
def test_pareto_front_takes_the_first_chain_among_equals_at_rank_two(m, n, n_factors):
    # A state kept only its own front: a completion that lost there on dimension alone,
    # the earlier one, tied at the parent (max(q, dim)) but was already gone.
    front = pareto_front(m, n, n_factors, rank=2)
    listed = list(enumerate_chains(m, n, n_factors, kind="monotonic", rank=2))
    for chain in front:
        point = (chain.n_params, chain.max_dim)
        assert chain == next(c for c in listed if (c.n_params, c.max_dim) == point)


def test_pareto_front_respects_the_budget():
    full = pareto_front(64, 576, n_factors=range(1, 6))
    budget = full[1].n_params
    assert pareto_front(64, 576, n_factors=range(1, 6), max_params=budget) == [
        c for c in full if c.n_params <= budget
    ]


# --- the paper's chains (DESIGN.md section 6) ------------------------------------

PAPER_CHAINS = {
    "vgg16-conv1": (
        "monotonic",
        [(64, 72, 8, 9, 8), (72, 144, 2, 4, 4), (144, 288, 1, 2, 4), (288, 576, 4, 8, 1)],
    ),
    "resnet50-layer4": (
        "monotonic",
        [(512, 512, 2, 2, 256), (512, 1024, 2, 4, 128), (1024, 1024, 2, 2, 64),
         (1024, 1024, 2, 2, 32), (1024, 1024, 2, 2, 16), (1024, 2048, 2, 4, 8),
         (2048, 2048, 2, 2, 4), (2048, 2048, 2, 2, 2), (2048, 2048, 2, 2, 1)],
    ),
    "lenet-fc1": (
        "bulging",
        [(128, 256, 2, 4, 64), (256, 512, 1, 2, 64), (512, 512, 2, 2, 32),
         (512, 256, 2, 1, 16), (256, 400, 16, 25, 1)],
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(PAPER_CHAINS))
def test_paper_chains_are_enumerated_with_their_kind(name):
    kind, factors = PAPER_CHAINS[name]
    chain = Chain(factors)
    m, n = chain.shape
    found = list(
        enumerate_chains(
            m,
            n,
            n_factors=range(chain.n_factors - 1, chain.n_factors + 1),
            kind=kind,
            max_params=chain.n_params,
            max_dim=chain.max_dim,
        )
    )
    assert chain in found
    assert chain.kind == kind
    assert sum(1 for other in found if other.kind != kind) == 0
    assert min_param_chain(m, n, chain.n_factors, kind=kind).n_params <= chain.n_params


def test_resnet_chain_has_the_published_parameter_count():
    chain = Chain(PAPER_CHAINS["resnet50-layer4"][1])
    assert (chain.n_params, chain.shape[0] * chain.shape[1]) == (25600, 1048576)


# --- bad input ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "error", "words"),
    [
        (dict(m=0), ValueError, "m must be positive"),
        (dict(m=4.0), TypeError, "m must be an integer"),
        (dict(n="8"), TypeError, "n must be an integer"),
        (dict(m=2**40), ValueError, "below 2**40"),
        (dict(n_factors=0), ValueError, "n_factors must be positive"),
        (dict(n_factors=65), ValueError, "at most 64"),
        (dict(n_factors=range(3, 3)), ValueError, "n_factors is empty"),
        (dict(kind="tall"), ValueError, "kind must be one of"),
        (dict(max_params=0), ValueError, "max_params must be positive"),
        (dict(max_dim=8), ValueError, "below max(m, n) = 12"),
        (dict(kind="bulging", max_dim=12), ValueError, "needs a dimension above"),
        (dict(kind="other", n_factors=1), ValueError, "needs at least 2 factors"),
        (dict(rank=0), ValueError, "rank must be positive"),
        (dict(allow_diagonal="yes"), TypeError, "allow_diagonal must be a bool"),
    ],
)
@pytest.mark.parametrize("function", [enumerate_chains, count_chains, pareto_front])
def test_bad_requests_fail_before_any_work(function, arguments, error, words):
    request = dict(m=12, n=8, n_factors=2) | arguments
    with pytest.raises(error, match=_escape(words)):
        function(request.pop("m"), request.pop("n"), **request)


def test_bad_order_and_min_param_arguments():
    with pytest.raises(ValueError, match="order must be one of"):
        enumerate_chains(4, 4, n_factors=2, order="size")
    with pytest.raises(ValueError, match="kind must be one of"):
        min_param_chain(4, 4, 2, kind="flat")
    with pytest.raises(ValueError, match="n_factors must be positive"):
        min_param_chain(4, 4, 0)


@pytest.mark.parametrize("size", [2**61 - 1, 2**127 - 1])
def test_graph_size_refuses_sizes_above_the_limit_before_factorizing(size, monkeypatch):
    def factorize(x):
        raise AssertionError(f"factorized {x}")

    monkeypatch.setattr(chains_module, "_factorize", factorize)
    with pytest.raises(ValueError, match=_escape("m must be below 2**40")):
        graph_size(size, 4, 2)
    with pytest.raises(ValueError, match=_escape("n must be below 2**40")):
        graph_size(4, size, 2)


def test_huge_arguments_are_shown_bounded_in_errors():
    with pytest.raises(ValueError, match=r"m must be below 2\*\*40, got <integer of about"):
        count_chains(10**5000, 4, n_factors=2)
    with pytest.raises(ValueError, match="order must be one of") as error:
        enumerate_chains(4, 4, n_factors=2, order=["x"] * 10000)
    assert len(str(error.value)) < 200


def _escape(text: str) -> str:
    import re

    return re.escape(text)


@given(
    m=st.integers(1, 400),
    n=st.integers(1, 400),
    n_factors=st.integers(1, 5),
    allow_diagonal=st.booleans(),
)
@settings(deadline=None)
def test_closed_form_count_equals_the_state_graph(m, n, n_factors, allow_diagonal):
    # max_dim = m * n never binds (q_l <= m * n) but sends the count through the graph.
    closed = count_chains(m, n, n_factors=n_factors, allow_diagonal=allow_diagonal)
    walked = count_chains(m, n, n_factors=n_factors, allow_diagonal=allow_diagonal, max_dim=m * n)
    assert closed == walked


def test_every_chain_function_takes_n_factors_in_the_same_place():
    # min_param_chain took it positionally, as the README does; the others refused that
    # ("pareto_front() takes 2 positional arguments but 3 were given")
    chains = list(enumerate_chains(16, 16, 2))
    assert chains == list(enumerate_chains(16, 16, n_factors=2))
    assert count_chains(16, 16, 2) == len(chains) == count_chains(16, 16, n_factors=2)
    assert pareto_front(16, 16, 2) == pareto_front(16, 16, n_factors=2)
    assert min_param_chain(16, 16, 2) == min_param_chain(16, 16, n_factors=2)


def test_n_factors_takes_exactly_max_factor_values_values():
    assert chains_module.MAX_FACTOR_VALUES == 1024
    assert count_chains(4, 4, [2] * 1024) == count_chains(4, 4, 2)
    with pytest.raises(ValueError, match="more than 1024 values"):
        count_chains(4, 4, [2] * 1025)


@pytest.mark.parametrize(
    ("kind", "flags"), [("any", 1), ("bulging", 2), ("monotonic", 3), ("other", 3)]
)
def test_graph_size_is_the_documented_formula(kind, flags):
    # d(m) d(n) rank + (L - 2) P(m) P(n) rank**2 F + d(m) d(n) rank F, F the kind's flags;
    # 64 = 2**6: d = 7, P = 28; 576 = 2**6 3**2: d = 21, P = 28 * 6 = 168
    divisors, pairs = 7 * 21, 28 * 168
    for n_factors, rank in [(2, 1), (4, 1), (3, 2)]:
        expected = (
            divisors * rank + (n_factors - 2) * pairs * rank**2 * flags + divisors * rank * flags
        )
        assert graph_size(64, 576, n_factors, kind=kind, rank=rank) == expected


def test_min_param_chain_prefers_fewer_factors_among_equals():
    # "the first in enumerate_chains order among equals", which takes fewer factors first:
    # 8 x 8 has 128 weights at best with 2 and with 3 factors, 4 x 4 16 with 1 and 2
    two, three = min_param_chain(8, 8, 2), min_param_chain(8, 8, 3)
    assert two.n_params == three.n_params
    assert min_param_chain(8, 8, [2, 3]) == two
    assert min_param_chain(4, 4, [1, 2]) == Chain([(4, 4, 4, 4, 1)])


def test_pareto_front_keeps_chains_for_their_smaller_largest_dimension():
    # (30, 4, 9) and (33, 3, 9) are on the front only for their largest dimension
    front = pareto_front(6, 6, range(1, 5), kind="bulging")
    points = [(c.n_params, c.n_factors, c.max_dim) for c in front]
    assert points == [(30, 3, 12), (30, 4, 9), (33, 3, 9), (36, 2, 9)]
