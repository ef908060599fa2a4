"""Alternating least squares with exact, structure-exploiting factor updates.

See the fitting pages of the documentation. With every factor but ``F_l``
fixed, ``A = F_1 ... F_{l-1}`` and ``B = F_{l+1} ... F_L``, the best ``F_l``
on its support ``S`` solves

    P_S(G F_l H) = P_S(E),   G = A^H A,  H = B B^H,  E = A^H D B^H.

The unknowns couple only through structurally non-zero entries of ``G`` and
``H``; for chainable chains nothing couples and every weight is
``E[i, j] / (G[i, i] H[j, j])``.

The problem is oriented so that ``m <= n`` (otherwise the transposed problem
is solved). For every factor the sweeper keeps what its update needs:

- ``Ah_l = A_l^H`` (``p_l x m``), built left to right as ``Ah_{l+1} = F_l^H Ah_l``;
- ``Nh_l = B_l D^H`` (``q_l x m``), built right to left as ``Nh_{l-1} = F_l Nh_l``;
- ``H_l`` (``q_l x q_l``) on its structural support, built right to left as
  ``H_{l-1} = F_l H_l F_l^H`` from ``H_L = I``: sparse (block diagonal with
  blocks of ``t_l`` for chainable chains), dense once it fills in.

``E = Ah Nh^H`` on the support costs ``nnz_l * m``, ``diag(G)`` is the row
norms of ``Ah``, and ``F_L^H ... F_1^H`` applied to ``I_m`` gives the exact
error after a pass: no ``n``-sized dense block is ever formed besides ``D``.
"""

from __future__ import annotations

import functools
import numbers
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse
import scipy.sparse.csgraph

from .._arguments import shown
from .._memory import check_fits_in_memory
from .._permutation import unpermute
from ..operator import DeButOperator, SeedLike, random_generator
from ..spec import Chain, FactorSpec
from ._common import (
    FitResult,
    TargetScale,
    _times_power_of_two,
    adjoint_product,
    apply_factor,
    apply_factor_adjoint,
    as_working,
    load_target,
    make_operator,
    progress_bars,
    relative_error,
    working_dtype,
)
from ._hierarchical import _fits_through_transpose, fit_hierarchical

__all__ = ["fit_als"]

INIT_METHODS = ("auto", "random", "hierarchical")

#: Most ALS sweeps one fit runs (:func:`fit_als`, :func:`~pydebut.approximate`): a sweep of
#: the smallest chains takes about half a millisecond, so their fits end within about a
#: minute even where the error never settles, and a history holds at most
#: ``2 MAX_SWEEPS + 1`` errors.
MAX_SWEEPS = 100_000

# H_l is kept sparse while at most this fraction of its entries is stored.
SPARSE_GRAM_DENSITY = 0.25
# Candidate pairs of coupled weights are filtered this many at a time.
PAIR_CHUNK = 1 << 18
# Rows for the Gram blocks of coupled components are gathered about this many entries at a time.
GATHER_CHUNK = 1 << 22
#: Largest number of coupled pairs (and of entries of the dense systems of the
#: coupled components) of one factor update that :func:`fit_als` accepts.
MAX_SYSTEM_ENTRIES = 1 << 26

Gram = np.ndarray | scipy.sparse.csr_array


class CouplingLimitError(ValueError):
    """A factor update of the chain couples more weights than ``MAX_SYSTEM_ENTRIES`` allows."""


@dataclass(frozen=True)
class _Coupling:
    """Coupled unknowns of one factor update.

    ``groups[g]`` is an int array ``(n_components, size)`` of flat weight
    indices (C order of ``W[b, rho, sigma, alpha]``), one row per connected
    component of the coupling graph with ``size >= 2`` unknowns.
    ``rectangles[g]`` is an int array ``(n_components, a, b)`` for components
    that fill a whole ``a x b`` block of rows times columns of the factor:
    their system is the Kronecker product of two small Gram blocks. Every
    other weight is a component of its own.
    """

    groups: tuple[np.ndarray, ...] = ()
    rectangles: tuple[np.ndarray, ...] = ()


@dataclass
class _RightData:
    """What the update of ``F_l`` needs from the right: ``Nh_l``, ``diag(H_l)``, coupled ``H_l``."""

    nh: np.ndarray
    h_diag: np.ndarray
    h_blocks: tuple[np.ndarray, ...] = ()
    # per rectangle, its distinct right blocks and which one each component has
    h_rectangles: tuple[tuple[np.ndarray, np.ndarray], ...] = ()


class _SparseFactor:
    """CSR pattern of a factor, refilled with new weights in O(nnz)."""

    def __init__(self, spec: FactorSpec) -> None:
        rows, cols = spec.support_indices()
        self.order = np.lexsort((cols, rows))
        self.indices = cols[self.order]
        self.indptr = np.searchsorted(rows[self.order], np.arange(spec.p + 1))
        self.shape = spec.shape

    def matrix(self, weights: np.ndarray) -> scipy.sparse.csr_array:
        data = weights.reshape(-1)[self.order]
        return scipy.sparse.csr_array((data, self.indices, self.indptr), shape=self.shape)


class _Sweeper:
    """ALS passes over a chain (cheapest with ``m <= n``); updates the list ``weights``.

    The passes compute in the dtype of ``matrix``; each updated factor is rounded to
    ``precision`` (the fitted operator's dtype, when it is narrower) before the next.
    """

    def __init__(
        self,
        chain: Chain,
        weights: list[np.ndarray],
        matrix: np.ndarray,
        couplings: Sequence[_Coupling] | None,
        precision: np.dtype | None = None,
    ) -> None:
        self.chain = chain
        self.weights = weights
        self.precision = matrix.dtype if precision is None else np.dtype(precision)
        self.matrix_h = np.ascontiguousarray(matrix.conj().T)
        self.norm = float(np.linalg.norm(self.matrix_h))
        self.couplings = couplings or [_Coupling() for _ in chain]
        self.supports = [spec.support_indices() for spec in chain]
        # the distinct row sets of each coupled component's Gram blocks (_distinct_rows), found
        # once: a factor update only computes their blocks
        self.row_sets = [
            (
                [_distinct_rows(rows[idx]) for idx in coupling.groups],
                [_distinct_rows(rows[idx[:, :, 0]]) for idx in coupling.rectangles],
            )
            for coupling, (rows, _) in zip(self.couplings, self.supports, strict=True)
        ]
        # and of the rectangles' right Gram blocks (a rectangle's blocks are Kronecker
        # products: each side is decomposed once per distinct block)
        self.column_sets = [
            [_distinct_rows(cols[idx[:, 0, :]]) for idx in coupling.rectangles]
            for coupling, (_, cols) in zip(self.couplings, self.supports, strict=True)
        ]
        self.sparse = [_SparseFactor(spec) for spec in chain]
        self.left: list[np.ndarray] = [np.empty(0)] * len(chain)
        self.right: list[_RightData | None] = [None] * len(chain)

    # --- passes ----------------------------------------------------------------
    def forward(self, update: bool = True, skip: int | None = None, exponent: int = 0) -> float:
        """Left-to-right pass; updates every factor but ``skip`` when ``update``.

        Returns the relative error of the product after the pass times ``2**exponent``.
        """
        m = self.chain.shape[0]
        ah = np.eye(m, dtype=self.matrix_h.dtype)
        for index, spec in enumerate(self.chain):
            self.left[index] = ah
            if update and index != skip:
                self.weights[index] = self._solve(index, ah, self.right[index])
            ah = apply_factor_adjoint(spec, self.weights[index], ah)
        return relative_error(ah, self.matrix_h, self.norm, exponent)

    def backward(
        self,
        update: bool = True,
        skip: int | None = None,
        on_factor: Callable[[int, Gram], None] | None = None,
        exponent: int = 0,
    ) -> float:
        """Right-to-left pass; ``on_factor(l, H_l)`` is called before each update.

        Returns the relative error of the product after the pass times ``2**exponent``.
        """
        n = self.chain.shape[1]
        nh = self.matrix_h
        gram: Gram = scipy.sparse.eye_array(n, dtype=self.matrix_h.dtype, format="csr")
        for index in reversed(range(len(self.chain))):
            cols, coupling = self.supports[index][1], self.couplings[index]
            self.right[index] = _RightData(
                nh,
                gram.diagonal().real,
                tuple(_gram_entries(gram, cols[idx]) for idx in coupling.groups),
                tuple(
                    (_gram_entries(gram, sets), which) for sets, which in self.column_sets[index]
                ),
            )
            if on_factor is not None:
                on_factor(index, gram)
            if update and index != skip:
                self.weights[index] = self._solve(index, self.left[index], self.right[index])
            nh = apply_factor(self.chain[index], self.weights[index], nh)
            if index:
                gram = _congruence(self.chain[index], self.weights[index], self.sparse[index], gram)
        return self.error(exponent)

    def error(self, exponent: int = 0) -> float:
        """Relative error of the current product times ``2**exponent``, from
        ``F_L^H ... F_1^H I_m``."""
        product_h = adjoint_product(self.chain, self.weights, self.matrix_h.dtype)
        return relative_error(product_h, self.matrix_h, self.norm, exponent)

    # --- one factor --------------------------------------------------------------
    def _solve(self, index: int, ah: np.ndarray, right: _RightData) -> np.ndarray:
        """Exact least-squares weights of factor ``index`` (minimum norm if singular)."""
        rhs, diagonal = _normal_terms(self.chain[index], ah, right.nh, right.h_diag)
        tiny = np.finfo(diagonal.dtype).tiny
        weights = np.zeros_like(rhs)
        np.divide(rhs, diagonal, out=weights, where=diagonal > tiny)
        flat_rhs, flat = rhs.reshape(-1), weights.reshape(-1)
        coupling, (group_rows, rectangle_rows) = self.couplings[index], self.row_sets[index]
        for idx, h_block, sets in zip(coupling.groups, right.h_blocks, group_rows, strict=True):
            system = _grams_of_sets(ah, *sets) * np.swapaxes(h_block, -1, -2)
            flat[idx] = _min_norm_solve(system, flat_rhs[idx])
        for idx, (h_blocks, h_which), (row_sets, g_which) in zip(
            coupling.rectangles, right.h_rectangles, rectangle_rows, strict=True
        ):
            g_blocks = _set_grams(ah, row_sets)
            flat[idx] = _kronecker_solve(g_blocks, g_which, h_blocks, h_which, flat_rhs[idx])
        if self.precision != weights.dtype:
            return weights.astype(self.precision).astype(weights.dtype)
        return weights


def _congruence(spec: FactorSpec, weights: np.ndarray, factor: _SparseFactor, gram: Gram) -> Gram:
    """``F H F^H`` for the factor ``F`` of ``spec`` (CSR pattern ``factor``), sparse while the
    result stays sparse enough."""
    if isinstance(gram, np.ndarray):
        half = apply_factor(spec, weights, gram)
        return apply_factor(spec, weights, np.ascontiguousarray(half.conj().T)).conj().T
    matrix = factor.matrix(weights)
    result = (matrix @ gram @ matrix.conj().T).tocsr()
    if result.nnz > SPARSE_GRAM_DENSITY * spec.p**2:
        return result.toarray()
    return result


def _normal_terms(
    spec: FactorSpec, ah: np.ndarray, nh: np.ndarray, h_diag: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``E = ah nh^H`` on the support of ``spec`` and ``G[i, i] H[j, j]``, as ``(k, r, s, t)``.

    ``ah`` is ``A^H`` (``p x m``), ``nh`` is ``B D^H`` (``q x m``), ``h_diag`` the diagonal of
    ``H``; ``G[i, i]`` is the squared norm of row ``i`` of ``ah``.
    """
    k, r, s, t = spec.weight_shape
    m = ah.shape[1]
    ah_blocks = ah.reshape(k, r, t, m).transpose(0, 2, 1, 3)
    nh_blocks = nh.reshape(k, s, t, m).transpose(0, 2, 3, 1).conj()
    rhs = np.ascontiguousarray(np.matmul(ah_blocks, nh_blocks).transpose(0, 2, 3, 1))
    g_diag = _squared_norms(ah).reshape(k, r, 1, t)
    diagonal = g_diag * h_diag.reshape(k, 1, s, t)
    return rhs, diagonal


def _support(matrix: Gram) -> Gram:
    """``matrix`` (entries >= 0, dense or sparse) with every non-zero entry set to 1, in place."""
    values = matrix if isinstance(matrix, np.ndarray) else matrix.data
    np.minimum(values, 1, out=values)
    return matrix


def _distinct_columns(matrix: np.ndarray) -> np.ndarray:
    """The distinct columns of a 0/1 ``matrix``, in their order of first appearance."""
    keys = np.ascontiguousarray(np.packbits(matrix.T != 0, axis=1))  # one row per column
    keys = keys.view(np.dtype((np.void, keys.shape[1]))).reshape(-1)
    _, first = np.unique(keys, return_index=True)
    return matrix[:, np.sort(first)]


def _squared_norms(rows: np.ndarray) -> np.ndarray:
    """Squared Euclidean norm of every row of a 2-D array, as a real array."""
    if np.iscomplexobj(rows):
        return np.einsum("ij,ij->i", rows.real, rows.real) + np.einsum(
            "ij,ij->i", rows.imag, rows.imag
        )
    return np.einsum("ij,ij->i", rows, rows)


def _row_grams(vectors: np.ndarray, index: np.ndarray) -> np.ndarray:
    """``out[c, a, b] = <vectors[index[c, a]], vectors[index[c, b]]>`` (conjugating the second)."""
    return _grams_of_sets(vectors, *_distinct_rows(index))


def _distinct_rows(index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct rows ``sets`` of ``index`` and, for each row of it, which one it is."""
    sets, inverse = np.unique(index, axis=0, return_inverse=True)
    return sets, inverse.reshape(-1)


def _grams_of_sets(vectors: np.ndarray, sets: np.ndarray, inverse: np.ndarray) -> np.ndarray:
    """:func:`_row_grams` of the index whose distinct rows are ``sets`` (:func:`_distinct_rows`).

    Components with the same rows share their block, which is computed once, from the rows of
    about ``GATHER_CHUNK`` entries at a time: memory grows with the blocks, not with every
    component's rows (8 GiB of them for a factor of 4096 components of 64 rows each, which
    share 64 blocks).
    """
    return _set_grams(vectors, sets)[inverse]


def _set_grams(vectors: np.ndarray, sets: np.ndarray) -> np.ndarray:
    """``out[s, a, b] = <vectors[sets[s, a]], vectors[sets[s, b]]>``, one block per set."""
    size, length = sets.shape[1], vectors.shape[1]
    blocks = np.empty((len(sets), size, size), dtype=vectors.dtype)
    step = max(1, GATHER_CHUNK // (size * length))
    for start in range(0, len(sets), step):
        picked = vectors[sets[start : start + step]]
        blocks[start : start + step] = np.matmul(picked, np.conj(np.swapaxes(picked, -1, -2)))
    return blocks


def _gram_entries(gram: Gram, index: np.ndarray) -> np.ndarray:
    """``out[c, a, b] = gram[index[c, a], index[c, b]]``."""
    size = index.shape[-1]
    rows = np.repeat(index, size, axis=-1).reshape(-1)
    cols = np.tile(index, size).reshape(-1)
    return _lookup(gram, rows, cols).reshape(*index.shape, size)


def _lookup(gram: Gram, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """The entries ``gram[rows[i], cols[i]]`` as a 1-D array, dense or sparse ``gram``."""
    if not isinstance(gram, np.ndarray):
        gram = gram.tocsr()
        if rows.size == 0:
            return np.zeros(0, dtype=gram.dtype)
    values = gram[rows, cols]
    return values.toarray().reshape(-1) if scipy.sparse.issparse(values) else values


def _min_norm_solve(systems: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Minimum-norm solutions of stacked Hermitian positive semi-definite systems.

    In the eigenbasis, ``S = V diag(lam) V^H``, the solution is
    ``V [(V^H rhs) / lam]`` over the resolved directions (eigenvalues kept as
    in :func:`_pinv_eigen`) and 0 along the others.
    """
    inverse, vectors, exponents = _pinv_eigen(systems)
    coefficients = np.einsum("cji,cj->ci", vectors.conj(), rhs) * inverse
    solutions = np.einsum("cij,cj->ci", vectors, coefficients)
    return _times_power_of_two(solutions, -exponents)


def _kronecker_solve(
    g_blocks: np.ndarray,
    g_which: np.ndarray,
    h_blocks: np.ndarray,
    h_which: np.ndarray,
    rhs: np.ndarray,
) -> np.ndarray:
    """Minimum-norm solutions ``X`` of stacked ``g X h = rhs`` (``g``, ``h`` Hermitian PSD),
    where ``g = g_blocks[g_which]`` and ``h = h_blocks[h_which]``: components that share a
    block share its decomposition.

    The system matrix is the Kronecker product of ``g`` and ``h^T``, whose
    pseudo-inverse is that of ``g`` times that of ``h^T``: with
    ``g = U diag(lam) U^H`` and ``h = V diag(mu) V^H``,
    ``X = g^+ rhs h^+ = U [(U^H rhs V) / (lam mu^T)] V^H``, each factor's small
    eigenvalues dropped as in :func:`_pinv_eigen`.
    """
    lam_inverse, u, g_exponents = (part[g_which] for part in _pinv_eigen(g_blocks))
    mu_inverse, v, h_exponents = (part[h_which] for part in _pinv_eigen(h_blocks))
    coefficients = np.conj(np.swapaxes(u, -1, -2)) @ rhs @ v
    coefficients *= lam_inverse[:, :, None] * mu_inverse[:, None, :]
    solutions = u @ coefficients @ np.conj(np.swapaxes(v, -1, -2))
    return _times_power_of_two(solutions, -(g_exponents + h_exponents)[:, :, None])


#: Eigenvalues of a system above ``GRAM_NOISE * size * eps * max eigenvalue`` are resolved.
#: The systems are Gram matrices, computed: forming them and ``eigh`` each leave errors of
#: about ``size * eps`` times the largest eigenvalue, so an eigenvalue that is zero can come
#: out above ``numpy.linalg.pinv``'s cut-off (at 1.07x it in one case), and the update then
#: is not the minimum-norm one: one of 20,000 updates drawn as in ``tests/test_fit_als.py``
#: was not with the cut-off alone, none at 16x.
GRAM_NOISE = 16


def _pinv_eigen(systems: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Eigenvectors of stacked Hermitian PSD matrices and their pseudo-inverse eigenvalues,
    the latter as ``inverse * 2**-e`` with ``e`` (shape ``(c, 1)``) the exponent that puts
    the system's largest eigenvalue in ``[0.5, 1)``.

    Eigenvalues below :data:`GRAM_NOISE` ``* size * eps * max eigenvalue`` count as zero.
    The Gram blocks of tiny weights (a target whose entries span hundreds of orders of
    magnitude) have eigenvalues whose reciprocals, or products of two in
    :func:`_kronecker_solve`, overflow; scaled by ``2**-e`` they cannot.
    """
    values, vectors = np.linalg.eigh(systems)
    exponents = np.frexp(np.maximum(values[..., -1:], 0))[1]
    values = np.ldexp(values, -exponents)
    largest = np.maximum(values[..., -1:], 0)
    cutoff = GRAM_NOISE * systems.shape[-1] * np.finfo(values.dtype).eps * largest
    inverse = np.where(values > cutoff, 1 / np.where(values > cutoff, values, 1), 0)
    return inverse, vectors, exponents


@functools.lru_cache(maxsize=16)
def _couplings(chain: Chain, transposed: bool = False) -> tuple[_Coupling, ...]:
    """Coupled unknowns of every factor update of ``chain`` (with ``m <= n``), exactly.

    ``transposed``: ``chain`` is the transpose of the user's (taller than wide), so an
    error names a factor by its place in the user's chain, counted from the other end.

    Weights ``(i, j)`` and ``(i', j')`` of the support ``S`` couple when ``G[i, i']`` and
    ``H[j', j]`` are structurally non-zero. With all weights set to one, ``A^H`` and ``H``
    are products of non-negative matrices and only their supports matter: these are
    propagated along the chain, every non-zero entry set to 1 after each factor (path
    counts grow like ``r**L``; they lost integer precision, then overflowed, on long
    chains). With ``ah`` the distinct columns of the support of ``A^H`` (long chains of
    small factors have few), ``G' = ah ah^T`` has the support of ``G`` and entries at most
    ``m``, and the right-hand side ``P_S(G' 1_S H) = ah nh^T``, with ``nh = H 1_S^T ah^T``,
    is an exact integer (at most ``m * nnz``) that exceeds the diagonal term
    ``G'[i, i] H[j, j]`` exactly when the weight couples with another. Only those weights
    enter the coupling graph, whose components are returned.
    """
    ones = [np.ones(spec.weight_shape) for spec in chain]
    left = []  # the distinct columns of the support of A_l^H, for every factor l
    ah = np.eye(chain.shape[0])
    for spec, weights in zip(chain, ones, strict=True):
        left.append(_distinct_columns(ah))
        ah = _support(apply_factor_adjoint(spec, weights, ah))
    supports = [spec.support_indices() for spec in chain]

    def label(index: int) -> str:
        return f"factor {len(chain) - index if transposed else index + 1} of the chain"

    def find_components(index: int, gram: Gram) -> None:
        spec, outputs = chain[index], left[index]
        nh = gram @ apply_factor_adjoint(spec, ones[index], outputs)
        rhs, diagonal = _normal_terms(spec, outputs, nh, gram.diagonal())
        coupled = np.flatnonzero((rhs - diagonal).reshape(-1) > 0.5)
        if coupled.size:
            rows, cols = supports[index]
            try:
                components = _components(spec, outputs, gram)
            except CouplingLimitError as err:
                raise CouplingLimitError(f"{label(index)}: {err}") from None
            couplings[index] = coupling = _rectangles_apart(components, rows, cols)
            entries = sum(g.shape[0] * g.shape[1] ** 2 for g in coupling.groups)
            # a rectangle of a x b weights solves with G_J (a x a) and H_J (b x b)
            entries += sum(
                len(x) * (x.shape[1] ** 2 + x.shape[2] ** 2) for x in coupling.rectangles
            )
            if entries > MAX_SYSTEM_ENTRIES:
                sizes = [g.shape[1] for g in coupling.groups]
                largest = max(sizes + [x.shape[1] * x.shape[2] for x in coupling.rectangles])
                raise _beyond_limit(
                    f"{label(index)}: its unknowns couple in components of "
                    f"up to {largest} weights, whose dense systems would hold {entries:,} "
                    "entries"
                )

    couplings = [_Coupling() for _ in chain]
    gram: Gram = scipy.sparse.eye_array(chain.shape[1], format="csr")  # the support of H_l
    for index in reversed(range(len(chain))):
        find_components(index, gram)
        if index:
            factor = _SparseFactor(chain[index])
            gram = _support(_congruence(chain[index], ones[index], factor, gram))
    return tuple(couplings)


def _rectangles_apart(
    components: tuple[np.ndarray, ...], rows: np.ndarray, cols: np.ndarray
) -> _Coupling:
    """Sort components into full ``a x b`` rectangles of rows times columns and the rest.

    A component with ``a`` distinct rows and ``b`` distinct columns is a full
    rectangle exactly when it has ``a * b`` weights; its members are then
    ordered by row, then column, into an ``(a, b)`` grid.
    """
    groups, rectangles = [], []
    for members in components:
        order = np.lexsort((cols[members], rows[members]), axis=-1)
        members = np.take_along_axis(members, order, axis=-1)
        n_rows = 1 + np.count_nonzero(np.diff(rows[members], axis=-1), axis=-1)
        distinct_cols = np.diff(np.sort(cols[members], axis=-1), axis=-1)
        n_cols = 1 + np.count_nonzero(distinct_cols, axis=-1)
        full = n_rows * n_cols == members.shape[1]
        groups.append(members[~full])
        for a in np.unique(n_rows[full]):
            block = members[full & (n_rows == a)]
            rectangles.append(block.reshape(len(block), a, -1))
    return _Coupling(tuple(g for g in groups if g.size), tuple(r for r in rectangles if r.size))


def _components(spec: FactorSpec, ah: np.ndarray, gram: Gram) -> tuple[np.ndarray, ...]:
    """Connected components (size >= 2) of the coupling graph of a factor's weights.

    Weights ``(i, j)`` and ``(i', j')`` couple when ``G[i, i'] != 0`` (their
    columns of ``A``, rows of ``ah``, share an output) and ``H[j, j'] != 0``
    (``gram`` is the support of ``H``; ``ah`` may hold only the distinct columns of
    the support of ``A^H``, which share outputs as its columns do). The support is a union of
    rectangles, one per ``(b, alpha)``: rows ``(b, ., alpha)`` times columns
    ``(b, ., alpha)``. Within one rectangle the graph is generated by the
    edges along rows and along columns (a diagonal edge ``(i, j) - (i', j')``
    follows from ``(i, j) - (i, j') - (i', j')``), so only edges between
    different rectangles are enumerated pair by pair, from the sparser of
    ``G`` and ``H``.
    """
    k, r, s, t = spec.weight_shape
    _check_pairs(k * t * (r * r + s * s), "pairs of rows and of columns within its rectangles")
    flat = np.arange(spec.nnz).reshape(k, r, s, t)
    row_of = (np.arange(k)[:, None, None] * r + np.arange(r)[:, None]) * t + np.arange(t)
    col_of = (np.arange(k)[:, None, None] * s + np.arange(s)[:, None]) * t + np.arange(t)
    row_index = row_of.transpose(0, 2, 1).reshape(k * t, r)  # rows of rectangle (b, alpha)
    col_index = col_of.transpose(0, 2, 1).reshape(k * t, s)
    pattern = (ah != 0).astype(np.float64)
    g_local = _row_grams(pattern, row_index) > 0  # (k*t, r, r)
    h_local = _gram_entries(gram, col_index) != 0  # (k*t, s, s)
    weights = flat.transpose(0, 3, 1, 2).reshape(k * t, r, s)  # rectangle (b, alpha), rho, sigma
    along = r * np.count_nonzero(np.triu(h_local, k=1)) + s * np.count_nonzero(
        np.triu(g_local, k=1)
    )
    _check_pairs(along, "coupled pairs of weights along the rows and columns of its rectangles")
    edges = [_along(weights, h_local), _along(weights.swapaxes(1, 2), g_local)]
    edges.append(_across(spec, pattern, gram, flat))
    u = np.concatenate([e[0] for e in edges])
    v = np.concatenate([e[1] for e in edges])
    graph = scipy.sparse.coo_array((np.ones(u.size), (u, v)), shape=(spec.nnz, spec.nnz))
    _, labels = scipy.sparse.csgraph.connected_components(graph, directed=False)
    order = np.argsort(labels, kind="stable")
    starts = np.flatnonzero(np.diff(labels[order], prepend=-1))
    sizes = np.diff(np.append(starts, labels.size))
    groups = []
    for size in np.unique(sizes[sizes > 1]):
        members = starts[sizes == size][:, None] + np.arange(size)
        groups.append(order[members])
    return tuple(groups)


def _beyond_limit(amount: str) -> CouplingLimitError:
    """The refusal of a factor update that would hold ``amount`` (beyond MAX_SYSTEM_ENTRIES)."""
    return CouplingLimitError(
        f"{amount}, more than MAX_SYSTEM_ENTRIES = {MAX_SYSTEM_ENTRIES:,} (pydebut.fit): "
        "fit_als does not support chains whose factor updates couple this much "
        "(chainable and rank-weighted chains couple little or not at all)"
    )


def _check_pairs(count: int, what: str) -> None:
    """Raise :class:`CouplingLimitError` if ``count`` ``what`` exceed ``MAX_SYSTEM_ENTRIES``."""
    if count > MAX_SYSTEM_ENTRIES:
        raise _beyond_limit(f"about {count:,} {what}")


def _along(weights: np.ndarray, related: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Edges between weights of one line of a rectangle whose positions are related.

    ``weights`` is ``(n_rectangles, n_lines, n_positions)``; ``related`` is
    ``(n_rectangles, n_positions, n_positions)``, shared by all lines.
    """
    rect, first, second = np.nonzero(np.triu(related, k=1))
    return (
        weights[rect, :, first].reshape(-1),
        weights[rect, :, second].reshape(-1),
    )


def _across(
    spec: FactorSpec, pattern: np.ndarray, gram: Gram, flat: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Coupling edges between weights of different ``(b, alpha)`` rectangles.

    Candidates come from the cross-rectangle pairs of columns related by ``H``
    (``r * r`` weight pairs each) or of rows related by ``G`` (``s * s`` each),
    whichever is fewer, and are filtered by the other relation.
    """
    _, r, s, _ = spec.weight_shape
    h_rows, h_cols = _cross_pairs(scipy.sparse.coo_array(gram != 0), s, spec.weight_shape[3])
    h_candidates = h_rows.size * r * r
    # Upper bound on the row pairs sharing an output, all rectangles included.
    g_candidates = int(np.sum(pattern.sum(axis=0) ** 2)) * s * s
    _check_pairs(min(h_candidates, g_candidates), "pairs of weights to examine for coupling")
    if h_candidates <= g_candidates:
        return _across_from_columns(spec, pattern, (h_rows, h_cols), flat)
    return _across_from_rows(spec, pattern, gram, flat)


def _cross_pairs(pairs: scipy.sparse.coo_array, per_block: int, t: int) -> tuple[np.ndarray, ...]:
    """Pairs of indices ``(b * per_block + .) * t + alpha`` whose ``(b, alpha)`` differ."""
    row, col = pairs.row, pairs.col
    same = (row // (per_block * t) == col // (per_block * t)) & (row % t == col % t)
    return row[~same], col[~same]


def _across_from_columns(
    spec: FactorSpec, pattern: np.ndarray, col_pairs: tuple[np.ndarray, ...], flat: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Cross-rectangle edges from column pairs related by ``H``, filtered by ``G``."""
    r = spec.r
    by_col = flat.transpose(0, 2, 3, 1).reshape(spec.q, r)  # the r weights of each column
    rows_of_weight = spec.support_indices()[0]
    bits = np.packbits(pattern != 0, axis=1)

    def edges(first: np.ndarray, second: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        u = np.repeat(by_col[first], r, axis=1).reshape(-1)
        v = np.tile(by_col[second], r).reshape(-1)
        keep = np.any(bits[rows_of_weight[u]] & bits[rows_of_weight[v]], axis=1)
        return u[keep], v[keep]

    return _in_chunks(edges, col_pairs, r * r)


def _across_from_rows(
    spec: FactorSpec, pattern: np.ndarray, gram: Gram, flat: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Cross-rectangle edges from row pairs related by ``G``, filtered by ``H``."""
    s = spec.s
    a = scipy.sparse.csr_array(pattern != 0, dtype=np.int64)
    g_rows, g_cols = _cross_pairs((a @ a.T).tocoo(), spec.r, spec.t)
    by_row = flat.transpose(0, 1, 3, 2).reshape(spec.p, s)  # the s weights of each row
    cols_of_weight = spec.support_indices()[1]

    def edges(first: np.ndarray, second: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        u = np.repeat(by_row[first], s, axis=1).reshape(-1)
        v = np.tile(by_row[second], s).reshape(-1)
        keep = _lookup(gram, cols_of_weight[u], cols_of_weight[v]) != 0
        return u[keep], v[keep]

    return _in_chunks(edges, (g_rows, g_cols), s * s)


def _in_chunks(
    edges: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]],
    pairs: tuple[np.ndarray, ...],
    per_pair: int,
) -> tuple[np.ndarray, np.ndarray]:
    """The ``edges`` of ``pairs``, each pair giving ``per_pair`` candidates, examined about
    ``PAIR_CHUNK`` candidates at a time: memory grows with the edges kept, not with the
    candidates (38.4 million in a factor of the rank-weighted radix-4 butterfly of a 256 x 256
    matrix)."""
    step = max(1, PAIR_CHUNK // per_pair)
    found = [
        edges(pairs[0][start : start + step], pairs[1][start : start + step])
        for start in range(0, max(len(pairs[0]), 1), step)
    ]
    return np.concatenate([u for u, _ in found]), np.concatenate([v for _, v in found])


def _check_partial_products(chain: Chain, dtype: np.dtype) -> None:
    """``ValueError`` unless memory holds what a sweep keeps and makes, before any work.

    ``chain`` is oriented with ``m <= n``. A sweep keeps, for every factor, ``Ah_l``
    (``p_l x m``) and ``Nh_l`` (``q_l x m``) in ``dtype``, about ``2 L`` times a square
    target's size, beside the target and its adjoint; an update makes a copy of one factor's
    pair, and the pass's product with it another.
    """
    m, n = chain.shape
    widest = max(spec.p + spec.q for spec in chain)
    entries = m * (sum(spec.p + spec.q for spec in chain) + 2 * widest + 2 * n)
    check_fits_in_memory(
        entries * np.dtype(dtype).itemsize,
        f"fit_als on this {len(chain)}-factor chain (the partial products of every factor "
        f"and the target's working copies, {entries:,} entries in {np.dtype(dtype)})",
        "fit a smaller target or a chain of fewer factors, or use fit_hierarchical, "
        "which holds one sub-block at a time",
    )


def fit_als(
    target: Any,
    chain: Chain | Iterable[Any],
    *,
    n_sweeps: int = 5,
    tol: float | None = None,
    init: str | DeButOperator = "auto",
    rng: SeedLike = None,
    callback: Callable[[FitResult], bool | None] | None = None,
    progress: bool = False,
) -> FitResult:
    """Fit a DeBut chain to ``target`` by alternating least squares (ALS).

    Every factor update is the exact least-squares solution on the factor's
    support, with all other factors fixed; a sweep updates the factors left
    to right, then right to left, and the error never increases (up to the
    rounding of the normal equations, which act on the squared error).

    Parameters
    ----------
    target : array_like or path
        The ``m x n`` matrix ``D``, real or complex; a path names a ``.npy``
        file, which is memory-mapped. float16, float32 and complex64 targets get
        single precision weights (unless ``init`` is a double precision
        operator), everything else double precision ones; the updates of
        coupled unknowns are solved in double precision either way. Any
        array-like (``np.memmap`` too); a SciPy sparse matrix or a
        ``LinearOperator`` is made dense, up to :data:`~pydebut.fit.MAX_DENSE_ENTRIES`
        entries.
    chain : Chain or iterable of (p, q, r, s, t)
        The chain to fit, of shape ``(m, n)``; any valid chain.
    n_sweeps : int, default 5
        Number of sweeps (the paper's scripts count 2 iterations per sweep), at
        most :data:`MAX_SWEEPS` (100,000).
    tol : float, optional
        Stop when a sweep improves the error by less than ``tol`` relatively.
    init : {"auto", "random", "hierarchical"} or DeButOperator, default "auto"
        Initial factors: random (seeded by ``rng``, scaled to the target's
        norm), :func:`fit_hierarchical`
        (chainable and rank-weighted chains and their transposes), ``"auto"`` (hierarchical when
        the chain allows it, random otherwise), or an operator on ``chain`` to
        continue from; the permutations it carries are kept, the factors fitted
        to the permuted target.
    rng : None, int or numpy.random.Generator
        Seed for ``init="random"`` (through :func:`numpy.random.default_rng`).
    callback : callable, optional
        Called after every sweep with the :class:`FitResult` so far; returning
        True stops the fit, False or None goes on (anything else is a TypeError).
    progress : bool, default False
        Show a progress bar with the current error (needs ``tqdm``).

    Returns
    -------
    FitResult
        ``errors`` holds the relative error ``||D - D_hat||_F / ||D||_F`` after
        the initialisation and after every half-sweep; ``times`` the elapsed
        seconds at those moments.

    Raises
    ------
    TypeError
        If the target is not numeric, or an argument has the wrong type.
    ValueError
        If the target is not finite, does not have the chain's shape, is a masked array
        with masked entries or a path that names no ``.npy`` file of a matrix (an
        ``.npz`` archive, a folder, a damaged file), if ``n_sweeps`` is negative or
        above :data:`MAX_SWEEPS`, ``tol`` negative, ``init`` unknown (or
        ``"hierarchical"`` for a chain :func:`fit_hierarchical` does not fit), ``rng`` a
        negative seed, an initial operator has another chain or weights that are not
        finite, the chain's factor updates couple too many unknowns for dense solves, or
        memory cannot hold the target's working copies and the partial products a sweep
        keeps (``p_l x m`` and ``q_l x m`` for every factor, ``m <= n`` the smaller
        side: about ``2 L`` times a square target). All checks happen before any work.
    OSError
        If the target is the path of a file that cannot be opened (none there).
    ImportError
        If ``progress=True`` and tqdm is not installed.

    Notes
    -----
    With ``A = F_1 ... F_{l-1}`` and ``B = F_{l+1} ... F_L`` fixed, the update
    of ``F_l`` solves the normal equations restricted to its support ``S``,
    ``P_S(A^H A F_l B B^H) = P_S(A^H D B^H)``. Unknowns ``(i, j)`` and
    ``(i', j')`` interact only if ``(A^H A)[i, i']`` and ``(B B^H)[j', j]`` are
    structurally non-zero; the components of this coupling graph are found
    exactly from the supports once per chain. Single unknowns get
    ``E[i, j] / (G[i, i] H[j, j])`` (every weight of a chainable chain); a
    component filling a block of rows ``I`` times columns ``J`` gets
    ``G_I^+ E H_J^+`` (two small eigendecompositions), any other a small
    Hermitian solve; singular systems get the minimum-norm solution. ``E``,
    ``diag(G)`` and ``H`` come from partial products of the sparse factors,
    updated along each pass: a half-sweep costs ``O(nnz * min(m, n))`` plus
    sparse Gram updates, and never forms the ``(m n) x nnz`` Kronecker system.
    Chains whose updates couple too many unknowns for dense solves are
    refused (ValueError) before any work.

    A factor updated at the end of a half-sweep is not updated again at the
    start of the next one: with the other factors unchanged, the update would
    return the same weights.

    The fit runs on the target divided by the power of two that brings its
    largest entry into ``[0.5, 1)``; the weights are multiplied back, the
    power spread evenly over the factors (an initial operator is balanced and
    divided the same way; one whose product is then still more than a quarter
    of the dtype's exponent range from the target's scale, say ``2**300``
    times too large in double precision, starts from its balanced factors
    instead, each largest entry in ``[0.5, 1)``: ALS does not depend on the
    start's scale past its first update, and the start error is measured at
    the operator's own scale). Fitting ``c * D`` thus gives ``c`` times the fit
    of ``D``, with the same errors, for any power of two ``c`` that keeps the
    target's entries in the dtype's normal range (from the same initial
    operator, the errors after the start), and no Gram matrix or norm over- or
    underflows; another ``c`` rounds differently, which a hierarchical start
    can turn into a different fit (:func:`fit_hierarchical`). Every error is
    measured from the residual ``D - F_1 ... F_L`` of the current factors.

    References
    ----------
    .. [1] R. Lin, J. Ran, K. H. Chiu, G. Chesi, N. Wong, "Deformable
       Butterfly: A Highly Structured and Sparse Linear Transform", NeurIPS 2021.

    Examples
    --------
    >>> import numpy as np
    >>> from pydebut import Chain, fit_als
    >>> chain = Chain.from_factorizations([2, 2, 2], [2, 2, 2])
    >>> target = np.random.default_rng(0).standard_normal((8, 8))
    >>> result = fit_als(target, chain, n_sweeps=3, init="random", rng=0)
    >>> len(result.errors)
    7
    >>> bool(np.all(np.diff(result.errors) <= 1e-12))
    True
    """
    start = time.perf_counter()
    chain = Chain(chain)
    n_sweeps = _check_sweeps(n_sweeps)
    tol = _check_tol(tol)
    _check_callback(callback)
    init_weights = _check_init(init, chain)
    progress_bar = progress_bars(progress)
    generator = random_generator(rng)
    matrix = load_target(target, chain)
    perms = (init.row_perm, init.col_perm) if isinstance(init, DeButOperator) else (None, None)
    matrix = unpermute(matrix, *perms)
    dtype = working_dtype(np.result_type(matrix.dtype, *(w.dtype for w in init_weights or ())))
    bar = None if progress_bar is None else progress_bar(total=n_sweeps, desc="ALS", unit="sweep")
    transposed = chain.shape[0] > chain.shape[1]
    work_chain = chain.T if transposed else chain
    _check_partial_products(work_chain, dtype)
    couplings = _couplings(work_chain, transposed)  # p_l x m supports: after the memory check
    # Coupled unknowns are solved for in double precision, single precision weights too: their
    # float32 normal equations lost most of the fit on over-parametrised chains (docs/fitting.rst).
    coupled = any(c.groups or c.rectangles for c in couplings)
    solve_dtype = np.promote_types(dtype, np.float64) if coupled else dtype
    if solve_dtype != dtype:
        _check_partial_products(work_chain, solve_dtype)
    matrix = as_working(matrix, dtype).astype(solve_dtype, copy=False)
    scale = TargetScale.of(matrix)
    matrix = scale.normalise(matrix)
    shift = 0  # the initial operator's product is 2**shift times the factors' product
    if init_weights is not None:
        init_weights, shift = scale.normalise_weights(init_weights, dtype)
    weights = _initial_weights(init, init_weights, matrix, chain, dtype, generator)
    weights = [w.astype(solve_dtype, copy=False) for w in weights]
    if transposed:
        matrix = matrix.T
        weights = [np.swapaxes(w, 1, 2) for w in reversed(weights)]
    sweeper = _Sweeper(work_chain, weights, matrix, couplings, precision=dtype)
    last = len(chain) - 1
    # Original left-to-right is the forward pass, or the backward pass of the transpose.
    if transposed:
        errors = [sweeper.forward(update=False, exponent=shift)]
        passes = ((sweeper.backward, 0), (sweeper.forward, last))
    else:
        errors = [sweeper.backward(update=False, exponent=shift)]
        passes = ((sweeper.forward, last), (sweeper.backward, 0))
    times = [time.perf_counter() - start]

    def current_result() -> FitResult:
        fitted = [w.astype(dtype, copy=False) for w in sweeper.weights]  # rounded on update
        if transposed:
            fitted = [np.swapaxes(w, 1, 2) for w in reversed(fitted)]
        # before the first update, the factors are the start's divided by 2**shift too
        restoring = TargetScale(scale.exponent + shift) if len(errors) == 1 else scale
        operator, error = restoring.restore_operator(
            make_operator(chain, fitted), matrix.T if transposed else matrix, errors[-1]
        )
        return FitResult(
            operator.with_permutations(*perms), [*errors[:-1], error], list(times), "als"
        )

    skip = None
    try:
        for _ in range(n_sweeps):
            for run, ends_at in passes:
                errors.append(run(skip=skip))
                times.append(time.perf_counter() - start)
                skip = ends_at
            if bar is not None:
                bar.update(1)
                bar.set_postfix(error=f"{errors[-1]:.4g}")
            if callback is not None and _stop_requested(callback(current_result())):
                break
            before = errors[-3]
            if tol is not None and (before == 0 or (before - errors[-1]) < tol * before):
                break
    finally:
        if bar is not None:
            bar.close()
    return current_result()


def _check_sweeps(n_sweeps: Any) -> int:
    """``n_sweeps`` as an int in ``[0, MAX_SWEEPS]``."""
    if isinstance(n_sweeps, (bool, np.bool_)) or not isinstance(n_sweeps, numbers.Integral):
        raise TypeError(
            f"n_sweeps must be an integer, got {type(n_sweeps).__name__} {shown(n_sweeps)}"
        )
    if n_sweeps < 0:
        raise ValueError(f"n_sweeps must be >= 0, got {n_sweeps}")
    if n_sweeps > MAX_SWEEPS:
        raise ValueError(
            f"n_sweeps must be at most MAX_SWEEPS = {MAX_SWEEPS:,} (pydebut.fit), got "
            f"{shown(n_sweeps)}: to run until the error settles, pass tol with fewer sweeps"
        )
    return int(n_sweeps)


def _check_callback(callback: Any) -> None:
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable, got {type(callback).__name__}")


def _stop_requested(answer: Any) -> bool:
    """A callback's answer: True stops the fit; False or None goes on."""
    if answer is None or isinstance(answer, (bool, np.bool_)):
        return bool(answer)
    raise TypeError(f"callback must return True (stop), False or None, got {type(answer).__name__}")


def _check_tol(tol: Any) -> float | None:
    if tol is None:
        return None
    if isinstance(tol, (bool, np.bool_)) or not isinstance(tol, numbers.Real):
        raise TypeError(f"tol must be a real number or None, got {type(tol).__name__}")
    try:
        value = float(tol)  # a Fraction, or an int beyond what NumPy converts
    except OverflowError:  # an int beyond the floats
        value = np.inf
    if not (np.isfinite(value) and value >= 0):
        raise ValueError(f"tol must be finite and >= 0, got {shown(tol)}")
    return value


#: fit_als's checks of the options that depend on neither the target nor the chain
#: (``fit_many`` runs them once, before any fit, naming no target).
OPTION_CHECKS: dict[str, Callable[[Any], Any]] = {
    "n_sweeps": _check_sweeps,
    "tol": _check_tol,
    "callback": _check_callback,
    "progress": progress_bars,
    "rng": random_generator,
}


def _check_init(init: Any, chain: Chain) -> list[np.ndarray] | None:
    """Validate ``init``; return the weights of an initial operator (None for a name)."""
    if isinstance(init, str):
        if init not in INIT_METHODS:
            raise ValueError(
                f"unknown init {shown(init)}; expected one of {', '.join(INIT_METHODS)} "
                "or a DeButOperator"
            )
        if init == "hierarchical":
            _fits_through_transpose(chain)  # the chain or its transpose qualifies
        return None
    if not isinstance(init, DeButOperator):
        raise TypeError(f"init must be a method name or a DeButOperator, got {type(init).__name__}")
    if init.chain != chain:
        raise ValueError(f"the initial operator's chain {init.chain!r} is not {chain!r}")
    for l, w in enumerate(init.weights, start=1):  # noqa: E741 (F_l)
        if not np.isfinite(w).all():  # an operator built with check_finite=False
            raise ValueError(
                f"the initial operator's factor F_{l} has infinite or NaN weights; a fit "
                "starts from finite ones"
            )
    return [np.asarray(w) for w in init.weights]


def _initial_weights(
    init: Any,
    init_weights: list[np.ndarray] | None,
    matrix: np.ndarray,
    chain: Chain,
    dtype: np.dtype,
    rng: np.random.Generator,
) -> list[np.ndarray]:
    if init_weights is not None:
        return [w.astype(dtype, copy=True) for w in init_weights]
    if init == "auto":
        try:
            _fits_through_transpose(chain)
            init = "hierarchical"
        except ValueError:
            init = "random"
    if init == "hierarchical":
        return [w.astype(dtype) for w in fit_hierarchical(matrix, chain).operator.weights]
    # A random chain's product has a Frobenius norm of about sqrt(m) (DeButOperator.random;
    # in expectation only, see _balanced); matching the target's norm makes the start, like
    # the rest of the fit, scale-invariant.
    gain = float(np.linalg.norm(matrix) / np.sqrt(chain.shape[0])) ** (1 / len(chain))
    return [gain * w for w in _balanced(chain, DeButOperator.random(chain, rng, dtype).weights)]


def _balanced(chain: Chain, weights: Sequence[np.ndarray]) -> list[np.ndarray]:
    """``weights`` with every partial product ``F_1 ... F_l`` (``F_l ... F_L`` if ``m > n``,
    the cheaper side) whose largest entry is more than ``2**(maxexp // 4)`` from 1 brought
    back into ``[0.5, 1)`` by a power of two on ``F_l``.

    Random factors keep the product's norm only in expectation: their partial products
    drift geometrically (``2 x 2`` factors by about ``e**-0.29`` each, 1 x 1 ones by
    ``e**-0.64``), and 600 scalars or 1,300 ``2 x 2`` factors took the Gram matrices of the
    updates out of the doubles. A power of two changes no rounding, and ALS does not depend
    on the factors' scales past its first update; shorter chains keep their weights.
    """
    if chain.shape[0] > chain.shape[1]:
        flipped = _balanced(chain.T, [np.swapaxes(w, 1, 2) for w in reversed(weights)])
        return [np.swapaxes(w, 1, 2) for w in reversed(flipped)]
    dtype = weights[0].dtype
    limit = np.finfo(dtype).maxexp // 4
    balanced, product_h = [], np.eye(chain.shape[0], dtype=dtype)
    for spec, w in zip(chain, weights, strict=True):
        product_h = apply_factor_adjoint(spec, w, product_h)
        exponent = TargetScale.of(product_h).exponent
        if abs(exponent) > limit:
            product_h, w = (_times_power_of_two(x, -exponent) for x in (product_h, w))
        balanced.append(w)
    return balanced
