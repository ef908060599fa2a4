"""Slow, obviously correct NumPy twins of the Numba kernels.

Every kernel in :mod:`pydebut._kernels` is tested against the function of the
same job here. Arrays follow the Concepts page of the documentation: a factor's weights are
``W[b, rho, sigma, alpha]`` of shape ``(k, r, s, t)``; a block of vectors
``X`` has shape ``(q, batch)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .spec import Chain, FactorSpec


def apply_factor(spec: FactorSpec, weights: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Return ``F @ x`` for one factor; ``x`` has shape ``(q, batch)``.

    ``y[b, rho, alpha] = sum_sigma W[b, rho, sigma, alpha] * x[b, sigma, alpha]``.
    """
    k, _, s, t = spec.weight_shape
    batch = x.shape[1]
    x_blocks = x.reshape(k, s, t, batch)
    y = np.einsum("krst,kstn->krtn", weights, x_blocks)
    return y.reshape(spec.p, batch)


def apply_factor_adjoint(spec: FactorSpec, weights: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Return ``F^H @ y`` for one factor; ``y`` has shape ``(p, batch)``."""
    k, r, _, t = spec.weight_shape
    batch = y.shape[1]
    y_blocks = y.reshape(k, r, t, batch)
    x = np.einsum("krst,krtn->kstn", weights.conj(), y_blocks)
    return x.reshape(spec.q, batch)


def apply_chain(chain: Chain, weights: Sequence[np.ndarray], x: np.ndarray) -> np.ndarray:
    """Return ``F_1 F_2 ... F_L @ x``; ``x`` has shape ``(n, batch)``."""
    for spec, w in zip(reversed(chain.factors), reversed(weights), strict=True):
        x = apply_factor(spec, w, x)
    return x


def apply_chain_adjoint(chain: Chain, weights: Sequence[np.ndarray], y: np.ndarray) -> np.ndarray:
    """Return ``(F_1 ... F_L)^H @ y``; ``y`` has shape ``(m, batch)``."""
    for spec, w in zip(chain.factors, weights, strict=True):
        y = apply_factor_adjoint(spec, w, y)
    return y


def factor_to_dense(spec: FactorSpec, weights: np.ndarray) -> np.ndarray:
    """Return the ``(p, q)`` dense matrix of one factor."""
    dense = np.zeros(spec.shape, dtype=weights.dtype)
    dense[spec.support_indices()] = weights.ravel()
    return dense


def chain_to_dense(chain: Chain, weights: Sequence[np.ndarray]) -> np.ndarray:
    """Return the dense product ``F_1 F_2 ... F_L`` by multiplying dense factors."""
    product = factor_to_dense(chain[0], weights[0])
    for spec, w in zip(chain.factors[1:], weights[1:], strict=True):
        product = product @ factor_to_dense(spec, w)
    return product
