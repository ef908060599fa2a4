"""Argument checks the modules share: flags, counts and masked arrays, and echoes of
user input bounded for messages."""

from __future__ import annotations

import operator
import reprlib
from typing import Any

import numpy as np


class _BoundedRepr(reprlib.Repr):
    """``repr`` cut to a few items and characters: error messages echo user input."""

    def repr_int(self, x: int, level: int) -> str:
        digits = int(x.bit_length() * 0.30103) + 1  # about; str() of huge ints is refused
        if digits > self.maxlong:
            return f"<{'negative ' if x < 0 else ''}integer of about {digits} digits>"
        return super().repr_int(x, level)


shown = _BoundedRepr().repr


def as_bool(value: Any, name: str) -> bool:
    """Return ``value`` (a bool or NumPy bool) as a Python bool; otherwise ``TypeError``
    naming ``name``: a flag given ``None``, ``0`` or ``"no"`` would be read by its truth."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
    return bool(value)


def as_positive_int(value: Any, name: str, where: str, *, allow_zero: bool = False) -> int:
    """Return ``value`` as a positive (or, ``allow_zero``, non-negative) Python int.

    Otherwise raise ``TypeError`` or ``ValueError`` naming ``where`` and ``name``.
    """
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{where}: {name} must be an integer, got a boolean {shown(value)}")
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        raise TypeError(f"{where}: {name} must be an integer, got the float {shown(value)}")
    try:
        as_int = operator.index(value)
    except TypeError:
        raise TypeError(
            f"{where}: {name} must be an integer, got {type(value).__name__} {shown(value)}"
        ) from None
    if as_int < (0 if allow_zero else 1):
        wanted = "non-negative" if allow_zero else "positive"
        raise ValueError(f"{where}: {name} must be {wanted}, got {shown(as_int)}")
    return as_int


def refuse_masked(array: Any, name: str, user: str, masked: int | None = None) -> None:
    """Raise ``ValueError`` if ``array`` is a NumPy masked array with masked entries.

    ``numpy.asarray`` drops the mask and keeps the entries' stored values, which
    ``user`` (what would read them, e.g. ``"a fit"``) would then take as data;
    the message names ``name`` and the count. A masked array without masked
    entries passes, as does anything that is not a masked array. ``masked``, if
    given, is the count found elsewhere (a Dask array's, in a pass over its chunks).
    """
    count = masked
    if count is None:
        count = int(np.ma.count_masked(array)) if isinstance(array, np.ma.MaskedArray) else 0
    if count:
        raise ValueError(
            f"{name} is a masked array with {count} masked entries, which {user} would take "
            "at their stored values: fill them first (numpy.ma.filled; .filled(0) sets them "
            "to zero)"
        )
