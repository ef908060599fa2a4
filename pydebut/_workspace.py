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
        """An uninitialised C-ordered array of ``shape`` and ``dtype``."""
        if self.last.shape == shape and self.last.dtype == dtype:
            return self.last
        size = 1
        for extent in shape:
            size *= extent
        nbytes = size * dtype.itemsize
        if nbytes > KEEP_BYTES:
            return np.empty(shape, dtype=dtype)
        if self.buffer.nbytes < nbytes:
            self.buffer = np.empty(-(-nbytes // _UNIT.itemsize), dtype=_UNIT)
        self.last = self.buffer.view(np.uint8)[:nbytes].view(dtype).reshape(shape)
        return self.last


workspace = Workspace()
