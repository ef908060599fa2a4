"""FactorSpec and Chain: structure, validation messages and interchange formats."""

import json
import math
import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pydebut import Chain, FactorSpec
from pydebut.special import PAPER_CHAINS
from pydebut.testing import chainable_chains, chains, dense_chains, rank_weighted_chains

PAPER_512x2048 = Chain.from_sup_sub(
    "512 512 512 1024 1024 1024 1024 1024 1024 1024 1024 2048 2048 2048 2048 2048 2048 2048",
    "2 2 256 2 4 128 2 2 64 2 2 32 2 2 16 2 4 8 2 2 4 2 2 2 2 2 1",
)
PAPER_VGG = Chain([(64, 72, 8, 9, 8), (72, 144, 2, 4, 4), (144, 288, 1, 2, 4), (288, 576, 4, 8, 1)])
PAPER_LENET = Chain(
    [
        (128, 256, 2, 4, 64),
        (256, 512, 1, 2, 64),
        (512, 512, 2, 2, 32),
        (512, 256, 2, 1, 16),
        (256, 400, 16, 25, 1),
    ]
)
NON_CHAINABLE_3_TO_64 = Chain.from_r_shapes(
    [[4, 3, 4, 3, 1], [8, 4, 2, 1, 4], [16, 8, 2, 1, 4], [32, 16, 2, 1, 16], [64, 32, 2, 1, 32]]
)


@given(chains(max_dim=40, max_factors=1))
def test_support_matches_definition(chain):
    spec = chain[0]
    p, q, r, s, t = spec.as_tuple()
    i, j = np.indices((p, q))
    expected = (i // (r * t) == j // (s * t)) & (i % t == j % t)
    mask = spec.support()
    assert np.array_equal(mask, expected)
    assert mask.sum() == spec.nnz == p * s == q * r
    assert (mask.sum(axis=1) == s).all() and (mask.sum(axis=0) == r).all()
    assert np.array_equal(spec.T.support(), mask.T)
    assert spec.n_blocks * r * t == p and spec.n_blocks * s * t == q


def test_support_indices_follow_weight_order():
    spec = FactorSpec(8, 4, 2, 1, 2)
    rows, cols = spec.support_indices()
    # W[b, rho, sigma, alpha] -> row (b*r + rho)*t + alpha, column (b*s + sigma)*t + alpha
    assert rows.tolist() == [0, 1, 2, 3, 4, 5, 6, 7]
    assert cols.tolist() == [0, 1, 0, 1, 2, 3, 2, 3]


@pytest.mark.parametrize(
    ("fields", "error", "message"),
    [
        ((4, 4, 2, 2, 0), ValueError, "t must be positive, got 0"),
        ((4, -4, 2, 2, 1), ValueError, "q must be positive, got -4"),
        ((4, 4, 2.0, 2, 1), TypeError, "r must be an integer"),
        ((4, 4, 2, True, 1), TypeError, "s must be an integer, got a boolean"),
        ((4, 4, "2", 2, 1), TypeError, "r must be an integer, got str"),
        ((6, 4, 4, 2, 1), ValueError, "p is not divisible by r*t = 4"),
        ((4, 6, 2, 4, 1), ValueError, "q is not divisible by s*t = 4"),
        ((6, 4, 2, 2, 2), ValueError, "p is not divisible by r*t = 4"),  # r alone divides p
        ((4, 6, 2, 2, 2), ValueError, "q is not divisible by s*t = 4"),
        ((8, 4, 2, 2, 1), ValueError, "block counts differ, p/(r*t) = 4 but q/(s*t) = 2"),
    ],
)
def test_invalid_factor_spec(fields, error, message):
    with pytest.raises(
        error, match=message.replace("*", r"\*").replace("(", r"\(").replace(")", r"\)")
    ):
        FactorSpec(*fields)
    with pytest.raises(error, match="factor 2 of 2"):
        Chain([(4, 4, 2, 2, 1), fields])


def test_numpy_integers_are_accepted_and_normalised():
    spec = FactorSpec(*np.array([4, 4, 2, 2, 2]))
    assert spec == FactorSpec(4, 4, 2, 2, 2) and type(spec.p) is int
    assert hash(spec) == hash(FactorSpec(4, 4, 2, 2, 2))


@given(chains(max_dim=32, max_factors=4), st.data())
def test_mutating_one_field_names_the_factor(chain, data):
    index = data.draw(st.integers(0, len(chain) - 1))
    field = data.draw(st.sampled_from("pqrst"))
    rows = [list(f.as_tuple()) for f in chain]
    value = rows[index]["pqrst".index(field)]
    bad = data.draw(st.sampled_from([0, -value, value * 97 + 1, 0.5, None]))
    rows[index]["pqrst".index(field)] = bad
    with pytest.raises((ValueError, TypeError)) as info:
        Chain(rows)
    message = str(info.value)
    assert f"factor {index + 1}" in message
    if bad is None or bad == 0.5 or bad <= 0:
        assert f"{field} must be" in message


def test_chain_must_connect():
    with pytest.raises(ValueError, match=r"factors 1 and 2 do not connect: q of factor 1 \(8\)"):
        Chain([(4, 8, 1, 2, 4), (4, 4, 2, 2, 1)])
    # the first broken rule, in order: factor 3's divisibility was named before
    with pytest.raises(ValueError, match="factors 1 and 2 do not connect"):
        Chain([(8, 8, 2, 2, 4), (4, 8, 1, 2, 4), (8, 8, 3, 2, 2)])
    with pytest.raises(ValueError, match="at least one factor"):
        Chain([])
    with pytest.raises(TypeError, match="iterable of factors"):
        Chain(5)
    with pytest.raises(ValueError, match="expected 5 integers"):
        Chain([(4, 4, 2, 2)])
    with pytest.raises(ValueError, match=r"factor 1 of 1: expected 5 integers .*, got 6"):
        Chain([(4, 4, 2, 2, 1, 7)])


def test_paper_chains_structure():
    assert dict(PAPER_CHAINS) == {
        "resnet50-layer4": PAPER_512x2048,
        "vgg16-conv1": PAPER_VGG,
        "lenet-fc1": PAPER_LENET,
        "pointwise-3-to-64": NON_CHAINABLE_3_TO_64,
    }
    assert PAPER_512x2048.shape == (512, 2048) and PAPER_512x2048.n_params == 25_600
    assert PAPER_512x2048.is_chainable and PAPER_512x2048.kind == "monotonic"
    assert PAPER_VGG.shape == (64, 576) and PAPER_VGG.kind == "monotonic"
    assert PAPER_VGG.is_chainable
    assert PAPER_LENET.dims[::-1] == (400, 256, 512, 512, 256, 128)
    assert PAPER_LENET.kind == "bulging" and PAPER_LENET.is_chainable
    assert NON_CHAINABLE_3_TO_64.shape == (64, 3) and not NON_CHAINABLE_3_TO_64.is_chainable
    assert PAPER_512x2048.compression_ratio == pytest.approx(1_048_576 / 25_600)
    assert PAPER_512x2048.flops == 2 * 25_600


def test_kind_other():
    # 4 -> 8 -> 4: grows then shrinks without exceeding max(m, n) = 8? It reaches 8 = max.
    chain = Chain([(8, 4, 2, 1, 4), (4, 8, 1, 2, 4), (8, 8, 2, 2, 2)])
    assert chain.kind == "other" and not chain.is_bulging
    assert Chain([(4, 8, 1, 2, 4), (8, 4, 2, 1, 4)]).kind == "bulging"


@given(chainable_chains(max_dim=64, max_factors=5))
def test_chainable_relations(chain):
    assert chain.is_chainable
    k = [f.n_blocks for f in chain]
    t = [f.t for f in chain]
    assert k[0] == 1 and t[-1] == 1
    for left, right in zip(chain.factors, chain.factors[1:]):
        assert left.t == right.r * right.t and right.n_blocks == left.n_blocks * left.s
    assert chain.T.T == chain


@given(st.one_of(chains(), dense_chains(), rank_weighted_chains(), chainable_chains()))
def test_interchange_formats_round_trip(chain):
    sup, sub = chain.to_sup_sub()
    assert Chain.from_sup_sub(sup, sub) == chain
    flat_sup = " ".join(str(v) for pair in sup for v in pair)
    flat_sub = ", ".join(str(v) for triple in sub for v in triple)
    assert Chain.from_sup_sub(flat_sup, flat_sub) == chain
    assert Chain.from_sup_sub(json.dumps(sup), json.dumps(sub)) == chain
    assert Chain.from_r_shapes(chain.to_r_shapes()) == chain
    assert Chain.from_abcd(chain.to_abcd()) == chain
    assert Chain.from_sup_sub(**json.loads(json.dumps(chain.to_json()))) == chain
    assert Chain(chain) == chain and Chain(list(chain)) == chain
    assert eval(repr(chain), {"Chain": Chain}) == chain


@pytest.mark.parametrize(
    ("size", "digits"), [(2**1100, 332), (10**5000, 5001)], ids=["2**1100", "10**5000"]
)
def test_huge_chains_describe_themselves(size, digits):
    # 10**5000 has more digits than str() converts; m*n / n_params = size overflows a float.
    chain = Chain([(size, size, 1, 1, size)])
    assert chain.compression_ratio == math.inf
    shown = f"<integer of about {digits} digits>"
    assert repr(chain) == f"Chain([({shown}, {shown}, 1, 1, {shown})])"
    head, line = chain.describe().splitlines()
    assert head.startswith(f"Chain {shown} x {shown}, 1 factors, {shown} params")
    assert "(compression infx)" in head and f"nnz={shown}" in line


def test_r_shapes_are_in_application_order():
    assert PAPER_VGG.to_r_shapes()[0] == [288, 576, 4, 8, 1]
    assert Chain.from_r_shapes(PAPER_VGG.to_r_shapes())[0] == FactorSpec(64, 72, 8, 9, 8)


def test_an_empty_slice_of_a_chain_is_refused_naming_the_slice():
    chain = Chain([(4, 4, 2, 2, 2), (4, 4, 2, 2, 1)])
    assert chain[1:] == Chain([(4, 4, 2, 2, 1)]) and chain[:] == chain
    for index, written in [
        (slice(5, None), "[5:]"),
        (slice(2, 0), "[2:0]"),
        (slice(0, 2, -1), "[0:2:-1]"),
    ]:
        with pytest.raises(
            ValueError, match=re.escape(f"the slice {written} of a chain of 2 factors selects none")
        ):
            chain[index]


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (
            [[4, 4, 2, 2, 1], [4, 4, 2, 3, 1]],
            "R_shapes row 2 of 2 (F_1) (p=4, q=4, r=2, s=3, t=1): q is not divisible by s*t = 3",
        ),
        (
            [[4, 4, 2, 2, 1], [4, 4, 2, 2, 2], [8, 8, 2, 2, 4]],
            "R_shapes rows 2 and 3 do not connect: row 3 takes q = 8 inputs, row 2 gives p = 4",
        ),
    ],
)
def test_r_shapes_errors_name_the_rows_as_given(rows, message):
    # the rows are reversed into pydebut's order: the messages named factors counted from
    # the other end of the user's list
    with pytest.raises(ValueError, match=re.escape(message)):
        Chain.from_r_shapes(rows)


def test_abcd_with_rank_weights():
    # (a, b, c, d, p, q): support kron(I_a, kron(ones(b*p, c*q), I_d))
    chain = Chain.from_abcd([(1, 2, 2, 2, 1, 3), (2, 2, 2, 1, 3, 1)])
    assert chain.factors == (FactorSpec(4, 12, 2, 6, 2), FactorSpec(12, 4, 6, 2, 1))
    assert chain.shape == (4, 4) and not chain.is_chainable
    with pytest.raises(ValueError, match=r"factor 1: expected \(a, b, c, d\)"):
        Chain.from_abcd([(1, 2, 2)])
    with pytest.raises(ValueError, match="d must be positive"):
        Chain.from_abcd([(1, 2, 2, 0)])


@pytest.mark.parametrize(
    ("sup", "sub", "message"),
    [
        ("4 4 4", "2 2 1", "not a whole number of \\(p, q\\) pairs"),
        ("4 4", "2 2", "not a whole number of \\(r, s, t\\) triples"),
        ("4 4 4 4", "2 2 2", "sup has 2 \\(p, q\\) pairs but sub has 1"),
        ("4 x", "2 2 1", "sup: expected integers"),
        ("[[4, 4]", "2 2 1", "sup: malformed JSON"),
        ("", "2 2 1", "sup is empty"),
    ],
)
def test_malformed_sup_sub(sup, sub, message):
    with pytest.raises(ValueError, match=message):
        Chain.from_sup_sub(sup, sub)


def test_from_factorizations_matches_formula():
    chain = Chain.from_factorizations([2, 4, 2], [3, 1, 2])
    # t_l = prod_{i>l} r_i, k_l = prod_{i<l} s_i
    assert [f.t for f in chain] == [8, 2, 1]
    assert [f.n_blocks for f in chain] == [1, 3, 3]
    assert chain.shape == (16, 6) and chain.is_chainable
    with pytest.raises(ValueError, match="equal lengths"):
        Chain.from_factorizations([2], [2, 2])
    with pytest.raises(ValueError, match="factor 2 of 2: ss\\[1\\] must be positive"):
        Chain.from_factorizations([2, 2], [2, 0])


def test_from_factorizations_of_numpy_ints_does_not_wrap():
    # uint8 radices 16 x 16 gave p = 0 ("p must be positive"), int8 8 x 16 p = -128
    expected = Chain.from_factorizations([16, 16], [16, 16])
    assert Chain.from_factorizations(np.array([16, 16], np.uint8), [np.uint8(16)] * 2) == expected
    assert Chain.from_factorizations([np.int8(8), np.int8(16)], [1, 1]).shape == (128, 1)
    huge = Chain.from_factorizations([np.int64(2**40)] * 2, [np.int64(1)] * 2)
    assert huge == Chain.from_factorizations([2**40] * 2, [1, 1]) and huge.shape == (2**80, 1)


def test_describe_and_slicing():
    text = PAPER_VGG.describe()
    assert text.splitlines()[0].startswith("Chain 64 x 576, 4 factors")
    assert "F_4  (p=288, q=576, r=4, s=8, t=1)" in text
    assert PAPER_VGG[1:3] == Chain([(72, 144, 2, 4, 4), (144, 288, 1, 2, 4)])
    assert PAPER_VGG[:2] + PAPER_VGG[2:] == PAPER_VGG
    assert len(PAPER_VGG) == PAPER_VGG.n_factors == 4


def test_from_abcd_refuses_a_five_tuple_naming_the_factor():
    with pytest.raises(ValueError, match=r"^factor 2: expected \(a, b, c, d\) or"):
        Chain.from_abcd([(1, 2, 2, 2), (2, 2, 2, 1, 1)])
