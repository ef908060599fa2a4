"""Conventions users bring from NumPy and SciPy: ``.npz`` names, sparse arrays, products."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from pydebut import Chain, DeButOperator, load, save
from pydebut._sparse import nnz_bound
from pydebut.commands._output import count
from pydebut.io import npz_path

# Chainable (dense product), block-diagonal (sparse product), bulging and non-chainable.
CHAINS = {
    "chainable": Chain.from_factorizations([2, 3, 2], [3, 2, 2]),
    "block-diagonal": Chain([(12, 8, 3, 2, 1), (8, 8, 2, 2, 1)]),
    "bulging": Chain([(4, 8, 1, 2, 4), (8, 8, 2, 2, 4), (8, 4, 2, 1, 1)]),
    "pointwise 3 -> 64": Chain.from_r_shapes(
        [[4, 3, 4, 3, 1], [8, 4, 2, 1, 4], [16, 8, 2, 1, 4], [32, 16, 2, 1, 16], [64, 32, 2, 1, 32]]
    ),
}


@pytest.mark.parametrize("name", ["op", "op.npz", "op.v2", "dir.d/op", ".npz", "dir.d/.npz"])
def test_save_adds_npz_as_numpy_does(tmp_path, name):
    op = DeButOperator.random(CHAINS["chainable"], rng=0)
    (tmp_path / "dir.d").mkdir()
    assert save(tmp_path / name, op) is None  # as np.savez
    expected = tmp_path / (name if name.endswith(".npz") else name + ".npz")
    written = npz_path(tmp_path / name)
    assert written == expected and expected.is_file()
    np.savez(tmp_path / "numpy_reference", a=1)  # numpy's own rule, for comparison
    assert (tmp_path / "numpy_reference.npz").is_file()
    assert np.array_equal(load(written).toarray(), op.toarray())
    assert np.array_equal(load(str(written)).toarray(), op.toarray())


def test_load_takes_the_real_name_and_says_so(tmp_path):
    op = DeButOperator.random(CHAINS["chainable"], rng=0)
    save(str(tmp_path / "op"), op)
    with pytest.raises(
        FileNotFoundError, match=r"but op\.npz exists: .* pydebut\.io\.npz_path\(path\)"
    ):
        load(tmp_path / "op")


@pytest.mark.parametrize("name", list(CHAINS))
@pytest.mark.parametrize("format", ["csr", "csc"])
@pytest.mark.parametrize("dtype", [np.float32, np.complex128])
def test_tosparse_is_the_product(name, format, dtype):
    op = DeButOperator.random(CHAINS[name], rng=1, dtype=dtype)
    product = op.tosparse(format)
    assert isinstance(product, {"csr": sp.csr_array, "csc": sp.csc_array}[format])
    assert product.format == format
    assert product.dtype == dtype and product.shape == op.shape
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(product.toarray(), op.toarray(), rtol=rtol, atol=rtol)
    assert product.nnz <= nnz_bound(op.chain) <= op.shape[0] * op.shape[1]


def test_tosparse_of_a_block_diagonal_chain_stays_sparse():
    op = DeButOperator.random(CHAINS["block-diagonal"], rng=2)
    assert op.tosparse().nnz == np.count_nonzero(op.toarray()) < op.shape[0] * op.shape[1]


def test_tosparse_refuses_huge_products_before_any_work():
    chain = Chain.from_factorizations([2] * 14, [2] * 14)  # 2**14 x 2**14, dense
    op = DeButOperator.identity(chain)
    with pytest.raises(ValueError, match=rf"up to {count(2**28)} nonzeros, above max_nnz="):
        op.tosparse()
    small = DeButOperator.random(CHAINS["chainable"], rng=0)
    with pytest.raises(ValueError, match="max_nnz=143"):
        small.tosparse(max_nnz=143)  # the 12 x 12 product needs 144
    assert small.tosparse(max_nnz=144).nnz == 144
    for bad, words in [({"format": "coo"}, "'csr' or 'csc'"), ({"max_nnz": -1}, "max_nnz")]:
        with pytest.raises(ValueError, match=words):
            small.tosparse(**bad)
    for bad in (1e6, None, "100"):  # a wrong type was a ValueError
        with pytest.raises(TypeError, match="tosparse: max_nnz must be an integer"):
            small.tosparse(max_nnz=bad)


def test_tosparse_refuses_up_front_what_memory_cannot_hold(monkeypatch):
    # a raised max_nnz was the only bound: hadamard(2**20).tosparse(max_nnz=2**50) ran on
    # towards 2**40 nonzeros (about 12 TiB)
    small = DeButOperator.random(CHAINS["chainable"], rng=0)  # 144 nonzeros: 2 * 2,408 bytes
    monkeypatch.setattr("pydebut._memory.physical_memory", lambda: 4815)
    with pytest.raises(ValueError, match=r"12 x 12 product \(up to 144 nonzeros.* needs 4.7 KiB"):
        small.tosparse(max_nnz=2**50)
    monkeypatch.setattr("pydebut._memory.physical_memory", lambda: 4816)
    assert small.tosparse(max_nnz=2**50).nnz == 144


@pytest.mark.parametrize("name", list(CHAINS))
@pytest.mark.parametrize("kind", [sp.csr_array, sp.csc_matrix, sp.coo_array])
def test_products_with_sparse_matrices_are_dense_arrays(name, kind):
    op = DeButOperator.random(CHAINS[name], rng=3)
    m, n = op.shape
    dense = op.toarray()
    right = kind(sp.random(n, 700, density=0.05, random_state=4))  # more than one block
    left = kind(sp.random(5, m, density=0.3, random_state=5, dtype=np.complex128))
    result = op @ right
    assert isinstance(result, np.ndarray) and result.shape == (m, 700)
    np.testing.assert_allclose(result, dense @ right.toarray(), atol=1e-12)
    result = left @ op
    assert isinstance(result, np.ndarray) and result.dtype == np.complex128
    np.testing.assert_allclose(result, left.toarray() @ dense, atol=1e-12)
    np.testing.assert_allclose(op.T @ left.T, (left @ op).T, atol=1e-12)


def test_one_dimensional_sparse_arrays_are_vectors():
    op = DeButOperator.random(CHAINS["chainable"], rng=3)
    dense = op.toarray()
    vector = sp.coo_array(np.arange(12.0) + 1j)  # 1-D: SciPy >= 1.13
    for result, expected in [
        (op @ vector, dense @ vector.toarray()),
        (vector @ op, vector.toarray() @ dense),
        (op.H @ vector, dense.conj().T @ vector.toarray()),
    ]:
        assert isinstance(result, np.ndarray) and result.shape == (12,)
        np.testing.assert_allclose(result, expected, atol=1e-12)
    with pytest.raises(ValueError, match=r"operator by a sparse matrix of shape \(5,\)"):
        op @ sp.coo_array(np.ones(5))
    with pytest.raises(ValueError, match=r"shape \(5,\) by the 12 x 12 operator"):
        sp.coo_array(np.ones(5)) @ op


def test_star_with_a_sparse_matrix_is_the_product_on_both_sides():
    op = DeButOperator.random(CHAINS["chainable"], rng=3)
    dense = op.toarray()
    left = sp.csc_matrix(sp.random(3, 12, density=0.4, random_state=3))
    right = sp.csr_matrix(sp.random(12, 3, density=0.4, random_state=4))
    np.testing.assert_allclose(left * op, left.toarray() @ dense, atol=1e-12)  # spmatrix: * is @
    np.testing.assert_allclose(op * right, dense @ right.toarray(), atol=1e-12)
    with pytest.raises(TypeError):  # a sparse array's * is elementwise
        sp.csr_array(left) * op


def test_the_direct_calls_say_they_take_dense_arrays():
    op = DeButOperator.random(CHAINS["chainable"], rng=3)
    matrix = sp.csr_matrix(sp.random(12, 3, density=0.4, random_state=4))
    with pytest.raises(TypeError, match="apply takes dense arrays, got a SciPy sparse"):
        op.apply(matrix)
    with pytest.raises(TypeError, match="apply_rows takes dense arrays.*use X @ op.T"):
        op.apply_rows(matrix.T)
    np.testing.assert_allclose(matrix.T @ op.T, op.apply_rows(matrix.T.toarray()), atol=1e-12)


def test_sparse_products_check_shapes():
    op = DeButOperator.random(CHAINS["chainable"], rng=0)
    with pytest.raises(ValueError, match=r"12 x 12 operator by a sparse matrix of shape \(5, 2\)"):
        op @ sp.csr_array((5, 2))
    with pytest.raises(ValueError, match=r"shape \(2, 5\) by the 12 x 12 operator"):
        sp.csr_array((2, 5)) @ op


# --- targets for fitting --------------------------------------------------------------

FIT_CHAIN = Chain.from_factorizations([2, 2, 2], [2, 2, 2])


def fit_target():
    return DeButOperator.random(FIT_CHAIN, rng=6).toarray()


def as_memmap(target, tmp_path):
    memmap = np.lib.format.open_memmap(tmp_path / "t.npy", mode="w+", shape=target.shape)
    memmap[:] = target
    return memmap


TARGET_KINDS = {
    "ndarray": lambda target, tmp_path: target,
    "list": lambda target, tmp_path: target.tolist(),
    "memmap": as_memmap,
    "csr": lambda target, tmp_path: sp.csr_array(target),
    "coo matrix": lambda target, tmp_path: sp.coo_matrix(target),
    "LinearOperator": lambda target, tmp_path: sp.linalg.aslinearoperator(target),
    "DeButOperator": lambda target, tmp_path: DeButOperator.random(FIT_CHAIN, rng=6),
}


@pytest.mark.parametrize("kind", list(TARGET_KINDS))
def test_fits_take_any_array_like_sparse_and_operators(tmp_path, kind):
    from pydebut import fit_als, fit_hierarchical

    target = fit_target()
    given = TARGET_KINDS[kind](target, tmp_path)
    expected = fit_hierarchical(target, FIT_CHAIN)
    result = fit_hierarchical(given, FIT_CHAIN)
    np.testing.assert_allclose(result.operator.toarray(), expected.operator.toarray(), atol=1e-12)
    assert result.error < 1e-12
    als = fit_als(given, FIT_CHAIN, n_sweeps=1)
    assert als.error < 1e-10


def test_large_sparse_and_operator_targets_are_refused_before_densifying():
    from pydebut import fit_als

    chain = Chain.from_factorizations([2] * 14, [2] * 14)  # 16384 x 16384 > 2**27 entries
    huge = sp.eye_array(2**14, format="csr")
    words = r"16384 x 16384 sparse matrix.*at most MAX_DENSE_ENTRIES = 134,217,728 entries \(pyd"
    with pytest.raises(ValueError, match=words):
        fit_als(huge, chain)
    operator = sp.linalg.aslinearoperator(huge)
    with pytest.raises(ValueError, match="16384 x 16384 LinearOperator"):
        fit_als(operator, chain)


def test_fit_command_reports_the_npz_it_wrote(tmp_path, capsys):
    from pydebut.cli import main

    np.save(tmp_path / "t.npy", fit_target())
    sup, sub = FIT_CHAIN.to_sup_sub()
    argv = ["fit", str(tmp_path / "t.npy"), "--sup", str(sup), "--sub", str(sub)]
    assert main([*argv, "--sweeps", "1", "--no-progress", "-o", str(tmp_path / "factors")]) == 0
    assert f"to {tmp_path / 'factors.npz'}\n" in capsys.readouterr().out
    assert np.allclose(load(tmp_path / "factors.npz").toarray(), fit_target())
