"""
(e) The command line
====================

Installing pydebut installs a ``pydebut`` command with these subcommands:

* ``pydebut chains M N``: list the chains of an ``M x N`` product, filtered
  and sorted;
* ``pydebut check``: describe one chain and decide whether it is dense;
* ``pydebut fit``: fit a chain (given, or chosen under a parameter budget) to a
  matrix stored in a ``.npy`` file and save the factors;
* ``pydebut demo``: a one-minute tour of the package.

Each is a thin layer over the library, and each prints one line, without a
traceback, when the input is wrong. This page runs the commands through
:func:`pydebut.cli.main`, which takes the same arguments as the shell command
and returns its exit status; type them in a shell without the ``run(...)``.
"""

import contextlib
import io
import json
import shlex
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from pydebut import Chain, DeButOperator, load
from pydebut.cli import main

scratch = tempfile.TemporaryDirectory()  # removed at the end of the tour
workdir = Path(scratch.name)


def run(command):
    """Run a ``pydebut ...`` command line in ``workdir``; show its output and exit status."""
    output = io.StringIO()
    with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
        status = main(shlex.split(command.replace("./", f"{workdir}/"))[1:])
    print(f"$ {command}")
    print(output.getvalue().replace(f"{workdir}/", "./"), end="")
    print(f"[exit status {status}]\n")
    return status


# %%
# Listing chains
# --------------
# The monotonic chains of 2 to 4 factors for VGG-16's first convolution
# (64 x 576) with at most 3,000 weights, smallest first. Each row gives the
# ``--sup``/``--sub`` spelling of the paper's scripts, the parameter count,
# the compression ratio, the flops per vector, the kind and the largest
# intermediate dimension. ``--limit`` caps the rows and the command says how
# many it left out.

run("pydebut chains 64 576 --factors 2-4 --kind monotonic --max-params 3000 --limit 8")

# %%
# The same listing as JSON, saved to a file: every command that takes
# ``--chain FILE.json`` reads it back (see :doc:`/chain-json`).

output, messages = io.StringIO(), io.StringIO()
with contextlib.redirect_stdout(output), contextlib.redirect_stderr(messages):
    main(
        shlex.split(
            "chains 64 576 --factors 2-4 --kind monotonic --max-params 3000 --limit 8 --format json"
        )
    )
(workdir / "chains.json").write_text(output.getvalue())
print(
    "$ pydebut chains 64 576 --factors 2-4 --kind monotonic --max-params 3000 "
    "--limit 8 --format json > chains.json"
)
print(f"(on stderr: {messages.getvalue().strip()})")
document = json.loads(output.getvalue())
print(f"chains.json: {document['total']} chains match, {document['shown']} shown; first row:")
print(json.dumps(document["chains"][0]))

# %%
# Checking a chain
# ----------------
# ``pydebut check`` prints a table of the factors, the totals, the kind, and the
# density verdict. Its exit status is 0 for a valid dense chain, 1 for a valid
# chain that is not dense, and 2 for invalid input. Here is row 1 of the
# listing, then the paper's chain for LeNet's fc1 written as ``--sup/--sub``:

run("pydebut check --chain ./chains.json --row 1")
run(
    "pydebut check --sup 128 256 256 512 512 512 512 256 256 400 "
    "--sub 2 4 64 1 2 64 2 2 32 2 1 16 16 25 1"
)

# %%
# A chain that is valid but not dense, given as the reference layer's
# ``R_shapes`` (application order): the verdict names an output and an input
# that no path connects, and the exit status is 1.

run("pydebut check --r-shapes '[[16, 16, 2, 2, 4], [16, 16, 2, 2, 4]]'")

# %%
# Invalid input gets one line naming the broken rule, and exit status 2:

run("pydebut check --sup 64 72 72 144 --sub 8 9 8 2 4 5")

# %%
# ``--plot out.png`` draws each factor's support and the partial products
# (it needs matplotlib, the ``plot`` extra):

run(
    "pydebut check --sup 64 72 72 144 144 288 288 576 --sub 8 9 8 2 4 4 1 2 4 4 8 1 "
    "--plot ./vgg.png"
)
picture = plt.imread(workdir / "vgg.png")
print(f"picture written: {picture.shape[1]} x {picture.shape[0]} pixels")
height, width = picture.shape[:2]
fig = plt.figure(figsize=(width / 100, height / 100), dpi=100)  # the picture, pixel for pixel
ax = fig.add_axes((0, 0, 1, 1))
ax.imshow(picture)
ax.set_axis_off()

# %%
# Fitting a matrix
# ----------------
# ``pydebut fit`` reads the target from a ``.npy`` file. Save one: a 64 x 576
# matrix with the structure of the paper's VGG chain under 5 % noise.

rng = np.random.default_rng(0)
vgg = Chain.from_sup_sub("64 72 72 144 144 288 288 576", "8 9 8 2 4 4 1 2 4 4 8 1")
clean = DeButOperator.random(vgg, rng=rng).toarray()
noise = rng.standard_normal(clean.shape)
np.save(
    workdir / "target.npy", clean + 0.05 * noise * np.linalg.norm(clean) / np.linalg.norm(noise)
)

# %%
# With the chain given, it fits, saves the factors and prints the error after
# the initialisation and after every sweep (``--no-progress`` turns off the
# progress bar, which needs tqdm):

run(
    "pydebut fit ./target.npy --sup 64 72 72 144 144 288 288 576 "
    "--sub 8 9 8 2 4 4 1 2 4 4 8 1 --sweeps 5 --no-progress -o ./factors.npz"
)

# %%
# The saved file is a pydebut ``.npz`` archive; :func:`pydebut.load` reads it:

fitted = load(workdir / "factors.npz")
print(fitted)

# %%
# With ``--auto --max-params N`` the command chooses the chain through
# :func:`pydebut.approximate`: a beam search over the chainable and
# rank-weighted chains under the budget, scored by the errors of hierarchical
# splits; the best few are refined with ALS. It prints what it explored, the
# chosen chain as ``--sup/--sub`` and the truncated SVD with the same budget.

run("pydebut fit ./target.npy --auto --max-params 4000 --sweeps 3 --no-progress -o ./auto.npz")

# %%
# The search is never worse than the truncated SVD; the target here was built
# on the VGG chain, which is within the budget. Compare the two saved fits:

target = np.load(workdir / "target.npy")
for name in ("factors.npz", "auto.npz"):
    fitted = load(workdir / name)
    error = np.linalg.norm(fitted.toarray() - target) / np.linalg.norm(target)
    print(f"{name:>12}: {fitted.n_params:,} params, relative error {error:.4f}")

# %%
# The tour
# --------
# ``pydebut demo`` is the first command of the README: a short tour that
# chooses a chain, fits it, compares it with the dense matrix, solves a
# least-squares problem with it and lets ``approximate`` choose the chain for a
# small smooth kernel.

run("pydebut demo")

# %%
# The scratch folder goes, with every file the commands wrote.

scratch.cleanup()
