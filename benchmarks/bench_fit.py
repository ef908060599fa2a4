"""Benchmark the fitting methods; prints a markdown table and machine information.

Run from the repository root::

    python benchmarks/bench_fit.py [--plot benchmarks/fit_errors.png]

The plot goes to ``fit_errors.png`` beside this script unless ``--plot`` names a file.

Timings are the best of 3-5 identical runs (the machine may be shared); errors
are relative Frobenius errors ``||D - D_hat|| / ||D||``. Fit times include the
initialisation (and, for ALS, the per-chain coupling analysis, cached after
the first fit on a chain).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np
import scipy
from _args import output_file, require_modules
from scipy.linalg import hadamard

from pydebut import Chain, fit_als, fit_hierarchical
from pydebut.fit._als import _couplings, _Sweeper
from pydebut.fit._common import apply_factor
from pydebut.special import PAPER_CHAINS

PAPER_512x2048 = PAPER_CHAINS["resnet50-layer4"]
VGG_64x576 = PAPER_CHAINS["vgg16-conv1"]
HADAMARD_4096 = Chain.from_factorizations([2] * 12, [2] * 12)
KRONECKER_CHAIN = Chain.from_factorizations([2] * 8, [2] * 8)  # 256 x 256: 65536 x 512 system


def best_of(function, repeat):
    """Smallest wall time of ``repeat`` calls, and the last result."""
    best, result = np.inf, None
    for _ in range(repeat):
        start = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - start)
    return best, result


def random_weights(chain, rng):
    return [rng.standard_normal(spec.weight_shape) for spec in chain]


def product(chain, weights):
    dense = np.eye(chain.shape[1])
    for spec, w in zip(reversed(chain.factors), reversed(weights), strict=True):
        dense = apply_factor(spec, w, dense)
    return dense


def machine_info(load):
    return (
        f"{platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"NumPy {np.__version__}, SciPy {scipy.__version__}, "
        f"load average {load:.1f} at the start"
    )


def sweep_times(result):
    """Seconds per sweep (both half-sweeps), from the result's time stamps."""
    return np.diff(result.times)[0::2] + np.diff(result.times)[1::2]


def best_als(target, chain, repeat=3, **options):
    """Best of ``repeat`` identical (seeded) ALS runs: total time, median sweep time, result."""
    runs = [fit_als(target, chain, **options) for _ in range(repeat)]
    assert all(run.errors == runs[0].errors for run in runs)
    total = min(run.times[-1] for run in runs)
    per_sweep = min(np.median(sweep_times(run)) for run in runs) if runs[0].n_sweeps else 0.0
    return total, per_sweep, runs[0]


def kronecker_speedup(chain, rng):
    """Time of one factor update: structured ALS vs lstsq on the Kronecker system."""
    weights = random_weights(chain, rng)
    target = rng.standard_normal(chain.shape)
    index = len(chain) // 2
    sweeper = _Sweeper(chain, list(weights), target, _couplings(chain))
    sweeper.forward(update=False)
    sweeper.backward(update=False)

    def structured():
        return sweeper._solve(index, sweeper.left[index], sweeper.right[index])

    def brute_force():
        dense = [product(Chain([spec]), [w]) for spec, w in zip(chain, weights, strict=True)]
        a = np.linalg.multi_dot([np.eye(chain.shape[0]), *dense[:index], np.eye(chain[index].p)])
        b = np.linalg.multi_dot(
            [np.eye(chain[index].q), *dense[index + 1 :], np.eye(chain.shape[1])]
        )
        rows, cols = chain[index].support_indices()
        system = np.einsum("xw,wy->wxy", a[:, rows], b[cols]).reshape(len(rows), -1).T
        return np.linalg.lstsq(system, target.ravel(), rcond=None)[0]

    fast_time, fast = best_of(structured, 20)
    slow_time, slow = best_of(brute_force, 2)
    assert np.allclose(fast.ravel(), slow, rtol=1e-6, atol=1e-8)
    return fast_time, slow_time


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--plot",
        type=output_file,
        default=Path(__file__).resolve().parent / "fit_errors.png",
        help="error-per-sweep plot (default: fit_errors.png beside this script)",
    )
    args = parser.parse_args()
    require_modules(parser, "the error-per-sweep plot (--plot)", "matplotlib")
    load = os.getloadavg()[0]
    rng = np.random.default_rng(0)
    rows = []

    def row(case, method, error, seconds, note=""):
        rows.append((case, method, f"{error:.3g}", f"{seconds:.3f}", note))

    # Structure analysis (cached per chain) and JIT-free warm-up.
    analysis, _ = best_of(lambda: (_couplings.cache_clear(), _couplings(PAPER_512x2048)), 1)

    # 1. ALS on a random Gaussian 512 x 2048 target, paper's chain, 10 sweeps.
    gaussian = rng.standard_normal(PAPER_512x2048.shape)
    curves = {}
    hier_time, hier = best_of(lambda: fit_hierarchical(gaussian, PAPER_512x2048), 3)
    row("Gaussian 512x2048", "fit_hierarchical", hier.error, hier_time)
    for init in ("random", "hierarchical"):
        total, per_sweep, result = best_als(gaussian, PAPER_512x2048, n_sweeps=10, init=init, rng=1)
        note = f"{per_sweep:.3f} s/sweep (median)"
        assert np.all(np.diff(result.errors) <= 1e-12)
        curves[f"Gaussian 512x2048, init={init}"] = result.errors
        if init == "hierarchical":
            assert result.error < hier.error, "ALS must end strictly below the hierarchical error"
            note += f"; {hier.error - result.error:.4f} below fit_hierarchical"
        row("Gaussian 512x2048", f"fit_als 10 sweeps, init={init}", result.error, total, note)

    # 2. Exact recovery: paper chain and VGG chain.
    for name, chain in (("exact 512x2048", PAPER_512x2048), ("exact VGG 64x576", VGG_64x576)):
        target = product(chain, random_weights(chain, rng))
        seconds, result = best_of(
            lambda chain=chain, target=target: fit_hierarchical(target, chain), 5
        )
        row(name, "fit_hierarchical", result.error, seconds)
        for sweeps in (5, 10):
            total, _, result = best_als(target, chain, n_sweeps=sweeps, init="random", rng=2)
            row(name, f"fit_als {sweeps} sweeps, init=random", result.error, total)
            if sweeps == 10:
                curves[f"{name}, init=random"] = result.errors
        total, _, result = best_als(target, chain, n_sweeps=5, init="hierarchical")
        row(name, "fit_als 5 sweeps, init=hierarchical", result.error, total)

    # 3. Hadamard 4096.
    seconds, result = best_of(lambda: fit_hierarchical(hadamard(4096), HADAMARD_4096), 3)
    row("Hadamard 4096", "fit_hierarchical (incl. building the target)", result.error, seconds)
    target = hadamard(4096).astype(np.float64)
    seconds, result = best_of(lambda: fit_hierarchical(target, HADAMARD_4096), 3)
    row("Hadamard 4096", "fit_hierarchical", result.error, seconds)

    # 4. One factor update against the brute-force Kronecker least squares.
    fast, slow = kronecker_speedup(KRONECKER_CHAIN, rng)
    m, n = KRONECKER_CHAIN.shape
    nnz = KRONECKER_CHAIN[len(KRONECKER_CHAIN) // 2].nnz
    print(f"Machine: {machine_info(load)}\n")
    print("| case | method | rel. error | time (s) | note |")
    print("|---|---|---|---|---|")
    for case, method, error, seconds, note in rows:
        print(f"| {case} | {method} | {error} | {seconds} | {note} |")
    print(
        f"\nOne factor update of the {m} x {n} butterfly ({len(KRONECKER_CHAIN)} factors, "
        f"Kronecker system {m * n} x {nnz}): structured {fast * 1e3:.3f} ms, "
        f"brute-force lstsq {slow * 1e3:.0f} ms, speed-up {slow / fast:.0f}x."
    )
    print(f"Coupling analysis of the 512 x 2048 chain (once per chain, cached): {analysis:.3f} s.")
    plot(curves, args.plot)
    print(f"Error-per-half-sweep plot: {args.plot}")


def plot(curves, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for label, errors in curves.items():
        ax = axes[0] if label.startswith("Gaussian") else axes[1]
        ax.plot(np.arange(len(errors)) / 2, errors, marker=".", label=label)
    axes[0].set_title("random Gaussian 512 x 2048 target, paper's 9-factor chain")
    axes[1].set_title("exact recovery (products of random factors)")
    axes[1].set_yscale("log")
    for ax in axes:
        ax.set_xlabel("sweep (points every half-sweep; 0 = initialisation)")
        ax.set_ylabel("relative error ||D - D_hat|| / ||D||")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
