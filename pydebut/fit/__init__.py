"""Fitting DeBut chains to a matrix: ALS and hierarchical factorization."""

from ._als import fit_als
from ._common import FitResult
from ._hierarchical import candidate_permutations, fit_hierarchical, hierarchy_ranks

__all__ = ["FitResult", "candidate_permutations", "fit_als", "fit_hierarchical", "hierarchy_ranks"]
