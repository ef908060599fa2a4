"""``pydebut demo``: a tour of the package on a 512 x 2048 layer, in well under a minute.

1. choose a chain for the layer: count and rank candidates, find the smallest;
2. fit the paper's chain to a noisy matrix with that structure;
3. apply the fitted operator and compare with the dense matrix;
4. solve a ridge least-squares problem with it through ``scipy.sparse.linalg.lsqr``;
5. let :func:`~pydebut.approximate` choose the chain for a small smooth kernel.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import scipy.sparse.linalg as spla

from ..chains import count_chains, enumerate_chains, min_param_chain
from ..density import is_dense
from ..fit import FitResult, approximate, fit_als, fit_hierarchical
from ..operator import DeButOperator
from ..spec import Chain
from ..special import PAPER_CHAINS
from ._common import UsageError, check_output_file, check_seed, integer, require_matplotlib
from ._output import count, duration, error, ratio, table

NOISE = 0.05
ALS_SWEEPS = 3
RIDGE = 0.05
BUSY_SPREAD = 0.25  # repeated timings varying more than this mark the machine busy
#: Shape of the kernel matrix of step 5 (small: the search stays fast).
KERNEL_SHAPE = (64, 256)
#: The files ``--plot DIR`` writes: the chain's supports, the error per sweep.
FIGURES = ("chain_supports.png", "fit_errors.png")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="tour: choose, fit, apply and solve with a 512 x 2048 DeBut chain",
        description="Choose a DeBut chain for a 512 x 2048 layer, fit the paper's chain to a "
        "noisy matrix, compare the fitted operator with the dense matrix, solve a ridge "
        "least-squares problem with scipy's lsqr, then let approximate() choose the chain "
        f"for a {KERNEL_SHAPE[0]} x {KERNEL_SHAPE[1]} smooth kernel.",
    )
    parser.add_argument("--seed", type=integer, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--plot", metavar="DIR", help="save the figures (chain supports, error per sweep) here"
    )
    parser.set_defaults(func=run)


def repeat_times(function: Callable[[], object], repeats: int = 7, number: int = 5) -> list[float]:
    """Mean seconds per call of ``number`` calls, measured ``repeats`` times after a warm-up."""
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(number):
            function()
        times.append((time.perf_counter() - start) / number)
    return times


def spread(times: list[float]) -> float:
    """How much repeated timings vary: the median over the best, minus 1 (0 = steady)."""
    return float(np.median(times) / min(times) - 1)


def load_note(spreads: list[float], load: float | None, cores: int) -> str:
    """One line on how busy the machine was while timing, and what that means for speed-ups.

    The machine counts as busy when repeated timings vary by more than
    ``BUSY_SPREAD`` or the 1-minute load average reaches the number of cores.

    Examples
    --------
    >>> load_note([0.05, 0.1], 0.4, 8)
    'timings steady: repeats within 10%, load average 0.4 on 8 cores'
    >>> load_note([0.05, 0.9], 3.0, 2)  # doctest: +NORMALIZE_WHITESPACE
    'the machine is busy: repeats vary by up to 90%, load average 3.0 on 2 cores;
    the speed-ups are rough (they are best-of-7 times)'
    """
    worst = max(spreads)
    load_text = "load average unknown" if load is None else f"load average {load:.1f}"
    facts = f"{load_text} on {cores} cores"
    if worst > BUSY_SPREAD or (load is not None and load >= cores):
        return (
            f"the machine is busy: repeats vary by up to {worst:.0%}, {facts}; "
            "the speed-ups are rough (they are best-of-7 times)"
        )
    return f"timings steady: repeats within {worst:.0%}, {facts}"


def _load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):  # not on Windows
        return None


def run(args: argparse.Namespace) -> int:
    check_seed(args.seed)
    plot_dir = None if args.plot is None else Path(args.plot)
    if plot_dir is not None:
        if not args.plot:
            raise UsageError("cannot write the figures to an empty folder name")
        require_matplotlib()
        if plot_dir.exists() and not plot_dir.is_dir():
            raise UsageError(f"--plot {plot_dir}: a file of that name exists; give a folder")
        plot_dir.mkdir(parents=True, exist_ok=True)
        for name in FIGURES:
            check_output_file(str(plot_dir / name), "the figures")
    rng = np.random.default_rng(args.seed)
    chain = PAPER_CHAINS["resnet50-layer4"]
    choose_chain(chain)
    target = noisy_target(chain, rng)
    hierarchical, als = fit_target(chain, target)
    compare_with_dense(als.operator, target, rng)
    solve_ridge(als.operator, target, rng)
    approximate_kernel(args.seed)
    if plot_dir is not None:
        save_figures(plot_dir, chain, hierarchical, als)
    return 0


def choose_chain(chain: Chain) -> None:
    m, n = chain.shape
    print(f"== 1. choosing a chain for a {m} x {n} layer ==")
    factors = range(2, chain.n_factors + 1)
    total = count_chains(m, n, n_factors=factors)
    monotonic = count_chains(m, n, n_factors=factors, kind="monotonic")
    budget = count_chains(m, n, n_factors=factors, kind="monotonic", max_params=chain.n_params)
    print(f"chainable chains with 2 to {chain.n_factors} factors: {count(total)}")
    print(f"  monotonic: {count(monotonic)}; with at most {count(chain.n_params)} params: "
          f"{count(budget)}")  # fmt: skip
    rows = []
    for n_factors in (2, 3, 5, chain.n_factors):
        smallest = min_param_chain(m, n, n_factors, kind="monotonic")
        rows.append((n_factors, count(smallest.n_params), ratio(smallest.compression_ratio)))
    print(table(rows, ("factors", "params of the smallest monotonic chain", "compression")))
    found = any(
        candidate == chain
        for candidate in enumerate_chains(
            m, n, n_factors=chain.n_factors, kind="monotonic", max_params=chain.n_params
        )
    )
    print(
        f"the paper's {chain.n_factors}-factor chain ({count(chain.n_params)} params, "
        f"{ratio(chain.compression_ratio)}) is {'among' if found else 'NOT among'} them; "
        f"density check: {'dense' if is_dense(chain) else 'NOT dense'}"
    )


def noisy_target(chain: Chain, rng: np.random.Generator) -> np.ndarray:
    """A product of the chain with random weights, plus ``NOISE`` relative Gaussian noise."""
    product = DeButOperator.random(chain, rng=rng).toarray()
    noise = rng.standard_normal(product.shape)
    return product + NOISE * np.linalg.norm(product) / np.linalg.norm(noise) * noise


def fit_target(chain: Chain, target: np.ndarray) -> tuple[FitResult, FitResult]:
    m, n = chain.shape
    print(f"\n== 2. fitting the chain to a {m} x {n} matrix ==")
    print(f"target: a random product of the chain plus {NOISE:.0%} Gaussian noise")
    hierarchical = fit_hierarchical(target, chain)
    als = fit_als(target, chain, n_sweeps=ALS_SWEEPS, init=hierarchical.operator)
    rows = [
        ("fit_hierarchical", error(hierarchical.error), duration(hierarchical.times[-1])),
        (
            f"fit_als, {ALS_SWEEPS} sweeps from it",
            error(als.error),
            duration(als.times[-1]),
        ),
    ]
    print(table(rows, ("method", "rel. error", "time"), align="lrr"))
    print(
        f"the noise alone is {error(NOISE)} of the target; {count(chain.n_params)} parameters "
        f"for {count(target.size)} entries: compression {ratio(chain.compression_ratio)}"
    )
    return hierarchical, als


def compare_with_dense(op: DeButOperator, target: np.ndarray, rng: np.random.Generator) -> None:
    print("\n== 3. applying the fitted operator: DeBut chain vs dense matrix ==")
    dense = op.toarray()
    rows, spreads = [], []
    for batch in (1, 64):
        shape = (op.shape[1],) if batch == 1 else (op.shape[1], batch)
        x = rng.standard_normal(shape)
        expected = dense @ x
        difference = np.abs(op @ x - expected).max() / np.abs(expected).max()
        t_debut = repeat_times(lambda x=x: op @ x)
        t_dense = repeat_times(lambda x=x: target @ x)
        spreads += [spread(t_debut), spread(t_dense)]
        best_debut, best_dense = min(t_debut), min(t_dense)
        rows.append(
            (
                batch,
                error(difference),
                duration(best_debut),
                duration(best_dense),
                ratio(best_dense / best_debut),
            )
        )
    headers = ("batch", "max rel. diff", "DeBut", "dense @", "speed-up")
    print(table(rows, headers))
    print(f"(dense @ multiplies by the {op.shape[0]} x {op.shape[1]} target itself)")
    print(load_note(spreads, _load_average(), os.cpu_count() or 1))


def solve_ridge(op: DeButOperator, target: np.ndarray, rng: np.random.Generator) -> None:
    print("\n== 4. ridge least squares with scipy.sparse.linalg.lsqr ==")
    system = op.T  # 2048 x 512: fit 512 unknowns to 2048 observations
    y_true = rng.standard_normal(op.shape[0])
    c = system @ y_true + 1e-2 * rng.standard_normal(op.shape[1])
    start = time.perf_counter()
    y, _, iterations, residual = spla.lsqr(system, c, damp=RIDGE, atol=1e-12, btol=1e-12)[:4]
    elapsed = time.perf_counter() - start
    dense = op.toarray()
    y_dense = np.linalg.solve(dense @ dense.T + RIDGE**2 * np.eye(op.shape[0]), dense @ c)
    print(f"min ||A^T y - c||^2 + {RIDGE}^2 ||y||^2, A the fitted operator, A^T {system.shape}")
    print(f"lsqr: {iterations} iterations in {duration(elapsed)}, residual {error(residual)}")
    print(
        "relative difference from the dense normal-equations solution: "
        f"{error(np.linalg.norm(y - y_dense) / np.linalg.norm(y_dense))}"
    )


def approximate_kernel(seed: int) -> None:
    m, n = KERNEL_SHAPE
    budget = m * n // 10
    print(f"\n== 5. letting approximate choose the chain for a {m} x {n} kernel ==")
    x, y = np.linspace(0, 1, m), np.linspace(0, 1, n)
    kernel = np.exp(-30 * (x[:, None] - y) ** 2)
    result = approximate(kernel, budget, n_sweeps=2, rng=seed)
    sup, sub = result.chain.to_sup_sub()
    print("target exp(-30 (x_i - y_j)^2), x, y evenly spaced in [0, 1]")
    print(f"budget {count(budget)} params")
    print(f"{count(len(result.explored))} chains explored in {duration(result.seconds)}")
    print(
        f"chosen: {result.chain.n_factors} factors, {count(result.chain.n_params)} params, "
        f"relative error {error(result.error)}"
    )
    print(f"  --sup '{sup}' --sub '{sub}'")
    print(
        f"truncated SVD, rank {result.baseline.rank} ({count(result.baseline.n_params)} params): "
        f"relative error {error(result.baseline.error)}"
    )


def save_figures(directory: Path, chain: Chain, hierarchical: FitResult, als: FitResult) -> None:
    from ..plotting import plot_chain, plot_fit_history

    supports, errors = (directory / name for name in FIGURES)
    plot_chain(chain).savefig(supports, dpi=120)

    axes = plot_fit_history(
        als, baseline=NOISE, baseline_label="noise level", label="fit_als from fit_hierarchical"
    )
    axes.annotate(
        f"fit_hierarchical: {hierarchical.error:.4g}",
        (0, hierarchical.error),
        xytext=(6, 8),
        textcoords="offset points",
        fontsize=8,
    )
    axes.set_title(f"Fitting the {chain.shape[0]} x {chain.shape[1]} chain")
    axes.legend()
    axes.figure.savefig(errors, dpi=120)
    print(f"\nfigures saved: {supports}, {errors}")
