"""Fitting DeBut chains to a matrix: ALS and hierarchical factorization."""

from ._als import MAX_SWEEPS, fit_als
from ._common import FitResult
from ._hierarchical import candidate_permutations, fit_hierarchical, hierarchy_ranks
from ._search import (
    ApproximationResult,
    ExploredChain,
    SearchNarrowedWarning,
    SVDBaseline,
    approximate,
)

__all__ = [
    "MAX_SWEEPS",
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
