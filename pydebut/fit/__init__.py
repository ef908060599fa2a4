"""Fitting DeBut chains to a matrix: ALS and hierarchical factorization."""

from ._als import MAX_SWEEPS, MAX_SYSTEM_ENTRIES, fit_als
from ._common import FitResult
from ._dense_target import MAX_DENSE_ENTRIES
from ._hierarchical import candidate_permutations, fit_hierarchical, hierarchy_ranks
from ._search import (
    MAX_APPROXIMATE_ENTRIES,
    MAX_INCLUDE,
    ApproximationResult,
    ExploredChain,
    SearchNarrowedWarning,
    SVDBaseline,
    approximate,
)

__all__ = [
    "MAX_APPROXIMATE_ENTRIES",
    "MAX_DENSE_ENTRIES",
    "MAX_INCLUDE",
    "MAX_SWEEPS",
    "MAX_SYSTEM_ENTRIES",
    "ApproximationResult",
    "ExploredChain",
    "FitResult",
    "SVDBaseline",
    "SearchNarrowedWarning",
    "approximate",
    "candidate_permutations",
    "fit_als",
    "fit_hierarchical",
    "hierarchy_ranks",
]
