"""Exact DeBut chains of classical transforms and classical butterfly shapes."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

import numpy as np
from numpy.typing import DTypeLike

from ._arguments import as_positive_int, shown
from ._memory import check_fits_in_memory, format_count
from ._permutation import bit_reversal, log2_exact
from .operator import DeButOperator
from .spec import Chain

__all__ = ["PAPER_CHAINS", "bit_reversal", "butterfly_chain", "dft", "hadamard", "monarch_chain"]

#: The chains of the DeBut paper's public scripts, left to right:
#:
#: - ``"vgg16-conv1"``: VGG-16 conv1 as ``64 x 576``, monotonic;
#: - ``"lenet-fc1"``: LeNet fc1 as ``128 x 400``, bulging (400, 256, 512, 512, 256, 128);
#: - ``"resnet50-layer4"``: ResNet-50 layer4.1.conv1 as ``512 x 2048``, 25,600 weights;
#: - ``"pointwise-3-to-64"``: a dense *non-chainable* chain for a 3 -> 64 point-wise
#:   convolution (``64 x 3``).
PAPER_CHAINS: Mapping[str, Chain] = MappingProxyType(
    {
        "vgg16-conv1": Chain(
            [(64, 72, 8, 9, 8), (72, 144, 2, 4, 4), (144, 288, 1, 2, 4), (288, 576, 4, 8, 1)]
        ),
        "lenet-fc1": Chain(
            [
                (128, 256, 2, 4, 64),
                (256, 512, 1, 2, 64),
                (512, 512, 2, 2, 32),
                (512, 256, 2, 1, 16),
                (256, 400, 16, 25, 1),
            ]
        ),
        "resnet50-layer4": Chain(
            [
                (512, 512, 2, 2, 256),
                (512, 1024, 2, 4, 128),
                (1024, 1024, 2, 2, 64),
                (1024, 1024, 2, 2, 32),
                (1024, 1024, 2, 2, 16),
                (1024, 2048, 2, 4, 8),
                (2048, 2048, 2, 2, 4),
                (2048, 2048, 2, 2, 2),
                (2048, 2048, 2, 2, 1),
            ]
        ),
        "pointwise-3-to-64": Chain.from_r_shapes(
            [
                [4, 3, 4, 3, 1],
                [8, 4, 2, 1, 4],
                [16, 8, 2, 1, 4],
                [32, 16, 2, 1, 16],
                [64, 32, 2, 1, 32],
            ]
        ),
    }
)


def butterfly_chain(n: int) -> Chain:
    """The standard butterfly chain of size ``n = 2**L``: ``L`` factors with ``r = s = 2``.

    Parameters
    ----------
    n : int
        A power of two, at least 2.

    Returns
    -------
    Chain
        Left to right, ``(n, n, 2, 2, n / 2**l)`` for ``l = 1 ... L``.

    Raises
    ------
    TypeError
        If ``n`` is not an integer.
    ValueError
        If ``n`` is not a power of two of at least 2.

    Examples
    --------
    >>> butterfly_chain(8)
    Chain([(8, 8, 2, 2, 4), (8, 8, 2, 2, 2), (8, 8, 2, 2, 1)])
    """
    return _butterfly(n, "butterfly_chain")


def _butterfly(n: int, caller: str, itemsize: int | None = None) -> Chain:
    """:func:`butterfly_chain`, its errors naming ``caller``.

    With ``itemsize``, refused first if its ``2 n log2(n)`` weights of that many
    bytes would not fit in memory (before the chain's ``log2(n)`` factors are made).
    """
    levels = log2_exact(n, "n", caller)
    n = 2**levels  # a Python int: a NumPy one would overflow in the count below
    if itemsize is not None:
        n_params = 2 * n * levels
        check_fits_in_memory(
            n_params * itemsize,
            f"{caller}(n) with n = 2**{levels} ({format_count(n_params)} weights)",
            "ask for a smaller n",
        )
    return Chain.from_factorizations([2] * levels, [2] * levels)


def monarch_chain(b: int) -> Chain:
    """The Monarch chain of size ``b**2``: two factors with ``r = s = b``.

    Parameters
    ----------
    b : int
        The block size, positive.

    Returns
    -------
    Chain
        ``[(b**2, b**2, b, b, b), (b**2, b**2, b, b, 1)]``.

    Raises
    ------
    TypeError
        If ``b`` is not an integer.
    ValueError
        If ``b`` is not positive.

    Examples
    --------
    >>> monarch_chain(3)
    Chain([(9, 9, 3, 3, 3), (9, 9, 3, 3, 1)])
    """
    b = as_positive_int(b, "b", "monarch_chain")
    return Chain.from_factorizations([b, b], [b, b])


def hadamard(n: int, dtype: DTypeLike = np.float64) -> DeButOperator:
    """The ``n x n`` Sylvester-Hadamard matrix as an exact DeBut chain.

    Every ``2 x 2`` block of every factor of :func:`butterfly_chain` is
    ``[[1, 1], [1, -1]]``, so the product is ``H_2 ⊗ H_2 ⊗ ... ⊗ H_2``, the
    matrix of :func:`scipy.linalg.hadamard`. Applying it costs ``2 n log2 n``
    multiply-adds (one a weight) instead of ``n**2``.

    Parameters
    ----------
    n : int
        A power of two, at least 2 (a Python or NumPy integer).
    dtype : {float32, float64, complex64, complex128}, default float64

    Raises
    ------
    TypeError
        If ``n`` is not an integer, or ``dtype`` is not float32, float64,
        complex64 or complex128.
    ValueError
        If ``n`` is not a power of two >= 2, or the ``2 n log2 n`` weights
        would not fit in this machine's memory.

    Examples
    --------
    >>> import numpy as np, scipy.linalg
    >>> H = hadamard(8)
    >>> np.array_equal(H.toarray(), scipy.linalg.hadamard(8))
    True
    >>> H.n_params
    48
    """
    dtype = _checked_dtype(dtype, "hadamard", ("float32", "float64", "complex64", "complex128"))
    chain = _butterfly(n, "hadamard", dtype.itemsize)
    h2 = np.array([[1, 1], [1, -1]])
    weights = [np.broadcast_to(h2[None, :, :, None], spec.weight_shape) for spec in chain]
    return DeButOperator(chain, weights, dtype)


def _checked_dtype(
    dtype: DTypeLike, function: str, allowed: tuple[str, ...], reason: str = ""
) -> np.dtype:
    """``dtype`` (any byte order) as one of the dtypes named ``allowed``, or ``TypeError``
    naming ``function`` and the dtypes it builds."""
    try:
        checked = np.dtype(dtype)  # None is NumPy's default, float64
    except TypeError:
        checked = None
    if checked is not None and not checked.isnative:
        checked = checked.newbyteorder("=")
    if checked is None or checked.name not in allowed:
        got = shown(dtype) if checked is None or dtype is None else checked.name
        names = f"{', '.join(allowed[:-1])} or {allowed[-1]}"
        raise TypeError(f"{function}: {reason}dtype must be {names}, got {got}")
    return checked


_DFT_SCALE = {"backward": 1.0, "ortho": np.sqrt(0.5), "forward": 0.5}


def dft(n: int, dtype: DTypeLike = np.complex128, *, norm: str = "backward") -> DeButOperator:
    """The ``n x n`` discrete Fourier transform as an exact DeBut chain with a column permutation.

    ``F[j, k] = c * exp(-2 pi i j k / n)`` with ``c = 1`` (``norm="backward"``,
    the matrix of :func:`numpy.fft.fft`), ``c = 1 / sqrt(n)`` (``"ortho"``,
    unitary) or ``c = 1 / n`` (``"forward"``), as NumPy's ``norm``.

    Radix-2 decimation in time: ``F = B_1 ... B_L P`` on :func:`butterfly_chain`,
    where factor ``l`` (``t = n / 2**l``) holds in each of its ``2**(l-1)``
    blocks the ``2t``-point step ``[[I, W], [I, -W]]``, ``W = diag(exp(-i pi a / t))``
    for ``a < t``, and ``P`` puts the input in bit-reversed order
    (``col_perm = bit_reversal(n)``). Applying it costs ``2 n log2 n``
    complex multiply-adds; each factor is scaled by ``c**(1/L)``.

    Parameters
    ----------
    n : int
        A power of two, at least 2.
    dtype : complex dtype, default complex128
    norm : {"backward", "ortho", "forward"}

    Raises
    ------
    TypeError
        If ``n`` is not an integer or ``dtype`` is not complex64 or complex128.
    ValueError
        If ``n`` is not a power of two >= 2, ``norm`` is unknown, or the
        ``2 n log2 n`` weights would not fit in this machine's memory.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).standard_normal(16)
    >>> F = dft(16)
    >>> np.allclose(F @ x, np.fft.fft(x)), F.col_perm.tolist() == bit_reversal(16).tolist()
    (True, True)
    >>> np.allclose(dft(16, norm="ortho").H @ (dft(16, norm="ortho") @ x), x)
    True
    """
    if not (isinstance(norm, str) and norm in _DFT_SCALE):
        raise ValueError(f"dft: norm must be 'backward', 'ortho' or 'forward', got {shown(norm)}")
    dtype = _checked_dtype(dtype, "dft", ("complex64", "complex128"), "the DFT is complex; ")
    chain = _butterfly(n, "dft", dtype.itemsize)
    weights = []
    for spec in chain:
        twiddle = np.exp(-1j * np.pi * np.arange(spec.t) / spec.t)
        step = np.stack([np.ones(spec.t), twiddle, np.ones(spec.t), -twiddle])
        block = _DFT_SCALE[norm] * step.reshape(1, 2, 2, spec.t)
        weights.append(np.broadcast_to(block, spec.weight_shape))
    return DeButOperator(chain, weights, dtype, col_perm=bit_reversal(n))
