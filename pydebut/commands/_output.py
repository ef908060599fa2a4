"""How the subcommands print: tables through ``tabulate`` and one format per kind of number.

Every table of the command line goes through :func:`table`, and every number
through the helper for its kind, so that the same quantity reads the same in
every command: counts of parameters, flops or entries with thousands
separators, relative errors with 6 significant digits, ratios with two
decimals and an ``x``, durations with a unit.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Sequence

from tabulate import tabulate

from .._memory import format_count

__all__ = ["count", "duration", "error", "path_text", "ratio", "table"]


def table(
    rows: Iterable[Sequence[object]], headers: Sequence[str], align: str | None = None
) -> str:
    """Lay out ``rows`` under ``headers``, cells already formatted as text.

    Parameters
    ----------
    rows : iterable of sequences
        One sequence of cells per row; cells are printed with ``str``.
    headers : sequence of str
        Column titles.
    align : str, optional
        One letter per column, ``"l"`` (text) or ``"r"`` (numbers); by
        default every column is right-aligned.

    Examples
    --------
    >>> print(table([["F_1", count(1024)], ["F_2", count(32)]], ["factor", "nnz"], "lr"))
    factor      nnz
    --------  -----
    F_1       1,024
    F_2          32
    """
    if align is None:
        align = "r" * len(headers)
    if len(align) != len(headers):
        raise ValueError(f"align has {len(align)} letters for {len(headers)} columns")
    sides = {"l": "left", "r": "right"}
    return tabulate(
        [[str(cell) for cell in row] for row in rows],
        headers=list(headers),
        tablefmt="simple",
        colalign=[sides[letter] for letter in align],
        disable_numparse=True,
    )


def count(value: int) -> str:
    """A count (parameters, flops, entries) with thousands separators: ``25,600``.

    A count of more than a thousand bits reads ``about 2**k``, as
    :func:`pydebut._memory.format_count` gives it (Python refuses to convert an
    integer of more than 4,300 digits to text).

    Examples
    --------
    >>> count(25600), count(10**400)
    ('25,600', 'about 2**1328')
    """
    return format_count(value)


def counted(value: int, noun: str) -> str:
    """A count of things, the noun singular for one: ``1 chain``, ``1,024 chains``.

    Examples
    --------
    >>> counted(1, "chain"), counted(1024, "factor")
    ('1 chain', '1,024 factors')
    """
    return f"{count(value)} {noun}{'' if value == 1 else 's'}"


def error(value: float) -> str:
    """A relative error with 6 significant digits: ``0.0498132``, ``1.9e-15``."""
    return f"{value:.6g}"


def ratio(value: float) -> str:
    """A ratio (compression, speed-up) with two decimals: ``40.96x``."""
    return f"{value:,.2f}x"


def duration(seconds: float) -> str:
    """A duration with a unit and 3 significant digits: ``850 us``, ``12.3 ms``, ``1.25 s``.

    Examples
    --------
    >>> [duration(t) for t in (8.5e-7, 0.0123, 1.25, 4321.0)]
    ['0.85 us', '12.3 ms', '1.25 s', '4,321 s']
    """
    for unit, scale in (("s", 1.0), ("ms", 1e-3)):
        if seconds >= scale:
            value = seconds / scale
            return f"{value:,.0f} {unit}" if value >= 1000 else f"{value:.3g} {unit}"
    return f"{seconds * 1e6:.3g} us"


def path_text(path: str | os.PathLike[str]) -> str:
    """``path`` as text standard output can print, whatever its encoding's error handler.

    Bytes of the name that the file system's encoding does not decode (held by
    ``os.fsdecode`` as lone surrogates) and characters standard output's encoding
    lacks are written as backslash escapes: ``b"\\xfc.npz"`` prints as ``\\xfc.npz``.
    """
    text = os.fsencode(path).decode(sys.getfilesystemencoding(), "backslashreplace")
    encoding = getattr(sys.stdout, "encoding", None) or "utf-8"
    return text.encode(encoding, "backslashreplace").decode(encoding)
