"""Chains and random data shared by the fitting tests."""

from __future__ import annotations

import numpy as np

from pydebut import Chain, DeButOperator
from pydebut.special import PAPER_CHAINS

PAPER_512 = PAPER_CHAINS["resnet50-layer4"]
POINTWISE_3_TO_64 = PAPER_CHAINS["pointwise-3-to-64"]
# Not chainable, with coupled unknowns: F_1 mixes all rows, so G is full.
COUPLED = [
    Chain([(2, 2, 2, 2, 1), (2, 2, 2, 2, 1)]),
    Chain([(4, 4, 2, 2, 1), (4, 8, 2, 4, 1)]),
    Chain([(4, 4, 2, 2, 2), (4, 4, 2, 2, 2), (4, 8, 1, 2, 2)]),
    Chain([(2, 2, 2, 2, 1)] * 3),  # H_1 = F_3 F_3^H is full: the dense Gram branch
    # F_2's coupled components are not full rectangles of rows x columns.
    Chain([(4, 12, 1, 3, 4), (12, 9, 4, 3, 1), (9, 9, 9, 9, 1), (9, 9, 1, 1, 1)]),
    # F_2's weights couple across different (b, alpha) rectangles.
    Chain([(3, 3, 3, 3, 1), (3, 3, 1, 1, 1), (3, 4, 3, 4, 1)]),
    Chain([(2, 9, 2, 9, 1), (9, 9, 3, 3, 3), (9, 1, 9, 1, 1)]),
]
CHAINABLE = [
    Chain.from_factorizations([2, 3], [3, 2]),
    Chain.from_factorizations([2, 2, 2], [2, 4, 1]),
]


def random_weights(chain, rng, dtype=np.float64):
    weights = []
    for spec in chain:
        w = rng.standard_normal(spec.weight_shape)
        if np.issubdtype(dtype, np.complexfloating):
            w = w + 1j * rng.standard_normal(spec.weight_shape)
        weights.append(w.astype(dtype))
    return weights


def random_target(shape, rng, dtype=np.float64):
    target = rng.standard_normal(shape)
    if np.issubdtype(dtype, np.complexfloating):
        target = target + 1j * rng.standard_normal(shape)
    return target.astype(dtype)


def dense_product(chain, weights):
    """``F_1 ... F_L`` as a dense array (through the operator's kernels)."""
    return DeButOperator(chain, weights).toarray()


def svd_error(target, rank):
    """The relative error of the best rank-``rank`` approximation of ``target``."""
    s = np.linalg.svd(target, compute_uv=False)
    return np.sqrt(np.sum(s[rank:] ** 2) / np.sum(s**2))
