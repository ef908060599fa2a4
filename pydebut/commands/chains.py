"""``pydebut chains M N``: list the chainable chains of an ``M x N`` product."""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import sys
from collections.abc import Iterator

from .._arguments import shown
from ..chains import KINDS, CountLimitError, count_chains, enumerate_chains, rank_weights
from ..spec import Chain
from ._common import GLOSSARY, UsageError, integer
from ._output import count, counted, ratio, table

SORTS = ("params", "flops", "max_dim", "factors")
#: Most rows of a table (all rows are formatted before the first is printed, to align them).
MAX_TABLE_ROWS = 100_000
FORMATS = ("table", "json", "csv")
COLUMNS = (
    "row",
    "factors",
    "params",
    "compression",
    "flops",
    "kind",
    "max_dim",
    "rank",
    "sup",
    "sub",
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "chains",
        help="list the chains of an M x N product",
        description="List the chainable (and, with --rank, rank-weighted) DeBut chains of an "
        "M x N product, filtered and sorted; at most --limit rows are shown.",
        epilog=GLOSSARY,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("m", type=integer, metavar="M", help="rows of the product")
    parser.add_argument("n", type=integer, metavar="N", help="columns of the product")
    parser.add_argument(
        "--factors", default="1-4", metavar="L", help="number of factors: 3, 2-5 or 2,4 (1-4)"
    )
    parser.add_argument(
        "--kind",
        choices=KINDS,
        default="monotonic",
        help="kind of chain (monotonic, as min_param_chain and pareto_front choose; "
        "enumerate_chains and count_chains default to any)",
    )
    parser.add_argument("--max-params", type=integer, metavar="P", help="largest parameter count")
    parser.add_argument("--max-dim", type=integer, metavar="D", help="largest dimension")
    parser.add_argument(
        "--rank",
        type=integer,
        default=1,
        help="largest rank weight w (1): above 1, also list Le et al.'s chains whose inner "
        "dimensions are widened w-fold, which reach low-rank products",
    )
    parser.add_argument(
        "--allow-diagonal", action="store_true", help="allow factors with r = s = 1"
    )
    parser.add_argument("--sort", choices=SORTS, default="params", help="order of rows (params)")
    parser.add_argument("--limit", type=integer, default=50, help="rows to show (50)")
    parser.add_argument("--format", choices=FORMATS, default="table", help="output (table)")
    parser.set_defaults(func=run)


def parse_factors(text: str) -> range | list[int]:
    """``"3"``, ``"2-5"`` or ``"2,4"`` as the ``n_factors`` of :func:`enumerate_chains`."""
    try:
        if "-" in text:
            low, high = (integer(part) for part in text.split("-"))
            if low > high:
                raise UsageError(f"--factors {text}: the range is empty")
            return range(low, high + 1)
        return [integer(part) for part in text.split(",")]
    except (ValueError, argparse.ArgumentTypeError):  # ValueError: not two ends to a range
        raise UsageError(f"--factors must look like 3, 2-5 or 2,4; got {shown(text)}") from None


def run(args: argparse.Namespace) -> int:
    if args.limit < 0:
        raise UsageError(f"--limit must be at least 0, got {args.limit}")
    request = dict(
        n_factors=parse_factors(args.factors),
        kind=args.kind,
        max_params=args.max_params,
        max_dim=args.max_dim,
        rank=args.rank,
        allow_diagonal=args.allow_diagonal,
    )
    try:
        total: int | None = count_chains(args.m, args.n, **request)
    except CountLimitError as err:  # a valid request: its rows are still listed
        total, uncounted = None, f"total not counted: {err}"
    limit = min(args.limit, sys.maxsize) if total is None else min(args.limit, total, sys.maxsize)
    if args.format == "table" and limit > MAX_TABLE_ROWS:
        raise UsageError(
            f"--limit {args.limit} asks for a table of {count(limit)} rows, more than "
            f"{count(MAX_TABLE_ROWS)}; --format csv or json write the rows as they are found"
        )
    listed = itertools.islice(_sorted_chains(args.m, args.n, args.sort, request), limit)
    rows = (_row(i, chain) for i, chain in enumerate(listed, start=1))
    left_out = None if total is None else total - limit
    if args.format == "json":
        head = {
            "m": args.m,
            "n": args.n,
            "filters": {**request, "n_factors": list(request["n_factors"])},
            "sort": args.sort,
            "total": total,  # these three are null when the total was not counted
            "shown": None if total is None else limit,
            "left_out": left_out,
        }
        _write_json_lines(head, rows)
    elif args.format == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(COLUMNS)
        writer.writerows([_flat(row)[column] for column in COLUMNS] for row in rows)
    else:
        _print_table(list(rows))
    if total is None:
        print(uncounted, file=sys.stdout if args.format == "table" else sys.stderr)
    elif left_out:
        note = f"{count(left_out)} of {counted(total, 'chain')} left out by --limit {args.limit}"
        print(note, file=sys.stdout if args.format == "table" else sys.stderr)
    elif args.format == "table":
        print(counted(total, "chain"))
    if total == 0 and not args.allow_diagonal:
        _note_diagonal_chains(args.m, args.n, request)
    return 0


def _note_diagonal_chains(m: int, n: int, request: dict) -> None:
    """Say on standard error when only chains with a factor ``r = s = 1`` fit the request.

    A ``1 x 1`` product has no other chain, nor has a product of more factors than
    the primes of ``m`` and ``n``. Nothing is said when that count is refused.
    """
    try:
        with_diagonal = count_chains(m, n, **{**request, "allow_diagonal": True})
    except ValueError:  # beyond a limit the listing did not reach
        return
    if with_diagonal:
        print(
            "no chain fits without a diagonal factor (r = s = 1); --allow-diagonal "
            f"admits them: {counted(with_diagonal, 'chain')}",
            file=sys.stderr,
        )


def _sorted_chains(m: int, n: int, sort: str, request: dict) -> Iterator[Chain]:
    if sort in ("params", "flops"):
        return enumerate_chains(m, n, order="params", **request)
    if sort == "max_dim":
        return enumerate_chains(m, n, order="max_dim", **request)
    # "factors": by number of factors, then by parameters, one search per factor count.
    # The whole request is checked first, as for "params", so that a refusal names what
    # was asked and comes before any output; each search's graph is then part of the one
    # checked. One factor is an m x n matrix, always monotonic: no other kind starts there.
    enumerate_chains(m, n, order="params", **request)
    per_count = {**request}
    counts = sorted(set(per_count.pop("n_factors")))
    if request["kind"] in ("bulging", "other"):
        counts = [count for count in counts if count > 1]
    return itertools.chain.from_iterable(
        enumerate_chains(m, n, n_factors=count, order="params", **per_count) for count in counts
    )


def _row(index: int, chain: Chain) -> dict:
    sup, sub = chain.to_sup_sub()
    return {
        "row": index,
        "factors": chain.n_factors,
        "params": chain.n_params,
        "compression": round(chain.compression_ratio, 3),
        "flops": chain.flops,
        "kind": chain.kind,
        "max_dim": chain.max_dim,
        "rank": max(rank_weights(chain), default=1),
        "sup": sup,
        "sub": sub,
    }


def _flat(row: dict) -> dict:
    """The row with ``sup``/``sub`` spelled flat, as on the paper's command lines."""
    return {
        **row,
        "sup": " ".join(str(x) for pair in row["sup"] for x in pair),
        "sub": " ".join(str(x) for triple in row["sub"] for x in triple),
    }


def _write_json_lines(head: dict, rows: Iterator[dict]) -> None:
    """Write ``head`` with a ``chains`` list of ``rows`` as JSON, one chain per line, as found."""
    sys.stdout.write(f'{json.dumps(head)[:-1]},\n "chains": [')
    written = 0
    for row in rows:
        sys.stdout.write(f"{',' if written else ''}\n  {json.dumps(row)}")
        written += 1
    sys.stdout.write("\n ]}\n" if written else "]}\n")


def _print_table(rows: list[dict]) -> None:
    if not rows:
        return
    cells = [
        [
            row["row"],
            row["factors"],
            count(row["params"]),
            ratio(row["compression"]),
            count(row["flops"]),
            row["kind"],
            count(row["max_dim"]),
            row["rank"],
            _flat(row)["sup"],
            _flat(row)["sub"],
        ]
        for row in rows
    ]
    print(table(cells, COLUMNS, align="rrrrrlrrll"))
