"""Hierarchical factorization of chainable and rank-weighted chains by block SVDs.

For a chain whose links satisfy the conditions of :func:`hierarchy_ranks`, the
product of any contiguous sub-chain ``F_i ... F_j`` has the support of a single
DeBut factor ``(k_i, R, S, t_j)``. Its entries are therefore stored as an array
``T[b, rho, sigma, alpha]`` exactly like factor weights, and splitting the
sub-chain after factor ``l`` turns the two-factor fixed-support problem into
independent rank-``w_l`` approximations of ``R1 x S2`` sub-blocks of ``T``
(Zheng, Riccietti, Gribonval 2023; Le, Zheng, Riccietti, Gribonval 2025).
"""

from __future__ import annotations

import time
from typing import Any, Literal

import numpy as np

from ..spec import Chain, FactorSpec
from ._common import FitResult, load_target, make_operator, working_dtype

__all__ = ["fit_hierarchical", "hierarchy_ranks"]

Order = Literal["left-to-right", "balanced"]


def hierarchy_ranks(chain: Chain) -> tuple[int, ...]:
    """Ranks ``w_1 ... w_{L-1}`` of the links of a chainable or rank-weighted chain.

    Link ``l`` (between ``F_l`` and ``F_{l+1}``) qualifies when ``k_{l+1} = k_l c_l``
    and ``t_l = b_{l+1} t_{l+1}`` for integers ``c_l`` dividing ``s_l`` and
    ``b_{l+1}`` dividing ``r_{l+1}``, with ``w_l = s_l / c_l = r_{l+1} / b_{l+1}``
    (the ``(a, b, c, d, p, q)`` format of Le et al.). Chainable links have
    ``w_l = 1``.

    Raises
    ------
    ValueError
        Naming the first link that does not qualify.

    Examples
    --------
    >>> hierarchy_ranks(Chain.from_factorizations([2, 2, 2], [2, 2, 2]))
    (1, 1)
    >>> hierarchy_ranks(Chain.from_abcd([(1, 2, 2, 2, 1, 3), (2, 2, 2, 1, 3, 1)]))
    (3,)
    """
    ranks = []
    links = zip(chain.factors[:-1], chain.factors[1:], strict=True)
    for l, (left, right) in enumerate(links, start=1):  # noqa: E741
        k_left, k_right = left.n_blocks, right.n_blocks
        c = k_right // k_left if k_right % k_left == 0 else 0
        b = left.t // right.t if left.t % right.t == 0 else 0
        if c and b and left.s % c == 0 and right.r % b == 0 and left.s // c == right.r // b:
            ranks.append(left.s // c)
            continue
        raise ValueError(
            f"factors {l} and {l + 1} ({left!r}, {right!r}) are neither chainable nor "
            f"rank-weighted (need k_{l + 1} = k_{l} * c and t_{l} = b * t_{l + 1} with "
            f"s_{l} / c == r_{l + 1} / b), so fit_hierarchical does not apply; "
            "use fit_als for this chain"
        )
    return tuple(ranks)


def fit_hierarchical(target: Any, chain: Chain, *, order: Order = "left-to-right") -> FitResult:
    """Factor ``target`` on a chainable or rank-weighted chain by hierarchical block SVDs.

    Parameters
    ----------
    target : array_like or path
        The ``m x n`` matrix ``D``; a path names a ``.npy`` file (memory-mapped).
    chain : Chain
        A chain whose links are chainable or rank-weighted (:func:`hierarchy_ranks`).
    order : {"left-to-right", "balanced"}
        Split the chain after its first factor at every level (peeling
        ``F_1, F_2, ...`` off in turn), or in the middle.

    Returns
    -------
    FitResult
        ``errors`` holds the single relative error ``||D - D_hat||_F / ||D||_F``.

    Raises
    ------
    ValueError
        If the chain does not qualify (the message suggests :func:`fit_als`), if
        the target does not have the chain's shape or is not finite, or if
        ``order`` is unknown.
    TypeError
        If the target is not numeric.

    Notes
    -----
    Splitting the sub-chain ``F_i ... F_j`` with entries ``T`` of shape
    ``(k, R, S, t)`` after ``F_l`` writes ``R = R1 * B2`` (``B2 = t_l / t_j``)
    and ``S = C1 * S2`` (``C1 = k_{l+1} / k_i``). For every ``(b, c1, b2, alpha)``
    the ``R1 x S2`` sub-block ``T[b, (., b2), (c1, .), alpha]`` is a product of a
    column block of the left part and a row block of the right part, of rank at
    most ``w_l``: its truncated SVD ``U (U^H M)`` solves the two-factor problem
    exactly, and the halves are factored recursively. The left singular vectors
    are kept orthonormal on the smaller side. All sub-blocks of a level are
    decomposed at once, through the eigendecompositions of their stacked Gram
    matrices. A matrix that admits the chain is recovered to rounding error.

    References
    ----------
    .. [1] L. Zheng, E. Riccietti, R. Gribonval, "Efficient identification of
       butterfly sparse matrix factorizations", SIAM J. Math. Data Sci., 2023.
    .. [2] Q.-T. Le, L. Zheng, E. Riccietti, R. Gribonval, "Butterfly
       factorization with error guarantees", SIAM J. Matrix Anal. Appl., 2025.

    Examples
    --------
    >>> import numpy as np
    >>> from scipy.linalg import hadamard
    >>> from pydebut import Chain, fit_hierarchical
    >>> chain = Chain.from_factorizations([2] * 6, [2] * 6)
    >>> result = fit_hierarchical(hadamard(64), chain)
    >>> result.error < 1e-14
    True
    """
    start = time.perf_counter()
    chain = Chain(chain)
    if order not in ("left-to-right", "balanced"):
        raise ValueError(f"order must be 'left-to-right' or 'balanced', got {order!r}")
    ranks = hierarchy_ranks(chain)
    matrix = load_target(target, chain)
    dtype = working_dtype(matrix.dtype)
    entries, outside = _support_entries(np.asarray(matrix, dtype=dtype), chain)
    weights, approx = _factor(entries, chain.factors, ranks, order)
    residual2 = float(np.linalg.norm(entries - approx)) ** 2 + outside
    total2 = float(np.linalg.norm(entries)) ** 2 + outside
    error = np.sqrt(residual2 / total2) if total2 > 0 else np.sqrt(residual2)
    operator = make_operator(chain, weights)
    return FitResult(operator, [float(error)], [time.perf_counter() - start], "hierarchical")


def _support_entries(matrix: np.ndarray, chain: Chain) -> tuple[np.ndarray, float]:
    """Entries of ``matrix`` on the product's support as ``T[b, rho, sigma, alpha]``.

    Also returns ``||matrix||^2`` outside that support (0 when ``k_1 = t_L = 1``).
    """
    k, t = chain[0].n_blocks, chain[-1].t
    m, n = chain.shape
    rows, cols = m // (k * t), n // (k * t)
    if k == 1 and t == 1:
        return matrix.reshape(1, rows, cols, 1), 0.0
    entries = np.einsum("brabsa->brsa", matrix.reshape(k, rows, t, k, cols, t)).copy()
    row_block, row_alpha = np.divmod(np.arange(m), rows * t)[0], np.arange(m) % t
    col_block, col_alpha = np.divmod(np.arange(n), cols * t)[0], np.arange(n) % t
    inside = (row_block[:, None] == col_block) & (row_alpha[:, None] == col_alpha)
    return entries, float(np.linalg.norm(matrix[~inside])) ** 2


def _factor(
    entries: np.ndarray, specs: tuple[FactorSpec, ...], ranks: tuple[int, ...], order: Order
) -> tuple[list[np.ndarray], np.ndarray]:
    """Factor the sub-chain ``specs`` with entries ``T``; return weights and ``T_hat``."""
    if len(specs) == 1:
        return [entries], entries
    h = 1 if order == "left-to-right" else len(specs) // 2
    k, R, S, t = entries.shape
    B2 = specs[h - 1].t // t
    C1 = specs[h].n_blocks // k
    R1, S2, w = R // B2, S // C1, ranks[h - 1]
    blocks = entries.reshape(k, R1, B2, C1, S2, t).transpose(0, 3, 2, 5, 1, 4)
    u, v = _low_rank(blocks, w)  # (k, C1, B2, t, R1, w) and (k, C1, B2, t, w, S2)
    left = u.transpose(0, 4, 1, 5, 2, 3).reshape(k, R1, C1 * w, B2 * t)
    right = v.transpose(0, 1, 4, 2, 5, 3).reshape(k * C1, w * B2, S2, t)
    left_weights, left_hat = _factor(left, specs[:h], ranks[: h - 1], order)
    right_weights, right_hat = _factor(right, specs[h:], ranks[h:], order)
    u_hat = left_hat.reshape(k, R1, C1, w, B2, t).transpose(0, 2, 4, 5, 1, 3)
    v_hat = right_hat.reshape(k, C1, w, B2, S2, t).transpose(0, 1, 3, 5, 2, 4)
    approx = np.empty(entries.shape, dtype=np.result_type(u_hat, v_hat))
    np.matmul(u_hat, v_hat, out=approx.reshape(k, R1, B2, C1, S2, t).transpose(0, 3, 2, 5, 1, 4))
    return left_weights + right_weights, approx


def _low_rank(blocks: np.ndarray, rank: int) -> tuple[np.ndarray, np.ndarray]:
    """Best rank-``rank`` factors ``u @ v`` of every matrix in the stack ``blocks``.

    The side with orthonormal columns (``u``) or rows (``v``) is the smaller
    one; its vectors are the leading eigenvectors of the stacked Gram matrices,
    and the other factor is the projection of the block onto them.
    """
    rows, cols = blocks.shape[-2:]
    tall = rows > cols
    work = np.conj(np.swapaxes(blocks, -1, -2)) if tall else blocks
    gram = np.matmul(work, np.conj(np.swapaxes(work, -1, -2)))
    _, vectors = np.linalg.eigh(gram)
    basis = vectors[..., ::-1][..., :rank]
    if basis.shape[-1] < rank:
        pad = [(0, 0)] * (basis.ndim - 1) + [(0, rank - basis.shape[-1])]
        basis = np.pad(basis, pad)
    coefficients = np.matmul(np.conj(np.swapaxes(basis, -1, -2)), work)
    if tall:
        return np.conj(np.swapaxes(coefficients, -1, -2)), np.conj(np.swapaxes(basis, -1, -2))
    return basis, coefficients
