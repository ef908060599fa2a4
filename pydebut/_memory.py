"""Allocations: refused when larger than the machine's memory, aligned to cache lines.

NumPy reports oversized requests late and in its own terms (``MemoryError`` or
"array is too big"); pydebut checks the size it is about to allocate first and
raises a ``ValueError`` naming the object, its size and this machine's memory.
NumPy starts a large array 16 bytes past a page boundary; :func:`aligned_empty`
starts one on a cache line, where the batched kernels' SIMD loads and stores of
its rows touch one line each.
"""

from __future__ import annotations

import math
import operator
import os
from functools import cache

import numpy as np
from numpy.typing import DTypeLike

#: Bytes of a cache line, where :func:`aligned_empty` arrays and work buffers start.
ALIGN_BYTES = 64


@cache
def physical_memory() -> int | None:
    """Bytes of physical memory of this machine, or ``None`` when unknown."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


#: Bits from which a count is given as a power of two (:func:`format_count`): a float
#: holds no more, and Python refuses to print an int of more than 4300 digits.
COUNT_BITS = 1000


def format_count(n: int) -> str:
    """``n`` with thousands separators, e.g. ``1,536``, or ``about 2**k`` when it is huge."""
    if n.bit_length() > COUNT_BITS:
        return f"about 2**{n.bit_length() - 1}"
    return f"{n:,}"


def format_bytes(n_bytes: int) -> str:
    """``n_bytes`` in binary units, e.g. ``16.0 TiB``, or ``about 2**k bytes`` when huge."""
    if n_bytes.bit_length() > COUNT_BITS:
        return f"{format_count(n_bytes)} bytes"
    size = float(n_bytes)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if size < 1024 or unit == "PiB":
            return f"{n_bytes} bytes" if unit == "bytes" else f"{size:.3g} {unit}"
        size /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def address_space_limit() -> tuple[int, int] | None:
    """The process's address-space limit (``ulimit -v``, ``RLIMIT_AS``) and the bytes
    of address space it already uses (0 where unknown); ``None`` without a limit."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    limit = resource.getrlimit(resource.RLIMIT_AS)[0]
    if limit == resource.RLIM_INFINITY:
        return None
    try:
        with open("/proc/self/statm", "rb") as statm:  # Linux: pages of address space
            used = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        used = 0
    return limit, used


def check_fits_in_memory(n_bytes: int, what: str, narrow: str) -> None:
    """Raise ``ValueError`` if ``what`` needs more than this machine's memory, or more
    address space than the process's limit (``ulimit -v``) leaves it.

    ``narrow`` tells the caller how to ask for less.
    """
    available = physical_memory()
    if available is not None and n_bytes > available:
        raise ValueError(
            f"{what} needs {format_bytes(n_bytes)}, more than this machine's memory "
            f"({format_bytes(available)}); {narrow}"
        )
    check_address_space(n_bytes, what, narrow)


def check_address_space(n_bytes: int, what: str, narrow: str) -> None:
    """Raise ``ValueError`` if ``what`` needs more address space than the process's
    limit (``ulimit -v``) leaves it: memory, or a file mapped into memory.

    ``narrow`` tells the caller how to ask for less.
    """
    address_space = address_space_limit()
    if address_space is not None and n_bytes > address_space[0] - address_space[1]:
        limit, used = address_space
        raise ValueError(
            f"{what} needs {format_bytes(n_bytes)}, more than the process's address-space "
            f"limit (ulimit -v, {format_bytes(limit)}) leaves it ({format_bytes(used)} in "
            f"use); {narrow}"
        )


def aligned_storage_bytes(nbytes: int) -> int:
    """Bytes of storage that hold an aligned view of ``nbytes`` wherever the storage starts."""
    return nbytes + ALIGN_BYTES


def aligned_view(storage: np.ndarray, nbytes: int) -> np.ndarray:
    """``nbytes`` of ``storage`` (with :data:`ALIGN_BYTES` to spare) from its first cache line."""
    skip = -storage.ctypes.data % ALIGN_BYTES
    return storage.view(np.uint8)[skip : skip + nbytes]


def aligned_empty(shape: int | tuple[int, ...], dtype: DTypeLike = np.float64) -> np.ndarray:
    """An uninitialised C-ordered array whose data starts on a 64-byte cache line.

    NumPy starts a large array 16 bytes past a page boundary, so each row of a
    block whose rows are whole cache lines (multiples of 8 float64 or 16
    float32 columns) straddles two lines, and every SIMD load and store of it
    touches both. A block ``x`` and an ``out`` made here let the batched
    kernels touch one line each: the 4096 butterfly ran 1.01-1.08x faster at
    64 to 1024 float32 and float64 vectors (``docs/speed.md``).

    Parameters
    ----------
    shape : int or tuple of int
        The array's shape.
    dtype : data-type, default float64
        Any dtype without Python objects; a subarray dtype such as
        ``("f8", (2,))`` appends its shape, as in :func:`numpy.empty`.

    Returns
    -------
    numpy.ndarray
        Uninitialised, C-contiguous and writeable, a view of a slightly
        larger array (its ``base``): NumPy has no aligned allocation of its own.
        An empty array holds no data to align, nor does one of a dtype of no
        bytes (``"V0"``, ``"S0"``), which is :func:`numpy.empty`'s.

    Raises
    ------
    ValueError
        For a negative dimension, or a size beyond this machine's memory.
    TypeError
        For a shape that is not an int or a tuple of ints (a bool is not
        taken), or a dtype that holds Python objects.

    Examples
    --------
    >>> from pydebut import aligned_empty
    >>> x = aligned_empty((4096, 64))
    >>> x.ctypes.data % 64, x.shape, x.dtype, x.flags.c_contiguous
    (0, (4096, 64), dtype('float64'), True)
    """
    try:
        extents = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
        if any(isinstance(extent, (bool, np.bool_)) for extent in extents):
            raise TypeError  # True would be 1, as no other size of pydebut takes it
        shape = tuple(operator.index(extent) for extent in extents)
    except TypeError:
        raise TypeError(
            f"aligned_empty: shape must be an int or a tuple of ints, got {type(shape).__name__}"
        ) from None
    dtype = np.dtype(dtype)
    if dtype.subdtype is not None:  # ("f8", (2,)): its shape joins the array's, as np.empty does
        dtype, extra = dtype.subdtype
        shape += extra
    if any(extent < 0 for extent in shape):
        raise ValueError(f"aligned_empty: negative dimensions are not allowed, got shape {shape}")
    if dtype.hasobject:
        raise TypeError(f"aligned_empty: dtype {dtype} holds Python objects; use np.empty")
    if dtype.itemsize == 0:  # "V0", "S0": no data to align, and no view of bytes gives it
        return np.empty(shape, dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    check_fits_in_memory(nbytes, f"aligned_empty({shape}, {dtype})", "ask for a smaller shape")
    storage = np.empty(aligned_storage_bytes(nbytes), dtype=np.uint8)
    return aligned_view(storage, nbytes).view(dtype).reshape(shape)
