"""Exact density of a chain: the paper's "bipolar test", decided from the supports.

A chain ``F_1 ... F_L`` is *dense* when every output of the product is
connected to every input through the supports of the factors, so no entry of
the product is structurally zero. Chainable chains (Concepts page of the
documentation) and the rank-weighted chains of Le et al. are always dense, which
:func:`is_dense` recognises in O(L). For any other chain it decides exactly by
propagating boolean reachability, packed 64 inputs to a word, through each
factor's block structure; :func:`is_dense_numeric` is the slow numeric twin
(random positive weights, dense product) the tests compare it with.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from math import gcd
from typing import Any

import numpy as np

from .chains import _as_chain, rank_weights
from .operator import random_generator
from .spec import Chain

__all__ = [
    "DensityResult",
    "is_dense",
    "is_dense_numeric",
    "partial_supports",
    "product_support",
]

_REACH_CHUNK_BYTES = 1 << 24
#: Word operations :func:`partial_supports` counts for each factor step, however small its
#: reach sets: a step's NumPy calls cost about 9 us, a word about 1.4 ns.
_STEP_WORK = 2**13
MAX_REACH_WORK = 2**28
"""Largest reachability computation :func:`is_dense` and the supports undertake.

Counted in 64-bit words for the full propagation (``ceil(min(m, n) / 64)``
words per intermediate coordinate) and in booleans for a single output's
reach (one per coordinate): about two seconds and, for one output, 256 MB.
Larger requests are refused with a ``ValueError`` before any work."""
MAX_SUPPORT_ENTRIES = 2**30
"""Largest number of booleans :func:`product_support` and :func:`partial_supports` return."""
MAX_NUMERIC_WORK = 2**37
"""Most multiply-adds :func:`is_dense_numeric` spends multiplying dense factors.

``m * sum(p_l * q_l for l >= 2)`` for an ``m x n`` chain: ``butterfly_chain(2048)``
takes 8.6e10 of them, 1.9 s on a 2-core Zen 4 VM (``butterfly_chain(4096)``, 7.6e11,
took 17-53 s and is refused). Larger requests are refused with a ``ValueError``
before any work."""
MAX_NUMERIC_ENTRIES = 2**27
"""Most float64 entries (1 GiB) :func:`is_dense_numeric` holds at once: the partial
product ``m x p_l``, the dense factor ``p_l x q_l`` and the next partial product
``m x q_l``. ``butterfly_chain(2048)`` needs ``3 * 2048**2``."""


@dataclass(frozen=True)
class DensityResult:
    """Verdict of a density check; true in a boolean context when the product is dense.

    Attributes
    ----------
    dense : bool
        Whether every output is connected to every input.
    missing : tuple of int or None
        The first ``(output, input)`` pair, in row-major order, that no path
        connects; ``None`` when dense.
    method : str
        How it was decided: ``"chainable"``, ``"rank-weighted"`` (dense by
        structure, O(L)), ``"transpose chainable"``, ``"transpose rank-weighted"``
        (the transposed chain is, so its product, and this one, are dense),
        ``"reachability"`` (boolean propagation) or ``"numeric"``
        (:func:`is_dense_numeric`).
    """

    dense: bool
    missing: tuple[int, int] | None
    method: str

    def __bool__(self) -> bool:
        return self.dense

    def __str__(self) -> str:
        if self.dense:
            return f"dense ({self.method})"
        i, j = self.missing  # type: ignore[misc]
        return f"not dense: output {i} is not connected to input {j} ({self.method})"


def is_dense(chain: Chain | Iterable[Any]) -> DensityResult:
    """Decide exactly whether the product of a chain can be fully dense.

    The product ``F_1 ... F_L`` with generic (e.g. positive) weights has a
    non-zero at ``(i, j)`` iff some path ``i = i_0, i_1, ..., i_L = j`` has
    every ``(i_{l-1}, i_l)`` in the support of ``F_l``.

    Parameters
    ----------
    chain : Chain or iterable of (p, q, r, s, t)
        The chain, left to right.

    Returns
    -------
    DensityResult
        True in a boolean context when dense; otherwise ``missing`` is the
        first disconnected ``(output, input)`` pair in row-major order.

    Raises
    ------
    TypeError, ValueError
        If ``chain`` is not a valid chain (as :class:`~pydebut.Chain` checks it).
    ValueError
        If deciding would take more than ``MAX_REACH_WORK`` word operations
        (see Notes), before any of them.

    Notes
    -----
    Chainable and rank-weighted chains are recognised in O(L) and are dense,
    and so are chains whose transpose (:attr:`Chain.T`) is one: a product is
    dense exactly when its transpose is.
    Any other chain is decided by propagating, from the input side, the set of
    inputs each intermediate coordinate reaches, as packed bits. Factor ``l``
    maps the reach sets ``R`` of its ``q`` columns, viewed as ``(k, s, t)``, to
    those of its rows, ``(k, r, t)``, by

        R'[b, rho, alpha] = OR_sigma R[b, sigma, alpha],

    which costs ``q_l`` word operations per 64 inputs. The smaller of ``m`` and
    ``n`` is the bit axis (the transposed chain is used when ``m < n``), cut in
    chunks that keep the working set near 16 MB.

    Two shortcuts come first. With ``g = gcd(k_l) > 1`` the product is
    block-diagonal with ``g`` blocks, and with ``h = gcd(t_l) > 1`` it keeps
    ``i mod h``: either way it is not dense, and the first missing pair, in
    row 0, comes from the reach of output 0 in the chain shrunk by ``g h``
    (so ``[(2**40, 2**40, 2, 2, 1)] * 2`` is decided at once). Otherwise output
    0's reach is computed alone (one boolean per coordinate) before every
    output's. Work beyond ``MAX_REACH_WORK`` is refused with a ``ValueError``
    before it starts.

    Examples
    --------
    >>> bool(is_dense(Chain.from_factorizations([2, 4], [4, 2])))
    True
    >>> result = is_dense([(4, 4, 2, 2, 1), (4, 4, 2, 2, 1)])
    >>> result.dense, result.missing, result.method
    (False, (0, 2), 'reachability')
    >>> print(result)
    not dense: output 0 is not connected to input 2 (reachability)
    """
    chain = _as_chain(chain)
    for candidate, prefix in ((chain, ""), (chain.T, "transpose ")):
        family = _dense_family(candidate)
        if family is not None:
            return DensityResult(True, None, prefix + family)
    return DensityResult(*_decide(chain), "reachability")


def _dense_family(chain: Chain) -> str | None:
    """``"chainable"`` or ``"rank-weighted"`` when the chain is dense by structure."""
    if chain.is_chainable:
        return "chainable"
    if rank_weights(chain) is not None:
        return "rank-weighted"
    return None


def _decide(chain: Chain) -> tuple[bool, tuple[int, int] | None]:
    """Density and first missing pair, from the block structure where it decides.

    With ``g = gcd(k_l)`` every factor is block-diagonal with ``g`` equal
    contiguous blocks, so the product is too; with ``h = gcd(t_l)`` every
    factor keeps ``i mod h``, so the product connects output ``i`` only to
    inputs ``j = i (mod h)``. Either way, with ``g h > 1``, output 0 misses an
    input and the first missing pair lies in row 0: it is found from the reach
    of output 0 in the reduced chain ``(p/(g h), q/(g h), r, s, t/h)``. When
    ``g = h = 1``, output 0's reach is tried first (cheap), then every output's.
    """
    g = gcd(*(spec.n_blocks for spec in chain))
    h = gcd(*(spec.t for spec in chain))
    if g * h > 1:
        reduced = Chain(
            [(f.p // (g * h), f.q // (g * h), f.r, f.s, f.t // h) for f in chain.factors]
        )
        _check_work(chain, _row_work(reduced), "output 0's reach")
        candidates = [chain.shape[1] // g] if g > 1 else []
        if h > 1:
            candidates.append(1)
        unreached = _first_unreached(reduced)
        if unreached is not None:
            candidates.append(unreached * h)
        return False, (0, min(candidates))
    _check_work(chain, _row_work(chain), "output 0's reach")
    unreached = _first_unreached(chain)
    if unreached is not None:
        return False, (0, unreached)
    m, n = chain.shape
    _check_work(chain, -(-min(m, n) // 64) * _row_work(chain), "every output's reach")
    missing = _first_missing(chain)
    return missing is None, missing


def _row_work(chain: Chain) -> int:
    return sum(spec.p + spec.q for spec in chain)


def _check_work(chain: Chain, work: int, what: str) -> None:
    if work > MAX_REACH_WORK:
        m, n = chain.shape
        raise ValueError(
            f"computing {what} for this {m} x {n} chain takes about {work:,} operations, "
            f"above the limit MAX_REACH_WORK = {MAX_REACH_WORK:,} of pydebut.density: "
            f"the chain is valid, but {what} is not computed beyond that limit, so this "
            "test cannot decide it (fewer or smaller factors stay within the limit)"
        )


def _first_unreached(chain: Chain) -> int | None:
    """Smallest input that output 0 does not reach, by propagating its reach set."""
    reach = np.zeros(chain.shape[0], dtype=bool)
    reach[0] = True
    for spec in chain:
        k, r, s, t = spec.weight_shape
        blocks = reach.reshape(k, r, t).any(axis=1)
        reach = np.broadcast_to(blocks[:, None], (k, s, t)).reshape(-1)
    unreached = np.flatnonzero(~reach)
    return int(unreached[0]) if unreached.size else None


def _first_missing(chain: Chain) -> tuple[int, int] | None:
    """First ``(output, input)`` pair that no path connects, in row-major order."""
    m, n = chain.shape
    if m < n:
        # Bits over the outputs (rows of the transposed chain's reach sets are
        # inputs): the first chunk with a gap holds the smallest output that
        # misses some input.
        for start, size, words in _reach_chunks(chain.T):
            common = np.bitwise_and.reduce(words, axis=0)
            outputs = np.flatnonzero(~_unpack(common[None], size)[0])
            if outputs.size:
                i = int(outputs[0])
                byte, bit = divmod(i, 8)
                column = words.view(np.uint8)[:, byte] & (1 << (7 - bit))
                return start + i, int(np.flatnonzero(column == 0)[0])
        return None
    best: tuple[int, int] | None = None
    for start, size, words in _reach_chunks(chain):
        everything = _pack_ones(size, words.shape[1])
        rows = np.flatnonzero((words != everything).any(axis=1))
        if rows.size:
            i = int(rows[0])
            pair = (i, start + int(np.flatnonzero(~_unpack(words[i : i + 1], size)[0])[0]))
            best = pair if best is None else min(best, pair)
    return best


def _pack_ones(size: int, n_words: int) -> np.ndarray:
    """One row of ``n_words`` words with the first ``size`` bits set."""
    bits = np.zeros(n_words * 64, dtype=bool)
    bits[:size] = True
    return np.packbits(bits).view(np.uint64)


def _unpack(words: np.ndarray, size: int) -> np.ndarray:
    """Boolean ``(rows, size)`` view of rows of packed bits."""
    return np.unpackbits(words.view(np.uint8), axis=1, count=size).astype(bool)


def _reach_chunks(chain: Chain) -> Iterator[tuple[int, int, np.ndarray]]:
    """Yield ``(start, size, words)``: bit ``j`` of row ``i`` of ``words`` is set
    iff output ``i`` reaches input ``start + j``.

    Inputs are taken in chunks of at most 16 MB of reach sets; within a chunk
    the reach sets travel as rows of 64-bit words from ``F_L`` to ``F_1``.
    """
    n = chain.shape[1]
    width = max(64, (_REACH_CHUNK_BYTES * 8 // chain.max_dim) // 64 * 64)
    for start in range(0, n, width):
        size = min(width, n - start)
        bits = np.zeros((n, -(-size // 64) * 8), dtype=np.uint8)
        offsets = np.arange(size)
        bits[start + offsets, offsets // 8] = np.left_shift(1, 7 - offsets % 8).astype(np.uint8)
        words = bits.view(np.uint64)
        for spec in reversed(chain.factors):
            words = _propagate(spec.weight_shape, words)
        yield start, size, words


def _propagate(weight_shape: tuple[int, int, int, int], words: np.ndarray) -> np.ndarray:
    """Reach sets of a factor's rows from those of its columns (``OR`` over ``sigma``)."""
    k, r, s, t = weight_shape
    n_words = words.shape[1]
    blocks = words.reshape(k, s, t, n_words)
    merged = np.bitwise_or.reduce(blocks, axis=1) if s > 1 else blocks[:, 0]
    rows = np.broadcast_to(merged[:, None], (k, r, t, n_words))
    return rows.reshape(k * r * t, n_words)


def product_support(chain: Chain | Iterable[Any]) -> np.ndarray:
    """Boolean ``(m, n)`` support of the product ``F_1 … F_L``.

    Entry ``(i, j)`` is True iff some path connects output ``i`` to input ``j``;
    with generic weights these are exactly the non-zeros of the product. The
    reach sets are packed over the smaller of ``m`` and ``n`` (the transposed
    chain is used when ``m < n``), as in :func:`is_dense`.

    Parameters
    ----------
    chain : Chain or iterable of (p, q, r, s, t)
        The chain, left to right.

    Returns
    -------
    ndarray of bool, shape (m, n)

    Raises
    ------
    TypeError, ValueError
        If ``chain`` is not a valid chain (as :class:`~pydebut.Chain` checks it).
    ValueError
        Before any work, if the support holds more than ``MAX_SUPPORT_ENTRIES``
        booleans or computing it exceeds ``MAX_REACH_WORK``.

    Examples
    --------
    >>> product_support([(4, 4, 2, 2, 1), (4, 4, 2, 2, 1)]).astype(int)
    array([[1, 1, 0, 0],
           [1, 1, 0, 0],
           [0, 0, 1, 1],
           [0, 0, 1, 1]])
    """
    chain = _as_chain(chain)
    _check_support_size(chain, chain.shape[0] * chain.shape[1])
    _check_work(chain, _support_work(chain), "every output's reach")
    return _support(chain)


def _support_work(chain: Chain) -> int:
    """Word operations of :func:`_support`: bits over the smaller side of the product."""
    return -(-min(chain.shape) // 64) * _row_work(chain)


def _support(chain: Chain) -> np.ndarray:
    """Support of the product, the reach sets packed over its smaller side."""
    m, n = chain.shape
    if m < n:
        return np.ascontiguousarray(_support(chain.T).T)
    return np.concatenate([_unpack(words, size) for _, size, words in _reach_chunks(chain)], axis=1)


def _check_support_size(chain: Chain, entries: int) -> None:
    if entries > MAX_SUPPORT_ENTRIES:
        m, n = chain.shape
        raise ValueError(
            f"the supports of this {m} x {n} chain hold {entries:,} booleans, above the "
            f"limit MAX_SUPPORT_ENTRIES = {MAX_SUPPORT_ENTRIES:,} of pydebut.density; "
            "ask is_dense() for the verdict, or take a smaller chain"
        )


def partial_supports(chain: Chain | Iterable[Any]) -> list[np.ndarray]:
    """Supports of the partial products ``F_L``, ``F_{L-1} F_L``, …, ``F_1 … F_L``.

    The densification seen while applying the chain, from the input side. The
    reach sets of the inputs travel once through the chain, each partial
    product's support read off on the way; where that costs more than
    computing each partial product alone with its smaller side packed (as
    :func:`product_support` does; a chain far wider than tall), each is
    computed alone. The cheaper way's work, counted with a fixed cost per
    factor step, is checked against ``MAX_REACH_WORK`` before any is computed.

    Parameters
    ----------
    chain : Chain or iterable of (p, q, r, s, t)
        The chain, left to right.

    Returns
    -------
    list of ndarray of bool
        ``L`` arrays: the support of ``F_l ... F_L``, of shape ``(p_l, n)``, for
        ``l = L`` down to 1 (the last is :func:`product_support`'s).

    Raises
    ------
    TypeError, ValueError
        If ``chain`` is not a valid chain (as :class:`~pydebut.Chain` checks it).
    ValueError
        Before any work, if the supports together hold more than
        ``MAX_SUPPORT_ENTRIES`` booleans or computing them exceeds ``MAX_REACH_WORK``.

    Examples
    --------
    >>> [int(s.sum()) for s in partial_supports(Chain.from_factorizations([2, 2], [2, 2]))]
    [8, 16]
    """
    chain = _as_chain(chain)
    n = chain.shape[1]
    _check_support_size(chain, n * sum(spec.p for spec in chain))  # p_l x n each
    steps = chain.n_factors
    one_cell_each = max(n, *(spec.p for spec in chain))  # an input or an output per cell
    through_work = _pooled_work(chain, one_cell_each) + steps * _STEP_WORK
    # F_l ... F_L alone: its p_l or n packed, over its factors' p + q, a step each
    suffix_rows = np.cumsum([spec.p + spec.q for spec in reversed(chain.factors)])[::-1]
    alone_work = sum(
        -(-min(spec.p, n) // 64) * int(rows) + (steps - first) * _STEP_WORK
        for first, (spec, rows) in enumerate(zip(chain, suffix_rows, strict=True))
    )
    what = f"the supports of the {steps} partial products"
    _check_work(chain, min(through_work, alone_work), what)
    if through_work <= alone_work:
        return _pooled_partial_supports(chain, one_cell_each)
    return [_support(chain[first:]) for first in range(steps - 1, -1, -1)]


def _input_cells(n: int, max_pixels: int) -> tuple[int, int, int]:
    """Inputs per cell, cells and 64-bit words of a reach set over at most ``max_pixels``
    cells of ``n`` inputs."""
    width = -(-n // max_pixels)
    n_cells = -(-n // width)
    return width, n_cells, -(-n_cells // 64)


def _pooled_work(chain: Chain, max_pixels: int) -> int:
    """Word operations of :func:`_pooled_partial_supports` on ``chain`` (checked against
    ``MAX_REACH_WORK``)."""
    return _input_cells(chain.shape[1], max_pixels)[2] * _row_work(chain)


def _pooled_partial_supports(chain: Chain, max_pixels: int) -> list[np.ndarray]:
    """Pooled supports of ``F_L``, ``F_{L-1} F_L``, ..., ``F_1 ... F_L``, never the full ones.

    Each image has at most ``max_pixels`` cells a side: cell ``(I, J)`` covers
    ``ceil(p_l / max_pixels)`` outputs by ``ceil(n / max_pixels)`` inputs and is
    True when any pair inside it is connected. The reach sets travel from the
    input side as bits over the input *cells* (at most ``max_pixels`` bits), and
    the rows of each partial product are OR-ed over their output cells, so the
    memory is ``max_dim * ceil(max_pixels / 64)`` words.
    """
    n = chain.shape[1]
    width, n_cells, n_words = _input_cells(n, max_pixels)
    _check_work(chain, _pooled_work(chain, max_pixels), "the pooled supports")
    cells = np.arange(n) // width
    bits = np.zeros((n, n_words * 8), dtype=np.uint8)
    bits[np.arange(n), cells // 8] = np.left_shift(1, 7 - cells % 8).astype(np.uint8)
    words = bits.view(np.uint64)
    images = []
    for spec in reversed(chain.factors):
        words = _propagate(spec.weight_shape, words)
        height = -(-spec.p // max_pixels)
        n_rows = -(-spec.p // height)
        padded = np.zeros((n_rows * height, n_words), dtype=np.uint64)
        padded[: spec.p] = words
        pooled = np.bitwise_or.reduce(padded.reshape(n_rows, height, n_words), axis=1)
        images.append(_unpack(pooled, n_cells))
    return images


def _support_fraction(chain: Chain) -> float | None:
    """Exact fraction of non-zeros of the product; ``None`` beyond ``MAX_REACH_WORK``."""
    m, n = chain.shape
    if -(-n // 64) * _row_work(chain) > MAX_REACH_WORK:
        return None
    count = sum(int(np.bitwise_count(words).sum()) for _, _, words in _reach_chunks(chain))
    return count / (m * n)


def is_dense_numeric(
    chain: Chain | Iterable[Any], *, random_state: int | np.random.Generator | None = None
) -> DensityResult:
    """Density by multiplying dense factors with random positive weights.

    The slow twin of :func:`is_dense` used in tests: positive weights cannot
    cancel, so the product is positive exactly where a path exists.

    Parameters
    ----------
    chain : Chain or iterable of (p, q, r, s, t)
        The chain, left to right.
    random_state : int, Generator or None, optional
        Seed or generator of the weights, drawn uniformly from ``[0.5, 1.5)``
        (as ``numpy.random.default_rng`` takes it; a bool is refused).

    Returns
    -------
    DensityResult
        With ``method == "numeric"``; ``missing`` is the first zero
        ``(output, input)`` entry of the product in row-major order.

    Raises
    ------
    TypeError, ValueError
        If ``chain`` is not a valid chain, or ``random_state`` is not a seed or
        a generator (a negative seed is a ``ValueError``).
    ValueError
        Before any work, beyond ``MAX_NUMERIC_WORK`` or ``MAX_NUMERIC_ENTRIES``
        (see the Notes).

    Notes
    -----
    Multiplying the dense factors of an ``m x n`` chain costs
    ``m * sum(p_l * q_l for l >= 2)`` multiply-adds and holds up to
    ``m * p_l + p_l * q_l + m * q_l`` floats at once; beyond ``MAX_NUMERIC_WORK``
    or ``MAX_NUMERIC_ENTRIES`` it is refused with a ``ValueError`` before any
    work. :func:`is_dense` decides large chains.

    Examples
    --------
    >>> bool(is_dense_numeric([(4, 4, 2, 2, 1), (4, 4, 2, 2, 2)], random_state=0))
    True
    """
    from ._reference import chain_to_dense

    chain = _as_chain(chain)
    _check_numeric_cost(chain)
    rng = random_generator(random_state, "random_state")
    weights = [rng.uniform(0.5, 1.5, size=spec.weight_shape) for spec in chain]
    gaps = (chain_to_dense(chain, weights) <= 0).ravel()
    first = int(np.argmax(gaps))
    if gaps[first]:
        return DensityResult(False, divmod(first, chain.shape[1]), "numeric")
    return DensityResult(True, None, "numeric")


def _check_numeric_cost(chain: Chain) -> None:
    """Refuse a chain whose dense product exceeds ``MAX_NUMERIC_WORK`` or ``MAX_NUMERIC_ENTRIES``.

    ``F_1 (F_2 (...))`` is formed left to right: step ``l >= 2`` multiplies the
    ``m x p_l`` partial product by the dense ``p_l x q_l`` factor.
    """
    m, n = chain.shape
    first, *rest = chain.factors
    work = m * sum(spec.p * spec.q for spec in rest)
    held = [m * spec.p + spec.p * spec.q + m * spec.q for spec in rest]  # step l >= 2
    entries = max([first.p * first.q, *held])
    for amount, what, name, limit in [
        (work, "multiply-adds", "MAX_NUMERIC_WORK", MAX_NUMERIC_WORK),
        (entries, "float64 entries at once", "MAX_NUMERIC_ENTRIES", MAX_NUMERIC_ENTRIES),
    ]:
        if amount > limit:
            raise ValueError(
                f"multiplying the dense factors of this {m} x {n} chain takes {amount:,} "
                f"{what}, above the limit {name} = {limit:,} of pydebut.density; "
                "is_dense() decides density structurally at a fraction of the cost"
            )
