"""A ``DeButOperator`` meets ``scipy.sparse``: its product as a sparse array, and products.

The product of a DeBut chain is dense in general (every chainable chain's is),
so :func:`tosparse` is bounded: it refuses up front when the product, or a
partial product on the way, could hold more than ``max_nnz`` nonzeros, or more
bytes than this machine's memory. A
product with a sparse matrix is a dense ndarray, computed a block of columns
(or rows) at a time so that the sparse operand is never densified whole.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from ._arguments import as_positive_int
from ._memory import check_fits_in_memory

if TYPE_CHECKING:
    from .operator import DeButOperator
    from .spec import Chain

#: Default bound on the nonzeros of :meth:`DeButOperator.tosparse` (about 1 GiB as CSR).
MAX_NNZ = 2**26

#: Columns of a sparse operand densified at a time by the sparse products.
BLOCK = 512

FORMATS = {"csr": sp.csr_array, "csc": sp.csc_array}


def nnz_bound(chain: Chain) -> int:
    """An upper bound on the nonzeros of the product and of every partial product ``F_1..F_l``.

    Row ``i`` of ``F_1 ... F_l`` has at most ``min(q_l, s_1 ... s_l)`` nonzeros
    and each column at most ``min(m, r_1 ... r_l)``.

    Examples
    --------
    >>> from pydebut import Chain
    >>> nnz_bound(Chain.from_factorizations([2, 2], [2, 2]))  # a dense 4 x 4 product
    16
    >>> nnz_bound(Chain([(8, 8, 1, 1, 8)]))  # a diagonal
    8
    """
    m = chain.shape[0]
    bound = 0
    row_nnz = col_nnz = 1
    for factor in chain:
        row_nnz, col_nnz = row_nnz * factor.s, col_nnz * factor.r
        bound = max(bound, min(m * min(factor.q, row_nnz), factor.q * min(m, col_nnz)))
    return bound


def tosparse(
    op: DeButOperator, format: str = "csr", max_nnz: int = MAX_NNZ
) -> sp.csr_array | sp.csc_array:
    """The product of ``op``'s factors as a SciPy sparse array; see ``DeButOperator.tosparse``."""
    if format not in FORMATS:
        raise ValueError(f"format must be 'csr' or 'csc', got {format!r}")
    max_nnz = as_positive_int(max_nnz, "max_nnz", "tosparse", allow_zero=True)
    bound = nnz_bound(op.chain)
    m, n = op.shape
    if bound > max_nnz:
        raise ValueError(
            f"the {m} x {n} product of this chain (or a partial product on the way) may hold "
            f"up to {bound:,} nonzeros, above max_nnz={max_nnz:,}; raise max_nnz if that fits "
            "in memory, or apply the operator (op @ x) instead of forming it"
        )
    # values and int64 indices (SciPy's above 2**31 nonzeros) of a partial product and the next
    index = np.dtype(np.int64).itemsize
    check_fits_in_memory(
        2 * (bound * (op.dtype.itemsize + index) + (max(m, n) + 1) * index),
        f"the sparse {m} x {n} product (up to {bound:,} nonzeros, formed from a partial "
        "product as large)",
        "apply the operator (op @ x) instead of forming it",
    )
    factors = sparse_factors(op)
    product = factors[0]
    for factor in factors[1:]:
        product = product @ factor
    return FORMATS[format](product)


def sparse_factors(op: DeButOperator) -> list[sp.csr_array]:
    """The factors of ``op`` as CSR arrays, with its permutation matrices where it has them.

    Their product is the operator: ``P_r F_1 ... F_L P_c``.
    """
    row_matrix, col_matrix = op.permutation_matrices()
    return [
        *([row_matrix] if op.row_perm is not None else []),
        *op.factors(),
        *([col_matrix] if op.col_perm is not None else []),
    ]


def times_sparse(op: DeButOperator, matrix: Any) -> np.ndarray:
    """``op @ matrix`` for a SciPy sparse ``matrix`` or 1-D sparse array, as a dense ndarray."""
    if matrix.ndim > 2 or matrix.shape[0] != op.shape[1]:
        raise ValueError(
            f"cannot multiply the {op.shape[0]} x {op.shape[1]} operator by a sparse matrix "
            f"of shape {matrix.shape}"
        )
    if matrix.ndim == 1:  # a vector (1-D sparse arrays: SciPy >= 1.13)
        return op.matvec(matrix.toarray())
    matrix = sp.csc_array(matrix)
    width = matrix.shape[1]
    dtype = np.result_type(op.dtype, matrix.dtype)
    out = np.empty((op.shape[0], width), dtype=dtype)
    for start in range(0, width, BLOCK):
        stop = min(start + BLOCK, width)
        out[:, start:stop] = op.matmat(matrix[:, start:stop].toarray())
    return out


def sparse_times(matrix: Any, op: DeButOperator) -> np.ndarray:
    """``matrix @ op`` for a SciPy sparse ``matrix`` or 1-D sparse array: ``(op^H matrix^H)^H``.

    The result is a dense ndarray.
    """
    if matrix.ndim > 2 or matrix.shape[-1] != op.shape[0]:
        raise ValueError(
            f"cannot multiply a sparse matrix of shape {matrix.shape} by the "
            f"{op.shape[0]} x {op.shape[1]} operator"
        )
    if matrix.ndim == 1:
        return op.rmatvec(matrix.conj().toarray()).conj()
    return times_sparse(op.H, sp.csr_array(matrix).conj().T).conj().T
