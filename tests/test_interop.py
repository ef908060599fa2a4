"""Hand-offs to optional packages: pyfaust's ``Faust`` and a PyTorch module.

The tests that need the package skip cleanly without it; the NumPy reference
of the paper layer's forward pass and the messages for a missing package are
tested always.
"""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import scipy.sparse as sp

from pydebut import Chain, DeButOperator, FactorSpec, special
from pydebut.torch_layer import forward_from_twiddle

CHAINS = {
    "chainable": Chain.from_factorizations([2, 3, 2], [3, 2, 2]),
    "lenet fc1 (bulging)": Chain.from_sup_sub(
        "128 256 256 512 512 512 512 256 256 400", "2 4 64 1 2 64 2 2 32 2 1 16 16 25 1"
    ),
    "pointwise 3 -> 64": Chain.from_r_shapes(
        [[4, 3, 4, 3, 1], [8, 4, 2, 1, 4], [16, 8, 2, 1, 4], [32, 16, 2, 1, 16], [64, 32, 2, 1, 32]]
    ),
    "with a diagonal factor": Chain([(6, 6, 1, 1, 6), (6, 4, 3, 2, 1)]),
}
DTYPES = [np.float32, np.float64, np.complex64, np.complex128]


def tolerance(dtype) -> float:
    return 1e-5 if np.dtype(dtype).itemsize <= 8 and np.dtype(dtype) != np.float64 else 1e-12


# --- the paper layer's forward pass, in NumPy ----------------------------------------


@pytest.mark.parametrize("name", list(CHAINS))
@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_twiddle_forward_is_x_times_the_transposed_product(name, dtype):
    op = DeButOperator.random(CHAINS[name], rng=0, dtype=dtype)
    r_shapes, vector = op.to_twiddle()
    x = np.random.default_rng(1).standard_normal((2, 3, op.shape[1]))
    y = forward_from_twiddle(r_shapes, vector, x)
    assert y.shape == (2, 3, op.shape[0])
    np.testing.assert_allclose(y, x @ op.toarray().T, atol=1e-12)


def test_twiddle_forward_reads_the_application_order_layout():
    """One factor by hand: p*s values viewed as (k, t, r, s)."""
    r_shapes = [[4, 4, 2, 2, 1]]  # k = 2 blocks of 2 x 2, t = 1
    vector = np.arange(1.0, 9.0)  # block 0: [[1, 2], [3, 4]], block 1: [[5, 6], [7, 8]]
    x = np.array([1.0, 10.0, 100.0, 1000.0])
    expected = [1 + 20, 3 + 40, 500 + 6000, 700 + 8000]
    np.testing.assert_array_equal(forward_from_twiddle(r_shapes, vector, x), expected)
    with pytest.raises(ValueError, match="needs 8 weights"):
        forward_from_twiddle(r_shapes, vector[:-1], x)
    with pytest.raises(ValueError, match=r"shape \(\.\.\., 4\)"):
        forward_from_twiddle(r_shapes, vector, x[:3])
    # masked entries were read at their stored values
    hidden = np.ma.masked_array(vector, mask=[True] + [False] * 7)
    with pytest.raises(ValueError, match="the twiddle vector is a masked array with 1 masked"):
        forward_from_twiddle(r_shapes, hidden, x)
    with pytest.raises(ValueError, match="x is a masked array with 2 masked entries"):
        forward_from_twiddle(r_shapes, vector, np.ma.masked_greater(x, 50))
    unmasked = np.ma.masked_array(x)  # a mask with nothing masked: the values
    np.testing.assert_array_equal(forward_from_twiddle(r_shapes, vector, unmasked), expected)


def test_twiddle_forward_of_integers_is_exact():
    # int8 weights and data: einsum in int8 wrapped 100 * 100 * 4 to 64
    r_shapes = [[4, 8, 2, 4, 1]]
    vector, x = np.full(16, 100, np.int8), np.full((1, 8), 100, np.int8)
    np.testing.assert_array_equal(forward_from_twiddle(r_shapes, vector, x), [[40_000] * 4])


def test_twiddle_forward_and_torch_import_name_wrong_types():
    from pydebut.torch_layer import from_torch_layer

    r_shapes, vector = DeButOperator.random([(4, 8, 2, 4, 1)], rng=0).to_twiddle()
    with pytest.raises(TypeError, match="x must hold real or complex numbers"):
        forward_from_twiddle(r_shapes, vector, np.full((1, 8), "a"))

    class NumpyLayer:  # a layer-like object holding a NumPy vector, not a tensor
        def __init__(self) -> None:
            self.twiddle, self.r_shapes = vector, r_shapes

    with pytest.raises(TypeError, match="twiddle is a torch tensor, got ndarray"):
        from_torch_layer(NumpyLayer())


class _Tensor:
    """What from_torch_layer reads of a torch tensor, without PyTorch."""

    def __init__(self, values: np.ndarray) -> None:
        self.values = values

    def detach(self) -> _Tensor:
        return self

    def cpu(self) -> _Tensor:
        return self

    def numpy(self) -> np.ndarray:
        return self.values

    def tolist(self) -> list:
        return self.values.tolist()


def test_the_authors_layer_is_read_by_its_r_shapes():
    # their module names the shapes R_shapes: refused as not made by to_torch_layer()
    from pydebut.torch_layer import from_torch_layer

    op = DeButOperator.random(special.PAPER_CHAINS["lenet-fc1"], rng=0)
    r_shapes, vector = op.to_twiddle()

    class AuthorsLayer:  # the attributes of the DeBut authors' layer
        def __init__(self) -> None:
            self.R_shapes, self.twiddle = r_shapes, _Tensor(vector)

    assert np.array_equal(from_torch_layer(AuthorsLayer()).toarray(), op.toarray())
    with pytest.raises(TypeError, match=r"twiddle and r_shapes .* or R_shapes .*, got object"):
        from_torch_layer(object())


def test_from_torch_layer_reads_r_shapes_as_a_tensor_and_non_finite_weights_on_request():
    # R_shapes kept as an (L, 5) tensor (a buffer) was "R_shapes has 2 numbers"; the NaN
    # weights of a diverged layer were refused with a hint at a check_finite it did not take
    from pydebut.torch_layer import from_torch_layer

    op = DeButOperator.random(CHAINS["chainable"], rng=0)
    r_shapes, vector = op.to_twiddle()

    class Layer:
        def __init__(self, shapes: object, weights: np.ndarray) -> None:
            self.R_shapes, self.twiddle = shapes, _Tensor(weights)

    for shapes in (np.array(r_shapes), np.array(r_shapes).ravel()):
        read = from_torch_layer(Layer(_Tensor(shapes), vector))
        assert np.array_equal(read.toarray(), op.toarray())
    diverged = vector.copy()
    diverged[3] = np.nan
    with pytest.raises(ValueError, match=r"contain NaN or infinity \(check_finite=False"):
        from_torch_layer(Layer(r_shapes, diverged))
    read = from_torch_layer(Layer(r_shapes, diverged), check_finite=False)
    assert np.array_equal(read.to_twiddle()[1], diverged, equal_nan=True)


# --- PyTorch -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(CHAINS))
@pytest.mark.parametrize("dtype", DTYPES)
def test_torch_layer_matches_the_operator_and_the_numpy_reference(name, dtype):
    torch = pytest.importorskip("torch")
    from pydebut.torch_layer import from_torch_layer, to_torch_layer

    op = DeButOperator.random(CHAINS[name], rng=2, dtype=dtype)
    layer = to_torch_layer(op, bias=True)
    r_shapes, vector = op.to_twiddle()
    assert layer.r_shapes == r_shapes
    assert (layer.in_features, layer.out_features) == (op.shape[1], op.shape[0])
    assert [name for name, _ in layer.named_parameters()] == ["twiddle", "bias"]
    np.testing.assert_array_equal(layer.twiddle.detach().numpy(), vector)
    x = np.random.default_rng(3).standard_normal((5, op.shape[1])).astype(dtype)
    with torch.no_grad():
        layer.bias.fill_(0.5)
        y = layer(torch.from_numpy(x)).numpy()
    expected = forward_from_twiddle(r_shapes, vector, x) + 0.5
    np.testing.assert_allclose(y, expected, rtol=tolerance(dtype), atol=tolerance(dtype))
    assert np.array_equal(from_torch_layer(layer).toarray(), op.toarray())


def test_torch_layer_trains_and_hands_back():
    torch = pytest.importorskip("torch")
    from pydebut.torch_layer import from_torch_layer, to_torch_layer

    op = DeButOperator.random(CHAINS["chainable"], rng=4)
    layer = to_torch_layer(op)
    x = torch.randn(7, op.shape[1], dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    layer(x).square().sum().backward()
    grad = layer.twiddle.grad.numpy()
    assert grad.shape == (op.n_params,) and np.abs(grad).sum() > 0
    with torch.no_grad():
        layer.twiddle -= 0.1 * layer.twiddle.grad
    trained = from_torch_layer(layer)
    np.testing.assert_allclose(
        x.numpy() @ trained.toarray().T, layer(x).detach().numpy(), atol=1e-12
    )
    assert "params=" in repr(layer) and to_torch_layer(op, dtype=torch.float32).twiddle.dtype == (
        torch.float32
    )


def test_torch_layer_refuses_dtypes_that_are_no_layer_dtype_or_drop_imaginary_parts():
    # Before: dtype=torch.float32 on a complex operator dropped the imaginary parts (torch
    # warned only), and "float32" or np.float32 failed inside Module.to
    torch = pytest.importorskip("torch")
    from pydebut.torch_layer import to_torch_layer

    op = DeButOperator.random(CHAINS["chainable"], rng=0, dtype=np.complex128)
    with pytest.raises(TypeError, match="complex but dtype torch.float32 is real"):
        to_torch_layer(op, dtype=torch.float32)
    for dtype in ("float32", np.float32, torch.int64):
        with pytest.raises(TypeError, match="dtype must be a floating-point or complex"):
            to_torch_layer(op, dtype=dtype)
    assert to_torch_layer(op, dtype=torch.complex64).twiddle.dtype == torch.complex64


def test_torch_layer_refuses_weights_its_dtype_cannot_hold_and_a_bias_that_is_no_bool():
    # Module.to made weights of 1e5 infinite and of 1e-9 zero in float16, silently (the
    # product fits); bias="no" added a bias
    torch = pytest.importorskip("torch")
    from pydebut.torch_layer import to_torch_layer

    r_shapes = [[4, 4, 2, 2, 1], [4, 4, 2, 2, 2]]  # application order: factor 2, then 1
    cases = [
        (1e5, 1e-3, torch.float16, "weights of factor 2 of 2 .* overflow to infinity in "),
        (1e-9, 1e4, torch.float16, "weights of factor 2 of 2 .* lie below the normal range of "),
        (1.0, 1e39, torch.float32, "weights of factor 1 of 2 .* overflow to infinity in "),
    ]
    for first, second, dtype, words in cases:
        vector = np.concatenate([np.full(8, first), np.full(8, second)])
        op = DeButOperator.from_twiddle(r_shapes, vector)
        with pytest.raises(ValueError, match="^to_torch_layer\\(\\): " + words + str(dtype)):
            to_torch_layer(op, dtype=dtype)
    layer = to_torch_layer(DeButOperator.from_twiddle(r_shapes, np.ones(16)), dtype=torch.float16)
    assert layer.twiddle.dtype == torch.float16 and torch.all(layer.twiddle == 1)
    for flag in ("no", 0, None):
        with pytest.raises(TypeError, match="to_torch_layer\\(\\): bias must be a bool"):
            to_torch_layer(op, bias=flag)


def test_a_model_holding_a_torch_layer_saves_and_pickles_whole():
    # Before: the class was local to a function, so torch.save(model) and pickle failed
    # ("Can't pickle local object '_layer_class.<locals>.DeButLayer'")
    import io
    import pickle

    torch = pytest.importorskip("torch")
    from pydebut.torch_layer import DeButLayer, to_torch_layer

    layer = to_torch_layer(DeButOperator.random(CHAINS["chainable"], rng=1), bias=True)
    model = torch.nn.Sequential(layer, torch.nn.ReLU())
    saved = io.BytesIO()
    torch.save(model, saved)
    saved.seek(0)
    loaded = torch.load(saved, weights_only=False)
    x = torch.randn(3, layer.in_features, dtype=torch.float64)
    assert isinstance(loaded[0], DeButLayer) and torch.equal(loaded(x), model(x))
    assert torch.equal(pickle.loads(pickle.dumps(layer))(x), layer(x))


def test_torch_layers_read_back_from_dtypes_numpy_lacks_and_lazy_conjugates():
    # Before: "Got unsupported ScalarType BFloat16" for a layer to_torch_layer made, and
    # "Can't call numpy() on Tensor that has conjugate bit set"
    torch = pytest.importorskip("torch")
    from pydebut.torch_layer import from_torch_layer, to_torch_layer

    op = DeButOperator.random(CHAINS["chainable"], rng=2)
    layer = to_torch_layer(op, dtype=torch.bfloat16)
    back = from_torch_layer(layer)
    expected = layer.twiddle.detach().to(torch.float32).numpy()
    np.testing.assert_array_equal(back.to_twiddle()[1], expected)
    complex_op = DeButOperator.random(CHAINS["chainable"], rng=3, dtype=np.complex128)
    conjugated = to_torch_layer(complex_op)
    conjugated.twiddle = torch.nn.Parameter(conjugated.twiddle.detach().conj())
    assert conjugated.twiddle.is_conj()
    np.testing.assert_array_equal(
        from_torch_layer(conjugated).toarray(), complex_op.toarray().conj()
    )


def test_torch_layer_of_a_permuted_operator_says_how_to_apply_the_permutations():
    torch = pytest.importorskip("torch")
    from pydebut.torch_layer import to_torch_layer

    rng = np.random.default_rng(4)
    op = DeButOperator.random(CHAINS["chainable"], rng=4).with_permutations(
        rng.permutation(CHAINS["chainable"].shape[0]), rng.permutation(CHAINS["chainable"].shape[1])
    )
    with pytest.raises(ValueError, match="permutation") as refused:
        to_torch_layer(op)
    recipe = "layer(x[..., numpy.argsort(op.col_perm)])[..., op.row_perm]"
    assert recipe in str(refused.value)
    layer = to_torch_layer(op.with_permutations())
    x = rng.standard_normal((3, op.shape[1]))
    y = layer(torch.from_numpy(x[..., np.argsort(op.col_perm)])).detach().numpy()[..., op.row_perm]
    np.testing.assert_allclose(y, x @ op.toarray().T, atol=1e-12)


def test_torch_layer_names_an_input_of_the_wrong_width():
    # Before: (0, 5) into a 6-input layer returned (0, m); (3, 4) and a 0-d tensor failed in
    # a reshape ("shape '[3, 4]' is invalid for input of size 8")
    torch = pytest.importorskip("torch")
    from pydebut.torch_layer import to_torch_layer

    layer = to_torch_layer(DeButOperator.random(CHAINS["chainable"], rng=5))
    n = layer.in_features
    for shape in [(0, n - 1), (3, n + 1), ()]:
        with pytest.raises(ValueError, match=rf"x must have shape \(\.\.\., {n}\)"):
            layer(torch.zeros(shape, dtype=torch.float64))
    assert layer(torch.zeros((0, n), dtype=torch.float64)).shape == (0, layer.out_features)


def test_torch_layer_without_torch_says_how_to_install(monkeypatch):
    from pydebut.torch_layer import to_torch_layer

    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ImportError, match="pip install torch"):
        to_torch_layer(DeButOperator.random(CHAINS["chainable"], rng=0))
    with pytest.raises(TypeError, match="needs a DeButOperator, got str"):  # checked first
        to_torch_layer("layer")


TWIDDLE_CHAIN = Chain([(4, 8, 2, 4, 1), (8, 8, 2, 2, 2)])


def test_forward_from_twiddle_refuses_a_vector_that_is_not_flat():
    # a (1, n_params) vector is no flat vector, even for a one-factor chain
    r_shapes, vector = DeButOperator.random([(4, 8, 2, 4, 1)], rng=0).to_twiddle()
    with pytest.raises(ValueError, match="R_shapes needs 16 weights"):
        forward_from_twiddle(r_shapes, vector.reshape(1, -1), np.ones((2, 8)))


def test_forward_from_twiddle_names_a_0d_x():
    # named, not a bare IndexError
    r_shapes, vector = DeButOperator.random([(4, 8, 2, 4, 1)], rng=0).to_twiddle()
    with pytest.raises(ValueError, match=r"x must have shape \(\.\.\., 8\)"):
        forward_from_twiddle(r_shapes, vector, np.float64(1.0))


def test_forward_from_twiddle_refuses_object_arrays():
    r_shapes, vector = DeButOperator.random([(4, 8, 2, 4, 1)], rng=0).to_twiddle()
    with pytest.raises(TypeError, match="vector must hold real or complex numbers"):
        forward_from_twiddle(r_shapes, vector.astype(object), np.ones((2, 8)))


@pytest.mark.parametrize("side", ["rows", "cols"])
def test_torch_layer_refuses_an_operator_with_one_permutation(side):
    # one permutation is refused as two are, with the layer recipe (not the message of
    # to_twiddle, which points to to_twiddle(permutations=True))
    pytest.importorskip("torch")
    from pydebut.torch_layer import to_torch_layer

    perm = np.random.default_rng(0).permutation(TWIDDLE_CHAIN.shape[0 if side == "rows" else 1])
    op = DeButOperator.random(TWIDDLE_CHAIN, rng=1)
    op = op.with_permutations(perm, None) if side == "rows" else op.with_permutations(None, perm)
    with pytest.raises(ValueError, match=r"to_torch_layer\(\): the operator carries") as refused:
        to_torch_layer(op)
    assert "layer(x[..., numpy.argsort(op.col_perm)])[..., op.row_perm]" in str(refused.value)


def test_torch_layer_of_non_finite_weights_in_another_dtype_keeps_them():
    # NaN weights of an operator built with check_finite=False are no range error
    torch = pytest.importorskip("torch")
    from pydebut.torch_layer import to_torch_layer

    weights = [np.array(w) for w in DeButOperator.random(TWIDDLE_CHAIN, rng=2).weights]
    weights[0].reshape(-1)[0] = np.nan
    op = DeButOperator(TWIDDLE_CHAIN, weights, check_finite=False)
    layer = to_torch_layer(op, dtype=torch.float32)
    assert torch.isnan(layer.twiddle).sum() == 1


def test_from_torch_layer_reads_a_lazily_negated_tensor():
    # else "Can't call numpy() on Tensor that has negative bit set"
    torch = pytest.importorskip("torch")
    from pydebut.torch_layer import from_torch_layer

    r_shapes, vector = DeButOperator.random(TWIDDLE_CHAIN, rng=3).to_twiddle()
    negated = torch._neg_view(torch.from_numpy(vector))
    assert negated.is_neg()
    back = from_torch_layer(types.SimpleNamespace(r_shapes=r_shapes, twiddle=negated))
    np.testing.assert_array_equal(back.to_twiddle()[1], -vector)


def test_from_torch_layer_reads_complex32_as_complex64():
    torch = pytest.importorskip("torch")
    from pydebut.torch_layer import from_torch_layer, to_torch_layer

    op = DeButOperator.random(TWIDDLE_CHAIN, rng=5, dtype=np.complex64)
    layer = to_torch_layer(op, dtype=torch.complex32)
    back = from_torch_layer(layer)
    assert back.dtype == np.complex64
    expected = layer.twiddle.detach().to(torch.complex64).numpy()
    np.testing.assert_array_equal(back.to_twiddle()[1], expected)
    assert np.any(back.to_twiddle()[1].imag)


@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_torch_layer_bias_has_the_layer_dtype(dtype):
    # a complex layer's bias is complex (a real one cannot train its imaginary part), a
    # double layer's double
    pytest.importorskip("torch")
    from pydebut.torch_layer import to_torch_layer

    layer = to_torch_layer(DeButOperator.random(TWIDDLE_CHAIN, rng=6, dtype=dtype), bias=True)
    assert layer.bias.dtype == layer.twiddle.dtype


# --- pyfaust -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(CHAINS))
@pytest.mark.parametrize("dtype", DTYPES)
def test_faust_round_trip(name, dtype):
    pytest.importorskip("pyfaust")
    op = DeButOperator.random(CHAINS[name], rng=5, dtype=dtype)
    faust = op.to_faust()
    assert faust.numfactors() == op.n_factors and faust.shape == op.shape
    assert faust.dtype == (np.complex128 if dtype == np.complex64 else dtype)
    np.testing.assert_allclose(faust.toarray(), op.toarray(), rtol=tolerance(dtype))
    back = DeButOperator.from_faust(faust)
    assert back.chain == op.chain
    np.testing.assert_allclose(back.toarray(), op.toarray(), rtol=tolerance(dtype))
    given = DeButOperator.from_faust(faust, chain=op.chain)
    np.testing.assert_array_equal(given.toarray(), back.toarray())


def test_from_faust_reads_a_weighted_permutation_as_a_factor():
    # D P, a permutation's support with different values, is no scaled permutation c P
    pyfaust = pytest.importorskip("pyfaust")
    weighted = sp.csr_matrix(np.diag([1.0, 2.0, 3.0, 4.0])[[1, 2, 3, 0]])
    dense = sp.csr_matrix(np.random.default_rng(0).standard_normal((4, 4)))
    faust = pyfaust.Faust([weighted, dense])
    np.testing.assert_allclose(
        DeButOperator.from_faust(faust).toarray(), faust.toarray(), rtol=1e-12
    )


def test_from_faust_reads_ones_down_one_column_as_a_factor():
    # one nonzero per row, all in one column: no permutation matrix
    pyfaust = pytest.importorskip("pyfaust")
    column = np.zeros((4, 4))
    column[:, 0] = 1.0
    dense = np.random.default_rng(0).standard_normal((4, 4))
    faust = pyfaust.Faust([sp.csr_matrix(column), sp.csr_matrix(dense)])
    np.testing.assert_allclose(
        DeButOperator.from_faust(faust).toarray(), column @ dense, rtol=1e-12
    )


def test_faust_permutations_at_the_ends_come_back_as_permutations():
    pyfaust = pytest.importorskip("pyfaust")
    chain = CHAINS["chainable"]
    m, n = chain.shape
    rng = np.random.default_rng(8)
    op = DeButOperator.random(chain, rng=8).with_permutations(
        rng.permutation(m), rng.permutation(n)
    )
    for given in (None, chain):
        back = DeButOperator.from_faust(op.to_faust(), chain=given)
        assert back.chain == chain
        np.testing.assert_array_equal(back.row_perm, op.row_perm)
        np.testing.assert_array_equal(back.col_perm, op.col_perm)
        np.testing.assert_array_equal(back.toarray(), op.toarray())
    # pyfaust's DFT ends with a bit reversal, scaled by 1/sqrt(n) when normed: a column
    # permutation and the butterfly chain, not a dense n x n factor
    for normed in (True, False):
        faust = pyfaust.dft(16, normed=normed)
        back = DeButOperator.from_faust(faust)
        assert back.chain == special.butterfly_chain(16) and back.row_perm is None
        np.testing.assert_array_equal(back.col_perm, special.bit_reversal(16))
        np.testing.assert_allclose(back.toarray(), faust.toarray(), atol=1e-14)
    # the identity, or a permutation that would leave no factor, stays a factor
    identity = pyfaust.Faust([sp.eye(4, format="csr"), sp.eye(4, format="csr")])
    assert DeButOperator.from_faust(identity).n_factors == 2
    swap = pyfaust.Faust([sp.csr_matrix(np.eye(4)[::-1])])
    assert DeButOperator.from_faust(swap).n_factors == 1


def test_faust_ends_are_read_as_permutations_where_the_chain_needs_them():
    # with a chain, a first factor that is a permutation matrix was always read as
    # row_perm: an operator with only a col_perm whose F_1 swaps neighbours came back as
    # "factor 2 of the Faust has nonzeros outside the support", its innocent F_2
    pyfaust = pytest.importorskip("pyfaust")
    from pydebut.faust import from_faust, to_faust

    swap = np.zeros((2, 2, 2, 1))
    swap[:, 0, 1] = swap[:, 1, 0] = 1  # F_1 = kron(I_2, [[0, 1], [1, 0]])
    chain = Chain([(4, 4, 2, 2, 1)] * 2)
    plain = DeButOperator(chain, [swap, np.random.default_rng(0).standard_normal((2, 2, 2, 1))])
    for row_perm, col_perm in [
        (None, [2, 0, 3, 1]),
        ([3, 1, 0, 2], None),
        ([3, 1, 0, 2], [2, 0, 3, 1]),
    ]:
        op = plain.with_permutations(row_perm, col_perm)
        back = from_faust(to_faust(op), chain)
        assert back.chain == chain
        for mine, theirs in ((back.row_perm, row_perm), (back.col_perm, col_perm)):
            assert (mine is None) == (theirs is None)
            np.testing.assert_array_equal(mine, theirs)
        np.testing.assert_array_equal(back.toarray(), op.toarray())
    # when both readings fit, the first end is the row permutation: the product is the same
    op = plain.with_permutations(col_perm=[1, 0, 3, 2])  # P_c fits the last factor's support
    back = from_faust(to_faust(op), chain)
    np.testing.assert_array_equal(back.row_perm, [1, 0, 3, 2])
    assert back.col_perm is None
    np.testing.assert_array_equal(back.toarray(), op.toarray())
    # when neither fits, both conflicts are named: here factor 2, dense
    faust = to_faust(op)
    factors = [faust.factors(i) for i in range(faust.numfactors())]
    factors[1] = sp.csr_matrix(np.ones((4, 4)))
    with pytest.raises(
        ValueError,
        match=r"^reading factor 1 of the Faust as the row permutation, factor 2 of the Faust "
        r"has nonzeros outside the support of the chain's factor 1, .*; reading factor 3 of "
        r"the Faust as the column permutation, factor 2 .* the chain's factor 2, ",
    ):
        from_faust(pyfaust.Faust(factors), chain)


def test_faust_factors_may_be_dense_and_diagonal_factors_read_as_one_block():
    pyfaust = pytest.importorskip("pyfaust")
    from pydebut.faust import from_faust

    op = DeButOperator.random(CHAINS["with a diagonal factor"], rng=6)
    faust = pyfaust.Faust([factor.toarray() for factor in op.factors()])
    back = from_faust(faust)
    assert back.chain[0].as_tuple() == (6, 6, 1, 1, 6)
    np.testing.assert_allclose(back.toarray(), op.toarray(), atol=1e-12)


def test_faust_messages_name_the_factor():
    pyfaust = pytest.importorskip("pyfaust")
    from pydebut.faust import from_faust, to_faust

    chain = CHAINS["chainable"]
    op = DeButOperator.random(chain, rng=7)
    factors = [sp.csr_matrix(factor) for factor in op.factors()]
    broken = factors[1].tolil()
    outside = np.argwhere(~chain[1].support())[0]
    broken[outside[0], outside[1]] = 1.0
    faust = pyfaust.Faust([factors[0], broken.tocsr(), factors[2]])
    with pytest.raises(ValueError, match=r"factor 2 of the Faust has nonzeros outside"):
        from_faust(faust, chain=chain)
    assert from_faust(faust).chain[1] != chain[1]  # inferred: a larger support
    with pytest.raises(ValueError, match="the Faust has 3 factors but the chain has 2"):
        from_faust(op.to_faust(), chain=chain.factors[:2])
    other = Chain.from_factorizations([3, 2, 2], [2, 3, 2])
    with pytest.raises(
        ValueError, match=r"factor 1 of the Faust is 12 x 18, but .* = \(12, 8, 3, 2, 4\)"
    ):
        from_faust(op.to_faust(), chain=other)
    with pytest.raises(TypeError, match="needs a pyfaust.Faust"):
        from_faust(op.toarray())
    with pytest.raises(TypeError, match="needs a DeButOperator"):
        to_faust(op.toarray())


def test_faust_factors_with_nan_are_refused_unless_check_finite_is_false():
    # the refusal suggested check_finite=False, which from_faust did not take
    pyfaust = pytest.importorskip("pyfaust")
    from pydebut.faust import from_faust

    op = DeButOperator.random(CHAINS["chainable"], rng=8)
    factors = [factor.toarray() for factor in op.factors()]
    factors[1][np.nonzero(factors[1])[0][0], np.nonzero(factors[1])[1][0]] = np.nan
    faust = pyfaust.Faust(factors)
    with pytest.raises(ValueError, match=r"contain NaN or infinity \(check_finite=False"):
        from_faust(faust)
    kept = DeButOperator.from_faust(faust, check_finite=False)
    assert np.isnan(kept.weights[1]).sum() == 1
    with pytest.raises(TypeError, match="check_finite must be a bool"):
        from_faust(faust, check_finite="no")


def test_faust_without_pyfaust_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyfaust", None)
    with pytest.raises(ImportError, match=r"pip install pydebut\[faust\]"):
        DeButOperator.random(CHAINS["chainable"], rng=0).to_faust()


def smallest_spec_by_trying_all(factor: sp.coo_array):
    """Every (d, t) in turn, fewest weights then largest t first: the definition."""
    from pydebut.faust import _divisors, _fits

    p, q = factor.shape
    for d in reversed(_divisors(np.gcd(p, q))):
        for t in reversed(_divisors(d)):
            spec = FactorSpec(p, q, p // d, q // d, t)
            if _fits(spec, factor):
                return spec
    raise AssertionError("d = 1 fits every factor")


@pytest.mark.parametrize("seed", range(40))
def test_the_smallest_shape_of_a_faust_factor_is_the_one_trying_every_shape_finds(seed):
    # trying every shape on every nonzero took minutes on a dense 5040 x 5040 factor
    from pydebut.faust import _smallest_spec

    rng = np.random.default_rng(seed)
    chain = Chain.from_factorizations(
        [int(rng.choice([1, 2, 3])), int(rng.choice([2, 4, 6]))],
        [int(rng.choice([1, 2, 4])), int(rng.choice([3, 4]))],
    )
    for spec in chain:
        rows, columns = spec.support_indices()
        kept = rng.random(rows.size) < rng.choice([0.3, 0.8, 1.0])
        factor = sp.coo_array((np.ones(kept.sum()), (rows[kept], columns[kept])), shape=spec.shape)
        assert _smallest_spec(factor) == smallest_spec_by_trying_all(factor)
    dense = sp.coo_array(np.ones((12, 18)))
    assert _smallest_spec(dense) == FactorSpec(12, 18, 12, 18, 1)
    assert _smallest_spec(sp.coo_array((12, 18))) == smallest_spec_by_trying_all(
        sp.coo_array((12, 18))
    )
