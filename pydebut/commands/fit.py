"""``pydebut fit``: fit DeBut factors to a matrix stored in a ``.npy`` file."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from ..cli import UsageError, add_chain_arguments, chain_from_args
from ..fit import FitResult, fit_als
from ..fit._als import INIT_METHODS
from ..fit._common import load_target
from ..spec import Chain

HELP = "fit DeBut factors to a matrix (ALS and/or hierarchical factorization)"


def register(subparsers: Any) -> None:
    """Add the ``fit`` subcommand to ``subparsers``."""
    parser = subparsers.add_parser(
        "fit",
        help=HELP,
        description=(
            f"{HELP}. The target is a 2-D .npy file; the chain is given left to right. "
            "Prints the error after the initialisation and after every sweep, then saves "
            "the factors."
        ),
    )
    parser.add_argument("target", metavar="TARGET.npy", help="matrix to fit (2-D .npy)")
    add_chain_arguments(parser, required=True)
    parser.add_argument(
        "--sweeps", type=int, default=5, help="ALS sweeps (left to right and back); default 5"
    )
    parser.add_argument(
        "--init",
        default="auto",
        choices=INIT_METHODS,
        help="initial factors: auto (hierarchical when the chain allows it), random, "
        "hierarchical; with --sweeps 0 the result is the initialisation",
    )
    parser.add_argument("--seed", type=int, default=None, help="seed for --init random")
    parser.add_argument(
        "--tol", type=float, default=None, help="stop when a sweep improves the error less"
    )
    parser.add_argument(
        "--no-progress", action="store_true", help="no progress bar (it needs tqdm)"
    )
    parser.add_argument(
        "-o", "--output", required=True, metavar="FACTORS.npz", help="where to save the factors"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Fit, print the error table, save the factors; return the exit status."""
    from ..io import save

    chain = chain_from_args(args)
    assert chain is not None  # required=True: chain_from_args raised otherwise
    if args.sweeps < 0:
        raise UsageError(f"--sweeps must be >= 0, got {args.sweeps}")
    target = load_target(args.target, chain)
    start = time.perf_counter()
    result = fit_als(
        target,
        chain,
        n_sweeps=args.sweeps,
        tol=args.tol,
        init=args.init,
        rng=args.seed,
        progress=not args.no_progress and _has_tqdm(),
    )
    elapsed = time.perf_counter() - start
    print(format_report(result, chain, elapsed))
    save(args.output, result.operator)
    print(f"saved {chain.n_factors} factors to {args.output}")
    return 0


def _has_tqdm() -> bool:
    try:
        import tqdm  # noqa: F401
    except ImportError:
        print("(install tqdm for a progress bar: pip install pydebut[progress])", file=sys.stderr)
        return False
    return True


def format_report(result: FitResult, chain: Chain, elapsed: float) -> str:
    """The error table (one row per sweep) and the chain's size, as printed by ``fit``."""
    m, n = chain.shape
    rows = [("init", result.errors[0], result.times[0])]
    if result.method == "als":
        rows += [
            (f"sweep {i}", result.errors[2 * i], result.times[2 * i])
            for i in range(1, result.n_sweeps + 1)
        ]
    lines = [
        f"{'step':<10} {'rel. error':>12} {'time (s)':>10}",
        *(f"{step:<10} {error:>12.6g} {seconds:>10.3f}" for step, error, seconds in rows),
        "",
        f"chain      {m} x {n}, {chain.n_factors} factors, {chain.kind}",
        f"params     {chain.n_params} (dense {m * n}, compression {chain.compression_ratio:.2f}x)",
        f"error      {result.error:.6g} (relative Frobenius)",
        f"time       {elapsed:.3f} s",
    ]
    return "\n".join(lines)
