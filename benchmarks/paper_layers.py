"""Layer-level results of the DeBut paper, reproduced with pydebut.

For the chains of the paper's public scripts (``pydebut.special.PAPER_CHAINS``) and the layer
shapes of its experiments, report the cost of each chain (parameters, layer-wise
compression, flops, density verdict) and how well alternating least squares
(ALS) fits it: relative Frobenius error ``||D - D_hat|| / ||D||`` after 1, 5 and
10 sweeps, from a random start (as the paper) and from pydebut's hierarchical
factorization, on two fixed targets:

- ``gaussian``: i.i.d. standard normal entries (seed 0), no structure at all;
- ``kernel``: a sampled smooth kernel, ``D_ij = exp(-|x_i - y_j|^2 / ell^2)``
  with ``ell = 0.5`` and points ``x_i``, ``y_j`` uniform in the unit square
  (seed 0), sorted by their first coordinate.

It then checks the paper's observation that about 5 sweeps are enough for small
matrices: a row "agrees" when the error after 5 sweeps is within 1 % (relative)
of the error after 10.

Run from the repository root::

    python benchmarks/paper_layers.py                  # print the tables
    python benchmarks/paper_layers.py --update-readme  # also rewrite its marked
                                                       # block of benchmarks/README.md
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import numpy as np
from _readme import update_readme

import pydebut
from pydebut import Chain, fit_als, is_dense, min_param_chain
from pydebut.special import PAPER_CHAINS

HEADING = "## Paper layers"
SWEEPS = (1, 5, 10)
AGREE_WITHIN = 0.01  # "5 sweeps suffice": e5 within 1 % of e10


@dataclass(frozen=True)
class Layer:
    name: str
    chain: Chain
    source: str


def layers() -> list[Layer]:
    """The four layer shapes; the paper's chains where its scripts give one."""
    return [
        Layer("LeNet fc1", PAPER_CHAINS["lenet-fc1"], "paper"),
        Layer("VGG-16 conv1", PAPER_CHAINS["vgg16-conv1"], "paper"),
        Layer(
            "512-ch. 3x3 conv",
            min_param_chain(512, 4608, 4, kind="monotonic"),
            "pydebut: smallest monotonic, 4 factors",
        ),
        Layer("ResNet-50 layer4", PAPER_CHAINS["resnet50-layer4"], "paper"),
    ]


def gaussian_target(m: int, n: int) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((m, n))


def kernel_target(m: int, n: int, ell: float = 0.5) -> np.ndarray:
    rng = np.random.default_rng(0)
    x, y = rng.uniform(size=(m, 2)), rng.uniform(size=(n, 2))
    x, y = x[np.argsort(x[:, 0])], y[np.argsort(y[:, 0])]
    squared = ((x[:, None, :] - y[None, :, :]) ** 2).sum(axis=-1)
    return np.exp(-squared / ell**2)


TARGETS = {"gaussian": gaussian_target, "kernel": kernel_target}


def svd_reference(target: np.ndarray, n_params: int) -> tuple[int, float]:
    """Rank ``k = n_params // (m + n)`` and relative error of the truncated SVD.

    A rank-``k`` factorization ``U V^T`` stores ``k (m + n)`` numbers, so this is
    the best low-rank approximation with at most the chain's parameter count.
    """
    m, n = target.shape
    rank = n_params // (m + n)
    singular = np.linalg.svd(target, compute_uv=False)
    return rank, float(np.sqrt(np.sum(singular[rank:] ** 2) / np.sum(singular**2)))


def structure_table(items: list[Layer]) -> list[str]:
    rows = [
        "| layer | m x n | chain | factors | kind | params | compression | flops DeBut / dense "
        "| density |",
        "| --- | --- | --- | ---: | --- | ---: | ---: | ---: | --- |",
    ]
    for layer in items:
        chain = layer.chain
        m, n = chain.shape
        rows.append(
            f"| {layer.name} | {m} x {n} | {layer.source} | {chain.n_factors} | {chain.kind} "
            f"| {chain.n_params:,} | {chain.compression_ratio:.2f}x "
            f"| {chain.flops:,} / {2 * m * n:,} | {is_dense(chain)} |"
        )
    return rows


def fit_rows(items: list[Layer]) -> tuple[list[str], list[dict]]:
    rows = [
        "| layer | target | init | error at start | 1 sweep | 5 sweeps | 10 sweeps "
        "| s / sweep | e5 / e10 - 1 | 5 sweeps enough? | never rose | SVD, same params |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- | ---: |",
    ]
    records = []
    for layer in items:
        for target_name, make_target in TARGETS.items():
            target = make_target(*layer.chain.shape)
            rank, svd_error = svd_reference(target, layer.chain.n_params)
            for init in ("random", "hierarchical"):
                start = time.perf_counter()
                result = fit_als(target, layer.chain, n_sweeps=max(SWEEPS), init=init, rng=1)
                elapsed = time.perf_counter() - start
                errors = result.errors
                if len(errors) != 2 * max(SWEEPS) + 1:
                    raise RuntimeError(f"expected {2 * max(SWEEPS) + 1} errors, got {len(errors)}")
                after = {k: errors[2 * k] for k in SWEEPS}
                gap = after[5] / after[10] - 1
                rise = max(b - a for a, b in pairwise(errors))
                monotone = rise <= 1e-10 * errors[0]
                per_sweep = (result.times[-1] - result.times[0]) / max(SWEEPS)
                record = dict(layer=layer.name, target=target_name, init=init, gap=gap,
                              monotone=monotone, svd=svd_error, rank=rank,
                              **{f"e{k}": v for k, v in after.items()})  # fmt: skip
                records.append(record)
                rows.append(
                    f"| {layer.name} | {target_name} | {init} | {errors[0]:.4f} "
                    + " ".join(f"| {after[k]:.4f}" for k in SWEEPS)
                    + f" | {per_sweep:.3f} | {100 * gap:.2f} % "
                    f"| {'yes' if gap <= AGREE_WITHIN else 'no'} "
                    f"| {'yes' if monotone else f'no (+{rise:.1e})'} "
                    f"| {svd_error:.4f} (rank {rank}) |"
                )
                print(
                    f"  fitted {layer.name}, {target_name}, {init} in {elapsed:.1f} s", flush=True
                )
    return rows, records


def verdict(records: list[dict]) -> list[str]:
    lines = []
    small = {"LeNet fc1", "VGG-16 conv1"}
    for group, names in (("small layers (LeNet fc1, VGG-16 conv1)", small), ("large layers", None)):
        chosen = [r for r in records if (r["layer"] in small) == (names is not None)]
        agree = [r for r in chosen if r["gap"] <= AGREE_WITHIN]
        worst = max(chosen, key=lambda r: r["gap"])
        lines.append(
            f"- {group}: 5 sweeps reach within 1 % of the 10-sweep error in {len(agree)} of "
            f"{len(chosen)} fits; the largest gap is {100 * worst['gap']:.2f} % "
            f"({worst['layer']}, {worst['target']} target, {worst['init']} start)."
        )
    for target in TARGETS:
        rows = [r for r in records if r["target"] == target and r["init"] == "hierarchical"]
        better = [r for r in rows if r["e10"] < r["svd"]]
        lines.append(
            f"- `{target}` target: after 10 sweeps the chain beats the truncated SVD with as "
            f"many parameters on {len(better)} of {len(rows)} layers ("
            + ", ".join(f"{r['layer']} {r['e10']:.3f} vs {r['svd']:.3f}" for r in rows)
            + ")."
        )
    kernel_rows = [r for r in records if r["target"] == "kernel"]
    spread = max(
        abs(a["e10"] - b["e10"])
        for a in kernel_rows
        for b in kernel_rows
        if a["layer"] == b["layer"] and a["init"] != b["init"]
    )
    lines.append(
        f"- `kernel` target: the random and the hierarchical start end within {spread:.1e} "
        "of each other after 10 sweeps, on every layer."
    )
    rose = [r for r in records if not r["monotone"]]
    lines.append(
        f"- the error never rose during a fit in {len(records) - len(rose)} of {len(records)} fits."
    )
    return lines


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{cpu}, {os.cpu_count()} logical cores; Python {platform.python_version()}, "
        f"NumPy {np.__version__}, pydebut {pydebut.__version__}"
    )


def section(structure: list[str], fits: list[str], summary: list[str], total: float) -> str:
    return "\n".join(
        [
            HEADING,
            "",
            "The layer shapes of the paper's experiments with the chains of its public scripts",
            "(`pydebut.special.PAPER_CHAINS`; they give no chain for the 512 x 4608 layer, so",
            "pydebut's smallest monotonic 4-factor chain stands in). Errors are the relative",
            "Frobenius error `||D - D_hat|| / ||D||` of `pydebut.fit_als` after 1, 5 and 10 sweeps",
            "(one sweep = left to right, then right to left = 2 of the paper's iterations), from a",
            'random start (`init="random"`, as the paper) and from `pydebut.fit_hierarchical`',
            '(`init="hierarchical"`). Targets: `gaussian` = i.i.d. N(0, 1) entries (seed 0);',
            "`kernel` = `exp(-|x_i - y_j|^2 / 0.5^2)` on points uniform in the unit square",
            "(seed 0), sorted by their first coordinate. Measured with",
            "",
            "```console",
            "$ python benchmarks/paper_layers.py --update-readme",
            "```",
            "",
            f"Machine: {machine()}. Total run time {total:.0f} s.",
            "",
            *structure,
            "",
            *fits,
            "",
            "The paper observes that about 5 sweeps are enough for small matrices. Here:",
            "",
            *summary,
            "",
            "What we can and cannot compare with the paper: its layer-level errors are measured",
            "on trained weights, which are not available here, so the absolute errors above are",
            "not the paper's; they are for two fixed, reproducible targets. The last column is",
            "the truncated SVD with at most the chain's parameter count, a baseline the paper does",
            "not report. A Gaussian matrix has no structure to exploit, so every fit stays close",
            "to an error of 1 there and converges quickly because it has little to gain. A smooth",
            "kernel matrix is numerically low-rank, which the truncated SVD captures with few",
            "parameters; the paper's chains stop at a much larger error there, whatever the start.",
            "Butterfly-type chains suit transforms such as Hadamard's, which they represent",
            "exactly, rather than smooth low-rank matrices: the ALS sweeps converge quickly, but",
            "to an error that both starts reach and that more sweeps do not lower.",
            "",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--update-readme",
        action="store_true",
        help="rewrite the marked paper_layers block of benchmarks/README.md",
    )
    args = parser.parse_args()
    start = time.perf_counter()
    items = layers()
    structure = structure_table(items)
    fits, records = fit_rows(items)
    summary = verdict(records)
    text = section(structure, fits, summary, time.perf_counter() - start)
    print(text)
    if args.update_readme:
        update_readme(text.rstrip("\n"), "paper_layers")


if __name__ == "__main__":
    main()
