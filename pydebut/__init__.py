"""pydebut: Deformable Butterfly (DeBut) matrices for NumPy and SciPy.

A DeBut matrix is a product ``F_1 F_2 ... F_L`` of block-diagonal factors made of
grids of diagonal matrices (Lin et al., NeurIPS 2021). pydebut describes such
chains (:class:`FactorSpec`, :class:`Chain`), helps choose them
(:func:`enumerate_chains`, :func:`min_param_chain`, :func:`is_dense`) and
applies them as a SciPy ``LinearOperator`` (:class:`DeButOperator`).
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

__version__ = "0.1.0"

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
