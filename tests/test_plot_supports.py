"""plot_chain's pooled support images, computed from the structure, against pooled full supports."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pydebut import Chain
from pydebut.density import partial_supports
from pydebut.plotting import _pooled_images, _product_fractions

from .example_counts import examples
from .strategies_chains import general_chains


def pool(mask: np.ndarray, max_pixels: int) -> np.ndarray:
    """Reference: ``any`` over cells of ``ceil(size / max_pixels)`` entries a side."""
    rows, cols = mask.shape
    fr, fc = -(-rows // max_pixels), -(-cols // max_pixels)
    padded = np.zeros((-(-rows // fr) * fr, -(-cols // fc) * fc), dtype=bool)
    padded[:rows, :cols] = mask
    return padded.reshape(padded.shape[0] // fr, fr, padded.shape[1] // fc, fc).any(axis=(1, 3))


@given(general_chains(max_dim=96, max_factors=3), st.integers(1, 40))
@settings(deadline=None, max_examples=examples(60))
def test_pooled_images_equal_pooled_full_supports(chain, max_pixels):
    factors, products = _pooled_images(chain, max_pixels)
    fractions = _product_fractions(chain)
    full = partial_supports(chain)[::-1]  # full[l] = F_l ... F_L
    for l, spec in enumerate(chain):  # noqa: E741
        np.testing.assert_array_equal(factors[l], pool(spec.support(), max_pixels))
        np.testing.assert_array_equal(products[l], pool(full[l], max_pixels))
        assert fractions[l] == pytest.approx(full[l].mean(), rel=1e-12)


def test_large_chain_is_drawn_from_its_structure_in_bounded_memory():
    size = 2**18  # full supports: 64 GiB of booleans per panel
    chain = Chain([(size, size, 2, 2, size // 2), (size, size, 2, 2, 1)])
    tracemalloc.start()
    try:
        factors, products = _pooled_images(chain, 64)
        fractions = _product_fractions(chain)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20
    assert all(image.shape == (64, 64) for image in factors + products)
    # F_1 pools to the identity plus the diagonal of the other half; F_2 to the diagonal.
    assert factors[1].sum() == 64 and factors[0].sum() == 2 * 64
    assert fractions == [None, None]
