"""Choosing a chain: classification, enumeration and smallest chains.

Density, the paper's "bipolar test", is in :mod:`pydebut.density`. A chainable
chain of ``L`` factors for an ``m x n`` product is a pair of ordered
factorizations ``m = r_1 ... r_L`` and ``n = s_1 ... s_L``. With rank weights
``w_1, ..., w_{L-1}`` (``w_0 = w_L = 1``) the factor ``l`` has
``r_l = b_l w_{l-1}`` and ``s_l = c_l w_l`` where ``m = b_1 ... b_L`` and
``n = c_1 ... c_L``; its ``k_l = c_1 ... c_{l-1}`` blocks have diagonals of size
``t_l = b_{l+1} ... b_L``. :func:`enumerate_chains`, :func:`count_chains`,
:func:`min_param_chain` and :func:`pareto_front` all walk the same graph whose
states are ``(factors left, b_l ... b_L, c_1 ... c_{l-1}, w_{l-1})``, with
counts and bounds computed once per state by dynamic programming.
"""

from __future__ import annotations

import heapq
import operator
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from itertools import groupby, pairwise
from math import comb, inf, prod
from typing import Any, Literal, NamedTuple

from ._arguments import as_bool, as_positive_int, shown
from .spec import Chain, ChainKind

__all__ = [
    "ChainClass",
    "CountLimitError",
    "classify",
    "count_chains",
    "enumerate_chains",
    "graph_size",
    "min_param_chain",
    "pareto_front",
    "rank_weights",
]

KindFilter = Literal["any", "monotonic", "bulging", "other"]
Order = Literal["lex", "params", "max_dim"]

KINDS: tuple[str, ...] = ("any", "monotonic", "bulging", "other")
ORDERS: tuple[str, ...] = ("lex", "params", "max_dim")
MAX_FACTORS = 64
"""Largest accepted ``n_factors``; ``m, n < 2**40`` have at most 39 prime factors each."""
MAX_FACTOR_VALUES = 1024
"""Most values an ``n_factors`` iterable may give (distinct or repeated)."""
MAX_SIZE = 2**40
"""Bound on ``m`` and ``n``: each must be below it."""
MAX_GRAPH_MOVES = 2_000_000
"""Largest accepted bound on the moves of a request's state graph (``graph_size``).

Searches that need the graph (kinds, ``max_params``, ``max_dim``, ``rank > 1``,
:func:`min_param_chain`, :func:`pareto_front`) refuse larger requests up front:
their time and memory grow with it (a few microseconds and well under a kilobyte per
move: the limit keeps a search to seconds). Only the factor counts a chain can have
are counted: at rank 1 without ``allow_diagonal``, at most ``Omega(m) + Omega(n)``
(prime factors with multiplicity), so ``n_factors=range(1, 65)`` costs what
``range(1, 13)`` does for a 64 x 64 product."""
FIRST_SIBLINGS = 4
"""Children an ordered listing takes from its first scan of a state's moves.

Later scans of the same parent take twice as many as the one before. Listing the first
10,000 of the 65536 x 65536 chains of 1 to 8 factors by parameters generates 532k moves
taking one child first, 347k taking 4 and 312k taking 8 (296k when a step put all of a
state's choices on the frontier), with memory growing with the batches held."""
MAX_BUDGET_MOVES = 2_000_000
"""Most moves :func:`count_chains` follows with ``max_params``.

Each remaining budget of a state is a sum of its own, so the graph's size does not
bound the work; about 2 microseconds a move on the machine of benchmarks/README.md
(a 4096 x 65536 count with ``max_params = 2**17`` and 1 to 11 factors reaches the
limit in 3.4 s). A count that reaches the limit stops there with a
:class:`CountLimitError`."""


class CountLimitError(ValueError):
    """A count within ``max_params`` reached ``MAX_BUDGET_MOVES``: the request was valid."""


def _as_chain(chain: Any) -> Chain:
    return chain if isinstance(chain, Chain) else Chain(chain)


# --- classification ------------------------------------------------------------


def rank_weights(chain: Chain | Iterable[Any]) -> tuple[int, ...] | None:
    """Recognise a rank-weighted chainable chain of Le et al.; return its weights.

    A chain is in the family when ``k_1 = 1``, ``t_L = 1`` and, with
    ``b_l = t_{l-1} / t_l`` (``b_1 = r_1``) and ``c_l = k_{l+1} / k_l``
    (``c_L = s_L``), every ``r_l = b_l w_{l-1}`` and ``s_l = c_l w_l`` for
    integers ``w_l >= 1`` (``w_0 = w_L = 1``). The weights are then unique.

    Parameters
    ----------
    chain : Chain or iterable of (p, q, r, s, t)
        The chain, left to right.

    Returns
    -------
    tuple of int or None
        ``(w_1, ..., w_{L-1})``, all ones for a chainable chain; ``None``
        when the chain is not in the family.

    Raises
    ------
    TypeError, ValueError
        If ``chain`` is not a valid chain (as :class:`~pydebut.Chain` checks it).

    Examples
    --------
    >>> rank_weights(Chain.from_abcd([(1, 2, 2, 2, 1, 3), (2, 2, 2, 1, 3, 1)]))
    (3,)
    >>> rank_weights(Chain.from_factorizations([2, 2], [2, 2]))
    (1,)
    >>> rank_weights([(4, 4, 2, 2, 1), (4, 4, 2, 2, 1)]) is None
    True
    """
    chain = _as_chain(chain)
    factors = chain.factors
    if factors[0].n_blocks != 1 or factors[-1].t != 1:
        return None
    weights = [1]
    for left, right in pairwise(factors):
        if left.t % right.t or right.n_blocks % left.n_blocks:
            return None
        b, c = left.t // right.t, right.n_blocks // left.n_blocks
        if right.r % b or left.s % c:
            return None
        w = right.r // b
        if w != left.s // c:
            return None
        weights.append(w)
    # The last factor has w_L = 1: its columns are c_L = s_L and t_L = 1.
    return tuple(weights[1:])


@dataclass(frozen=True)
class ChainClass:
    """Structural classification of a chain (see :func:`classify`).

    Attributes
    ----------
    chainable : bool
        ``k_1 = 1``, ``t_L = 1``, ``t_l = r_{l+1} t_{l+1}``, ``k_{l+1} = k_l s_l``.
    kind : {"monotonic", "bulging", "other"}
        As :attr:`Chain.kind` (see the Concepts page of the documentation).
    rank_weights : tuple of int or None
        Le et al.'s weights ``(w_1, ..., w_{L-1})`` when the chain is in the
        rank-weighted family (all ones when chainable), else ``None``.
    """

    chainable: bool
    kind: ChainKind
    rank_weights: tuple[int, ...] | None

    @property
    def family(self) -> str:
        """``"chainable"``, ``"rank-weighted"`` or ``"general"``."""
        if self.chainable:
            return "chainable"
        return "general" if self.rank_weights is None else "rank-weighted"

    @property
    def rank(self) -> int | None:
        """Largest rank weight (1 for chainable chains), ``None`` outside the family."""
        return None if self.rank_weights is None else max(self.rank_weights, default=1)


def classify(chain: Chain | Iterable[Any]) -> ChainClass:
    """Classify a chain: chainable, kind, and membership of the rank-weighted family.

    Parameters
    ----------
    chain : Chain or iterable of (p, q, r, s, t)
        The chain, left to right.

    Returns
    -------
    ChainClass

    Raises
    ------
    TypeError, ValueError
        If ``chain`` is not a valid chain (as :class:`~pydebut.Chain` checks it).

    Examples
    --------
    >>> info = classify(Chain.from_abcd([(1, 2, 2, 2, 1, 3), (2, 2, 2, 1, 3, 1)]))
    >>> info.family, info.rank, info.kind
    ('rank-weighted', 3, 'bulging')
    """
    chain = _as_chain(chain)
    return ChainClass(chain.is_chainable, chain.kind, rank_weights(chain))


# --- the graph of chainable chains ----------------------------------------------

_LT, _GT, _BULGED = 1, 2, 4


class _State(NamedTuple):
    left: int  # factors still to choose
    m_rest: int  # b_l ... b_L
    n_done: int  # c_1 ... c_{l-1}
    w_in: int  # w_{l-1}
    flags: int  # _LT | _GT | _BULGED seen so far, reduced to what the kind needs


class _Move(NamedTuple):
    factor: tuple[int, int, int, int, int]  # (p, q, r, s, t)
    nnz: int
    child: _State


class _Summary(NamedTuple):
    count: int  # chains that complete the state
    min_params: float  # their smallest, largest parameter total
    max_params: float
    min_dim: float  # smallest largest q among their factors


_EMPTY = _Summary(0, inf, -inf, inf)


@lru_cache(maxsize=4096)
def _factorize(x: int) -> tuple[tuple[int, int], ...]:
    """Prime factorization ``((p, e), ...)`` of ``x`` by trial division (``x < 2**40``)."""
    factors, p = [], 2
    while p * p <= x:
        if x % p == 0:
            e = 0
            while x % p == 0:
                x //= p
                e += 1
            factors.append((p, e))
        p += 1 if p == 2 else 2
    if x > 1:
        factors.append((x, 1))
    return tuple(factors)


def _prime_exponents(x: int) -> list[int]:
    return [e for _, e in _factorize(x)]


@lru_cache(maxsize=4096)
def _divisors(x: int) -> tuple[int, ...]:
    divisors = [1]
    for p, e in _factorize(x):
        divisors = [d * p**i for d in divisors for i in range(e + 1)]
    return tuple(sorted(divisors))


def _n_divisors(x: int) -> int:
    return prod(e + 1 for e in _prime_exponents(x))


def _n_divisor_pairs(x: int) -> int:
    """``sum over d | x of d(x / d)``: pairs ``(d, d')`` with ``d d' | x``."""
    return prod((e + 1) * (e + 2) // 2 for e in _prime_exponents(x))


def _as_size(value: Any, name: str, where: str) -> int:
    """``value`` as a positive int below :data:`MAX_SIZE` (``_factorize`` takes ``sqrt`` steps)."""
    size = as_positive_int(value, name, where)
    if size >= MAX_SIZE:
        raise ValueError(f"{where}: {name} must be below 2**40, got {shown(size)}")
    return size


_KIND_FLAG_VALUES = {"any": 1, "monotonic": 3, "bulging": 2, "other": 3}


def graph_size(m: int, n: int, n_factors: int, *, kind: str = "any", rank: int = 1) -> int:
    """Upper bound on the moves of the state graph behind a chain search.

    The searches of this module walk a graph whose states are
    ``(factors left, b_l ... b_L, c_1 ... c_{l-1}, w_{l-1}, kind flags)`` and
    whose moves choose ``(b_l, c_l, w_l)``; their time and memory grow with
    its number of moves. The bound is computed from the prime exponents of
    ``m`` and ``n`` alone, before anything is built:

        d(m) d(n) rank + (L - 2) P(m) P(n) rank**2 F + d(m) d(n) rank F

    for ``L >= 2`` factors, where ``d`` counts divisors, ``P(x) = prod_p
    (e_p + 1)(e_p + 2) / 2`` counts pairs of divisors ``d d' | x``, and ``F``
    is the number of kind flags a state carries (1 for ``"any"``, 2 for
    ``"bulging"``, 3 otherwise). Requests above ``MAX_GRAPH_MOVES`` are
    refused. ``m`` and ``n`` must be below ``2**40`` (``MAX_SIZE``), as for
    the searches: factorizing them is then quick.

    Parameters
    ----------
    m, n : int
        Shape of the product, positive and below ``2**40``.
    n_factors : int
        Number of factors ``L``, positive (a single factor is one move).
    kind : {"any", "monotonic", "bulging", "other"}, default "any"
        The kind filter of the search.
    rank : int, default 1
        Largest rank weight ``w_l`` of the search, positive.

    Returns
    -------
    int
        The bound; it is not compared with ``MAX_GRAPH_MOVES`` here.

    Raises
    ------
    TypeError
        If ``m``, ``n``, ``n_factors`` or ``rank`` is not an integer (booleans
        and floats are refused).
    ValueError
        If one of them is not positive, ``m`` or ``n`` is ``2**40`` or more, or
        ``kind`` is none of the four.

    Examples
    --------
    >>> graph_size(64, 576, 4)
    9702
    >>> graph_size(720720, 720720, 3, kind="monotonic") > MAX_GRAPH_MOVES
    True
    """
    m, n = _as_size(m, "m", "graph_size"), _as_size(n, "n", "graph_size")
    n_factors, rank = (
        as_positive_int(value, name, "graph_size")
        for name, value in (("n_factors", n_factors), ("rank", rank))
    )
    if kind not in KINDS:  # a tuple: unhashable kinds are refused too
        raise ValueError(f"kind must be one of {', '.join(map(repr, KINDS))}; got {shown(kind)}")
    if n_factors == 1:
        return 1
    flags = _KIND_FLAG_VALUES[kind]
    pairs = _n_divisors(m) * _n_divisors(n) * rank
    inner = _n_divisor_pairs(m) * _n_divisor_pairs(n) * rank**2 * flags
    return pairs + (n_factors - 2) * inner + pairs * flags


class _Graph:
    """States and moves of the chains of one request, with per-state summaries."""

    def __init__(
        self,
        m: int,
        n: int,
        kind: str,
        max_dim: int | None,
        rank: int,
        allow_diagonal: bool,
        counts_only: bool = False,
    ) -> None:
        self.m, self.n, self.kind = m, n, kind
        # Unfiltered rank-one requests count completions in closed form; their
        # parameter and dimension bounds are then only the trivial 0.
        self.counts_only = counts_only
        self.max_dim = inf if max_dim is None else max_dim
        self.rank, self.allow_diagonal = rank, allow_diagonal
        self.bulge_above = max(m, n)
        self._summaries: dict[_State, _Summary] = {}

    def root(self, n_factors: int) -> _State:
        return _State(n_factors, self.m, 1, 1, 0)

    def _reduce(self, flags: int) -> int | None:
        """Keep the flags the kind needs; ``None`` when the kind is already ruled out."""
        if self.kind == "any":
            return 0
        if self.kind == "bulging":
            return flags & _BULGED
        mixed = flags & (_LT | _GT) == _LT | _GT
        if self.kind == "monotonic":
            return None if mixed else flags & (_LT | _GT)
        return None if flags & _BULGED else flags  # "other"

    def _accepts(self, flags: int) -> bool:
        if self.kind == "bulging":
            return bool(flags & _BULGED)
        if self.kind == "other":
            return flags & (_LT | _GT) == _LT | _GT
        return True

    def moves(self, state: _State) -> Iterator[_Move]:
        """Choices ``(b_l, c_l, w_l)`` in lexicographic order, as factors, one at a time.

        Not cached: summaries are, and moves are cheap to recompute, while
        caching them would hold the whole graph in memory. Lazy: a walk keeps
        one open per level, and a state may have millions.
        """
        left, m_rest, n_done, w_in, flags = state
        n_rest = self.n // n_done
        if left == 1:
            choices: Iterable[tuple[int, int, int]] = [(m_rest, n_rest, 1)]
        else:
            choices = (
                (b, c, w)
                for b in _divisors(m_rest)
                for c in _divisors(n_rest)
                for w in range(1, self.rank + 1)
            )
        for b, c, w_out in choices:
            r, s, t = b * w_in, c * w_out, m_rest // b
            if r == s == 1 and not self.allow_diagonal:
                continue
            p, q = n_done * m_rest * w_in, n_done * c * w_out * t
            if q > self.max_dim:
                continue
            seen = flags | (_LT if r < s else 0) | (_GT if r > s else 0)
            if left > 1 and q > self.bulge_above:
                seen |= _BULGED
            reduced = self._reduce(seen)
            if reduced is None:
                continue
            child = _State(left - 1, t, n_done * c, w_out, reduced)
            yield _Move((p, q, r, s, t), p * s, child)

    def summary(self, state: _State) -> _Summary:
        """Count, parameter range and smallest largest dimension of the completions."""
        cached = self._summaries.get(state)
        if cached is not None:
            return cached
        if self.counts_only:
            n_rest = self.n // state.n_done
            count = _count_factorization_pairs(
                state.m_rest, n_rest, state.left, self.allow_diagonal
            )
            result = _Summary(count, 0, inf, 0) if count else _EMPTY
        elif state.left == 0:
            result = _Summary(1, 0, 0, 0) if self._accepts(state.flags) else _EMPTY
        else:
            count, lo, hi, dim = 0, inf, -inf, inf
            for move in self.moves(state):
                below = self.summary(move.child)
                if below.count:
                    count += below.count
                    lo = min(lo, move.nnz + below.min_params)
                    hi = max(hi, move.nnz + below.max_params)
                    dim = min(dim, max(move.factor[1], below.min_dim))
            result = _Summary(count, lo, hi, dim)
        self._summaries[state] = result
        return result

    def live_moves(self, state: _State) -> Iterator[tuple[_Move, _Summary]]:
        """Moves that lead to at least one chain."""
        for move in self.moves(state):
            below = self.summary(move.child)
            if below.count:
                yield move, below


# --- requests ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Request:
    m: int
    n: int
    n_factors: tuple[int, ...]
    kind: str
    max_params: int | None
    max_dim: int | None
    rank: int
    allow_diagonal: bool

    @property
    def unfiltered(self) -> bool:
        """Only ``allow_diagonal`` is set: counts have a closed form."""
        return (self.kind, self.max_params, self.max_dim, self.rank) == ("any", None, None, 1)

    @property
    def possible_counts(self) -> tuple[int, ...]:
        """The requested factor counts that some chain can have.

        At rank 1 without ``allow_diagonal`` every factor has ``r_l = b_l > 1`` or
        ``s_l = c_l > 1``, where ``b_1 ... b_L = m`` and ``c_1 ... c_L = n``: each
        takes at least one of the ``Omega(m) + Omega(n)`` prime factors (counted
        with multiplicity), so no chain has more factors. Diagonal factors, or
        rank weights ``w_l > 1`` (``r_l = b_l w_{l-1}``, ``s_l = c_l w_l``), make
        chains of any length.
        """
        if self.rank > 1 or self.allow_diagonal:
            return self.n_factors
        longest = sum(_prime_exponents(self.m)) + sum(_prime_exponents(self.n))
        return tuple(count for count in self.n_factors if count <= longest)

    def graph(self, exact: bool = False) -> _Graph:
        """The request's state graph, refused up front when it would be too large.

        Unless ``exact`` (exact parameter and dimension bounds are needed), an
        unfiltered request gets a graph that counts in closed form, of any size.
        """
        if self.unfiltered and not exact:
            return _Graph(self.m, self.n, "any", None, 1, self.allow_diagonal, counts_only=True)
        size = sum(
            graph_size(self.m, self.n, count, kind=self.kind, rank=self.rank)
            for count in self.possible_counts
        )
        if size > MAX_GRAPH_MOVES:
            raise ValueError(
                f"chain request too large: {self.m} x {self.n} with n_factors="
                f"{_describe_counts(self.n_factors)}, kind={self.kind!r}, rank={self.rank} "
                f"has a state graph of up to {size:,} moves, above the limit "
                f"MAX_GRAPH_MOVES = {MAX_GRAPH_MOVES:,}; narrow the request: "
                f"{', '.join(self._narrower())}"
            )
        return _Graph(self.m, self.n, self.kind, self.max_dim, self.rank, self.allow_diagonal)

    def check_first_choices(self) -> None:
        """Refuse a listing whose first factor alone has more than ``MAX_GRAPH_MOVES`` choices.

        A walk may pass over all the choices ``(b_1, c_1, w_1)`` of a state (those
        that complete to no chain) before its next chain; a closed-form graph
        (:meth:`graph`) is not bounded otherwise.
        """
        choices = _n_divisors(self.m) * _n_divisors(self.n) * self.rank
        if choices > MAX_GRAPH_MOVES:
            raise ValueError(
                f"chain request too large: the first factor of a {self.m} x {self.n} chain "
                f"has {choices:,} choices (divisors of m times divisors of n), above the "
                f"limit MAX_GRAPH_MOVES = {MAX_GRAPH_MOVES:,}, and a listing may pass over "
                "all of them between two chains; count_chains counts them in closed form, "
                "or take sizes with fewer divisors"
            )

    def _narrower(self) -> list[str]:
        """The changes that would shrink this request's state graph; fewer divisors always do.

        The last may widen the request instead: kind ``"any"``, whose graph carries
        no kind flags, where that graph is within the limit.
        """
        ways = ["fewer factors"] if max(self.possible_counts) > 1 else []
        ways += ["a smaller rank"] if self.rank > 1 else []
        ways += ["or sizes with fewer divisors" if ways else "sizes with fewer divisors"]
        as_any = sum(
            graph_size(self.m, self.n, count, kind="any", rank=self.rank)
            for count in self.possible_counts
        )
        if self.kind != "any" and as_any <= MAX_GRAPH_MOVES:
            ways[-1] += (
                f'; or widen it to kind "any", whose graph is smaller ({as_any:,} moves; '
                f"pydebut.classify tells the {self.kind} chains among those it gives)"
            )
        return ways


def _describe_counts(counts: tuple[int, ...]) -> str:
    if len(counts) > 1 and counts == tuple(range(counts[0], counts[-1] + 1)):
        return f"range({counts[0]}, {counts[-1] + 1})"
    return str(counts[0]) if len(counts) == 1 else str(list(counts))


def _factor_counts(n_factors: Any) -> tuple[int, ...]:
    """Distinct factor counts, each checked against :data:`MAX_FACTORS` as it is read."""
    if isinstance(n_factors, range):
        if not n_factors:
            raise ValueError(f"n_factors is empty: {n_factors!r}")
        largest = max(n_factors[0], n_factors[-1])
        if largest > MAX_FACTORS:
            raise ValueError(f"n_factors must be at most {MAX_FACTORS}, got {n_factors!r}")
    if isinstance(n_factors, Iterable) and not isinstance(n_factors, (str, bytes)):
        values: Iterable[Any] = n_factors
    else:
        values = [n_factors]
    counts = set()
    for index, value in enumerate(values):
        if index == MAX_FACTOR_VALUES:  # an endless iterator repeating counts ends here
            raise ValueError(
                f"n_factors gives more than {MAX_FACTOR_VALUES} values: list each factor "
                "count once (at most MAX_FACTORS of them are distinct)"
            )
        count = as_positive_int(value, "n_factors", "chain request")
        if count > MAX_FACTORS:
            raise ValueError(f"n_factors must be at most {MAX_FACTORS}, got {count}")
        counts.add(count)
    if not counts:
        raise ValueError(f"n_factors is empty: {n_factors!r}")
    return tuple(sorted(counts))


def _request(
    m: Any,
    n: Any,
    n_factors: Any,
    kind: Any,
    max_params: Any,
    max_dim: Any,
    rank: Any,
    allow_diagonal: Any,
) -> _Request:
    """Validate a request and raise on contradictory filters, before any work."""
    m = _as_size(m, "m", "chain request")
    n = _as_size(n, "n", "chain request")
    counts = _factor_counts(n_factors)
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(map(repr, KINDS))}; got {shown(kind)}")
    if max_params is not None:
        max_params = as_positive_int(max_params, "max_params", "chain request")
    if max_dim is not None:
        max_dim = as_positive_int(max_dim, "max_dim", "chain request")
        if max_dim < max(m, n):
            raise ValueError(f"max_dim={max_dim} is below max(m, n) = {max(m, n)}: no chain fits")
    rank = as_positive_int(rank, "rank", "chain request")
    allow_diagonal = as_bool(allow_diagonal, "allow_diagonal")
    if kind in ("bulging", "other") and counts[-1] == 1:
        raise ValueError(f'kind="{kind}" needs at least 2 factors, but n_factors is 1')
    if kind == "bulging" and max_dim is not None and max_dim <= max(m, n):
        raise ValueError(
            f'kind="bulging" needs a dimension above max(m, n) = {max(m, n)}, but max_dim={max_dim}'
        )
    return _Request(m, n, counts, kind, max_params, max_dim, rank, allow_diagonal)


def enumerate_chains(
    m: int,
    n: int,
    n_factors: int | Iterable[int],
    *,
    kind: KindFilter = "any",
    max_params: int | None = None,
    max_dim: int | None = None,
    rank: int = 1,
    allow_diagonal: bool = False,
    order: Order = "lex",
) -> Iterator[Chain]:
    """Yield every chainable (or rank-weighted) chain of an ``m x n`` product, lazily.

    Parameters
    ----------
    m, n : int
        Shape of the product, below ``2**40``.
    n_factors : int or iterable of int
        Number of factors ``L`` (at most 64), or several: a range, a list, ...
    kind : {"any", "monotonic", "bulging", "other"}
        Keep only chains of this kind (see the Concepts page of the documentation).
    max_params : int, optional
        Keep only chains with at most this many weights.
    max_dim : int, optional
        Keep only chains whose dimensions are all at most this; it must be at
        least ``max(m, n)``.
    rank : int
        Largest rank weight ``w_l``; ``rank > 1`` adds Le et al.'s
        rank-weighted chains.
    allow_diagonal : bool
        Allow factors with ``r = s = 1`` (plain diagonal scalings). Without them a
        ``1 x 1`` product has no chain, and at rank 1 no chain has more than
        ``Omega(m) + Omega(n)`` factors (prime factors with multiplicity).
    order : {"lex", "params", "max_dim"}
        ``"lex"``: by number of factors, then lexicographically by
        ``(b_1, c_1, w_1, b_2, ...)`` (for ``rank=1``, by
        ``(r_1, s_1, r_2, s_2, ...)``); memory stays flat. ``"params"``: by
        parameter count, then largest dimension, then as ``"lex"``;
        ``"max_dim"``: by largest dimension, then parameters, then as ``"lex"``.
        The ordered modes run a best-first search and keep its frontier in
        memory: at most one partial chain more per step of the search.

    Yields
    ------
    Chain
        Valid, dense chains of shape ``(m, n)``, each once.

    Raises
    ------
    TypeError, ValueError
        On malformed or contradictory arguments, when called; ``ValueError``
        too when a filtered search's state graph would exceed
        ``MAX_GRAPH_MOVES`` (see ``pydebut.chains.graph_size``).

    Notes
    -----
    Every branch the search enters completes to at least one chain that passes
    the filters: each state knows how many chains complete it, their smallest
    parameter total and smallest largest dimension.

    Examples
    --------
    >>> for chain in enumerate_chains(4, 4, n_factors=2, kind="other"):
    ...     print(chain.to_sup_sub()[1])
    [[2, 1, 2], [2, 4, 1]]
    [[4, 1, 1], [1, 4, 1]]
    [[4, 2, 1], [1, 2, 1]]
    >>> next(enumerate_chains(4, 4, n_factors=2, order="params"))
    Chain([(4, 1, 4, 1, 1), (1, 4, 1, 4, 1)])
    """
    request = _request(m, n, n_factors, kind, max_params, max_dim, rank, allow_diagonal)
    if order not in ORDERS:
        raise ValueError(f"order must be one of {', '.join(map(repr, ORDERS))}; got {shown(order)}")
    if order == "lex":
        request.check_first_choices()
        return _walk_lex(request, request.graph())
    return _walk_best_first(request, request.graph(exact=True), by_dim=order == "max_dim")


def _walk_lex(request: _Request, graph: _Graph) -> Iterator[Chain]:
    budget = inf if request.max_params is None else request.max_params
    for n_factors in request.possible_counts:
        root = graph.root(n_factors)
        if graph.summary(root).count:
            yield from _descend(graph, root, budget, [])


def _descend(
    graph: _Graph, state: _State, budget: float, factors: list[tuple[int, ...]]
) -> Iterator[Chain]:
    if state.left == 0:
        yield Chain(factors)
        return
    for move, below in graph.live_moves(state):
        if move.nnz + below.min_params <= budget:
            factors.append(move.factor)
            yield from _descend(graph, move.child, budget - move.nnz, factors)
            factors.pop()


class _Partial(NamedTuple):
    """The first factors of a chain, as the best-first search holds them."""

    state: _State  # what is left to choose
    path: tuple[int, ...]  # (n_factors, index of each move among its state's live moves)
    params: int  # parameters of the factors chosen
    dim: int  # largest dimension so far, at least max(m, n)
    factors: tuple[tuple[int, int, int, int, int], ...]


def _walk_best_first(request: _Request, graph: _Graph, by_dim: bool) -> Iterator[Chain]:
    """Chains by key, then by path (number of factors, then lex).

    A partial chain's key bounds the keys of the chains that complete it from below,
    so partial chains leave the frontier in the order of ``(key, path)``. The children
    of a partial chain enter it one at a time, in that order: each one that leaves
    puts back its first child and its next sibling, so the frontier grows by at most
    one entry a step, not by a state's choices. Siblings are found by scanning the
    parent's moves for the next ``batch`` of them, a batch twice as large at each
    scan, starting from ``FIRST_SIBLINGS``: a parent whose ``j`` children leave is
    scanned about ``log2(j / FIRST_SIBLINGS) + 1`` times, and a batch held is at most
    ``FIRST_SIBLINGS`` larger than the siblings that have left.
    """
    budget = inf if request.max_params is None else request.max_params
    smallest_dim = max(request.m, request.n)
    frontier: list[tuple[Any, ...]] = []

    def key(params: float, dim: float) -> tuple[float, float]:
        return (dim, params) if by_dim else (params, dim)

    def children(parent: _Partial, after: tuple[float, float, int] | None, batch: int) -> None:
        """Put the parent's next child after ``after`` by ``(key, index)`` on the frontier.

        It carries the ``batch - 1`` siblings that follow it, for the steps to come.
        """
        found = []
        for index, (move, below) in enumerate(graph.live_moves(parent.state)):
            params = parent.params + move.nnz
            if params + below.min_params <= budget:
                dim = max(parent.dim, move.factor[1])
                place = (*key(params + below.min_params, max(dim, below.min_dim)), index)
                if after is None or place > after:
                    found.append((place, move, params, dim))
        push(parent, heapq.nsmallest(batch, found), batch)

    def push(parent: _Partial, batch: list[tuple[Any, ...]], size: int) -> None:
        if batch:
            (place, move, params, dim), *later = batch
            path = (*parent.path, place[-1])
            child = _Partial(move.child, path, params, dim, (*parent.factors, move.factor))
            heapq.heappush(frontier, (*place[:-1], path, child, parent, place, later, size))

    for n_factors in request.possible_counts:
        root = graph.root(n_factors)
        top = graph.summary(root)
        if top.count and top.min_params <= budget:
            start = _Partial(root, (n_factors,), 0, smallest_dim, ())
            lower = key(top.min_params, max(smallest_dim, top.min_dim))
            heapq.heappush(frontier, (*lower, start.path, start, None, None, [], 0))
    while frontier:
        *_, partial, parent, place, later, size = heapq.heappop(frontier)
        if partial.state.left:
            children(partial, None, FIRST_SIBLINGS)
        if later:
            push(parent, later, size)
        elif parent is not None:
            children(parent, place, 2 * size)
        if not partial.state.left:
            yield Chain(partial.factors)


def count_chains(
    m: int,
    n: int,
    n_factors: int | Iterable[int],
    *,
    kind: KindFilter = "any",
    max_params: int | None = None,
    max_dim: int | None = None,
    rank: int = 1,
    allow_diagonal: bool = False,
) -> int:
    """Count the chains :func:`enumerate_chains` yields, without building them.

    Parameters
    ----------
    m, n : int
        Shape of the product, below ``2**40``.
    n_factors : int or iterable of int
        Number of factors ``L`` (at most 64), or several: a range, a list, ...
    kind : {"any", "monotonic", "bulging", "other"}
        Keep only chains of this kind (see the Concepts page of the documentation).
    max_params : int, optional
        Keep only chains with at most this many weights.
    max_dim : int, optional
        Keep only chains whose dimensions are all at most this; it must be at
        least ``max(m, n)``.
    rank : int
        Largest rank weight ``w_l``; ``rank > 1`` adds Le et al.'s
        rank-weighted chains.
    allow_diagonal : bool
        Allow factors with ``r = s = 1`` (plain diagonal scalings). Without them a
        ``1 x 1`` product has no chain, and at rank 1 no chain has more than
        ``Omega(m) + Omega(n)`` factors (prime factors with multiplicity).

    Returns
    -------
    int
        The exact count (a Python int, however large).

    Raises
    ------
    TypeError, ValueError
        On malformed or contradictory arguments, as :func:`enumerate_chains`.
    ValueError
        When a search that needs the state graph (any filter but
        ``allow_diagonal``) would exceed ``MAX_GRAPH_MOVES`` moves (see
        ``pydebut.chains.graph_size``); the message says how to narrow the request.
    CountLimitError
        With ``max_params``, when the count reaches ``MAX_BUDGET_MOVES`` moves
        followed (in seconds, not up front); a ``ValueError``.

    Notes
    -----
    With no filter but ``allow_diagonal``, the count is combinatorial: ``x``
    has ``f_L(x) = prod_p C(e_p + L - 1, L - 1)`` ordered factorizations into
    ``L`` parts (``x = prod_p p^e_p``), and inclusion-exclusion over the
    factors forced to ``r = s = 1`` gives
    ``sum_j (-1)^j C(L, j) f_{L-j}(m) f_{L-j}(n)``. Otherwise, without
    ``max_params``, it is a sum over the state graph (dynamic programming);
    with it, a recursion descends only into states whose completions straddle
    the remaining budget: a state whose largest completion fits contributes
    its whole count at once.

    Examples
    --------
    >>> count_chains(4, 4, n_factors=2), len(list(enumerate_chains(4, 4, n_factors=2)))
    (7, 7)
    >>> count_chains(512, 4608, n_factors=range(1, 6))
    5857628
    """
    request = _request(m, n, n_factors, kind, max_params, max_dim, rank, allow_diagonal)
    if request.unfiltered:
        return sum(
            _count_factorization_pairs(request.m, request.n, count, request.allow_diagonal)
            for count in request.possible_counts
        )
    graph = request.graph()
    roots = [graph.root(n_factors) for n_factors in request.possible_counts]
    if request.max_params is None:
        return sum(graph.summary(root).count for root in roots)
    memo: dict[tuple[_State, int], int] = {}
    visited = 0  # moves followed, each one call of within

    def within(state: _State, budget: int) -> int:
        nonlocal visited
        if visited == MAX_BUDGET_MOVES:
            raise CountLimitError(
                f"chain request too large: counting the {request.m} x {request.n} chains "
                f"within max_params={shown(request.max_params)} reached {MAX_BUDGET_MOVES:,} "
                "moves, the limit MAX_BUDGET_MOVES of pydebut.chains; narrow the request: "
                "fewer factors, or no max_params (counted over the graph)"
            )
        visited += 1
        below = graph.summary(state)
        if below.count == 0 or below.min_params > budget:
            return 0
        if below.max_params <= budget:
            return below.count
        key = (state, budget)
        if key not in memo:
            memo[key] = sum(within(move.child, budget - move.nnz) for move in graph.moves(state))
        return memo[key]

    return sum(within(root, request.max_params) for root in roots)


def _count_factorization_pairs(m: int, n: int, n_factors: int, allow_diagonal: bool) -> int:
    """Pairs of ordered factorizations ``m = r_1...r_L``, ``n = s_1...s_L``.

    Without ``allow_diagonal``, no ``l`` may have ``r_l = s_l = 1``.
    """

    def ordered(x: int, parts: int) -> int:
        if parts == 0:
            return int(x == 1)
        return prod(comb(e + parts - 1, parts - 1) for e in _prime_exponents(x))

    if allow_diagonal:
        return ordered(m, n_factors) * ordered(n, n_factors)
    return sum(
        (-1) ** j * comb(n_factors, j) * ordered(m, n_factors - j) * ordered(n, n_factors - j)
        for j in range(n_factors + 1)
    )


def min_param_chain(
    m: int,
    n: int,
    n_factors: int | Iterable[int],
    kind: KindFilter = "monotonic",
    rank: int = 1,
    *,
    max_dim: int | None = None,
    allow_diagonal: bool = False,
) -> Chain | None:
    """The chain with the fewest parameters, by dynamic programming over divisor pairs.

    Parameters
    ----------
    m, n : int
        Shape of the product.
    n_factors : int or iterable of int
        Number of factors, or several: a range, a list, ... (the best over all).
    kind : {"monotonic", "any", "bulging", "other"}
        Kind of chain to search.
    rank : int
        Largest rank weight (``rank > 1`` includes rank-weighted chains).
    max_dim : int, optional
        Largest allowed dimension.
    allow_diagonal : bool
        Allow factors with ``r = s = 1`` (plain diagonal scalings). Without them a
        ``1 x 1`` product has no chain, and at rank 1 no chain has more than
        ``Omega(m) + Omega(n)`` factors (prime factors with multiplicity).

    Returns
    -------
    Chain or None
        The smallest chain, the first in :func:`enumerate_chains` order among
        equals; ``None`` when no chain satisfies the request.

    Raises
    ------
    TypeError, ValueError
        On malformed or contradictory arguments, as :func:`enumerate_chains`.
    ValueError
        When the state graph would exceed ``MAX_GRAPH_MOVES`` moves (see
        ``pydebut.chains.graph_size``); the message says how to narrow the request.

    Notes
    -----
    The smallest completion of a state ``(L', b_l...b_L, c_1...c_{l-1}, w_{l-1})``
    is ``min over (b_l, c_l, w_l) of nnz_l + best(child)`` with
    ``nnz_l = c_1...c_l * b_l...b_L * w_{l-1} w_l``; there are at most
    ``L * d(m) * d(n) * rank`` states (``d`` = number of divisors).

    Examples
    --------
    >>> chain = min_param_chain(512, 2048, 9)
    >>> chain.n_params, chain.kind
    (11264, 'monotonic')
    >>> min_param_chain(7, 7, 3) is None
    True
    >>> min_param_chain(1, 1, 2) is None, min_param_chain(1, 1, 2, allow_diagonal=True)
    (True, Chain([(1, 1, 1, 1, 1), (1, 1, 1, 1, 1)]))
    """
    request = _request(m, n, n_factors, kind, None, max_dim, rank, allow_diagonal)
    graph = request.graph(exact=True)
    roots = [graph.root(count) for count in request.possible_counts]
    best = min(roots, key=lambda root: graph.summary(root).min_params, default=None)
    if best is None or not graph.summary(best).count:
        return None
    factors, state = [], best
    while state.left:
        target = graph.summary(state).min_params
        move = next(
            move for move, below in graph.live_moves(state) if move.nnz + below.min_params == target
        )
        factors.append(move.factor)
        state = move.child
    return Chain(factors)


def pareto_front(
    m: int,
    n: int,
    n_factors: int | Iterable[int],
    *,
    kind: KindFilter = "monotonic",
    max_params: int | None = None,
    max_dim: int | None = None,
    rank: int = 1,
    allow_diagonal: bool = False,
) -> list[Chain]:
    """Chains not beaten on parameters, number of factors and largest dimension together.

    A chain is on the front when no other chain has at most as many
    parameters, at most as many factors and at most as large a largest
    dimension (:attr:`Chain.max_dim`), with at least one strictly smaller.
    Flops are ``2 * params`` (:attr:`Chain.flops`), so they order chains as
    parameters do. ``kind`` defaults to ``"monotonic"``: among all chains of
    two factors or more, the two factors through a bottleneck of dimension 1
    (``r = (m, 1)``, ``s = (1, n)``, ``m + n`` parameters, a rank-one product)
    beat every other chain on all three counts (with one factor allowed, the
    dense chain is on the front too, for its one factor).

    Parameters
    ----------
    m, n : int
        Shape of the product, below ``2**40``.
    n_factors : int or iterable of int
        Number of factors ``L`` (at most 64), or several: a range, a list, ...
    kind : {"any", "monotonic", "bulging", "other"}
        Keep only chains of this kind (see the Concepts page of the documentation).
    max_params : int, optional
        Keep only chains with at most this many weights.
    max_dim : int, optional
        Keep only chains whose dimensions are all at most this; it must be at
        least ``max(m, n)``.
    rank : int
        Largest rank weight ``w_l``; ``rank > 1`` adds Le et al.'s
        rank-weighted chains.
    allow_diagonal : bool
        Allow factors with ``r = s = 1`` (plain diagonal scalings). Without them a
        ``1 x 1`` product has no chain, and at rank 1 no chain has more than
        ``Omega(m) + Omega(n)`` factors (prime factors with multiplicity).

    Returns
    -------
    list of Chain
        One chain per front point, sorted by parameters, then factors, then
        largest dimension; among equals, the first in :func:`enumerate_chains` order.

    Raises
    ------
    TypeError, ValueError
        On malformed or contradictory arguments, as :func:`enumerate_chains`.
    ValueError
        When the state graph would exceed ``MAX_GRAPH_MOVES`` moves (see
        ``pydebut.chains.graph_size``); the message says how to narrow the request.

    Notes
    -----
    Each state keeps the front of its completions' ``(parameters, largest q)``
    pairs: both grow monotonically along a chain, so a state's front is made
    of its moves' costs added to its children's fronts.

    Examples
    --------
    >>> front = pareto_front(64, 576, n_factors=range(1, 6))
    >>> [(c.n_params, c.n_factors, c.max_dim) for c in front]
    [(1344, 4, 576), (1600, 3, 576), (3200, 2, 576), (36864, 1, 576)]
    """
    request = _request(m, n, n_factors, kind, max_params, max_dim, rank, allow_diagonal)
    graph = request.graph(exact=True)
    budget = inf if request.max_params is None else request.max_params
    # a point: (parameters, largest q, the moves' indices (enumeration order), factors)
    fronts: dict[_State, list[tuple[float, float, tuple[int, ...], tuple[Any, ...]]]] = {}

    def front(state: _State) -> list[tuple[float, float, tuple[int, ...], tuple[Any, ...]]]:
        if state not in fronts:
            if state.left == 0:
                fronts[state] = [(0, 0, (), ())]
            else:
                points = [
                    (move.nnz + params, max(move.factor[1], dim), (i, *path), (move.factor, *rest))
                    for i, (move, _) in enumerate(graph.live_moves(state))
                    for params, dim, path, rest in front(move.child)
                ]
                fronts[state] = _nondominated(points)
        return fronts[state]

    candidates = [
        (params, count, max(request.m, request.n, dim), path, factors)
        for count in request.possible_counts
        for params, dim, path, factors in front(graph.root(count))
        if params <= budget
    ]
    kept = [
        point
        for point in candidates
        if not any(_dominates(other[:3], point[:3]) for other in candidates)
    ]
    first: dict[tuple[float, ...], tuple[tuple[int, ...], Any]] = {}
    for params, count, dim, path, factors in kept:  # equals: the first in enumeration order
        if (params, count, dim) not in first or path < first[params, count, dim][0]:
            first[params, count, dim] = (path, factors)
    return [Chain(first[key][1]) for key in sorted(first)]


def _dominates(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return all(x <= y for x, y in zip(a, b, strict=True)) and a != b


def _nondominated(points: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """The points ``(params, dim, path, payload)`` that some parent may take.

    A parent's move of largest dimension ``q`` maps ``dim`` to ``max(q, dim)``: a point
    is dropped only when another has fewer parameters and no larger ``dim``, or as
    many parameters, no larger ``dim`` and an earlier ``path`` (enumeration order).
    That other point is then at least as good at every parent, and comes first
    wherever the two tie.
    """
    front: list[tuple[Any, ...]] = []
    best_dim = inf  # the smallest dim of the points with fewer parameters
    ordered = sorted(points, key=operator.itemgetter(0, 1, 2))
    for _, group in groupby(ordered, key=operator.itemgetter(0)):  # dims increasing
        kept = [point for point in group if point[1] < best_dim]
        earliest = None  # the earliest path kept so far in the group
        for point in kept:
            if earliest is None or point[2] < earliest:
                front.append(point)
                earliest = point[2]
        if kept:
            best_dim = kept[0][1]
    return front
