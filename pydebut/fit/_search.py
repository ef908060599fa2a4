"""Choosing the chain: a beam search over the DeBut family scored by hierarchical splits.

A chainable or rank-weighted chain of an ``m x n`` matrix is built left to right by
choices ``(b_l, c_l, w_l)``: factor ``l`` has ``r_l = b_l w_{l-1}``, ``s_l = c_l w_l``
(``w_0 = 1``) and the last factor takes whatever is left (see :mod:`pydebut.chains`).
In the left-to-right hierarchical factorization (:func:`~pydebut.fit_hierarchical`)
each choice splits the remaining entries into sub-blocks and keeps their best
rank-``w_l`` approximations; the energy it discards is that split's squared error,
and the squared errors of the successive splits add up to the final one. A prefix
of choices is therefore a node with a known *lower bound* on the error of every
chain that extends it, and nodes that share a prefix share its splits.

Why a larger budget never gives a worse answer
----------------------------------------------
Write ``L(B)`` for :func:`ladder_top` of a budget ``B`` (the smallest power of two
``>= B``) and call ``(2^(i-1), 2^i]`` band ``i``. A node's ``committed`` is its
parameters plus the fewest any completion needs (:class:`_Completions`), a lower
bound on the parameters of every chain through it. For budgets ``B1 < B2``:

1. *Nothing depends on the order of work.* One seed per purpose is drawn from ``rng``
   before any work. A split's range finder is seeded from (seed, prefix, ``b``,
   ``c``, band) and a chain's ALS from (seed, chain), so every number attached to a
   node or a chain is a function of the target, ``rng`` and that node or chain (same
   operations on the same inputs, so the same floating-point values).
2. *The search at ``L(B1)`` is the part of the search at ``L(B2)`` in bands
   ``<= band(L(B1))``.* The search at ``L`` keeps nodes with ``committed <= L``.
   A child commits at least what its parent did, so a node of band ``j`` descends
   only from nodes of bands ``<= j``. Every decision about a node of band ``j``
   depends only on nodes and complete chains of bands ``<= j``, never on ``L``:
   its split is computed unless the band of the split's cheapest child has had
   ``max_splits`` splits (parents are expanded band by band, so that count sees
   the same splits in the same order); its estimate scores the ranks of one band
   together, with a range finder whose width is that band's largest rank; it is
   dropped when a complete chain of band ``<= j`` has a lower residual, or is
   exact with at most the node's committed parameters or in a band below ``j``
   (branch and bound within the band); and it is kept when it is among the
   ``beam_width`` best of its own band (:func:`_select`). By induction
   over the depth, the kept nodes of bands ``<= band(L(B1))`` and the complete
   chains recorded there are the same in both searches.
3. *The fitted chains within ``B1`` are fitted at ``B2`` too, the same way.* The
   front (complete chains whose estimate is below that of every chain with fewer
   parameters) and the two rules that pick front chains to fit (:func:`_refine`:
   the ``refine`` best of its band get ALS; others whose estimate is below the
   best error measured with fewer parameters get the hierarchical factorization)
   look only at chains with at most the chain's parameters and at its band: all of
   which both searches share.
4. *The candidates nest.* The answer at ``B`` is the smallest measured error among
   the fitted front chains, the ``include`` chains and the butterflies of
   :func:`butterfly_candidates` with at most ``B`` parameters,
   and the truncated SVDs of every rank ``j <= floor(B / (m + n))``, each measured
   by the same operations whatever the budget (:class:`_TruncatedSVD`). The
   candidates at ``B1`` are candidates at ``B2`` with the same errors, so the
   answer at ``B2`` is at most the answer at ``B1``, exactly, without rounding
   slack. With ``permutation="auto"`` each pair of permutations is a search of its
   own and the best pair wins: a minimum of non-increasing functions. (Near the
   largest float a product that would overflow once scaled back is shrunk, which
   changes its error: candidates are then compared after scaling back
   (:func:`_lowest_restored`), and this step holds only where nothing is shrunk.)
5. *From ``m n`` parameters on, the answer is exact.* The one-factor dense chain
   ``[(m, n, m, n, 1)]`` with ``D`` as its weights has error 0, which no answer at
   a smaller budget undercuts; :func:`approximate` returns it without a search.

Above ``EXACT_SVD_ENTRIES`` entries the SVD is randomized, with a range finder
whose width follows ``L(B)``: budgets with the same ``L(B)`` share it, and for a
larger ``L`` the probe extends the smaller one's (nested ranges), so there the SVD
candidates are non-increasing in exact arithmetic, i.e. up to rounding.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache, partial
from itertools import islice
from math import inf, prod
from typing import Any, NamedTuple

import numpy as np
import scipy.linalg

from .._arguments import shown
from .._permutation import candidate_permutations, unpermute
from ..chains import _divisors
from ..operator import DeButOperator, SeedLike, random_generator
from ..spec import Chain, FactorSpec
from ._als import CouplingLimitError, _check_sweeps, _check_tol, _couplings, fit_als
from ._common import (
    TargetScale,
    as_working,
    in_double,
    load_target,
    progress_bars,
    working_dtype,
)
from ._hierarchical import _fits_through_transpose, _leading_vectors, _Split, fit_hierarchical

__all__ = [
    "ApproximationResult",
    "ExploredChain",
    "SVDBaseline",
    "SearchNarrowedWarning",
    "approximate",
]

#: Splits whose relative squared residual is below this count as exact when
#: nodes are compared (the Gram eigenvalues carry absolute errors of about
#: ``eps * sigma_1**2``).
EXACT_RESIDUAL = 1e-13
#: Targets with more entries than this use a randomized SVD for the baseline.
EXACT_SVD_ENTRIES = 1 << 22
#: Largest target :func:`approximate` accepts (entries); beyond it one split alone is too slow.
MAX_APPROXIMATE_ENTRIES = 1 << 28
#: Splits whose blocks' smaller side exceeds ``SKETCH_FACTOR * (rank + SKETCH_MARGIN)``
#: are scored by a range finder instead of Gram eigenvalues.
SKETCH_FACTOR = 2
SKETCH_MARGIN = 8
#: Most chains ``include`` may give (distinct or repeated); each distinct one is fitted.
MAX_INCLUDE = 1024


@dataclass(frozen=True)
class ExploredChain:
    """One complete chain met by the search.

    Attributes
    ----------
    chain : Chain
        The chain, left to right.
    estimate : float
        Its left-to-right hierarchical relative error, from the singular
        values its splits discard (no factor is built).
    error : float or None
        The true relative error after refinement, when the chain was fitted
        (the hierarchical factorization, then ALS for the ``refine`` best of
        its band); ``None`` otherwise.
    """

    chain: Chain
    estimate: float
    error: float | None = None

    @property
    def n_params(self) -> int:
        """Number of weights of the chain."""
        return self.chain.n_params


class _Estimate(NamedTuple):
    """A complete chain of the search, as its factors' ``(p, q, r, s, t)``; the
    tuples sort by estimate, then weights, then factors."""

    estimate: float
    n_params: int
    factors: tuple[tuple[int, int, int, int, int], ...]


@dataclass(frozen=True)
class SVDBaseline:
    """The truncated SVD with the same budget, ``k = floor(max_params / (m + n))``.

    Attributes
    ----------
    rank : int
        ``k``, at most ``min(m, n)`` (0 when the budget is below ``m + n``).
    n_params : int
        ``k (m + n)``.
    error : float
        Its true relative Frobenius error.
    randomized : bool
        Whether the SVD came from a randomized range finder (large targets).
    """

    rank: int
    n_params: int
    error: float
    randomized: bool


@dataclass(repr=False)
class ApproximationResult:
    """Outcome of :func:`approximate`.

    Its ``repr`` is :meth:`summary`'s line: ``explored`` may hold thousands
    of chains.

    Attributes
    ----------
    operator : DeButOperator
        The best operator found.
    error : float
        Its relative Frobenius error ``||D - D_hat||_F / ||D||_F``, measured
        against the target (the absolute error if the target is zero).
    explored : list of ExploredChain
        Every complete chain within the budget met by the search, by estimated
        error (then parameters); the fitted ones carry their true error. With
        ``permutation="auto"``, those of the permutation pair that won; those of
        the search of ``D^H``, transposed, when it won.
    baseline : SVDBaseline
        The truncated SVD with the same budget.
    n_splits : int
        Number of split spectra computed by the search.
    narrowed : str or None
        Why the search stopped before exploring its whole beam, if it did.
    seconds : float
        Wall-clock time of the call.
    """

    operator: DeButOperator
    error: float
    explored: list[ExploredChain]
    baseline: SVDBaseline
    n_splits: int
    narrowed: str | None = None
    seconds: float = 0.0

    @property
    def chain(self) -> Chain:
        """The chosen chain."""
        return self.operator.chain

    def summary(self) -> str:
        """One line: the chosen chain, its error beside the truncated SVD's, and the search.

        Examples
        --------
        >>> import numpy as np
        >>> from pydebut import approximate
        >>> x = np.linspace(0, 1, 32)
        >>> result = approximate(np.exp(-30 * (x[:, None] - x) ** 2), 400, rng=0)
        >>> print(result.summary())  # doctest: +ELLIPSIS
        32 x 32 chain of ... factors, ... params (compression ...x): relative error ... against ...
        """
        chain, baseline = self.chain, self.baseline
        m, n = chain.shape
        svd = "randomized" if baseline.randomized else "truncated"
        n_fitted = sum(explored.error is not None for explored in self.explored)
        narrowed = ", search narrowed" if self.narrowed else ""
        return (
            f"{m} x {n} chain of {chain.n_factors} factors, {chain.n_params} params "
            f"(compression {chain.compression_ratio:.2f}x): relative error {self.error:.4g} "
            f"against {baseline.error:.4g} for the rank-{baseline.rank} {svd} SVD; "
            f"{len(self.explored)} chains explored ({n_fitted} fitted), {self.n_splits} split "
            f"spectra{narrowed} in {self.seconds:.3g} s"
        )

    def __repr__(self) -> str:
        return f"<ApproximationResult: {self.summary()}>"


class SearchNarrowedWarning(UserWarning):
    """:func:`approximate` stopped searching a band of parameters at ``max_splits``.

    The message is also kept in :attr:`ApproximationResult.narrowed`; the
    answer is still never worse than the truncated SVD with the same budget.
    """


def approximate(
    target: Any,
    max_params: int,
    *,
    max_factors: int = 10,
    n_sweeps: int = 5,
    tol: float | None = 1e-4,
    beam_width: int = 16,
    refine: int = 1,
    max_splits: int = 5000,
    include: Iterable[Chain] = (),
    permutation: str | None = None,
    rng: SeedLike = None,
    progress: bool = False,
    workers: int = 1,
) -> ApproximationResult:
    """Best chain of the DeBut family for ``target`` within ``max_params`` weights.

    Searches the chainable and rank-weighted chains of every kind (monotonic,
    bulging, other; butterflies, Monarch-like and block low-rank products, low
    rank itself) by a beam search guided by the errors of hierarchical splits,
    fits the most promising few (:func:`fit_hierarchical` then :func:`fit_als`)
    and returns the one with the smallest true error. The truncated SVD with the
    same budget is always a candidate, so the answer is never worse than it
    (above ``EXACT_SVD_ENTRIES`` entries, than the randomized SVD computed here); the
    rank-weighted radix-2 and radix-4 butterflies within the budget are always
    fitted too (their error builds up evenly over the levels, which a beam
    ranking prefixes by the error so far can miss). The search runs on ``D`` and
    again on ``D^H`` unless ``D`` is Hermitian: the transposes of the chains it
    grows are often beyond it, and an answer found for ``D^H`` is returned as
    its adjoint.

    Parameters
    ----------
    target : array_like or path
        The ``m x n`` matrix ``D`` (real or complex); a path names a ``.npy`` file. At
        most :data:`~pydebut.fit.MAX_APPROXIMATE_ENTRIES` entries (``m n``).
    max_params : int
        Largest number of weights ``sum_l p_l s_l`` of the chain.
    max_factors : int, default 10
        Largest number of factors.
    n_sweeps : int, default 5
        ALS sweeps for each refined chain (0: hierarchical factorization only),
        at most :data:`~pydebut.fit.MAX_SWEEPS`.
    tol : float or None, default 1e-4
        ALS stops when a sweep improves the error by less than this, relatively.
    beam_width : int, default 16
        Prefixes kept at every depth in every band of committed parameters
        (``(2^(i-1), 2^i]``: the parameters so far plus the fewest any completion
        needs). Wider beams cost time in proportion and can find chains that a
        narrower one misses (a 10%-noisy product of the paper's VGG conv1 chain
        came out at 0.0955 with 16 and 0.0952 with 32; ALS on that chain: 0.0955).
    refine : int, default 1
        Chains of the front (no chain with fewer parameters has a lower estimate)
        fitted by :func:`fit_hierarchical` and ALS in every band of parameters: its
        ``refine`` best. Other front chains whose estimate is below the best
        error measured with fewer parameters (which they may therefore improve
        on) get the hierarchical factorization.
    max_splits : int, default 5000
        Most split spectra a search computes in one band (a split counts in the
        band of its cheapest child); when a band reaches it, that band is searched
        no further (a :class:`SearchNarrowedWarning` says so and ``narrowed``
        records it). Each search has its own: that of ``D`` and that of ``D^H``
        (unless ``D`` is Hermitian), each with ``permutation="auto"`` once per
        candidate permutation, so a call computes at most that many times
        ``max_splits`` spectra per band (``n_splits`` counts them all).
    include : iterable of Chain
        Chains of the target's shape fitted in any case when they fit the budget (below
        ``m n``: from there on the dense chain is exact and nothing is fitted);
        they are candidates like the fitted chains of the search. One outside the
        hierarchical family is fitted by :func:`fit_als` alone, and refused
        before the search if ALS cannot update its factors. At most
        :data:`~pydebut.fit.MAX_INCLUDE` items are read (more: ``ValueError``); a chain
        given twice is fitted once.
    permutation : None or "auto", default None
        None searches chains for ``D`` itself. ``"auto"`` also searches, for
        each pair of :func:`candidate_permutations` (bit reversals of the rows
        and/or columns where they are powers of two), chains ``B`` with
        ``D ~ B[row_perm][:, col_perm]``, and keeps the best; the operator then
        carries the permutations (a DFT is recovered exactly on the butterfly
        chain). It multiplies the search's cost by the number of pairs (up to 4).
    rng : None, int or numpy.random.Generator
        Seed of the randomized SVD (large targets) and of ALS.
    progress : bool, default False
        Show progress bars (needs ``tqdm``): a search and its fits for each pass,
        labelled ``pass i of N (D)`` or ``(D^H)``; the search's total grows as each
        factor's splits are planned.
    workers : int, default 1
        Threads that compute the splits of the search side by side, and fit the
        candidate chains side by side (-1: one per CPU this process may use; more
        than that run as that many). The answer is the same for any number: each
        split and each fit is computed from its own inputs and seed, and the search
        takes the results in its own order (a chain fitted ahead of its turn that
        an earlier fit then rules out is dropped). Each thread holds one split's
        arrays, up to about twice the target's size, or one fit's.

    Returns
    -------
    ApproximationResult
        The operator and its true error, the explored chains and the SVD baseline.

    Raises
    ------
    TypeError
        If the target is not numeric or an option has the wrong type.
    ValueError
        If the target is not a finite 2-D matrix, has more than
        :data:`~pydebut.fit.MAX_APPROXIMATE_ENTRIES` entries, is a masked
        array with masked entries or a path that names no ``.npy`` file of a
        matrix (an ``.npz`` archive, a folder, a damaged file), an option is
        below its least value (``max_params``, ``max_factors``, ``beam_width``,
        ``refine`` and ``max_splits`` at least 1, ``n_sweeps``, ``tol`` and a
        ``rng`` seed at least 0, ``workers`` at least 1 or -1), ``n_sweeps``
        is above :data:`~pydebut.fit.MAX_SWEEPS`, ``permutation`` is neither
        None nor ``"auto"``, or no chain of at most
        ``max_factors`` factors has at most ``max_params`` weights,
        or an ``include`` item is not of the target's shape, or within the
        budget can be fitted by no method (the message names it).
        The options are checked before the target is read (or a sparse matrix
        or ``LinearOperator`` made dense), the rest before the search.
    OSError
        If the target is the path of a file that cannot be opened (none there).
    ImportError
        If ``progress=True`` and tqdm is not installed.

    Notes
    -----
    A chain is a sequence of choices ``(b_l, c_l, w_l)`` with
    ``m = b_1 ... b_L``, ``n = c_1 ... c_L``, ``r_l = b_l w_{l-1}`` and
    ``s_l = c_l w_l``. Choosing ``(b_l, c_l, w_l)`` after a prefix cuts the
    remaining entries (``k`` blocks of ``w_{l-1} b_l ... b_L`` rows by
    ``c_l ... c_L`` columns) into sub-blocks of ``w_{l-1} b_l`` rows and
    ``c_{l+1} ... c_L`` columns and keeps their best rank-``w_l``
    approximations. The discarded squared singular values, read from the
    eigenvalues of the sub-blocks' Gram matrices (one decomposition serves
    every ``w_l``), are that split's squared error; in the left-to-right order
    the squared errors of the successive splits add up exactly to the squared
    error of :func:`fit_hierarchical`, so a prefix's sum is a lower bound for
    all its extensions.

    The search runs at the budget ``L``, the smallest power of two at least
    ``max_params``, and keeps at every depth the ``beam_width`` best prefixes of
    every band of committed parameters; a prefix is dropped when a complete chain
    of its band or a lower one has a lower residual. The answer is the best of the
    fitted chains within ``max_params`` and the truncated SVDs of every rank that
    fits. A budget of ``m n`` weights or more holds the dense matrix: the
    one-factor chain ``[(m, n, m, n, 1)]`` with ``D`` as its weights is exact
    and is returned at once, with nothing searched or fitted (ask for fewer
    weights to look for a smaller chain).

    The 2-factor chain ``[(m, k, m, k, 1), (k, n, k, n, 1)]`` is the
    rank-``k`` product, so the truncated SVD is in the family: it competes like
    any other candidate, which makes the result at most the SVD's error. A
    product of any chain in the search space has zero residual at every split
    and is recovered to rounding when the search keeps its prefix (it does on
    the paper's chains at their own budget). With a little noise its splits
    discard only noise, and the beam ranks prefixes whose split compressed
    before those whose split kept the full rank (which discard nothing, whatever
    the target): the paper's VGG conv1 chain's product plus relative noise
    2e-4 to 3e-2 (two seeds) or 0.1 came out within 1% of :func:`fit_als` on
    the chain itself; this is measured, not guaranteed, and ``include=[chain]``
    fits a chain you expect in any case. The search runs on the target
    divided by a power of two that brings its largest entry into ``[0.5, 1)``
    (exactly, so no square over- or underflows) and its thresholds are
    relative, so ``c * D`` gives ``c`` times the answer for ``D`` for any power
    of two ``c`` that keeps the target's entries in the dtype's normal range.
    A float32 or complex64 target is searched in double precision (in single
    precision a split's residual, a difference of energies, is noise below about
    3e-4 of the total) and its chains are fitted in its own precision.
    Another ``c`` rounds the target or its products differently (so does a
    unit phase such as ``1j``: a complex product sums its real terms in the
    other order), and where the search meets
    ties (sub-blocks with equal singular values, prefixes with equal
    residuals) rounding decides them: the answer can differ by more than
    rounding (a random product of the VGG conv1 chain plus 5% noise, at 3,000
    parameters: 0.3425, and 0.3450 for 7 times it; Hadamard-structured targets
    up to 4%); a complex copy of a real target likewise. A larger budget never
    gives a larger error, with the same ``rng`` and other options (below the top of
    the float range, where a product may be shrunk to evaluate): every
    decision of the search and every fit depends only on chains with fewer
    parameters or of the same band, so the
    candidates at a smaller budget are candidates at a larger one (the module
    :mod:`pydebut.fit._search` gives the argument).

    The search's time grows with the target and the budget: each split
    decomposes Gram matrices of its sub-blocks, and up to ``max_splits`` of
    them run in every band of parameters of every search. On the 2-core machine of
    benchmarks/README.md, with one BLAS thread and one worker, the smooth
    kernels ``exp(-30 (x - y)^2)`` took 5 s at 512 x 512 and a budget of
    12,000, 21 s at 1024 x 1024 and 25,000, and 108 s at 2048 x 2048 and 50,000
    (``benchmarks/bench_approximate.py --timing --shape M N --budget K``)
    searching ``D`` alone (these are symmetric: a Hermitian ``D`` is searched
    once); the search of ``D^H`` doubles the time for other targets (the
    paper's LeNet fc1 product: 14.5 s of CPU time on an Intel Xeon VM before,
    26 s with it); a smaller ``max_splits``, ``beam_width`` or
    ``max_factors`` bounds it. Sizes of many divisors have many more splits
    to try, and a target without structure keeps every band busy to its
    ``max_splits``: Gaussian noise of 720 x 720 at a budget of 20,000 took
    5.5 minutes of one core (49,268 splits, 0.7 GB at its peak;
    ``SearchNarrowedWarning`` says where a band stopped). Budgets near ``m n``
    cost the most, in time and memory, as every band up to the budget is
    searched: ``U diag(i**-0.75) V^T`` of 256 x 256 with random orthogonal ``U``
    and ``V`` took 16 s of one core and 0.25 GB at its peak at a budget of 5,000
    (8% of ``m n``), 61 s and 0.49 GB at 25,000 (38%), 72 s and 0.87 GB at
    50,000 (76%); of 512 x 512 at 200,000 it ran past 10 minutes and 1.6 GB.
    The splits are many small products: on a machine busy with other work,
    OpenBLAS's own threads made the same searches up to four times slower
    (``OPENBLAS_NUM_THREADS=1`` avoids that).

    Examples
    --------
    >>> import numpy as np
    >>> from pydebut import approximate
    >>> x = np.linspace(0, 1, 32)
    >>> kernel = np.exp(-30 * (x[:, None] - np.linspace(0, 1, 64)) ** 2)
    >>> result = approximate(kernel, 600, n_sweeps=2, rng=0)
    >>> result.chain.n_params <= 600, result.error <= result.baseline.error
    (True, True)
    """
    start = time.perf_counter()
    options, included = _checked_options(
        max_params,
        max_factors,
        n_sweeps,
        tol,
        beam_width,
        refine,
        max_splits,
        include,
        permutation,
        progress,
        workers,
    )
    generator = random_generator(rng)
    matrix = _checked_target(target, options, included)
    m, n = matrix.shape
    included = list(dict.fromkeys(included))  # each distinct chain fitted once
    included += [c for c in butterfly_candidates(m, n, options) if c not in included]
    # one seed per purpose, drawn before any work: nothing below depends on the order of work
    sketch_seed, fit_seed, svd_seed = (int(seed) for seed in generator.integers(2**63, size=3))
    matrix = as_working(matrix, working_dtype(matrix.dtype))
    # the search squares entries (norms, Gram matrices): it runs on the target scaled by a
    # power of two, exactly, and the answer is scaled back
    scale = TargetScale.of(matrix)
    matrix = scale.normalise(matrix)
    norm = float(np.linalg.norm(matrix))

    svd = _TruncatedSVD(matrix, options.max_params, norm, svd_seed)
    best: tuple[float, DeButOperator, list[ExploredChain]] | None = None
    n_splits, narrowed = 0, None
    if options.max_params >= m * n:  # the one-factor dense chain holds D itself: no search
        dense = DeButOperator(Chain([(m, n, m, n, 1)]), [matrix.reshape(1, m, n, 1)])
        error = _true_error(dense, matrix, norm)
        explored = [ExploredChain(dense.chain, 0.0, error)]
        dense, error = scale.restore_operator(dense, matrix, error)
        best = (error, dense, explored)
        passes = []
    else:
        passes = _passes(matrix, permutation, included, options)
    for index, (adjoint, row_perm, col_perm, pass_included) in enumerate(passes):
        oriented = np.ascontiguousarray(matrix.conj().T) if adjoint else matrix
        permuted = unpermute(oriented, row_perm, col_perm)
        # the progress bars' label: each pass searches and fits anew
        label = f"pass {index + 1} of {len(passes)} ({'D^H' if adjoint else 'D'})"
        search = _BeamSearch(permuted, options, sketch_seed, label)
        with _threads(options.workers) as workers:
            search.run(workers.map)
            n_splits, narrowed = n_splits + search.n_splits, narrowed or search.narrowed
            estimates = search.complete_chains()
            fitted = _refine(
                permuted, norm, estimates, pass_included, svd, options, fit_seed, workers, label
            )
        candidates = [(error, chain.n_params, i) for i, (chain, (_, error)) in enumerate(fitted)]
        if best is None:
            candidates += [(error, rank * (m + n), -rank) for rank, error in svd.candidates()]
        elif not candidates:  # a pass whose every chain was estimated above the SVD
            continue
        of_target = partial(_candidate_of_target, fitted, svd, adjoint, row_perm, col_perm)
        error, operator = _lowest_restored(candidates, of_target, scale, matrix)
        if best is None or error < best[0]:
            errors = {_factor_tuples(chain): fit[1] for chain, fit in fitted}
            records = [
                (factors, estimate, errors.get(factors))
                for estimate, n_params, factors in estimates
                if n_params <= options.max_params
            ]
            if adjoint:  # chains of D^H: their adjoints are chains of D
                records = [(_transposed(factors), *rest) for factors, *rest in records]
            specs: dict[tuple[int, ...], FactorSpec] = {}
            explored = [
                ExploredChain(_chain_of(factors, specs), estimate, fit_error)
                for factors, estimate, fit_error in records
            ]
            best = (error, operator, explored)
    assert best is not None
    error, operator, explored = best
    return ApproximationResult(
        operator, error, explored, svd.baseline, n_splits, narrowed, time.perf_counter() - start
    )


def _passes(
    matrix: np.ndarray, permutation: str | None, included: list[Chain], options: _Options
) -> list[tuple[bool, np.ndarray | None, np.ndarray | None, list[Chain]]]:
    """The searches of :func:`approximate`: ``(adjoint, row_perm, col_perm, included)``.

    The beam search grows chains from one side, and the transposes of the chains
    it finds are often beyond it (the transpose of the product of a three-factor
    64 x 64 chain came out at a relative error of 0.58, where the product itself
    is found to rounding): it searches ``D`` and then ``D^H``, whose
    chains are the adjoints of ``D``'s, each as given and, with
    ``permutation="auto"``, under every candidate permutation. The included
    chains are fitted to ``D``; the ``D^H`` passes fit the butterflies of its shape.
    A Hermitian ``D`` (a covariance or a symmetric kernel) is its own ``D^H``: its
    search would find what ``D``'s finds, and is skipped.
    """
    m, n = matrix.shape
    hermitian = m == n and np.array_equal(matrix, matrix.conj().T)
    passes = []
    for adjoint, (rows, cols) in ((False, (m, n)), (True, (n, m)))[: 1 if hermitian else 2]:
        fitted = butterfly_candidates(rows, cols, options) if adjoint else included
        pairs = candidate_permutations(rows, cols).values() if permutation else [(None, None)]
        passes += [(adjoint, row_perm, col_perm, fitted) for row_perm, col_perm in pairs]
    return passes


def _checked_options(
    max_params: Any,
    max_factors: Any,
    n_sweeps: Any,
    tol: Any,
    beam_width: Any,
    refine: Any,
    max_splits: Any,
    include: Any,
    permutation: Any,
    progress: Any,
    workers: Any,
) -> tuple[_Options, list[Chain]]:
    """:func:`approximate`'s options and included chains, checked before the target is read."""
    options = _Options.checked(
        max_params, max_factors, n_sweeps, tol, beam_width, refine, max_splits, progress, workers
    )
    if permutation not in (None, "auto"):
        raise ValueError(f"permutation must be None or 'auto', got {permutation!r}")
    return options, _checked_chains(include)


def _checked_target(target: Any, options: _Options, included: list[Chain]) -> np.ndarray:
    """The target, read once its shape is checked against the budget and the included
    chains; then the included chains within the budget checked fittable."""

    def check_shape(shape: tuple[int, int]) -> None:  # before any entry is read
        _check_shapes(included, shape)
        _check_budget(shape, options)

    limit = (
        f"approximate accepts, MAX_APPROXIMATE_ENTRIES = {MAX_APPROXIMATE_ENTRIES:,} "
        "(pydebut.fit): choose a chain (pydebut.min_param_chain) and fit it with "
        "fit_hierarchical, or pydebut.dask.fit_hierarchical beyond memory"
    )
    matrix = load_target(target, None, (MAX_APPROXIMATE_ENTRIES, limit), check_shape)
    _check_fittable(included, options)
    return matrix


def check_arguments(target: Any, max_params: Any, **options: Any) -> None:
    """Refuse what ``approximate(target, max_params, **options)`` refuses before its search.

    The target is read only if it is a NumPy array; another target (a path, a sparse
    matrix, an operator) is checked by the call itself.

    Raises
    ------
    TypeError, ValueError
        As :func:`approximate` would, before any work.
    """
    arguments = inspect.signature(approximate).bind(target, max_params, **options)
    arguments.apply_defaults()
    values = arguments.arguments
    names = inspect.signature(_checked_options).parameters
    checked, included = _checked_options(**{name: values[name] for name in names})
    random_generator(values["rng"])
    if isinstance(target, np.ndarray):
        _checked_target(target, checked, included)


#: ``each(function, items)``: ``[function(item) for item in items]``, perhaps on threads.
_Mapper = Callable[[Callable[[Any], Any], Sequence[Any]], list[Any]]


class _Workers:
    """``workers`` threads (this one if 1) that run functions under the caller's
    ``numpy.errstate`` (which is per thread). The splits are NumPy products and LAPACK
    decompositions, and the fits NumPy, LAPACK and Numba calls, which release the GIL."""

    def __init__(self, pool: ThreadPoolExecutor | None, workers: int) -> None:
        self.pool, self.count, self.errors = pool, workers, np.geterr()

    def _under_errstate(self, function: Callable[..., Any], *args: Any) -> Any:
        with np.errstate(**self.errors):
            return function(*args)

    def map(self, function: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
        """``[function(item) for item in items]``, on the threads."""
        if self.pool is None:
            return [function(item) for item in items]
        return list(self.pool.map(partial(self._under_errstate, function), items))

    def submit(self, function: Callable[..., Any], *args: Any) -> Future:
        """``function(*args)`` started on a thread; on this one, at once, if there is one."""
        if self.pool is not None:
            return self.pool.submit(self._under_errstate, function, *args)
        done: Future = Future()
        try:
            done.set_result(function(*args))
        except Exception as error:  # raised again by done.result(), as a thread's would be
            done.set_exception(error)
        return done


@contextmanager
def _threads(workers: int) -> Iterator[_Workers]:
    """:class:`_Workers` on ``workers`` threads, shut down (waiting for them) on exit."""
    if workers == 1:
        yield _Workers(None, 1)
        return
    with ThreadPoolExecutor(workers, thread_name_prefix="pydebut-search") as pool:
        yield _Workers(pool, workers)


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask where the system has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _checked_workers(workers: Any) -> int:
    """``workers`` as a thread count: at most :func:`usable_cpus`, all of them for -1."""
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)):
        raise TypeError(f"workers must be an int, got {type(workers).__name__}")
    if workers != -1 and workers < 1:
        raise ValueError(
            f"workers must be >= 1, or -1 for every CPU this process may use, got {shown(workers)}"
        )
    cpus = usable_cpus()
    return cpus if workers == -1 else min(int(workers), cpus)


def ladder_top(budget: int) -> int:
    """The search's budget for ``budget``: the smallest power of two at least ``budget``."""
    return 1 << (budget - 1).bit_length()


def band(committed: int) -> int:
    """Band of a node: ``i`` with ``2^(i-1) < committed <= 2^i``."""
    return (committed - 1).bit_length()


# --- options --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Options:
    max_params: int
    max_factors: int
    n_sweeps: int
    tol: float | None
    beam_width: int
    refine: int
    max_splits: int
    progress: bool
    workers: int  # threads that compute split spectra

    @classmethod
    def checked(
        cls,
        max_params: Any,
        max_factors: Any,
        n_sweeps: Any,
        tol: Any,
        beam_width: Any,
        refine: Any,
        max_splits: Any,
        progress: Any,
        workers: Any,
    ) -> _Options:
        values = {}
        for name, value, least in (
            ("max_params", max_params, 1),
            ("max_factors", max_factors, 1),
            ("n_sweeps", n_sweeps, 0),
            ("beam_width", beam_width, 1),
            ("refine", refine, 1),
            ("max_splits", max_splits, 1),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise TypeError(f"{name} must be an int, got {type(value).__name__}")
            if value < least:
                raise ValueError(f"{name} must be >= {least}, got {value}")
            values[name] = int(value)
        _check_sweeps(n_sweeps)  # at most MAX_SWEEPS
        tol = _check_tol(tol)
        progress_bars(progress)  # a bool, and tqdm installed if it is True
        return cls(tol=tol, progress=bool(progress), workers=_checked_workers(workers), **values)

    def hierarchical(self) -> _Options:
        """These options without ALS sweeps."""
        return dataclasses.replace(self, n_sweeps=0)


#: Largest rank weight of the butterflies that :func:`butterfly_candidates` proposes.
MAX_BUTTERFLY_RANK = 8


def butterfly_candidates(m: int, n: int, options: _Options) -> list[Chain]:
    """The rank-weighted radix-2 and radix-4 butterflies of an ``m x n`` matrix within
    the budget, of every uniform rank weight ``w <= MAX_BUTTERFLY_RANK``.

    Choices ``(b, c, w) = (radix, radix, w)`` at every level while ``radix`` still
    divides what is left of both sides, the last factor taking the rest (at most
    ``max_factors`` factors, at least three). These are the chains of the butterfly
    factorization of complementary low-rank kernels (oscillatory kernels, Fourier
    integral operators): their error builds up evenly over the levels, so the beam,
    which ranks prefixes by the error so far, can drop them before they pay off.
    They are fitted like included chains; the set within a budget only grows with
    the budget, which keeps the search monotone.
    """
    chains = []
    for radix in (2, 4):
        depth = 0
        while (
            depth + 2 <= options.max_factors
            and (m // radix**depth) % radix == 0
            and (n // radix**depth) % radix == 0
            and radix ** (depth + 1) < min(m, n)
        ):
            depth += 1
        if depth < 2:
            continue
        for w in range(1, MAX_BUTTERFLY_RANK + 1):
            chain = _rank_weighted_chain(m, n, [(radix, radix, w)] * depth)
            if chain.n_params > options.max_params:
                break
            chains.append(chain)
    return chains


def _rank_weighted_chain(m: int, n: int, choices: list[tuple[int, int, int]]) -> Chain:
    """The chain of choices ``(b_l, c_l, w_l)`` (module docstring), the last factor
    taking what is left of ``m`` and ``n``: Le et al.'s ``(a, b, c, d, w_{l-1}, w_l)``."""
    bs = [b for b, _, _ in choices]
    cs = [c for _, c, _ in choices]
    bs.append(m // prod(bs))
    cs.append(n // prod(cs))
    ranks = [1, *(w for _, _, w in choices), 1]
    return Chain.from_abcd(
        [
            (prod(cs[:l]), bs[l], cs[l], prod(bs[l + 1 :]), ranks[l], ranks[l + 1])
            for l in range(len(bs))  # noqa: E741 - l numbers factors, as in the maths
        ]
    )


def _checked_chains(chains: Iterable[Any]) -> list[Chain]:
    """``include`` as a list of at most :data:`MAX_INCLUDE` Chains (see :func:`_check_shapes`)."""
    if isinstance(chains, (Chain, str, bytes)) or not isinstance(chains, Iterable):
        raise TypeError(
            f"include must be an iterable of Chain (e.g. [chain]), got {type(chains).__name__}"
        )
    checked = list(islice(chains, MAX_INCLUDE + 1))  # an endless iterator ends here
    if len(checked) > MAX_INCLUDE:
        raise ValueError(
            f"include gives more than MAX_INCLUDE = {MAX_INCLUDE:,} chains (pydebut.fit): list "
            "each chain once, and only those worth a fit each"
        )
    for index, chain in enumerate(checked):
        if not isinstance(chain, Chain):
            raise TypeError(f"include[{index}] must be a Chain, got {type(chain).__name__}")
    return checked


def _check_budget(shape: tuple[int, int], options: _Options) -> None:
    """Refuse a budget below the smallest chain of the shape: from ``m n`` weights on, the
    one-factor dense chain holds the target (a 1 x 1 one too, whose factor is diagonal)."""
    m, n = shape
    if options.max_params >= m * n:
        return
    smallest = _Completions(m, n).cheapest(options.max_factors, m, 1, 1)
    if smallest > options.max_params:
        raise ValueError(
            f"no chain of at most {options.max_factors} factors for a {m} x {n} matrix has at "
            f"most max_params={options.max_params} weights (the smallest has {smallest})"
        )


def _check_fittable(chains: list[Chain], options: _Options) -> None:
    """Refuse, before the search, an included chain within the budget that no fit can take:
    outside the hierarchical family, it is fitted by ALS alone, which refuses factor updates
    that couple too many weights (:class:`~pydebut.fit._als.CouplingLimitError`)."""
    for index, chain in enumerate(chains):
        if chain.n_params > options.max_params or _in_hierarchical_family(chain):
            continue  # skipped, as documented; or fitted hierarchically, then by ALS if it can
        try:
            tall = chain.shape[0] > chain.shape[1]
            _couplings(chain.T if tall else chain, tall)
        except CouplingLimitError as err:
            raise CouplingLimitError(f"include[{index}]: {err}") from None


def _check_shapes(chains: list[Chain], shape: tuple[int, int]) -> None:
    for index, chain in enumerate(chains):
        if chain.shape != shape:
            raise ValueError(
                f"include[{index}] is {chain.shape[0]} x {chain.shape[1]}, the target "
                f"{shape[0]} x {shape[1]}"
            )


# --- the cheapest completions ------------------------------------------------------------


class _Completions:
    """Fewest weights that complete a prefix, by dynamic programming over states.

    A state is ``(factors left, b_l ... b_L, c_1 ... c_{l-1}, w_{l-1})``; later
    ranks are 1 in the cheapest completion, since weights grow with every rank.
    """

    def __init__(self, m: int, n: int) -> None:
        self.n = n
        self.cheapest = cache(self._cheapest)

    def _cheapest(self, left: int, m_rest: int, n_done: int, w_in: int) -> float:
        n_rest = self.n // n_done
        head = n_done * m_rest * w_in
        best = inf if m_rest * w_in == n_rest == 1 else head * n_rest
        if left > 1:
            for b in _divisors(m_rest):
                for c in _divisors(n_rest):
                    if b * w_in == c == 1 or (b == m_rest and c == n_rest):
                        continue
                    best = min(best, head * c + self.cheapest(left - 1, m_rest // b, n_done * c, 1))
        return best


# --- the search --------------------------------------------------------------------------


@dataclass(eq=False)
class _Node:
    """A prefix of choices; ``entries`` (``k x R x S x 1``) are computed on expansion."""

    m_rest: int
    n_done: int
    w_in: int
    factors: tuple[tuple[int, int, int, int, int], ...]
    params: int
    residual2: float
    committed: int
    compressed: bool = False  # the last split kept a rank below the blocks' smaller side
    parent: _Node | None = None
    split: _Split | None = None
    entries: np.ndarray | None = field(default=None, repr=False)

    def materialise(self) -> np.ndarray:
        if self.entries is None:
            assert self.parent is not None and self.split is not None
            self.entries = _right_part(self.parent.materialise(), self.split)
        return self.entries


@dataclass(frozen=True, eq=False)
class _PlannedSplit:
    """A split ``(b, c)`` of ``node``'s entries, its ranks ``(w, committed)`` and the
    key that seeds its range finder; ``geometry`` has ``R1 = b w_in``, ``B2 = t``,
    ``C1 = c`` and ``S2`` the columns of a sub-block."""

    node: _Node
    head: int  # rows of the split's factor: n_done m_rest w_in
    energy: float  # ||entries||^2 of the node
    geometry: _Split
    ranks: list[tuple[int, int]]
    key: tuple[int, ...]

    def children(self, discarded: np.ndarray) -> list[_Node]:
        """The node's children at every rank, given the split's squared residuals."""
        node, head, geometry = self.node, self.head, self.geometry
        rows, t, c, cols = geometry.R1, geometry.B2, geometry.C1, geometry.S2
        return [
            _Node(
                t,
                node.n_done * c,
                w,
                (*node.factors, (head, node.n_done * c * w * t, rows, c * w, t)),
                node.params + head * c * w,
                node.residual2 + discarded[w],
                committed,
                w < min(rows, cols),
                node,
                _Split(geometry.k, rows, t, c, cols, 1, w),
            )
            for w, committed in self.ranks
        ]


class _BeamSearch:
    """The banded beam search at the ladder point ``ladder_top(max_params)``.

    Every decision about a node (kept, dropped, dominated, narrowed) depends only on
    the nodes and complete chains of its band and the bands below it, never on the
    budget: see the module's notes for why this makes the answer monotone.
    """

    def __init__(self, matrix: np.ndarray, options: _Options, seed: int, label: str) -> None:
        # A split's residual is the node's energy less what its kept vectors capture: in
        # single precision that difference carries noise near 1e-7 of the total, which
        # would rank every chain below about 3e-4 on noise. The search runs in double.
        matrix = in_double(matrix)
        self.m, self.n = matrix.shape
        self.seed = seed
        self.options = options
        self.label = label
        self.limit = ladder_top(options.max_params)
        self.total2 = float(np.linalg.norm(matrix)) ** 2
        self.exact2 = EXACT_RESIDUAL * self.total2
        self.completions = _Completions(self.m, self.n)
        root_entries = np.ascontiguousarray(matrix.reshape(1, self.m, self.n, 1))
        self.root = _Node(self.m, 1, 1, (), 0, 0.0, 0, entries=root_entries)
        # complete chains: factors -> (weights, squared residual); and, by band of weights,
        # the smallest score of the band's chains, and the fewest weights of an exact chain
        self.complete: dict[tuple[tuple[int, ...], ...], tuple[int, float]] = {}
        self.lowest_by_band: dict[int, float] = {}
        self.fewest_exact: int | None = None
        self.splits_per_band: dict[int, int] = {}
        self.n_splits = 0
        self.narrowed: str | None = None
        self.bar: Any = None

    def run(self, each: _Mapper) -> None:
        """Search; ``each(function, items)`` computes the splits' spectra and the kept
        nodes' entries (in order, on the workers)."""
        self._finish(self.root)
        beam = [self.root]
        self.bar = _bar(self.options.progress, f"{self.label}: searching chains", "split")
        try:
            for depth in range(self.options.max_factors - 1):
                planned = [split for node in beam for split in self._planned(node, depth)]
                if self.bar is not None:  # the splits planned so far, this depth's to come
                    self.bar.set_description(
                        f"{self.label}: searching chains, factor {depth + 1} of "
                        f"{self.options.max_factors}",
                        refresh=False,
                    )
                    self.bar.total = self.n_splits
                    self.bar.refresh()
                residuals = each(self._counted_discarded, planned)
                children = [
                    child
                    for split, discarded in zip(planned, residuals)
                    for child in split.children(discarded)
                ]
                for child in children:
                    self._finish(child)
                undominated = self._undominated(children)
                bands: dict[int, list[_Node]] = {}
                for child in undominated:
                    bands.setdefault(band(child.committed), []).append(child)
                beam = [
                    node
                    for index in sorted(bands)
                    for node in _select(bands[index], self.options.beam_width, self.exact2)
                ]
                each(_Node.materialise, beam)  # compute the entries, then let the ancestors go
                for node in beam:
                    node.parent = None
                if not beam:
                    break
        finally:
            if self.bar is not None:
                self.bar.close()
        if self.narrowed:
            warnings.warn(self.narrowed, SearchNarrowedWarning, stacklevel=3)

    def score(self, residual2: float) -> float:
        """The residual, with residuals at rounding level counted as exact (zero)."""
        return 0.0 if residual2 <= self.exact2 else residual2

    def _undominated(self, nodes: list[_Node]) -> list[_Node]:
        """Nodes that no complete chain of their band or below dominates (branch and
        bound within the band).

        A node is dropped when a complete chain of its band or a lower one has a
        residual below the node's (up to rounding), which every completion of the node
        has at least; or when an exact chain (residual at rounding level) has at most
        the node's committed parameters, or lies in a lower band. An exact chain of
        the node's own band with more parameters does not drop it: the node may
        complete to an exact chain within a budget that the other one exceeds. Only
        chains of the node's band and below take part.
        """
        fewest_exact = self.fewest_exact
        lowest: dict[int, float] = {}  # band -> smallest score of the chains of that band or below
        kept = []
        for node in nodes:
            index = band(node.committed)
            if fewest_exact is not None and (
                index > band(fewest_exact) or node.committed >= fewest_exact
            ):
                continue
            if index not in lowest:
                lowest[index] = min(
                    (score for j, score in self.lowest_by_band.items() if j <= index), default=inf
                )
            if lowest[index] * (1 + 1e-9) + self.exact2 < node.residual2:
                continue
            kept.append(node)
        return kept

    def _finish(self, node: _Node) -> None:
        """Record the chain that ends after ``node`` with one factor, if it fits."""
        n_rest = self.n // node.n_done
        r = node.m_rest * node.w_in
        cost = node.n_done * r * n_rest
        if r == n_rest == 1 or node.params + cost > self.limit:
            return
        factors = (*node.factors, (node.n_done * r, self.n, r, n_rest, 1))
        n_params, score = node.params + cost, self.score(node.residual2)
        self.complete[factors] = (n_params, node.residual2)
        index = band(n_params)
        self.lowest_by_band[index] = min(self.lowest_by_band.get(index, inf), score)
        if score == 0.0 and (self.fewest_exact is None or n_params < self.fewest_exact):
            self.fewest_exact = n_params

    def _planned(self, node: _Node, depth: int) -> list[_PlannedSplit]:
        """The splits of ``node`` that the search computes, counted against their bands."""
        budget = self.limit - node.params
        left = self.options.max_factors - depth - 1  # factors after this one
        n_rest = self.n // node.n_done
        head = node.n_done * node.m_rest * node.w_in
        entries = node.materialise()
        energy = float(np.vdot(entries, entries).real)  # ||entries||^2, shared by all splits
        planned = []
        for b in _divisors(node.m_rest):
            for c in _divisors(n_rest):
                if b == node.m_rest and c == n_rest:
                    continue
                rows, cols, t = b * node.w_in, n_rest // c, node.m_rest // b
                ranks = []
                for w in range(1, min(rows, cols) + 1):
                    if rows == c * w == 1:
                        continue
                    # max(): a child never commits fewer weights than its parent (the
                    # band order the nesting argument relies on)
                    committed = max(
                        node.committed,
                        node.params
                        + head * c * w
                        + self.completions.cheapest(left, t, node.n_done * c, w),
                    )
                    if committed - node.params > budget:
                        break
                    ranks.append((w, int(committed)))
                if not ranks or not self._count_split(band(ranks[0][1]), depth):
                    continue
                geometry = _Split(entries.shape[0], rows, t, c, cols, 1, 1)
                key = (*(x for f in node.factors for x in f), b, c)
                planned.append(_PlannedSplit(node, head, energy, geometry, ranks, key))
        return planned

    def _count_split(self, index: int, depth: int) -> bool:
        """Count a split against the band of its cheapest child; False once the band
        has had ``max_splits`` of them (the search is then narrowed in that band)."""
        used = self.splits_per_band.get(index, 0)
        if used >= self.options.max_splits:
            if self.narrowed is None:
                self.narrowed = (
                    f"approximate reached max_splits={self.options.max_splits} split spectra "
                    f"in the band of {1 << (index - 1)} to {1 << index} parameters at depth "
                    f"{depth + 1} of its {self.label}; raise max_splits or lower "
                    "beam_width/max_factors to search further"
                )
            return False
        self.splits_per_band[index] = used + 1
        self.n_splits += 1
        return True

    def _counted_discarded(self, split: _PlannedSplit) -> np.ndarray:
        """:meth:`_discarded`, counted on the progress bar once computed."""
        discarded = self._discarded(split)
        if self.bar is not None:
            self.bar.update()
        return discarded

    def _discarded(self, split: _PlannedSplit) -> np.ndarray:
        """Squared residual of ``split`` at every rank of its ``ranks`` (pairs
        ``(w, committed)``), indexed by ``w`` (zero from ``min(R1, S2)``).

        The ranks whose children fall in one band are scored together, the same way
        whatever the search's ladder point is: exactly (Gram eigenvalues) when the
        blocks' smaller side is at most ``SKETCH_FACTOR * (w_top + SKETCH_MARGIN)``
        (``w_top`` the band's largest rank), otherwise by a range finder of
        ``w_top + SKETCH_MARGIN`` columns with power iterations, seeded from the
        search's seed, the prefix, ``b``, ``c`` and the band (``key``). A range finder
        captures at most the optimal energy: the residual is then an upper bound.
        """
        geometry, ranks = split.geometry, split.ranks
        side = min(geometry.R1, geometry.S2)
        discarded = np.zeros(ranks[-1][0] + 1)
        if ranks[0][0] >= side:  # every kept rank is exact
            return discarded
        entries = split.node.materialise()
        blocks = np.ascontiguousarray(geometry.blocks(entries))
        blocks = blocks.reshape(-1, geometry.R1, geometry.S2)
        if geometry.R1 > geometry.S2:
            blocks = np.swapaxes(blocks, -1, -2).conj()
        groups: dict[int, list[int]] = {}
        for w, committed in ranks:
            if w < side:
                groups.setdefault(band(committed), []).append(w)
        exact = None
        for index, group in groups.items():
            width = group[-1] + SKETCH_MARGIN
            if exact is not None or side <= SKETCH_FACTOR * width:
                if exact is None:
                    gram = blocks @ np.swapaxes(blocks, -1, -2).conj()
                    exact = np.clip(np.linalg.eigvalsh(gram), 0, None).sum(axis=0)[::-1]
                energies = exact
            else:
                seeds = np.random.SeedSequence((self.seed, *split.key, index))
                probe = np.random.default_rng(seeds)
                energies = _captured_energies(blocks, width, probe)
            captured = np.cumsum(energies)
            for w in group:
                discarded[w] = max(split.energy - captured[w - 1], 0.0)
        return discarded

    def complete_chains(self) -> list[_Estimate]:
        """Complete chains by estimated relative error, then parameters, then factors."""
        scale = self.total2 if self.total2 > 0 else 1.0
        return sorted(
            _Estimate(float(np.sqrt(residual2 / scale)), n_params, factors)
            for factors, (n_params, residual2) in self.complete.items()
        )


def _right_part(entries: np.ndarray, split: _Split) -> np.ndarray:
    """The right part ``U^H M`` of :func:`fit_hierarchical`'s split, up to a unitary
    mixing of the kept rows of each sub-block (which leaves later splits unchanged).

    ``U`` comes from :func:`~pydebut.fit._hierarchical._leading_vectors`, without the
    phases :func:`fit_hierarchical` gives its columns (the search needs only the
    subspace).
    """
    rows, cols, rank = split.R1, split.S2, split.w
    blocks = np.ascontiguousarray(split.blocks(entries)).reshape(-1, rows, cols)
    kept = min(rank, rows, cols)
    # smallest kept singular value first, the order the search's results were pinned in
    # (another order rounds later spectra differently: a few splits decide otherwise)
    basis_h = np.swapaxes(_leading_vectors(blocks, kept)[..., ::-1], -1, -2).conj()
    right = np.zeros((split.k * split.C1, rank * split.B2, cols, split.t), dtype=blocks.dtype)
    shape = (split.k, split.C1, split.B2, split.t, kept, cols)
    split.right_blocks(right)[..., :kept, :] = (basis_h @ blocks).reshape(shape)
    return right


def _captured_energies(
    blocks: np.ndarray, width: int, generator: np.random.Generator, power: int = 2
) -> np.ndarray:
    """Energies ``sigma_i**2`` (summed over blocks, descending) of ``Q^H M`` for a range
    finder ``Q`` of ``width`` columns per ``a x b`` block ``M`` (``a <= b``)."""
    probe = generator.standard_normal((blocks.shape[-1], width)).astype(blocks.dtype)
    adjoint = np.swapaxes(blocks, -1, -2).conj()
    basis, _ = np.linalg.qr(blocks @ probe)
    for _ in range(power):
        basis, _ = np.linalg.qr(blocks @ (adjoint @ basis))
    projected = np.swapaxes(basis, -1, -2).conj() @ blocks
    gram = projected @ np.swapaxes(projected, -1, -2).conj()
    return np.clip(np.linalg.eigvalsh(gram), 0, None).sum(axis=0)[::-1]


def _select(children: list[_Node], width: int, exact2: float) -> list[_Node]:
    """The prefixes kept at one depth.

    First the exact prefixes whose last split compressed (kept a rank below
    the blocks' smaller side: structure was found), fewest committed
    parameters first; then the Pareto layers of (residual, committed
    parameters) of the other prefixes whose last split compressed, and after
    them those of the prefixes whose last split did not, spread evenly within
    the last layer taken.

    A split that keeps the full rank discards nothing whatever the target: its
    residual is its parent's, a bound that says nothing of how the entries
    it passes on will split. Were such prefixes in the same layers, those with
    the smallest residual (zero at depth 1) would end layers and could push a
    compressing prefix that discards only a little (a product of a chain plus
    noise) out of the beam: on the VGG conv1 chain's product plus 2.8e-4
    relative noise, the chain's first prefix (relative squared residual 5e-8)
    was below four such prefixes in fewer committed parameters, was not among
    the 16 kept, and the search's answer was 0.24 (now 2.7e-4).
    """

    def score(node: _Node) -> float:
        return 0.0 if node.residual2 <= exact2 else node.residual2

    ordered = sorted(children, key=lambda node: (node.committed, score(node), node.factors))
    chosen = [node for node in ordered if node.compressed and score(node) == 0][:width]
    others = [node for node in ordered if not (node.compressed and score(node) == 0)]
    for compressed in (True, False):
        remaining = [node for node in others if node.compressed == compressed]
        while remaining and len(chosen) < width:
            front, rest, best = [], [], inf
            for node in remaining:
                if score(node) < best:
                    front.append(node)
                    best = score(node)
                else:
                    rest.append(node)
            need = width - len(chosen)
            if len(front) > need:
                picks = np.unique(np.linspace(0, len(front) - 1, need).round().astype(int))
                front = [front[i] for i in picks]
            chosen += front
            remaining = rest
    return chosen


# --- baseline and refinement ----------------------------------------------------------------


class _TruncatedSVD:
    """The truncated SVDs of every rank ``j <= k = floor(max_params / (m + n))``.

    Each rank's error is measured (the target minus the rank-``j`` product, row block
    by row block) by the same operations whatever ``k`` is, so a larger budget only
    adds ranks. The exact SVD serves targets up to ``EXACT_SVD_ENTRIES`` entries;
    above, a range finder whose width follows :func:`ladder_top` of the budget and
    whose probe columns are the first ones of any wider probe (nested ranges).
    """

    def __init__(self, matrix: np.ndarray, max_params: int, norm: float, seed: int) -> None:
        m, n = matrix.shape
        self.shape = (m, n)
        rank = min(max_params // (m + n), m, n)
        randomized = matrix.size > EXACT_SVD_ENTRIES
        if rank == 0:
            self.scaled_u, self.vh = np.zeros((m, 0)), np.zeros((0, n))
        elif randomized:
            width = min(ladder_top(max_params) // (m + n), m, n)
            u, s, self.vh = _randomized_svd(matrix, width, np.random.default_rng(seed))
            self.scaled_u, self.vh = (u * s)[:, :rank], self.vh[:rank]
        else:
            u, s, vh = _thin_svd(matrix)
            self.scaled_u, self.vh = (u * s)[:, :rank], vh[:rank]
        self.errors = _truncation_errors(matrix, self.scaled_u, self.vh, norm)
        error = self.errors[-1] if rank else (1.0 if norm > 0 else 0.0)
        self.baseline = SVDBaseline(rank, rank * (m + n), float(error), randomized)

    def candidates(self) -> list[tuple[int, float]]:
        """``(rank, measured error)`` for every rank ``1 .. k``."""
        return [(rank, float(error)) for rank, error in enumerate(self.errors, start=1)]

    def best_within(self, n_params: int) -> float:
        """Smallest error of the truncations with at most ``n_params`` weights."""
        count = min(n_params // sum(self.shape), len(self.errors))
        return float(self.errors[:count].min()) if count else inf

    def operator(self, rank: int) -> DeButOperator:
        """The rank-``rank`` product ``[(m, j, m, j, 1), (j, n, j, n, 1)]``."""
        m, n = self.shape
        chain = Chain([(m, rank, m, rank, 1), (rank, n, rank, n, 1)])
        weights = [
            self.scaled_u[:, :rank].reshape(1, m, rank, 1),
            self.vh[:rank].reshape(1, rank, n, 1),
        ]
        return DeButOperator(chain, weights)


def _truncation_errors(
    matrix: np.ndarray, scaled_u: np.ndarray, vh: np.ndarray, norm: float
) -> np.ndarray:
    """Relative errors ``||D - U_j V_j||_F / ||D||_F`` for ``j = 1 .. k``, measured by
    subtracting one rank-one term at a time from blocks of rows."""
    m, n = matrix.shape
    rows = max(1, (1 << 16) // n)
    squares = np.zeros(scaled_u.shape[1])
    for start in range(0, m, rows):
        rest = matrix[start : start + rows].astype(np.result_type(matrix, vh), copy=True)
        for j in range(scaled_u.shape[1]):
            rest -= np.outer(scaled_u[start : start + rows, j], vh[j])
            squares[j] += np.vdot(rest, rest).real
    return np.sqrt(squares) / norm if norm > 0 else np.sqrt(squares)


def _thin_svd(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The thin SVD by LAPACK's divide and conquer (``gesdd``), or by ``gesvd`` where
    ``gesdd`` does not converge (it can fail on finite, ill-conditioned matrices)."""
    try:
        return np.linalg.svd(matrix, full_matrices=False)
    except np.linalg.LinAlgError:
        return scipy.linalg.svd(matrix, full_matrices=False, lapack_driver="gesvd")


def _randomized_svd(
    matrix: np.ndarray, rank: int, generator: np.random.Generator, power: int = 4
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Range finder with ``power`` re-orthonormalised power iterations (Halko et al.).

    The probe is drawn row by row of its transpose, so a narrower probe from the same
    seed is made of the first columns of a wider one.
    """
    m, n = matrix.shape
    width = min(rank + 10, m, n)
    probe = generator.standard_normal((width, n)).T.astype(matrix.dtype)
    basis, _ = np.linalg.qr(matrix @ probe)
    for _ in range(power):
        basis, _ = np.linalg.qr(matrix.T.conj() @ basis)
        basis, _ = np.linalg.qr(matrix @ basis)
    u, s, vh = _thin_svd(basis.T.conj() @ matrix)
    return (basis @ u)[:, :rank], s[:rank], vh[:rank]


def _candidate_of_target(
    fitted: list[tuple[Chain, tuple[DeButOperator, float]]],
    svd: _TruncatedSVD,
    adjoint: bool,
    row_perm: np.ndarray | None,
    col_perm: np.ndarray | None,
    index: int,
) -> DeButOperator:
    """A pass's candidate as an operator of ``D``: fitted chain ``index``, or the
    truncated SVD of rank ``-index``, with the pass's permutations, adjoint if the pass
    searched ``D^H``."""
    operator = fitted[index][1][0] if index >= 0 else svd.operator(-index)
    if row_perm is not None or col_perm is not None:
        operator = operator.with_permutations(row_perm, col_perm)
    return operator.H if adjoint else operator


def _lowest_restored(
    candidates: list[tuple[float, int, int]],
    of_target: Callable[[int], DeButOperator],
    scale: TargetScale,
    matrix: np.ndarray,
) -> tuple[float, DeButOperator]:
    """Of the ``candidates`` ``(error, n_params, index)`` (errors on the normalised
    ``matrix``), the operator of the lowest error once scaled back, and that error.

    Scaling back shrinks an operator whose product would overflow (targets near the
    largest float, :meth:`~pydebut.fit._common.TargetScale.shrunk_into_range`), which
    changes its error: the next candidates are scaled back too, in order of their
    errors, until one's error before scaling exceeds the lowest after. Elsewhere the
    first candidate is the answer, its error unchanged.
    """
    best: tuple[float, DeButOperator] | None = None
    for error, _, index in sorted(candidates):
        if best is not None and error > best[0]:
            break
        operator, restored_error = scale.restore_operator(of_target(index), matrix, error)
        if best is None or restored_error < best[0]:
            best = (restored_error, operator)
    assert best is not None
    return best


def _true_error(operator: DeButOperator, matrix: np.ndarray, norm: float) -> float:
    residual = float(np.linalg.norm(operator.toarray() - matrix))
    return residual / norm if norm > 0 else residual


def _refine(
    matrix: np.ndarray,
    norm: float,
    estimates: Sequence[_Estimate],
    included: list[Chain],
    svd: _TruncatedSVD,
    options: _Options,
    seed: int,
    workers: _Workers,
    label: str,
) -> list[tuple[Chain, tuple[DeButOperator, float]]]:
    """Fit the chosen chains of the front within the budget and the included ones.

    The front (:func:`_front`): complete chains, in order of (parameters, estimate,
    factors), whose estimate is below every earlier one's.
    The ``refine`` best front chains of every band of parameters are fitted by
    ``fit_hierarchical`` and ALS; any other front chain whose estimate is below
    the best error measured with fewer parameters (fits and truncated SVDs) is
    fitted by ``fit_hierarchical``: its estimate is the error of that
    factorization (an upper bound where a split was sketched), so it may improve
    on them. (Fitting only those below half the best error, a 25,600-parameter
    chain estimated at 0.0261 was left unfitted beside a fitted one at 0.0313.)
    Both rules look only at chains with at most the chain's parameters and at the
    whole of its band: the fitted set at a smaller budget is the part of the fitted
    set at a larger one within that budget.

    With more than one of ``workers``, the other threads fit the next chains that
    may be fitted (those whose estimate is below the best error so far, which only
    falls) while this one waits for the chain in turn; a chain that an earlier fit
    then rules out is dropped, its fit wasted. Each fit depends only on its chain
    and ``seed``, and the decisions are taken in the queue's order, so the answer
    is the same for any number of threads.
    """
    front = _front(estimates)
    by_band: dict[int, list[_Estimate]] = {}
    for estimate in front:
        by_band.setdefault(band(estimate.n_params), []).append(estimate)
    tops = {e for band_front in by_band.values() for e in band_front[-options.refine :]}

    fitted: list[tuple[Chain, tuple[DeButOperator, float]]] = []
    best = inf
    specs: dict[tuple[int, ...], FactorSpec] = {}
    queue: list[tuple[Chain, float | None, bool]] = [
        (_chain_of(e.factors, specs), e.estimate, e in tops)
        for e in front
        if e.n_params <= options.max_params
    ]
    queue += [(c, None, True) for c in included if c.n_params <= options.max_params]
    bar = _bar(options.progress, f"{label}: fitting candidates", "chain", total=len(queue))

    def start(chain: Chain, polish: bool) -> Future:
        return workers.submit(
            _best_fit, matrix, norm, chain, options if polish else options.hierarchical(), seed
        )

    started: dict[int, Future] = {}  # fits begun ahead of their turn
    ahead = 0  # the next chain to consider starting ahead
    for turn, (chain, score, polish) in enumerate(queue):
        best = min(best, svd.best_within(chain.n_params))
        fit_in_turn = started.pop(turn, None)
        if not polish and not score < best:
            if fit_in_turn is not None:
                fit_in_turn.cancel()
            if bar is not None:
                bar.update()  # ruled out by a better fit, not fitted
            continue
        if fit_in_turn is None:
            fit_in_turn = start(chain, polish)
        ahead = max(ahead, turn + 1)
        while len(started) < workers.count - 1 and ahead < len(queue):
            later, later_score, later_polish = queue[ahead]
            if later_polish or later_score < min(best, svd.best_within(later.n_params)):
                started[ahead] = start(later, later_polish)
            ahead += 1
        fit = fit_in_turn.result()
        fitted.append((chain, fit))
        if score is not None:
            best = min(best, fit[1])
        if bar is not None:
            bar.set_postfix(params=chain.n_params, error=f"{fit[1]:.3g}")
            bar.update()
    for unused in started.values():
        unused.cancel()
    if bar is not None:
        bar.close()
    return fitted


def _best_fit(
    matrix: np.ndarray, norm: float, chain: Chain, options: _Options, seed: int
) -> tuple[DeButOperator, float]:
    """The fit of :func:`_fit` with the lowest true relative error, and that error."""
    fits = [(op, _true_error(op, matrix, norm)) for op in _fit(matrix, chain, options, seed)]
    return min(fits, key=lambda pair: pair[1])


def _front(estimates: Sequence[_Estimate]) -> list[_Estimate]:
    """The complete chains, in order of (parameters, estimate, factors), whose estimate is
    below every earlier one's, from ``estimates`` sorted by (estimate, parameters, factors).

    In that order a chain is on the front exactly when it has fewer parameters than every
    chain before it (one before it has a lower estimate, or the same estimate and comes
    before it in the front's order too): one pass, no sort.
    """
    front: list[_Estimate] = []
    fewest = inf
    for estimate in estimates:
        if estimate.n_params < fewest:
            front.append(estimate)
            fewest = estimate.n_params
    return front[::-1]


def _fit(matrix: np.ndarray, chain: Chain, options: _Options, seed: int) -> list[DeButOperator]:
    """The hierarchical factorization (when the chain allows it) and ALS from it.

    ALS runs where :func:`~pydebut.fit_als` can update the chain's factors; a chain
    whose factor updates couple beyond its limit keeps the hierarchical factorization.
    ALS is seeded from ``seed`` and the chain alone, so a chain's fit does not depend
    on what else is fitted.
    """
    rng = np.random.default_rng(np.random.SeedSequence((seed, *_flat(chain))))
    if not _in_hierarchical_family(chain):  # an included chain: ALS from random factors
        return [
            fit_als(matrix, chain, n_sweeps=options.n_sweeps, tol=options.tol, rng=rng).operator
        ]
    start = fit_hierarchical(matrix, chain).operator
    if options.n_sweeps == 0:
        return [start]
    try:
        als = fit_als(
            matrix, chain, n_sweeps=options.n_sweeps, tol=options.tol, init=start, rng=rng
        )
    except CouplingLimitError:  # ALS cannot update this chain's factors: keep the split
        return [start]
    return [start, als.operator]


def _in_hierarchical_family(chain: Chain) -> bool:
    """Whether :func:`fit_hierarchical` takes ``chain`` (chainable or rank-weighted, or the
    transpose of such a chain)."""
    try:
        _fits_through_transpose(chain)
    except ValueError:
        return False
    return True


def _flat(chain: Chain) -> list[int]:
    return [x for spec in chain for x in (spec.p, spec.q, spec.r, spec.s, spec.t)]


def _factor_tuples(chain: Chain) -> tuple[tuple[int, int, int, int, int], ...]:
    """The factors' ``(p, q, r, s, t)``: the search's record of a chain."""
    return tuple(spec.as_tuple() for spec in chain)


def _transposed(factors: tuple[tuple[int, ...], ...]) -> tuple[tuple[int, ...], ...]:
    """The record of the transposed chain: the factors reversed, each ``(q, p, s, r, t)``."""
    return tuple((q, p, s, r, t) for p, q, r, s, t in reversed(factors))


def _chain_of(
    factors: tuple[tuple[int, ...], ...], specs: dict[tuple[int, ...], FactorSpec]
) -> Chain:
    """The chain of the search's record ``factors``; ``specs`` holds the factors made so
    far (chains share factors: each distinct one is validated once, and the search
    chains them so that they connect)."""
    return Chain._connected(
        tuple(specs.get(f) or specs.setdefault(f, FactorSpec(*f)) for f in factors)
    )


def _bar(enabled: bool, description: str, unit: str, total: int | None = None) -> Any:
    return progress_bars(True)(total=total, desc=description, unit=unit) if enabled else None
