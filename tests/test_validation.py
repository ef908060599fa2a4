"""Bad input is refused before any work, with a message that names the problem.

Each test covers a class of input, and checks the message's content, not only
the exception's type.
"""

from __future__ import annotations

import json
import os
import pickle
import warnings
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

import numpy as np
import pytest
from scipy.sparse.linalg import LinearOperator

from pydebut import (
    Chain,
    DeButOperator,
    approximate,
    fit_als,
    fit_hierarchical,
    hierarchy_ranks,
)
from pydebut.cli import main
from pydebut.conv import conv2d
from pydebut.special import butterfly_chain, dft, hadamard, monarch_chain

SMALL = Chain([(4, 4, 2, 2, 2), (4, 4, 2, 2, 1)])


# --- weights and dtypes --------------------------------------------------------
@pytest.mark.parametrize(
    ("make", "dtype"),
    [
        (lambda w: DeButOperator(SMALL, w, dtype=np.float32), "float32"),
        (lambda w: DeButOperator(SMALL, w).astype(np.float32), "float32"),
        (lambda w: DeButOperator(SMALL, [x * (1 + 1j) for x in w]).astype("c8"), "complex64"),
    ],
)
def test_weights_that_overflow_in_the_cast_are_refused(make, dtype):
    weights = [np.ones(f.weight_shape) for f in SMALL]
    weights[1][0, 1, 0, 0] = 1e300
    with pytest.raises(ValueError, match=rf"weights of factor 2 of 2 .* overflow .* in {dtype}"):
        make(weights)
    unchecked = DeButOperator(SMALL, weights, dtype=np.float32, check_finite=False)
    assert np.isinf(unchecked.weights[1]).any()


@pytest.mark.parametrize("spelling", [">f8", "<f8", ">c16", np.dtype(">f4")])
def test_non_native_byte_orders_are_accepted(spelling):
    op = DeButOperator.random(SMALL, rng=0, dtype=spelling)
    assert op.dtype == np.dtype(spelling).newbyteorder("=")
    assert op.dtype.isnative
    x = np.arange(4.0).astype(np.dtype(spelling))
    np.testing.assert_allclose(op @ x, op.toarray() @ x.astype(op.dtype), rtol=1e-5)


@pytest.mark.parametrize(
    ("dtype", "named"), [("i4", "<i4 (int32)"), (np.float16, "<f2 (float16)"), ("U1", "<U1")]
)
def test_unsupported_dtypes_are_named_with_the_supported_ones(dtype, named):
    with pytest.raises(TypeError, match=r"has dtype .*; pydebut supports float32, float64") as err:
        DeButOperator.random(SMALL, dtype=dtype)
    assert named in str(err.value)


@pytest.mark.parametrize("copy", [lambda op: op, lambda op: pickle.loads(pickle.dumps(op))])
def test_weights_cannot_be_made_writeable_again(copy):
    original = DeButOperator.random(SMALL, rng=1)
    dense = original.toarray()  # caches a plan
    op = copy(original)
    for array in op.weights:
        for candidate in (array, array.base, array[..., :1], array.T):
            if isinstance(candidate, np.ndarray):
                with pytest.raises(ValueError, match="WRITEABLE"):
                    candidate.flags.writeable = True
        with pytest.raises(ValueError, match="read-only"):
            array[...] = 0
    np.testing.assert_array_equal(op.toarray(), dense)


# --- chain formats -------------------------------------------------------------
@pytest.mark.parametrize(
    ("sup", "sub", "message"),
    [
        ("4 4 4 4", [[4, 4, 4], [4]], r"sub: item 2 is \[4\], .* each exactly 3 numbers"),
        ([[4, 4, 4], [4]], "2 2 2 2 2 1", r"sup: item 1 is \[4, 4, 4\], .* exactly 2 numbers"),
        ([[4, 4], 4, 4], "2 2 2 2 2 1", r"sup: item 2 is 4, .* \(p, q\) pairs"),
        ("[[[4, 4]], [4, 4]]", "2 2 2 2 2 1", r"sup: item 1 is \[\[4, 4\]\]"),
        ("4 4 4", "2 2 2 2 2 1", "sup has 3 numbers, which is not a whole number of"),
        ("4 4 4 4", "[" * 100_000 + "]" * 100_000, "sub: JSON nested too deeply"),
        ("4 4 4 4", 5, "sub: expected a list of integers, got int"),
        ("\u0664 4 4 4", "2 2 2 2 2 1", "sup: expected integers in ASCII digits, got '\u0664'"),
        ("+4 4 4 4", "2 2 2 2 2 1", "sup: expected integers in ASCII digits, got '[+]4'"),
        ("4 4 4 4", "2 2 2 2 2 0_1", "sub: expected integers in ASCII digits, got '0_1'"),
        (b"4 4 4 4", "2 2 2 2 2 1", "sup: expected a list of integers, got bytes"),
        ("4 4 4 " + "9" * 5000, "2 2 2 2 2 1", "sup: unreadable integer: Exceeds the limit"),
        ("[4, 4, 4, " + "9" * 5000 + "]", "2 2 2 2 2 1", "sup: unreadable JSON list"),
        ("4 4 4 " + "x" * 5000, "2 2 2 2 2 1", "got 'x{39}$"),
    ],
)
def test_malformed_sup_sub_lists_are_refused(sup, sub, message):
    with pytest.raises((ValueError, TypeError), match=message):
        Chain.from_sup_sub(sup, sub)


@pytest.mark.parametrize(
    ("read", "name"),
    [(Chain.from_r_shapes, "R_shapes"), (Chain.from_abcd, "from_abcd")],
)
def test_malformed_json_strings_are_refused_by_every_reader(read, name):
    with pytest.raises(ValueError, match=f"{name}: malformed JSON list"):
        read("[1,")
    with pytest.raises(ValueError, match=f"{name}: JSON nested too deeply"):
        read("[" * 100_000 + "]" * 100_000)


def test_from_abcd_refuses_mappings_and_bytes():
    for value in ({(1, 2, 2, 1): 0}, b"1221"):
        with pytest.raises(TypeError, match="from_abcd expects a list of"):
            Chain.from_abcd(value)


@pytest.mark.parametrize(
    "argv",
    [["chains", "\u0664", "4"], ["chains", "4", "4", "--limit", "+3"], ["demo", "--seed", "1_0"]],
)
def test_integer_options_are_ascii_decimal(argv, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "invalid integer" in err and err.count("\n") == 1


def test_flat_and_nested_sup_sub_give_the_same_chain():
    nested = Chain.from_sup_sub([[4, 4], [4, 4]], "[[2, 2, 2], [2, 2, 1]]")
    assert nested == Chain.from_sup_sub("4 4 4 4", "2 2 2 2 2 1") == SMALL


@pytest.mark.parametrize("spelling", [" ", ", ", ","])
def test_nested_rows_may_be_given_side_by_side(capsys, spelling):
    # a shell passes --sup [4,4] [4,4] as two words, joined into "[4,4] [4,4]", which was
    # refused as "sup: malformed JSON list: Extra data"
    sup, sub = spelling.join(["[4,4]", "[4,4]"]), spelling.join(["[2,2,2]", "[2,2,1]"])
    assert Chain.from_sup_sub(sup, sub) == SMALL
    assert main(["check", "--sup", *sup.split(" "), "--sub", *sub.split(" ")]) == 0
    assert "dense" in capsys.readouterr().out
    with pytest.raises(ValueError, match="sup: malformed JSON list: Expecting value"):
        Chain.from_sup_sub("[4,4] [4,", sub)


def test_deeply_nested_chain_file_is_a_usage_error(tmp_path, capsys):
    path = tmp_path / "chain.json"
    path.write_text('{"sup": ' + "[" * 100_000 + "]" * 100_000 + "}")
    assert main(["check", "--chain", str(path)]) == 2
    assert "nested too deeply" in capsys.readouterr().err


def test_a_chain_file_with_an_integer_too_long_for_python_is_a_usage_error(tmp_path, capsys):
    path = tmp_path / "chain.json"
    path.write_text('{"sup": [[' + "4" * 5000 + ', 4]], "sub": [[1, 1, 1]]}')
    assert main(["check", "--chain", str(path)]) == 2
    assert f"{path} holds an integer of more than" in capsys.readouterr().err


@pytest.mark.parametrize(
    "call",
    [
        lambda: Chain.from_sup_sub([[list(range(10**6))]], [[2, 2, 2]]),
        lambda: Chain.from_r_shapes([[4, 4, 2, 2, list(range(10**6))]]),
        lambda: Chain.from_abcd([list(range(10**6))]),
        lambda: Chain([(4, 4, 2, 2, "x" * 10**6)]),
        lambda: Chain([(4, 4, 2, 2, range(10**6))]),
        lambda: Chain([(10**5000, 1, 1, 1, 1)]),
        lambda: Chain([(4, 4, 2, 2, 1), (-(10**5000), 4, 1, 1, 1)]),
        lambda: Chain.from_sup_sub([[4, 10**5000]], [[1, 1, 1]]),
    ],
)
def test_messages_echo_a_bounded_part_of_the_input(call):
    # a million-item list or a 5000-digit integer is named, never printed whole
    with pytest.raises((TypeError, ValueError)) as info:
        call()
    assert "factor" in str(info.value) or "item" in str(info.value)
    assert len(str(info.value)) < 400, str(info.value)[:400]


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: Chain.from_abcd(5), TypeError, r"from_abcd expects a list of \(a, b, c, d\)"),
        (
            lambda: Chain(butterfly_chain(8).to_json()),
            TypeError,
            r"got a mapping; the .* of to_json\(\) reads back with "
            r"Chain.from_sup_sub\(\*\*mapping\)",
        ),
        (lambda: Chain.from_abcd([5]), TypeError, r"factor 1: expected a tuple .* got int 5"),
        (lambda: monarch_chain(2.0), TypeError, "monarch_chain: b must be an integer, got the fl"),
        (lambda: monarch_chain(0), ValueError, "monarch_chain: b must be positive, got 0"),
        (lambda: butterfly_chain(8.0), TypeError, "butterfly_chain: n must be an integer, got"),
        (lambda: hadamard("8"), TypeError, "hadamard: n must be an integer, got str '8'"),
        (lambda: hadamard(6), ValueError, "hadamard: n must be a power of two >= 2, got 6"),
        # False was a ValueError (not a power of two), True a TypeError
        (lambda: hadamard(False), TypeError, "hadamard: n must be an integer, got a boolean F"),
        (lambda: dft(True), TypeError, "dft: n must be an integer, got a boolean True"),
        (lambda: dft(3), ValueError, "dft: n must be a power of two >= 2, got 3"),
        (
            lambda: dft(2**40),
            ValueError,
            r"dft\(n\) with n = 2\*\*40 \(87,960,930,222,080 weights\) needs .*"
            "; ask for a smaller n",
        ),
        (
            lambda: hadamard(2**40),
            ValueError,
            r"hadamard\(n\) with n = 2\*\*40 \(87,960,930,222,080 weights\) needs .*"
            "; ask for a smaller n",
        ),
        (
            lambda: Chain.from_factorizations(2, 2),
            TypeError,
            "from_factorizations: rs must be a list of integers .* got int 2",
        ),
        (
            lambda: DeButOperator.random(SMALL, rng="x"),
            TypeError,
            "rng must be None, a non-negative integer seed or a numpy.random.Generator, got str",
        ),
        (
            lambda: DeButOperator.random(SMALL, rng=-5),
            ValueError,
            "rng must be None, a non-negative integer seed or a numpy.random.Generator, got -5",
        ),
        (
            lambda: fit_als(np.ones((4, 4)), SMALL, init="random", rng=-5),
            ValueError,
            "rng must be None, a non-negative integer seed",
        ),
        (
            lambda: approximate(np.ones((4, 8)), 40, rng=1.5),
            TypeError,
            "rng must be None, a non-negative integer seed or a numpy.random.Generator, got float",
        ),
        (
            lambda: DeButOperator.identity([(10**30, 10**30, 2, 2, 10**30 // 2)]),
            ValueError,
            "an operator with 2,000,000,000,000,000,000,000,000,000,000 weights needs",
        ),
        (
            lambda: DeButOperator.random(SMALL, rng=0) @ np.ones((3, 2)),
            ValueError,
            r"cannot apply a 4 x 4 DeButOperator to an array of shape \(3, 2\): expected \(4,\)",
        ),
        (
            lambda: DeButOperator.random(SMALL, rng=0) @ np.ones((4, 2, 2)),
            ValueError,
            r"cannot apply a 4 x 4 DeButOperator to an array of shape \(4, 2, 2\): expected \(4,\)",
        ),
        (
            lambda: DeButOperator.random(SMALL, rng=0).dot([[[1.0]]]),
            ValueError,
            r"cannot apply a 4 x 4 DeButOperator to an array of shape \(1, 1, 1\): expected \(4,\)",
        ),
        (
            lambda: DeButOperator.random(SMALL, rng=0) @ "abc",
            TypeError,
            "cannot apply a DeButOperator to str 'abc'",
        ),
        (
            lambda: conv2d(np.ones((1, 3, 4, 4)), np.ones((8, 3, 2, 2)), 2),
            ValueError,
            r"operator must be the 2-D kernel matrix, got an array of shape \(8, 3, 2, 2\); "
            "kernel_to_matrix",
        ),
        (
            lambda: conv2d(np.full((1, 2, 5, 5), "a"), np.ones((4, 18)), 3),
            TypeError,
            "x must hold real or complex numbers, got dtype <U1",
        ),
        (
            lambda: conv2d(np.ones((1, 3, 4, 4)), "abc", 2),
            TypeError,
            "operator must be the kernel matrix: a DeButOperator, .* got str 'abc'",
        ),
    ],
)
def test_messages_name_the_argument_and_the_rule(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_hierarchy_ranks_takes_any_chain_spelling():
    tuples = [f.as_tuple() for f in SMALL]
    assert hierarchy_ranks(tuples) == hierarchy_ranks(SMALL) == (1,)
    assert hierarchy_ranks([list(t) for t in tuples]) == (1,)


# --- targets ---------------------------------------------------------------------
@pytest.fixture
def bad_targets(tmp_path):
    paths = {}
    paths["npz"] = tmp_path / "target.npz"
    np.savez(paths["npz"], target=np.ones(SMALL.shape))
    paths["json"] = tmp_path / "target.json"
    paths["json"].write_text(json.dumps(np.ones(SMALL.shape).tolist()))
    paths["objects"] = tmp_path / "objects.npy"
    np.save(paths["objects"], np.full(SMALL.shape, None, dtype=object), allow_pickle=True)
    paths["strings"] = tmp_path / "strings.npy"
    np.save(paths["strings"], np.full(SMALL.shape, "a"))
    good = tmp_path / "good.npy"
    np.save(good, np.ones(SMALL.shape))
    data = good.read_bytes()
    paths["truncated"] = tmp_path / "truncated.npy"
    paths["truncated"].write_bytes(data[:-8])  # the header whole, the data cut short
    paths["garbled"] = tmp_path / "garbled.npy"
    paths["garbled"].write_bytes(data[:10] + b"{garbage" + data[18:])
    paths["huge"] = tmp_path / "huge.npy"  # 2**80 entries: their count overflows int64
    with open(paths["huge"], "wb") as file:
        header = {"descr": "<f8", "fortran_order": False, "shape": (2**40, 2**40)}
        np.lib.format.write_array_header_1_0(file, header)
        file.write(bytes(64))
    paths["negative"] = tmp_path / "negative.npy"  # a size below zero: memmap's OverflowError
    with open(paths["negative"], "wb") as file:
        header = {"descr": "<f8", "fortran_order": False, "shape": (64, -576)}
        np.lib.format.write_array_header_1_0(file, header)
        file.write(bytes(8))
    return paths


@pytest.mark.filterwarnings("error")  # the one error, no warning before it
@pytest.mark.parametrize("fit", [fit_als, fit_hierarchical])
def test_target_files_that_are_not_numeric_npy_files_are_named(bad_targets, fit):
    messages = {
        "npz": r"target file '.*target.npz' is an .npz archive; save the matrix as a 2-D .npy",
        "json": r"target file '.*target.json' is not a .npy file; save the matrix",
        "objects": r"target file '.*objects.npy' holds Python objects, not numbers; pydebut never",
        "strings": r"must hold real or complex numbers, got strings \(dtype <U1\)",
        "truncated": r"'.*truncated.npy' is a damaged or truncated .npy file",
        "garbled": r"'.*garbled.npy' is a damaged or truncated .npy file",
        "huge": r"'.*huge.npy' is a damaged or truncated .npy file",
        "negative": r"'.*negative.npy' is a damaged or truncated .npy file",
    }
    for name, message in messages.items():
        with pytest.raises((ValueError, TypeError), match=message) as err:
            fit(str(bad_targets[name]), SMALL)
        assert "allow_pickle" not in str(err.value)


def _npy_file(path, header_text, data=b""):
    """A version 1.0 .npy file whose header is ``header_text``, as written."""
    header = header_text.encode("latin1")
    path.write_bytes(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + data)
    return path


@pytest.mark.parametrize("fit", [fit_als, fit_hierarchical, "approximate"])
def test_target_files_whose_header_and_data_disagree_are_refused(tmp_path, fit):
    fit = approximate_at_the_chains_budget if fit == "approximate" else fit
    good = np.random.default_rng(0).standard_normal(SMALL.shape)
    np.save(tmp_path / "good.npy", good)
    data = (tmp_path / "good.npy").read_bytes()
    unfinished = "{'descr': (((((\n"  # tokenize.TokenError escaped
    cases = {
        "unfinished": (_npy_file(tmp_path / "unfinished.npy", unfinished), "damaged or trunc"),
        "bools": (
            _npy_file(
                tmp_path / "bools.npy",
                "{'descr': '<f8', 'fortran_order': False, 'shape': (True, 4), }\n",
                bytes(32),
            ),
            "damaged or truncated",
        ),
        # np.load reads the first arrays' worth and ignores what follows: a second array,
        # or the tail of a longer one whose header was rewritten
        "trailing": (tmp_path / "trailing.npy", "header announces"),
    }
    (tmp_path / "trailing.npy").write_bytes(data + data)
    for path, words in cases.values():
        with pytest.raises(ValueError, match=f"{path.name}.*{words}"):
            fit(str(path), SMALL)


def approximate_at_the_chains_budget(target, chain):
    return approximate(target, chain.n_params, n_sweeps=0)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes on this system")
def test_a_named_pipe_as_target_is_refused_without_waiting_for_a_writer(tmp_path):
    # open() of a pipe for reading waits for a writer; the refusal came after it
    pipe = tmp_path / "pipe.npy"
    os.mkfifo(pipe)
    with ThreadPoolExecutor(1) as pool:
        loading = pool.submit(fit_hierarchical, str(pipe), SMALL)
        try:
            error = loading.exception(timeout=30)
        except FutureTimeout:
            os.close(os.open(pipe, os.O_WRONLY | os.O_NONBLOCK))  # releases the waiting open()
            pytest.fail("the fit waited for a writer to open the pipe")
    assert isinstance(error, ValueError) and "is not a regular file" in str(error)


@pytest.mark.skipif(not os.path.isdir("/dev/fd"), reason="needs /dev/fd")
def test_a_target_read_from_a_pipe_is_refused_by_name(tmp_path):
    # a .npy target is memory-mapped, which a pipe cannot be; the first read drained it
    np.save(tmp_path / "good.npy", np.ones(SMALL.shape))
    read, write = os.pipe()
    try:
        os.write(write, (tmp_path / "good.npy").read_bytes())
        os.close(write)
        with pytest.raises(ValueError, match=f"'/dev/fd/{read}' is not a regular file"):
            fit_hierarchical(f"/dev/fd/{read}", SMALL)
    finally:
        os.close(read)


@pytest.mark.skipif(
    np.finfo(np.longdouble).max <= np.finfo(np.float64).max, reason="longdouble is float64"
)
@pytest.mark.parametrize("fit", [fit_als, fit_hierarchical, "approximate", "dask"])
def test_targets_that_overflow_in_the_working_precision_are_refused(fit):
    # the Dask fit said "non-finite entries" after NumPy's cast warning
    target = np.random.default_rng(0).standard_normal(SMALL.shape).astype(np.longdouble)
    target[0, 0] = np.longdouble("1e400")  # approximate searched for minutes with an inf
    with pytest.raises(ValueError, match="target's entries overflow to infinity in float64"):
        fit_with(fit, target)


@pytest.mark.skipif(
    np.finfo(np.longdouble).max <= np.finfo(np.float64).max, reason="longdouble is float64"
)
@pytest.mark.parametrize("fit", [fit_als, fit_hierarchical, "approximate", "dask"])
def test_targets_that_underflow_in_the_working_precision_are_refused(fit):
    # all fitted the zero operator and reported error 0.0 (the true error is 1); the Dask
    # fit still did, as its scale pass looked at the target after the cast
    target = np.random.default_rng(0).standard_normal(SMALL.shape).astype(np.longdouble)
    target *= np.longdouble("1e-400")
    with pytest.raises(ValueError, match=r"underflow in float64: the largest is .*e-40[01]"):
        fit_with(fit, target)


@pytest.mark.parametrize("fit", [fit_als, fit_hierarchical, "approximate", "dask"])
@pytest.mark.parametrize(("dtype", "scale"), [(np.float32, 2e-44), (np.float64, 1e-322)])
def test_targets_below_the_normal_range_are_refused(fit, dtype, scale):
    # The fits ran on the target scaled up and scaled the weights back to subnormal numbers:
    # approximate reported 0.033 for a true error of 0.071 (float32), above the truncated SVD
    target = (scale * np.random.default_rng(0).standard_normal(SMALL.shape)).astype(dtype)
    assert 0 < np.abs(target).max() < np.finfo(dtype).tiny
    with pytest.raises(ValueError, match=f"underflow in {np.dtype(dtype)}: the largest is"):
        fit_with(fit, target)


def test_the_normal_range_refusal_shows_the_numbers_apart():
    # both were shown to 4 digits: "the largest is 1.175e-38, below ... 1.175e-38"
    tiny = np.finfo(np.float32).tiny
    target = np.full(SMALL.shape, np.nextafter(tiny, np.float32(0)), dtype=np.float32)
    with pytest.raises(ValueError, match=r"is 1\.1754942e-38, below .* 1\.1754944e-38"):
        fit_als(target, SMALL)


def fit_with(fit, target):
    """Fit ``target`` with ``fit``: a fitting function, "approximate" or "dask"."""
    if fit == "approximate":
        return approximate(target, 20)
    if fit == "dask":
        da = pytest.importorskip("dask.array")
        from pydebut.dask import fit_hierarchical as fit_out_of_core

        return fit_out_of_core(da.from_array(target, chunks=2), SMALL)
    return fit(target, SMALL)


def test_integer_targets_are_fitted_in_double_precision_whatever_holds_them():
    from scipy.sparse import csr_array
    from scipy.sparse.linalg import aslinearoperator

    target = np.arange(SMALL.shape[0] * SMALL.shape[1], dtype=np.int16).reshape(SMALL.shape)
    for holder in (target, csr_array(target), aslinearoperator(target)):
        assert fit_hierarchical(holder, SMALL).operator.dtype == np.float64


@pytest.mark.parametrize("fit", [fit_als, fit_hierarchical, "approximate"])
@pytest.mark.parametrize(("unit", "what"), [("s", "time differences"), ("D", "datetimes")])
def test_time_targets_are_refused(fit, unit, what):
    # NumPy counts timedelta64 as a signed integer: it was fitted as plain numbers
    kind = "timedelta64" if what == "time differences" else "datetime64"
    target = (
        np.arange(SMALL.shape[0] * SMALL.shape[1]).reshape(SMALL.shape).astype(f"{kind}[{unit}]")
    )
    with pytest.raises(TypeError, match=f"must hold real or complex numbers, got {what}"):
        approximate(target, 20) if fit == "approximate" else fit(target, SMALL)


def test_fit_checks_the_output_folder_before_fitting(tmp_path, capsys, monkeypatch):
    from pydebut.commands import fit as fit_command

    def no_fitting(*args, **kwargs):
        raise AssertionError("the fit ran before the output path was checked")

    monkeypatch.setattr(fit_command, "fit_als", no_fitting)
    target = tmp_path / "target.npy"
    np.save(target, np.ones(SMALL.shape))
    argv = ["fit", str(target), "--sup", "4 4 4 4", "--sub", "2 2 2 2 2 1", "--no-progress"]
    (tmp_path / "folder.npz").mkdir()
    for output, problem in [
        (tmp_path / "no" / "such" / "x.npz", "does not exist"),
        (tmp_path / "folder.npz", "it is a folder"),
        (tmp_path / "folder", "it is a folder"),  # written as folder.npz, as np.savez does
    ]:
        assert main([*argv, "-o", str(output)]) == 2
        err = capsys.readouterr().err
        assert f"cannot write the factors to {output}" in err and problem in err


class CountingOperator(LinearOperator):
    """A LinearOperator target that counts its products (how much of it was read)."""

    def __init__(self, shape, dtype=np.float64):
        super().__init__(dtype=dtype, shape=shape)
        self.products = 0

    def _matmat(self, X):
        self.products += 1
        return np.ones((self.shape[0], X.shape[1]), dtype=self.dtype)


@pytest.mark.parametrize(
    ("fit", "options", "error", "words"),
    [
        (fit_als, {}, ValueError, r"target has shape \(4096, 8192\) but the chain is 16 x 16"),
        (fit_hierarchical, {}, ValueError, "but the chain is 16 x 16"),
        (fit_als, {"progress": "no"}, TypeError, "progress must be a bool, got str"),
        (fit_hierarchical, {"permutation": "auto", "order": "x" * 10**6}, ValueError, "order"),
        (fit_hierarchical, {"permutation": [list(range(10**6))] * 3}, ValueError, "pair"),
    ],
)
def test_fit_options_and_shapes_are_checked_before_the_target_is_read(fit, options, error, words):
    # an operator or Dask target was made dense before its shape was compared with the chain's
    target = CountingOperator((4096, 8192))
    with pytest.raises(error, match=words) as info:
        fit(target, butterfly_chain(16), **options)
    assert target.products == 0
    assert len(str(info.value)) < 300  # a million-item argument is not echoed whole


def test_a_dask_target_is_checked_before_it_is_computed():
    da = pytest.importorskip("dask.array")
    huge = da.ones((200_000, 200_000), chunks=10_000)  # 298 GiB if computed
    with pytest.raises(ValueError, match="working copy of the 200000 x 200000 target"):
        fit_als(huge, Chain([(200_000, 200_000, 1, 1, 200_000)]))


def test_an_operator_declared_real_that_returns_complex_values_is_refused():
    twist = LinearOperator((16, 16), matvec=lambda x: 1j * x, matmat=lambda X: 1j * X)
    twist.dtype = np.dtype(np.float64)
    with pytest.raises(TypeError, match="declares dtype float64 but returns complex"):
        fit_als(twist, butterfly_chain(16))


def test_an_operator_declared_single_whose_values_overflow_there_is_refused_by_name():
    # NumPy warned "overflow encountered in cast", then the fit blamed non-finite entries
    # the operator never returned
    big = 1e39 * np.random.default_rng(0).standard_normal((16, 16))
    operator = LinearOperator((16, 16), matvec=big.dot, matmat=big.dot, dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="overflow to infinity in float32 .* declare its dt"):
            fit_hierarchical(operator, butterfly_chain(16))
        small = big / 1e39  # values of no float dtype are converted as they were
        objects = LinearOperator(
            (16, 16),
            matvec=small.dot,
            matmat=lambda x: small.dot(x).astype(object),
            dtype=np.float32,
        )
        assert fit_hierarchical(objects, butterfly_chain(16)).error < 1


def test_an_operator_whose_matmat_returns_the_wrong_shape_is_refused_by_name():
    # NumPy's "could not broadcast input array from shape (8,16) into shape (16,16)"
    half = np.random.default_rng(0).standard_normal((8, 16))
    operator = LinearOperator((16, 16), matvec=half.dot, matmat=half.dot, dtype=float)
    with pytest.raises(ValueError, match=r"shape \(16, 16\), but its matmat .* shape \(8, 16\)"):
        fit_als(operator, butterfly_chain(16))


@pytest.mark.parametrize("target", [[[1.0, 2.0], [3.0]], ([1.0, [2.0, 3.0]], [3.0, 4.0])])
def test_a_ragged_nested_list_target_is_refused_by_name(target):
    # NumPy's "setting an array element with a sequence ... inhomogeneous shape"
    with pytest.raises(ValueError, match="target is a nested .* all of the same length"):
        fit_hierarchical(target, Chain.from_factorizations([2], [2]))


@pytest.mark.parametrize("dtype", ["Float64", "Int64"])
def test_a_dataframe_of_nullable_columns_is_refused_with_the_conversion(dtype):
    # "the target must hold real or complex numbers, got Python objects" named no cause
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(np.arange(16.0).reshape(4, 4)).astype(dtype)
    with pytest.raises(TypeError, match=r"nullable .* target\.to_numpy\(dtype=float\)"):
        fit_hierarchical(frame, butterfly_chain(4))


def test_a_callback_answers_true_false_or_none():
    with pytest.raises(TypeError, match="callback must return True"):
        fit_als(np.ones((16, 16)), butterfly_chain(16), callback=lambda r: np.array(r.errors))


@pytest.mark.parametrize("fit", [fit_als, fit_hierarchical, approximate_at_the_chains_budget])
def test_a_folder_as_target_is_refused_by_name(tmp_path, fit):
    # Before: IsADirectoryError from open(); a missing file stays an OSError (documented)
    with pytest.raises(ValueError, match=f"the target file '{tmp_path}' is a folder"):
        fit(str(tmp_path), SMALL)
    with pytest.raises(FileNotFoundError):
        fit(str(tmp_path / "missing.npy"), SMALL)
