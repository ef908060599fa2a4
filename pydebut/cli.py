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
    if not given:
        if args._chain_required:
            raise UsageError("no chain given: use --sup/--sub, --chain FILE.json or --r-shapes")
        return None
    if args.sup or args.sub:
        if not (args.sup and args.sub):
            raise UsageError("--sup and --sub must be given together")
        return Chain.from_sup_sub(" ".join(args.sup), " ".join(args.sub))
    if args.chain:
        return load_chain_json(args.chain)
    return Chain.from_r_shapes(args.r_shapes)


def load_chain_json(path: str | Path) -> Chain:
    """Read a chain file: ``{"sup": [[p, q], ...], "sub": [[r, s, t], ...]}``.

    ``{"r_shapes": [[p, q, r, s, t], ...]}`` (application order) is accepted too.
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
    if not isinstance(data, dict):
        raise UsageError(f"chain file {path}: expected a JSON object with 'sup' and 'sub'")
    if "sup" in data and "sub" in data:
        return Chain.from_sup_sub(data["sup"], data["sub"])
    if "r_shapes" in data:
        return Chain.from_r_shapes(data["r_shapes"])
    raise UsageError(f"chain file {path}: expected keys 'sup' and 'sub' (or 'r_shapes')")


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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
