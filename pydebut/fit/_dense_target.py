"""Targets that are not arrays: SciPy sparse matrices and ``LinearOperator``s, made dense.

Fitting works on the dense ``m x n`` target, so a sparse matrix is densified
and a ``LinearOperator`` is sampled by applying it to the identity, a block of
columns at a time, both only up to :data:`MAX_DENSE_ENTRIES` entries; beyond that
the caller gets a ``ValueError`` naming the limit, before anything is
allocated.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import LinearOperator

#: Largest ``m * n`` a sparse or LinearOperator target is made dense for (1 GiB of float64).
MAX_DENSE_ENTRIES = 2**27

#: Columns of the identity applied to a LinearOperator target at a time.
BLOCK = 256


def dense_target(target: Any) -> Any:
    """``target`` itself, or a dense ndarray if it is sparse or a ``LinearOperator``.

    Examples
    --------
    >>> import scipy.sparse as sp
    >>> from scipy.sparse.linalg import aslinearoperator
    >>> dense_target(sp.eye_array(3)).tolist()
    [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    >>> dense_target(aslinearoperator(2 * np.eye(2))).tolist()
    [[2.0, 0.0], [0.0, 2.0]]
    """
    if sp.issparse(target):
        _check_size(target.shape, "sparse matrix")
        return target.toarray()
    if isinstance(target, LinearOperator):
        _check_size(target.shape, "LinearOperator")
        m, n = target.shape
        dtype = np.dtype(target.dtype if target.dtype is not None else np.float64)
        # the working precision of an array of the operator's dtype (working_dtype)
        out = np.empty(
            (m, n), dtype=np.result_type(dtype, np.float32 if dtype.kind in "fc" else np.float64)
        )
        for start in range(0, n, BLOCK):
            stop = min(start + BLOCK, n)
            columns = np.zeros((n, stop - start), dtype=out.dtype)
            columns[np.arange(start, stop), np.arange(stop - start)] = 1
            block = np.asarray(target.matmat(columns))
            if block.shape != (m, stop - start):
                raise ValueError(
                    f"the LinearOperator target has shape ({m}, {n}), but its matmat of a "
                    f"block of {stop - start} columns returned shape {block.shape}, not "
                    f"({m}, {stop - start})"
                )
            if out.dtype.kind != "c" and np.iscomplexobj(block) and np.any(block.imag):
                raise TypeError(
                    f"the LinearOperator target declares dtype {dtype} but returns complex "
                    f"values ({block.dtype}): declare its dtype complex"
                )
            _store(block.real if out.dtype.kind != "c" else block, out[:, start:stop], dtype)
        return out
    return target


def _store(block: np.ndarray, out: np.ndarray, declared: np.dtype) -> None:
    """Write the values ``block`` a LinearOperator of dtype ``declared`` returned into
    ``out``; ``ValueError`` if finite values overflow to infinity there."""
    with np.errstate(over="ignore"):
        out[...] = block
    narrowed = block.dtype.kind in "fc" and not np.can_cast(block.dtype, out.dtype)
    if narrowed and np.any(np.isinf(out) & np.isfinite(block)):
        raise ValueError(
            f"the target's entries overflow to infinity in {out.dtype} (largest {out.dtype} "
            f"{np.finfo(out.dtype).max:.4g}): the LinearOperator declares dtype {declared} "
            f"but returns {block.dtype} values beyond it; declare its dtype {block.dtype}"
        )


def _check_size(shape: tuple[int, ...], what: str) -> None:
    if len(shape) != 2:
        raise ValueError(f"the target must be a 2-D matrix, got a {what} of shape {shape}")
    m, n = shape
    if m * n > MAX_DENSE_ENTRIES:
        raise ValueError(
            f"the target is a {m} x {n} {what}; fitting needs it dense, and pydebut densifies "
            f"at most MAX_DENSE_ENTRIES = {MAX_DENSE_ENTRIES:,} entries (pydebut.fit); "
            "pass a dense array if it fits in memory"
        )
