"""The crossover benchmark's own arithmetic: the butterflies it includes and the SVD side."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(BENCHMARKS))  # bench_crossover imports bench_approximate
    try:
        spec = importlib.util.spec_from_file_location(
            "bench_crossover", BENCHMARKS / "bench_crossover.py"
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules["bench_crossover"] = module  # dataclasses look their module up
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.path.remove(str(BENCHMARKS))
        sys.modules.pop("bench_crossover", None)
        sys.modules.pop("bench_approximate", None)


@pytest.mark.parametrize(("m", "n"), [(64, 64), (256, 256), (32, 128)])
@pytest.mark.parametrize("multiple", [1, 4])
def test_butterflies_fit_the_budget_and_the_shape(bench, m, n, multiple):
    budget = multiple * bench.butterfly_budget(m, n)
    chains = bench.butterfly_chains(m, n, budget)
    assert chains
    for chain in chains:
        assert chain.shape == (m, n)
        assert chain.n_params <= budget
    if multiple == 4 and m == n:  # a rank-2 butterfly (s = c w > r) fits four butterflies
        assert any(chain[0].s > chain[0].r for chain in chains)


def test_svd_side_is_the_exact_truncated_svd(bench):
    m, n, w = 24, 40, 30.0
    sigma = np.linalg.svd(bench.kernel(m, n, w), compute_uv=False)
    point = {"kind": "point", "m": m, "n": n, "w": w, "budget": 5 * (m + n)}
    point.update(error=0.1, baseline_error=1.0, baseline_randomized=True)
    spectrum = {"kind": "spectrum", "m": m, "n": n, "w": w, "sigma2": (sigma**2).tolist()}
    (with_spectrum,) = bench.with_svd([point, spectrum])
    expected = np.sqrt((sigma[5:] ** 2).sum() / (sigma**2).sum())
    assert with_spectrum["svd_rank"] == 5 and with_spectrum["svd_exact"]
    assert with_spectrum["svd"] == pytest.approx(expected, rel=1e-12)
    (without,) = bench.with_svd([point])  # no spectrum: approximate's (randomized) baseline
    assert without["svd"] == 1.0 and not without["svd_exact"]
