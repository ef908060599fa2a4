"""Beam width of ``pydebut.approximate`` against error and time.

Usage: ``python benchmarks/bench_beam_width.py [WIDTH ...]`` (default 8 16 32). The
targets are two noisy random DeBut products at their own chain's budget, where a narrow
beam can lose the right prefix, and the smooth kernel of the issue's timed case.
"""

import argparse
import time

import numpy as np
from _args import positive_int

from pydebut import Chain, DeButOperator, approximate
from pydebut.special import PAPER_CHAINS


def noisy_product(chain: Chain, level: float = 0.1) -> np.ndarray:
    """A random product of ``chain`` plus Gaussian noise of relative norm ``level``."""
    clean = DeButOperator.random(chain, rng=1).toarray()
    noise = np.random.default_rng(0).standard_normal(clean.shape)
    return clean + level * np.linalg.norm(clean) / np.linalg.norm(noise) * noise


def main(widths: list[int]) -> None:
    hidden = Chain.from_factorizations([4, 4, 4], [4, 4, 8])
    vgg = PAPER_CHAINS["vgg16-conv1"]
    x, y = np.linspace(0, 1, 512), np.linspace(0, 1, 2048)
    cases = [
        ("product of [4,4,4]/[4,4,8] + 10%", noisy_product(hidden), hidden.n_params),
        ("product of VGG conv1 + 10%", noisy_product(vgg), vgg.n_params),
        ("smooth kernel 512 x 2048", np.exp(-30 * (x[:, None] - y) ** 2), 25_600),
    ]
    print("| beam | target | budget | error | SVD | seconds | narrowed |")
    print("| ---: | --- | ---: | ---: | ---: | ---: | --- |")
    for width in widths:
        for name, target, budget in cases:
            start = time.perf_counter()
            result = approximate(target, budget, n_sweeps=3, rng=0, beam_width=width)
            seconds = time.perf_counter() - start
            print(
                f"| {width} | {name} | {budget:,} | {result.error:.3g} | "
                f"{result.baseline.error:.3g} | {seconds:.1f} | {bool(result.narrowed)} |",
                flush=True,
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "widths", type=positive_int, nargs="*", default=[8, 16, 32], help="beam widths"
    )
    main(parser.parse_args().widths)
