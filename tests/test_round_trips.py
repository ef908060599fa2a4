"""Property round trips: twiddle vectors, save/load and kernel folding lose nothing.

Every draw must come back bit for bit, with its dtype, for all four dtypes.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from pydebut import DeButOperator, load, save
from pydebut.conv import conv2d, kernel_to_matrix, matrix_to_kernel
from pydebut.testing import chains, operators

from .example_counts import examples

DTYPES = (np.float32, np.float64, np.complex64, np.complex128)


def assert_same_operator(back: DeButOperator, op: DeButOperator) -> None:
    assert back.chain == op.chain
    assert back.dtype == op.dtype
    for got, expected in zip(back.weights, op.weights, strict=True):
        assert got.dtype == expected.dtype
        np.testing.assert_array_equal(got, expected)


@settings(max_examples=examples(40), deadline=None)
@given(op=operators(chains(max_dim=24, max_factors=4), DTYPES))
def test_twiddle_round_trip(op):
    r_shapes, vector = op.to_twiddle()
    assert vector.dtype == op.dtype and vector.shape == (op.n_params,)
    assert r_shapes == [list(f.as_tuple()) for f in reversed(op.chain.factors)]
    back = DeButOperator.from_twiddle(r_shapes, vector)
    assert_same_operator(back, op)
    again_shapes, again = back.to_twiddle()
    assert again_shapes == r_shapes
    np.testing.assert_array_equal(again, vector)


@settings(max_examples=examples(25), deadline=None)
@given(op=operators(chains(max_dim=24, max_factors=4), DTYPES), compress=st.booleans())
def test_save_load_round_trip(tmp_path_factory, op, compress):
    path = tmp_path_factory.mktemp("io") / "op.npz"
    save(path, op, compress=compress)
    back = load(path)
    assert_same_operator(back, op)
    x = np.ones(op.shape[1], dtype=op.dtype)
    np.testing.assert_array_equal(back @ x, op @ x)


@st.composite
def kernels(draw):
    shape = tuple(draw(st.integers(1, n)) for n in (4, 4, 3, 3))
    dtype = draw(st.sampled_from(DTYPES))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    kernel = rng.standard_normal(shape)
    if np.issubdtype(dtype, np.complexfloating):
        kernel = kernel + 1j * rng.standard_normal(shape)
    return kernel.astype(dtype)


@settings(max_examples=examples(40), deadline=None)
@given(kernel=kernels(), layout=st.sampled_from(["channel-major", "position-major"]))
def test_kernel_folding_round_trip(kernel, layout):
    c_out, c_in, kh, kw = kernel.shape
    matrix = kernel_to_matrix(kernel, layout)
    assert matrix.shape == (c_out, c_in * kh * kw) and matrix.dtype == kernel.dtype
    folded = matrix_to_kernel(matrix, c_in, (kh, kw), layout)
    assert folded.dtype == kernel.dtype
    np.testing.assert_array_equal(folded, kernel)
    np.testing.assert_array_equal(kernel_to_matrix(folded, layout), matrix)


@settings(max_examples=examples(20), deadline=None)
@given(kernel=kernels(), seed=st.integers(0, 2**16))
def test_both_layouts_give_the_same_convolution(kernel, seed):
    _, c_in, kh, kw = kernel.shape
    x = np.random.default_rng(seed).standard_normal((2, c_in, 5, 6))
    outputs = [
        conv2d(x, kernel_to_matrix(kernel, layout), (kh, kw), layout=layout)
        for layout in ("channel-major", "position-major")
    ]
    rtol = 1e-5 if kernel.dtype in (np.float32, np.complex64) else 1e-12
    np.testing.assert_allclose(outputs[0], outputs[1], rtol=rtol, atol=rtol)
