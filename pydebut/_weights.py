"""The numbers an operator holds: the dtypes the kernels take, and weights drawn,
checked, cast and frozen."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import DTypeLike

from ._arguments import refuse_masked
from ._memory import check_fits_in_memory, format_count
from .spec import Chain

#: The dtypes the kernels are compiled for.
SUPPORTED_DTYPES = tuple(np.dtype(d) for d in (np.float32, np.float64, np.complex64, np.complex128))
#: Random weights drawn at a time by :meth:`DeButOperator.random` (1 MiB of float64).
GAUSSIAN_BLOCK = 2**17


def supported_dtype(dtype: DTypeLike, what: str) -> np.dtype:
    """Return ``dtype`` as one of :data:`SUPPORTED_DTYPES`, or raise ``TypeError``.

    A non-native byte order (``">f8"`` on a little-endian machine) is accepted
    and mapped to the native dtype: data are converted when copied.
    """
    try:
        dtype = np.dtype(dtype)
    except TypeError as err:
        raise TypeError(f"{what}: {dtype!r} is not a dtype ({err})") from None
    if dtype.kind in "fc" and not dtype.isnative:
        dtype = dtype.newbyteorder("=")
    if dtype not in SUPPORTED_DTYPES:
        names = ", ".join(d.name for d in SUPPORTED_DTYPES)
        raise TypeError(f"{what} has dtype {dtype.str} ({dtype}); pydebut supports {names}")
    return dtype


@functools.lru_cache(maxsize=64)
def result_dtype(operator_dtype: np.dtype, data_dtype: np.dtype) -> np.dtype:
    """NumPy's result type of operator and data, checked to be supported."""
    if data_dtype.kind not in "biufc":
        raise TypeError(f"cannot apply a DeButOperator to an array of dtype {data_dtype}")
    result = np.result_type(operator_dtype, data_dtype)
    if result not in SUPPORTED_DTYPES:
        names = ", ".join(d.name for d in SUPPORTED_DTYPES)
        raise TypeError(
            f"the product of a {operator_dtype} DeButOperator and {data_dtype} data would be "
            f"{result}; pydebut supports {names}: cast the data to one of these first"
        )
    return result


def factor_label(chain: Chain, index: int) -> str:
    """How messages name factor ``index``: ``"factor 2 of 3 (p=4, q=4, r=2, s=2, t=1)"``."""
    spec = chain[index]
    return f"factor {index + 1} of {len(chain)} {spec!r}".replace("FactorSpec", "", 1)


def check_weights_fit(n_params: int, itemsize: int, spare: int = 0) -> None:
    """Refuse ``n_params`` weights of ``itemsize`` bytes beyond this machine's memory.

    ``spare`` more weights are held at once while they are built.
    """
    held = f" (and {format_count(spare)} more while it is built)" if spare else ""
    check_fits_in_memory(
        (n_params + spare) * itemsize,
        f"an operator with {format_count(n_params)} weights{held}",
        "choose a smaller chain",
    )


def fill_gaussian(out: np.ndarray, generator: np.random.Generator, *factors: float) -> None:
    """Fill the real array ``out`` with ``z * factors[0] * factors[1] ...``, ``z`` standard normal.

    ``z`` is drawn in float64 in C order, a block at a time, and multiplied by the
    factors in turn, so the values are those of ``generator.standard_normal(out.shape)``
    times each factor, rounded to ``out.dtype``, without a temporary of ``out``'s size.
    """
    flat = out.reshape(-1)  # a view: ``out`` is C-ordered or the real/imag part of such
    for start in range(0, flat.size, GAUSSIAN_BLOCK):
        z = generator.standard_normal(min(GAUSSIAN_BLOCK, flat.size - start))
        for factor in factors:
            z *= factor
        flat[start : start + z.size] = z


def weights_dtype(dtypes: Sequence[np.dtype]) -> np.dtype:
    """The dtype of an operator built from weights of ``dtypes`` without a ``dtype``.

    NumPy's result type of float32 and ``dtypes`` (bool, 8- and 16-bit integers and
    float16 give float32; 32- and 64-bit integers float64), extended precision
    rounded to the kernels' widest, float64 or complex128.
    """
    dtype = np.result_type(np.float32, *dtypes)
    if dtype == np.longdouble:
        return np.dtype(np.float64)
    if dtype == np.clongdouble:
        return np.dtype(np.complex128)
    return dtype


def check_weights(
    chain: Chain, weights: Any, dtype: DTypeLike | None, check_finite: bool
) -> tuple[tuple[np.ndarray, ...], np.dtype]:
    """Validate one weight array per factor; return read-only copies and their dtype."""
    if isinstance(weights, np.ndarray) or not isinstance(weights, Sequence):
        raise TypeError(
            f"weights must be a sequence of {len(chain)} arrays (one per factor, shape "
            f"(k, r, s, t)), got {type(weights).__name__}"
        )
    if len(weights) != len(chain):
        raise ValueError(
            f"the chain has {len(chain)} factors but {len(weights)} weight arrays were given"
        )
    itemsize = 4 if dtype is None else np.dtype(dtype).itemsize  # at least float32's
    check_weights_fit(chain.n_params, itemsize)  # before the weights are converted
    arrays = []
    for index, (spec, w) in enumerate(zip(chain, weights, strict=True)):
        label = factor_label(chain, index)
        refuse_masked(w, f"weights[{index}]", label)
        w = np.asarray(w)
        if w.dtype.kind not in "biufc":
            raise TypeError(
                f"weights of {label} have dtype {w.dtype}; expected real or complex numbers"
            )
        if w.shape != spec.weight_shape:
            raise ValueError(
                f"weights of {label} must have shape (k, r, s, t) = {spec.weight_shape}, "
                f"got {w.shape}"
            )
        if check_finite and w.dtype.kind in "fc" and not all_finite(w):
            raise ValueError(
                f"weights of {label} contain NaN or infinity (check_finite=False accepts them)"
            )
        arrays.append(w)
    if dtype is None:
        dtype = weights_dtype([w.dtype for w in arrays])
    dtype = supported_dtype(dtype, "the operator")
    if dtype.itemsize > itemsize:
        check_weights_fit(chain.n_params, dtype.itemsize)
    owned = []
    for index, w in enumerate(arrays):
        if w.dtype.kind == "c" and dtype.kind != "c" and np.any(w.imag):
            raise TypeError(
                f"weights of {factor_label(chain, index)} are complex but dtype {dtype} is real"
            )
        w = w.real if dtype.kind != "c" and w.dtype.kind == "c" else w
        label = f"weights of {factor_label(chain, index)}"
        owned.append(immutable(cast_checked(w, dtype, label, check_finite)))
    return tuple(owned), dtype


def cast_checked(array: np.ndarray, dtype: np.dtype, what: str, check: bool) -> np.ndarray:
    """``array`` as ``dtype``; with ``check``, ``ValueError`` naming ``what`` if it
    overflows, or if its largest entry lies below the normal range of ``dtype``.

    ``array`` itself was checked finite already (:func:`check_weights`): only a
    cast to another dtype can overflow, so one to the same dtype is not checked again.
    Below the normal range every weight rounds to a subnormal number or zero (weights
    of 1e-46 cast to float32 are all zero), where a factor of normal largest weight
    loses no more than a rounding of it on any other.
    """
    with np.errstate(over="ignore", under="ignore"):
        cast = np.asarray(array, dtype=dtype)
    if not check or cast.dtype == array.dtype:
        return cast
    largest = largest_magnitude(array) if array.dtype.kind in "fc" else 1
    error = cast_range_error(what, dtype, np.finfo(dtype), all_finite(cast), largest)
    if error is not None:
        raise error
    return cast


def cast_range_error(
    what: str, dtype: Any, finfo: Any, cast_finite: bool, largest: Any
) -> ValueError | None:
    """The error of finite weights ``what`` cast to ``dtype`` (``finfo`` its ``numpy.finfo``
    or ``torch.finfo``): they overflowed (the cast is not finite), or their ``largest``
    magnitude lies below the normal range; None if neither."""
    if not cast_finite:
        return ValueError(
            f"{what} overflow to infinity in {dtype} (largest {dtype} {finfo.max:.4g})"
        )
    if 0 < largest < finfo.tiny:
        return ValueError(
            f"{what} lie below the normal range of {dtype} (largest {float(largest):.4g}, "
            f"smallest normal {finfo.tiny:.4g}): they would round to subnormal numbers or "
            "zero; move a power of two into them from another factor (the product stays)"
        )
    return None


def largest_magnitude(array: np.ndarray) -> Any:
    """The largest magnitude of a real entry, or of a real or imaginary part (0 if empty)."""
    parts = (array.real, array.imag) if array.dtype.kind == "c" else (array,)
    return max((max(part.max(), -part.min()) for part in parts if part.size), default=0)


FINITE_PIECE = 1 << 16  # entries all_finite checks at once


def all_finite(array: np.ndarray) -> bool:
    """Whether ``array`` holds no NaN or infinity, checked ``FINITE_PIECE`` entries at a
    time: ``np.isfinite(array)`` whole would take one more byte per entry."""
    flags = ["external_loop", "buffered", "zerosize_ok"]
    pieces = np.nditer(array, flags=flags, buffersize=FINITE_PIECE)
    return all(np.isfinite(piece).all() for piece in pieces)


def immutable(array: np.ndarray) -> np.ndarray:
    """A C-ordered copy backed by an immutable ``bytes`` buffer (``array`` itself if it is one).

    Setting ``flags.writeable = True`` fails on it, on its ``base`` and on any
    view of it, so the operator's weights cannot drift from its cached plans.
    ``tobytes`` writes the bytes in C order whatever the layout: one copy.
    """
    base, writeable = array, False
    while isinstance(base, np.ndarray):  # (unpickled arrays are writeable over bytes)
        base, writeable = base.base, writeable or base.flags.writeable
    if isinstance(base, bytes) and not writeable and array.flags.c_contiguous:
        return array
    frozen = np.frombuffer(array.tobytes(), dtype=array.dtype)
    return frozen.reshape(array.shape)
