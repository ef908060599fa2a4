"""``pydebut demo``: a tour of the package on a 512 x 2048 layer, in well under a minute.

1. choose a chain for the layer: count and rank candidates, find the smallest;
2. fit the paper's chain to a noisy matrix with that structure;
3. apply the fitted operator and compare with the dense matrix;
4. solve a ridge least-squares problem with it through ``scipy.sparse.linalg.lsqr``;
5. let :func:`~pydebut.approximate` choose the chain for a small smooth kernel.
"""

from __future__ import annotations

import argparse
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

NOISE = 0.05
ALS_SWEEPS = 3
RIDGE = 0.05
#: Shape of the kernel matrix of step 5 (small: the search stays fast).
KERNEL_SHAPE = (64, 256)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="tour: choose, fit, apply and solve with a 512 x 2048 DeBut chain",
        description="Choose a DeBut chain for a 512 x 2048 layer, fit the paper's chain to a "
        "noisy matrix, compare the fitted operator with the dense matrix and solve a ridge "
        "least-squares problem with scipy's lsqr.",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--plot", metavar="DIR", help="save the figures (chain supports, error per sweep) here"
    )
    parser.set_defaults(func=run)


def best_time(function: Callable[[], object], repeats: int = 7, number: int = 5) -> float:
    """Best over ``repeats`` of the mean time of ``number`` calls, in seconds."""
    function()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(number):
            function()
        best = min(best, (time.perf_counter() - start) / number)
    return best


def run(args: argparse.Namespace) -> int:
    plot_dir = Path(args.plot) if args.plot else None
    if plot_dir is not None:
        _require_matplotlib()
        plot_dir.mkdir(parents=True, exist_ok=True)
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
    print(f"chainable chains with 2 to {chain.n_factors} factors: {total:,}")
    print(f"  monotonic: {monotonic:,}; with at most {chain.n_params:,} params: {budget:,}")
    print(f"{'factors':>8} {'smallest monotonic chain':>26} {'compression':>12}")
    for n_factors in (2, 3, 5, chain.n_factors):
        smallest = min_param_chain(m, n, n_factors, kind="monotonic")
        print(
            f"{n_factors:>8} {smallest.n_params:>19,} params {smallest.compression_ratio:>11.1f}x"
        )
    found = any(
        candidate == chain
        for candidate in enumerate_chains(
            m, n, n_factors=chain.n_factors, kind="monotonic", max_params=chain.n_params
        )
    )
    print(
        f"the paper's {chain.n_factors}-factor chain ({chain.n_params:,} params, "
        f"{chain.compression_ratio:.2f}x) is {'among' if found else 'NOT among'} them; "
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
    label = f"fit_als, {ALS_SWEEPS} sweeps from it"
    print(f"{'method':<26} {'rel. error':>10} {'time':>9}")
    print(f"{'fit_hierarchical':<26} {hierarchical.error:>10.6f} {hierarchical.times[-1]:>8.3f}s")
    print(f"{label:<26} {als.error:>10.6f} {als.times[-1]:>8.3f}s")
    print(
        f"the noise alone is {NOISE:.4f} of the target; {chain.n_params:,} parameters for "
        f"{target.size:,} entries: compression {chain.compression_ratio:.2f}x"
    )
    return hierarchical, als


def compare_with_dense(op: DeButOperator, target: np.ndarray, rng: np.random.Generator) -> None:
    print("\n== 3. applying the fitted operator: DeBut chain vs dense matrix ==")
    dense = op.toarray()
    print(f"{'batch':>6} {'max rel. diff':>14} {'DeBut':>10} {'dense @':>10} {'speed-up':>9}")
    for batch in (1, 64):
        shape = (op.shape[1],) if batch == 1 else (op.shape[1], batch)
        x = rng.standard_normal(shape)
        expected = dense @ x
        difference = np.abs(op @ x - expected).max() / np.abs(expected).max()
        t_debut = best_time(lambda x=x: op @ x)
        t_dense = best_time(lambda x=x: target @ x)
        print(
            f"{batch:>6} {difference:>14.2e} {t_debut * 1e6:>8.0f}us {t_dense * 1e6:>8.0f}us "
            f"{t_dense / t_debut:>8.1f}x"
        )
    print("(dense @ multiplies by the 512 x 2048 target itself)")


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
    print(f"lsqr: {iterations} iterations in {elapsed * 1e3:.0f} ms, residual {residual:.3e}")
    print(
        "relative difference from the dense normal-equations solution: "
        f"{np.linalg.norm(y - y_dense) / np.linalg.norm(y_dense):.2e}"
    )


def approximate_kernel(seed: int) -> None:
    m, n = KERNEL_SHAPE
    budget = m * n // 10
    print(f"\n== 5. letting approximate choose the chain for a {m} x {n} kernel ==")
    x, y = np.linspace(0, 1, m), np.linspace(0, 1, n)
    kernel = np.exp(-30 * (x[:, None] - y) ** 2)
    result = approximate(kernel, budget, n_sweeps=2, rng=seed)
    sup, sub = result.chain.to_sup_sub()
    print(f"target exp(-30 (x_i - y_j)^2), x, y evenly spaced in [0, 1]; budget {budget:,} params")
    print(f"{len(result.explored):,} chains explored in {result.seconds:.1f} s")
    print(
        f"chosen: {result.chain.n_factors} factors, {result.chain.n_params:,} params, "
        f"relative error {result.error:.3e}"
    )
    print(f"  --sup '{sup}' --sub '{sub}'")
    print(
        f"truncated SVD, rank {result.baseline.rank} ({result.baseline.n_params:,} params): "
        f"relative error {result.baseline.error:.3e}"
    )


def _require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ImportError("--plot needs matplotlib: pip install pydebut[plot]") from None


def save_figures(directory: Path, chain: Chain, hierarchical: FitResult, als: FitResult) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..plotting import plot_chain

    figure = plot_chain(chain)
    supports = directory / "chain_supports.png"
    figure.savefig(supports, dpi=120)
    plt.close(figure)

    figure, axes = plt.subplots(figsize=(6, 4))
    half_sweeps = np.arange(len(als.errors)) / 2
    axes.plot(half_sweeps, als.errors, "o-", label="fit_als from the hierarchical fit")
    axes.axhline(hierarchical.error, color="gray", linestyle="--", label="fit_hierarchical")
    axes.axhline(NOISE, color="tab:red", linestyle=":", label="noise level")
    axes.set_xlabel("sweeps")
    axes.set_ylabel("relative Frobenius error")
    axes.set_title(f"Fitting the {chain.shape[0]} x {chain.shape[1]} chain")
    axes.legend()
    figure.tight_layout()
    errors = directory / "fit_errors.png"
    figure.savefig(errors, dpi=120)
    plt.close(figure)
    print(f"\nfigures saved: {supports}, {errors}")
