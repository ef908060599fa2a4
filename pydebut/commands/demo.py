"""``pydebut demo``: a short tour of the package on the paper's 512 x 2048 chain."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import scipy.sparse.linalg as spla

from ..fit import fit_als, fit_hierarchical
from ..operator import DeButOperator
from ..spec import Chain

#: ResNet-50 layer4.1.conv1 as 512 x 2048 (DESIGN.md section 6), left to right.
PAPER_CHAIN_512x2048 = Chain(
    [
        (512, 512, 2, 2, 256),
        (512, 1024, 2, 4, 128),
        (1024, 1024, 2, 2, 64),
        (1024, 1024, 2, 2, 32),
        (1024, 1024, 2, 2, 16),
        (1024, 2048, 2, 4, 8),
        (2048, 2048, 2, 2, 4),
        (2048, 2048, 2, 2, 2),
        (2048, 2048, 2, 2, 1),
    ]
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="tour: build, apply and solve with the paper's 512 x 2048 chain",
        description="Build the paper's 512 x 2048 DeBut chain, apply it, compare with the "
        "dense product and solve a least-squares problem with scipy's lsqr.",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
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
    rng = np.random.default_rng(args.seed)
    chain = PAPER_CHAIN_512x2048
    print(chain.describe())
    print()

    start = time.perf_counter()
    op = DeButOperator.random(chain, rng=rng)
    x = rng.standard_normal(chain.shape[1])
    op @ x
    print(
        f"built a random DeButOperator and applied it once in {time.perf_counter() - start:.2f} s"
        " (includes compiling or loading the kernels)"
    )
    dense = op.toarray()

    print("\n== apply: DeBut chain vs dense matrix ==")
    print(f"{'batch':>6} {'max rel. diff':>14} {'DeBut':>10} {'dense @':>10} {'speed-up':>9}")
    for batch in (1, 64):
        X = x if batch == 1 else rng.standard_normal((chain.shape[1], batch))
        expected = dense @ X
        difference = np.abs(op @ X - expected).max() / np.abs(expected).max()
        t_debut = best_time(lambda X=X: op @ X)
        t_dense = best_time(lambda X=X: dense @ X)
        print(
            f"{batch:>6} {difference:>14.2e} {t_debut * 1e6:>8.0f}us {t_dense * 1e6:>8.0f}us "
            f"{t_dense / t_debut:>8.1f}x"
        )

    print("\n== ridge least squares with scipy.sparse.linalg.lsqr ==")
    system = op.T  # 2048 x 512: fit 512 unknowns to 2048 observations
    damp = 0.05
    y_true = rng.standard_normal(chain.shape[0])
    c = system @ y_true + 1e-2 * rng.standard_normal(chain.shape[1])
    start = time.perf_counter()
    y, _, iterations, residual_norm = spla.lsqr(system, c, damp=damp, atol=1e-12, btol=1e-12)[:4]
    t_lsqr = time.perf_counter() - start
    normal_matrix = dense @ dense.T + damp**2 * np.eye(chain.shape[0])
    y_dense = np.linalg.solve(normal_matrix, dense @ c)
    agreement = np.linalg.norm(y - y_dense) / np.linalg.norm(y_dense)
    print(f"min ||A^T y - c||^2 + {damp}^2 ||y||^2 with A^T of shape {system.shape}")
    print(f"lsqr: {iterations} iterations in {t_lsqr * 1e3:.0f} ms, residual {residual_norm:.3e}")
    print(f"relative difference from the dense normal-equations solution: {agreement:.2e}")

    fit_tour(chain, dense, rng)
    return 0


def fit_tour(chain: Chain, product: np.ndarray, rng: np.random.Generator) -> None:
    """Fit the chain back to ``product`` plus 5% noise: hierarchical, then ALS."""
    print("\n== fitting: recover the chain from a noisy 512 x 2048 matrix ==")
    noise = rng.standard_normal(product.shape)
    target = product + 0.05 * np.linalg.norm(product) / np.linalg.norm(noise) * noise
    hierarchical = fit_hierarchical(target, chain)
    als = fit_als(target, chain, n_sweeps=3, init=hierarchical.operator)
    print(f"target: the product above plus 5% Gaussian noise ({target.size:,} entries)")
    print(f"{'method':<26} {'rel. error':>10} {'time':>9}")
    print(f"{'fit_hierarchical':<26} {hierarchical.error:>10.6f} {hierarchical.times[-1]:>8.3f}s")
    print(f"{'fit_als, 3 sweeps from it':<26} {als.error:>10.6f} {als.times[-1]:>8.3f}s")
    print(
        f"{chain.n_params:,} parameters for {target.size:,} entries: "
        f"compression {chain.compression_ratio:.2f}x"
    )
