"""Convolutions whose kernel matrix is a DeBut chain (or any linear operator).

A 2-D convolution kernel ``K`` of shape ``(c_out, c_in, kh, kw)`` acts as a
``c_out x (c_in * kh * kw)`` matrix on unfolded input patches, one row per
output channel. Two unfoldings are in use:

``"channel-major"``
    The paper's: channel by channel, so kernel entry ``(o, c, i, j)`` is in
    column ``c * kh * kw + i * kw + j`` (``K.reshape(c_out, -1)``).
``"position-major"``
    The reference PyTorch layer's: kernel position first, channel last, so
    entry ``(o, c, i, j)`` is in column ``(i * kw + j) * c_in + c``.

:func:`im2col` unfolds a batch of ``NCHW`` images with the matching row order,
and :func:`conv2d` applies the kernel matrix to those patches with one
``matmat`` call.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import LinearOperator, aslinearoperator

from ._arguments import refuse_masked, shown
from ._memory import check_fits_in_memory
from .operator import DeButOperator

__all__ = ["LAYOUTS", "conv2d", "im2col", "kernel_to_matrix", "matrix_to_kernel"]

Layout = Literal["channel-major", "position-major"]
LAYOUTS: tuple[str, ...] = ("channel-major", "position-major")


def _check_layout(layout: str) -> None:
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")


def _pair(value: Any, name: str, minimum: int) -> tuple[int, int]:
    """``value`` as a pair of ints ``>= minimum`` (an int stands for both)."""
    items = (value, value) if not isinstance(value, (tuple, list)) else tuple(value)
    if len(items) != 2:
        raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
    for item in items:
        if isinstance(item, (bool, np.bool_)) or not isinstance(item, numbers.Integral):
            raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
        if item < minimum:
            raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return int(items[0]), int(items[1])


def kernel_to_matrix(kernel: Any, layout: Layout = "channel-major") -> np.ndarray:
    """Unfold a kernel ``(c_out, c_in, kh, kw)`` into its ``c_out x (c_in kh kw)`` matrix.

    Parameters
    ----------
    kernel : array_like, shape (c_out, c_in, kh, kw)
    layout : {"channel-major", "position-major"}
        Column order, see the module notes.

    Returns
    -------
    ndarray, shape (c_out, c_in * kh * kw)
        A masked array, with the kernel's mask, for a masked kernel.

    Raises
    ------
    ValueError
        If ``kernel`` is not 4-D or ``layout`` is unknown.
    TypeError
        If ``kernel`` is a linear operator or a sparse matrix: that is a kernel
        matrix already (which :func:`conv2d` takes and :func:`matrix_to_kernel`
        folds).

    Examples
    --------
    >>> import numpy as np
    >>> kernel = np.arange(8).reshape(1, 2, 2, 2)
    >>> kernel_to_matrix(kernel)
    array([[0, 1, 2, 3, 4, 5, 6, 7]])
    >>> kernel_to_matrix(kernel, "position-major")
    array([[0, 4, 1, 5, 2, 6, 3, 7]])
    """
    _check_layout(layout)
    if _is_operator(kernel):
        raise TypeError(
            f"kernel must be a 4-D array (c_out, c_in, kh, kw), got a {type(kernel).__name__} "
            f"of shape {kernel.shape}, a kernel matrix already: conv2d takes it as it is, "
            "matrix_to_kernel folds it into a kernel"
        )
    kernel = _with_mask(kernel)
    if kernel.ndim != 4:
        raise ValueError(f"a kernel has shape (c_out, c_in, kh, kw), got {kernel.shape}")
    if layout == "position-major":
        kernel = kernel.transpose(0, 2, 3, 1)
    c_out, *patch = kernel.shape
    return kernel.reshape(c_out, math.prod(patch))  # -1 is undefined for c_out = 0


def matrix_to_kernel(
    matrix: Any, in_channels: int, kernel_size: Any, layout: Layout = "channel-major"
) -> np.ndarray:
    """Fold a ``c_out x (c_in kh kw)`` matrix back into a kernel ``(c_out, c_in, kh, kw)``.

    The inverse of :func:`kernel_to_matrix` for the same ``layout``; a masked
    matrix gives a masked kernel.

    Parameters
    ----------
    matrix : array_like, DeButOperator, LinearOperator or sparse matrix
        The kernel matrix, of shape ``(c_out, c_in * kh * kw)``; an operator
        (such as a fit's) or a sparse matrix is made dense, the size of the
        kernel.
    in_channels : int
        ``c_in``, at least 1.
    kernel_size : int or (int, int)
        ``(kh, kw)``, each at least 1; an int stands for both.
    layout : {"channel-major", "position-major"}
        Column order of ``matrix``, see the module notes.

    Returns
    -------
    ndarray, shape (c_out, c_in, kh, kw)
        A masked array, with the matrix's mask, for a masked matrix.

    Raises
    ------
    ValueError
        If ``matrix`` does not have the shape above, its dense matrix would not
        fit in memory, or a size is out of range.
    TypeError
        If a size is not an int.

    Examples
    --------
    >>> import numpy as np
    >>> kernel = np.random.default_rng(0).standard_normal((4, 3, 3, 2))
    >>> matrix = kernel_to_matrix(kernel, "position-major")
    >>> np.array_equal(matrix_to_kernel(matrix, 3, (3, 2), "position-major"), kernel)
    True

    An operator, such as a fitted one, folds the same way:

    >>> from pydebut import DeButOperator
    >>> op = DeButOperator.random([(4, 18, 2, 9, 2)], rng=0)
    >>> matrix_to_kernel(op, 2, 3).shape
    (4, 2, 3, 3)
    """
    _check_layout(layout)
    kh, kw = _pair(kernel_size, "kernel_size", 1)
    if isinstance(in_channels, (bool, np.bool_)) or not isinstance(in_channels, numbers.Integral):
        raise TypeError(f"in_channels must be an int, got {in_channels!r}")
    if in_channels < 1:
        raise ValueError(f"in_channels must be >= 1, got {in_channels}")
    c_in = int(in_channels)
    operator = _is_operator(matrix)
    if not operator:
        matrix = _with_mask(matrix)
    if len(matrix.shape) != 2 or matrix.shape[1] != c_in * kh * kw:
        raise ValueError(
            f"a kernel matrix for {c_in} channels and a {kh} x {kw} kernel has "
            f"{c_in * kh * kw} columns, got shape {matrix.shape}"
        )
    if operator:
        matrix = _dense(matrix)
    if layout == "position-major":
        return matrix.reshape(-1, kh, kw, c_in).transpose(0, 3, 1, 2)
    return matrix.reshape(-1, c_in, kh, kw)


def _is_operator(matrix: Any) -> bool:
    """Whether ``matrix`` is a linear operator or a sparse matrix, not array-like."""
    return isinstance(matrix, LinearOperator) or sp.issparse(matrix)


#: Columns of the identity a linear operator (not a ``DeButOperator``) is applied to at a time.
IDENTITY_COLUMNS = 256


def _dense(operator: LinearOperator | sp.sparray | sp.spmatrix) -> np.ndarray:
    """The dense matrix of ``operator`` (a sparse matrix or a linear operator).

    A ``DeButOperator`` checks its own product; another linear operator is
    applied to the identity of its columns, :data:`IDENTITY_COLUMNS` at a time
    and no more than its ``m`` rows, so the identity's block is no larger than the
    answer (the whole ``n x n`` identity of a wide 64 x 18432 operator took 2.7 GB
    for a kernel of 9.4 MB).
    """
    if isinstance(operator, DeButOperator):
        return operator.toarray()  # checks the memory of its own product
    m, n = operator.shape
    sparse = sp.issparse(operator)
    block = 0 if sparse else max(1, min(n, m, IDENTITY_COLUMNS))
    check_fits_in_memory(
        (m * n + (m + n) * block) * np.dtype(operator.dtype).itemsize,
        f"the dense {m} x {n} kernel matrix",
        "the kernel it folds into would not fit either",
    )
    if sparse:
        return operator.toarray()
    dense = np.empty((m, n), operator.dtype)
    for start in range(0, n, block):
        width = min(block, n - start)
        columns = np.asarray(operator.matmat(np.eye(n, width, -start, operator.dtype)))
        dense = dense.astype(np.result_type(dense, columns), copy=False)
        dense[:, start : start + width] = columns
    return dense


def _with_mask(array: Any) -> np.ndarray:
    """``array`` as an ndarray, a masked array keeping its mask (``numpy.asarray`` drops it,
    and a fit of the result would then take the masked entries at their stored values)."""
    return array if isinstance(array, np.ma.MaskedArray) else np.asarray(array)


def im2col(
    x: Any,
    kernel_size: Any,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
    layout: Layout = "channel-major",
) -> np.ndarray:
    """Unfold a batch of images into the columns a kernel matrix multiplies.

    Parameters
    ----------
    x : array_like, shape (batch, c_in, height, width)
        Images in ``NCHW`` order.
    kernel_size, stride, dilation : int or (int, int)
        Positive; an int stands for both directions.
    padding : int or (int, int)
        Zeros added on both sides of each spatial direction.
    layout : {"channel-major", "position-major"}
        Row order of the patches, matching :func:`kernel_to_matrix`.

    Returns
    -------
    ndarray, shape (c_in * kh * kw, batch * out_h * out_w)
        Column ``(b * out_h + y) * out_w + x`` is the patch of output pixel
        ``(y, x)`` of image ``b``, where
        ``out_h = (height + 2 pad_h - dil_h (kh - 1) - 1) // stride_h + 1``.
        It is the only allocation: the padded images are never made, so a
        large padding costs only the patches it adds.

    Raises
    ------
    ValueError
        If ``x`` is not 4-D, the dilated kernel does not fit the padded
        images, a size is out of range, the patches would not fit in memory,
        or ``x`` is a masked array with masked entries (which the unfolding
        would take at their stored values: fill them first, e.g. ``x.filled(0)``).
    TypeError
        If ``x`` does not hold numbers or a size is not an int.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.arange(9.0).reshape(1, 1, 3, 3)
    >>> im2col(x, 2)
    array([[0., 1., 3., 4.],
           [1., 2., 4., 5.],
           [3., 4., 6., 7.],
           [4., 5., 7., 8.]])
    """
    _check_layout(layout)
    refuse_masked(x, "x (the images)", "im2col")
    x = np.asarray(x)
    geometry = _Geometry.of(x, kernel_size, stride, padding, dilation)
    rows = x.shape[1] * geometry.kernel[0] * geometry.kernel[1]
    geometry.check_fits_in_memory(x, rows * x.dtype.itemsize, f"unfolding into {rows} patch rows")
    return geometry.unfold(x, layout, x.dtype)


@dataclass(frozen=True)
class _Geometry:
    """Checked sizes of a convolution: kernel, stride, padding, dilation and output."""

    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    out: tuple[int, int]

    @classmethod
    def of(
        cls, x: np.ndarray, kernel_size: Any, stride: Any, padding: Any, dilation: Any
    ) -> _Geometry:
        if x.dtype.kind not in "biufc":
            raise TypeError(f"x must hold real or complex numbers, got dtype {x.dtype}")
        if x.ndim != 4:
            raise ValueError(f"x must have shape (batch, channels, height, width), got {x.shape}")
        kernel = _pair(kernel_size, "kernel_size", 1)
        steps = _pair(stride, "stride", 1)
        pads = _pair(padding, "padding", 0)
        dilations = _pair(dilation, "dilation", 1)
        spans = [d * (k - 1) + 1 for d, k in zip(dilations, kernel, strict=True)]
        padded = [size + 2 * p for size, p in zip(x.shape[2:], pads, strict=True)]
        if spans[0] > padded[0] or spans[1] > padded[1]:
            raise ValueError(
                f"the dilated kernel ({spans[0]} x {spans[1]}) does not fit "
                f"the padded {padded[0]} x {padded[1]} input"
            )
        out = tuple(
            (p - span) // step + 1 for p, span, step in zip(padded, spans, steps, strict=True)
        )
        # A stride beyond the padded input gives one output; capping it keeps the
        # slices' steps within the index range.
        steps = tuple(min(step, p) for step, p in zip(steps, padded, strict=True))
        return cls(kernel, steps, pads, dilations, out)

    def check_fits_in_memory(self, x: np.ndarray, bytes_per_column: int, what: str) -> None:
        """Refuse up front when ``what`` needs more than this machine's memory.

        Parameters
        ----------
        x : ndarray, shape (batch, c_in, height, width)
            The images.
        bytes_per_column : int
            Bytes allocated per output pixel of each image.
        what : str
            The work, named in the refusal.
        """
        batch, channels = x.shape[:2]
        out_h, out_w = self.out
        check_fits_in_memory(
            batch * out_h * out_w * bytes_per_column,
            f"{what} of {batch} x {channels} images at {out_h} x {out_w} output pixels",
            "pass fewer images at a time, a larger stride, or less padding",
        )

    def unfold(self, x: np.ndarray, layout: str, dtype: np.dtype) -> np.ndarray:
        """The patches of ``x`` in ``dtype``, without making the padded images.

        For each kernel offset ``(i, j)``, the output pixels whose tap reads inside
        the images copy it from ``x``; the others keep the zero of the padding.
        Allocates the patches only, which the caller checks beforehand.
        """
        kh, kw = self.kernel
        out_h, out_w = self.out
        batch, channels, height, width = x.shape
        if layout == "channel-major":
            patches = np.zeros((channels, kh, kw, batch, out_h, out_w), dtype)
            by_offset = patches.transpose(1, 2, 3, 0, 4, 5)
        else:
            patches = np.zeros((kh, kw, channels, batch, out_h, out_w), dtype)
            by_offset = patches.transpose(0, 1, 3, 2, 4, 5)
        if patches.size:  # each offset then copies at least one entry: time ~ patches
            column_taps = list(self._taps(1, width))
            for i, out_rows, rows in self._taps(0, height):
                for j, out_cols, cols in column_taps:
                    by_offset[i, j, :, :, out_rows, out_cols] = x[:, :, rows, cols]
        return patches.reshape(channels * kh * kw, batch * out_h * out_w)

    def _taps(self, axis: int, size: int) -> Iterator[tuple[int, slice, slice]]:
        """The kernel offsets along ``axis`` that read inside images of ``size`` pixels.

        Yields
        ------
        offset : int
            Kernel offset ``i``; output position ``y`` reads pixel
            ``y * stride + i * dilation - padding`` of the unpadded images.
        out_positions : slice
            The output positions whose pixel lies in ``0 .. size - 1``.
        pixels : slice
            The pixels they read, in the same order.
        """
        step, out = self.stride[axis], self.out[axis]
        for i in range(self.kernel[axis]):
            start = i * self.dilation[axis] - self.padding[axis]  # read by position 0
            first = max(0, -(start // step))  # ceil(-start / step)
            stop = min(out, (size - 1 - start) // step + 1)
            if first < stop:
                pixel = start + first * step
                last = pixel + (stop - 1 - first) * step
                yield i, slice(first, stop), slice(pixel, last + 1, step)


def conv2d(
    x: Any,
    operator: Any,
    kernel_size: Any,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
    layout: Layout = "channel-major",
) -> np.ndarray:
    """2-D convolution (cross-correlation, as in deep learning) with a kernel matrix.

    Parameters
    ----------
    x : array_like, shape (batch, c_in, height, width)
    operator : DeButOperator, LinearOperator, sparse matrix or 2-D array
        The ``c_out x (c_in * kh * kw)`` kernel matrix in the given ``layout``.
    kernel_size, stride, padding, dilation, layout
        As in :func:`im2col`.

    Returns
    -------
    ndarray, shape (batch, c_out, out_h, out_w)
        Of NumPy's result type of the images and the kernel matrix, at least
        ``int64`` for integers: integer images through an integer kernel matrix
        are summed in 64-bit integers (NumPy's product of ``uint8`` and ``int8``
        arrays would wrap around at ``2**15``). Where either is ``uint64``, whose
        values ``int64`` does not hold, that type is ``float64``, as in NumPy,
        and values beyond ``2**53`` are rounded.

    Raises
    ------
    ValueError
        If the operator's column count is not ``c_in * kh * kw``, it is a masked
        array with masked entries, or as :func:`im2col`.
    TypeError
        If the operator is not a kernel matrix or does not hold numbers, or as
        :func:`im2col`.

    Notes
    -----
    ``out[b, o, y, x] = sum_{c, i, j} K[o, c, i, j] *
    x_pad[b, c, y * stride_h + i * dil_h, x * stride_w + j * dil_w]``, computed as
    ``operator.matmat(im2col(x, ...))``: a DeBut kernel costs ``nnz`` instead of
    ``c_out * c_in * kh * kw`` multiply-adds per output pixel.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((2, 3, 8, 8))
    >>> kernel = rng.standard_normal((4, 3, 3, 3))
    >>> out = conv2d(x, kernel_to_matrix(kernel), 3, padding=1)
    >>> out.shape
    (2, 4, 8, 8)
    >>> from scipy.signal import correlate
    >>> direct = sum(correlate(x[0, c], kernel[1, c], mode="same") for c in range(3))
    >>> bool(np.allclose(out[0, 1], direct))
    True
    """
    _check_layout(layout)
    refuse_masked(x, "x (the images)", "conv2d")
    refuse_masked(operator, "operator (the kernel matrix)", "conv2d")
    x = np.asarray(x)
    geometry = _Geometry.of(x, kernel_size, stride, padding, dilation)
    if isinstance(operator, (list, tuple)):
        operator = np.asarray(operator)  # a nested list of numbers, as the images may be
    if isinstance(operator, np.ndarray) and operator.ndim > 2:
        raise ValueError(
            f"operator must be the 2-D kernel matrix, got an array of shape "
            f"{np.shape(operator)}; kernel_to_matrix(kernel, layout) makes one of a "
            "(c_out, c_in, kh, kw) kernel"
        )
    try:
        op = aslinearoperator(operator)
    except TypeError:
        raise TypeError(
            "operator must be the kernel matrix: a DeButOperator, LinearOperator, sparse "
            f"matrix or 2-D array, got {type(operator).__name__} {shown(operator)}"
        ) from None
    if np.dtype(op.dtype).kind not in "biufc":
        raise TypeError(
            f"operator (the kernel matrix) must hold real or complex numbers, got dtype {op.dtype}"
        )
    n_cols = x.shape[1] * geometry.kernel[0] * geometry.kernel[1]
    if op.shape[1] != n_cols:
        raise ValueError(
            f"the kernel matrix has {op.shape[1]} columns but {x.shape[1]} channels with a "
            f"{geometry.kernel[0]} x {geometry.kernel[1]} kernel need {n_cols}"
        )
    # The patches are unfolded in the product's dtype: in the images' dtype, the
    # operator would copy them into its own, a second block of patches.
    dtype = np.result_type(x.dtype, op.dtype)
    if dtype.kind in "biu":
        dtype = np.result_type(dtype, np.int64)
    geometry.check_fits_in_memory(
        x,
        (n_cols + op.shape[0]) * dtype.itemsize,
        f"unfolding into {n_cols} patch rows and convolving into {op.shape[0]} channels",
    )
    out = np.asarray(op.matmat(geometry.unfold(x, layout, dtype)))
    return out.reshape(op.shape[0], x.shape[0], *geometry.out).transpose(1, 0, 2, 3)
