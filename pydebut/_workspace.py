"""Per-thread work buffers for the batched kernels, bounded in size.

A buffer is reused across calls so that repeated products do not pay for
fresh pages, but a thread keeps at most :data:`KEEP_BYTES` between calls:
a larger request gets a buffer of its own, freed when the call returns. So
no operator, however large, leaves hundreds of MiB behind in a thread once
it is deleted.
"""

from __future__ import annotations

import threading

import numpy as np

#: Most bytes of work buffer one thread keeps between calls.
KEEP_BYTES = 32 * 2**20

#: Every buffer starts on a cache line. NumPy aligns large arrays to 16 bytes,
#: so rows of 64-byte multiples straddle two lines each and every SIMD load and
#: store of them splits; aligned work buffers made the 4096 butterfly at 64
#: columns 1.2x faster in float32 and float64 (benchmarks/README.md).
ALIGN_BYTES = 64

# Backing storage in units of the widest supported item (complex128), so a
# view in any supported dtype is aligned as NumPy and Numba expect.
_UNIT = np.dtype(np.complex128)


class Workspace(threading.local):
    """One reusable buffer per thread; see the module docstring."""

    def __init__(self) -> None:
        self.buffer = np.empty(0, dtype=_UNIT)
        self.last = self.buffer  # the view get() returned last, handed out again as it is

    @property
    def nbytes(self) -> int:
        """Bytes this thread keeps between calls."""
        return self.buffer.nbytes

    def get(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """An uninitialised C-ordered array of ``shape`` and ``dtype``, starting on a cache line."""
        if self.last.shape == shape and self.last.dtype == dtype:
            return self.last
        size = 1
        for extent in shape:
            size *= extent
        nbytes = size * dtype.itemsize
        if nbytes + ALIGN_BYTES > KEEP_BYTES:
            return aligned_empty(shape, dtype)
        if self.buffer.nbytes < nbytes + ALIGN_BYTES:
            self.buffer = np.empty(-(-(nbytes + ALIGN_BYTES) // _UNIT.itemsize), dtype=_UNIT)
        self.last = _aligned_view(self.buffer, nbytes).view(dtype).reshape(shape)
        return self.last


def _aligned_view(storage: np.ndarray, nbytes: int) -> np.ndarray:
    """``nbytes`` of ``storage`` (which has ``ALIGN_BYTES`` to spare) from its first cache line."""
    skip = -storage.ctypes.data % ALIGN_BYTES
    return storage.view(np.uint8)[skip : skip + nbytes]


def aligned_empty(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """An uninitialised C-ordered array of ``shape`` and ``dtype`` that starts on a cache line.

    A view of a slightly larger buffer (its ``base``), as NumPy has no aligned
    allocation of its own.
    """
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    storage = np.empty(-(-(nbytes + ALIGN_BYTES) // _UNIT.itemsize), dtype=_UNIT)
    return _aligned_view(storage, nbytes).view(dtype).reshape(shape)


workspace = Workspace()
