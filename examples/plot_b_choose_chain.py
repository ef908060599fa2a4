"""
(b) Choosing a chain for a 512 x 4608 layer under a parameter budget
====================================================================

A 3x3 convolution with 512 input and 512 output channels acts on unfolded
patches as a 512 x 4608 matrix (512 channels x 9 kernel positions): 2,359,296
weights when dense. Which DeBut chains can replace it with at most 60,000
weights, and which should we take? This example walks through the questions
in order: how many chains exist, which are smallest, what the trade-offs are,
and how the chosen chain performs. When the matrix itself is at hand, the
last section lets :func:`pydebut.approximate` choose the chain from its data.
"""

import itertools
import time

import matplotlib.pyplot as plt
import numpy as np

from pydebut import (
    DeButOperator,
    approximate,
    count_chains,
    enumerate_chains,
    is_dense,
    min_param_chain,
    pareto_front,
)
from pydebut.plotting import plot_chain

m, n = 512, 4608
budget = 60_000
print(f"dense: {m * n:,} weights; budget: {budget:,} (compression at least {m * n / budget:.1f}x)")

# %%
# How many chains are there?
# --------------------------
# A chainable chain of ``L`` factors is a pair of ordered factorizations
# ``m = r_1 ... r_L`` and ``n = s_1 ... s_L`` (see :doc:`/concepts`), so even
# this one shape has millions of them. :func:`pydebut.count_chains` counts
# without building any.

factors = range(2, 6)
print(f"chains with 2-5 factors:               {count_chains(m, n, n_factors=factors):>10,}")
print(
    f"  of them monotonic:                   "
    f"{count_chains(m, n, n_factors=factors, kind='monotonic'):>10,}"
)
print(
    f"  with at most {budget:,} parameters:     "
    f"{count_chains(m, n, n_factors=factors, max_params=budget):>10,}"
)
print(
    f"  monotonic and within the budget:     "
    f"{count_chains(m, n, n_factors=factors, kind='monotonic', max_params=budget):>10,}"
)

# %%
# The smallest chains
# -------------------
# :func:`pydebut.min_param_chain` finds the chain with the fewest parameters
# for each number of factors by dynamic programming, without enumerating.

for L in factors:
    chain = min_param_chain(m, n, L, kind="monotonic")
    sup, sub = chain.to_sup_sub()
    print(
        f"L={L}: {chain.n_params:>6,} params ({chain.compression_ratio:6.1f}x), "
        f"r = {[f.r for f in chain]}, s = {[f.s for f in chain]}"
    )

# %%
# The trade-off between size, depth and width
# -------------------------------------------
# Fewer parameters usually need more factors (more sequential steps, more
# rounding, a harder fit), and some chains pass through intermediate
# dimensions larger than ``max(m, n)`` (bulging chains, more memory per
# vector). :func:`pydebut.pareto_front` keeps the chains that no other chain
# beats on parameters, number of factors and largest dimension at once.
# Over all kinds, one chain beats everything:

for chain in pareto_front(m, n, n_factors=factors, kind="any", max_params=budget):
    print(f"{chain.n_params:,} params, {chain.n_factors} factors, dims {chain.dims}, {chain.kind}")

# %%
# It passes through a dimension of 1: its product has rank one, so it cannot
# approximate a generic layer. Such bottlenecks are why the search is usually
# restricted to monotonic chains (the paper uses monotonic and bulging ones).
# The monotonic front within the budget:

print(f"{'params':>8} {'factors':>7} {'max dim':>7}")
for chain in pareto_front(m, n, n_factors=factors, kind="monotonic", max_params=budget):
    print(f"{chain.n_params:>8,} {chain.n_factors:>7} {chain.max_dim:>7}")

# %%
# Enumerating candidates
# ----------------------
# :func:`pydebut.enumerate_chains` yields chains lazily. With
# ``order="params"`` they come smallest first; here we take the first 2,000
# monotonic chains within the budget and plot parameters against the number
# of factors.

start = time.perf_counter()
candidates = list(
    itertools.islice(
        enumerate_chains(
            m, n, n_factors=factors, kind="monotonic", max_params=budget, order="params"
        ),
        2000,
    )
)
print(
    f"{len(candidates)} candidates in {time.perf_counter() - start:.2f} s, "
    f"{candidates[0].n_params:,} to {candidates[-1].n_params:,} params"
)

fig_scatter, ax = plt.subplots(figsize=(5.5, 3.5), layout="constrained")
for L in factors:
    params = [c.n_params for c in candidates if c.n_factors == L]
    jitter = np.random.default_rng(L).uniform(-0.15, 0.15, len(params))
    ax.plot(
        np.full(len(params), L) + jitter, params, ".", alpha=0.4, label=f"L = {L} ({len(params)})"
    )
ax.set_xlabel("number of factors L")
ax.set_ylabel("parameters")
ax.set_xticks(list(factors))
ax.set_title("the 2,000 smallest monotonic chains of 512 x 4608")
ax.legend(fontsize=8)

# %%
# Choosing one
# ------------
# A reasonable choice is a short chain that still compresses well: take the
# smallest monotonic chain with three factors. It is chainable, hence dense
# (every output depends on every input), which :func:`pydebut.is_dense`
# confirms.

chosen = min_param_chain(m, n, 3, kind="monotonic")
print(chosen.describe())
print(is_dense(chosen))
plot_chain(chosen, ax=plt.figure(figsize=(7.2, 5), layout="constrained"))

# %%
# What it buys
# ------------
# Apply the chosen chain to one patch vector and to a batch of 64, against the
# dense product (float32, best of five; times from the machine that built
# this page, which may be busy: the :doc:`/benchmarks` page has careful
# measurements).


def best_time(function, repeats=5):
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


op = DeButOperator.random(chosen, rng=0, dtype=np.float32)
dense = op.toarray()
for batch in (1, 64):
    X = np.random.default_rng(batch).standard_normal((n, batch)).astype(np.float32)
    X = X[:, 0] if batch == 1 else X
    assert np.allclose(op @ X, dense @ X, rtol=1e-3, atol=1e-3)
    t_debut, t_dense = best_time(lambda X=X: op @ X), best_time(lambda X=X: dense @ X)
    print(
        f"batch {batch:>2}: DeBut {t_debut * 1e3:6.2f} ms, dense {t_dense * 1e3:6.2f} ms, "
        f"ratio dense/DeBut {t_dense / t_debut:5.1f}"
    )
print(f"weights: {chosen.n_params:,} instead of {m * n:,} ({chosen.compression_ratio:.0f}x fewer)")

# %%
# Letting the matrix choose
# -------------------------
# Everything above looks at shapes only. When the weights are known,
# :func:`pydebut.approximate` searches the whole DeBut family (butterflies,
# block low rank, low rank itself and mixtures, with rank weights) for the
# chain with the smallest error within the budget, scored by the singular
# values each hierarchical split discards, and fits the best few. It also
# reports the truncated SVD with the same number of parameters, which it never
# does worse than. On a small oscillatory kernel ``exp(i w x y)`` (kept small
# so that this page builds fast) at 20% of the dense parameters:

x = np.linspace(0, 1, 64)
kernel = np.exp(1j * 90 * np.outer(x, np.linspace(0, 1, 128)))
result = approximate(kernel, 64 * 128 // 5, n_sweeps=2, rng=0)
print(f"best chain: {result.chain.n_params:,} params, error {result.error:.3g}")
print(f"truncated SVD, rank {result.baseline.rank}: error {result.baseline.error:.3g}")
print(f"chains explored: {len(result.explored)}; the chosen one, left to right:")
print(result.chain.describe())

# %%
# :doc:`/structure` explains the search and shows, on a suite of targets, where a
# DeBut chain pays and where the SVD is as good.
