"""``pydebut check``: describe a chain and decide whether its product is dense.

Exit status 0 for a valid dense chain, 1 for a valid chain that is not dense,
2 for invalid input.
"""

from __future__ import annotations

import argparse
import json
import sys

from ..chains import classify
from ..density import DensityResult, is_dense
from ..spec import Chain
from ._common import (
    GLOSSARY,
    UsageError,
    add_chain_arguments,
    chain_from_args,
    check_plot_file,
    save_figure,
)
from ._output import count, counted, ratio, table

EXIT_DENSE, EXIT_NOT_DENSE = 0, 1
#: Most cells a side of each image ``--plot`` draws (plot_chain's default).
PLOT_MAX_PIXELS = 256


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "check",
        help="describe a chain and check that its product is dense",
        description="Per-factor table, totals, kind and the exact density verdict. "
        "Exit status: 0 dense, 1 valid but not dense, 2 invalid input.",
        epilog=GLOSSARY,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_chain_arguments(parser)
    parser.add_argument(
        "--format",
        choices=("table", "json"),
        default="table",
        help="table: for reading (default); json: every field, a chain file for --chain",
    )
    parser.add_argument(
        "--plot", metavar="OUT.png", help="draw factor supports and partial products (matplotlib)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    chain = chain_from_args(args)
    assert chain is not None  # add_chain_arguments(required=True)
    if args.plot is not None:
        check_plot_file(args.plot)
        _check_plottable(chain)
    report = build_report(chain)
    if args.plot is not None:
        _save_plot(chain, args.plot)
    if args.format == "json":
        print(_json(report))
    else:
        print(_table(chain, report))
    return EXIT_DENSE if report["dense"] else EXIT_NOT_DENSE


def build_report(chain: Chain) -> dict:
    """Everything ``check`` says about a chain, as a JSON-ready dict (a chain JSON file)."""
    info = classify(chain)
    density = is_dense(chain)
    sup, sub = chain.to_sup_sub()
    m, n = chain.shape
    return {
        "sup": sup,
        "sub": sub,
        "shape": [m, n],
        "n_factors": chain.n_factors,
        "params": chain.n_params,
        "flops": chain.flops,
        "compression": round(chain.compression_ratio, 3),
        "max_dim": chain.max_dim,
        "kind": info.kind,
        "chainable": info.chainable,
        "family": info.family,
        "rank_weights": None if info.rank_weights is None else list(info.rank_weights),
        "dense": density.dense,
        "missing": None if density.missing is None else list(density.missing),
        "density_method": density.method,
        "factors": [
            {"p": f.p, "q": f.q, "r": f.r, "s": f.s, "t": f.t, "blocks": f.n_blocks, "nnz": f.nnz}
            for f in chain
        ],
    }


def _json(report: dict) -> str:
    """``report`` as JSON, one key per line; refused if a count is too long to write."""
    try:
        lines = ",\n".join(
            f" {json.dumps(key)}: {json.dumps(value)}" for key, value in report.items()
        )
    except ValueError:  # the only one json.dumps raises for ints: too many digits
        raise UsageError(
            f"a count of this chain (params {count(report['params'])}) has more than "
            f"{sys.get_int_max_str_digits():,} digits, more than Python writes as text: "
            "--format table gives such counts as powers of two"
        ) from None
    return f"{{\n{lines}\n}}"


def _table(chain: Chain, report: dict) -> str:
    keys = ("p", "q", "r", "s", "t", "blocks", "nnz")
    cells = [
        (f"F_{i}", *(count(f[key]) for key in keys))
        for i, f in enumerate(report["factors"], start=1)
    ]
    m, n = chain.shape
    missing = None if report["missing"] is None else tuple(report["missing"])
    family = report["family"]
    if family == "rank-weighted":
        family += f" (weights {', '.join(map(str, report['rank_weights']))})"
    lines = [
        table(cells, ("factor", *keys)),
        "",
        f"shape {count(m)} x {count(n)}, {counted(chain.n_factors, 'factor')}, "
        f"{count(chain.n_params)} params (compression {ratio(chain.compression_ratio)}), "
        f"{count(chain.flops)} flops per vector",
        f"kind {report['kind']}, largest dimension {count(chain.max_dim)}, "
        f"{'chainable' if report['chainable'] else 'not chainable'}, family {family}",
        f"density: {DensityResult(report['dense'], missing, report['density_method'])}",
    ]
    return "\n".join(lines)


def _check_plottable(chain: Chain) -> None:
    """Refuse ``--plot`` before any work, naming the plot, if it cannot draw ``chain``."""
    from ..plotting import _refusal

    refusal = _refusal(chain, PLOT_MAX_PIXELS)
    if refusal is not None:
        raise UsageError(
            f"--plot cannot draw this chain: {refusal[0]}; without --plot, check gives its "
            "table and density verdict"
        )


def _save_plot(chain: Chain, path: str) -> None:
    from ..plotting import plot_chain

    written = save_figure(plot_chain(chain, max_pixels=PLOT_MAX_PIXELS), path)
    print(f"wrote {written}", file=sys.stderr)
