"""``pydebut fit``: fit DeBut factors to a matrix stored in a ``.npy`` file.

The chain is given (``--sup/--sub``, ``--chain``, ``--r-shapes``) or chosen
(``--auto --max-params N``) by :func:`pydebut.approximate`, which searches the
chainable and rank-weighted chains under the budget and is never worse than the
truncated SVD with the same number of parameters.
"""

from __future__ import annotations

import argparse
import inspect
import math
import sys
import time
import warnings
from typing import Any

from ..fit import (
    MAX_SWEEPS,
    ApproximationResult,
    ExploredChain,
    FitResult,
    SearchNarrowedWarning,
    approximate,
    fit_als,
)
from ..fit._als import INIT_METHODS
from ..fit._common import load_target
from ..io import check_savable, npz_path, save
from ..spec import Chain
from ._common import (
    UsageError,
    add_chain_arguments,
    chain_from_args,
    check_output_file,
    check_seed,
    integer,
)
from ._output import count, duration, error, path_text, ratio, table

HELP = "fit DeBut factors to a matrix (ALS and/or hierarchical factorization)"

#: The options of --auto passed on to :func:`pydebut.approximate` (same names, its defaults).
_SEARCH_OPTIONS = (
    ("max-factors", "L", "most factors"),
    ("beam-width", "K", "prefixes kept per depth in every band of parameters"),
    ("refine", "K", "best chains refined by ALS in every band of parameters"),
    ("max-splits", "S", "most split spectra computed per band of parameters"),
    ("workers", "N", "threads computing split spectra, -1 for one per CPU"),
)
#: The one value below 1 that an option of --auto takes besides those >= 1.
_ALSO_TAKES = {"workers": -1}


def register(subparsers: Any) -> None:
    """Add the ``fit`` subcommand to ``subparsers``."""
    parser = subparsers.add_parser(
        "fit",
        help=HELP,
        description=(
            f"{HELP}. The target is a 2-D .npy file; the chain is given left to right, or "
            "chosen with --auto --max-params N. Saves the factors, then prints the error "
            "after the initialisation and after every sweep."
        ),
    )
    parser.add_argument("target", metavar="TARGET.npy", help="matrix to fit (2-D .npy)")
    add_chain_arguments(parser, required=False)
    auto = parser.add_argument_group("choosing the chain (instead of giving it)")
    auto.add_argument(
        "--auto",
        action="store_true",
        help="search chainable and rank-weighted chains under --max-params (pydebut.approximate)",
    )
    auto.add_argument("--max-params", type=integer, metavar="N", help="parameter budget for --auto")
    for option, metavar, text in _SEARCH_OPTIONS:
        default = inspect.signature(approximate).parameters[_name(option)].default
        auto.add_argument(f"--{option}", type=integer, metavar=metavar, help=f"{text} ({default})")
    parser.add_argument(
        "--sweeps",
        type=integer,
        default=5,
        help=f"ALS sweeps (left to right and back), at most {MAX_SWEEPS:,}; default 5",
    )
    parser.add_argument(
        "--init",
        choices=INIT_METHODS,
        help="initial factors of a given chain: auto (hierarchical when the chain allows "
        "it; the default), random, hierarchical; with --sweeps 0 the result is the "
        "initialisation",
    )
    parser.add_argument(
        "--seed", type=integer, default=None, help="seed for --init random and for --auto's search"
    )
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
    if chain is not None:
        check_savable(chain)  # before the fit, not when saving its result
    try:
        output = npz_path(args.output)
    except ValueError:  # no file name in it: the check says why in the command's words
        check_output_file(args.output, "the factors")
        raise
    check_output_file(str(output), "the factors")  # the file written, not args.output
    start = time.perf_counter()
    options = {
        "n_sweeps": args.sweeps,
        "tol": args.tol,
        "rng": args.seed,
        "progress": not args.no_progress and _has_tqdm(),
    }
    if chain is None:
        search = {
            _name(option): getattr(args, _name(option))
            for option, _, _ in _SEARCH_OPTIONS
            if getattr(args, _name(option)) is not None
        }
        with warnings.catch_warnings():  # format_approximation reports the narrowing
            warnings.simplefilter("ignore", SearchNarrowedWarning)
            # the path: approximate checks the budget from its shape before reading it
            approximation = approximate(args.target, args.max_params, **search, **options)
        report, operator = format_approximation(approximation), approximation.operator
    else:
        target = load_target(args.target, chain)
        result = fit_als(target, chain, init=args.init or "auto", **options)
        report, operator = format_report(result, time.perf_counter() - start), result.operator
    save(args.output, operator)  # before the report: a failing standard output loses no fit
    saved = f"saved {operator.chain.n_factors} factors to {path_text(output)}"
    try:
        print(f"{report}\n{saved}", flush=True)
    except BrokenPipeError:  # the reader went away: main() stops quietly
        raise
    except OSError as err:
        raise UsageError(f"{saved}, but cannot write to standard output: {err.strerror}") from None
    return 0


def _name(option: str) -> str:
    """The keyword of :func:`pydebut.approximate` (and argparse's dest) of ``--option``."""
    return option.replace("-", "_")


def _check_options(args: argparse.Namespace, chain: Chain | None) -> None:
    if not 0 <= args.sweeps <= MAX_SWEEPS:
        raise UsageError(f"--sweeps must be from 0 to {MAX_SWEEPS:,}, got {args.sweeps}")
    check_seed(args.seed)
    if args.tol is not None and not 0 <= args.tol < math.inf:
        raise UsageError(f"--tol must be finite and >= 0, got {args.tol}")
    search = ["max-params"] + [option for option, _, _ in _SEARCH_OPTIONS]
    given = [option for option in search if getattr(args, _name(option)) is not None]
    if not args.auto:
        if given:
            raise UsageError(f"--{given[0]} only applies with --auto")
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
    if args.init is not None:
        raise UsageError(
            "--init applies to a given chain: --auto starts every fit from the "
            "hierarchical factorization"
        )
    for option in given:
        value, also = getattr(args, _name(option)), _ALSO_TAKES.get(option)
        if value < 1 and value != also:
            raise UsageError(f"--{option} must be >= 1" + ("" if also is None else f" or {also}"))


def format_approximation(result: ApproximationResult) -> str:
    """Explored chains, the chosen one as ``--sup/--sub`` and the SVD beside it."""
    chain = result.chain
    m, n = chain.shape
    sup, sub = chain.to_sup_sub()
    shown = [e for e in result.explored if e.error is not None]
    shown += [e for e in result.explored if e.error is None][: max(0, 10 - len(shown))]

    def fitted(e: ExploredChain) -> str:  # the chosen chain's is the answer's, fitted or not
        measured = result.error if e.chain == chain else e.error
        return "" if measured is None else error(measured)

    rows = [
        (
            count(e.n_params),
            e.chain.n_factors,
            e.chain.kind,
            error(e.estimate),
            fitted(e),
            "<- chosen" if e.chain == chain else "",
        )
        for e in sorted(shown, key=lambda e: (e.n_params, e.estimate))
    ]
    if all(e.chain != chain for e in shown):  # a butterfly, included chain or the SVD
        row = (count(chain.n_params), chain.n_factors, chain.kind, "-", error(result.error))
        rows.append((*row, "<- chosen"))
    lines = [
        f"explored {count(len(result.explored))} chains ({count(result.n_splits)} split "
        "spectra); estimate = left-to-right hierarchical error, fitted = true error "
        "after the fit (ALS for each band's best; - : not from the search)",
        table(rows, ("params", "factors", "kind", "estimate", "fitted", ""), align="rrlrrl"),
    ]
    if result.narrowed:
        lines.append(
            f"(search narrowed: {result.narrowed}; the options are --max-splits, "
            "--beam-width, --max-factors)"
        )
    baseline = result.baseline
    svd = "randomized SVD" if baseline.randomized else "truncated SVD"
    lines += [
        "",
        f"chain      {count(m)} x {count(n)}, {chain.n_factors} factors, {chain.kind}",
        f"           --sup '{sup}' --sub '{sub}'",
        f"params     {count(chain.n_params)} (dense {count(m * n)}, "
        f"compression {ratio(chain.compression_ratio)})",
        f"error      {error(result.error)} (relative Frobenius)",
        f"{svd:<10} rank {baseline.rank}, {count(baseline.n_params)} params: "
        f"error {error(baseline.error)}",
        f"time       {duration(result.seconds)}",
    ]
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
