"""Permutations of rows and columns: validation, inverse, bit reversal."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from ._arguments import as_positive_int, refuse_masked, shown
from ._memory import check_fits_in_memory

__all__ = [
    "bit_reversal",
    "candidate_permutations",
    "check_permutation",
    "inverse_permutation",
    "log2_exact",
    "unpermute",
]


def check_permutation(perm: Any, n: int, name: str) -> np.ndarray | None:
    """Return ``perm`` as a read-only int64 permutation of ``range(n)``, or None for the identity.

    Raises
    ------
    TypeError
        If ``perm`` is not an array of integers.
    ValueError
        If it is not 1-D of length ``n``, does not hold every index of ``range(n)`` once,
        or is a masked array with masked entries.
    """
    if perm is None:
        return None
    refuse_masked(perm, name, "the operator")
    array = np.asarray(perm)
    if array.dtype.kind not in "iu":
        raise TypeError(f"{name} must be an array of integers, got dtype {array.dtype}")
    if array.ndim != 1 or array.shape[0] != n:
        raise ValueError(f"{name} must be a 1-D array of length {n}, got shape {array.shape}")
    if n and (array.min() < 0 or array.max() >= n):
        raise ValueError(f"{name} has entries outside range({n})")
    if np.bincount(array, minlength=n).max(initial=1) != 1:
        raise ValueError(f"{name} is not a permutation of range({n}): an index repeats")
    if np.array_equal(array, np.arange(n)):
        return None
    owned = np.array(array, dtype=np.int64, copy=True)
    owned.flags.writeable = False
    return owned


def inverse_permutation(perm: np.ndarray) -> np.ndarray:
    """Return ``inv`` with ``inv[perm[i]] = i``."""
    inverse = np.empty_like(perm)
    inverse[perm] = np.arange(perm.shape[0], dtype=perm.dtype)
    return inverse


def unpermute(
    matrix: np.ndarray, row_perm: np.ndarray | None, col_perm: np.ndarray | None
) -> np.ndarray:
    """The ``B`` with ``B[row_perm][:, col_perm] == matrix`` (``matrix`` if no permutation)."""
    if row_perm is not None:
        matrix = matrix[inverse_permutation(row_perm)]
    if col_perm is not None:
        matrix = matrix[:, inverse_permutation(col_perm)]
    return matrix


def log2_exact(n: int, name: str, where: str, smallest: int = 2) -> int:
    """``log2(n)`` of a power of two ``n >= smallest``; TypeError or ValueError naming ``where``."""
    if isinstance(n, bool) or not (isinstance(n, numbers.Integral) and n < 1):  # < 1: below
        n = as_positive_int(n, name, where)
    if n < smallest or n & (n - 1):
        raise ValueError(f"{where}: {name} must be a power of two >= {smallest}, got {shown(n)}")
    return int(n).bit_length() - 1


def bit_reversal(n: int) -> np.ndarray:
    """The bit-reversal permutation of ``range(n)``, ``n`` a power of two.

    Entry ``i`` is ``i`` with its ``log2(n)`` bits in reverse order. It is its
    own inverse.

    Parameters
    ----------
    n : int
        A power of two, at least 1.

    Returns
    -------
    ndarray of int64, shape (n,)

    Raises
    ------
    TypeError
        If ``n`` is not an integer.
    ValueError
        If ``n`` is not a power of two, or the permutation (``n`` int64
        entries, built in place) would not fit in memory.

    Examples
    --------
    >>> bit_reversal(8).tolist()
    [0, 4, 2, 6, 1, 5, 3, 7]
    """
    n = 2 ** log2_exact(n, "n", "bit_reversal", smallest=1)
    check_fits_in_memory(n * 8, f"bit_reversal({shown(n)})", "ask for a smaller n")
    perm = np.zeros(n, dtype=np.int64)
    half = 1
    while half < n:  # rev_{2h}(i) = 2 rev_h(i) for i < h, 2 rev_h(i - h) + 1 after
        perm[:half] *= 2
        np.add(perm[:half], 1, out=perm[half : 2 * half])
        half *= 2
    return perm


PermutationPair = tuple[np.ndarray | None, np.ndarray | None]


def candidate_permutations(m: int, n: int) -> dict[str, PermutationPair]:
    """Row and column permutations worth trying when fitting an ``m x n`` target.

    The identity, and the bit reversal (:func:`bit_reversal`) of the columns, of
    the rows and of both, wherever that dimension is a power of two: a DFT of
    size ``2**L`` is a butterfly product only after its columns (or rows) are
    put in bit-reversed order. Each value is ``(row_perm, col_perm)`` in the
    convention of :class:`~pydebut.DeButOperator` (None for the identity).

    Parameters
    ----------
    m, n : int
        Shape of the target, positive. A side of 1 or 2 gets no bit reversal:
        there it is the identity.

    Returns
    -------
    dict of str to (ndarray or None, ndarray or None)
        ``"identity"`` always, then those of ``"bitrev-cols"``, ``"bitrev-rows"``
        and ``"bitrev-both"`` that apply, in that order; the permutations are
        int64 arrays.

    Raises
    ------
    TypeError
        If ``m`` or ``n`` is not an integer.
    ValueError
        If ``m`` or ``n`` is not positive, or the bit reversals would not fit
        in memory.

    Examples
    --------
    >>> sorted(candidate_permutations(8, 6))
    ['bitrev-rows', 'identity']
    >>> row_perm, col_perm = candidate_permutations(4, 4)["bitrev-cols"]
    >>> row_perm is None, col_perm.tolist()
    (True, [0, 2, 1, 3])
    """

    def reversible(size: int) -> bool:
        return size > 2 and not size & (size - 1)

    m = as_positive_int(m, "m", "candidate_permutations")
    n = as_positive_int(n, "n", "candidate_permutations")
    check_fits_in_memory(  # both bit reversals are held at once, 8 bytes an entry
        8 * (m * reversible(m) + n * reversible(n)),
        f"candidate_permutations({shown(m)}, {shown(n)})",
        "ask for smaller powers of two",
    )
    rows = bit_reversal(m) if reversible(m) else None
    cols = bit_reversal(n) if reversible(n) else None
    candidates: dict[str, PermutationPair] = {"identity": (None, None)}
    if cols is not None:
        candidates["bitrev-cols"] = (None, cols)
    if rows is not None:
        candidates["bitrev-rows"] = (rows, None)
    if rows is not None and cols is not None:
        candidates["bitrev-both"] = (rows, cols)
    return candidates
