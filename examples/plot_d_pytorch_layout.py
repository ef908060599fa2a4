"""
(d) Weights to and from the paper's PyTorch layer
=================================================

The paper's reference implementation is a PyTorch layer that takes the chain
as ``R_shapes`` and keeps all the weights in **one flat vector**. pydebut
converts both ways:

* :meth:`pydebut.Chain.to_r_shapes` / :meth:`pydebut.Chain.from_r_shapes`
  for the shapes,
* :meth:`pydebut.DeButOperator.to_twiddle` /
  :meth:`pydebut.DeButOperator.from_twiddle` for shapes and weights together.

**Training networks is out of scope for pydebut.** It computes, checks and
applies DeBut factors; a deep-learning framework trains them. The intended
hand-over is: choose a chain and compute good initial weights here (for
example by fitting a pretrained dense layer), export them with
``to_twiddle``, and load the vector into the framework layer before
fine-tuning.
"""

import matplotlib.pyplot as plt
import numpy as np

from pydebut import Chain, DeButOperator, fit_als
from pydebut.plotting import plot_chain

# %%
# Two orders
# ----------
# pydebut lists factors **left to right**, as the product ``F_1 F_2 ... F_L``
# is written (``F_1`` on the output side). ``R_shapes`` lists
# ``[p, q, r, s, t]`` in **application** order: the factor applied to the
# input first comes first. Here is the paper's chain for LeNet's first fully
# connected layer (128 x 400) in both orders.

chain = Chain.from_sup_sub(
    "128 256 256 512 512 512 512 256 256 400", "2 4 64 1 2 64 2 2 32 2 1 16 16 25 1"
)
print("left to right (pydebut):   ", [f.as_tuple() for f in chain])
r_shapes = chain.to_r_shapes()
print("application order (R_shapes):", r_shapes)
assert Chain.from_r_shapes(r_shapes) == chain

# %%
# In the picture the factors stand left to right as pydebut lists them, each
# labelled with its ``(p, q, r, s, t)``; ``R_shapes`` lists the same five
# numbers from the right-most column to the left-most. The bottom row shows
# the products ``F_l ... F_L`` that the layer has computed after applying
# the first ``L - l + 1`` factors of ``R_shapes``.

plot_chain(chain, ax=plt.figure(figsize=(12, 5), layout="constrained"))

# %%
# Weights to export
# -----------------
# In practice the weights come from fitting a pretrained layer. As a stand-in
# for one, take a 128 x 400 matrix with a decaying spectrum, fit the chain to
# it (the hierarchical factorization, then 5 ALS sweeps) and export the
# result.

rng = np.random.default_rng(0)
left, _ = np.linalg.qr(rng.standard_normal((128, 128)))
right, _ = np.linalg.qr(rng.standard_normal((400, 128)))
pretrained = (left * 0.9 ** np.arange(128)) @ right.T
fit = fit_als(pretrained, chain, n_sweeps=5)
print(fit.summary())
op = fit.operator

# %%
# The flat weight vector
# ----------------------
# pydebut stores factor ``l`` as an array ``W[b, rho, sigma, alpha]`` of shape
# ``(k, r, s, t)`` (block, row in the grid, column in the grid, diagonal
# index). The reference layer's vector holds, for each factor in application
# order, ``p*s`` values viewed as ``(k, t, r, s)``: the same numbers with the
# diagonal index moved forward.

r_shapes, vector = op.to_twiddle()
print(f"{vector.size} weights in the vector, {op.n_params} in the operator")
offset = 0
for (p, q, r, s, t), weights in zip(r_shapes, reversed(op.weights)):
    k = p // (r * t)
    piece = vector[offset : offset + p * s].reshape(k, t, r, s)
    assert np.array_equal(piece, weights.transpose(0, 3, 1, 2))
    print(
        f"  [{p:>3}, {q:>3}, {r:>2}, {s:>2}, {t:>2}]: values {offset:>5} to "
        f"{offset + p * s - 1:>5}, viewed as (k, t, r, s) = {(k, t, r, s)}"
    )
    offset += p * s

# %%
# What a layer with this layout computes
# --------------------------------------
# To make the layout concrete, here is the forward pass written directly on
# the flat vector with NumPy, for a batch of row vectors ``x`` of shape
# ``(batch, n)`` as a framework passes them. Factor by factor, in application
# order, the input is viewed as ``(batch, k, s, t)`` and the output as
# ``(batch, k, r, t)``:
#
# .. math:: y_{b \rho \alpha} = \sum_\sigma V_{b \alpha \rho \sigma} x_{b \sigma \alpha}
#
# where ``V`` is the factor's piece of the vector viewed as ``(k, t, r, s)``.
# It agrees with the operator, ``x @ A.T``.


def forward_from_vector(r_shapes, vector, x):
    offset = 0
    for p, _q, r, s, t in r_shapes:
        k = p // (r * t)
        V = vector[offset : offset + p * s].reshape(k, t, r, s)
        x = np.einsum("ktrs,nkst->nkrt", V, x.reshape(-1, k, s, t)).reshape(-1, p)
        offset += p * s
    return x


x = rng.standard_normal((8, 400))
y = forward_from_vector(r_shapes, vector, x)
print("max |difference| from (A @ x.T).T:", np.abs(y - (op @ x.T).T).max())

# %%
# Round trip
# ----------
# ``from_twiddle`` reads ``R_shapes`` and the vector back into an operator
# with the same product, e.g. after fine-tuning in a framework.

back = DeButOperator.from_twiddle(r_shapes, vector)
assert back.chain == chain
print("round trip exact:", np.array_equal(back.toarray(), op.toarray()))

# %%
# A PyTorch module
# ----------------
# :func:`pydebut.torch_layer.to_torch_layer` builds a ``torch.nn.Module`` with
# this layout: ``r_shapes`` in application order and one flat parameter
# ``twiddle`` holding the vector above, ready for fine-tuning. Its forward pass
# is the NumPy function above; :func:`pydebut.torch_layer.from_torch_layer`
# brings the trained weights back for analysis, saving (:func:`pydebut.save`)
# or fast inference on the CPU. pydebut does not depend on PyTorch: this step
# runs where PyTorch is installed.

try:
    import torch
except ImportError:
    torch = None

if torch is None:
    print("PyTorch is not installed here (pip install torch): step skipped")
else:
    from pydebut.torch_layer import from_torch_layer, to_torch_layer

    layer = to_torch_layer(fit.operator, bias=True)
    print(layer)
    with torch.no_grad():
        y_torch = layer(torch.from_numpy(x)).numpy()
    print("max |difference| from the NumPy forward:", np.abs(y_torch - y).max())
    assert np.array_equal(from_torch_layer(layer).toarray(), op.toarray())
