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
from collections.abc import Callable, Iterable
from dataclasses import astuple, dataclass
from typing import Any, Literal

import numpy as np
import scipy.linalg

from .._arguments import shown
from .._memory import check_fits_in_memory
from .._permutation import candidate_permutations, check_permutation, unpermute
from ..operator import _dask_backend
from ..spec import Chain, FactorSpec
from ._common import (
    FitResult,
    TargetScale,
    apply_factor_adjoint,
    as_working,
    double_dtype,
    in_double,
    load_target,
    make_operator,
    relative_residual,
    working_dtype,
)

__all__ = ["candidate_permutations", "fit_hierarchical", "hierarchy_ranks"]

Order = Literal["left-to-right", "balanced"]


def hierarchy_ranks(chain: Chain | Iterable[Any]) -> tuple[int, ...]:
    """Ranks ``w_1 … w_{L-1}`` of the links of a chainable or rank-weighted chain.

    Link ``l`` (between ``F_l`` and ``F_{l+1}``) qualifies when ``k_{l+1} = k_l c_l``
    and ``t_l = b_{l+1} t_{l+1}`` for integers ``c_l`` dividing ``s_l`` and
    ``b_{l+1}`` dividing ``r_{l+1}``, with ``w_l = s_l / c_l = r_{l+1} / b_{l+1}``
    (the ``(a, b, c, d, p, q)`` format of Le et al.). Chainable links have
    ``w_l = 1``. Unlike :func:`pydebut.rank_weights`, the ends are free: with
    ``k_1 > 1`` or ``t_L > 1`` the product has the support of a single factor
    ``(k_1, R, S, t_L)``, and each of its ``k_1 * t_L`` dense ``R x S`` parts
    is factored.

    Parameters
    ----------
    chain : Chain or iterable of (p, q, r, s, t)
        The chain, left to right.

    Returns
    -------
    tuple of int
        ``(w_1, ..., w_{L-1})``; empty for a single factor.

    Raises
    ------
    TypeError, ValueError
        If ``chain`` is not a valid chain (as :class:`~pydebut.Chain` checks it).
    ValueError
        Naming the first link that does not qualify, and saying whether the
        transposed chain's links do (:func:`fit_hierarchical` then fits the
        chain through its transpose) or :func:`pydebut.fit_als` is the way.

    Examples
    --------
    >>> hierarchy_ranks(Chain.from_factorizations([2, 2, 2], [2, 2, 2]))
    (1, 1)
    >>> hierarchy_ranks(Chain.from_abcd([(1, 2, 2, 2, 1, 3), (2, 2, 2, 1, 3, 1)]))
    (3,)
    """
    chain = chain if isinstance(chain, Chain) else Chain(chain)
    ranks, broken = _link_ranks(chain)
    if broken is not None:
        raise ValueError(_refusal(chain, broken))
    return ranks


def _refusal(chain: Chain, broken: str) -> str:
    """Why ``chain``, whose first link that does not qualify breaks the rule ``broken``,
    is not factored as it is, and what takes it instead."""
    if _link_ranks(chain.T)[1] is None:
        return (
            f"{broken}; those of the transposed chain are, and fit_hierarchical fits this "
            "chain through it (hierarchy_ranks(chain.T) gives their ranks)"
        )
    return f"{broken}, so fit_hierarchical does not apply; use fit_als for this chain"


def _link_ranks(chain: Chain) -> tuple[tuple[int, ...], str | None]:
    """:func:`hierarchy_ranks` of ``chain``, or the rule its first link that does not
    qualify breaks (then the ranks are those before it)."""
    ranks = []
    links = zip(chain.factors[:-1], chain.factors[1:], strict=True)
    for l, (left, right) in enumerate(links, start=1):  # noqa: E741
        k_left, k_right = left.n_blocks, right.n_blocks
        c = k_right // k_left if k_right % k_left == 0 else 0
        b = left.t // right.t if left.t % right.t == 0 else 0
        if c and b and left.s % c == 0 and right.r % b == 0 and left.s // c == right.r // b:
            ranks.append(left.s // c)
            continue
        return tuple(ranks), (
            f"factors {l} and {l + 1} ({left!r}, {right!r}) are neither chainable nor "
            f"rank-weighted (need k_{l + 1} = k_{l} * c and t_{l} = b * t_{l + 1} with "
            f"s_{l} / c == r_{l + 1} / b)"
        )
    return tuple(ranks), None


def _fits_through_transpose(chain: Chain) -> bool:
    """Whether :func:`fit_hierarchical` factors ``chain`` through its transpose.

    False when its own links qualify (:func:`hierarchy_ranks`), True when only
    those of ``chain.T`` do (the transpose of a chainable chain, as a layer
    stored input-major takes); otherwise the ``ValueError`` naming its first
    link that does not.
    """
    broken = _link_ranks(chain)[1]
    if broken is None:
        return False
    if _link_ranks(chain.T)[1] is None:
        return True
    raise ValueError(_refusal(chain, broken))


def _check_order(order: Any) -> None:
    if order not in ("left-to-right", "balanced"):
        raise ValueError(f"order must be 'left-to-right' or 'balanced', got {shown(order)}")


#: fit_hierarchical's checks of the options that depend on neither the target nor the chain
#: (``fit_many`` runs them once, before any fit, naming no target).
OPTION_CHECKS: dict[str, Callable[[Any], Any]] = {"order": _check_order}


def fit_hierarchical(
    target: Any,
    chain: Chain | Iterable[Any],
    *,
    order: Order = "left-to-right",
    permutation: Any = None,
) -> FitResult:
    """Factor ``target`` on a chainable or rank-weighted chain by hierarchical block SVDs.

    Parameters
    ----------
    target : array_like or path
        The ``m x n`` matrix ``D``; a path names a ``.npy`` file (memory-mapped).
        A SciPy sparse matrix or a ``LinearOperator`` is made dense, up to
        :data:`~pydebut.fit.MAX_DENSE_ENTRIES` entries.
    chain : Chain or iterable of (p, q, r, s, t)
        A chain whose links are chainable or rank-weighted (:func:`hierarchy_ranks`),
        or the transpose of one (as a layer stored input-major takes): ``D^H`` is
        then factored on ``chain.T`` and the adjoint returned.
    order : {"left-to-right", "balanced"}
        Split the chain after its first factor at every level (peeling
        ``F_1, F_2, ...`` off in turn), or in the middle. ``"balanced"`` also
        computes the left-to-right factorization and returns whichever of the
        two has the lower true error, so it is never worse than
        ``"left-to-right"`` (see Notes for the cost).
    permutation : None, "auto" or (row_perm, col_perm)
        None fits ``D`` itself. A pair fits ``D ~ B[row_perm][:, col_perm]``
        with ``B`` on the chain (either entry None for the identity), so the
        operator carries the permutations (:class:`~pydebut.DeButOperator`).
        ``"auto"`` tries every pair of :func:`candidate_permutations` (the
        identity and bit reversals) and keeps the one with the lowest error:
        a DFT of size ``2**L`` is then recovered exactly on the butterfly chain.

    Returns
    -------
    FitResult
        ``errors`` holds the single relative error ``||D - D_hat||_F / ||D||_F``.

    Raises
    ------
    ValueError
        If neither the chain nor its transpose qualifies (the message names the
        chain's first link that does not, and suggests :func:`fit_als`), if
        the target does not have the chain's shape, is not finite, is a masked
        array with masked entries or a path that names no ``.npy`` file of a
        matrix (an ``.npz`` archive, a folder, a damaged file), if ``order`` is
        unknown, or if ``permutation`` is not None, ``"auto"`` or a pair of
        permutations of ``range(m)`` and ``range(n)``; for a Dask array target
        (fitted left to right, unpermuted), if ``order`` is ``"balanced"`` or
        ``permutation`` is not None.
    TypeError
        If the target is not numeric, or a permutation is not an array of integers.
    OSError
        If the target is the path of a file that cannot be opened (none there).

    Notes
    -----
    Splitting the sub-chain ``F_i ... F_j`` with entries ``T`` of shape
    ``(k, R, S, t)`` after ``F_l`` writes ``R = R1 * B2`` (``B2 = t_l / t_j``)
    and ``S = C1 * S2`` (``C1 = k_{l+1} / k_i``). For every ``(b, c1, b2, alpha)``
    the ``R1 x S2`` sub-block ``M = T[b, (., b2), (c1, .), alpha]`` is a product of
    a column block of the left part and a row block of the right part, of rank
    at most ``w_l``: the truncated SVD ``U (U^H M)``, with ``U`` the leading
    ``w_l`` left singular vectors, solves the two-factor problem exactly, and
    the halves are factored recursively. All sub-blocks of a level are
    decomposed at once, through the eigendecompositions of their stacked
    Gram matrices of the smaller side: ``M M^H`` (``R1 x R1``) when
    ``R1 <= S2``, else ``M^H M`` (``S2 x S2``), whose top eigenvectors ``V``
    give ``U`` by a QR decomposition of ``M V``. On Hadamard 4096 the first
    level takes 0.05 s this way against 0.48 s for ``np.linalg.svd`` of the
    stacked blocks, and ``512 x 2`` sub-blocks need ``2 x 2`` Gram matrices
    (a 1024 x 1024 target on ``[(1024, 1024, 512, 512, 2), (1024, 1024, 2, 2,
    1)]`` took 27 s and 4.15 GiB with ``512 x 512`` ones, now 0.1 s). Each
    column of ``U`` is given the phase that makes its largest entry real and
    positive. The Gram squares the singular values, so a block's rank-``w``
    approximation is accurate to about ``eps * sigma_1 / sigma_w`` of the
    block: full accuracy for rank-one links (chainable chains), less for
    rank-weighted links whose blocks are ill-conditioned. The Gram matrices
    are formed and decomposed in double precision for single precision
    targets too, and ``U`` rounded to the target's dtype: in single precision
    they lose the singular values below about ``sqrt(eps) = 3e-4`` of the
    largest (a float32 rank-6 fit of a smooth 64 x 128 kernel, whose sixth
    singular value is ``6.9e-5`` of the first, came out at ``6.8e-5``, 16x the
    best ``4.2e-6``, which it now reaches; rank 16 of a 2048 x 2048 one,
    ``6.8e-5`` against ``4.2e-7`` now). Float32 fits of 1024 x 1024 and
    2048 x 2048 smooth kernels on butterfly, monarch-like, block and low-rank
    chains took 0.80-1.12x the CPU time they took with single precision Gram
    matrices (best of 28 fits each, one core).

    ``U`` has orthonormal columns, so in the left-to-right order the squared
    error is the sum over levels of ``||U_perp^H M||^2`` (the energy outside the
    kept subspace), and the part split at each level is exactly ``Q^H D``
    on its support, ``Q`` the product of the factors already peeled off: each
    split is the best one for the whole product given those factors.

    The balanced order splits the middle link first, then each half in the
    same way (depth first, left half first). Before each split, the pieces
    left of the one being split are given orthonormal columns and those right
    of it orthonormal rows by block QR decompositions whose triangular parts
    move into the neighbouring piece (the product is unchanged) [2]_, and the
    piece is then refitted to the target: its entries become the part of
    ``Q_L^H D Q_R^H`` on its support (``Q_L``, ``Q_R`` the products of the
    pieces on either side), which minimises the error of the whole product
    with the other pieces fixed, because the normal equations of these
    chains are diagonal. Without the refit the piece keeps its earlier
    approximation times the triangular factors, and the split approximates
    an approximation: pyfaust's ``GBfactorize`` gives the errors of that
    version (to 8 digits), up to 7% above left-to-right at 10% noise. With
    the refit, every split in either order is the best given the factors
    fitted before it, but the two orders fit different factors first, and
    no theorem orders the two greedy results: on noisy targets of chains of
    four to six factors the balanced tree ends up to 6% lower than
    left-to-right, and on about one target in five up to 1.3% higher
    (``benchmarks/bench_balanced.py --sweep``). So ``order="balanced"``
    computes both and keeps the lower true error (the balanced tree on a
    tie). With two or three factors both orders split the same links and
    the result is the left-to-right one.

    The cost of ``order="balanced"`` is that of the balanced tree (its first
    splits decompose the largest sub-blocks, and each refit applies the
    pieces around the split piece to the target), plus the left-to-right
    factorization and one product to measure each true error: 1.8-8x the
    time of ``"left-to-right"`` on the paper's chains and butterflies. A
    matrix that admits the chain is recovered to rounding error in either
    order.

    The target is first divided by the power of two that brings its largest
    entry into ``[0.5, 1)`` and the weights multiplied back (spread over the
    factors), so the fit of ``c * D`` is ``c`` times that of ``D`` for any
    power of two ``c`` that keeps the target's entries in the dtype's normal
    range. Another ``c`` rounds the target or its products differently (a
    unit phase such as ``1j`` keeps every entry exact, but a complex product
    then sums its real terms in the other order), and where a sub-block has
    equal singular values rounding picks the subspace kept: a row-permuted
    Hadamard matrix of order 64 on ``[(64, 64, 4, 4, 16), (64, 64, 4, 4, 4),
    (64, 64, 4, 4, 1)]`` fits to 0.8927, and 0.3 times it to 0.9140; the
    32-point DFT matrix ``np.fft.fft(np.eye(32))`` on the radix-2 butterfly to 0.8939,
    and ``1j`` times it to 0.9112. The
    reported error is measured on the fitted factors: their product is formed
    and subtracted from the target.

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
    >>> noisy = hadamard(64) + np.random.default_rng(0).standard_normal((64, 64))
    >>> balanced = fit_hierarchical(noisy, chain, order="balanced")
    >>> balanced.error <= fit_hierarchical(noisy, chain).error
    True
    >>> dft = np.fft.fft(np.eye(64))
    >>> fit_hierarchical(dft, chain).error > 0.5
    True
    >>> result = fit_hierarchical(dft, chain, permutation="auto")
    >>> result.error < 1e-14, result.operator.col_perm is not None
    (True, True)
    """
    backend = _dask_backend(target)
    if backend is not None:
        if order != "left-to-right" or permutation is not None:
            raise ValueError(
                "a Dask array target is fitted in the left-to-right order, without permutations"
            )
        return backend.fit_hierarchical(target, Chain(chain))
    chain = Chain(chain)
    _check_order(order)
    through_transpose = _fits_through_transpose(chain)
    if permutation is not None:
        return _fit_permuted(target, chain, order, permutation)
    if through_transpose:
        return _fit_adjoint(target, chain, order)
    ranks = hierarchy_ranks(chain)
    start = time.perf_counter()
    matrix = load_target(target, chain)
    matrix = as_working(matrix, working_dtype(matrix.dtype))
    scale = TargetScale.of(matrix)
    matrix = scale.normalise(matrix)
    entries = _support_entries(matrix, _product_shape(chain[0], chain[-1]))
    weights = _peel(entries, chain.factors, ranks)
    error = relative_residual(chain, weights, matrix)
    operator, error = scale.restore_operator(make_operator(chain, weights), matrix, error)
    if order == "balanced" and _balanced_links(0, len(chain) - 1) != list(range(len(ranks))):
        balanced = _bisect(matrix, entries, chain.factors, ranks)
        balanced_error = relative_residual(chain, balanced, matrix)
        # compared once scaled back: near the largest float either may have been shrunk
        balanced_operator, balanced_error = scale.restore_operator(
            make_operator(chain, balanced), matrix, balanced_error
        )
        if balanced_error <= error:
            operator, error = balanced_operator, balanced_error
    return FitResult(operator, [error], [time.perf_counter() - start], "hierarchical")


def _support_entries(matrix: np.ndarray, shape: tuple[int, int, int, int]) -> np.ndarray:
    """Entries of ``matrix`` on the support of a factor as ``T[b, rho, sigma, alpha]``.

    ``shape`` is ``(k, R, S, t)``: the support is that of a factor ``(k R t, k S t, R, S, t)``.
    """
    k, rows, cols, t = shape
    if k == 1 and t == 1:
        return matrix.reshape(1, rows, cols, 1)
    return np.einsum("brabsa->brsa", matrix.reshape(k, rows, t, k, cols, t)).copy()


@dataclass(frozen=True)
class _Split:
    """Sizes of the split of entries ``T`` of shape ``(k, R1*B2, C1*S2, t)`` into
    ``R1 x S2`` sub-blocks of rank ``w``, with views between the layouts."""

    k: int
    R1: int
    B2: int
    C1: int
    S2: int
    t: int
    w: int

    @classmethod
    def of(cls, shape: tuple[int, ...], left: FactorSpec, right: FactorSpec, rank: int) -> _Split:
        """Split of entries of ``shape`` between factors ``left`` and ``right``."""
        k, R, S, t = shape
        B2, C1 = left.t // t, right.n_blocks // k
        return cls(k, R // B2, B2, C1, S // C1, t, rank)

    @property
    def groups(self) -> int:
        """Number of ``R1 x S2`` sub-blocks."""
        return self.k * self.C1 * self.B2 * self.t

    @property
    def kept(self) -> int:
        """Singular vectors kept per sub-block: ``w``, or fewer when a side is shorter."""
        return min(self.w, self.R1, self.S2)

    def check_memory(self, dtype: np.dtype) -> None:
        """Refuse a split whose arrays exceed memory, before any of them is made.

        Per sub-block, in double precision (:func:`_leading_vectors`): the Gram
        matrix of its smaller side and its eigenvectors, for a narrow one
        (``S2 < R1``) ``M V`` and its orthonormal factor (``R1 x kept`` each),
        and for single precision ``dtype`` a copy of the block; in ``dtype``,
        its columns of the left and right parts.
        """
        dtype, double = np.dtype(dtype), double_dtype(dtype)
        side = min(self.R1, self.S2)
        narrow = 2 * self.R1 * self.kept if self.S2 < self.R1 else 0
        copy = 0 if dtype == double else self.R1 * self.S2
        parts = self.R1 * self.w + self.w * self.S2
        doubles = 2 * side * side + narrow + copy
        check_fits_in_memory(
            self.groups * (doubles * double.itemsize + parts * dtype.itemsize),
            f"the hierarchical split into {self.groups:,} sub-blocks of {self.R1} x {self.S2}, "
            f"with a {side} x {side} Gram matrix each,",
            "choose a chain whose factors have smaller blocks, or start fit_als from init='random'",
        )

    def blocks(self, entries: np.ndarray) -> np.ndarray:
        """``(k, C1, B2, t, R1, S2)`` view of entries ``(k, R, S, t)``: the sub-blocks."""
        k, R1, B2, C1, S2, t = self.k, self.R1, self.B2, self.C1, self.S2, self.t
        return entries.reshape(k, R1, B2, C1, S2, t).transpose(0, 3, 2, 5, 1, 4)

    def left_blocks(self, left: np.ndarray) -> np.ndarray:
        """``(k, C1, B2, t, R1, w)`` view of the left part ``(k, R1, C1*w, B2*t)``."""
        k, R1, B2, C1, t, w = self.k, self.R1, self.B2, self.C1, self.t, self.w
        return left.reshape(k, R1, C1, w, B2, t).transpose(0, 2, 4, 5, 1, 3)

    def right_blocks(self, right: np.ndarray) -> np.ndarray:
        """``(k, C1, B2, t, w, S2)`` view of the right part ``(k*C1, w*B2, S2, t)``."""
        k, B2, C1, S2, t, w = self.k, self.B2, self.C1, self.S2, self.t, self.w
        return right.reshape(k, C1, w, B2, S2, t).transpose(0, 1, 3, 5, 2, 4)


def _split(entries: np.ndarray, split: _Split) -> tuple[np.ndarray, np.ndarray]:
    """Best rank-``w`` split of every sub-block: left part ``U``, right part ``U^H M``.

    Returns the left part ``(k, R1, C1*w, B2*t)`` with orthonormal ``U`` and the
    right part ``(k*C1, w*B2, S2, t)``.
    """
    k, _, B2, C1, S2, t, w = astuple(split)
    split.check_memory(entries.dtype)
    blocks = split.blocks(entries)
    left, basis_h = _bases(_leading_vectors(blocks, split.kept), split)
    right = np.zeros((k * C1, w * B2, S2, t), dtype=basis_h.dtype)
    np.matmul(basis_h, blocks, out=split.right_blocks(right)[..., : split.kept, :])
    return left, right


def _leading_vectors(blocks: np.ndarray, kept: int) -> np.ndarray:
    """Orthonormal ``U`` spanning the ``kept`` leading left singular vectors of every block.

    For blocks ``M`` of shape ``(..., R1, S2)`` the Gram matrix of the smaller
    side is decomposed: ``M M^H`` (``R1 x R1``) when ``R1 <= S2``, whose top
    eigenvectors are ``U``; else ``M^H M`` (``S2 x S2``), whose top eigenvectors
    ``V`` give ``M V = U Sigma``, orthonormalised by a QR decomposition (which
    also completes ``U`` where ``M`` has rank below ``kept``). The cost and the
    memory follow ``min(R1, S2)``: blocks of ``512 x 2`` need ``2 x 2`` Gram matrices.

    All of it runs in double precision, on a copy of blocks in single precision,
    and ``U`` is rounded to the blocks' dtype: in single precision the Gram matrix
    loses the singular values below about ``3e-4`` of the largest.
    """
    rows, cols = blocks.shape[-2:]
    M = in_double(blocks)
    M_h = np.swapaxes(M, -1, -2).conj()
    if rows <= cols:
        basis = _top_eigenvectors(M @ M_h, kept)
    else:
        basis = np.linalg.qr(M @ _top_eigenvectors(M_h @ M, kept))[0]
    return basis.astype(blocks.dtype, copy=False)


def _top_eigenvectors(gram: np.ndarray, kept: int) -> np.ndarray:
    """Eigenvectors of the ``kept`` largest eigenvalues of Hermitian ``gram``, largest first.

    ``gram`` has shape ``(..., side, side)``, in double precision for targets in
    single precision too (:func:`_leading_vectors` and :mod:`pydebut.dask` form it
    so): a Gram matrix squares the condition number, so in single precision the
    singular values below about ``sqrt(eps) = 3e-4`` of the largest are lost, and
    the vectors of the subset solver below are several times less accurate than
    the full solver's (float32 fits of smooth kernels came out up to 6x further
    from the best rank-``k`` error). A few large matrices of which few vectors are
    kept (``side > 4 kept``, at most 16 matrices) have only those computed, by
    bisection and inverse iteration (LAPACK's default subset solver, MRRR, can
    return too few vectors where the top eigenvalues coincide, as for a DFT,
    whose Gram matrix is a multiple of the identity). The rest, or a subset that
    still came back short, take the full decomposition.
    """
    side = gram.shape[-1]
    stacked = gram.reshape(-1, side, side)
    if 0 < kept and side > 4 * kept and len(stacked) <= 16:
        top = [
            scipy.linalg.eigh(g, subset_by_index=[side - kept, side - 1], driver="evx")[1]
            for g in stacked
        ]
        if all(vectors.shape == (side, kept) for vectors in top):
            return np.stack(top).reshape(*gram.shape[:-1], kept)[..., ::-1]
    return np.linalg.eigh(gram)[1][..., side - kept :][..., ::-1]


def _bases(basis: np.ndarray, split: _Split) -> tuple[np.ndarray, np.ndarray]:
    """Left part and kept basis ``U^H`` from the sub-blocks' kept bases ``U``.

    ``basis`` holds ``U`` (orthonormal columns, leading singular vectors first),
    shape ``(k, C1, B2, t, R1, kept)``; the left part's columns beyond ``kept``
    (a rank ``w`` above a side of the sub-blocks) stay zero. Each column of ``U``
    is given the phase that makes its largest entry (the first of equal ones)
    real and positive, which the right part ``U^H M`` absorbs, so ``U`` does not
    depend on how it was computed (in memory or :mod:`pydebut.dask`).
    """
    k, R1, B2, C1, _, t, w = astuple(split)
    peaks = np.take_along_axis(basis, np.abs(basis).argmax(axis=-2)[..., None, :], axis=-2)
    basis = basis * (np.conj(peaks) / np.abs(peaks))  # unit columns: no peak is 0
    left = np.zeros((k, R1, C1 * w, B2 * t), dtype=basis.dtype)
    split.left_blocks(left)[..., : basis.shape[-1]] = basis
    return left, np.swapaxes(basis, -1, -2).conj()


def _peel(
    entries: np.ndarray, specs: tuple[FactorSpec, ...], ranks: tuple[int, ...]
) -> list[np.ndarray]:
    """Left-to-right order: split ``F_1`` off, then ``F_2`` off the rest, and so on."""
    weights = []
    for index, rank in enumerate(ranks):
        split = _Split.of(entries.shape, specs[index], specs[index + 1], rank)
        left, entries = _split(entries, split)
        weights.append(left)
    weights.append(entries)
    return weights


@dataclass
class _Piece:
    """Factors ``first ... last`` (0-based, inclusive) of a partial factorization, as entries."""

    first: int
    last: int
    entries: np.ndarray


def _balanced_links(first: int, last: int) -> list[int]:
    """Links of factors ``first ... last`` in the balanced order: the middle one, then each half.

    Link ``l`` lies between factors ``l`` and ``l + 1`` (0-based).
    """
    if first == last:
        return []
    link = first + (last - first + 1) // 2 - 1
    return [link, *_balanced_links(first, link), *_balanced_links(link + 1, last)]


def _link_split(
    left: _Piece, right: _Piece, specs: tuple[FactorSpec, ...], ranks: tuple[int, ...]
) -> _Split:
    """The split between two adjacent pieces, as if their product had been split."""
    shape = _product_shape(specs[left.first], specs[right.last])
    return _Split.of(shape, specs[left.last], specs[right.first], ranks[left.last])


def _product_shape(first: FactorSpec, last: FactorSpec) -> tuple[int, int, int, int]:
    """Shape ``(k, R, S, t)`` of the entries of the product of factors ``first ... last``."""
    k, t = first.n_blocks, last.t
    return k, first.p // (k * t), last.q // (k * t), t


def _move_gauge(
    pieces: list[_Piece],
    index: int,
    step: int,
    specs: tuple[FactorSpec, ...],
    ranks: tuple[int, ...],
) -> None:
    """Make ``pieces[index]`` orthonormal and move what it held into its neighbour.

    ``step = +1``: the QR ``L = Q R`` of every ``R1 x w`` block of the left piece
    keeps ``Q`` and sends ``R`` into the right piece's ``w x S2`` block, so the
    left piece has orthonormal columns. ``step = -1``: the QR of every right
    block's conjugate transpose gives it orthonormal rows, and the left piece
    takes the triangular part. The product of the two pieces is unchanged.
    """
    left, right = (
        (pieces[index], pieces[index + 1]) if step > 0 else (pieces[index - 1], pieces[index])
    )
    split = _link_split(left, right, specs, ranks)
    left_blocks, right_blocks = split.left_blocks(left.entries), split.right_blocks(right.entries)
    dtype = np.result_type(left.entries, right.entries)
    new_left, new_right = np.zeros(left.entries.shape, dtype), np.zeros(right.entries.shape, dtype)
    if step > 0:
        basis, triangle = np.linalg.qr(left_blocks)
        kept = basis.shape[-1]
        split.left_blocks(new_left)[..., :kept] = basis
        np.matmul(triangle, right_blocks, out=split.right_blocks(new_right)[..., :kept, :])
    else:
        basis, triangle = np.linalg.qr(np.swapaxes(right_blocks, -1, -2).conj())
        kept = basis.shape[-1]
        split.right_blocks(new_right)[..., :kept, :] = np.swapaxes(basis, -1, -2).conj()
        triangle_h = np.swapaxes(triangle, -1, -2).conj()
        np.matmul(left_blocks, triangle_h, out=split.left_blocks(new_left)[..., :kept])
    left.entries, right.entries = new_left, new_right


def _bisect(
    matrix: np.ndarray,
    entries: np.ndarray,
    specs: tuple[FactorSpec, ...],
    ranks: tuple[int, ...],
) -> list[np.ndarray]:
    """Balanced order: split in the middle, then each half, each piece refitted before its split.

    Before each split, the pieces left of the one to split are given orthonormal
    columns and those right of it orthonormal rows (:func:`_move_gauge`), and
    the piece is refitted to ``matrix`` given them (:class:`_Refit`), so the
    split's truncated SVDs minimise the error of the whole product with the
    other pieces fixed (the left-to-right order has both for free).
    """
    pieces, centre, refit = [_Piece(0, len(specs) - 1, entries)], 0, _Refit(matrix, specs)
    for link in _balanced_links(0, len(specs) - 1):
        target = next(i for i, piece in enumerate(pieces) if piece.first <= link < piece.last)
        moved = centre != target
        while centre != target:
            step = 1 if target > centre else -1
            _move_gauge(pieces, centre, step, specs, ranks)
            centre += step
        piece = pieces[target]
        if moved:  # else it is the right part U^H X of the last split: already the refit
            piece.entries = refit(pieces, target)
        split = _Split.of(piece.entries.shape, specs[link], specs[link + 1], ranks[link])
        left, right = _split(piece.entries, split)
        pieces[target : target + 1] = [
            _Piece(piece.first, link, left),
            _Piece(link + 1, piece.last, right),
        ]
        centre = target + 1
    return [piece.entries for piece in pieces]


class _Refit:
    """Entries of one piece that fit the target best, the other pieces fixed.

    With ``Q_L`` the product of the pieces left of it (orthonormal columns) and
    ``Q_R`` that of the pieces right of it (orthonormal rows), they are the part
    of ``Q_L^H D Q_R^H`` on the piece's support: the normal equations of a
    chainable or rank-weighted sub-chain are diagonal, here with unit diagonal,
    so ``||D - Q_L X Q_R||^2 = ||D||^2 - ||X_opt||^2 + ||X - X_opt||^2`` for any
    entries ``X`` of the piece. ``Q_L^H D`` is kept between calls: in the balanced
    order the pieces left of the one being split are final and only grow in
    number, so each is applied to the target once (it starts again from ``D``
    if one of them has changed).
    """

    def __init__(self, matrix: np.ndarray, specs: tuple[FactorSpec, ...]) -> None:
        self.matrix, self.specs = matrix, specs
        self.applied: list[np.ndarray] = []
        self.projected = matrix

    def __call__(self, pieces: list[_Piece], index: int) -> np.ndarray:
        left = pieces[:index]
        if len(self.applied) > len(left) or any(
            entries is not piece.entries for entries, piece in zip(self.applied, left, strict=False)
        ):
            self.applied, self.projected = [], self.matrix
        for piece in left[len(self.applied) :]:
            spec = _piece_spec(piece, self.specs)
            self.projected = apply_factor_adjoint(spec, piece.entries, self.projected)
            self.applied.append(piece.entries)
        projected = self.projected
        for piece in reversed(pieces[index + 1 :]):
            projected = _times_adjoint(projected, piece.entries)
        return _support_entries(projected, pieces[index].entries.shape)


def _times_adjoint(matrix: np.ndarray, entries: np.ndarray) -> np.ndarray:
    """``M P^H`` for the factor ``P`` with entries ``(k, R, S, t)``, without transposing ``M``.

    Entry ``(i, (b, rho, alpha))`` is
    ``sum_sigma M[i, (b, sigma, alpha)] conj(W[b, rho, sigma, alpha])``.
    """
    k, R, S, t = entries.shape
    rows = matrix.shape[0]
    blocks = matrix.reshape(rows, k, S, t)
    product = np.einsum("ibsa,brsa->ibra", blocks, entries.conj(), optimize=True)
    return product.reshape(rows, k * R * t)


def _piece_spec(piece: _Piece, specs: tuple[FactorSpec, ...]) -> FactorSpec:
    """The factor whose support the product of a piece's factors has."""
    _, R, S, t = piece.entries.shape
    return FactorSpec(specs[piece.first].p, specs[piece.last].q, R, S, t)


def _fit_adjoint(target: Any, chain: Chain, order: Order) -> FitResult:
    """:func:`fit_hierarchical` of ``D^H`` on ``chain.T``, whose adjoint fits ``D`` on ``chain``
    with the same error."""
    start = time.perf_counter()
    matrix = load_target(target, chain)
    result = fit_hierarchical(np.ascontiguousarray(matrix.conj().T), chain.T, order=order)
    return FitResult(result.operator.H, result.errors, [time.perf_counter() - start], result.method)


def _fit_permuted(target: Any, chain: Chain, order: Order, permutation: Any) -> FitResult:
    """:func:`fit_hierarchical` of ``D[argsort(row_perm)][:, argsort(col_perm)]``, the best pair."""
    start = time.perf_counter()
    m, n = chain.shape
    if isinstance(permutation, str) and permutation == "auto":
        candidates = list(candidate_permutations(m, n).values())
    elif isinstance(permutation, tuple | list) and len(permutation) == 2:
        candidates = [
            (check_permutation(permutation[0], m, "row_perm"),
             check_permutation(permutation[1], n, "col_perm"))
        ]  # fmt: skip
    else:
        raise ValueError(
            "permutation must be None, 'auto' or a pair (row_perm, col_perm), got "
            f"{shown(permutation)}"
        )
    matrix = load_target(target, chain)
    best = None
    for row_perm, col_perm in candidates:
        result = fit_hierarchical(unpermute(matrix, row_perm, col_perm), chain, order=order)
        if best is None or result.error < best[0].error:
            best = (result, row_perm, col_perm)
    result, row_perm, col_perm = best
    operator = result.operator.with_permutations(row_perm, col_perm)
    return FitResult(operator, result.errors, [time.perf_counter() - start], result.method)
