"""Hierarchical factorization of noisy targets: left-to-right against balanced order.

Run from the repository root::

    python benchmarks/bench_balanced.py [--seeds 5] [--noise 0.1]

Each target is a random product of the chain (:meth:`DeButOperator.random`) plus
Gaussian noise of the given relative Frobenius norm. Prints a markdown table of
relative errors ``||D - D_hat|| / ||D||``; with pyfaust installed
(``pip install pyfaust``) it adds the errors of pyfaust's ``GBfactorize`` (with
orthonormalisation) on the same targets and chains, in both orders.
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np

from pydebut import Chain, DeButOperator, fit_hierarchical
from pydebut.fit._hierarchical import _balanced_links
from pydebut.special import PAPER_CHAINS

CHAINS = {
    "butterfly 16x16": Chain(
        [(16, 16, 2, 2, 8), (16, 16, 2, 2, 4), (16, 16, 2, 2, 2), (16, 16, 2, 2, 1)]
    ),
    "ResNet 512x2048": PAPER_CHAINS["resnet50-layer4"],
}
ORDERS = ("left-to-right", "balanced")


def noisy_target(chain: Chain, seed: int, noise: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    exact = DeButOperator.random(chain, rng=rng).toarray()
    gaussian = rng.standard_normal(exact.shape)
    return exact + noise * np.linalg.norm(exact) / np.linalg.norm(gaussian) * gaussian


def pyfaust_errors(target: np.ndarray, chain: Chain) -> list[float] | None:
    """Errors of pyfaust's GBfactorize in both orders, or None without pyfaust."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from pyfaust.fdb.GB_factorization import GBfactorize
            from pyfaust.fdb.GB_operators import twiddle_to_dense
    except ImportError:
        return None
    params = [(a, b, c, d, 1, 1) for a, b, c, d in chain.to_abcd()]
    links = {
        "left-to-right": list(range(len(chain) - 1)),
        "balanced": _balanced_links(0, len(chain) - 1),
    }
    errors = []
    for order in ORDERS:
        factors = GBfactorize(target.reshape(1, 1, *target.shape), params, links[order], True)
        product = np.eye(target.shape[1])
        for factor in reversed(factors):
            product = twiddle_to_dense(factor.factor, backend="numpy") @ product
        errors.append(float(np.linalg.norm(target - product) / np.linalg.norm(target)))
    return errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--noise", type=float, default=0.1)
    args = parser.parse_args()
    print("| chain | seed | left-to-right | balanced | pyfaust left-to-right | pyfaust balanced |")
    print("|---|---|---|---|---|---|")
    for name, chain in CHAINS.items():
        for seed in range(args.seeds):
            target = noisy_target(chain, seed, args.noise)
            ours = [fit_hierarchical(target, chain, order=order).error for order in ORDERS]
            theirs = pyfaust_errors(target, chain)
            cells = [f"{e:.8f}" for e in ours + (theirs or [])] + ["n/a"] * (
                2 if theirs is None else 0
            )
            print(f"| {name} | {seed} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
