"""DeButOperator against dense references: apply, adjoint, dtypes, errors, interop."""

import pickle
import re
import tracemalloc
import warnings
import weakref

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from hypothesis import given
from hypothesis import strategies as st

from pydebut import Chain, DeButOperator, special
from pydebut._reference import chain_to_dense
from pydebut.operator import COLUMNS_ALONE
from pydebut.testing import (
    assert_debut_close,
    chainable_chains,
    chains,
    dense_chains,
    dottest,
    rank_weighted_chains,
    tolerance,
)

DTYPES = [np.float32, np.float64, np.complex64, np.complex128]
ANY_CHAIN = st.one_of(chains(), dense_chains(), rank_weighted_chains(), chainable_chains())
PAPER_512x2048 = special.PAPER_CHAINS["resnet50-layer4"]


def random_data(rng, shape, dtype):
    data = rng.standard_normal(shape)
    if np.dtype(dtype).kind == "c":
        data = data + 1j * rng.standard_normal(shape)
    return data.astype(dtype)


def assert_close(actual, expected, dtype):
    scale = max(1.0, np.abs(expected).max(initial=0.0))
    assert np.abs(actual - expected).max(initial=0.0) <= 50 * tolerance(dtype) * scale


@given(
    ANY_CHAIN,
    st.sampled_from(DTYPES),
    st.integers(0, 2**32 - 1),
    st.sampled_from([1, 2, 3, 16, 17, 40]),
)
def test_apply_equals_dense_product(chain, dtype, seed, batch):
    rng = np.random.default_rng(seed)
    op = DeButOperator.random(chain, rng=rng, dtype=dtype)
    dense = chain_to_dense(chain, [w.astype(np.complex128) for w in op.weights])
    m, n = op.shape
    x = random_data(rng, n, dtype)
    X = random_data(rng, (n, batch), dtype)
    y = random_data(rng, m, dtype)
    Y = random_data(rng, (m, batch), dtype)
    for result, expected in [
        (op @ x, dense @ x),
        (op.matvec(x[:, None]), dense @ x[:, None]),
        (op @ X, dense @ X),
        (op.rmatvec(y), dense.conj().T @ y),
        (op.rmatmat(Y), dense.conj().T @ Y),
        (op.H @ Y, dense.conj().T @ Y),
        (op.T @ Y, dense.T @ Y),
    ]:
        assert result.dtype == np.dtype(dtype)
        assert result.shape == expected.shape
        assert_close(result, expected, dtype)
    assert_debut_close(op, dense, rtol=50 * tolerance(dtype))
    dottest(op, rtol=50 * tolerance(dtype), rng=rng)


@given(
    ANY_CHAIN,
    st.sampled_from([np.float32, np.float64]),
    st.sampled_from([np.complex64, np.complex128]),
    st.integers(0, 2**32 - 1),
    st.sampled_from([1, 2, 3, 16, 17, 40]),
    st.booleans(),
)
def test_real_operator_on_complex_data(chain, op_dtype, data_dtype, seed, batch, permuted):
    """A real operator maps complex data part by part, as real columns, in every layout."""
    rng = np.random.default_rng(seed)
    op = DeButOperator.random(chain, rng=rng, dtype=op_dtype)
    dense = chain_to_dense(chain, [w.astype(np.complex128) for w in op.weights])
    m, n = op.shape
    if permuted:
        row_perm, col_perm = rng.permutation(m), rng.permutation(n)
        op = op.with_permutations(row_perm, col_perm)
        dense = dense[row_perm][:, col_perm]
    result_dtype = np.result_type(op_dtype, data_dtype)
    x = random_data(rng, n, data_dtype)
    X = random_data(rng, (n, batch), data_dtype)
    Y = random_data(rng, (m, batch), data_dtype)
    out = np.empty((m, batch), dtype=result_dtype)
    for result, expected in [
        (op @ x, dense @ x),
        (op.apply(X, out=out), dense @ X),
        (op @ np.asfortranarray(X), dense @ X),
        (op @ X[:, ::-1], dense @ X[:, ::-1]),
        (op.rmatmat(Y), dense.T @ Y),
        (op.apply_rows(X.T), X.T @ dense.T),
    ]:
        assert result.dtype == result_dtype
        assert_close(result, expected, result_dtype)
    assert op.apply(X, out=out) is out
    for j in (0, batch - 1):  # a column of a block is that vector alone, bit for bit
        np.testing.assert_array_equal(out[:, j], op @ np.ascontiguousarray(X[:, j]))


def test_real_operator_keeps_the_parts_of_complex_data_apart():
    """Infinite imaginary parts leave the real parts finite: no products with zero weights."""
    op = DeButOperator.random(special.butterfly_chain(16), rng=0)
    x = np.arange(16.0).astype(complex)
    x.imag = np.inf
    X = np.tile(x[:, None], 20)
    for y, target in [(op @ x, op), ((op @ X)[:, 7], op), (op.H @ x, op.H)]:
        np.testing.assert_allclose(y.real, target @ x.real)
        np.testing.assert_allclose(y.imag, target @ x.imag)
        assert np.isfinite(y.real).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_paper_chain_against_dense(dtype):
    rng = np.random.default_rng(3)
    op = DeButOperator.random(PAPER_512x2048, rng=rng, dtype=dtype)
    dense = chain_to_dense(op.chain, op.weights)
    X = random_data(rng, (2048, 70), dtype)
    assert_close(op @ X, dense @ X, dtype)
    Y = random_data(rng, (512, 3), dtype)
    assert_close(op.H @ Y, dense.conj().T @ Y, dtype)
    dottest(op, rng=rng)
    dottest(op.H, rng=rng)
    dottest(op.T, rng=rng)


@pytest.mark.parametrize(
    ("op_dtype", "data_dtype", "result"),
    [
        (np.float32, np.float32, np.float32),
        (np.float32, np.float64, np.float64),
        (np.float64, np.float32, np.float64),
        (np.float32, np.complex64, np.complex64),
        (np.float32, np.int64, np.float64),
        (np.float32, np.int8, np.float32),
        (np.float32, np.float16, np.float32),
        (np.float64, np.bool_, np.float64),
        (np.complex64, np.float64, np.complex128),
    ],
)
def test_result_dtype_follows_numpy(op_dtype, data_dtype, result):
    op = DeButOperator.random(
        [(8, 8, 2, 2, 4), (8, 8, 2, 2, 2), (8, 8, 2, 2, 1)], rng=0, dtype=op_dtype
    )
    x = np.ones(8, dtype=data_dtype)
    assert (op @ x).dtype == result
    assert (op @ np.ones((8, 5), dtype=data_dtype)).dtype == result
    assert op.rmatvec(x).dtype == result
    assert np.allclose(op @ x, op.toarray() @ np.ones(8), rtol=1e-4)


def test_non_contiguous_and_empty_inputs():
    op = DeButOperator.random(Chain.from_factorizations([2, 3], [4, 2]), rng=1)
    dense = op.toarray()
    X = np.random.default_rng(0).standard_normal((24, 30))
    assert np.allclose(op @ X[::3, ::2], dense @ X[::3, ::2])
    Xf = np.asfortranarray(np.random.default_rng(1).standard_normal((8, 7)))
    assert np.allclose(op @ Xf, dense @ Xf)
    assert (op @ np.zeros((8, 0))).shape == (6, 0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex128])
@pytest.mark.parametrize("adjoint", [False, True])
def test_apply_rows_reads_and_writes_rows_in_place(dtype, adjoint):
    """Row-major data of a real dtype reaches the kernels as it is: the result is row-major too.

    The same bits as the operator on the transposed copy; fewer than
    ``COLUMNS_ALONE`` rows, and complex data, are copied into the kernels'
    layout first (the result is then a transposed view).
    """
    op = DeButOperator.random(special.PAPER_CHAINS["lenet-fc1"], rng=0, dtype=dtype)
    n_in = op.shape[0] if adjoint else op.shape[1]
    target = op.H if adjoint else op
    rng = np.random.default_rng(1)
    for batch in (1, COLUMNS_ALONE - 1, COLUMNS_ALONE, 300):
        rows = rng.standard_normal((batch, n_in)).astype(dtype)
        result = op.apply_rows(rows, adjoint=adjoint)
        np.testing.assert_array_equal(result, (target @ np.ascontiguousarray(rows.T)).T)
        in_place = np.dtype(dtype).kind == "f" and batch >= COLUMNS_ALONE
        assert result.flags.c_contiguous == (in_place or batch == 1)
    columns = np.asfortranarray(rng.standard_normal((op.shape[1], 300)).astype(dtype))
    out = np.empty((op.shape[0], 300), dtype=dtype, order="F")
    assert op.apply(columns, out=out) is out
    np.testing.assert_array_equal(out, op @ np.ascontiguousarray(columns))


@pytest.mark.parametrize("method", ["matvec", "rmatvec", "matmat", "rmatmat"])
@pytest.mark.parametrize("permuted", [False, True])
@pytest.mark.filterwarnings("ignore:the matrix subclass:PendingDeprecationWarning")
def test_np_matrix_in_gives_np_matrix_out_as_in_scipy(method, permuted):
    # SciPy's LinearOperator.matvec contract (its own dense operator's matvec of an
    # np.matrix column fails in SciPy 1.18, so the dense product is the reference)
    op = DeButOperator.random([(4, 8, 1, 2, 4), (8, 8, 2, 2, 2)], rng=0)
    if permuted:
        op = op.with_permutations(row_perm=[3, 1, 0, 2], col_perm=np.arange(8)[::-1])
    dense = op.toarray().conj().T if method.startswith("r") else op.toarray()
    x = np.asmatrix(np.arange(dense.shape[1] * (1 if method.endswith("vec") else 3), dtype=float))
    x = x.reshape(dense.shape[1], -1)
    got = getattr(op, method)(x)
    assert type(got) is np.matrix
    np.testing.assert_allclose(got, dense @ np.asarray(x))


@pytest.mark.parametrize("dtype", [np.longdouble, np.clongdouble])
def test_longdouble_data_is_refused_with_the_cast_to_make(dtype):
    op = DeButOperator.random([(4, 8, 1, 2, 4)], rng=0)
    for apply in (op.matvec, op.__matmul__, op.apply, op.rmatvec):
        rows = op.shape[0] if apply == op.rmatvec else op.shape[1]
        with pytest.raises(TypeError, match=r"would be .*; pydebut supports .*: cast the data"):
            apply(np.ones(rows, dtype=dtype))


@pytest.mark.parametrize(
    ("x", "error", "message"),
    [
        (np.ones(7), ValueError, "dimension mismatch"),
        (np.ones((7, 2)), ValueError, "dimension mismatch"),
        (np.ones((8, 2, 2)), ValueError, "expected 2-d"),
        (np.array(["a"] * 8), TypeError, "dtype <U1"),
        (np.empty(8, dtype=object), TypeError, "dtype object"),
        (np.ones(8, dtype=np.longdouble), TypeError, "pydebut supports"),
    ],
)
def test_bad_vectors(x, error, message):
    op = DeButOperator.random([(6, 8, 3, 4, 2)], rng=0)
    with pytest.raises(error, match=message):
        op.matmat(x) if x.ndim > 1 else op.matvec(x)
    with pytest.raises(error):
        op @ x


def test_bad_blocks_are_named_in_pydebuts_words():
    # matmat and rmatmat left the message to SciPy, whose 1.18 words it "Dimension
    # mismatch: (6, 8), (8, 2, 2)" for a 3-d block, without the rule
    op = DeButOperator.random([(6, 8, 3, 4, 2)], rng=0)
    with pytest.raises(ValueError, match=r"^matmat expected 2-d X of shape \(8, batch\), got 3-d"):
        op.matmat(np.ones((8, 2, 2)))
    with pytest.raises(ValueError, match=r"^dimension mismatch: rmatmat expected \(6, batch\)"):
        op.rmatmat(np.ones((8, 2)))


def test_a_column_goes_through_matvec_as_a_block_of_one(monkeypatch):
    # SciPy 1.18 deprecates (and 1.20 refuses) LinearOperator.matvec of a column (n, 1),
    # through which DeButOperator.matvec passed one
    def one_dimensional_only(self, x):
        if np.ndim(x) != 1:
            raise AssertionError("LinearOperator.matvec given a column")

    monkeypatch.setattr(spla.LinearOperator, "matvec", one_dimensional_only)
    monkeypatch.setattr(spla.LinearOperator, "rmatvec", one_dimensional_only)
    op = DeButOperator.random([(6, 8, 3, 4, 2)], rng=0)
    x, y = np.arange(8.0).reshape(8, 1), np.arange(6.0).reshape(6, 1)
    np.testing.assert_array_equal(op.matvec(x), op.matvec(x[:, 0])[:, None])
    np.testing.assert_array_equal(op.rmatvec(y), op.rmatvec(y[:, 0])[:, None])


@pytest.mark.parametrize("adjoint", [False, True], ids=["matvec", "rmatvec"])
def test_matvec_names_what_it_takes(adjoint):
    # anything but a 1-D array reached SciPy's bare "dimension mismatch", which a (16, 3)
    # array met too, though the message for a 1-D array promised (16, batch)
    op = DeButOperator.random([(8, 16, 1, 2, 8), (16, 16, 2, 2, 4)], rng=0)
    call, n_in, name = (op.rmatvec, 8, "rmatvec") if adjoint else (op.matvec, 16, "matvec")
    for shape in [(n_in, 3), (1, n_in), (n_in, 2, 2), (n_in - 1, 1)]:
        message = f"{name} expected ({n_in},) or ({n_in}, 1), got {shape}"
        with pytest.raises(ValueError, match=re.escape(message)):
            call(np.ones(shape))
    with pytest.raises(ValueError, match=re.escape(f"got ({n_in}, 3); for ({n_in}, batch) use")):
        call([[1.0] * 3] * n_in)
    with pytest.raises(TypeError, match=f"{name} takes dense arrays, got a SciPy sparse csr"):
        call(sp.csr_array(np.ones((n_in, 1))))
    with pytest.raises(TypeError, match="cannot apply a DeButOperator to None"):
        call(None)
    with pytest.raises(TypeError, match="cannot apply a DeButOperator to str"):
        call("abcd")
    np.testing.assert_array_equal(call(np.ones((n_in, 1))), call(np.ones(n_in))[:, None])
    np.testing.assert_array_equal(call([1.0] * n_in), call(np.ones(n_in)))


def test_masked_data_with_masked_entries_is_refused():
    # every product took the hidden (stored) values of masked entries and dropped the mask:
    # op @ x gave 1e20 where np.ma.dot(np.eye(4), x) gives 0, which the fits already refuse
    op = DeButOperator.identity(Chain.from_factorizations([2, 2], [2, 2]))
    permuted = op.with_permutations(col_perm=[1, 0, 3, 2])
    x = np.ma.masked_array([1.0, 2.0, 1e20, 4.0], mask=[0, 0, 1, 0])
    X = np.ma.column_stack([x, x, x])
    for name, count, call in [
        ("x", 1, lambda: op @ x),
        ("x", 1, lambda: permuted @ x),
        ("x", 1, lambda: op.H @ x),
        ("x", 1, lambda: op.dot(x)),
        ("x", 1, lambda: x @ op),
        ("x", 1, lambda: x * op),
        ("x", 1, lambda: op.matvec(x)),
        ("x", 1, lambda: op.rmatvec(x)),
        ("x", 1, lambda: (3 * op) @ x),  # SciPy's scaled operators took 1e20
        ("x", 1, lambda: (op * 3) @ x),
        ("x", 1, lambda: (-op) @ x),
        ("x", 1, lambda: (op / 3) @ x),
        ("x", 1, lambda: op.apply(x)),
        ("x", 1, lambda: op.apply(x, out=np.empty(4))),
        ("x", 3, lambda: op @ X),
        ("X", 3, lambda: op.matmat(X)),
        ("X", 3, lambda: op.rmatmat(X)),
        ("X", 3, lambda: op.apply_rows(X.T)),
        ("X", 3, lambda: op.apply_rows(X.T, adjoint=True)),
    ]:
        message = f"{name} is a masked array with {count} masked entries, .* fill them first"
        with pytest.raises(ValueError, match=message):
            call()
    filled = x.filled(0)
    unmasked = np.ma.masked_array(filled, mask=False)  # no masked entry: works as before
    for call in [op.__matmul__, op.matvec, op.apply, permuted.dot, op.H.__matmul__]:
        np.testing.assert_array_equal(call(unmasked), call(filled))


@pytest.mark.parametrize("dtype", [np.float32, np.complex64, np.float64])
def test_a_scaled_operator_is_a_debut_operator_of_numpys_result_type(dtype):
    # SciPy's -op and op * 3 said float64 for a float32 operator (their products were
    # float32), so gmres, eigs and svds changed precision on a negated operator
    op = special.dft(16, dtype=np.result_type(dtype, np.complex64))
    op = op if np.dtype(dtype).kind == "c" else special.hadamard(16, dtype=dtype)
    dense = op.toarray()
    for scaled, expected in [
        (-op, -dense),
        (op * 3, 3 * dense),
        (2.5 * op, 2.5 * dense),
        (op / 3, dense / 3),
        (op.dot(-2), -2 * dense),
        (op * True, dense),
    ]:
        assert type(scaled) is DeButOperator and scaled.dtype == op.dtype
        np.testing.assert_allclose(scaled.toarray(), expected, rtol=1e-6, atol=1e-6)
    assert (op * 2j).dtype == np.result_type(op.dtype, np.complex64)
    assert (op * np.float64(2)).dtype == np.result_type(op.dtype, np.float64)
    with pytest.raises(ValueError, match="multiplying the operator by inf takes weights of fa"):
        op * np.inf
    with pytest.raises(ValueError, match="dividing the operator by 0 takes weights of factor 1"):
        op / 0
    with pytest.raises(TypeError, match="can be divided by a number, not 'a'"):
        op / "a"


def test_masked_weights_with_masked_entries_are_refused():
    chain = Chain([(8, 8, 2, 2, 2), (8, 8, 2, 2, 1)])
    good = [np.ones(f.weight_shape) for f in chain]
    hidden = np.ma.masked_array(good[1], mask=good[1] == 1)
    message = r"weights\[1\] is a masked array with 16 masked entries, which factor 2 of 2"
    with pytest.raises(ValueError, match=message):
        DeButOperator(chain, [good[0], hidden])
    r_shapes, vector = DeButOperator(chain, good).to_twiddle()
    with pytest.raises(ValueError, match="twiddle vector is a masked array with 32 masked"):
        DeButOperator.from_twiddle(r_shapes, np.ma.masked_array(vector, mask=vector.size * [1]))
    unmasked = [np.ma.masked_array(w, mask=False) for w in good]
    np.testing.assert_array_equal(
        DeButOperator(chain, unmasked).toarray(), DeButOperator(chain, good).toarray()
    )


def test_bad_weights():
    chain = Chain([(8, 8, 2, 2, 2), (8, 8, 2, 2, 1)])
    good = [np.ones(f.weight_shape) for f in chain]
    with pytest.raises(ValueError, match="the chain has 2 factors but 1 weight arrays"):
        DeButOperator(chain, good[:1])
    with pytest.raises(TypeError, match="weights must be a sequence of 2 arrays"):
        DeButOperator(chain, np.ones((2, 2, 2, 2, 2)))
    with pytest.raises(
        ValueError,
        match=r"factor 2 of 2 \(p=8, q=8, r=2, s=2, t=1\) must have "
        r"shape \(k, r, s, t\) = \(4, 2, 2, 1\), got \(4, 2, 2\)",
    ):
        DeButOperator(chain, [good[0], np.ones((4, 2, 2))])
    with pytest.raises(TypeError, match="factor 1 of 2 .* have dtype object"):
        DeButOperator(chain, [good[0].astype(object), good[1]])
    bad = good[1].copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="factor 2 of 2 .* contain NaN or infinity"):
        DeButOperator(chain, [good[0], bad])
    assert not np.isfinite(DeButOperator(chain, [good[0], bad], check_finite=False).toarray()).all()
    for complex_dtype in (np.complex64, np.complex128):
        for dtype in (np.float32, np.float64):
            with pytest.raises(TypeError, match=f"are complex but dtype {dtype.__name__} is real"):
                DeButOperator(chain, [(good[0] * 1j).astype(complex_dtype), good[1]], dtype=dtype)
    with warnings.catch_warnings():  # a zero imaginary part is dropped, without ComplexWarning
        warnings.simplefilter("error")
        real = DeButOperator(chain, [good[0] + 0j, good[1]], dtype=np.float64)
    assert real.dtype == np.float64 and np.array_equal(real.weights[0], good[0])
    with pytest.raises(TypeError, match="pydebut supports"):
        DeButOperator(chain, good, dtype=np.int32)


def test_weights_are_copied_and_read_only():
    chain = Chain([(4, 4, 2, 2, 1)])
    w = np.ones(chain[0].weight_shape)
    op = DeButOperator(chain, [w])
    w[:] = 5
    assert (op.weights[0] == 1).all()
    with pytest.raises(ValueError, match="read-only"):
        op.weights[0][0, 0, 0, 0] = 2
    assert DeButOperator(chain, [w.astype(np.int64)]).dtype == np.float64
    assert DeButOperator(chain, [w.astype(np.float16)]).dtype == np.float32


def test_weights_that_a_cast_would_take_below_the_normal_range_are_refused_by_name():
    # a product of 3e-8 cast to float32 came back all zero, silently: its first
    # factor's weights of 1e-46 had rounded to zero (of 1e-41, to subnormal numbers)
    chain = Chain.from_factorizations([2, 2], [2, 2])
    w1, w2 = (np.random.default_rng(0).standard_normal(f.weight_shape) for f in chain)
    message = r"factor 1 of 2 .* below the normal range of (float32|complex64) \(largest 1\.3"
    for tiny, large in ((1e-46, 1e38), (1e-41, 1e33)):
        op = DeButOperator(chain, [w1 * tiny, w2 * large])
        with pytest.raises(ValueError, match=message):
            op.astype(np.float32)
        with pytest.raises(ValueError, match=message):
            DeButOperator(chain, [w1 * tiny, w2 * large], dtype=np.complex64)
        imaginary = DeButOperator(chain, [w1 * tiny * 1j, w2 * large + 0j])  # parts' magnitudes
        with pytest.raises(ValueError, match=message):
            imaginary.astype(np.complex64)
    # a factor of normal largest weight keeps its smaller ones to within a rounding of it
    kept = DeButOperator(chain, [w1 * 1e-37, w2 * 1e30])
    reference = kept.toarray()
    single = kept.astype(np.float32).toarray()
    bound = 4 * np.finfo(np.float32).eps * np.abs(reference).max()
    assert np.abs(single - reference).max() <= bound


@pytest.mark.parametrize(
    ("weights", "dtype"),
    [
        *((d, np.float32) for d in (np.bool_, np.int8, np.uint8, np.int16, np.uint16)),
        *((d, np.float32) for d in (np.float16, np.float32)),
        *((d, np.float64) for d in (np.int32, np.uint32, np.int64, np.uint64, np.longdouble)),
        (np.clongdouble, np.complex128),
    ],
)
def test_the_operators_dtype_is_numpys_result_type_with_float32(weights, dtype):
    # as documented: NumPy's promotion, not float64 for every integer
    chain = Chain([(4, 4, 2, 2, 1)])
    assert DeButOperator(chain, [np.ones(chain[0].weight_shape, weights)]).dtype == dtype


def test_random_scaling_gives_unit_variance_entries():
    op = DeButOperator.random(PAPER_512x2048, rng=0)
    entries = op.toarray()
    # Each factor maps E||x||^2 to (r/s)||x||^2, so the entries have variance 1/n.
    assert entries.var() * 2048 == pytest.approx(1.0, rel=0.25)
    complex_op = DeButOperator.random(PAPER_512x2048, rng=0, dtype=np.complex128)
    assert np.abs(complex_op.toarray()).var() * 2048 == pytest.approx(1.0, rel=0.6)
    same = DeButOperator.random(PAPER_512x2048, rng=0)
    assert all(np.array_equal(a, b) for a, b in zip(op.weights, same.weights))


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex64, np.complex128])
@pytest.mark.parametrize(
    "chain",
    [
        # a factor of 3 * 2**16 + 1 weights spans two blocks of 2**17
        Chain([(2 * 98305, 2 * 98305, 2, 2, 98305), (2 * 98305, 4 * 98305, 1, 2, 98305)]),
        Chain([(1, 1, 1, 1, 1)]),  # one weight: one block of one
    ],
)
def test_random_weights_are_scaled_gaussians_drawn_factor_by_factor(dtype, chain):
    # the values drawn in blocks are bit for bit those of whole-array draws (seeded results
    # depend on them)
    op = DeButOperator.random(chain, rng=3, dtype=dtype)
    generator = np.random.default_rng(3)
    for spec, got in zip(chain, op.weights, strict=True):
        w = generator.standard_normal(spec.weight_shape)
        if np.dtype(dtype).kind == "c":
            w = (w + 1j * generator.standard_normal(spec.weight_shape)) / np.sqrt(2)
        assert got.tobytes() == ((1.0 / np.sqrt(spec.s)) * w).astype(dtype).tobytes()


@pytest.mark.parametrize("dtype", [np.float32, np.complex128])
def test_random_holds_little_more_than_its_weights(dtype):
    # drawn in float64 and scaled into temporaries, 16 MiB of weights peaked at 3x (float64,
    # complex128) or 5x (float32, complex64); now: the weights, one factor's copy and a block
    n = 2**24 // 8 // np.dtype(dtype).itemsize
    chain = Chain([(n, n, 1, 1, n)] * 8)
    tracemalloc.start()
    try:
        op = DeButOperator.random(chain, rng=0, dtype=dtype)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert sum(w.nbytes for w in op.weights) == 2**24
    assert peak < 1.3 * 2**24


def test_random_refuses_up_front_what_it_cannot_build(monkeypatch):
    # 1000 float64 weights fit in 12000 bytes, but each factor is drawn, then frozen (copied)
    monkeypatch.setattr("pydebut._memory.physical_memory", lambda: 12000)
    with pytest.raises(ValueError, match=r"1,000 weights \(and 1,000 more while it is built\) "):
        DeButOperator.random([(1000, 1000, 1, 1, 1000)])
    assert DeButOperator.random([(500, 500, 1, 1, 500)]).shape == (500, 500)


def test_identity():
    chain = Chain.from_factorizations([2, 3, 2], [2, 3, 2])
    assert np.array_equal(DeButOperator.identity(chain).toarray(), np.eye(12))
    with pytest.raises(ValueError, match=r"factor 1 of 1 \(p=4, q=8.*is not square"):
        DeButOperator.identity([(4, 8, 1, 2, 4)])


@given(ANY_CHAIN, st.integers(0, 2**32 - 1))
def test_factors_as_sparse_arrays_multiply_to_the_product(chain, seed):
    op = DeButOperator.random(chain, rng=seed)
    product = np.eye(op.shape[0])
    for index in range(op.n_factors):
        factor = op.factor(index)
        assert factor.nnz == chain[index].nnz
        assert np.array_equal(factor.toarray() != 0, chain[index].support())
        product = product @ factor.toarray()
    assert np.allclose(product, op.toarray())


@pytest.mark.parametrize("index", [slice(0, 1), 1.0, "0", True])
def test_factor_index_must_be_an_integer(index):
    # Before: a slice reached Chain.__getitem__ and failed with AttributeError
    # ('Chain' object has no attribute 'support_indices'); 1.0 and "0" with TypeErrors
    # from tuple indexing that did not say which call; True gave factor 1.
    op = DeButOperator.identity([(4, 4, 2, 2, 2), (4, 4, 2, 2, 1)])
    with pytest.raises(TypeError, match=r"factor index must be an integer, not \w+"):
        op.factor(index)
    assert op.factor(np.int64(-1)).shape == (4, 4)


@pytest.mark.parametrize("index", [2, -3, 2**70])
def test_factor_index_out_of_range_names_the_range(index):
    # Before: "tuple index out of range", or for 2**70 "cannot fit 'int' into an
    # index-sized integer", naming neither the index nor the factors.
    op = DeButOperator.identity([(4, 4, 2, 2, 2), (4, 4, 2, 2, 1)])
    with pytest.raises(IndexError, match=rf"factor index {index} is out of range for 2 factors"):
        op.factor(index)


def test_composition_is_a_longer_chain():
    a = DeButOperator.random(Chain.from_factorizations([2, 2], [2, 2]), rng=0)
    b = DeButOperator.random(Chain.from_factorizations([2, 2], [2, 3]), rng=1, dtype=np.float32)
    product = a @ b
    assert isinstance(product, DeButOperator) and product.n_factors == 4
    assert product.dtype == np.float64
    assert np.allclose(product.toarray(), a.toarray() @ b.toarray())
    with pytest.raises(ValueError, match="cannot multiply operators of shapes"):
        b @ a
    assert isinstance(a @ spla.aslinearoperator(np.eye(4)), spla.LinearOperator)


def test_adjoint_and_transpose_are_debut_operators():
    op = DeButOperator.random(Chain.from_factorizations([2, 4], [3, 2]), rng=0, dtype=np.complex128)
    for other, expected in [
        (op.H, op.toarray().conj().T),
        (op.T, op.toarray().T),
        (op.H.H, op.toarray()),
        (op.adjoint(), op.toarray().conj().T),
        (op.transpose(), op.toarray().T),
    ]:
        assert isinstance(other, DeButOperator)
        assert np.allclose(other.toarray(), expected)


def test_twiddle_round_trip_and_layout():
    chain = Chain([(4, 4, 2, 2, 2), (4, 8, 1, 2, 4)])
    op = DeButOperator.random(chain, rng=0)
    r_shapes, vector = op.to_twiddle()
    assert r_shapes == [[4, 8, 1, 2, 4], [4, 4, 2, 2, 2]]
    assert vector.size == op.n_params
    # first the factor applied first, F_2 = (4, 8, 1, 2, 4): (k, t, r, s) = (1, 4, 1, 2)
    w2 = op.weights[1]
    assert vector[0] == w2[0, 0, 0, 0] and vector[1] == w2[0, 0, 1, 0]
    assert vector[2] == w2[0, 0, 0, 1]
    back = DeButOperator.from_twiddle(r_shapes, vector)
    assert back.chain == chain and np.array_equal(back.toarray(), op.toarray())
    with pytest.raises(ValueError, match="R_shapes needs 16 weights"):
        DeButOperator.from_twiddle(r_shapes, vector[:-1])


def test_repr_has_one_line_per_factor():
    text = repr(DeButOperator.random(PAPER_512x2048, rng=0, dtype=np.float32))
    lines = text.splitlines()
    assert lines[0].startswith("<512x2048 DeButOperator with dtype=float32, 9 factors, 25600")
    assert len(lines) == 10 and "F_9" in lines[-1]


def test_lsqr_agrees_with_dense_lstsq():
    chain = Chain.from_factorizations([2, 2, 2, 2], [2, 2, 2, 4])
    op = DeButOperator.random(chain, rng=4)
    dense = op.toarray()
    b = np.random.default_rng(5).standard_normal(op.shape[0])
    x = spla.lsqr(op, b, atol=1e-14, btol=1e-14, iter_lim=2000)[0]
    x_min_norm = np.linalg.lstsq(dense, b, rcond=None)[0]
    assert np.allclose(x, x_min_norm, atol=1e-8)


def test_krylov_solvers_and_svds():
    n = 64
    rng = np.random.default_rng(6)
    op = DeButOperator.random(special.butterfly_chain(n), rng=rng)
    shifted = spla.aslinearoperator(op) + spla.aslinearoperator(5 * np.eye(n))
    b = rng.standard_normal(n)
    x, info = spla.gmres(shifted, b, rtol=1e-12, atol=0, restart=n)
    assert info == 0 and np.allclose(op @ x + 5 * x, b, atol=1e-9)
    spd = op.H @ op
    x, info = spla.cg(
        spla.aslinearoperator(spd) + spla.aslinearoperator(np.eye(n)), b, rtol=1e-12, atol=0
    )
    assert info == 0 and np.allclose(op.H @ (op @ x) + x, b, atol=1e-8)
    top = spla.svds(op, k=3, return_singular_vectors=False, random_state=0)
    assert np.allclose(np.sort(top), np.linalg.svd(op.toarray(), compute_uv=False)[:3][::-1])


def test_operator_is_safe_to_share_between_threads():
    from concurrent.futures import ThreadPoolExecutor

    op = DeButOperator.random(special.butterfly_chain(256), rng=0)
    dense = op.toarray()
    blocks = [np.random.default_rng(i).standard_normal((256, 1 + 7 * i)) for i in range(8)]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda X: (op @ X, op.H @ X[:, 0]), blocks * 4))
    for X, (forward, adjoint) in zip(blocks * 4, results):
        assert np.allclose(forward, dense @ X)
        assert np.allclose(adjoint, dense.T @ X[:, 0])


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_every_pickle_protocol_round_trips(protocol):
    op = special.dft(8, np.complex64)  # a chain, weights and a column permutation
    clone = pickle.loads(pickle.dumps(op, protocol=protocol))
    assert clone.chain == op.chain and clone.dtype == op.dtype
    np.testing.assert_array_equal(clone.col_perm, op.col_perm)
    np.testing.assert_array_equal(clone.toarray(), op.toarray())
    for chain in special.PAPER_CHAINS.values():
        assert pickle.loads(pickle.dumps(chain, protocol=protocol)) == chain


def test_transpose_and_adjoint_are_built_once():
    # op.H rebuilt the operator (a copy of every weight, empty plan caches) on every access:
    # op.H @ y cost 30x op.rmatvec(y) on the 512 x 2048 paper layer
    real = DeButOperator.random([(4, 8, 2, 4, 1), (8, 8, 2, 2, 4)], rng=0)
    assert real.H is real.H and real.T is real.H and real.H.H is real
    complex_op = DeButOperator.random([(4, 8, 2, 4, 1)], rng=0, dtype=np.complex128)
    assert complex_op.H is complex_op.H and complex_op.T is complex_op.T
    assert complex_op.H is not complex_op.T and complex_op.T.T is complex_op
    np.testing.assert_array_equal(complex_op.H.toarray(), complex_op.toarray().conj().T)
    np.testing.assert_array_equal(complex_op.T.toarray(), complex_op.toarray().T)
    assert dottest(complex_op.H) and dottest(real.T)
    # no reference cycle: the operator and its adjoint go as soon as they are dropped
    adjoint = weakref.ref(complex_op.H)
    del complex_op
    assert adjoint() is None


@pytest.mark.parametrize("bad", [complex(np.nan, 0), complex(0, np.inf), complex(np.inf, 1)])
def test_complex_weights_with_nan_or_infinity_are_refused(bad):
    # complex128 weights are not cast, so only the finiteness check sees them
    chain = Chain([(4, 4, 2, 2, 1)])
    w = np.ones(chain[0].weight_shape, complex)
    w[0, 1, 0, 0] = bad
    with pytest.raises(ValueError, match=r"factor 1 of 1 .* contain NaN or infinity"):
        DeButOperator(chain, [w])
    assert DeButOperator(chain, [w], check_finite=False).dtype == np.complex128


def test_an_all_zero_factor_casts_to_single_precision():
    # a zero factor has no weight below the normal range to lose
    chain = Chain.from_factorizations([2, 2], [2, 2])
    zero = DeButOperator(chain, [np.zeros(f.weight_shape) for f in chain])
    assert not zero.astype(np.float32).toarray().any()
    assert DeButOperator(chain, [np.zeros(f.weight_shape) for f in chain], dtype=np.complex64)


def test_negative_weights_below_the_normal_range_are_refused_too():
    # the largest magnitude of all-negative weights is -min, not max
    chain = Chain.from_factorizations([2, 2], [2, 2])
    rng = np.random.default_rng(0)
    w1, w2 = (np.abs(rng.standard_normal(f.weight_shape)) + 0.5 for f in chain)
    op = DeButOperator(chain, [-w1 * 1e-46, w2 * 1e38])
    with pytest.raises(ValueError, match=r"factor 1 of 2 .* below the normal range of float32"):
        op.astype(np.float32)


def test_to_twiddle_refuses_a_column_permutation_alone():
    op = DeButOperator.identity([(4, 4, 2, 2, 1)]).with_permutations(col_perm=[1, 2, 3, 0])
    with pytest.raises(ValueError, match="permutations=True"):
        op.to_twiddle()


def test_factor_takes_the_most_negative_index():
    op = DeButOperator.random([(4, 4, 2, 2, 2), (4, 4, 2, 2, 1)], rng=0)
    assert (op.factor(-2) != op.factor(0)).nnz == 0
    with pytest.raises(IndexError, match=re.escape("range(-2, 2)")):
        op.factor(-3)


@pytest.mark.parametrize(
    ("first", "second", "result"),
    [
        (np.float32, np.complex64, np.complex64),
        (np.float32, np.float64, np.float64),
        (np.complex64, np.float64, np.complex128),
    ],
)
def test_a_composition_has_numpys_result_type(first, second, result):
    a = DeButOperator.random([(4, 8, 1, 2, 4)], rng=0, dtype=first)
    b = DeButOperator.random([(8, 8, 2, 2, 4)], rng=1, dtype=second)
    product = a @ b
    assert isinstance(product, DeButOperator) and product.dtype == result
    expected = a.toarray().astype(result) @ b.toarray().astype(result)
    np.testing.assert_allclose(product.toarray(), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("batch", [2, 3, 8])
def test_apply_into_an_out_that_overlaps_x_shifted_by_a_column(batch):
    op = DeButOperator.random([(8, 8, 2, 2, 4), (8, 8, 2, 2, 2), (8, 8, 2, 2, 1)], rng=0)
    buffer = np.random.default_rng(1).standard_normal(8 * batch + 1)
    x, out = buffer[:-1].reshape(8, batch), buffer[1:].reshape(8, batch)
    expected = op.toarray() @ x
    assert op.apply(x, out=out) is out
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)


def test_tosparse_bounds_a_partial_product_larger_than_the_product():
    # F_1 is 4 x 64 and dense (256 nonzeros); the 4 x 4 product has 16
    op = DeButOperator.random([(4, 64, 4, 64, 1), (64, 4, 64, 4, 1)], rng=0)
    assert op.tosparse(max_nnz=256).nnz <= 16
    with pytest.raises(ValueError, match="partial product"):
        op.tosparse(max_nnz=100)


def test_tosparse_refuses_a_bool_max_nnz():
    op = DeButOperator.random([(4, 4, 2, 2, 1)], rng=0)
    with pytest.raises(TypeError, match="max_nnz must be an integer, got a boolean"):
        op.tosparse(max_nnz=True)


def test_tosparse_keeps_a_row_permutation():
    op = DeButOperator.random([(4, 4, 2, 2, 2), (4, 4, 2, 2, 1)], rng=0)
    op = op.with_permutations(row_perm=[1, 2, 3, 0])
    np.testing.assert_allclose(op.tosparse().toarray(), op.toarray(), rtol=1e-12)


@pytest.mark.parametrize("width", [1, 513])
def test_a_product_with_a_sparse_matrix_computes_every_column(width):
    # the last block of columns (a column alone) is computed too
    op = DeButOperator.random([(8, 8, 2, 2, 4), (8, 8, 2, 2, 1)], rng=0)
    rng = np.random.default_rng(1)  # (sp.random_array takes rng= from SciPy 1.15 only)
    S = sp.csr_array(rng.standard_normal((8, width)) * (rng.random((8, width)) < 0.5))
    np.testing.assert_allclose(op @ S, op.toarray() @ S.toarray(), rtol=1e-10, atol=1e-12)
