"""Hierarchical factorization of noisy targets: left-to-right against balanced order.

Run from the repository root::

    python benchmarks/bench_balanced.py [--seeds 5] [--noise 0.1]
    python benchmarks/bench_balanced.py --sweep [--seeds 5] [--random-chains 30]

Each target is a random product of the chain (:meth:`DeButOperator.random`) plus
Gaussian noise of the given relative Frobenius norm. The default mode prints a
markdown table of relative errors ``||D - D_hat|| / ||D||``; with pyfaust installed
(``pip install pyfaust``) it adds the errors of pyfaust's ``GBfactorize`` (with
orthonormalisation) on the same targets and chains, in both orders.

``--sweep`` fits many targets (fixed and randomly drawn chains of 4-6 factors,
chainable and rank-weighted, noise 0 to 50%, real and complex) and prints, per
noise level, the distribution of error ratios to the left-to-right order of
``order="balanced"``, of the balanced tree alone (the refitted splits before the
comparison with left-to-right) and, for rank-one chains with pyfaust installed,
of pyfaust's balanced ``GBfactorize`` (the split without the refit).
"""

from __future__ import annotations

import argparse
import itertools
import warnings
from math import prod

import numpy as np
from _args import at_most, nonnegative_float, positive_int

from pydebut import Chain, DeButOperator, fit_hierarchical, hierarchy_ranks
from pydebut.fit._common import relative_residual
from pydebut.fit._hierarchical import _balanced_links, _bisect, _product_shape, _support_entries
from pydebut.special import PAPER_CHAINS

CHAINS = {
    "butterfly 16x16": Chain(
        [(16, 16, 2, 2, 8), (16, 16, 2, 2, 4), (16, 16, 2, 2, 2), (16, 16, 2, 2, 1)]
    ),
    "ResNet 512x2048": PAPER_CHAINS["resnet50-layer4"],
}
SWEEP_CHAINS = {
    "butterfly 16x16": CHAINS["butterfly 16x16"],
    "r=(4,2,2,4) s=(2,4,4,2)": Chain.from_factorizations([4, 2, 2, 4], [2, 4, 4, 2]),
    "VGG-16 conv1": PAPER_CHAINS["vgg16-conv1"],
    "LeNet fc1": PAPER_CHAINS["lenet-fc1"],
    "butterfly 64x64": Chain.from_factorizations([2] * 6, [2] * 6),
}
ORDERS = ("left-to-right", "balanced")
NOISE_LEVELS = (0.0, 1e-3, 1e-2, 0.1, 0.5)


def noisy_target(chain: Chain, seed: int, noise: float, dtype: type = np.float64) -> np.ndarray:
    rng = np.random.default_rng(seed)
    exact = DeButOperator.random(chain, rng=rng, dtype=dtype).toarray()
    gaussian = rng.standard_normal(exact.shape)
    if np.issubdtype(dtype, np.complexfloating):
        gaussian = gaussian + 1j * rng.standard_normal(exact.shape)
    return exact + noise * np.linalg.norm(exact) / np.linalg.norm(gaussian) * gaussian


def pyfaust_errors(target: np.ndarray, chain: Chain) -> dict[str, float] | None:
    """Errors of pyfaust's GBfactorize in both orders, or None without pyfaust."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from pyfaust.fdb.GB_factorization import GBfactorize
    except ImportError:
        return None
    params = [(a, b, c, d, 1, 1) for a, b, c, d in chain.to_abcd()]
    links = {
        "left-to-right": list(range(len(chain) - 1)),
        "balanced": _balanced_links(0, len(chain) - 1),
    }
    errors = {}
    for order in ORDERS:
        factors = GBfactorize(target.reshape(1, 1, *target.shape), params, links[order], True)
        # pyfaust's twiddle (a, d, b, c) is pydebut's W[b, rho, sigma, alpha] transposed.
        weights = [np.asarray(factor.factor).transpose(0, 2, 3, 1) for factor in factors]
        errors[order] = relative_residual(chain, weights, target)
    return errors


def balanced_tree_error(target: np.ndarray, chain: Chain) -> float:
    """Error of the balanced tree alone, before ``order="balanced"`` compares it."""
    entries = _support_entries(target, _product_shape(chain[0], chain[-1]))
    weights = _bisect(target, entries, chain.factors, hierarchy_ranks(chain))
    return relative_residual(chain, weights, target)


def table(seeds: int, noise: float) -> None:
    print("| chain | seed | left-to-right | balanced | pyfaust left-to-right | pyfaust balanced |")
    print("|---|---|---|---|---|---|")
    for name, chain in CHAINS.items():
        for seed in range(seeds):
            target = noisy_target(chain, seed, noise)
            ours = [fit_hierarchical(target, chain, order=order).error for order in ORDERS]
            theirs = pyfaust_errors(target, chain)
            theirs = ["n/a"] * 2 if theirs is None else [f"{theirs[o]:.8f}" for o in ORDERS]
            cells = [f"{e:.8f}" for e in ours] + theirs
            print(f"| {name} | {seed} | " + " | ".join(cells) + " |", flush=True)


def drawn_chains(rng: np.random.Generator, count: int) -> dict[str, Chain]:
    """``count`` chains of 4-6 factors: chainable (radices up to 4) and rank-weighted."""

    def radices(n_factors: int, largest: int, max_radix: int) -> list[int]:
        while True:
            drawn = [int(x) for x in rng.integers(1, max_radix + 1, size=n_factors)]
            if 1 < prod(drawn) <= largest:
                return drawn

    chains: dict[str, Chain] = {}
    while len(chains) < count:
        n_factors = int(rng.integers(4, 7))
        if rng.integers(2) == 0:
            rs, ss = radices(n_factors, 64, 4), radices(n_factors, 64, 4)
            chains[f"r={rs} s={ss}"] = Chain.from_factorizations(rs, ss)
            continue
        bs, cs = radices(n_factors, 48, 3), radices(n_factors, 48, 3)
        w = [1, *(int(x) for x in rng.integers(1, 4, size=n_factors - 1)), 1]
        abcd = [
            (prod(cs[:l]), bs[l], cs[l], prod(bs[l + 1 :]), w[l], w[l + 1])
            for l in range(n_factors)  # noqa: E741
        ]
        chain = Chain.from_abcd(abcd)
        if chain.max_dim <= 96:
            chains[f"b={bs} c={cs} w={w[1:-1]}"] = chain
    return chains


def sweep(seeds: int, random_chains: int) -> None:
    chains = {**SWEEP_CHAINS, **drawn_chains(np.random.default_rng(12345), random_chains)}
    has_pyfaust = pyfaust_errors(np.eye(4), Chain.from_factorizations([2, 2], [2, 2])) is not None
    ratios: dict[tuple[float, str], list[float]] = {}
    exact_excess: dict[str, float] = {}
    worst: dict[str, tuple[float, str]] = {}
    cases = itertools.product(chains.items(), NOISE_LEVELS, (np.float64, np.complex128))
    for (name, chain), noise, dtype in cases:
        for seed in range(seeds):
            target = noisy_target(chain, seed, noise, dtype)
            errors = {
                "left-to-right": fit_hierarchical(target, chain).error,
                'order="balanced"': fit_hierarchical(target, chain, order="balanced").error,
                "balanced tree alone": balanced_tree_error(target, chain),
            }
            if has_pyfaust and set(hierarchy_ranks(chain)) == {1}:
                errors["pyfaust balanced"] = pyfaust_errors(target, chain)["balanced"]
            peeled = errors.pop("left-to-right")
            for method, error in errors.items():
                if peeled < 1e-10:  # the chain admits the target (to rounding)
                    excess = max(exact_excess.get(method, 0.0), error - peeled)
                    exact_excess[method] = excess
                else:
                    ratios.setdefault((noise, method), []).append(error / peeled)
                    case = f"{name}, noise {noise:g}, {np.dtype(dtype).name}, seed {seed}"
                    worst[method] = max(worst.get(method, (0.0, "")), (error / peeled, case))
    print(f"{len(chains)} chains x {len(NOISE_LEVELS)} noise levels x real/complex x {seeds} seeds")
    print("\n| noise | method | targets | min | 5% | median | 95% | max | worse than ltr |")
    print("|---|---|---|---|---|---|---|---|---|")
    for (noise, method), values in ratios.items():
        quantiles = np.quantile(values, [0, 0.05, 0.5, 0.95, 1])
        worse = sum(value > 1 + 1e-12 for value in values)
        cells = " | ".join(f"{q:.5f}" for q in quantiles)
        print(f"| {noise:g} | {method} | {len(values)} | {cells} | {worse} |")
    print("\nTargets the chain fits to rounding: largest error minus left-to-right's")
    for method, excess in exact_excess.items():
        print(f"- {method}: {excess:.1e}")
    print("\nLargest ratio to left-to-right")
    for method, (ratio, case) in worst.items():
        print(f"- {method}: {ratio:.5f} ({case})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=positive_int, default=5)
    parser.add_argument(
        "--noise", type=nonnegative_float, default=0.1, help="relative Frobenius norm"
    )
    parser.add_argument("--sweep", action="store_true", help="gap distribution over many targets")
    parser.add_argument(
        "--random-chains",
        type=at_most(200, least=0),
        default=30,
        help="beside the fixed ones (distinct chains drawn; at most 200)",
    )
    args = parser.parse_args()
    if args.sweep:
        sweep(args.seeds, args.random_chains)
    else:
        table(args.seeds, args.noise)


if __name__ == "__main__":
    main()
