"""Per-thread work buffers for the batched kernels, bounded in size.

A buffer is reused across calls so that repeated products do not pay for
fresh pages, but a thread keeps at most :data:`KEEP_BYTES` between calls:
a larger request gets a buffer of its own, freed when the call returns. So
no operator, however large, leaves hundreds of MiB behind in a thread once
it is deleted.
"""

from __future__ import annotations

import math
import threading

import numpy as np

from ._memory import aligned_empty, aligned_storage_bytes, aligned_view

#: Most bytes of work buffer one thread keeps between calls.
KEEP_BYTES = 32 * 2**20


def kept(nbytes: int) -> bool:
    """Whether a work buffer of ``nbytes`` comes from the kept buffer (with room to align it)."""
    return aligned_storage_bytes(nbytes) <= KEEP_BYTES


class Workspace(threading.local):
    """One reusable buffer per thread; see the module docstring."""

    def __init__(self) -> None:
        self.buffer = np.empty(0, dtype=np.uint8)
        self.last = self.buffer  # the view get() returned last, handed out again as it is

    @property
    def nbytes(self) -> int:
        """Bytes this thread keeps between calls."""
        return self.buffer.nbytes

    def get(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """An uninitialised C-ordered array of ``shape`` and ``dtype``, starting on a cache line.

        Work buffers start on a line as :func:`pydebut.aligned_empty` arrays do:
        at 64 columns, the 4096 butterfly ran 1.2x faster in float32 and float64
        than in NumPy's buffers, which start 16 bytes past a line
        (benchmarks/README.md).
        """
        if self.last.shape == shape and self.last.dtype == dtype:
            return self.last
        nbytes = math.prod(shape) * dtype.itemsize
        if not kept(nbytes):
            return aligned_empty(shape, dtype)
        if self.buffer.nbytes < aligned_storage_bytes(nbytes):
            self.buffer = np.empty(aligned_storage_bytes(nbytes), dtype=np.uint8)
        self.last = aligned_view(self.buffer, nbytes).view(dtype).reshape(shape)
        return self.last


workspace = Workspace()
