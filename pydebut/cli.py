"""The ``pydebut`` command line: a thin argparse layer over the library.

Each subcommand lives in :mod:`pydebut.commands` as a module with
``register(subparsers)``; it sets ``func`` to a function that takes the parsed
arguments and returns the exit status. User mistakes raise
:class:`UsageError` (or ``ValueError``/``TypeError``/``OSError`` from the
library) and are printed as one line with exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from .spec import Chain

EXIT_USAGE = 2


class UsageError(Exception):
    """A mistake in what the user asked for; printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}")


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
        "--row", type=int, metavar="N", help="with --chain: which chain of a listing (1-based)"
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


def load_chain_json(path: str | Path, row: int | None = None) -> Chain:
    """Read a chain file (the one chain JSON schema of every command).

    A chain is a JSON object with

    - ``"sup"``: the ``(p, q)`` pairs, left to right, nested ``[[p, q], ...]``
      or flat ``[p, q, p, q, ...]``;
    - ``"sub"``: the ``(r, s, t)`` triples, left to right, nested or flat;

    or, instead of both, ``"r_shapes"``: ``[[p, q, r, s, t], ...]`` in
    application order (the reference PyTorch layer). Any other key (``"params"``,
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
        If the file cannot be read, is not JSON or does not match the schema.
    ValueError, TypeError
        If the numbers do not make a valid chain (the message names the factor).

    Examples
    --------
    >>> import json, tempfile, os
    >>> with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
    ...     json.dump({"sup": [[4, 4], [4, 4]], "sub": [[2, 2, 2], [2, 2, 1]]}, f)
    >>> load_chain_json(f.name)
    Chain([(4, 4, 2, 2, 2), (4, 4, 2, 2, 1)])
    >>> os.remove(f.name)
    """
    try:
        text = Path(path).read_text()
    except OSError as err:
        raise UsageError(f"cannot read chain file {path}: {err.strerror}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise UsageError(
            f"chain file {path} is not valid JSON: {err.msg} (line {err.lineno})"
        ) from None
    except RecursionError:
        raise UsageError(f"chain file {path}: JSON nested too deeply for a chain") from None
    if isinstance(data, dict) and "chains" in data:
        data = data["chains"]
    if isinstance(data, list):
        data = _pick_row(data, row, path)
    elif row is not None:
        raise UsageError(f"chain file {path} holds one chain, so --row does not apply")
    if not isinstance(data, dict):
        raise UsageError(f"chain file {path}: expected a JSON object with 'sup' and 'sub'")
    if "sup" in data and "sub" in data:
        return Chain.from_sup_sub(data["sup"], data["sub"])
    if "r_shapes" in data:
        return Chain.from_r_shapes(data["r_shapes"])
    raise UsageError(f"chain file {path}: expected keys 'sup' and 'sub' (or 'r_shapes')")


def _pick_row(rows: list, row: int | None, path: str | Path) -> object:
    if not rows:
        raise UsageError(f"chain file {path} lists no chains")
    if row is None:
        if len(rows) > 1:
            raise UsageError(
                f"chain file {path} lists {len(rows)} chains: choose one with --row 1..{len(rows)}"
            )
        row = 1
    if not 1 <= row <= len(rows):
        raise UsageError(f"chain file {path} lists {len(rows)} chains, so there is no row {row}")
    return rows[row - 1]


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser with every subcommand registered."""
    from .commands import COMMANDS

    parser = _Parser(prog="pydebut", description="Deformable Butterfly (DeBut) matrices")
    parser.add_argument("--version", action="version", version=f"pydebut {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    subparsers.required = True
    for module in COMMANDS:
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        return int(args.func(args))
    except (UsageError, ValueError, TypeError, OSError) as err:
        print(f"pydebut: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("pydebut: interrupted", file=sys.stderr)
        return 130
