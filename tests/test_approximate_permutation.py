"""``approximate(permutation="auto")``: targets that are DeBut products up to a permutation."""

import numpy as np
import pytest

from pydebut import approximate
from pydebut.special import bit_reversal, butterfly_chain


def test_dft_is_recovered_with_the_bit_reversal():
    D = np.fft.fft(np.eye(32), axis=0)
    budget = butterfly_chain(32).n_params
    plain = approximate(D, budget, n_sweeps=1, rng=0)
    found = approximate(D, budget, n_sweeps=1, permutation="auto", rng=0)
    assert plain.error > 0.5  # no chain of the budget holds the DFT unpermuted
    assert found.error <= 1e-12
    op = found.operator
    assert op.chain.n_params <= budget
    assert np.linalg.norm(op.toarray() - D) <= 1e-12 * np.linalg.norm(D)
    assert {tuple(p) for p in (op.row_perm, op.col_perm) if p is not None} <= {
        tuple(bit_reversal(32))
    }


def test_auto_without_power_of_two_is_the_plain_search():
    rng = np.random.default_rng(1)
    D = rng.standard_normal((12, 18))
    plain = approximate(D, 120, n_sweeps=1, rng=0)
    auto = approximate(D, 120, n_sweeps=1, permutation="auto", rng=0)
    assert auto.chain == plain.chain and auto.error == plain.error
    assert auto.operator.row_perm is None and auto.operator.col_perm is None


def test_unknown_permutation_is_refused():
    with pytest.raises(ValueError, match="permutation must be None or 'auto'"):
        approximate(np.eye(8), 40, permutation="bitrev")
