"""Hand-off to and from pyfaust's ``Faust`` (optional: ``pip install pydebut[faust]``).

A ``Faust`` is a product of sparse or dense factors, listed left to right as
pydebut lists them, so a DeBut chain maps onto it factor by factor. pyfaust is
imported only when one of these functions runs.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import scipy.sparse as sp

from ._arguments import as_bool
from ._sparse import sparse_factors
from .operator import DeButOperator
from .spec import Chain, FactorSpec

__all__ = ["from_faust", "to_faust"]


def _pyfaust() -> Any:
    try:
        import pyfaust
    except ImportError:
        raise ImportError(
            "the Faust hand-off needs pyfaust: install it with pip install pydebut[faust]"
        ) from None
    return pyfaust


def to_faust(op: DeButOperator) -> Any:
    """The operator as a ``pyfaust.Faust`` of CSR factors, ``F_1`` first.

    pyfaust has no complex64, so complex64 weights become complex128.

    Parameters
    ----------
    op : DeButOperator

    Returns
    -------
    pyfaust.Faust

    Raises
    ------
    TypeError
        If ``op`` is not a :class:`~pydebut.DeButOperator`.
    ImportError
        If pyfaust is not installed.

    Examples
    --------
    >>> import numpy as np
    >>> from pydebut import DeButOperator
    >>> op = DeButOperator.random([(4, 4, 2, 2, 2), (4, 4, 2, 2, 1)], rng=0)
    >>> faust = to_faust(op)
    >>> np.allclose(faust.toarray(), op.toarray())
    True
    """
    if not isinstance(op, DeButOperator):
        raise TypeError(f"to_faust() needs a DeButOperator, got {type(op).__name__}")
    pyfaust = _pyfaust()
    dtype = np.complex128 if op.dtype == np.complex64 else op.dtype
    return pyfaust.Faust([sp.csr_matrix(factor, dtype=dtype) for factor in sparse_factors(op)])


def from_faust(
    faust: Any, chain: Chain | Any | None = None, *, check_finite: bool = True
) -> DeButOperator:
    """A ``DeButOperator`` from the factors of a ``pyfaust.Faust``.

    Parameters
    ----------
    faust : pyfaust.Faust
        Its factors (sparse or dense) must each have a DeBut support.
    chain : Chain or sequence of (p, q, r, s, t), optional
        The factors' shapes. Without it, each factor gets the DeBut shape with
        the fewest weights whose support holds the factor's nonzeros (among
        equally small ones, the largest ``t``: a diagonal factor reads as
        ``(p, p, 1, 1, p)``).
    check_finite : bool, default True
        Refuse factors holding NaN or infinity (ValueError), as
        :class:`~pydebut.DeButOperator` does; False keeps them.

    Returns
    -------
    DeButOperator

    Raises
    ------
    TypeError
        If ``faust`` is not a ``pyfaust.Faust`` or ``check_finite`` not a bool.
    ValueError
        If a factor has a nonzero outside its DeBut support, or the factors
        do not match ``chain``; the message names the factor (the Faust's, and
        the chain's), under each reading of the ends tried (see Notes). If
        ``check_finite`` and a factor holds NaN or infinity.

    Notes
    -----
    A first or last factor that is a permutation matrix other than the
    identity, or a multiple ``c P`` of one, becomes the operator's
    ``row_perm`` or ``col_perm`` (``c`` joins the next factor's weights)
    instead of a factor, when there are more factors than ``chain`` has (or no
    ``chain`` is given) and one factor would remain: the bit reversal that
    ends ``pyfaust.dft(n)`` then costs ``n`` indices instead of a dense
    ``n x n`` factor, and the permutations of an operator come back from
    :func:`to_faust`.

    With ``chain``, as many ends are read so as the Faust has factors more
    than the chain. When that is one and both ends are permutations (an
    operator with only a ``col_perm`` whose first factor is a permutation
    matrix, say), the first end is read as ``row_perm`` if the other factors
    fit the chain, else the last as ``col_perm``: if both readings fit, they
    give the same product.

    Examples
    --------
    >>> import numpy as np
    >>> from pydebut import DeButOperator
    >>> op = DeButOperator.random([(4, 4, 2, 2, 2), (4, 4, 2, 2, 1)], rng=0)
    >>> back = from_faust(to_faust(op))
    >>> back.chain == op.chain, np.allclose(back.toarray(), op.toarray())
    (True, True)
    """
    pyfaust = _pyfaust()
    if not isinstance(faust, pyfaust.Faust):
        raise TypeError(f"from_faust() needs a pyfaust.Faust, got {type(faust).__name__}")
    check_finite = as_bool(check_finite, "check_finite")
    factors = [sp.coo_array(faust.factors(i)) for i in range(faust.numfactors())]
    row_perm, row_scale = _scaled_permutation(factors[0])
    col_perm, col_scale = _scaled_permutation(factors[-1])
    if chain is None:  # each end that is a permutation, while a factor remains
        first = row_perm is not None and len(factors) > 1
        last = col_perm is not None and len(factors) > 1 + first
        chain = Chain([_smallest_spec(factor) for factor in factors[first : len(factors) - last]])
    else:
        chain = chain if isinstance(chain, Chain) else Chain(chain)
        first, last = _permutation_ends(factors, chain, row_perm is not None, col_perm is not None)
    if not first:
        row_perm, row_scale = None, 1
    if not last:
        col_perm, col_scale = None, 1
    weights = []
    for spec, factor in zip(chain, factors[first : len(factors) - last], strict=True):
        rows, cols = spec.support_indices()
        values = sp.csr_array(factor)[rows, cols]
        weights.append(np.asarray(values).reshape(spec.weight_shape))
    for end, scale in ((0, row_scale), (-1, col_scale)):
        if scale != 1:  # a scaled permutation's scale joins its neighbour
            weights[end] = weights[end] * scale
    if col_perm is not None:
        col_perm = np.argsort(col_perm)  # the row of column j's one, not the column of row i's
    return DeButOperator(
        chain, weights, check_finite=check_finite, row_perm=row_perm, col_perm=col_perm
    )


def _permutation_ends(
    factors: list[sp.coo_array], chain: Chain, first_is_perm: bool, last_is_perm: bool
) -> tuple[bool, bool]:
    """Which ends of ``factors`` to read as the row and column permutations for the others
    to fit ``chain``, given which ends are permutation matrices (``c P``, ``P`` not ``I``).

    As many ends are read as there are factors more than ``chain`` has. With one to
    read and both ends permutations, the first is read if the others then fit, else
    the last. ``ValueError`` naming the factor that does not fit, under each reading.
    """
    extra = len(factors) - len(chain)
    readings = [
        (row, col)
        for row, col in ((True, True), (True, False), (False, True), (False, False))
        if row + col == extra and (first_is_perm or not row) and (last_is_perm or not col)
    ]
    if not readings:
        message = f"the Faust has {len(factors)} factors but the chain has {len(chain)}"
        if extra == 1:
            message += (
                ", and neither end factor is a permutation matrix (other than the identity) "
                "to read as the operator's row or column permutation"
            )
        elif extra == 2:
            message += (
                ", and its end factors are not both permutation matrices (other than the "
                "identity) to read as the operator's row and column permutations"
            )
        raise ValueError(message)
    conflicts = []
    for row, col in readings:
        conflict = _misfit(factors[row : len(factors) - col], chain, offset=row)
        if conflict is None:
            return row, col
        ends = [
            f"factor {number} of the Faust as the {side} permutation"
            for number, side, read in ((1, "row", row), (len(factors), "column", col))
            if read
        ]
        conflicts.append(f"reading {' and '.join(ends)}, {conflict}" if ends else conflict)
    raise ValueError("; ".join(conflicts))


def _misfit(factors: list[sp.coo_array], chain: Chain, offset: int) -> str | None:
    """Why ``factors``, factors ``offset + 1`` on of the Faust, do not fit ``chain``, if not."""
    for index, (spec, factor) in enumerate(zip(chain, factors, strict=True)):
        if factor.shape != spec.shape:
            return (
                f"factor {offset + index + 1} of the Faust is {factor.shape[0]} x "
                f"{factor.shape[1]}, but the chain's factor {index + 1} is (p, q, r, s, t) = "
                f"{spec.as_tuple()}"
            )
        if not _fits(spec, factor):
            return (
                f"factor {offset + index + 1} of the Faust has nonzeros outside the support of "
                f"the chain's factor {index + 1}, (p, q, r, s, t) = {spec.as_tuple()}"
            )
    return None


def _scaled_permutation(factor: sp.coo_array) -> tuple[np.ndarray | None, Any]:
    """``(perm, c)`` if ``factor`` is ``c`` times a permutation matrix other than the identity.

    Its nonzeros are then ``factor[i, perm[i]] = c``; otherwise ``(None, 1)``.
    """
    n = factor.shape[0]
    nonzero = factor.data != 0
    rows, cols, values = factor.row[nonzero], factor.col[nonzero], factor.data[nonzero]
    if factor.shape != (n, n) or rows.size != n or np.any(values != values[0]):
        return None, 1
    perm = np.full(n, -1)
    perm[rows] = cols
    if np.any(perm < 0) or np.unique(cols).size != n or np.array_equal(perm, np.arange(n)):
        return None, 1
    return perm, values[0]


def _fits(spec: FactorSpec, factor: sp.coo_array) -> bool:
    """Whether every stored nonzero of ``factor`` lies in the support of ``spec``."""
    rows, columns = _nonzeros(factor)
    return bool(np.all(rows % spec.t == columns % spec.t)) and _in_blocks(spec, rows, columns)


def _nonzeros(factor: sp.coo_array) -> tuple[np.ndarray, np.ndarray]:
    """Row and column indices (int64) of the stored nonzeros of ``factor``."""
    nonzero = factor.data != 0
    return factor.row[nonzero].astype(np.int64), factor.col[nonzero].astype(np.int64)


#: Nonzeros :func:`_in_blocks` checks at a time, stopping at the first outside.
_BLOCK_CHECK = 1 << 14


def _in_blocks(spec: FactorSpec, rows: np.ndarray, columns: np.ndarray) -> bool:
    """Whether each nonzero ``(rows[i], columns[i])`` lies in a diagonal block of ``spec``
    (``r t`` rows by ``s t`` columns), checked :data:`_BLOCK_CHECK` at a time."""
    row_block, column_block = spec.r * spec.t, spec.s * spec.t
    return not any(
        np.any(rows[start : start + _BLOCK_CHECK] // row_block
               != columns[start : start + _BLOCK_CHECK] // column_block)
        for start in range(0, rows.size, _BLOCK_CHECK)
    )  # fmt: skip


def _smallest_spec(factor: sp.coo_array) -> FactorSpec:
    """The DeBut shape with the fewest weights (then the largest ``t``) holding ``factor``.

    With ``d = k t`` (blocks times diagonal), a shape holds ``p q / d`` weights: the
    largest ``d`` dividing ``gcd(p, q)`` whose blocks hold every nonzero wins. For a
    given ``d``, ``t`` must divide every ``i - j`` of a nonzero ``(i, j)``, so it is at
    most ``gcd(d, g)`` for ``g`` their gcd; and a smaller ``t`` only cuts the blocks
    finer: one ``t`` is tried for each ``d``, each nonzero read until the first outside
    (a dense 5040 x 5040 factor ran 810 full checks of its 25 million nonzeros).
    """
    p, q = factor.shape
    rows, columns = _nonzeros(factor)
    offsets = int(np.gcd.reduce(np.abs(rows - columns))) if rows.size else 0  # 0: diagonal
    for d in reversed(_divisors(math.gcd(p, q))):
        spec = FactorSpec(p, q, p // d, q // d, math.gcd(d, offsets))
        if _in_blocks(spec, rows, columns):
            return spec
    raise AssertionError("unreachable: d = 1 is one dense block")  # pragma: no cover


def _divisors(x: int) -> list[int]:
    small = [d for d in range(1, math.isqrt(x) + 1) if x % d == 0]
    return sorted({*small, *(x // d for d in small)})
