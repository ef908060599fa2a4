"""What several subcommands share: chain arguments, glossary, plots, the user-error type.

The subcommands import from here, and :mod:`pydebut.cli` imports the
subcommands, so nothing here may import :mod:`pydebut.cli`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from .._arguments import as_positive_int, shown
from .._memory import check_fits_in_memory
from ..cli import MAX_CHAIN_FILE_BYTES
from ..io import MAX_FACTORS, _open_without_waiting
from ..spec import DECIMAL, Chain, _parse_list
from . import UsageError

#: Bytes of memory per byte of a chain file while it is parsed, at most: measured with
#: tracemalloc, ``json.loads`` keeps 33 bytes per byte of ``[{},{},...]`` (``[[],...]``: 22.5,
#: ``[0,...]``: 25, a ``pydebut chains --format json`` listing: 7), and the file's bytes and
#: text add 2; 44 with the allocator's overhead (peak RSS of a 64 MiB ``[[],...]``: 2.9 GB).
PARSE_BYTES_PER_FILE_BYTE = 44

#: Help epilog of the commands that print these terms.
GLOSSARY = """terms (the Concepts page of the documentation has the maths):
  p, q, r, s, t  a factor is p x q, block-diagonal with p/(r*t) blocks, each an
                 r x s grid of t x t diagonal matrices; nnz = p*s weights
  chainable      the blocks of consecutive factors line up (k_1 = 1, t_L = 1,
                 t_l = r_(l+1) t_(l+1), k_(l+1) = k_l s_l, with k = p/(r*t)
                 blocks); such a product is always dense
  family         chainable; rank-weighted (Le et al.: intermediate dimensions
                 widened by integer rank weights w_l, shown as 'weights'); or
                 general (checked entry by entry: 'reachability')
  kind           monotonic (dimensions never change direction), bulging (an
                 inner dimension exceeds max(m, n)) or other
  dense          every output depends on every input"""


class _RepeatedKeyError(Exception):
    """A JSON object that gives a key twice (``json`` would keep the last one)."""


def _object_without_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object as a dict, refusing a key given twice (:class:`_RepeatedKeyError`)."""
    result = dict(pairs)
    if len(result) < len(pairs):
        seen: set[str] = set()
        raise _RepeatedKeyError(next(key for key, _ in pairs if key in seen or seen.add(key)))
    return result


def check_seed(seed: int | None) -> None:
    """``UsageError`` for a ``--seed`` that NumPy would refuse (a negative one)."""
    if seed is not None and seed < 0:
        raise UsageError(f"--seed must be a non-negative integer, got {seed}")


def add_chain_arguments(parser: argparse.ArgumentParser, required: bool = True) -> None:
    """Add ``--sup/--sub``, ``--chain FILE.json`` and ``--r-shapes`` to ``parser``."""
    group = parser.add_argument_group("chain (one of)")
    group.add_argument("--sup", nargs="+", help="(p, q) pairs, left to right: flat or JSON")
    group.add_argument("--sub", nargs="+", help="(r, s, t) triples, left to right: flat or JSON")
    group.add_argument("--chain", metavar="FILE.json", help="chain file (see docs: chain JSON)")
    group.add_argument(
        "--r-shapes", metavar="JSON", help="reference layer R_shapes, application order"
    )
    group.add_argument(
        "--row", type=integer, metavar="N", help="with --chain: which chain of a listing (1-based)"
    )
    parser.set_defaults(_chain_required=required)


def chain_from_args(args: argparse.Namespace) -> Chain | None:
    """Build the chain named by ``--sup/--sub``, ``--chain`` or ``--r-shapes``."""
    given = [
        name
        for name, value in (
            ("--sup/--sub", args.sup or args.sub),
            ("--chain", args.chain),
            ("--r-shapes", args.r_shapes),
        )
        if value
    ]
    if len(given) > 1:
        raise UsageError(f"give the chain once, not with {' and '.join(given)}")
    if args.row is not None and not args.chain:
        raise UsageError("--row only applies to --chain FILE.json")
    if args.row is not None and args.row < 1:
        raise UsageError(f"--row must be at least 1 (rows count from 1), got {args.row}")
    if not given:
        if args._chain_required:
            raise UsageError("no chain given: use --sup/--sub, --chain FILE.json or --r-shapes")
        return None
    if args.sup or args.sub:
        if not (args.sup and args.sub):
            raise UsageError("--sup and --sub must be given together")
        return Chain.from_sup_sub(" ".join(args.sup), " ".join(args.sub))
    if args.chain:
        return load_chain_json(args.chain, row=args.row)
    return Chain.from_r_shapes(args.r_shapes)


def integer(text: str) -> int:
    """An integer option, in ASCII digits with an optional minus sign (argparse's type).

    ``int`` would also read other scripts' digits (``"٤"``), ``"+4"`` and ``"1_0"``.
    """
    if not DECIMAL.fullmatch(text):
        raise argparse.ArgumentTypeError(f"invalid integer: {shown(text)}")
    try:
        return int(text)
    except ValueError:  # more than 4,300 digits
        raise argparse.ArgumentTypeError(f"integer too long: {text:.20}...") from None


def load_chain_json(path: str | Path, row: int | None = None) -> Chain:
    """Read a chain file (the one chain JSON schema of every command).

    A chain is a JSON object with

    - ``"sup"``: the ``(p, q)`` pairs, left to right, nested ``[[p, q], ...]``
      or flat ``[p, q, p, q, ...]``;
    - ``"sub"``: the ``(r, s, t)`` triples, left to right, nested or flat;

    or, instead of both, ``"r_shapes"``: ``[[p, q, r, s, t], ...]`` in
    application order (the reference PyTorch layer); a chain with both forms is
    refused, as they could disagree. Any other key (``"params"``,
    ``"kind"``, ... as written by ``pydebut chains`` and ``pydebut check``) is
    ignored. A file may also list chains, as ``pydebut chains --format json``
    writes them: an object with a ``"chains"`` array, or a bare array. Then
    ``row`` (1-based, as the ``row`` column of the table) picks one; it may be
    left out only when the list has exactly one chain.

    Parameters
    ----------
    path : str or Path
        The JSON file.
    row : int, optional
        Which chain of a listing to read (1-based).

    Returns
    -------
    Chain

    Raises
    ------
    UsageError
        If the file cannot be read, is not JSON or does not match the schema,
        or its chain has more than :data:`pydebut.io.MAX_FACTORS` factors
        (refused before the chain is built).
    ValueError, TypeError
        If ``row`` is not a positive int (a bool or a float is not taken), or
        the numbers do not make a valid chain (the message names the factor);
        ``ValueError`` too, before parsing, if parsing the file could take more
        than this machine's memory (``PARSE_BYTES_PER_FILE_BYTE`` per byte).

    Examples
    --------
    >>> import json, tempfile, os
    >>> with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
    ...     json.dump({"sup": [[4, 4], [4, 4]], "sub": [[2, 2, 2], [2, 2, 1]]}, f)
    >>> load_chain_json(f.name)
    Chain([(4, 4, 2, 2, 2), (4, 4, 2, 2, 1)])
    >>> os.remove(f.name)
    """
    if row is not None:  # True or 1.0 would pick row 1
        row = as_positive_int(row, "row", "load_chain_json")
    try:
        # a named pipe: opened without waiting for a writer (without one it reads as empty),
        # then read as usual, so <(pydebut chains ...) is read whole
        with open(path, "rb", opener=_open_without_waiting) as file:
            os.set_blocking(file.fileno(), True)
            raw = file.read(MAX_CHAIN_FILE_BYTES + 1)  # /dev/zero ends here too
    except OSError as err:
        raise UsageError(f"cannot read chain file {path}: {err.strerror}") from None
    narrow = "list fewer rows into it (pydebut chains --limit) or split it"
    if len(raw) > MAX_CHAIN_FILE_BYTES:
        raise UsageError(
            f"chain file {path} is larger than {MAX_CHAIN_FILE_BYTES:,} bytes "
            f"(MAX_CHAIN_FILE_BYTES of pydebut.cli): {narrow}"
        )
    if not raw:
        raise UsageError(f"chain file {path} is empty (or a named pipe that nothing writes to)")
    check_fits_in_memory(
        len(raw) * PARSE_BYTES_PER_FILE_BYTE, f"parsing the chain file {path}", narrow
    )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"chain file {path} is not text (not UTF-8): not a JSON file") from None
    try:
        data = json.loads(text, object_pairs_hook=_object_without_repeats)
    except json.JSONDecodeError as err:
        raise UsageError(
            f"chain file {path} is not valid JSON: {err.msg} (line {err.lineno})"
        ) from None
    except _RepeatedKeyError as err:
        raise UsageError(
            f"chain file {path} gives {shown(err.args[0])} twice in one object (JSON keeps "
            "the last silently): keep one"
        ) from None
    except RecursionError:
        raise UsageError(f"chain file {path} is nested too deeply to be a chain") from None
    except ValueError:  # the one other refusal of json.loads: Python's integer digit limit
        raise UsageError(
            f"chain file {path} holds an integer of more than {sys.get_int_max_str_digits():,} "
            "digits: not a chain"
        ) from None
    if isinstance(data, dict) and "chains" in data:
        data = data["chains"]
    if isinstance(data, list):
        data = _pick_row(data, row, path)
    elif row is not None:
        raise UsageError(f"chain file {path} holds one chain, so --row does not apply")
    if not isinstance(data, dict):
        raise UsageError(f"chain file {path}: expected a JSON object with 'sup' and 'sub'")
    if "r_shapes" in data and ("sup" in data or "sub" in data):
        raise UsageError(
            f"chain file {path} gives the chain twice ('r_shapes' and 'sup'/'sub'): keep one"
        )
    if "sup" in data and "sub" in data:
        _check_factor_count(data, ("sup", "sub"), path)
        return Chain.from_sup_sub(data["sup"], data["sub"])
    if "r_shapes" in data:
        _check_factor_count(data, ("r_shapes",), path)
        return Chain.from_r_shapes(data["r_shapes"])
    raise UsageError(f"chain file {path}: expected keys 'sup' and 'sub' (or 'r_shapes')")


#: Numbers a factor takes in each key of a chain, when the key's list is flat.
_NUMBERS_PER_FACTOR = {"sup": 2, "sub": 3, "r_shapes": 5}


def _check_factor_count(data: dict, keys: tuple[str, ...], path: str | Path) -> None:
    """Refuse a chain of more than :data:`pydebut.io.MAX_FACTORS` factors before building it.

    A list of lists gives a factor per item, a flat list one per
    ``_NUMBERS_PER_FACTOR[key]`` numbers; a string is read as Chain reads it
    first. Building a chain of a million factors from a 17 MB file took 16 s
    and 550 MB, and ``check`` 2 GB.
    """
    for key in keys:
        items = data[key]
        if isinstance(items, str):
            items = _parse_list(items, key)
        if not isinstance(items, list):
            continue  # Chain's own error names the key
        nested = bool(items) and isinstance(items[0], list)
        count = len(items) if nested else len(items) // _NUMBERS_PER_FACTOR[key]
        if count > MAX_FACTORS:
            raise UsageError(
                f"chain file {path} gives {count:,} factors in {key!r}: a chain has at most "
                f"MAX_FACTORS = {MAX_FACTORS:,} (pydebut.io), as a pydebut file holds"
            )


def _pick_row(rows: list, row: int | None, path: str | Path) -> object:
    """The chain of ``rows`` whose ``row`` field is ``row`` (1-based position without fields)."""
    if not rows:
        raise UsageError(f"chain file {path} lists no chains")
    labels = [item.get("row") if isinstance(item, dict) else None for item in rows]
    if not all(type(label) is int for label in labels):  # rows not from `pydebut chains`
        labels = list(range(1, len(rows) + 1))
    else:
        seen: set[int] = set()
        for label in labels:
            if label in seen:
                raise UsageError(f"chain file {path} numbers two chains as row {label}")
            seen.add(label)
    shown = ", ".join(map(str, labels[:5])) + (", ..." if len(labels) > 5 else "")
    if row is None:
        if len(rows) > 1:
            raise UsageError(
                f"chain file {path} lists {len(rows)} chains: choose one with --row "
                f"(its rows: {shown})"
            )
        return rows[0]
    if row not in labels:
        raise UsageError(f"chain file {path} has no row {row} (its rows: {shown})")
    return rows[labels.index(row)]


def check_output_file(path: str, what: str) -> None:
    """Raise :class:`UsageError` if ``what`` cannot be written to the file ``path``.

    Called before any work: an empty path, a folder, a missing or read-only folder, a
    path that is not a regular file (opening a named pipe waits for a reader), and
    anything else that stops the file from being opened for writing (a name too long,
    a link to a missing folder), found by opening it; a file that did not exist is
    removed again.
    """
    if not path:
        raise UsageError(f"cannot write {what} to an empty file name")
    folder = os.path.dirname(os.path.abspath(path))
    is_folder = os.path.isdir(path) or path.endswith((os.sep, "/"))
    if is_folder or not os.path.isdir(folder) or not os.access(folder, os.W_OK):
        problem = (
            "it is a folder" if is_folder
            else f"folder {folder} does not exist" if not os.path.isdir(folder)
            else f"folder {folder} is not writable"
        )  # fmt: skip
        raise UsageError(f"cannot write {what} to {path}: {problem}")
    if os.path.exists(path) and not os.path.isfile(path):  # open() waits for a pipe's reader
        raise UsageError(
            f"cannot write {what} to {path}: it is not a regular file (a pipe, device or socket)"
        )
    existed = os.path.lexists(path)
    try:  # without waiting all the same: the path may have become a pipe since
        with open(path, "ab", opener=_open_without_waiting):  # appends nothing to a file
            pass
    except OSError as err:
        raise UsageError(f"cannot write {what} to {path}: {err.strerror}") from None
    if not existed:
        os.remove(path)


def require_matplotlib(option: str = "--plot") -> None:
    """Raise :class:`UsageError` (one line) if matplotlib cannot be imported."""
    try:
        import matplotlib.figure  # noqa: F401
    except ImportError:
        raise UsageError(f"{option} needs matplotlib: pip install pydebut[plot]") from None


def check_plot_file(path: str) -> None:
    """Raise :class:`UsageError` unless ``--plot`` can save a figure to the file ``path``.

    Called before any work: matplotlib is needed, the suffix of ``path``, if
    any, must be a format matplotlib writes, and both ``path`` and the file the
    figure lands in (:func:`figure_path`) must be writable
    (:func:`check_output_file`).
    """
    require_matplotlib()
    from matplotlib.backend_bases import FigureCanvasBase

    formats = FigureCanvasBase.get_supported_filetypes()
    suffix = Path(path).suffix[1:].lower()  # as savefig reads it
    if suffix and suffix not in formats:
        raise UsageError(
            f"cannot write the plot to {path}: format {suffix!r} is not supported "
            f"(supported formats: {', '.join(sorted(formats))})"
        )
    check_output_file(path, "the plot")  # as given: a folder is refused, not written beside
    written = str(figure_path(path))
    if written != path:
        check_output_file(written, "the plot")


def figure_path(path: str | Path) -> Path:
    """The file a figure saved to ``path`` lands in.

    A path without a suffix gets matplotlib's default format as suffix
    (``noext`` becomes ``noext.png``), which is what ``savefig`` writes.
    """
    import matplotlib

    written = Path(path)
    if written.suffix:
        return written
    return written.with_name(f"{written.name}.{matplotlib.rcParams['savefig.format']}")


def save_figure(figure: Any, path: str | Path, dpi: int = 100) -> Path:
    """Save ``figure`` to ``path`` and return the path of the file really written
    (:func:`figure_path`)."""
    written = figure_path(path)
    figure.savefig(written, dpi=dpi)
    return written
