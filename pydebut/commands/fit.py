"""``pydebut fit``: fit DeBut factors to a matrix stored in a ``.npy`` file.

The chain is given (``--sup/--sub``, ``--chain``, ``--r-shapes``) or chosen
(``--auto --max-params N``): monotonic chainable chains under the budget are
enumerated (:func:`pydebut.chains.enumerate_chains`), an evenly spread sample
of them is scored with :func:`pydebut.fit_hierarchical`, and the few with the
smallest errors are refined with ALS; the best is kept.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..chains import enumerate_chains
from ..fit import FitResult, fit_als, fit_hierarchical
from ..fit._als import INIT_METHODS
from ..fit._common import load_target
from ..io import npz_path, save
from ..spec import Chain
from ._common import UsageError, add_chain_arguments, chain_from_args
from ._output import count, duration, error, ratio, table

HELP = "fit DeBut factors to a matrix (ALS and/or hierarchical factorization)"


def register(subparsers: Any) -> None:
    """Add the ``fit`` subcommand to ``subparsers``."""
    parser = subparsers.add_parser(
        "fit",
        help=HELP,
        description=(
            f"{HELP}. The target is a 2-D .npy file; the chain is given left to right, or "
            "chosen with --auto --max-params N. Prints the error after the initialisation "
            "and after every sweep, then saves the factors."
        ),
    )
    parser.add_argument("target", metavar="TARGET.npy", help="matrix to fit (2-D .npy)")
    add_chain_arguments(parser, required=False)
    auto = parser.add_argument_group("choosing the chain (instead of giving it)")
    auto.add_argument(
        "--auto", action="store_true", help="choose a monotonic chainable chain under --max-params"
    )
    auto.add_argument("--max-params", type=int, metavar="N", help="parameter budget for --auto")
    auto.add_argument(
        "--max-factors", type=int, default=10, metavar="L", help="most factors for --auto (10)"
    )
    auto.add_argument(
        "--candidates", type=int, default=48, metavar="K", help="chains scored hierarchically (48)"
    )
    auto.add_argument(
        "--refine", type=int, default=3, metavar="K", help="best candidates refined by ALS (3)"
    )
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
        "--tol",
        type=float,
        default=None,
        help="stop early when a sweep lowers the error by less than this fraction of it "
        "(e.g. 1e-3; default: run all --sweeps)",
    )
    parser.add_argument(
        "--no-progress", action="store_true", help="no progress bar (it needs tqdm)"
    )
    parser.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="FACTORS.npz",
        help="where to save the factors (.npz is added if missing, as numpy does)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Fit, print the error table, save the factors; return the exit status."""
    chain = chain_from_args(args)
    _check_options(args, chain)
    start = time.perf_counter()
    options = {
        "n_sweeps": args.sweeps,
        "tol": args.tol,
        "rng": args.seed,
        "progress": not args.no_progress and _has_tqdm(),
    }
    if chain is None:
        target = load_target(args.target, None)
        candidates = explore(target, args, options)
        print(format_front(candidates))
        result = min((c.refined for c in candidates if c.refined), key=lambda r: r.error)
        print()
    else:
        target = load_target(args.target, chain)
        result = fit_als(target, chain, init=args.init, **options)
    elapsed = time.perf_counter() - start
    print(format_report(result, elapsed))
    save(args.output, result.operator)
    print(f"saved {result.operator.chain.n_factors} factors to {npz_path(args.output)}")
    return 0


def _check_options(args: argparse.Namespace, chain: Chain | None) -> None:
    if args.sweeps < 0:
        raise UsageError(f"--sweeps must be >= 0, got {args.sweeps}")
    if not args.auto:
        if args.max_params is not None:
            raise UsageError("--max-params only applies with --auto")
        if chain is None:
            raise UsageError(
                "no chain given: use --sup/--sub, --chain FILE.json, --r-shapes, "
                "or --auto --max-params N"
            )
        return
    if chain is not None:
        raise UsageError("give a chain or --auto, not both")
    if args.max_params is None:
        raise UsageError("--auto needs --max-params N (the parameter budget)")
    for name in ("max_params", "max_factors", "candidates", "refine"):
        if getattr(args, name) < (2 if name == "max_factors" else 1):
            option = "--" + name.replace("_", "-")
            raise UsageError(f"{option} must be >= {2 if name == 'max_factors' else 1}")


@dataclass
class Candidate:
    """A chain explored by ``--auto``: its hierarchical fit and, if refined, its ALS fit."""

    chain: Chain
    hierarchical: FitResult
    refined: FitResult | None = None


def explore(target: np.ndarray, args: argparse.Namespace, options: dict) -> list[Candidate]:
    """Score an even sample of the chains under the budget; refine the best few with ALS."""
    m, n = target.shape
    chains = list(
        enumerate_chains(
            m,
            n,
            n_factors=range(2, args.max_factors + 1),
            kind="monotonic",
            max_params=args.max_params,
            order="params",
        )
    )
    if not chains:
        raise UsageError(
            f"no monotonic chainable chain of 2 to {args.max_factors} factors for a "
            f"{m} x {n} matrix has at most {args.max_params} parameters"
        )
    picks = np.unique(np.linspace(0, len(chains) - 1, args.candidates).round().astype(int))
    candidates = [Candidate(c, fit_hierarchical(target, c)) for c in (chains[i] for i in picks)]
    best = sorted(candidates, key=lambda c: c.hierarchical.error)[: args.refine]
    for candidate in best:
        init = candidate.hierarchical.operator if args.init != "random" else "random"
        candidate.refined = fit_als(target, candidate.chain, init=init, **options)
    return candidates


def format_front(candidates: list[Candidate]) -> str:
    """The explored chains by parameters, with the (parameters, error) front marked."""
    errors = [c.refined.error if c.refined else c.hierarchical.error for c in candidates]
    chosen = min((i for i, c in enumerate(candidates) if c.refined), key=lambda i: errors[i])
    lines = [
        f"explored {len(candidates)} chains ('*': no chain with as few parameters fits better)",
        f"  {'params':>8} {'factors':>7} {'max dim':>7} {'hierarchical':>12} {'ALS':>10}",
    ]
    order = sorted(range(len(candidates)), key=lambda i: (candidates[i].chain.n_params, errors[i]))
    best_so_far = np.inf
    for i in order:
        c = candidates[i]
        on_front = errors[i] < best_so_far
        best_so_far = min(best_so_far, errors[i])
        als = f"{c.refined.error:>10.4g}" if c.refined else f"{'':>10}"
        lines.append(
            f"{'*' if on_front else ' '} {c.chain.n_params:>8} {c.chain.n_factors:>7} "
            f"{c.chain.max_dim:>7} {c.hierarchical.error:>12.4g} {als}"
            + ("  <- chosen" if i == chosen else "")
        )
    return "\n".join(lines)


def _has_tqdm() -> bool:
    try:
        import tqdm  # noqa: F401
    except ImportError:
        print("(install tqdm for a progress bar: pip install pydebut[progress])", file=sys.stderr)
        return False
    return True


def format_report(result: FitResult, elapsed: float) -> str:
    """The error table (one row per sweep) and the chain's size, as printed by ``fit``."""
    chain = result.operator.chain
    m, n = chain.shape
    rows = [("init", error(result.errors[0]), duration(result.times[0]))]
    rows += [
        (f"sweep {i}", error(result.errors[2 * i]), duration(result.times[2 * i]))
        for i in range(1, result.n_sweeps + 1)
    ]
    lines = [
        table(rows, ("step", "rel. error", "time"), align="lrr"),
        "",
        f"chain      {count(m)} x {count(n)}, {chain.n_factors} factors, {chain.kind}",
        f"params     {count(chain.n_params)} (dense {count(m * n)}, "
        f"compression {ratio(chain.compression_ratio)})",
        f"error      {error(result.error)} (relative Frobenius)",
        f"time       {duration(elapsed)}",
    ]
    return "\n".join(lines)
