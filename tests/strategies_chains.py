"""Hypothesis strategies for chains; every draw is a valid chain by construction."""

from __future__ import annotations

from hypothesis import strategies as st

from pydebut import Chain


def _divisors(x: int) -> list[int]:
    return [d for d in range(1, x + 1) if x % d == 0]


@st.composite
def general_chains(draw, max_dim: int = 48, max_factors: int = 4) -> Chain:
    """Valid chains of any structure: each factor picks ``t | p``, ``r | p/t``, then ``s``."""
    n_factors = draw(st.integers(1, max_factors))
    p = draw(st.integers(1, max_dim))
    factors = []
    for _ in range(n_factors):
        t = draw(st.sampled_from(_divisors(p)))
        r = draw(st.sampled_from(_divisors(p // t)))
        k = p // (r * t)
        s = draw(st.integers(1, max_dim // (k * t)))
        q = k * s * t
        factors.append((p, q, r, s, t))
        p = q
    return Chain(factors)


@st.composite
def chainable_chains(draw, max_side: int = 64, max_factors: int = 4) -> Chain:
    """Chainable chains from ordered factorizations with parts in 1..4."""
    n_factors = draw(st.integers(1, max_factors))
    rs, ss = [], []
    for _ in range(n_factors):
        rs.append(draw(st.integers(1, 4)))
        ss.append(draw(st.integers(1, 4)))
    while _product(rs) > max_side:
        rs[rs.index(max(rs))] = 1
    while _product(ss) > max_side:
        ss[ss.index(max(ss))] = 1
    return Chain.from_factorizations(rs, ss)


@st.composite
def rank_weighted_chains(
    draw, max_factors: int = 3, max_rank: int = 3
) -> tuple[Chain, tuple[int, ...]]:
    """Le et al.'s chains from ``(a, b, c, d, w_{l-1}, w_l)`` tuples, and their weights."""
    n_factors = draw(st.integers(2, max_factors))
    bs = [draw(st.integers(1, 3)) for _ in range(n_factors)]
    cs = [draw(st.integers(1, 3)) for _ in range(n_factors)]
    ws = [1, *(draw(st.integers(1, max_rank)) for _ in range(n_factors - 1)), 1]
    tuples = [
        (_product(cs[:l]), bs[l], cs[l], _product(bs[l + 1 :]), ws[l], ws[l + 1])
        for l in range(n_factors)  # noqa: E741 - factor index of the maths
    ]
    return Chain.from_abcd(tuples), tuple(ws[1:-1])


def _product(values: list[int]) -> int:
    result = 1
    for v in values:
        result *= v
    return result
