"""Pieces shared by the fitting methods: target loading, validation, results.

Factor products here are the structured ones of the Concepts page of the documentation, written
for blocks of vectors ``X`` of shape ``(q, batch)`` with the batch innermost.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..operator import DeButOperator
from ..spec import Chain, FactorSpec
from ._dense_target import dense_target

__all__ = ["FitResult"]


def apply_factor(spec: FactorSpec, weights: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Return ``F @ x`` for a block ``x`` of shape ``(q, batch)``.

    ``y[b, rho, alpha, :] = sum_sigma W[b, rho, sigma, alpha] x[b, sigma, alpha, :]``:
    one small matrix product per ``(b, alpha)``, written in place into ``y``.
    """
    k, r, s, t = spec.weight_shape
    batch = x.shape[1]
    y = np.empty((k, r, t, batch), dtype=np.result_type(weights, x))
    x_blocks = x.reshape(k, s, t, batch).transpose(0, 2, 1, 3)
    np.matmul(weights.transpose(0, 3, 1, 2), x_blocks, out=y.transpose(0, 2, 1, 3))
    return y.reshape(spec.p, batch)


def apply_factor_adjoint(spec: FactorSpec, weights: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Return ``F^H @ y`` for a block ``y`` of shape ``(p, batch)``."""
    k, r, s, t = spec.weight_shape
    batch = y.shape[1]
    x = np.empty((k, s, t, batch), dtype=np.result_type(weights, y))
    y_blocks = y.reshape(k, r, t, batch).transpose(0, 2, 1, 3)
    np.matmul(weights.conj().transpose(0, 3, 2, 1), y_blocks, out=x.transpose(0, 2, 1, 3))
    return x.reshape(spec.q, batch)


def working_dtype(dtype: np.dtype) -> np.dtype:
    """Floating dtype the fit computes in: float32/complex64 stay, the rest is double."""
    if dtype in (np.float32, np.float16):
        return np.dtype(np.float32)
    if dtype == np.complex64:
        return np.dtype(np.complex64)
    if np.issubdtype(dtype, np.complexfloating):
        return np.dtype(np.complex128)
    return np.dtype(np.float64)


def load_target(target: Any, chain: Chain | None) -> np.ndarray:
    """Return ``target`` as a finite 2-D numeric array, of shape ``chain.shape`` if given.

    A ``str`` or path names a ``.npy`` file, which is memory-mapped. Any
    array-like is taken (lists, ``np.memmap``, ...); a SciPy sparse matrix or
    a ``LinearOperator`` is made dense up to ``2**27`` entries
    (:func:`~pydebut.fit._dense_target.dense_target`).

    Raises
    ------
    TypeError
        If the target's dtype is not numeric (e.g. ``object``).
    ValueError
        If it is not 2-D, does not have the chain's shape or is not finite.
    """
    if isinstance(target, (str, os.PathLike)):
        target = np.load(target, mmap_mode="r", allow_pickle=False)
    array = np.asarray(dense_target(target))
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
        raise TypeError(f"the target must hold numbers, got dtype {array.dtype}")
    if array.ndim != 2:
        raise ValueError(f"the target must be a 2-D matrix, got shape {array.shape}")
    if chain is not None and array.shape != chain.shape:
        raise ValueError(
            f"the target has shape {array.shape} but the chain is "
            f"{chain.shape[0]} x {chain.shape[1]}"
        )
    if np.issubdtype(array.dtype, np.inexact) and not np.isfinite(array).all():
        raise ValueError("the target has non-finite entries (NaN or Inf)")
    return array


def relative_error(approx: np.ndarray, target: np.ndarray, target_norm: float) -> float:
    """Return ``||target - approx||_F / ||target||_F`` (the absolute error if the target is 0).

    ``approx`` is overwritten with the residual.
    """
    residual = float(np.linalg.norm(np.subtract(approx, target, out=approx)))
    return residual / target_norm if target_norm > 0 else residual


def make_operator(chain: Chain, weights: Sequence[np.ndarray]) -> DeButOperator:
    """Wrap fitted weights in a :class:`~pydebut.DeButOperator`."""
    return DeButOperator(chain, tuple(weights))


@dataclass
class FitResult:
    """Outcome of a fit: the fitted operator and its error history.

    Attributes
    ----------
    operator : DeButOperator
        The fitted chain and weights.
    errors : list of float
        Relative Frobenius error ``||D - D_hat||_F / ||D||_F``: after the
        initialisation, then after every half-sweep (ALS) or once (hierarchical).
    times : list of float
        Seconds since the fit started, at the moment of each entry of ``errors``.
    method : str
        ``"als"`` or ``"hierarchical"``.

    Examples
    --------
    >>> import numpy as np
    >>> from pydebut import Chain, fit_als
    >>> chain = Chain.from_factorizations([2, 2], [2, 2])
    >>> result = fit_als(np.eye(4), chain, n_sweeps=2, init="random", rng=0)
    >>> result.n_sweeps, len(result.errors), result.operator.shape
    (2, 5, (4, 4))
    """

    operator: DeButOperator
    errors: list[float]
    times: list[float]
    method: str

    @property
    def error(self) -> float:
        """The final relative error."""
        return self.errors[-1]

    @property
    def n_sweeps(self) -> int:
        """Number of complete ALS sweeps in ``errors`` (0 for a hierarchical fit)."""
        return (len(self.errors) - 1) // 2 if self.method == "als" else 0

    def summary(self) -> str:
        """One line: method, chain size, parameters, compression, error and time.

        Examples
        --------
        >>> import numpy as np
        >>> from pydebut import Chain, fit_hierarchical
        >>> chain = Chain.from_factorizations([2, 2], [2, 2])
        >>> print(fit_hierarchical(np.eye(4), chain).summary())  # doctest: +ELLIPSIS
        hierarchical fit, 4 x 4 chain of 2 factors, 16 params (compression 1.00x): ...
        """
        chain = self.operator.chain
        m, n = chain.shape
        steps = f" after {self.n_sweeps} sweeps" if self.method == "als" else ""
        start = f"{self.errors[0]:.4g} -> " if self.method == "als" else ""
        return (
            f"{self.method} fit, {m} x {n} chain of {chain.n_factors} factors, "
            f"{chain.n_params} params (compression {chain.compression_ratio:.2f}x): "
            f"relative error {start}{self.error:.4g}{steps} in {self.times[-1]:.3g} s"
        )
