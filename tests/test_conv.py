"""Convolutions through kernel matrices, against a direct loop."""

from __future__ import annotations

import tracemalloc
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.sparse.linalg import aslinearoperator

from pydebut import Chain, fit_hierarchical
from pydebut import _memory as memory_module
from pydebut import conv as conv_module
from pydebut.conv import LAYOUTS, conv2d, im2col, kernel_to_matrix, matrix_to_kernel
from pydebut.operator import DeButOperator

from .fit_cases import dense_product, random_weights


def direct_conv2d(x, kernel, stride, padding, dilation):
    """Cross-correlation by explicit loops over output pixels and kernel taps."""
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    batch, _, height, width = x.shape
    c_out, _, kh, kw = kernel.shape
    padded = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    out_h = (height + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    out_w = (width + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    out = np.zeros((batch, c_out, out_h, out_w), dtype=np.result_type(x, kernel))
    for y in range(out_h):
        for z in range(out_w):
            for i in range(kh):
                for j in range(kw):
                    pixels = padded[:, :, y * sh + i * dh, z * sw + j * dw]  # (batch, c_in)
                    out[:, :, y, z] += pixels @ kernel[:, :, i, j].T
    return out


GEOMETRIES = [
    # kernel, stride, padding, dilation
    ((3, 3), (1, 1), (0, 0), (1, 1)),
    ((3, 3), (1, 1), (1, 1), (1, 1)),
    ((3, 2), (2, 1), (1, 0), (1, 1)),
    ((3, 3), (2, 3), (2, 1), (2, 1)),
    ((1, 1), (1, 1), (0, 0), (1, 1)),
    ((2, 3), (1, 2), (0, 3), (3, 2)),
]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize(("kernel_size", "stride", "padding", "dilation"), GEOMETRIES)
def test_conv2d_equals_direct_convolution(layout, kernel_size, stride, padding, dilation):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 9, 8))
    kernel = rng.standard_normal((4, 3, *kernel_size))
    matrix = kernel_to_matrix(kernel, layout)
    got = conv2d(x, matrix, kernel_size, stride, padding, dilation, layout=layout)
    expected = direct_conv2d(x, kernel, stride, padding, dilation)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


def test_integer_images_and_kernels_are_summed_without_wrapping():
    # uint8 images through an int8 kernel matrix were summed in int16: 16 * 255 * 127 wrapped
    x = np.full((1, 16, 3, 3), 255, dtype=np.uint8)
    kernel = np.full((2, 16, 1, 1), 127, dtype=np.int8)
    got = conv2d(x, kernel_to_matrix(kernel), 1)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, np.full((1, 2, 3, 3), 16 * 255 * 127))


@pytest.mark.parametrize(
    ("x_dtype", "op_dtype", "sum_dtype"),
    [
        (np.bool_, np.bool_, np.int64),
        (np.uint32, np.uint8, np.int64),
        (np.uint64, np.int64, np.float64),
        (np.uint64, np.uint8, np.float64),
        (np.int8, np.uint64, np.float64),
    ],
)
def test_integer_sums_are_int64_but_with_uint64(x_dtype, op_dtype, sum_dtype):
    # the docstring said integers were always summed in 64-bit integers: uint64 images
    # through an int64 matrix were summed in float64, 2**60 + 1 came out as 2**60
    value = 2**60 + 1 if np.dtype(x_dtype).itemsize == 8 else 1
    x = np.full((1, 1, 2, 2), value, dtype=x_dtype)
    got = conv2d(x, np.ones((1, 1), dtype=op_dtype), 1)
    assert got.dtype == sum_dtype
    np.testing.assert_array_equal(got, np.full((1, 1, 2, 2), sum_dtype(value)))


@pytest.mark.parametrize("layout", LAYOUTS)
def test_padding_costs_the_patches_not_the_padded_images(layout):
    # np.pad made the padded images first: 3.2 GB for the one entry of a 1 x 1 image with
    # padding 10000 and stride 20001, here 17 MB for patches of 2 KiB
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 3, 3, 4))
    kernel = rng.standard_normal((2, 3, 3, 3))
    stride, padding, dilation = (1, 601), (300, 300), (300, 300)
    tracemalloc.start()
    try:
        patches = im2col(x, 3, stride, padding, dilation, layout)
        got = conv2d(x, kernel_to_matrix(kernel, layout), 3, stride, padding, dilation, layout)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert patches.shape == (27, 6)
    assert peak < 2**16
    expected = direct_conv2d(x, kernel, stride, padding, dilation)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


def test_a_huge_image_unfolds_in_the_size_of_its_patches():
    # refused as 1 TiB of padded images (conv2d: 8 TiB of int64 images) for one patch entry
    x = np.broadcast_to(np.int8(3), (1, 1, 2**20, 2**20))
    np.testing.assert_array_equal(im2col(x, 1, stride=2**20), [[3]])
    np.testing.assert_array_equal(conv2d(x, np.full((1, 1), 2, np.int8), 1, stride=2**20), 6)
    with pytest.raises(ValueError, match="a larger stride, or less padding"):
        im2col(x, 1)


@pytest.mark.parametrize("dense", [False, True])
@pytest.mark.parametrize(
    ("x_dtype", "op_dtype"),
    [
        (np.uint8, np.float64),
        (np.float32, np.float64),
        (np.float64, np.complex128),
        (np.int16, np.float32),
        (np.float64, np.float64),
        (np.complex128, np.float64),
    ],
)
def test_the_memory_check_counts_what_conv2d_allocates(x_dtype, op_dtype, dense, monkeypatch):
    # the patches were unfolded and counted in the images' dtype, then copied into the
    # operator's: uint8 images through a float64 operator peaked at 5.2x the count
    rng = np.random.default_rng(5)
    chain = Chain.from_factorizations([2, 4], [6, 3])  # 8 output channels, 2 x 3 x 3 inputs
    op = DeButOperator(chain, random_weights(chain, rng, np.dtype(op_dtype)))
    kernel = op.toarray() if dense else op
    x = (10 * rng.random((4, 2, 16, 16))).astype(x_dtype)
    conv2d(x, kernel, 3, padding=1)  # compiles and sizes the kernels' work buffers
    counted = []
    monkeypatch.setattr(
        conv_module, "check_fits_in_memory", lambda n_bytes, *_: counted.append(n_bytes)
    )
    tracemalloc.start()
    try:
        got = conv2d(x, kernel, 3, padding=1)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert got.dtype == np.result_type(x_dtype, op_dtype)
    assert peak <= counted[0] + 2**12
    assert counted == [4 * 16 * 16 * (18 + 8) * got.dtype.itemsize]  # patches and output


@pytest.mark.parametrize("layout", LAYOUTS)
def test_conv2d_with_a_debut_kernel(layout):
    rng = np.random.default_rng(1)
    chain = Chain.from_factorizations([2, 4], [6, 3])  # 8 output channels, 2 x 3 x 3 inputs
    weights = random_weights(chain, rng, np.complex128)
    op = DeButOperator(chain, weights)
    kernel = matrix_to_kernel(dense_product(chain, weights), 2, 3, layout)
    x = rng.standard_normal((3, 2, 7, 6))
    got = conv2d(x, op, 3, stride=2, padding=1, dilation=1, layout=layout)
    expected = direct_conv2d(x, kernel, (2, 2), (1, 1), (1, 1))
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


def test_a_kernel_matrix_may_be_a_nested_list_as_the_images_may():
    # a 2-D list was refused as "not a 2-D array"; a deeper one names its shape
    rng = np.random.default_rng(2)
    x, matrix = rng.standard_normal((2, 2, 5, 5)), rng.standard_normal((3, 8))
    expected = conv2d(x, matrix, 2)
    np.testing.assert_array_equal(conv2d(x, matrix.tolist(), 2), expected)
    np.testing.assert_array_equal(conv2d(x.tolist(), tuple(map(tuple, matrix)), 2), expected)
    with pytest.raises(ValueError, match=r"2-D kernel matrix, got an array of shape \(3, 8, 1\)"):
        conv2d(x, matrix[..., None].tolist(), 2)


def test_layouts_are_the_documented_column_orders():
    c_out, c_in, kh, kw = 2, 3, 2, 4
    kernel = np.random.default_rng(2).standard_normal((c_out, c_in, kh, kw))
    channel, position = kernel_to_matrix(kernel), kernel_to_matrix(kernel, "position-major")
    for c in range(c_in):
        for i in range(kh):
            for j in range(kw):
                assert np.array_equal(channel[:, c * kh * kw + i * kw + j], kernel[:, c, i, j])
                assert np.array_equal(position[:, (i * kw + j) * c_in + c], kernel[:, c, i, j])
    for layout in LAYOUTS:
        matrix = kernel_to_matrix(kernel, layout)
        assert np.array_equal(matrix_to_kernel(matrix, c_in, (kh, kw), layout), kernel)


def test_operators_fold_into_kernels_and_do_not_unfold(monkeypatch):
    # a fitted DeButOperator or a sparse matrix was taken as a 0-d object array: "a kernel
    # matrix for 2 channels and a 3 x 3 kernel has 18 columns, got shape ()"
    chain = Chain.from_factorizations([2, 4], [6, 3])  # 8 output channels, 2 x 3 x 3 inputs
    op = DeButOperator(chain, random_weights(chain, np.random.default_rng(6)))
    dense = op.toarray()
    for matrix in (op, sp.csr_array(dense), sp.csr_matrix(dense), aslinearoperator(dense)):
        for layout in LAYOUTS:
            got = matrix_to_kernel(matrix, 2, 3, layout)
            assert type(got) is np.ndarray
            np.testing.assert_array_equal(got, matrix_to_kernel(dense, 2, 3, layout))
        with pytest.raises(ValueError, match=r"has 27 columns, got shape \(8, 18\)"):
            matrix_to_kernel(matrix, 3, 3)
        with pytest.raises(TypeError, match=r"kernel must be a 4-D array .* shape \(8, 18\)"):
            kernel_to_matrix(matrix)
    monkeypatch.setattr(memory_module, "physical_memory", lambda: 1000)
    for matrix in (op, sp.csr_array(dense), aslinearoperator(dense)):
        with pytest.raises(ValueError, match="more than this machine's memory"):
            matrix_to_kernel(matrix, 2, 3)


@pytest.mark.parametrize("layout", ["channel-major", "position-major"])
def test_a_kernel_without_output_channels_unfolds_and_folds_back(layout):
    # Before: NumPy's reshape failed (-1 is undefined for an array of size 0)
    matrix = kernel_to_matrix(np.zeros((0, 3, 5, 5)), layout)
    assert matrix.shape == (0, 75)
    assert matrix_to_kernel(matrix, 3, 5, layout).shape == (0, 3, 5, 5)


def test_im2col_rows_follow_the_layout():
    x = np.random.default_rng(3).standard_normal((1, 2, 4, 4))
    channel = im2col(x, 3)
    position = im2col(x, 3, layout="position-major")
    # Row c*9 + i*3 + j in channel-major is row (i*3 + j)*2 + c in position-major.
    order = [(i * 3 + j) * 2 + c for c in range(2) for i in range(3) for j in range(3)]
    assert np.array_equal(channel, position[order])
    assert np.array_equal(channel[:, 0], x[0, :, :3, :3].ravel())


def test_bad_arguments():
    x = np.zeros((1, 2, 5, 5))
    with pytest.raises(ValueError, match="layout must be one of"):
        im2col(x, 3, layout="rows")
    with pytest.raises(ValueError, match="does not fit"):
        im2col(x, 3, dilation=3)
    with pytest.raises(ValueError, match="stride must be >= 1"):
        im2col(x, 3, stride=0)
    with pytest.raises(ValueError, match="padding must be >= 0"):
        im2col(x, 3, padding=-1)
    with pytest.raises(TypeError, match="kernel_size must be an int"):
        im2col(x, 2.5)
    with pytest.raises(ValueError, match="batch, channels, height, width"):
        im2col(np.zeros((2, 5, 5)), 3)
    with pytest.raises(ValueError, match="has 10 columns but 2 channels"):
        conv2d(x, np.zeros((4, 10)), 3)
    with pytest.raises(ValueError, match=r"has 27 columns, got shape \(4, 18\)"):
        matrix_to_kernel(np.zeros((4, 18)), 3, 3)


@pytest.mark.parametrize("dtype", ["<U3", "object"])
def test_kernel_matrices_must_hold_numbers(dtype):
    # a string matrix failed after the whole unfold with NumPy's "data type must provide an
    # itemsize"; an object matrix gave object output while object images were refused
    x = np.ones((1, 2, 5, 5))
    with pytest.raises(TypeError, match=f"must hold real or complex numbers, got dtype {dtype}"):
        conv2d(x, np.ones((4, 18), dtype=dtype), 3)


def test_masked_images_with_masked_entries_are_refused():
    # the images' hidden (stored) values were convolved: 1e20 behind the mask came out
    x = np.ma.masked_array(np.ones((2, 1, 1, 4)), mask=False)
    np.testing.assert_array_equal(conv2d(x, np.ones((1, 4)), (1, 4)), np.full((2, 1, 1, 1), 4.0))
    x[1, 0, 0, 2] = np.ma.masked
    x.data[1, 0, 0, 2] = 1e20
    message = r"x \(the images\) is a masked array with 1 masked entries, which conv2d"
    with pytest.raises(ValueError, match=message):
        conv2d(x, np.ones((1, 4)), (1, 4))
    with pytest.raises(ValueError, match="with 1 masked entries, which im2col"):
        im2col(x, (1, 4))


def test_a_masked_kernel_keeps_its_mask_through_the_unfolding():
    # numpy.asarray dropped the mask: a fit of the matrix took the masked entry's stored value
    kernel = np.ma.masked_array(np.arange(16.0).reshape(2, 2, 2, 2), mask=False)
    kernel[1, 0, 1, 1] = np.ma.masked
    for layout in LAYOUTS:
        matrix = kernel_to_matrix(kernel, layout)
        assert np.ma.count_masked(matrix) == 1
        np.testing.assert_array_equal(matrix.data, kernel_to_matrix(kernel.data, layout))
        back = matrix_to_kernel(matrix, 2, 2, layout)
        np.testing.assert_array_equal(np.ma.getmaskarray(back), np.ma.getmaskarray(kernel))
    with pytest.raises(ValueError, match="1 masked entries, which a fit would take"):
        fit_hierarchical(kernel_to_matrix(kernel), Chain([(2, 8, 2, 8, 1)]))


def test_a_masked_kernel_matrix_with_masked_entries_is_refused():
    # SciPy's aslinearoperator multiplied by the stored values: 1e20 behind the mask came out
    kernel = np.ma.masked_array(np.ones((1, 4)), mask=False)
    np.testing.assert_array_equal(conv2d(np.ones((1, 1, 1, 4)), kernel, (1, 4)), [[[[4.0]]]])
    kernel[0, 2] = np.ma.masked
    kernel.data[0, 2] = 1e20
    message = r"operator \(the kernel matrix\) is a masked array with 1 masked entries"
    with pytest.raises(ValueError, match=message):
        conv2d(np.ones((1, 1, 1, 4)), kernel, (1, 4))


def test_a_wide_linear_operator_folds_without_the_identity_of_its_columns():
    # it was applied to the whole n x n identity: 2.7 GB for the 9.4 MB kernel of a
    # 64 x 18432 operator (here 512 MiB for 4 MiB)
    dense = np.random.default_rng(0).standard_normal((64, 8192))
    tracemalloc.start()
    try:
        kernel = matrix_to_kernel(aslinearoperator(dense), 512, 4)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(kernel, matrix_to_kernel(dense, 512, 4))
    assert peak < 3 * dense.nbytes  # the kernel, an identity block no larger, little else


def test_a_kernel_matrix_keeps_the_complex_products_of_an_operator_declared_real():
    # matrix_to_kernel widens to the products' dtype: dropping that lost the imaginary parts
    # with only NumPy's ComplexWarning (a mutation audit found it unpinned)
    from scipy.sparse.linalg import LinearOperator

    matrix = np.arange(8).reshape(2, 4) * (1 + 1j)
    op = LinearOperator((2, 4), matvec=matrix.__matmul__, matmat=matrix.__matmul__, dtype=float)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        kernel = matrix_to_kernel(op, 1, 2)
    np.testing.assert_array_equal(kernel, matrix.reshape(2, 1, 2, 2))
