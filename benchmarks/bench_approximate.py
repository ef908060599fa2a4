"""``pydebut.approximate`` against the truncated SVD with the same number of parameters.

For a suite of targets (smooth and oscillatory kernels, low rank plus noise, random
DeBut products, Hadamard, DFT, Gaussian) and budgets of 5%, 10% and 20% of the dense
parameters (and, for DeBut products and the DFT, their own chain's budget), run
``approximate`` and record the error of the chain it returns, the truncated SVD's
error at the same budget and, where the DeBut paper has a chain for the shape, that
chain fitted by ALS.

    python benchmarks/bench_approximate.py --quick             # small suite, Markdown
    python benchmarks/bench_approximate.py --update-readme     # rewrite the README section
    python benchmarks/bench_approximate.py --timing            # 512 x 2048 at 25,600
    python benchmarks/bench_approximate.py --timing --workers 1 2   # the same, 1 then 2 threads

``--figure PATH`` saves error against parameters per target (DeBut best and SVD).
The crossover on oscillatory kernels at growing sizes is ``bench_crossover.py``.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from _args import output_file, positive_int, require_memory, require_modules, thread_count
from _readme import update_readme

from pydebut import Chain, DeButOperator, approximate, fit_als
from pydebut.fit._search import _rank_weighted_chain as rank_weighted_chain
from pydebut.special import PAPER_CHAINS, dft, hadamard

BUDGETS = (0.05, 0.10, 0.20)
#: ``w`` of ``exp(i w x y)`` as multiples of ``sqrt(m n)``: at 512 x 2048 the issue's
#: ``w = 300`` (low rank) and ``w = 1000`` (butterflies tie SVD) are 0.3 and 1.
OSCILLATION = (0.3, 1.0, 3.0)
EXACT = 1e-12


@dataclass(frozen=True)
class Target:
    name: str
    matrix: np.ndarray
    #: a chain the target is exactly a product of (up to the operator's permutations)
    own_chain: Chain | None = None
    #: the DeBut paper's chain for this shape, if there is one
    paper_chain: Chain | None = None


def paper_chain_for(shape: tuple[int, int]) -> Chain | None:
    return next((c for c in PAPER_CHAINS.values() if c.shape == shape), None)


def suite(m: int, n: int, rng: np.random.Generator) -> list[Target]:
    """The targets at ``m x n`` (Hadamard and DFT at ``m x m``, ``m`` a power of two)."""
    x, y = np.linspace(0, 1, m), np.linspace(0, 1, n)
    paper = paper_chain_for((m, n))
    targets = [
        Target(
            "smooth kernel exp(-30 (x-y)^2)", np.exp(-30 * (x[:, None] - y) ** 2), paper_chain=paper
        )
    ]
    for factor in OSCILLATION:
        w = round(factor * np.sqrt(m * n))
        targets.append(
            Target(
                f"oscillatory exp(i {w} x y)", np.exp(1j * w * np.outer(x, y)), paper_chain=paper
            )
        )
    low = rng.standard_normal((m, 8)) @ rng.standard_normal((8, n))
    noise = rng.standard_normal((m, n))
    targets.append(
        Target(
            "rank 8 + 1% noise",
            low + 0.01 * np.linalg.norm(low) / np.linalg.norm(noise) * noise,
            paper_chain=paper,
        )
    )
    depth = int(np.log2(min(m, n))) - 1
    chains = [("rank-2 butterfly", rank_weighted_chain(m, n, [(2, 2, 2)] * depth))]
    if paper is not None:
        chains.insert(0, ("paper chain", paper))
    for label, chain in chains:
        product = DeButOperator.random(chain, rng=rng).toarray()
        targets.append(
            Target(
                f"DeBut product ({label}, {chain.n_params:,} params)",
                product,
                own_chain=chain,
                paper_chain=paper,
            )
        )
    targets.append(Target("Gaussian", rng.standard_normal((m, n)), paper_chain=paper))
    targets.append(Target(f"Hadamard {m}", hadamard(m).toarray(), own_chain=hadamard(m).chain))
    fourier = dft(m)
    targets.append(Target(f"DFT {m}", np.fft.fft(np.eye(m), axis=0), own_chain=fourier.chain))
    return targets


@dataclass
class Row:
    target: str
    shape: tuple[int, int]
    budget: int
    label: str
    error: float
    svd_error: float
    paper_error: float | None
    chain: Chain
    seconds: float

    @property
    def ratio(self) -> float:
        """SVD error over DeBut error (above 1: DeBut wins)."""
        return self.svd_error / self.error if self.error > 0 else np.inf


def run_target(target: Target, fractions: tuple[float, ...], options: dict) -> list[Row]:
    m, n = target.matrix.shape
    budgets = [(f"{fraction:.1%}", int(fraction * m * n)) for fraction in fractions]
    if target.own_chain is not None:
        budgets.append(("own chain", target.own_chain.n_params))
    paper_error = None
    if target.paper_chain is not None:
        paper_error = fit_als(
            target.matrix, target.paper_chain, n_sweeps=options["n_sweeps"], rng=0
        ).error
    rows = []
    for label, budget in budgets:
        start = time.perf_counter()
        result = approximate(target.matrix, budget, rng=0, permutation="auto", **options)
        seconds = time.perf_counter() - start
        paper_fits = target.paper_chain is not None and target.paper_chain.n_params <= budget
        within = paper_error if paper_fits else None
        rows.append(
            Row(
                target.name,
                (m, n),
                budget,
                label,
                result.error,
                result.baseline.error,
                within,
                result.chain,
                seconds,
            )
        )
        print(
            f"  {target.name} [{label}] {budget:,} params: DeBut {result.error:.3g}, "
            f"SVD {result.baseline.error:.3g} ({seconds:.1f} s)",
            flush=True,
        )
    return rows


def table(rows: list[Row]) -> str:
    lines = [
        "| target | m x n | budget | params | DeBut best | SVD | SVD / DeBut | paper's chain "
        "| chosen chain (r, s per factor) | time |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        paper = "" if row.paper_error is None else f"{row.paper_error:.3g}"
        ratio = "exact" if row.error <= EXACT else f"{row.ratio:.2f}"
        rs = " ".join(f"{f.r}/{f.s}" for f in row.chain)
        lines.append(
            f"| {row.target} | {row.shape[0]} x {row.shape[1]} | {row.label} | {row.budget:,} "
            f"| {row.error:.3g} | {row.svd_error:.3g} | {ratio} | {paper} "
            f"| {row.chain.n_factors} factors: {rs} | {row.seconds:.1f} s |"
        )
    return "\n".join(lines)


def checks(rows: list[Row]) -> str:
    """The benchmark's targets, each stated with the measured worst case."""
    margin = max(row.error - row.svd_error for row in rows)
    exact = [row for row in rows if row.label == "own chain"]
    worst_exact = max((row.error for row in exact), default=float("nan"))
    return (
        f"- never worse than the SVD: largest (DeBut - SVD) error over all rows {margin:.2e} "
        f"({'met' if margin <= 1e-12 else 'NOT met'});\n"
        f"- DeBut products, Hadamard and DFT at their own chain's budget: worst error "
        f"{worst_exact:.2e} ({'met' if worst_exact <= EXACT else 'NOT met'}, target <= {EXACT:g})."
    )


def figure(rows: list[Row], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(row.target for row in rows))
    columns = 4
    lines = -(-len(names) // columns)
    fig, axes = plt.subplots(
        lines, columns, figsize=(3.2 * columns, 2.6 * lines), layout="constrained", squeeze=False
    )
    floor = 1e-16
    for ax, name in zip(axes.flat, names):
        mine = sorted((r for r in rows if r.target == name), key=lambda r: r.budget)
        params = [r.budget for r in mine]
        ax.semilogy(params, [max(r.svd_error, floor) for r in mine], "s--", label="truncated SVD")
        ax.semilogy(params, [max(r.error, floor) for r in mine], "o-", label="DeBut (approximate)")
        ax.set_title(name, fontsize=8)
        ax.set_xlabel("parameters", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes.flat[len(names) :]:
        ax.axis("off")
    axes.flat[0].set_ylabel("relative error", fontsize=8)
    axes.flat[0].legend(fontsize=7)
    fig.savefig(path, dpi=110)
    print(f"figure saved: {path}")


def timed_case(options: dict, workers: list[int], shape: tuple[int, int], budget: int) -> str:
    """The smooth kernel ``exp(-30 (x - y)^2)`` of ``shape`` within ``budget`` parameters,
    searched on each number of ``workers`` threads in turn (the answer must not change)."""
    m, n = shape
    x, y = np.linspace(0, 1, m), np.linspace(0, 1, n)
    kernel = np.exp(-30 * (x[:, None] - y) ** 2)
    lines, first = [], None
    for count in workers:
        start, cpu = time.perf_counter(), time.process_time()
        result = approximate(kernel, budget, rng=0, progress=True, workers=count, **options)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        if first is None:
            first = (seconds, result)
        elif not np.array_equal(result.operator.toarray(), first[1].operator.toarray()):
            raise AssertionError(f"workers={count} gave another answer than workers={workers[0]}")
        lines.append(
            f"{m} x {n} smooth kernel, {budget:,} params, workers={count}: {seconds:.1f} s "
            f"({cpu:.1f} s CPU; {first[0] / seconds:.2f}x workers={workers[0]}), error "
            f"{result.error:.3g} (SVD {result.baseline.error:.3g}), chain "
            f"{result.chain.to_sup_sub()}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="64 x 128 and fewer sweeps")
    parser.add_argument(
        "--shape",
        type=positive_int,
        nargs=2,
        default=None,
        metavar=("M", "N"),
        help="size of the suite, M a power of two (Hadamard and DFT are M x M) and the "
        f"smallest budget, {min(BUDGETS) * 100:g}%% of M N and of M M, at least M + N and 2 M "
        "(a rank-one product; M at least 64); default 512 2048; --quick: 64 128; with "
        "--timing, the kernel's size, any M and N",
    )
    parser.add_argument(
        "--timing",
        action="store_true",
        help="only the timed case: the smooth kernel, 512 x 2048 (or --shape) at 25,600 "
        "parameters (or --budget)",
    )
    parser.add_argument(
        "--budget",
        type=positive_int,
        default=None,
        metavar="K",
        help="with --timing: largest number of parameters (default 25,600)",
    )
    parser.add_argument(
        "--workers",
        type=thread_count,
        nargs="+",
        default=[1],
        metavar="N",
        help="with --timing: approximate's workers, each in turn (e.g. 1 2)",
    )
    parser.add_argument("--figure", type=output_file, help="save error against parameters here")
    parser.add_argument(
        "--update-readme", action="store_true", help="write the table into benchmarks/README.md"
    )
    args = parser.parse_args(argv)
    if args.figure:
        require_modules(parser, "--figure", "matplotlib")
    options = {"n_sweeps": 2 if args.quick else 5}
    if args.workers != [1] and not args.timing:
        parser.error("--workers applies to --timing")
    if args.budget is not None and not args.timing:
        parser.error("--budget applies to --timing")
    if args.timing:
        shape = tuple(args.shape or (512, 2048))
        require_memory(parser, 8 * shape[0] * shape[1], f"a {shape[0]} x {shape[1]} target")
        print(timed_case(options, args.workers, shape, args.budget or 25_600))
        return
    m, n = args.shape or ((64, 128) if args.quick else (512, 2048))
    # the smallest budget holds a rank-one product of every target, M x N and M x M ones
    if m & (m - 1) or int(min(BUDGETS) * m * min(m, n)) < m + min(m, n):
        parser.error(
            f"--shape {m} {n}: M must be a power of two and {min(BUDGETS):.0%} of M N and "
            "of M M at least M + N and 2 M (M at least 64; e.g. 64 128)"
        )
    require_memory(parser, 8 * m * max(m, n) * 4, f"the {m} x {n} targets")
    rng = np.random.default_rng(0)
    rows = [row for target in suite(m, n, rng) for row in run_target(target, BUDGETS, options)]
    text = table(rows) + "\n\n" + checks(rows)
    if args.figure:
        figure(rows, args.figure)
    if args.update_readme:
        update_readme(text, "bench_approximate")
    else:
        print(text)


if __name__ == "__main__":
    main()
