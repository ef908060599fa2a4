"""Exact transforms and classical chain shapes."""

import numpy as np
import pytest
import scipy.linalg

from pydebut.special import butterfly_chain, dft, hadamard, monarch_chain
from pydebut.testing import dottest


@pytest.mark.parametrize("n", [2, 4, 8, 64, 1024])
def test_hadamard_is_exact(n):
    H = hadamard(n)
    assert np.array_equal(H.toarray(), scipy.linalg.hadamard(n))
    assert H.n_params == 2 * n * int(np.log2(n)) and H.chain.is_chainable
    x = np.random.default_rng(n).standard_normal(n)
    assert np.allclose(H @ x, scipy.linalg.hadamard(n) @ x)
    assert np.allclose(H.H @ (H @ x), n * x)
    dottest(H)


def test_hadamard_dtypes_and_errors():
    assert hadamard(8, dtype=np.float32).dtype == np.float32
    for bad in (0, 1, 6, 12):
        with pytest.raises(ValueError, match="power of two"):
            hadamard(bad)
    with pytest.raises(TypeError, match="must be an integer"):
        hadamard(8.0)


def test_classical_chain_shapes():
    chain = butterfly_chain(16)
    assert all(f.r == f.s == 2 for f in chain) and chain.shape == (16, 16) and len(chain) == 4
    monarch = monarch_chain(4)
    assert monarch.shape == (16, 16) and [f.r for f in monarch] == [4, 4]
    assert monarch.is_chainable


@pytest.mark.parametrize("norm", ["unitary", None, ["ortho"], {"ortho": 1}])
def test_dft_names_the_norms_for_any_unknown_norm(norm):
    message = "^dft: norm must be 'backward', 'ortho' or 'forward', got"
    with pytest.raises(ValueError, match=message):
        dft(8, norm=norm)


@pytest.mark.parametrize("make", [hadamard, dft])
@pytest.mark.parametrize("n", [np.int64(8), np.uint8(128), np.int32(16)])
def test_numpy_integer_sizes_are_taken(make, n):
    # they used to fail with "'numpy.int64' object has no attribute 'bit_length'"
    with np.errstate(over="raise"):
        op = make(n)
    assert op.shape == (int(n), int(n)) and op.n_params == make(int(n)).n_params
    assert np.array_equal(op.toarray(), make(int(n)).toarray())


@pytest.mark.parametrize("make", [hadamard, dft])
def test_a_size_beyond_memory_is_refused_naming_the_call_and_n(make):
    with pytest.raises(ValueError, match=rf"^{make.__name__}\(n\) with n = 2\*\*40 .*smaller n$"):
        make(2**40)


@pytest.mark.parametrize("dtype", [np.float64, np.int64, np.clongdouble, None, "no dtype"])
def test_dft_names_itself_for_a_real_dtype_before_the_size(dtype):
    with pytest.raises(TypeError, match=r"^dft: .*dtype must be complex64 or complex128, got"):
        dft(2**40, dtype=dtype)


@pytest.mark.parametrize("dtype", [np.int64, np.float16, np.longdouble, np.clongdouble, "no"])
def test_hadamard_names_itself_for_a_dtype_it_does_not_build_before_the_size(dtype):
    # the operator's generic message came after the chain was built, naming neither
    wanted = r"^hadamard: dtype must be float32, float64, complex64 or complex128, got"
    with pytest.raises(TypeError, match=wanted):
        hadamard(2**40, dtype=dtype)
