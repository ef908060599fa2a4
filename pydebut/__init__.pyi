"""The public API as type checkers read it, and the one list of its names.

``__init__.py`` imports each name from the module given here on first use.
"""

from . import special
from ._memory import aligned_empty
from .chains import (
    ChainClass,
    classify,
    count_chains,
    enumerate_chains,
    min_param_chain,
    pareto_front,
    rank_weights,
)
from .conv import conv2d, im2col, kernel_to_matrix, matrix_to_kernel
from .density import DensityResult, is_dense, product_support
from .fit import (
    ApproximationResult,
    FitResult,
    SearchNarrowedWarning,
    SVDBaseline,
    approximate,
    candidate_permutations,
    fit_als,
    fit_hierarchical,
    hierarchy_ranks,
)
from .io import load, save
from .operator import DeButOperator, parallel_launch_lock
from .spec import Chain, FactorSpec

__version__: str

__all__ = [
    "ApproximationResult",
    "Chain",
    "ChainClass",
    "DeButOperator",
    "DensityResult",
    "FactorSpec",
    "FitResult",
    "SVDBaseline",
    "SearchNarrowedWarning",
    "__version__",
    "aligned_empty",
    "approximate",
    "candidate_permutations",
    "classify",
    "conv2d",
    "count_chains",
    "enumerate_chains",
    "fit_als",
    "fit_hierarchical",
    "hierarchy_ranks",
    "im2col",
    "is_dense",
    "kernel_to_matrix",
    "load",
    "matrix_to_kernel",
    "min_param_chain",
    "parallel_launch_lock",
    "pareto_front",
    "product_support",
    "rank_weights",
    "save",
    "special",
]
