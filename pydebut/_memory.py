"""Refuse allocations larger than the machine's memory before making them.

NumPy reports such requests late and in its own terms (``MemoryError`` or
"array is too big"); pydebut checks the size it is about to allocate first and
raises a ``ValueError`` naming the object, its size and this machine's memory.
"""

from __future__ import annotations

import os
from functools import cache


@cache
def physical_memory() -> int | None:
    """Bytes of physical memory of this machine, or ``None`` when unknown."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def format_bytes(n_bytes: int) -> str:
    """``n_bytes`` in binary units, e.g. ``16.0 TiB``."""
    size = float(n_bytes)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if size < 1024 or unit == "PiB":
            return f"{n_bytes} bytes" if unit == "bytes" else f"{size:.3g} {unit}"
        size /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def check_fits_in_memory(n_bytes: int, what: str, narrow: str) -> None:
    """Raise ``ValueError`` if ``what`` needs more than this machine's memory.

    ``narrow`` tells the caller how to ask for less.
    """
    available = physical_memory()
    if available is not None and n_bytes > available:
        raise ValueError(
            f"{what} needs {format_bytes(n_bytes)}, more than this machine's memory "
            f"({format_bytes(available)}); {narrow}"
        )
