"""The crossover benchmark's own arithmetic (the butterflies it includes and the SVD
side), and the command lines of all benchmarks."""

import importlib.util
import os
import subprocess
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


# One nonsense value per script: each must stop at argparse (status 2, one line, no
# traceback) before any work; --help must print the usage and stop.
BAD_ARGUMENTS = [
    ("bench_anatomy.py", ["bogus"]),
    ("bench_anatomy.py", ["passes", "--pass-columns", "0"]),
    # Sizes beyond memory, or counts that never end: tracebacks (MemoryError, OverflowError)
    # after minutes of work, or hangs, before the bounds
    ("bench_anatomy.py", ["passes", "--pass-columns", "1000000000"]),
    ("bench_apply.py", ["--batches", "1000000000"]),
    ("bench_approximate.py", ["--timing", "--shape", "1000000000", "1000000000"]),
    ("bench_approximate.py", ["--shape", "32", "64"]),  # 5% of 32 x 32 is below any chain
    ("bench_balanced.py", ["--sweep", "--random-chains", "1000000000"]),
    ("bench_crossover.py", ["1000000000", "--spectra-only"]),
    ("bench_crossover.py", ["4", "--multiples", "1e308", "--no-spectrum"]),
    ("bench_crossover.py", ["64", "--fractions", "1e-9", "--quick"]),  # 0 weights
    ("bench_crossover.py", ["64", "--multiples", "1e-9", "--quick"]),
    ("bench_dask.py", ["fits", "--count", "1000000000"]),
    ("bench_dask.py", ["stream", "--chunk", "1000000000"]),
    ("bench_apply.py", ["--batches", "0"]),
    ("bench_apply.py", ["--dtypes", "float16"]),
    ("bench_apply.py", ["--budget", "-1"]),
    ("bench_approximate.py", ["--shape", "0", "5"]),
    ("bench_approximate.py", ["--shape", "100", "128"]),
    ("bench_approximate.py", ["--timing", "--workers", "1", "0"]),  # not after the first
    ("bench_approximate.py", ["--budget", "600"]),  # without --timing
    ("bench_approximate.py", ["--timing", "--budget", "0"]),
    ("bench_balanced.py", ["--noise", "-1"]),
    ("bench_balanced.py", ["--seeds", "0"]),
    ("bench_beam_width.py", ["0"]),
    ("bench_chains.py", ["--quick"]),
    ("bench_crossover.py", ["0"]),
    ("bench_crossover.py", ["64", "--w", "-1"]),
    ("bench_crossover.py", ["64", "--permutation", "bitrev"]),
    ("bench_crossover.py", ["--report", "/nonexistent/r.jsonl"]),
    ("bench_crossover.py", ["64", "--results", "/nonexistent/r.jsonl"]),
    ("bench_dask.py", ["stream", "--columns", "0"]),
    ("bench_dask.py", ["fits", "--count", "0"]),
    ("bench_dask.py", ["out-of-core", "--n", "1000"]),
    ("bench_fit.py", ["--plot", "/nonexistent/fit.png"]),
    ("bench_limits.py", ["3"]),
    ("paper_layers.py", ["--quick"]),
]
SCRIPTS = sorted(path.name for path in BENCHMARKS.glob("*.py") if not path.name.startswith("_"))


def run_script(name: str, arguments: list[str]) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONPATH": str(BENCHMARKS.parent)}
    return subprocess.run(
        [sys.executable, str(BENCHMARKS / name), *arguments],
        capture_output=True,
        text=True,
        timeout=60,
        env=environment,
        cwd=BENCHMARKS.parent.parent,  # not the repository root: no relative defaults
    )


def test_a_report_of_other_records_is_refused_in_one_line(tmp_path):
    # valid JSON, but not a record of the script: a KeyError traceback
    results = tmp_path / "r.jsonl"
    results.write_text('{"a": 1}\n')
    run = run_script("bench_crossover.py", ["--report", str(results)])
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
    assert "line 1, is not a record of this script" in run.stderr


def test_every_script_is_checked():
    assert {name for name, _ in BAD_ARGUMENTS} == set(SCRIPTS)


@pytest.mark.parametrize("name", SCRIPTS)
def test_benchmark_help_prints_usage_and_stops(name):
    run = run_script(name, ["--help"])
    assert run.returncode == 0 and run.stdout.startswith("usage: "), run.stdout + run.stderr


@pytest.mark.parametrize(
    ("name", "arguments"), BAD_ARGUMENTS, ids=[" ".join([n, *a]) for n, a in BAD_ARGUMENTS]
)
def test_benchmark_refuses_bad_arguments_in_one_line(name, arguments):
    run = run_script(name, arguments)
    assert run.returncode == 2, run.stdout + run.stderr
    assert "Traceback" not in run.stderr
    assert run.stderr.splitlines()[-1].startswith(f"{name}") and ": error: " in run.stderr


@pytest.mark.parametrize(
    ("name", "arguments"),
    [("bench_fit.py", []), ("bench_approximate.py", ["--quick", "--figure", "errors.png"])],
)
def test_a_plot_without_matplotlib_is_refused_before_any_work(name, arguments, tmp_path):
    # Before: the table was computed for minutes, then "No module named 'matplotlib'"
    hide = (
        "import runpy, sys; sys.modules['matplotlib'] = None; "
        f"sys.argv = [{name!r}, *{arguments!r}]; "
        f"runpy.run_path({str(BENCHMARKS / name)!r}, run_name='__main__')"
    )
    environment = {**os.environ, "PYTHONPATH": f"{BENCHMARKS.parent}{os.pathsep}{BENCHMARKS}"}
    run = subprocess.run(
        [sys.executable, "-c", hide],
        capture_output=True,
        text=True,
        timeout=60,
        env=environment,
        cwd=tmp_path,
    )
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
    assert "needs matplotlib: pip install matplotlib" in run.stderr
