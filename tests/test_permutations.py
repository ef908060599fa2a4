"""Row and column permutations carried by DeButOperator, and the exact DFT."""

import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pydebut import (
    Chain,
    DeButOperator,
    candidate_permutations,
    fit_als,
    fit_hierarchical,
    load,
    save,
)
from pydebut.special import bit_reversal, butterfly_chain, dft, hadamard
from pydebut.testing import chains, dottest, operators

from .example_counts import examples

CHAIN = Chain([(8, 8, 2, 2, 2), (8, 12, 2, 3, 1)])
ROWS = np.array([3, 0, 7, 1, 6, 2, 5, 4])
COLS = np.array([11, 2, 5, 0, 9, 1, 4, 10, 3, 8, 7, 6])


def permuted(dtype=np.float64, row_perm=ROWS, col_perm=COLS):
    op = DeButOperator.random(CHAIN, rng=0, dtype=dtype)
    return op.with_permutations(row_perm, col_perm), op.toarray()


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex64, np.complex128])
@pytest.mark.parametrize(("rows", "cols"), [(ROWS, None), (None, COLS), (ROWS, COLS)])
def test_apply_matches_permuted_dense(dtype, rows, cols):
    op, dense = permuted(dtype, rows, cols)
    expected = dense[rows if rows is not None else slice(None)]
    expected = expected[:, cols if cols is not None else slice(None)]
    rtol = 1e-5 if np.dtype(dtype).itemsize <= 8 else 1e-12
    rng = np.random.default_rng(1)
    x, X = rng.standard_normal(12), rng.standard_normal((12, 5))
    y, Y = rng.standard_normal(8), rng.standard_normal((8, 3))
    np.testing.assert_allclose(op.toarray(), expected, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(op @ x, expected @ x, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(op @ X, expected @ X, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(op.H @ y, expected.conj().T @ y, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(op.H @ Y, expected.conj().T @ Y, rtol=rtol, atol=rtol)
    assert dottest(op, rng=2)


def test_transpose_adjoint_and_astype_keep_permutations():
    op, dense = permuted(np.complex128)
    expected = dense[ROWS][:, COLS]
    for derived, matrix in [
        (op.T, expected.T),
        (op.H, expected.conj().T),
        (op.H.H, expected),
        (op.astype(np.complex64), expected),
    ]:
        assert isinstance(derived, DeButOperator)
        np.testing.assert_allclose(derived.toarray(), matrix, rtol=1e-6, atol=1e-6)
        assert dottest(derived, rng=3)
    assert np.array_equal(op.T.row_perm, COLS) and np.array_equal(op.T.col_perm, ROWS)


def test_factors_and_permutation_matrices_rebuild_the_operator():
    op, _ = permuted()
    p_r, p_c = op.permutation_matrices()
    product = p_r @ op.factor(0) @ op.factor(1) @ p_c
    np.testing.assert_allclose(product.toarray(), op.toarray(), atol=1e-13)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex64, np.complex128])
def test_tosparse_and_permutation_matrices_keep_the_dtype(dtype):
    op, _ = permuted(dtype)
    assert {m.dtype for m in op.permutation_matrices()} == {np.dtype(dtype)}
    product = op.tosparse()
    assert product.dtype == dtype
    np.testing.assert_allclose(product.toarray(), op.toarray(), rtol=1e-5, atol=1e-5)
    assert dft(8, np.complex64).tosparse().dtype == np.complex64


def test_product_of_operators():
    a = DeButOperator.random([(8, 8, 2, 2, 4)], rng=1).with_permutations(ROWS, None)
    b, _ = permuted()
    joined = a.with_permutations(ROWS, ROWS) @ b  # P_c of a cancels P_r of b
    assert isinstance(joined, DeButOperator) and joined.n_factors == 3
    np.testing.assert_allclose(
        joined.toarray(), a.with_permutations(ROWS, ROWS).toarray() @ b.toarray(), atol=1e-12
    )
    mixed = a @ b  # the permutation between them is not the identity
    assert not isinstance(mixed, DeButOperator)
    np.testing.assert_allclose(mixed @ np.eye(12), a.toarray() @ b.toarray(), atol=1e-12)
    assert dottest(mixed, rng=4)


def test_identity_permutations_are_stored_as_none():
    op = DeButOperator.random(CHAIN, rng=0).with_permutations(np.arange(8), np.arange(12))
    assert op.row_perm is None and op.col_perm is None
    assert "perm" not in repr(op)


def test_repr_shows_permutations():
    op, _ = permuted()
    text = repr(op)
    assert "row_perm = [3 0 7 1 6 2 5 4]" in text and "col_perm = [11  2" in text


def test_permutations_are_read_only_copies():
    rows = ROWS.copy()
    op = DeButOperator.random(CHAIN, rng=0).with_permutations(rows, None)
    rows[:] = np.arange(8)
    assert np.array_equal(op.row_perm, ROWS)
    with pytest.raises(ValueError, match="read-only"):
        op.row_perm[0] = 1


@pytest.mark.parametrize(
    ("rows", "cols", "error", "message"),
    [
        (np.arange(8.0), None, TypeError, "row_perm must be an array of integers"),
        (np.arange(7), None, ValueError, "row_perm must be a 1-D array of length 8, got shape"),
        (None, np.arange(12).reshape(3, 4), ValueError, "col_perm must be a 1-D array of len"),
        (np.array([0, 1, 2, 3, 4, 5, 6, 8]), None, ValueError, r"row_perm has entries outside"),
        (None, np.array([-1, *range(1, 12)]), ValueError, "col_perm has entries outside"),
        (np.array([0, 0, 2, 3, 4, 5, 6, 7]), None, ValueError, "row_perm is not a permutation"),
    ],
)  # fmt: skip
def test_bad_permutations_are_named(rows, cols, error, message):
    with pytest.raises(error, match=message):
        DeButOperator.random(CHAIN, rng=0).with_permutations(rows, cols)


def test_wrong_input_shape_is_still_reported():
    op, _ = permuted()
    with pytest.raises(ValueError, match=r"expected an array of shape \(12,\)"):
        op._matmat(np.ones((11, 2)))  # the gather must not hide the shape error
    with pytest.raises(ValueError, match=r"expected an array of shape \(8,\)"):
        op._rmatvec(np.ones(9))


@pytest.mark.parametrize("compress", [False, True])
def test_save_load_keeps_permutations(tmp_path, compress):
    op, _ = permuted(np.complex64)
    save(tmp_path / "op.npz", op, compress=compress)
    back = load(tmp_path / "op.npz")
    assert np.array_equal(back.row_perm, ROWS) and np.array_equal(back.col_perm, COLS)
    assert back.dtype == op.dtype and np.array_equal(back.toarray(), op.toarray())
    with np.load(tmp_path / "op.npz") as archive:
        assert int(archive["format_version"]) == 2


def test_operator_without_permutations_is_saved_as_version_1(tmp_path):
    save(tmp_path / "op.npz", hadamard(8))
    with np.load(tmp_path / "op.npz") as archive:
        assert int(archive["format_version"]) == 1 and "col_perm" not in archive.files


def test_load_rejects_a_bad_saved_permutation(tmp_path):
    op, _ = permuted()
    save(tmp_path / "op.npz", op)
    with np.load(tmp_path / "op.npz") as archive:
        arrays = dict(archive)
    arrays["col_perm"] = np.zeros(12, dtype=np.int64)
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ValueError, match="col_perm is not a permutation"):
        load(tmp_path / "bad.npz")
    arrays["format_version"] = np.array(1)
    del arrays["col_perm"]
    np.savez(tmp_path / "v1.npz", **arrays)
    with pytest.raises(ValueError, match=r"unexpected \['row_perm'\]"):
        load(tmp_path / "v1.npz")


def test_twiddle_round_trip_with_permutations():
    op, _ = permuted()
    with pytest.raises(ValueError, match="permutations=True"):
        op.to_twiddle()
    r_shapes, vector, rows, cols = op.to_twiddle(permutations=True)
    back = DeButOperator.from_twiddle(r_shapes, vector, row_perm=rows, col_perm=cols)
    assert np.array_equal(back.toarray(), op.toarray())


# --- the DFT ---------------------------------------------------------------------------


def test_bit_reversal():
    assert bit_reversal(1).tolist() == [0]
    assert bit_reversal(16).tolist() == [int(f"{i:04b}"[::-1], 2) for i in range(16)]
    perm = bit_reversal(1024)
    assert np.array_equal(perm[perm], np.arange(1024))
    with pytest.raises(ValueError, match="power of two"):
        bit_reversal(12)
    with pytest.raises(TypeError, match="integer"):
        bit_reversal(4.0)


def exact_dft(n):
    """``exp(-2 pi i jk / n)`` from the exact integer ``jk mod n``, in long double."""
    jk = np.outer(np.arange(n), np.arange(n)) % n
    angle = 2 * np.pi * jk.astype(np.longdouble) / n
    return np.cos(angle), -np.sin(angle)


@pytest.mark.parametrize("n", [2, 8, 64, 1024])
def test_dft_is_exact(n):
    real, imag = exact_dft(n)
    F = dft(n).toarray()
    error = np.hypot(F.real - real, F.imag - imag)
    assert np.linalg.norm(error) <= 2e-15 * np.sqrt(n * n)  # relative to ||F|| = n


@pytest.mark.parametrize("norm", ["backward", "ortho", "forward"])
def test_dft_matches_numpy_fft(norm):
    rng = np.random.default_rng(5)
    X = rng.standard_normal((256, 3)) + 1j * rng.standard_normal((256, 3))
    F = dft(256, norm=norm)
    np.testing.assert_allclose(F @ X, np.fft.fft(X, axis=0, norm=norm), rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(F.H @ X, np.conj(np.fft.fft(np.conj(X), axis=0, norm=norm)),
                               rtol=1e-13, atol=1e-13)  # fmt: skip
    assert dottest(F, rng=6)


def test_dft_costs_n_log_n():
    F = dft(1024)
    assert F.n_params == 2 * 1024 * 10 and F.chain.n_factors == 10
    np.testing.assert_allclose(dft(64, np.complex64) @ np.eye(64), np.fft.fft(np.eye(64), axis=0),
                               atol=1e-5)  # fmt: skip


def test_dft_rejects_bad_arguments():
    with pytest.raises(ValueError, match="power of two"):
        dft(12)
    with pytest.raises(ValueError, match="norm must be"):
        dft(8, norm="unitary")
    with pytest.raises(TypeError, match="dtype must be complex"):
        dft(8, np.float64)


# --- fitting with permutations ----------------------------------------------------------


@pytest.mark.parametrize("order", ["left-to-right", "balanced"])
@pytest.mark.parametrize("norm", ["backward", "ortho"])
def test_fit_recovers_the_dft_after_bit_reversal(order, norm):
    chain = butterfly_chain(256)
    target = np.fft.fft(np.eye(256), axis=0, norm=norm)
    assert fit_hierarchical(target, chain, order=order).error > 0.5
    result = fit_hierarchical(target, chain, order=order, permutation="auto")
    assert result.error <= 1e-12
    np.testing.assert_allclose(result.operator.toarray(), target, atol=1e-12 * np.abs(target).max())
    assert result.operator.row_perm is not None or result.operator.col_perm is not None


def test_fit_with_a_given_permutation_recovers_a_permuted_product():
    chain = Chain.from_factorizations([2, 3, 2], [3, 2, 2])
    rng = np.random.default_rng(7)
    rows, cols = rng.permutation(12), rng.permutation(12)
    op = DeButOperator.random(chain, rng=rng).with_permutations(rows, cols)
    target = op.toarray()
    assert fit_hierarchical(target, chain).error > 0.1
    result = fit_hierarchical(target, chain, permutation=(rows, cols))
    assert result.error < 1e-12
    assert np.array_equal(result.operator.row_perm, rows)
    np.testing.assert_allclose(result.operator.toarray(), target, atol=1e-12)


def test_candidate_permutations():
    assert list(candidate_permutations(12, 6)) == ["identity"]
    both = candidate_permutations(8, 16)
    assert list(both) == ["identity", "bitrev-cols", "bitrev-rows", "bitrev-both"]
    rows, cols = both["bitrev-both"]
    assert np.array_equal(rows, bit_reversal(8)) and np.array_equal(cols, bit_reversal(16))


def test_candidate_permutations_count_both_reversals_up_front(monkeypatch):
    # each bit reversal checked its own peak (2n entries; 2.5n measured) while the rows'
    # was held as the columns' was built: candidate_permutations(2**30, 2**30) peaked at
    # about 28 GiB, checked as 16 GiB. Now built in place: n entries each, both checked.
    n = 2**16
    tracemalloc.start()
    try:
        rows, cols = candidate_permutations(n, n)["bitrev-both"]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert rows.nbytes + cols.nbytes == 16 * n and peak < 1.1 * 16 * n
    assert np.array_equal(rows, [int(f"{i:016b}"[::-1], 2) for i in range(n)])
    monkeypatch.setattr("pydebut._memory.physical_memory", lambda: 16 * 1024 - 1)
    with pytest.raises(ValueError, match=r"candidate_permutations\(1024, 1024\) needs 16 KiB"):
        candidate_permutations(1024, 1024)
    assert list(candidate_permutations(1024, 6)) == ["identity", "bitrev-rows"]


def test_fit_rejects_a_bad_permutation_argument():
    chain = butterfly_chain(8)
    with pytest.raises(ValueError, match="permutation must be None, 'auto' or a pair"):
        fit_hierarchical(np.eye(8), chain, permutation="bitrev")
    with pytest.raises(ValueError, match="col_perm is not a permutation"):
        fit_hierarchical(np.eye(8), chain, permutation=(None, np.zeros(8, dtype=int)))


def test_als_keeps_the_permutations_of_its_initial_operator():
    chain = Chain.from_factorizations([2, 2, 2], [2, 2, 2])
    rng = np.random.default_rng(8)
    rows, cols = rng.permutation(8), rng.permutation(8)
    target = DeButOperator.random(chain, rng=rng).with_permutations(rows, cols).toarray()
    target += 0.01 * rng.standard_normal((8, 8))
    init = DeButOperator.random(chain, rng=rng).with_permutations(rows, cols)
    result = fit_als(target, chain, init=init, n_sweeps=20)
    assert np.array_equal(result.operator.row_perm, rows)
    assert np.array_equal(result.operator.col_perm, cols)
    assert result.error < 0.05 and result.errors[0] > 0.5
    true_error = np.linalg.norm(result.operator.toarray() - target) / np.linalg.norm(target)
    assert result.error == pytest.approx(true_error, rel=1e-6)


@settings(max_examples=examples(30), deadline=None)
@given(op=operators(chains(max_dim=24, max_factors=3)), seed=st.integers(0, 2**32 - 1))
def test_drawn_permuted_operators_match_their_dense_matrix(op, seed):
    rng = np.random.default_rng(seed)
    m, n = op.shape
    rows, cols = rng.permutation(m), rng.permutation(n)
    permuted_op = op.with_permutations(rows, cols)
    expected = op.toarray()[rows][:, cols]
    atol = 1e-4 if op.dtype in (np.float32, np.complex64) else 1e-10
    np.testing.assert_allclose(permuted_op.toarray(), expected, atol=atol)
    np.testing.assert_allclose(permuted_op.H.toarray(), expected.conj().T, atol=atol)
    assert dottest(permuted_op, rng=rng)


def test_sparse_and_faust_hand_offs_keep_the_permutations():
    op = DeButOperator.random([(8, 8, 2, 2, 4), (8, 8, 2, 2, 2), (8, 8, 2, 2, 1)], rng=0)
    rng = np.random.default_rng(1)
    permuted = op.with_permutations(rng.permutation(8), rng.permutation(8))
    np.testing.assert_allclose(permuted.tosparse().toarray(), permuted.toarray(), atol=1e-14)
    pytest.importorskip("pyfaust")
    from pydebut.faust import to_faust

    np.testing.assert_allclose(to_faust(permuted).toarray(), permuted.toarray(), atol=1e-14)


def test_torch_hand_off_refuses_a_permutation_it_cannot_hold():
    pytest.importorskip("torch")
    from pydebut.torch_layer import to_torch_layer

    op = DeButOperator.random(butterfly_chain(8), rng=0).with_permutations(col_perm=bit_reversal(8))
    with pytest.raises(ValueError, match="permutation"):
        to_torch_layer(op)


@pytest.mark.parametrize("which", ["row_perm", "col_perm"])
def test_a_masked_permutation_is_refused(which):
    # Before: the mask was dropped and the stored values taken, as for no other input
    op = DeButOperator.random(butterfly_chain(8), rng=0)
    perm = np.ma.masked_array(np.arange(8)[::-1], mask=[1] + [0] * 7)
    with pytest.raises(ValueError, match=f"{which} is a masked array with 1 masked entries"):
        op.with_permutations(**{which: perm})
    unmasked = np.ma.masked_array(np.arange(8)[::-1])
    assert op.with_permutations(**{which: unmasked}).toarray().shape == (8, 8)


def test_pickle_keeps_the_permutations():
    import pickle

    op = dft(16)
    copy = pickle.loads(pickle.dumps(op))
    assert np.array_equal(copy.col_perm, op.col_perm) and copy.row_perm is None
    np.testing.assert_array_equal(copy.toarray(), op.toarray())


@pytest.mark.parametrize(
    ("m", "error", "words"),
    [(0, ValueError, "positive"), (-8, ValueError, "positive"), (True, TypeError, "boolean"),
     (8.0, TypeError, "the float 8.0")],
)  # fmt: skip
def test_candidate_permutations_check_the_sizes(m, error, words):
    with pytest.raises(error, match=f"candidate_permutations: m must be .*{words}"):
        candidate_permutations(m, 4)


def test_a_bool_permutation_is_refused_as_not_integers():
    # [True, False] would read as the swap [1, 0]
    op = DeButOperator.identity([(2, 2, 2, 2, 1)])
    with pytest.raises(TypeError, match="row_perm must be an array of integers"):
        op.with_permutations(row_perm=np.array([True, False]))


def test_a_two_dimensional_permutation_is_refused_by_name():
    op = DeButOperator.identity([(4, 4, 2, 2, 1)])
    with pytest.raises(ValueError, match=r"col_perm must be a 1-D array of length 4"):
        op.with_permutations(col_perm=np.array([[1], [0], [3], [2]]))


def test_a_side_of_two_gets_no_bit_reversal():
    # as documented: the bit reversal of 1 or 2 items is the identity
    assert list(candidate_permutations(2, 8)) == ["identity", "bitrev-cols"]
    assert list(candidate_permutations(8, 2)) == ["identity", "bitrev-rows"]
    assert list(candidate_permutations(2, 2)) == ["identity"]
