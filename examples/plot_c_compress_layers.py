"""
(c) Compressing a dense layer and a convolution kernel
======================================================

Given a weight matrix, find DeBut factors whose product approximates it. pydebut
has two fitting methods:

* :func:`pydebut.fit_hierarchical`: for chainable (and rank-weighted) chains,
  a sequence of truncated SVDs of sub-blocks with an error guarantee, which
  recovers exactly any matrix that admits the chain;
* :func:`pydebut.fit_als`: alternating least squares, as in the paper. Each
  factor update is the exact least-squares solution on the factor's support,
  so the error never increases; a *sweep* updates the factors left to right,
  then right to left (two of the paper's iterations). By default it starts
  from the hierarchical result when the chain allows it.

No trained network ships with pydebut, so this example builds its weights: a
"layer" that does have DeBut structure, hidden under 10 % noise, so that we
know what a good fit should reach. The same calls work on real weights.
"""

import matplotlib.pyplot as plt
import numpy as np

from pydebut import (
    Chain,
    DeButOperator,
    approximate,
    conv2d,
    fit_als,
    fit_hierarchical,
    kernel_to_matrix,
    matrix_to_kernel,
)
from pydebut.plotting import plot_fit_history

rng = np.random.default_rng(0)


def noisy_debut(chain, noise, rng):
    """A DeBut product plus Gaussian noise with ``noise`` times its norm."""
    clean = DeButOperator.random(chain, rng=rng).toarray()
    perturbation = rng.standard_normal(clean.shape)
    perturbation *= noise * np.linalg.norm(clean) / np.linalg.norm(perturbation)
    return clean + perturbation, np.linalg.norm(perturbation) / np.linalg.norm(clean + perturbation)


# %%
# A dense layer
# -------------
# LeNet's first fully connected layer is 128 x 400; the paper's chain for it
# has five factors and bulges to 512 on the way.

chain = Chain.from_sup_sub(
    "128 256 256 512 512 512 512 256 256 400", "2 4 64 1 2 64 2 2 32 2 1 16 16 25 1"
)
W, floor = noisy_debut(chain, 0.10, rng)
print(chain.describe())
print(f"noise floor (error of the hidden DeBut product): {floor:.4f}")

# %%
# The hierarchical factorization takes one pass. ALS then refines it, and
# for comparison ALS also runs from a random start, as in the paper.

hierarchical = fit_hierarchical(W, chain)
print(hierarchical.summary())
from_hierarchical = fit_als(W, chain, n_sweeps=10, init="hierarchical")
from_random = fit_als(W, chain, n_sweeps=10, init="random", rng=1)
print(from_hierarchical.summary())
print(from_random.summary())

# %%
# Both ALS runs end slightly below the noise floor: the chain's weights also
# absorb a little of the noise. ``errors`` holds the relative error after the
# start and after every half-sweep; :func:`pydebut.plotting.plot_fit_history`
# draws it on a logarithmic axis fitted to the data:


def plot_errors(ax, results, floor, title):
    ax.axhline(floor, color="gray", linestyle="--", linewidth=1, label="noise floor")
    for label, result in results.items():
        plot_fit_history(result, ax=ax, label=label)
    ax.set_title(title)
    ax.legend(fontsize=8)


fig, ax = plt.subplots(figsize=(5.5, 3.5), layout="constrained")
plot_errors(
    ax,
    {"ALS from hierarchical": from_hierarchical, "ALS from random": from_random},
    floor,
    "LeNet fc1 (128 x 400), paper's chain",
)

# %%
# A convolution kernel
# --------------------
# A 3x3 convolution from 64 to 64 channels acts on unfolded patches as a
# 64 x 576 matrix. There are two ways to unfold the kernel
# ``(c_out, c_in, kh, kw)`` into that matrix: the paper's ``"channel-major"``
# (columns channel by channel) and the reference PyTorch layer's
# ``"position-major"`` (kernel position first, channel last).
# :func:`pydebut.kernel_to_matrix` and :func:`pydebut.matrix_to_kernel`
# convert. The layout matters: a chain describes the structure of one
# unfolding, not of the other.
#
# Here the kernel's channel-major matrix has the structure of the paper's VGG
# chain, again under 10 % noise.

vgg = Chain.from_sup_sub("64 72 72 144 144 288 288 576", "8 9 8 2 4 4 1 2 4 4 8 1")
matrix, kernel_floor = noisy_debut(vgg, 0.10, rng)
kernel = matrix_to_kernel(matrix, in_channels=64, kernel_size=3, layout="channel-major")
print(f"kernel {kernel.shape}, noise floor {kernel_floor:.4f}")

fits = {}
for layout in ("channel-major", "position-major"):
    target = kernel_to_matrix(kernel, layout=layout)
    fits[layout] = fit_als(target, vgg, n_sweeps=10)
    print(f"{layout:>15}: {fits[layout].summary()}")

fig_conv, ax = plt.subplots(figsize=(5.5, 3.5), layout="constrained")
plot_errors(
    ax,
    {f"{layout} unfolding": result for layout, result in fits.items()},
    kernel_floor,
    "VGG-16 conv (64 x 576), paper's chain",
)

# %%
# The fitted operator is the convolution
# --------------------------------------
# :func:`pydebut.conv2d` runs the convolution with the kernel matrix as a
# ``DeButOperator`` (one product with the unfolded patches). Its output
# differs from the convolution with the original kernel by about the fit
# error, at a fraction of the multiply-adds per output pixel.

op = fits["channel-major"].operator
images = rng.standard_normal((2, 64, 16, 16))
approx = conv2d(images, op, kernel_size=3, padding=1, layout="channel-major")
exact = conv2d(images, kernel_to_matrix(kernel), kernel_size=3, padding=1)
print(f"output shape {approx.shape}")
print(
    f"relative difference of the outputs: "
    f"{np.linalg.norm(approx - exact) / np.linalg.norm(exact):.4f}"
)
print(
    f"multiply-adds per output pixel: {op.n_params:,} instead of {matrix.size:,} "
    f"({op.compression_ratio:.1f}x fewer)"
)

# %%
# When the chain is not known
# ---------------------------
# Above, the chain was given. For a layer whose structure is unknown,
# :func:`pydebut.approximate` chooses the chain within a parameter budget: a
# beam search over the DeBut family scored by the singular values that each
# hierarchical split discards, then :func:`pydebut.fit_hierarchical` and
# :func:`pydebut.fit_als` on the best few. Here a 64 x 128 layer hides a
# 3-factor chain under 10 % noise (small, so that this page builds fast), and
# the budget is that chain's size; the truncated SVD with as many parameters
# comes with the result.

hidden = Chain.from_factorizations([4, 4, 4], [4, 4, 8])
layer, layer_floor = noisy_debut(hidden, 0.10, rng)
print(f"noise floor {layer_floor:.4f}; budget {hidden.n_params:,} params")
for beam_width in (4, 16):
    found = approximate(layer, hidden.n_params, n_sweeps=3, beam_width=beam_width, rng=0)
    print(
        f"beam width {beam_width:>2}: error {found.error:.4f} with {found.chain.n_params:,} "
        f"params; the hidden chain {'was' if found.chain == hidden else 'was not'} chosen"
    )
print(f"truncated SVD of rank {found.baseline.rank}: error {found.baseline.error:.4f}")

# %%
# The search keeps ``beam_width`` prefixes at every depth in every band of
# parameters (16 by default). Noise
# spreads the spectra of the sub-blocks that the estimates read, so on a noisy
# target the right prefix can fall out of a narrow beam such as 4; a wider beam
# costs more split spectra (``found.n_splits``) and finds it more often. Without noise the
# hidden chain is recovered to rounding at the default width.

# %%
# The fitted factors can now seed a framework layer: see
# :doc:`plot_d_pytorch_layout`. ``pydebut fit`` does the same from the command
# line (:doc:`plot_e_command_line`).
