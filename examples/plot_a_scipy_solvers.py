"""
(a) A DeBut chain inside SciPy's solvers
========================================

:class:`pydebut.DeButOperator` is a :class:`scipy.sparse.linalg.LinearOperator`:
it implements the forward product, the adjoint and products with blocks of
vectors, so any SciPy routine that accepts a ``LinearOperator`` can use a DeBut
chain without ever forming the dense matrix. This example runs four of them
and checks each answer against the dense computation:

* :func:`~scipy.sparse.linalg.lsqr` (regularised least squares),
* :func:`~scipy.sparse.linalg.gmres` (a square, non-symmetric system),
* :func:`~scipy.sparse.linalg.svds` (a few singular values),
* :func:`~scipy.sparse.linalg.expm_multiply` (the action of a matrix exponential).
"""

import time

import matplotlib.pyplot as plt
import numpy as np
import scipy.linalg
import scipy.sparse.linalg as spla
from matplotlib.ticker import MaxNLocator

from pydebut import Chain, DeButOperator
from pydebut.special import butterfly_chain

rng = np.random.default_rng(0)

# %%
# The operator
# ------------
# The paper's 9-factor chain for a 512 x 2048 layer (ResNet-50's layer4), with
# random weights. ``DeButOperator.random`` scales the weights so that the
# product behaves like a dense matrix with N(0, 1/n) entries.

chain = Chain.from_sup_sub(
    "512 512 512 1024 1024 1024 1024 1024 1024 1024 1024 2048 2048 2048 2048 2048 2048 2048",
    "2 2 256 2 4 128 2 2 64 2 2 32 2 2 16 2 4 8 2 2 4 2 2 2 2 2 1",
)
A = DeButOperator.random(chain, rng=rng)
dense = A.toarray()  # only to check the answers below
print(A)

# %%
# Least squares with ``lsqr``
# ---------------------------
# A random DeBut product is far from a random dense matrix in one respect: its
# singular values spread much more widely. Compare the condition numbers:

sigma = scipy.linalg.svdvals(dense)
gaussian = rng.standard_normal(A.shape) / np.sqrt(A.shape[1])
sigma_gaussian = scipy.linalg.svdvals(gaussian)
print(
    f"condition number: DeBut {sigma[0] / sigma[-1]:.1e}, "
    f"Gaussian of the same shape {sigma_gaussian[0] / sigma_gaussian[-1]:.1e}"
)

# %%
# So we solve a ridge (Tikhonov) problem, which ``lsqr`` handles through its
# ``damp`` argument:
#
# .. math:: \min_x \|A x - b\|^2 + \lambda^2 \|x\|^2 .
#
# Each iteration costs one product with ``A`` and one with its adjoint
# ``A^H``. The dense reference uses the closed form
# ``x = A^T (A A^T + lambda^2 I)^{-1} b``, a 512 x 512 solve.

damp = 0.1
b = rng.standard_normal(A.shape[0])
A.rmatvec(A.matvec(np.zeros(A.shape[1])))  # compiles or loads the kernels: not timed below
start = time.perf_counter()
x, istop, iterations = spla.lsqr(A, b, damp=damp, atol=1e-12, btol=1e-12)[:3]
t_lsqr = time.perf_counter() - start
x_dense = dense.T @ np.linalg.solve(dense @ dense.T + damp**2 * np.eye(A.shape[0]), b)
print(f"lsqr: stop reason {istop}, {iterations} iterations in {t_lsqr * 1e3:.0f} ms")
print(
    f"  distance to the dense ridge solution: "
    f"{np.linalg.norm(x - x_dense) / np.linalg.norm(x_dense):.1e}"
)

# %%
# A square system with ``gmres``
# ------------------------------
# Take the standard butterfly chain of size 1024 (ten factors with
# ``r = s = 2``) and solve ``(I + B/2) u = f``. ``LinearOperator`` arithmetic
# builds ``I + B/2`` lazily: every ``gmres`` iteration applies ``B`` once.

B = DeButOperator.random(butterfly_chain(1024), rng=rng)
identity = spla.aslinearoperator(np.eye(1024))
system = identity + 0.5 * B
f = rng.standard_normal(1024)
residuals = []
u, info = spla.gmres(
    system,
    f,
    rtol=1e-10,
    restart=50,
    maxiter=20,
    callback=residuals.append,
    callback_type="pr_norm",
)
u_dense = np.linalg.solve(np.eye(1024) + 0.5 * B.toarray(), f)
print(f"gmres: info={info}, {len(residuals)} inner iterations")
print(
    f"  distance to the dense solution: {np.linalg.norm(u - u_dense) / np.linalg.norm(u_dense):.1e}"
)

fig, ax = plt.subplots(figsize=(5, 3.2), layout="constrained")
ax.semilogy(range(1, len(residuals) + 1), residuals, "o-", markersize=3)
ax.set(xlabel="gmres iteration", ylabel="preconditioned residual norm",
       title="(I + B/2) u = f, B a 1024 x 1024 butterfly")  # fmt: skip
ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # iterations are whole numbers

# %%
# Singular values with ``svds``
# -----------------------------
# ``svds`` needs only products with ``A`` and ``A^H``. The six largest
# singular values agree with those of the dense matrix.

start = time.perf_counter()
singular = spla.svds(A, k=6, return_singular_vectors=False, random_state=0)
t_svds = time.perf_counter() - start
reference = scipy.linalg.svdvals(dense)[:6]
print(f"svds in {t_svds * 1e3:.0f} ms: {np.sort(singular)[::-1].round(4)}")
print(f"dense svdvals:      {reference.round(4)}")
print(
    f"largest relative difference: "
    f"{np.max(np.abs(np.sort(singular)[::-1] - reference) / reference):.1e}"
)

# %%
# The action of a matrix exponential with ``expm_multiply``
# ----------------------------------------------------------
# ``K = B - B^T`` is skew-symmetric, so ``exp(tK)`` is orthogonal and keeps
# norms. ``expm_multiply`` computes ``exp(tK) v`` from products with ``K``
# alone. For a ``LinearOperator`` it needs the trace of ``K``, which is zero.

K = B - B.T
v = rng.standard_normal(1024)
w = spla.expm_multiply(0.5 * K, v, traceA=0.0)
w_dense = scipy.linalg.expm(0.5 * (B.toarray() - B.toarray().T)) @ v
print(f"expm_multiply: ||w|| / ||v|| = {np.linalg.norm(w) / np.linalg.norm(v):.12f}")
print(f"  distance to expm(K/2) @ v: {np.linalg.norm(w - w_dense) / np.linalg.norm(w_dense):.1e}")
