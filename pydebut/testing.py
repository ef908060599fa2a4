"""Test helpers: the dot (adjoint) test, dense comparisons and hypothesis strategies.

The strategies need the ``test`` extra (``pip install pydebut[test]``); they
import hypothesis when called, so the rest of this module works without it.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from math import gcd, prod
from numbers import Real
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import DTypeLike
from scipy.sparse.linalg import LinearOperator

from ._arguments import refuse_masked, shown
from ._weights import SUPPORTED_DTYPES, supported_dtype
from .chains import MAX_FACTORS as _MAX_FACTORS
from .chains import MAX_SIZE as _MAX_SIZE
from .chains import _divisors
from .fit._common import frobenius_norm
from .operator import DeButOperator, SeedLike, random_generator
from .spec import Chain, FactorSpec

if TYPE_CHECKING:
    from hypothesis.strategies import SearchStrategy

__all__ = [
    "assert_debut_close",
    "chainable_chains",
    "chains",
    "dense_chains",
    "dottest",
    "operators",
    "rank_weighted_chains",
    "tolerance",
]


def tolerance(dtype: DTypeLike) -> float:
    """A relative tolerance suited to ``dtype``: two thirds of its decimal digits.

    1e-2 in half, 1e-4 in single and 1e-10 in double precision; integer and
    boolean dtypes get double precision's, in which :func:`dottest` checks them.

    Parameters
    ----------
    dtype : dtype
        Anything ``numpy.dtype`` takes; a dtype that is neither floating nor
        complex gets double precision's tolerance.

    Returns
    -------
    float
        ``10**-(2 * precision // 3)``, ``precision`` the decimal digits of
        ``numpy.finfo``.

    Raises
    ------
    TypeError
        If ``numpy.dtype`` cannot read ``dtype``.

    Examples
    --------
    >>> tolerance(np.float16), tolerance(np.complex64), tolerance(np.float64), tolerance(int)
    (0.01, 0.0001, 1e-10, 1e-10)
    """
    return 10.0 ** -(2 * np.finfo(_computed_in(dtype)).precision // 3)


def _computed_in(dtype: DTypeLike) -> np.dtype:
    """``dtype`` if it is a floating or complex one, else float64 (integers, booleans)."""
    dtype = np.dtype(dtype)
    return dtype if np.issubdtype(dtype, np.inexact) else np.dtype(np.float64)


def _random_like(rng: np.random.Generator, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """Standard normal values in ``dtype``, or in float64 for an integer or boolean ``dtype``.

    An integer operator is checked as the real matrix it holds: rounded to
    integers, most of the values would be 0 and the rest would often cancel.
    """
    values = rng.standard_normal(shape)
    if np.dtype(dtype).kind == "c":
        values = values + 1j * rng.standard_normal(shape)
    return values.astype(_computed_in(dtype))


def _checked_tolerance(where: str, name: str, value: float) -> float:
    """``value`` if it is a finite real number of at least 0, or raise naming ``name``.

    A negative or NaN tolerance fails every operator, the correct ones too; an
    infinite one passes every operator; a string or None fails inside NumPy.
    """
    if isinstance(value, bool) or not isinstance(value, Real):
        wanted = f"{where}: {name} must be a real number"
        raise TypeError(f"{wanted}, got {type(value).__name__} {shown(value)}")
    try:
        finite = 0 <= float(value) < np.inf
    except OverflowError:  # an int beyond the largest float
        finite = False
    if not finite:
        given = shown(value) if isinstance(value, int) else value  # digits of a huge int cut
        raise ValueError(f"{where}: {name} must be finite and at least 0, got {given}")
    return value


def _checked_operator(where: str, op: Any, kind: type) -> None:
    """Raise ``TypeError`` unless ``op`` is a ``kind`` (a method it lacks would fail later)."""
    if not isinstance(op, kind):
        raise TypeError(f"{where}: op must be a {kind.__name__}, got {type(op).__name__}")


def dottest(op: LinearOperator, rtol: float | None = None, rng: SeedLike = None) -> bool:
    """Check ``<A u, v> == <u, A^H v>`` for random ``u`` and ``v``.

    ``u`` and ``v`` are standard normal in the operator's dtype, or in float64
    for an integer or boolean operator, which must then accept float vectors.

    Parameters
    ----------
    op : LinearOperator
    rtol : float, optional
        Relative tolerance; :func:`tolerance` of the operator's dtype by default.
    rng : seed or Generator, optional

    Returns
    -------
    bool
        True; failures raise.

    Raises
    ------
    TypeError
        If ``op`` is not a ``LinearOperator``, ``rtol`` is not a real number
        (a bool is not taken), or ``rng`` is none of what it takes.
    ValueError
        If ``rtol`` is negative, infinite or NaN, or ``rng`` a negative seed.
    AssertionError
        If the two inner products differ by more than ``rtol``.

    Examples
    --------
    >>> from pydebut import DeButOperator
    >>> dottest(DeButOperator.random([(4, 8, 1, 2, 4), (8, 8, 2, 2, 2)], rng=0), rng=0)
    True
    """
    _checked_operator("dottest", op, LinearOperator)
    rtol = tolerance(op.dtype) if rtol is None else _checked_tolerance("dottest", "rtol", rtol)
    generator = random_generator(rng)
    m, n = op.shape
    u = _random_like(generator, (n,), op.dtype)
    v = _random_like(generator, (m,), op.dtype)
    forward = _inner(v, op.matvec(u))
    adjoint = _inner(op.rmatvec(v), u)
    scale = frobenius_norm(op.matvec(u)) * frobenius_norm(v) + 1e-300
    if not abs(forward - adjoint) <= rtol * scale:  # NaN fails too
        raise AssertionError(
            f"dot test failed: <A u, v> = {forward}, <u, A^H v> = {adjoint} (rtol {rtol})"
        )
    return True


def _inner(x: np.ndarray, y: np.ndarray) -> complex | float:
    """``<x, y>`` in double precision at least: the dot test adds no rounding of its own.

    In half precision the products of two small entries fall among the subnormals.
    """
    wide = np.promote_types(np.result_type(x, y), np.float64)
    return np.vdot(np.asarray(x, dtype=wide), np.asarray(y, dtype=wide))


def assert_debut_close(
    op: DeButOperator, expected: np.ndarray, rtol: float | None = None, atol: float = 0.0
) -> None:
    """Assert that ``op.toarray()`` equals ``expected``, relative to ``expected``'s largest entry.

    Parameters
    ----------
    op : DeButOperator
        The operator to check; its dense product is formed.
    expected : array_like, shape (m, n)
        The matrix it should equal.
    rtol : float, optional
        Relative tolerance, times the largest ``|expected|`` entry;
        :func:`tolerance` of the operator's dtype by default.
    atol : float, default 0.0
        Absolute tolerance added to that bound.

    Raises
    ------
    TypeError
        If ``op`` is not a :class:`~pydebut.DeButOperator`, ``expected`` does
        not hold real or complex numbers, or ``rtol`` or ``atol`` is not a
        real number (a bool is not taken).
    ValueError
        If ``rtol`` or ``atol`` is negative, infinite or NaN, or ``expected``
        is a masked array with masked entries (fill them first).
    AssertionError
        If the shapes differ or ``expected`` has an infinite entry (both
        checked before the dense product is formed: an infinite entry would
        make the bound infinite and pass every operator), or the largest
        entry of ``|op.toarray() - expected|`` exceeds ``rtol * max|expected|
        + atol`` (or is NaN); the message gives its row and column and both
        values there.

    Examples
    --------
    >>> import numpy as np
    >>> from pydebut import DeButOperator
    >>> op = DeButOperator.identity([(4, 4, 2, 2, 1)])
    >>> assert_debut_close(op, np.eye(4))
    """
    where = "assert_debut_close"
    _checked_operator(where, op, DeButOperator)
    rtol = tolerance(op.dtype) if rtol is None else _checked_tolerance(where, "rtol", rtol)
    atol = _checked_tolerance(where, "atol", atol)
    refuse_masked(expected, "expected", where)
    expected = np.asarray(expected)
    if expected.dtype.kind not in "biufc":
        wanted = f"{where}: expected must hold real or complex numbers"
        raise TypeError(f"{wanted}, not {expected.dtype}")
    if op.shape != expected.shape:  # before the dense product is formed
        raise AssertionError(f"shapes differ: {op.shape} != {expected.shape}")
    infinite = np.argwhere(np.isinf(expected))
    if infinite.size:
        row, column = infinite[0]
        raise AssertionError(
            f"expected has {expected[row, column].item()!r} at row {row}, column {column}: "
            "an operator is compared only with a finite matrix"
        )
    actual = op.toarray()
    difference = np.abs(actual - expected)
    error = difference.max(initial=0.0)
    bound = rtol * np.abs(expected).max(initial=0.0) + atol
    if not error <= bound:  # NaN fails too; argmax finds the first NaN
        row, column = np.unravel_index(np.argmax(difference), difference.shape)
        raise AssertionError(
            f"largest difference {error:.3e} exceeds {bound:.3e}, at row {row}, column"
            f" {column}: op.toarray() has {actual[row, column].item()!r}, expected"
            f" {expected[row, column].item()!r}"
        )


# --- hypothesis strategies --------------------------------------------------------


def _check_bounds(strategy: str, **bounds: tuple[int, int, str]) -> None:
    """Refuse ``name=(value, least, rule)`` unless ``value`` is an integer of at least ``least``,
    and ``max_factors`` (a bound of every strategy) above ``pydebut.chains.MAX_FACTORS``.

    A float or a bool bound would only fail when a value is drawn, inside hypothesis;
    below ``least`` no draw could keep it.
    """
    for name, (value, least, rule) in bounds.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"{strategy}: {name} must be an integer, not {type(value).__name__}")
        if value < least:
            raise ValueError(f"{strategy}: {name} must be at least {least} ({rule}), got {value}")
    most_factors = bounds["max_factors"][0]
    if most_factors > _MAX_FACTORS:  # a draw of many more failed in hypothesis, or hung
        raise ValueError(
            f"{strategy}: max_factors must be at most {_MAX_FACTORS} (pydebut.chains.MAX_FACTORS, "
            f"the longest chains pydebut searches), got {shown(most_factors)}"
        )


def _radices(draw: Any, n_factors: int, max_product: int, max_radix: int) -> list[int]:
    """Draw ``n_factors`` integers in ``[1, max_radix]`` with product at most ``max_product``."""
    from hypothesis import strategies as st

    values: list[int] = []
    for _ in range(n_factors):
        room = max(1, min(max_radix, max_product // prod(values)))
        values.append(draw(st.integers(1, room)))
    return values


def chainable_chains(
    max_dim: int = 64, max_factors: int = 4, max_radix: int = 4
) -> SearchStrategy[Chain]:
    """Strategy for chainable chains: ordered factorizations ``m = prod r_l``, ``n = prod s_l``.

    Every draw is valid and has ``m, n <= max_dim``.

    Parameters
    ----------
    max_dim : int, default 64
        Largest ``m`` and ``n``, at least 1; intermediate dimensions may exceed it.
    max_factors : int, default 4
        Largest number of factors, at least 1 (each draw has 1 to ``max_factors``).
    max_radix : int, default 4
        Largest ``r_l`` and ``s_l``, at least 1.

    Returns
    -------
    hypothesis.strategies.SearchStrategy of Chain

    Raises
    ------
    TypeError
        When called, if a bound is not an integer.
    ValueError
        When called, if a bound is below its least value (given above): no
        draw could keep it; or if ``max_factors`` is above
        ``pydebut.chains.MAX_FACTORS`` (64).
    """
    from hypothesis import strategies as st

    _check_bounds(
        "chainable_chains",
        max_dim=(max_dim, 1, "m, n >= 1"),
        max_factors=(max_factors, 1, "a chain has a factor"),
        max_radix=(max_radix, 1, "r_l, s_l >= 1"),
    )

    @st.composite
    def draw_chain(draw: Any) -> Chain:
        n_factors = draw(st.integers(1, max_factors))
        rs = _radices(draw, n_factors, max_dim, max_radix)
        ss = _radices(draw, n_factors, max_dim, max_radix)
        return Chain.from_factorizations(rs, ss)

    return draw_chain()


def rank_weighted_chains(
    max_dim: int = 96, max_factors: int = 4, max_radix: int = 3, max_rank: int = 3
) -> SearchStrategy[Chain]:
    """Strategy for Le et al.'s rank-weighted chainable chains ``(a, b, c, d, p, q)``.

    Factor ``l`` is ``(a_l, b_l, c_l, d_l, w_{l-1}, w_l)`` with ``a_l = prod_{i<l} c_i``,
    ``d_l = prod_{i>l} b_i``, ``w_0 = w_L = 1``. Dimension ``j`` of the chain is
    ``prod_{i<=j} c_i * prod_{i>j} b_i * w_j``; each ``c_l`` and ``w_l`` is drawn
    small enough to keep it at most ``max_dim``, so no draw is filtered out.

    Parameters
    ----------
    max_dim : int, default 96
        Largest dimension of the chain, inputs and outputs included; at least 1.
    max_factors : int, default 4
        Largest number of factors, at least 2 (each draw has 2 to ``max_factors``).
    max_radix : int, default 3
        Largest ``b_l`` and ``c_l``, at least 1.
    max_rank : int, default 3
        Largest rank weight ``w_l``, at least 1.

    Returns
    -------
    hypothesis.strategies.SearchStrategy of Chain

    Raises
    ------
    TypeError
        When called, if a bound is not an integer.
    ValueError
        When called, if a bound is below its least value (given above): no
        draw could keep it; or if ``max_factors`` is above
        ``pydebut.chains.MAX_FACTORS`` (64).
    """
    from hypothesis import strategies as st

    _check_bounds(
        "rank_weighted_chains",
        max_dim=(max_dim, 1, "dimensions are >= 1"),
        max_factors=(max_factors, 2, "a rank-weighted chain has two factors or more"),
        max_radix=(max_radix, 1, "b_l, c_l >= 1"),
        max_rank=(max_rank, 1, "w_l >= 1"),
    )

    @st.composite
    def draw_chain(draw: Any) -> Chain:
        n_factors = draw(st.integers(2, max_factors))
        bs = _radices(draw, n_factors, max_dim, max_radix)
        # Dimension j is prod(cs[:j]) * prod(bs[j:]) * ranks[j]. At rank 1 it is at most
        # max_dim for j = 0 (the bs' product) and stays so as each cs[j - 1] is drawn;
        # ranks[j] then takes the room left, at least 1.
        cs: list[int] = []
        for l in range(n_factors):  # noqa: E741
            room = max_dim // (prod(cs) * prod(bs[l + 1 :]))
            cs.append(draw(st.integers(1, min(max_radix, room))))
        ranks = [1]
        for j in range(1, n_factors):
            room = max_dim // (prod(cs[:j]) * prod(bs[j:]))
            ranks.append(draw(st.integers(1, min(max_rank, room))))
        ranks.append(1)
        tuples = [
            (prod(cs[:l]), bs[l], cs[l], prod(bs[l + 1 :]), ranks[l], ranks[l + 1])
            for l in range(n_factors)  # noqa: E741
        ]
        return Chain.from_abcd(tuples)

    return draw_chain()


def dense_chains(max_dim: int = 64, max_factors: int = 5) -> SearchStrategy[Chain]:
    """Strategy for dense chains that are usually *not* chainable.

    A chainable chain with square factors (``r = s``, arbitrary ``k`` and
    ``t``) inserted: such a factor's support holds the identity, so the
    product's support contains that of the chainable chain, which is full.

    Parameters
    ----------
    max_dim : int, default 64
        Largest ``m`` and ``n`` (as for :func:`chainable_chains`), at least 1.
    max_factors : int, default 5
        Largest number of factors, square ones included; at least 2.

    Returns
    -------
    hypothesis.strategies.SearchStrategy of Chain

    Raises
    ------
    TypeError
        When called, if a bound is not an integer.
    ValueError
        When called, if a bound is below its least value (given above): no
        draw could keep it; or if ``max_factors`` is above
        ``pydebut.chains.MAX_FACTORS`` (64).
    """
    from hypothesis import strategies as st

    _check_bounds(
        "dense_chains",
        max_dim=(max_dim, 1, "m, n >= 1"),
        max_factors=(max_factors, 2, "a chainable chain and a square factor inserted"),
    )

    @st.composite
    def draw_chain(draw: Any) -> Chain:
        base = draw(chainable_chains(max_dim, max_factors - 1))
        factors = list(base.factors)
        for _ in range(draw(st.integers(1, max_factors - len(factors)))):
            position = draw(st.integers(0, len(factors)))
            dim = factors[position].p if position < len(factors) else factors[-1].q
            kt = draw(st.sampled_from(_divisors(dim)))
            t = draw(st.sampled_from(_divisors(kt)))
            r = dim // kt
            factors.insert(position, FactorSpec(dim, dim, r, r, t))
        return Chain(factors)

    return draw_chain()


def chains(max_dim: int = 48, max_factors: int = 4) -> SearchStrategy[Chain]:
    """Strategy for arbitrary valid chains (dense or not) with dimensions up to ``max_dim``.

    Dimensions ``d_0, ..., d_L`` are drawn first; factor ``l`` then takes
    ``k*t`` among the divisors of ``gcd(d_{l-1}, d_l)``, found by trial division
    (up to ``sqrt(max_dim)`` steps).

    Parameters
    ----------
    max_dim : int, default 48
        Largest dimension ``d_l``, at least 1 and below ``2**40``
        (:data:`pydebut.chains.MAX_SIZE`, as for the chain searches).
    max_factors : int, default 4
        Largest number of factors, at least 1 (each draw has 1 to ``max_factors``).

    Returns
    -------
    hypothesis.strategies.SearchStrategy of Chain

    Raises
    ------
    TypeError
        When called, if a bound is not an integer.
    ValueError
        When called, if a bound is below its least value (given above): no
        draw could keep it; if ``max_dim`` is ``2**40`` or more: a draw
        could then take seconds; or if ``max_factors`` is above
        ``pydebut.chains.MAX_FACTORS`` (64).
    """
    from hypothesis import strategies as st

    _check_bounds(
        "chains",
        max_dim=(max_dim, 1, "dimensions are >= 1"),
        max_factors=(max_factors, 1, "a chain has a factor"),
    )
    if max_dim >= _MAX_SIZE:
        raise ValueError(
            "chains: max_dim must be below 2**40 (pydebut.chains.MAX_SIZE): the divisors"
            f" of each drawn dimension are found by trial division; got {max_dim}"
        )

    @st.composite
    def draw_chain(draw: Any) -> Chain:
        n_factors = draw(st.integers(1, max_factors))
        dims = draw(
            st.lists(st.integers(1, max_dim), min_size=n_factors + 1, max_size=n_factors + 1)
        )
        factors = []
        for p, q in pairwise(dims):
            kt = draw(st.sampled_from(_divisors(gcd(p, q))))
            t = draw(st.sampled_from(_divisors(kt)))
            factors.append(FactorSpec(p, q, p // kt, q // kt, t))
        return Chain(factors)

    return draw_chain()


def _check_dtypes(dtypes: Sequence[DTypeLike]) -> tuple[np.dtype, ...]:
    """``dtypes`` read as the operator's dtypes, or raise naming the argument.

    A draw would fail otherwise, inside hypothesis and naming no argument. A string
    is refused: it is a sequence of one-letter type codes, not of dtypes.
    """
    *first, last = (d.name for d in SUPPORTED_DTYPES)
    rule = f"operators: dtypes must be a non-empty sequence of {', '.join(first)} or {last} dtypes"
    ordered = isinstance(dtypes, Sequence) or (isinstance(dtypes, np.ndarray) and dtypes.ndim == 1)
    if isinstance(dtypes, (str, bytes)) or not ordered:
        raise TypeError(f"{rule}, got {type(dtypes).__name__} {shown(dtypes)}")
    if len(dtypes) == 0:
        raise ValueError(f"{rule}, got {shown(dtypes)}")
    checked = []
    for index, dtype in enumerate(dtypes):
        try:
            checked.append(supported_dtype(dtype, "operators"))
        except TypeError:
            raise TypeError(f"{rule}; dtypes[{index}] is {shown(dtype)}") from None
    return tuple(checked)


def operators(
    chain_strategy: SearchStrategy[Chain] | None = None,
    dtypes: Sequence[DTypeLike] = (np.float32, np.float64, np.complex64, np.complex128),
) -> SearchStrategy[DeButOperator]:
    """Strategy for ``DeButOperator`` instances with random weights on drawn chains and dtypes.

    Parameters
    ----------
    chain_strategy : SearchStrategy of Chain, optional
        Where the chains come from; :func:`chains` by default. For one
        chain, pass ``hypothesis.strategies.just(chain)``.
    dtypes : sequence of dtype, default all four
        The dtypes to draw from, among float32, float64, complex64 and
        complex128: anything ``numpy.dtype`` reads as one of them (a type,
        a name such as ``"float32"``, a ``numpy.dtype``).

    Returns
    -------
    hypothesis.strategies.SearchStrategy of DeButOperator
        Each draw is ``DeButOperator.random(chain, rng=seed, dtype=dtype)``
        with a drawn seed in ``[0, 2**32)``.

    Raises
    ------
    TypeError
        When called, if ``chain_strategy`` is neither None nor a hypothesis
        strategy, if ``dtypes`` is not a sequence (a string is not taken),
        or if one of its items is not one of the four dtypes.
    ValueError
        When called, if ``dtypes`` is empty: no draw could keep it.
    """
    from hypothesis import strategies as st

    if chain_strategy is None:
        chain_strategy = chains()
    elif not isinstance(chain_strategy, st.SearchStrategy):
        raise TypeError(
            "operators: chain_strategy must be None or a hypothesis strategy of chains"
            f" (for one chain, hypothesis.strategies.just(chain)), got"
            f" {type(chain_strategy).__name__} {shown(chain_strategy)}"
        )
    return st.builds(
        DeButOperator.random,
        chain_strategy,
        rng=st.integers(0, 2**32 - 1),
        dtype=st.sampled_from(_check_dtypes(dtypes)),
    )
