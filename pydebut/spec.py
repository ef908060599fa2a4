"""Shapes of DeBut factors and chains, and their interchange formats.

A DeBut factor with superscript ``(p, q)`` and subscript ``(r, s, t)`` is a
``p x q`` block-diagonal matrix with ``k = p/(r*t) = q/(s*t)`` blocks, each an
``r x s`` grid of ``t x t`` diagonal matrices. A :class:`Chain` is the product
``F_1 F_2 ... F_L``, listed left to right as it is written: ``F_1`` is on the
output side and ``F_L`` is applied to the input first.

Factor numbers in messages are 1-based, as in the product ``F_1 ... F_L``.
"""

from __future__ import annotations

import json
import math
import operator
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import accumulate, pairwise
from typing import Any, Literal, overload

import numpy as np

from ._arguments import as_positive_int, shown
from ._memory import check_fits_in_memory

__all__ = ["Chain", "FactorSpec"]

ChainKind = Literal["monotonic", "bulging", "other"]


def _describe(p: Any, q: Any, r: Any, s: Any, t: Any) -> str:
    return f"(p={shown(p)}, q={shown(q)}, r={shown(r)}, s={shown(s)}, t={shown(t)})"


@dataclass(frozen=True)
class FactorSpec:
    """Shape of one DeBut factor: superscript ``(p, q)``, subscript ``(r, s, t)``.

    The factor is a ``p x q`` block-diagonal matrix with ``k = p/(r*t)``
    blocks of size ``(r*t) x (s*t)``; each block is an ``r x s`` grid of
    ``t x t`` diagonal matrices. Entry ``(i, j)`` may be non-zero iff
    ``i // (r*t) == j // (s*t)`` and ``i % t == j % t``.

    Parameters
    ----------
    p, q : int
        Number of rows and columns.
    r, s : int
        Rows and columns of the grid of diagonal matrices in each block.
    t : int
        Size of each diagonal matrix.

    Raises
    ------
    TypeError
        If a field is not an integer.
    ValueError
        If a field is not positive or a divisibility rule is broken.

    Examples
    --------
    >>> f = FactorSpec(8, 4, 2, 1, 2)
    >>> f.n_blocks, f.nnz, f.weight_shape
    (2, 8, (2, 2, 1, 2))
    >>> f.T
    FactorSpec(p=4, q=8, r=1, s=2, t=2)
    """

    p: int
    q: int
    r: int
    s: int
    t: int

    def __post_init__(self) -> None:
        _check_factor(self, label=f"FactorSpec{_describe(*self.as_tuple())}")

    @classmethod
    def _validated(cls, fields: Any, label: str) -> FactorSpec:
        """Build a spec from a 5-sequence or a spec, naming ``label`` on error."""
        if isinstance(fields, FactorSpec):
            return fields
        if isinstance(fields, (str, bytes)) or not isinstance(fields, Iterable):
            raise TypeError(
                f"{label}: expected a FactorSpec or a sequence (p, q, r, s, t), "
                f"got {type(fields).__name__} {shown(fields)}"
            )
        values = list(fields)
        if len(values) != 5:
            raise ValueError(
                f"{label}: expected 5 integers (p, q, r, s, t), got {len(values)}: {shown(values)}"
            )
        spec = object.__new__(cls)
        for name, value in zip("pqrst", values, strict=True):
            object.__setattr__(spec, name, value)
        _check_factor(spec, label=f"{label} {_describe(*values)}")
        return spec

    def as_tuple(self) -> tuple[int, int, int, int, int]:
        """Return ``(p, q, r, s, t)``.

        Examples
        --------
        >>> FactorSpec(8, 8, 2, 2, 4).as_tuple()
        (8, 8, 2, 2, 4)
        """
        return (self.p, self.q, self.r, self.s, self.t)

    @property
    def n_blocks(self) -> int:
        """Number ``k = p/(r*t) = q/(s*t)`` of diagonal blocks."""
        return self.p // (self.r * self.t)

    @property
    def nnz(self) -> int:
        """Number of structurally non-zero entries, ``p*s == q*r``."""
        return self.p * self.s

    @property
    def shape(self) -> tuple[int, int]:
        """Matrix shape ``(p, q)``."""
        return (self.p, self.q)

    @property
    def weight_shape(self) -> tuple[int, int, int, int]:
        """Shape ``(k, r, s, t)`` of the weight array ``W[b, rho, sigma, alpha]``."""
        return (self.n_blocks, self.r, self.s, self.t)

    @property
    def density(self) -> float:
        """Fraction ``nnz / (p*q)`` of entries in the support."""
        return self.nnz / (self.p * self.q)

    @property
    def T(self) -> FactorSpec:  # noqa: N802 - matches numpy's ``.T``
        """Spec of the transpose, ``(q, p, s, r, t)``."""
        return FactorSpec(self.q, self.p, self.s, self.r, self.t)

    def support_indices(self) -> tuple[np.ndarray, np.ndarray]:
        """Row and column of every weight, in the C order of ``W[b, rho, sigma, alpha]``.

        Row ``i = (b*r + rho)*t + alpha`` and column ``j = (b*s + sigma)*t + alpha``.

        Returns
        -------
        rows, cols : ndarray of int64, shape (nnz,)

        Examples
        --------
        >>> rows, cols = FactorSpec(2, 2, 2, 2, 1).support_indices()
        >>> rows.tolist(), cols.tolist()
        ([0, 0, 1, 1], [0, 1, 0, 1])
        """
        check_fits_in_memory(
            6 * 8 * self.nnz, f"the support indices of {self!r}", "use a smaller factor"
        )
        k, r, s, t = self.weight_shape
        block, rho, sigma, alpha = np.indices((k, r, s, t), dtype=np.int64)
        rows = (block * r + rho) * t + alpha
        cols = (block * s + sigma) * t + alpha
        return rows.ravel(), cols.ravel()

    def support(self) -> np.ndarray:
        """Boolean ``(p, q)`` mask of the entries that may be non-zero.

        Examples
        --------
        >>> FactorSpec(4, 4, 2, 2, 2).support().astype(int)
        array([[1, 0, 1, 0],
               [0, 1, 0, 1],
               [1, 0, 1, 0],
               [0, 1, 0, 1]])
        """
        check_fits_in_memory(self.p * self.q, f"the support of {self!r}", "use a smaller factor")
        mask = np.zeros(self.shape, dtype=bool)
        mask[self.support_indices()] = True
        return mask

    def __repr__(self) -> str:
        return f"FactorSpec{_describe(*self.as_tuple())}"


def _check_factor(spec: FactorSpec, label: str) -> None:
    """Validate the five fields of ``spec`` in place, naming ``label`` on error."""
    for name in "pqrst":
        object.__setattr__(spec, name, as_positive_int(getattr(spec, name), name, label))
    p, q, r, s, t = spec.as_tuple()
    if p % (r * t):
        raise ValueError(f"{label}: p is not divisible by r*t = {shown(r * t)}")
    if q % (s * t):
        raise ValueError(f"{label}: q is not divisible by s*t = {shown(s * t)}")
    if p // (r * t) != q // (s * t):
        raise ValueError(
            f"{label}: block counts differ, p/(r*t) = {shown(p // (r * t))} but "
            f"q/(s*t) = {shown(q // (s * t))}"
        )


class Chain(Sequence[FactorSpec]):
    """A validated chain of DeBut factors ``F_1 F_2 … F_L``, listed left to right.

    ``F_1`` is the output side (``p_1 = m``) and ``F_L`` is applied to the input
    first (``q_L = n``); consecutive factors connect, ``q_l == p_{l+1}``.

    Parameters
    ----------
    factors : iterable of FactorSpec or of (p, q, r, s, t)
        The factors, left to right.

    Raises
    ------
    TypeError, ValueError
        If ``factors`` is not an iterable (``TypeError``) or is empty
        (``ValueError``), a factor is malformed or two neighbours do not
        connect; the message names the factor (1-based, as ``F_l``) and the
        broken rule.

    Examples
    --------
    >>> chain = Chain([(4, 4, 2, 2, 2), (4, 4, 2, 2, 1)])
    >>> chain.shape, chain.n_params, chain.is_chainable, chain.kind
    ((4, 4), 16, True, 'monotonic')
    >>> Chain([(4, 4, 2, 2, 2), (8, 8, 2, 2, 1)])
    Traceback (most recent call last):
    ...
    ValueError: factors 1 and 2 do not connect: q of factor 1 (4) != p of factor 2 (8)
    """

    __slots__ = ("_factors",)

    def __init__(self, factors: Iterable[FactorSpec | Sequence[int]]) -> None:
        if isinstance(factors, Chain):
            self._factors: tuple[FactorSpec, ...] = factors._factors
            return
        if isinstance(factors, Mapping):
            raise TypeError(
                "a chain needs an iterable of factors, got a mapping; the "
                '{"sup": ..., "sub": ...} of to_json() reads back with '
                "Chain.from_sup_sub(**mapping)"
            )
        if isinstance(factors, (str, bytes)) or not isinstance(factors, Iterable):
            raise TypeError(f"a chain needs an iterable of factors, got {type(factors).__name__}")
        items = list(factors)
        if not items:
            raise ValueError("a chain needs at least one factor")
        specs: list[FactorSpec] = []  # checked in order: the first broken rule is named
        for i, item in enumerate(items, start=1):
            right = FactorSpec._validated(item, label=f"factor {i} of {len(items)}")
            if specs and specs[-1].q != right.p:
                raise ValueError(
                    f"factors {i - 1} and {i} do not connect: q of factor {i - 1} "
                    f"({shown(specs[-1].q)}) != p of factor {i} ({shown(right.p)})"
                )
            specs.append(right)
        self._factors = tuple(specs)

    @classmethod
    def _connected(cls, factors: tuple[FactorSpec, ...]) -> Chain:
        """The chain of ``factors``, specs that are known to connect: no checks, for code
        that builds many chains from validated parts (the search of ``approximate``)."""
        chain = object.__new__(cls)
        chain._factors = factors
        return chain

    def __reduce__(self) -> tuple[type[Chain], tuple[tuple[FactorSpec, ...]]]:
        # every pickle protocol (0 and 1 cannot save __slots__ by themselves)
        return Chain, (self._factors,)

    # --- sequence protocol -------------------------------------------------
    @overload
    def __getitem__(self, index: int) -> FactorSpec: ...
    @overload
    def __getitem__(self, index: slice) -> Chain: ...
    def __getitem__(self, index: int | slice) -> FactorSpec | Chain:
        if isinstance(index, slice):
            factors = self._factors[index]
            if not factors:
                raise ValueError(
                    f"the slice {_slice_text(index)} of a chain of {len(self)} factors selects "
                    "none: a chain needs at least one factor"
                )
            return Chain(factors)
        return self._factors[index]

    def __len__(self) -> int:
        return len(self._factors)

    def __iter__(self) -> Iterator[FactorSpec]:
        return iter(self._factors)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Chain):
            return NotImplemented
        return self._factors == other._factors

    def __hash__(self) -> int:
        return hash(self._factors)

    def __add__(self, other: Chain) -> Chain:
        """Concatenate: ``chain_a + chain_b`` is the chain of ``A @ B``."""
        if not isinstance(other, Chain):
            return NotImplemented
        return Chain(self._factors + other._factors)

    # --- shape and cost ----------------------------------------------------
    @property
    def factors(self) -> tuple[FactorSpec, ...]:
        """The factors, left to right."""
        return self._factors

    @property
    def n_factors(self) -> int:
        """Number ``L`` of factors."""
        return len(self._factors)

    @property
    def shape(self) -> tuple[int, int]:
        """Shape ``(m, n) = (p_1, q_L)`` of the product."""
        return (self._factors[0].p, self._factors[-1].q)

    @property
    def dims(self) -> tuple[int, ...]:
        """Dimensions ``(p_1, p_2, ..., p_L, q_L)`` from output to input."""
        return (*(f.p for f in self._factors), self._factors[-1].q)

    @property
    def max_dim(self) -> int:
        """Largest dimension met while applying the chain (inputs and outputs included)."""
        return max(self.dims)

    @property
    def n_params(self) -> int:
        """Number of weights, ``sum_l p_l * s_l``."""
        return sum(f.nnz for f in self._factors)

    nnz = n_params

    @property
    def flops(self) -> int:
        """Floating-point operations to apply the chain to one vector, ``2 * sum_l nnz_l``."""
        return 2 * self.n_params

    @property
    def compression_ratio(self) -> float:
        """Dense entries per weight, ``m*n / n_params``; ``inf`` beyond the float range.

        The integers are divided exactly and rounded once, so a ratio above the
        largest float (about ``1.8e308``) is ``inf`` rather than an error.
        """
        m, n = self.shape
        try:
            return m * n / self.n_params
        except OverflowError:
            return math.inf

    @property
    def T(self) -> Chain:  # noqa: N802 - matches numpy's ``.T``
        """Chain of the transposed product: factors reversed and transposed."""
        return Chain(f.T for f in reversed(self._factors))

    # --- structure ---------------------------------------------------------
    @property
    def is_chainable(self) -> bool:
        """Whether ``k_1 = 1``, ``t_L = 1``, ``t_l = r_{l+1} t_{l+1}`` and ``k_{l+1} = k_l s_l``."""
        first, last = self._factors[0], self._factors[-1]
        if first.n_blocks != 1 or last.t != 1:
            return False
        return all(
            left.t == right.r * right.t and right.n_blocks == left.n_blocks * left.s
            for left, right in pairwise(self._factors)
        )

    @property
    def is_monotonic(self) -> bool:
        """Whether every factor has ``r <= s``, or every factor has ``r >= s``."""
        return all(f.r <= f.s for f in self._factors) or all(f.r >= f.s for f in self._factors)

    @property
    def is_bulging(self) -> bool:
        """Whether some intermediate dimension exceeds ``max(m, n)``."""
        return max(self.dims[1:-1], default=0) > max(self.shape)

    @property
    def kind(self) -> ChainKind:
        """``"monotonic"``, ``"bulging"`` or ``"other"`` (see Concepts in the documentation)."""
        if self.is_monotonic:
            return "monotonic"
        if self.is_bulging:
            return "bulging"
        return "other"

    # --- constructors and exporters -----------------------------------------
    @classmethod
    def from_factorizations(cls, rs: Sequence[int], ss: Sequence[int]) -> Chain:
        """Chainable chain from ordered factorizations ``m = r_1...r_L``, ``n = s_1...s_L``.

        Parameters
        ----------
        rs, ss : sequence of int
            ``r_l`` and ``s_l`` of each factor, left to right; equal lengths.

        Raises
        ------
        TypeError
            If ``rs`` or ``ss`` is not a sequence of integers (floats such as
            ``2.0`` are refused).
        ValueError
            If they are empty, differ in length, or hold a number below 1.

        Examples
        --------
        >>> Chain.from_factorizations([2, 2], [2, 2])
        Chain([(4, 4, 2, 2, 2), (4, 4, 2, 2, 1)])
        """
        for name, values in (("rs", rs), ("ss", ss)):
            if isinstance(values, str) or not isinstance(values, Iterable):
                raise TypeError(
                    f"from_factorizations: {name} must be a list of integers (one radix per "
                    f"factor), got {type(values).__name__} {shown(values)}"
                )
        rs, ss = list(rs), list(ss)
        if len(rs) != len(ss):
            raise ValueError(f"rs and ss must have equal lengths, got {len(rs)} and {len(ss)}")
        if not rs:
            raise ValueError("a chain needs at least one factor")

        def checked(values: list, name: str) -> list[int]:
            # Python ints: products of NumPy's fixed-width ints wrap (uint8 16 * 16 gave p = 0)
            return [
                as_positive_int(value, f"{name}[{i}]", f"factor {i + 1} of {len(values)}")
                for i, value in enumerate(values)
            ]

        rs, ss = checked(rs, "rs"), checked(ss, "ss")
        ts = list(accumulate(reversed(rs[1:]), operator.mul, initial=1))[::-1]  # prod rs[l+1:]
        ks = accumulate(ss[:-1], operator.mul, initial=1)  # prod ss[:l]
        return cls((k * r * t, k * s * t, r, s, t) for k, r, s, t in zip(ks, rs, ss, ts))

    @classmethod
    def from_sup_sub(cls, sup: Any, sub: Any) -> Chain:
        """Chain from the paper's ``--sup`` / ``--sub`` lists, left to right.

        Parameters
        ----------
        sup : sequence or str
            The ``(p, q)`` pairs, flat (``512 512 512 1024``) or nested
            (``[[512, 512], [512, 1024]]``); a string may be space/comma
            separated or JSON, the nested rows also side by side
            (``[512, 512] [512, 1024]``).
        sub : sequence or str
            The ``(r, s, t)`` triples, flat or nested.

        Raises
        ------
        TypeError, ValueError
            If a list is malformed (ragged, not of integers, of the wrong
            length), ``sup`` and ``sub`` give different numbers of factors, or
            the chain is invalid (as for :class:`Chain`).

        Examples
        --------
        >>> Chain.from_sup_sub("4 4 4 4", [[2, 2, 2], [2, 2, 1]]).shape
        (4, 4)
        """
        pairs = _rows(sup, 2, "sup", "(p, q) pairs")
        triples = _rows(sub, 3, "sub", "(r, s, t) triples")
        if len(pairs) != len(triples):
            raise ValueError(
                f"sup has {len(pairs)} (p, q) pairs but sub has {len(triples)} (r, s, t) triples"
            )
        return cls(pq + rst for pq, rst in zip(pairs, triples, strict=True))

    def to_sup_sub(self) -> tuple[list[list[int]], list[list[int]]]:
        """Return ``(sup, sub)`` as nested lists, left to right.

        Examples
        --------
        >>> Chain([(4, 4, 2, 2, 2), (4, 4, 2, 2, 1)]).to_sup_sub()
        ([[4, 4], [4, 4]], [[2, 2, 2], [2, 2, 1]])
        """
        sup = [[f.p, f.q] for f in self._factors]
        sub = [[f.r, f.s, f.t] for f in self._factors]
        return sup, sub

    @classmethod
    def from_r_shapes(cls, r_shapes: Any) -> Chain:
        """Chain from the reference PyTorch layer's ``R_shapes``, in application order.

        ``R_shapes`` lists ``[p, q, r, s, t]`` starting with the factor applied
        to the input first, i.e. right to left.

        Parameters
        ----------
        r_shapes : sequence of [p, q, r, s, t]
            The layer's ``R_shapes``, one row per factor, right to left.

        Raises
        ------
        TypeError
            If ``R_shapes`` is not a list (or array) of rows, or an entry is not
            an integer (floats such as ``4.0`` are refused).
        ValueError
            If a row is malformed or two rows do not connect; the message names
            the rows as given (row 1 is the factor applied first).

        Examples
        --------
        >>> Chain.from_r_shapes([[4, 4, 2, 2, 1], [4, 4, 2, 2, 2]])
        Chain([(4, 4, 2, 2, 2), (4, 4, 2, 2, 1)])
        """
        rows = _rows(r_shapes, 5, "R_shapes", "[p, q, r, s, t] rows")
        count = len(rows)
        specs: list[FactorSpec] = []  # in the rows' order, checked as Chain() checks factors
        for i, row in enumerate(rows, start=1):
            spec = FactorSpec._validated(
                row, label=f"R_shapes row {i} of {count} (F_{count - i + 1})"
            )
            if specs and spec.q != specs[-1].p:  # row i is applied to row i - 1's output
                raise ValueError(
                    f"R_shapes rows {i - 1} and {i} do not connect: row {i} takes "
                    f"q = {shown(spec.q)} inputs, row {i - 1} gives p = {shown(specs[-1].p)} "
                    "outputs"
                )
            specs.append(spec)
        return cls._connected(tuple(reversed(specs)))

    def to_r_shapes(self) -> list[list[int]]:
        """Return ``R_shapes``: ``[p, q, r, s, t]`` per factor in application order.

        That is the DeBut authors' order (the rightmost factor first), the reverse
        of pydebut's; :meth:`from_r_shapes` reads it back.

        Examples
        --------
        >>> chain = Chain([(4, 8, 2, 4, 1), (8, 8, 2, 2, 4)])
        >>> chain.to_r_shapes()
        [[8, 8, 2, 2, 4], [4, 8, 2, 4, 1]]
        >>> Chain.from_r_shapes(chain.to_r_shapes()) == chain
        True
        """
        return [list(f.as_tuple()) for f in reversed(self._factors)]

    @classmethod
    def from_abcd(cls, tuples: Any) -> Chain:
        """Chain from Le et al.'s ``(a, b, c, d)`` or ``(a, b, c, d, p, q)`` tuples.

        The support of a factor is ``kron(I_a, kron(ones(b*p, c*q), I_d))``
        (``p = q = 1`` for 4-tuples), so ``k = a``, ``r = b*p``, ``s = c*q``,
        ``t = d``. Tuples are listed left to right, as the product is written.

        Parameters
        ----------
        tuples : sequence of (a, b, c, d) or (a, b, c, d, p, q)
            One tuple of positive integers per factor (4- and 6-tuples may be
            mixed), or a JSON string of that list.

        Returns
        -------
        Chain

        Raises
        ------
        TypeError
            If ``tuples`` is not such a list, or an entry is not an integer.
        ValueError
            If a tuple has neither 4 nor 6 entries, an entry is not positive, or
            the factors do not connect; the message names the factor.

        Examples
        --------
        >>> Chain.from_abcd([(1, 2, 2, 2), (2, 2, 2, 1)])
        Chain([(4, 4, 2, 2, 2), (4, 4, 2, 2, 1)])
        """
        if isinstance(tuples, str):
            tuples = _parse_list(tuples, "from_abcd")
        if isinstance(tuples, (bytes, Mapping)) or not isinstance(tuples, Iterable):
            raise TypeError(
                "from_abcd expects a list of (a, b, c, d) or (a, b, c, d, p, q) tuples, "
                f"got {type(tuples).__name__} {shown(tuples)}"
            )
        factors = []
        for i, item in enumerate(tuples, start=1):
            if isinstance(item, str) or not isinstance(item, Iterable):
                raise TypeError(
                    f"factor {i}: expected a tuple (a, b, c, d) or (a, b, c, d, p, q), "
                    f"got {type(item).__name__} {shown(item)}"
                )
            values = list(item)
            if len(values) not in (4, 6):
                raise ValueError(
                    f"factor {i}: expected (a, b, c, d) or (a, b, c, d, p, q), got {shown(values)}"
                )
            where = f"factor {i} (a, b, c, d{', p, q' if len(values) == 6 else ''})"
            names = ("a", "b", "c", "d", "p", "q")[: len(values)]
            a, b, c, d, *ranks = (
                as_positive_int(v, n, where) for v, n in zip(values, names, strict=True)
            )
            rank_out, rank_in = ranks or (1, 1)
            r, s = b * rank_out, c * rank_in
            factors.append((a * r * d, a * s * d, r, s, d))
        return cls(factors)

    def to_abcd(self) -> list[tuple[int, int, int, int]]:
        """Return the ``(a, b, c, d) = (k, r, s, t)`` tuple of each factor, left to right.

        Le et al.'s description of the supports; :meth:`from_abcd` reads it back.

        Examples
        --------
        >>> chain = Chain([(4, 8, 2, 4, 1), (8, 8, 2, 2, 4)])
        >>> chain.to_abcd()
        [(2, 2, 4, 1), (1, 2, 2, 4)]
        >>> Chain.from_abcd(chain.to_abcd()) == chain
        True
        """
        return [(f.n_blocks, f.r, f.s, f.t) for f in self._factors]

    def to_json(self) -> dict[str, Any]:
        """Return the chain as the JSON-ready dict ``{"sup": [...], "sub": [...]}``.

        ``Chain.from_sup_sub(**chain.to_json())`` reads it back.

        Examples
        --------
        >>> chain = Chain([(4, 4, 2, 2, 2), (4, 4, 2, 2, 1)])
        >>> Chain.from_sup_sub(**chain.to_json()) == chain
        True
        """
        sup, sub = self.to_sup_sub()
        return {"sup": sup, "sub": sub}

    # --- display -------------------------------------------------------------
    def __repr__(self) -> str:
        factors = ", ".join(f"({', '.join(map(shown, f.as_tuple()))})" for f in self._factors)
        return f"Chain([{factors}])"

    def describe(self) -> str:
        """Multi-line summary: one line per factor, then totals.

        Examples
        --------
        >>> print(Chain([(4, 4, 2, 2, 2), (4, 4, 2, 2, 1)]).describe())
        Chain 4 x 4, 2 factors, 16 params (compression 1.00x), monotonic, chainable
          F_1  (p=4, q=4, r=2, s=2, t=2)  blocks=1  nnz=8  density=0.500
          F_2  (p=4, q=4, r=2, s=2, t=1)  blocks=2  nnz=8  density=0.500
        """
        m, n = self.shape
        head = (
            f"Chain {shown(m)} x {shown(n)}, {self.n_factors} factors, "
            f"{shown(self.n_params)} params "
            f"(compression {self.compression_ratio:.2f}x), {self.kind}, "
            f"{'chainable' if self.is_chainable else 'not chainable'}"
        )
        width = len(str(self.n_factors))
        lines = [
            f"  F_{i:<{width}}  {_describe(*f.as_tuple())}  blocks={shown(f.n_blocks)}  "
            f"nnz={shown(f.nnz)}  density={f.density:.3f}"
            for i, f in enumerate(self._factors, start=1)
        ]
        return "\n".join([head, *lines])


def _parse_list(value: Any, name: str) -> list[Any]:
    """``value`` as a Python list: parsed from a string of numbers or JSON, or from an array."""
    if isinstance(value, str):
        text = value.strip()
        if not text.startswith("["):
            tokens = text.replace(",", " ").split()
            wrong = next((t for t in tokens if not DECIMAL.fullmatch(t)), None)
            if wrong is not None:  # int() would also take "٤", "+4" and "1_0"
                raise ValueError(f"{name}: expected integers in ASCII digits, got {wrong!r:.40}")
            try:
                return [int(token) for token in tokens]
            except ValueError as err:  # more than 4,300 digits
                raise ValueError(f"{name}: unreadable integer: {err}") from None
        try:
            value = _json_lists(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"{name}: malformed JSON list: {err.msg}") from None
        except RecursionError:
            raise ValueError(f"{name}: JSON nested too deeply (expected depth 1 or 2)") from None
        except ValueError as err:  # e.g. an integer of more than 4,300 digits
            raise ValueError(f"{name}: unreadable JSON list: {err}") from None
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
        raise TypeError(f"{name}: expected a list of integers, got {type(value).__name__}")
    return list(value)


def _json_lists(text: str) -> Any:
    """The JSON value ``text`` holds; several side by side (``[4, 4] [4, 4]``, as a shell
    passes ``--sup [4,4] [4,4]``), separated by spaces or commas, as the list of them."""
    decoder = json.JSONDecoder()
    values, end = [], 0
    while end < len(text):
        value, end = decoder.raw_decode(text, end)
        values.append(value)
        end = _BETWEEN_LISTS.match(text, end).end()
    return values[0] if len(values) == 1 else values


_BETWEEN_LISTS = re.compile(r"\s*,?\s*")


#: An integer as chain text and the command line write it: ``int`` also reads other
#: scripts' digits, ``+`` and ``_``.
DECIMAL = re.compile(r"-?[0-9]+")


def _slice_text(index: slice) -> str:
    """``index`` as written in brackets: ``[5:]``, ``[1:3:2]``."""
    parts = ["" if part is None else shown(part) for part in (index.start, index.stop, index.step)]
    return f"[{':'.join(parts if index.step is not None else parts[:2])}]"


def _rows(value: Any, size: int, name: str, what: str) -> list[list[Any]]:
    """``value`` as rows of ``size`` numbers: a flat list, or a list of rows of ``size`` each.

    Ragged or deeper nesting is refused, naming the first offending item.
    """
    items = _parse_list(value, name)
    if not items:
        raise ValueError(f"{name} is empty")
    nested = [isinstance(item, (list, tuple, np.ndarray)) for item in items]
    if not any(nested):
        if len(items) % size:
            raise ValueError(
                f"{name} has {len(items)} numbers, which is not a whole number of {what}"
            )
        return [items[i : i + size] for i in range(0, len(items), size)]
    rows = []
    for index, item in enumerate(items, start=1):
        row = list(item) if nested[index - 1] else None
        if row is None or len(row) != size or any(isinstance(v, (list, tuple)) for v in row):
            raise ValueError(
                f"{name}: item {index} is {shown(item)}, but a nested list must hold {what}, "
                f"each exactly {size} numbers (or give one flat list of numbers)"
            )
        rows.append(row)
    return rows
