"""Crossover of ``pydebut.approximate`` against the truncated SVD on oscillatory kernels.

The targets are ``exp(i w x y)`` with ``x`` (``m`` points) and ``y`` (``n`` points) evenly
spaced in [0, 1]. With ``w`` proportional to the size, the kernel's numerical rank grows
like ``w / (2 pi)``, a fixed fraction of ``n``, while the numerical ranks of its
sub-blocks of ``dx x dy`` with ``dx dy = 1/n`` (the butterfly's complementary low-rank
blocks) stay bounded by about ``w dx dy / (2 pi)`` plus a constant: at ``w = 2 pi n`` the
kernel is the DFT. Budgets are multiples of the butterfly budget
``(m + n) log2(sqrt(m n))`` (``2 n log2 n`` for a square; 25,600 at 512 x 2048) or
fractions of the dense parameters.

    python benchmarks/bench_crossover.py 64 128 --quick           # 64 x 64 and 128 x 128
    python benchmarks/bench_crossover.py 1024 --beam-width 8 --sweeps 2 --results r.jsonl
    python benchmarks/bench_crossover.py 512x2048 --w 300 1000 --fractions 0.05 0.15 0.25
    python benchmarks/bench_crossover.py --report r.jsonl --figure docs/_static/crossover.png

Every point (one ``approximate`` call) runs in a fresh process, so its peak resident
memory (``ru_maxrss``: the target, the search, the fits and the interpreter) is its own.
The DeBut error is recomputed here from the returned operator against the target; the
SVD error is the exact optimum at the same budget, from the kernel's singular values
(computed once per kernel and stored with ``--results``), and ``approximate``'s own
baseline (randomized above 2**22 entries) is recorded beside it.
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from _args import (
    existing_file,
    fraction,
    nonnegative_int,
    output_file,
    positive_float,
    positive_int,
    require_memory,
    require_modules,
)
from _readme import update_readme

#: ``w`` as multiples of ``sqrt(m n)`` (of ``n`` for a square) when ``--w`` is not given.
W_FACTORS = (0.5, 2.0, 6.0)
#: Budgets as multiples of the butterfly budget when ``--fractions`` is not given.
MULTIPLES = (1.0, 2.0, 4.0)
#: ``--permutation``: ``approximate`` tries them all, or one key of
#: ``pydebut.candidate_permutations`` is fixed.
PERMUTATIONS = ("auto", "identity", "bitrev-cols", "bitrev-rows", "bitrev-both")


def kernel(m: int, n: int, w: float) -> np.ndarray:
    """``exp(i w x y)`` on ``m x n`` evenly spaced points of [0, 1]^2."""
    return np.exp(1j * w * np.outer(np.linspace(0, 1, m), np.linspace(0, 1, n)))


def butterfly_budget(m: int, n: int) -> int:
    """``(m + n) log2(sqrt(m n))``: a square radix-2 butterfly's ``2 n log2 n``."""
    return round((m + n) * np.log2(np.sqrt(m * n)))


@dataclass(frozen=True)
class Point:
    """One ``approximate`` call of the crossover."""

    m: int
    n: int
    w: float
    budget: int
    beam_width: int
    n_sweeps: int
    max_factors: int
    max_splits: int
    refine: int
    permutation: str  # "auto" or a key of pydebut.candidate_permutations
    butterflies: bool = False  # pass butterfly_chains(m, n, budget) as ``include``


def butterfly_chains(m: int, n: int, budget: int) -> list:
    """Radix-2 and radix-4 rank-weighted butterflies (every rank weight ``w``, the
    largest ``w`` within ``budget``): the chains of the butterfly factorization of
    complementary low-rank kernels (the last factor takes what is left of ``m``, ``n``)."""
    from bench_approximate import rank_weighted_chain

    chains = []
    levels = int(np.log2(min(m, n)))
    for radix in (2, 4):
        depth = round(np.log(min(m, n)) / np.log(radix)) - 1
        if radix**depth > min(m, n) or levels < 2:
            continue
        fitting = None
        for w in range(1, 9):
            chain = rank_weighted_chain(m, n, [(radix, radix, w)] * depth)
            if chain.n_params > budget:
                break
            fitting = chain
        if fitting is not None:
            chains.append(fitting)
    return chains


def run_point(point: Point) -> dict:
    """Run ``approximate`` for ``point`` (in a fresh process) and measure it."""
    target = kernel(point.m, point.n, point.w)
    options = {
        "beam_width": point.beam_width,
        "n_sweeps": point.n_sweeps,
        "max_factors": point.max_factors,
        "max_splits": point.max_splits,
        "refine": point.refine,
        "rng": 0,
    }
    if point.butterflies:
        options["include"] = butterfly_chains(point.m, point.n, point.budget)
    start = time.perf_counter()
    note = None
    try:
        result, operator = _approximate(target, point, options)
    except ValueError as failure:  # recorded, so that one point does not stop a long run
        if "couple" not in str(failure) or point.n_sweeps == 0:
            return {"kind": "failure", **asdict(point), "message": str(failure)}
        # fit_als refuses a chain the search proposed: hierarchical factorizations only
        note = f"with n_sweeps=0: with {point.n_sweeps} ALS sweeps, {failure}"
        result, operator = _approximate(target, point, {**options, "n_sweeps": 0})
    seconds = time.perf_counter() - start
    error = float(np.linalg.norm(operator.toarray() - target) / np.linalg.norm(target))
    permutation = {
        (False, False): "identity",
        (False, True): "bitrev-cols",
        (True, False): "bitrev-rows",
        (True, True): "bitrev-both",
    }[(operator.row_perm is not None, operator.col_perm is not None)]
    return {
        "kind": "point",
        **asdict(point),
        "error": error,
        "search_error": result.error,
        "params": operator.n_params,
        "chain": [[f.p, f.q, f.r, f.s, f.t] for f in operator.chain],
        "found_permutation": permutation,
        "source": (
            "SVD"
            if operator.chain.n_factors == 2 and operator.chain[0].q == result.baseline.rank
            else "included"
            if operator.chain in options.get("include", ())
            else "search"
        ),
        "baseline_error": result.baseline.error,
        "baseline_rank": result.baseline.rank,
        "baseline_randomized": result.baseline.randomized,
        "n_splits": result.n_splits,
        "narrowed": result.narrowed,
        "note": note,
        "seconds": seconds,
        "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def _approximate(target: np.ndarray, point: Point, options: dict) -> tuple:
    """``approximate``'s result and its operator for the unpermuted target."""
    from pydebut import approximate, candidate_permutations
    from pydebut._permutation import unpermute

    if point.permutation == "auto":
        result = approximate(target, point.budget, permutation="auto", **options)
        return result, result.operator
    row_perm, col_perm = candidate_permutations(point.m, point.n)[point.permutation]
    result = approximate(unpermute(target, row_perm, col_perm), point.budget, **options)
    return result, result.operator.with_permutations(row_perm, col_perm)


def run_spectrum(m: int, n: int, w: float) -> dict:
    """Squared singular values of the kernel (exact SVD errors at every rank)."""
    import scipy.linalg

    start = time.perf_counter()
    sigma = scipy.linalg.svdvals(kernel(m, n, w), overwrite_a=True, check_finite=False)
    return {
        "kind": "spectrum",
        "m": m,
        "n": n,
        "w": w,
        "sigma2": (sigma**2).tolist(),
        "seconds": time.perf_counter() - start,
        "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def in_fresh_process(function, *args) -> dict:
    context = get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=context, max_tasks_per_child=1) as pool:
        return pool.submit(function, *args).result()


def parse_shape(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"(\d+)(?:x(\d+))?", text)
    if match is None:
        raise argparse.ArgumentTypeError(f"a size is N or MxN, got {text!r}")
    m = int(match.group(1))
    n = int(match.group(2) or m)
    if min(m, n) < 2:
        raise argparse.ArgumentTypeError(f"a size is at least 2 a side, got {text!r}")
    return m, n


def budgets_of(args: argparse.Namespace, m: int, n: int) -> list[int]:
    """The budgets of ``--fractions`` (of ``m n``) or ``--multiples`` (of the butterfly's)."""
    if args.fractions:
        return [int(f * m * n) for f in args.fractions]
    return [int(k * butterfly_budget(m, n)) for k in args.multiples]


def measure(args: argparse.Namespace) -> list[dict]:
    """Every (shape, w, budget) of the command line; records appended to ``--results``."""
    records = []

    def keep(record: dict) -> None:
        records.append(record)
        if args.results is not None:
            with args.results.open("a") as out:
                out.write(json.dumps(record) + "\n")

    for m, n in args.sizes:
        scale = np.sqrt(m * n)
        ws = args.w or [round(factor * scale) for factor in W_FACTORS]
        budgets = budgets_of(args, m, n)
        for w in ws:
            if not args.no_spectrum:
                spectrum = in_fresh_process(run_spectrum, m, n, w)
                keep(spectrum)
                print(f"{m} x {n}, w = {w}: singular values in {spectrum['seconds']:.1f} s")
            if args.spectra_only:
                continue
            for budget in budgets:
                point = Point(
                    m,
                    n,
                    w,
                    budget,
                    args.beam_width,
                    args.sweeps,
                    args.max_factors,
                    args.max_splits,
                    args.refine,
                    args.permutation,
                    args.butterflies,
                )
                record = in_fresh_process(run_point, point)
                keep(record)
                if record["kind"] == "failure":
                    print(f"{m} x {n}, w = {w}, {budget:,} params: FAILED {record['message']}")
                    continue
                print(
                    f"{m} x {n}, w = {w}, {budget:,} params: DeBut {record['error']:.3g} "
                    f"({record['found_permutation']}, {len(record['chain'])} factors), "
                    f"SVD {record['baseline_error']:.3g}; {record['seconds']:.0f} s, "
                    f"{record['peak_mib']:.0f} MiB, {record['n_splits']} splits",
                    flush=True,
                )
    return records


#: The kinds of record this script writes, and the keys every record of a kind has.
RECORD_KEYS = {
    "point": {"m", "n", "w", "budget", "permutation", "error", "baseline_error"},
    "failure": {"m", "n", "w", "budget", "permutation", "message"},
    "spectrum": {"m", "n", "w", "sigma2"},
}


def load(paths: list[Path]) -> list[dict]:
    """The records of ``paths`` (JSON lines); ``ValueError`` naming the first line that is
    not JSON or not a record this script writes."""
    records = []
    for path in paths:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if not line:
                continue
            record = json.loads(line)
            kind = record.get("kind") if isinstance(record, dict) else None
            if kind not in RECORD_KEYS or not RECORD_KEYS[kind] <= record.keys():
                raise ValueError(f"{path}, line {number}, is not a record of this script")
            records.append(record)
    return records


def with_svd(records: list[dict]) -> list[dict]:
    """The points, each with ``svd``: the exact truncated SVD error at its budget when
    the kernel's spectrum was measured, otherwise ``approximate``'s baseline."""
    spectra = {
        (r["m"], r["n"], r["w"]): np.asarray(r["sigma2"])
        for r in records
        if r["kind"] == "spectrum"
    }
    points = []
    for record in records:
        if record["kind"] != "point":
            continue
        sigma2 = spectra.get((record["m"], record["n"], record["w"]))
        rank = record["budget"] // (record["m"] + record["n"])
        if sigma2 is not None:
            svd, exact = float(np.sqrt(sigma2[rank:].sum() / sigma2.sum())), True
        else:
            svd, exact = record["baseline_error"], not record["baseline_randomized"]
        points.append({**record, "svd": svd, "svd_rank": rank, "svd_exact": exact})
    return sorted(points, key=lambda p: (p["m"] * p["n"], p["m"], p["w"], p["budget"]))


def describe_chain(chain: list[list[int]]) -> str:
    return f"{len(chain)}: " + " ".join(f"{f[2]}/{f[3]}" for f in chain)


def best(points: list[dict]) -> list[dict]:
    """The lowest DeBut error per (shape, w, budget) over the settings measured."""
    chosen: dict[tuple, dict] = {}
    for p in points:
        key = (p["m"], p["n"], p["w"], p["budget"])
        if key not in chosen or p["error"] < chosen[key]["error"]:
            chosen[key] = p
    return list(chosen.values())


def setting(p: dict) -> str:
    """The search options of a point, short."""
    text = f"{p['permutation']}, beam {p['beam_width']}, {p['n_sweeps']} sweeps, "
    text += f"<= {p['max_factors']} factors"
    if p["max_splits"] != 5000:
        text += f", <= {p['max_splits']} splits"
    if p.get("butterflies"):
        text += ", + butterflies"
    if p.get("note"):
        text += " (rerun with 0 sweeps: fit_als refused a searched chain; time of both runs)"
    return text


def table(points: list[dict], failures: list[dict]) -> str:
    lines = [
        "| m x n | w | params (% dense) | DeBut | SVD (rank) | SVD / DeBut | found by "
        "| factors: r/s | setting | time | peak RSS |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- | --- | --- | ---: | ---: |",
    ]
    for p in points:
        svd = f"{p['svd']:.3g} ({p['svd_rank']}{'' if p['svd_exact'] else ', randomized'})"
        ratio = p["svd"] / p["error"] if p["error"] > 0 else np.inf
        lines.append(
            f"| {p['m']} x {p['n']} | {p['w']:g} "
            f"| {p['budget']:,} ({100 * p['budget'] / (p['m'] * p['n']):.2g}%) "
            f"| {p['error']:.3g} | {svd} | **{ratio:.3g}** | {p.get('source', 'search')} "
            f"| {describe_chain(p['chain'])} | {setting(p)} "
            f"| {p['seconds']:.0f} s | {p['peak_mib']:,.0f} MiB |"
        )
    for f in failures:
        lines.append(
            f"\n- {f['m']} x {f['n']}, w = {f['w']:g}, {f['budget']:,} params ({setting(f)}): "
            f"`approximate` raised `ValueError: {f['message']}`"
        )
    return "\n".join(lines)


def figure(points: list[dict], path: Path) -> None:
    """Error against parameters per ``w / sqrt(mn)`` (a colour per size), and the
    ratio SVD / DeBut against the size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def group(p: dict) -> str:
        if p["m"] == p["n"]:
            return f"w = {p['w'] / p['n']:.2g} n"
        return f"{p['m']} x {p['n']}, w = {p['w']:g}"

    points = sorted(points, key=lambda p: (p["m"] != p["n"], p["w"] / np.sqrt(p["m"] * p["n"])))
    groups = list(dict.fromkeys(group(p) for p in points))
    shapes = sorted({(p["m"], p["n"]) for p in points}, key=lambda shape: shape[0] * shape[1])
    colours = dict(zip(shapes, plt.cm.viridis(np.linspace(0, 0.9, len(shapes)))))
    panels = len(groups) + 1
    columns = min(panels, 3)
    fig, axes = plt.subplots(
        -(-panels // columns),
        columns,
        figsize=(3.6 * columns, 2.9 * -(-panels // columns)),
        layout="constrained",
        squeeze=False,
    )
    for ax, name in zip(axes.flat, groups):
        for shape in shapes:
            mine = [p for p in points if group(p) == name and (p["m"], p["n"]) == shape]
            if not mine:
                continue
            params = [p["budget"] for p in mine]
            colour = colours[shape]
            label = f"{shape[0]}" if shape[0] == shape[1] else f"{shape[0]} x {shape[1]}"
            ax.loglog(params, [p["svd"] for p in mine], "s--", color=colour, mfc="none")
            ax.loglog(
                params, [max(p["error"], 1e-16) for p in mine], "o-", color=colour, label=label
            )
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("parameters", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6, title="o DeBut, □ SVD", title_fontsize=6)
    axes.flat[0].set_ylabel("relative error", fontsize=8)
    ax = axes.flat[len(groups)]
    square = [p for p in points if p["m"] == p["n"]]
    names = list(dict.fromkeys(group(p) for p in square))
    markers = {1.0: "o", 2.0: "s", 4.0: "^"}
    top = 1e4
    for colour, name in zip(plt.cm.tab10.colors, names):
        for multiple, marker in markers.items():
            mine = [
                p
                for p in square
                if group(p) == name
                and round(p["budget"] / butterfly_budget(p["n"], p["n"]), 2) == multiple
            ]
            ratios = [min(p["svd"] / max(p["error"], 1e-300), top) for p in mine]
            ax.loglog(
                [p["n"] for p in mine],
                ratios,
                marker + "-",
                color=colour,
                ms=4,
                label=f"{name}, {multiple:g} bfly",
            )
    ax.axhline(2, color="grey", lw=0.8, ls=":")
    ax.set_ylim(0.8, top * 1.3)
    ax.set_title(f"SVD / DeBut error (square, cut at {top:g})", fontsize=9)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("n", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=5, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.2))
    for extra in axes.flat[panels:]:
        extra.axis("off")
    fig.savefig(path, dpi=110)
    print(f"figure saved: {path}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sizes", type=parse_shape, nargs="*", help="N (square) or MxN")
    parser.add_argument(
        "--w", type=positive_float, nargs="+", help="absolute w (default 0.5, 2, 6 sqrt(mn))"
    )
    parser.add_argument(
        "--multiples",
        type=positive_float,
        nargs="+",
        default=list(MULTIPLES),
        help="budgets in butterfly budgets (default 1 2 4)",
    )
    parser.add_argument(
        "--fractions",
        type=fraction,
        nargs="+",
        help="budgets as fractions of m n instead of --multiples",
    )
    parser.add_argument("--quick", action="store_true", help="2 ALS sweeps (default 5)")
    parser.add_argument("--sweeps", type=nonnegative_int, help="ALS sweeps per refined chain")
    parser.add_argument("--beam-width", type=positive_int, default=32)
    parser.add_argument("--max-factors", type=positive_int, default=10)
    parser.add_argument("--max-splits", type=positive_int, default=5000)
    parser.add_argument("--refine", type=positive_int, default=3)
    parser.add_argument(
        "--butterflies",
        action="store_true",
        help="also fit the radix-2 and radix-4 rank-weighted butterflies within the budget",
    )
    parser.add_argument(
        "--permutation",
        default="auto",
        choices=PERMUTATIONS,
        help="auto (approximate tries all), or one fixed permutation",
    )
    parser.add_argument(
        "--no-spectrum",
        action="store_true",
        help="skip the exact singular values (SVD side: approximate's baseline)",
    )
    parser.add_argument(
        "--spectra-only", action="store_true", help="only the singular values of the kernels"
    )
    parser.add_argument("--results", type=output_file, help="append every record (JSON lines) here")
    parser.add_argument(
        "--report", type=existing_file, nargs="+", help="tabulate these result files"
    )
    parser.add_argument("--figure", type=output_file, help="save the figure of the reported points")
    parser.add_argument(
        "--update-readme",
        action="store_true",
        help="write the reported table into benchmarks/README.md",
    )
    args = parser.parse_args(argv)
    if not args.sizes and not args.report:
        parser.error("give sizes to measure or --report FILES")
    if args.figure:
        require_modules(parser, "--figure", "matplotlib")
    for m, n in args.sizes:
        require_memory(parser, 8 * m * n * 4, f"a {m} x {n} target and its SVD")
        option = "--fractions" if args.fractions else "--multiples"
        if not args.fractions and max(args.multiples) * butterfly_budget(m, n) > m * n:
            parser.error(f"{option}: a budget above {m} x {n} weights is the dense matrix")
        if min(budgets_of(args, m, n)) < 1:
            parser.error(f"{option}: a budget of {m} x {n} rounds down to 0 weights")
    if args.sweeps is None:
        args.sweeps = 2 if args.quick else 5
    if args.report:
        try:
            records = load(args.report)
        except ValueError as error:  # JSON or UTF-8
            parser.error(f"--report: not a file of results (JSON lines): {error}")
    else:
        records = measure(args)
    points = with_svd(records)

    def key(r: dict) -> tuple:
        return r["m"], r["n"], r["w"], r["budget"], r["permutation"]

    done = {key(p) for p in points}
    failures = [r for r in records if r["kind"] == "failure" and key(r) not in done]
    text = table(points, failures)
    if args.figure:
        figure(best(points), args.figure)
    if args.update_readme:
        update_readme(text, "bench_crossover")
    else:
        print(text)


if __name__ == "__main__":
    main()
