"""The public API as a type checker reads it: what works at runtime type-checks too.

Run where mypy is installed (``pip install -e ".[dev]"``); with scipy-stubs too,
SciPy's own annotations are checked against (``op.T``, ``tosparse()``).
"""

import textwrap
from pathlib import Path

import pytest

import pydebut

# Each line uses the API as its docstrings allow; mypy had rejected (or lost the type of)
# op.T, op.transpose(), tosparse(), lists given for a chain or for n_factors, and a
# SeedSequence or bit generator given as rng.
USER_CODE = textwrap.dedent(
    """
    import dask.array as da
    import numpy as np
    from pydebut import (
        DeButOperator, count_chains, enumerate_chains, fit_als, fit_hierarchical,
        hierarchy_ranks, min_param_chain, pareto_front,
    )
    from pydebut.dask import fit_hierarchical as fit_panels

    factors = [(4, 4, 2, 2, 2), (4, 4, 2, 2, 1)]
    op = DeButOperator.random(factors, rng=0)
    transposed: DeButOperator = op.T
    also_transposed: DeButOperator = op.transpose()
    adjoint: DeButOperator = op.H
    print(transposed.chain, also_transposed.row_perm, adjoint.n_params)
    product = op.tosparse("csc")
    print(product.nnz, product.toarray(), product @ np.ones(4))
    target = op.toarray()
    print(hierarchy_ranks(factors), fit_hierarchical(target, factors).error)
    print(fit_als(target, factors, n_sweeps=1).error)
    seeded = DeButOperator.random(factors, rng=np.random.SeedSequence(0))
    print(seeded.n_params, fit_als(target, factors, rng=np.random.PCG64(1)).error)
    print(fit_panels(da.from_array(target), tuple(factors)).error)
    print(count_chains(64, 576, n_factors=[2, 3]), min_param_chain(64, 576, (2, 3)))
    print(list(enumerate_chains(8, 8, n_factors=[2])), pareto_front(8, 8, n_factors=[2, 3]))
    """
)


@pytest.mark.slow  # mypy reads numpy, scipy and pydebut afresh: 15-25 s on one core
def test_documented_uses_of_the_public_api_type_check(tmp_path):
    api = pytest.importorskip("mypy.api")
    script = tmp_path / "user.py"
    script.write_text(USER_CODE)
    # this pydebut, wherever the one installed is (mypy_path comes before site-packages)
    config = tmp_path / "mypy.ini"
    config.write_text(f"[mypy]\nmypy_path = {Path(pydebut.__file__).resolve().parent.parent}\n")
    stdout, stderr, status = api.run(
        [
            "--config-file",
            str(config),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--follow-imports=silent",  # pydebut's own findings are not the user's
            str(script),
        ]
    )
    assert status == 0, stdout + stderr
