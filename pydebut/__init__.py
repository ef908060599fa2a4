"""pydebut: Deformable Butterfly (DeBut) matrices for NumPy and SciPy.

A DeBut matrix is a product ``F_1 F_2 ... F_L`` of block-diagonal factors made of
grids of diagonal matrices (Lin et al., NeurIPS 2021). pydebut describes such
chains (:class:`FactorSpec`, :class:`Chain`) and applies them as a SciPy
``LinearOperator`` (:class:`DeButOperator`).
"""

from . import special
from .io import load, save
from .operator import DeButOperator
from .spec import Chain, FactorSpec

__version__ = "0.1.0"

__all__ = [
    "Chain",
    "DeButOperator",
    "FactorSpec",
    "__version__",
    "load",
    "save",
    "special",
]
