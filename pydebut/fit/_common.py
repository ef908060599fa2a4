"""Pieces shared by the fitting methods: target loading, validation, results.

Factor products here are the structured ones of the Concepts page of the documentation, written
for blocks of vectors ``X`` of shape ``(q, batch)`` with the batch innermost.
"""

from __future__ import annotations

import functools
import math
import os
import stat
import sys
import tokenize
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._arguments import as_bool, refuse_masked
from .._memory import check_address_space, check_fits_in_memory
from .._weights import largest_magnitude
from ..io import _open_without_waiting
from ..operator import DeButOperator
from ..spec import Chain, FactorSpec
from ._dense_target import dense_target

__all__ = ["FitResult"]


def apply_factor(spec: FactorSpec, weights: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Return ``F @ x`` for a block ``x`` of shape ``(q, batch)``.

    ``y[b, rho, alpha, :] = sum_sigma W[b, rho, sigma, alpha] x[b, sigma, alpha, :]``:
    one small matrix product per ``(b, alpha)``, written in place into ``y``.
    """
    k, r, s, t = spec.weight_shape
    batch = x.shape[1]
    y = np.empty((k, r, t, batch), dtype=np.result_type(weights, x))
    x_blocks = x.reshape(k, s, t, batch).transpose(0, 2, 1, 3)
    np.matmul(weights.transpose(0, 3, 1, 2), x_blocks, out=y.transpose(0, 2, 1, 3))
    return y.reshape(spec.p, batch)


def apply_factor_adjoint(spec: FactorSpec, weights: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Return ``F^H @ y`` for a block ``y`` of shape ``(p, batch)``."""
    k, r, s, t = spec.weight_shape
    batch = y.shape[1]
    x = np.empty((k, s, t, batch), dtype=np.result_type(weights, y))
    y_blocks = y.reshape(k, r, t, batch).transpose(0, 2, 1, 3)
    np.matmul(weights.conj().transpose(0, 3, 2, 1), y_blocks, out=x.transpose(0, 2, 1, 3))
    return x.reshape(spec.q, batch)


def progress_bars(progress: Any) -> Any:
    """tqdm's progress bar class if ``progress`` is True, None if it is False.

    With standard error closed (``sys.stderr`` is None) the bars are disabled: tqdm
    would fail writing them. Raises ``TypeError`` if ``progress`` is not a bool,
    ``ImportError`` naming the install command if it is True and tqdm is missing.
    """
    if not as_bool(progress, "progress"):
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        raise ImportError(
            "progress=True needs tqdm: pip install pydebut[progress] (or pip install tqdm)"
        ) from None
    return tqdm if sys.stderr is not None else functools.partial(tqdm, disable=True)


def working_dtype(dtype: np.dtype) -> np.dtype:
    """Floating dtype the fit computes in: float32/complex64 stay, the rest is double
    (whatever the byte order)."""
    kind = np.dtype(dtype).type
    if kind in (np.float32, np.float16):
        return np.dtype(np.float32)
    if kind == np.complex64:
        return np.dtype(np.complex64)
    if np.issubdtype(dtype, np.complexfloating):
        return np.dtype(np.complex128)
    return np.dtype(np.float64)


def double_dtype(dtype: np.dtype) -> np.dtype:
    """The double precision dtype of ``dtype``'s kind: float64, or complex128 for complex."""
    return np.promote_types(dtype, np.float64)


def in_double(array: np.ndarray) -> np.ndarray:
    """``array`` in double precision (:func:`double_dtype`): itself if it already is."""
    return array.astype(double_dtype(array.dtype), copy=False)


def load_target(
    target: Any,
    chain: Chain | None,
    limit: tuple[int, str] | None = None,
    shape_check: Callable[[tuple[int, int]], None] | None = None,
) -> np.ndarray:
    """Return ``target`` as a finite 2-D numeric array, of shape ``chain.shape`` if given.

    A ``str`` or path names a ``.npy`` file, which is memory-mapped. Any
    array-like is taken (lists, ``np.memmap``, ...); a SciPy sparse matrix or a
    ``LinearOperator`` is made dense up to :data:`~pydebut.fit.MAX_DENSE_ENTRIES`
    entries (:func:`~pydebut.fit._dense_target.dense_target`). Its shape is
    checked against ``limit`` (most entries, and the end of the message that
    refuses more), a working copy against the machine's memory, and then by the
    caller's ``shape_check``, before any entry is read.

    Raises
    ------
    TypeError
        If the target's dtype is not numeric (e.g. ``object``).
    ValueError
        If it is not 2-D, is empty, does not have the chain's shape, has more
        entries than ``limit`` or than memory holds, is not finite, or is a
        masked array (or a Dask array of masked arrays) with masked entries.
    """
    if isinstance(target, (str, os.PathLike)):
        target = _load_npy(target)
    if not isinstance(target, np.ndarray) and hasattr(target, "shape"):
        # a Dask array, sparse matrix or LinearOperator: checked before it is made dense
        declared = getattr(target, "dtype", None)
        declared = np.dtype(np.float64 if declared is None else declared)
        _check_shape(tuple(target.shape), declared, chain, limit)
        if shape_check is not None:
            shape_check(tuple(target.shape))
            shape_check = None
        if hasattr(target, "compute"):  # a Dask array: its chunks may be masked arrays
            target = target.compute()
    refuse_masked(target, "the target", "a fit")
    array = _as_array(dense_target(target))
    if array.dtype == object and hasattr(target, "to_numpy"):
        raise TypeError(
            f"the target {type(target).__name__} gives Python objects (dtype object), as "
            "a pandas DataFrame of nullable or extension dtypes (Float64, Int64) does: "
            "convert it first, e.g. with target.to_numpy(dtype=float)"
        )
    _check_shape(array.shape, array.dtype, chain, limit)
    if shape_check is not None:
        shape_check(array.shape)
    if np.issubdtype(array.dtype, np.inexact) and not np.isfinite(array).all():
        raise ValueError("the target has non-finite entries (NaN or Inf)")
    return array


def _as_array(target: Any) -> np.ndarray:
    """``np.asarray(target)``; ``ValueError`` naming the rule for a ragged nested sequence."""
    try:
        return np.asarray(target)
    except ValueError as error:
        if not isinstance(target, (list, tuple)):
            raise
        raise ValueError(
            f"the target is a nested {type(target).__name__} that is not a matrix: its rows "
            "must be sequences of numbers, all of the same length"
        ) from error


def _check_shape(
    shape: tuple[Any, ...], dtype: np.dtype, chain: Chain | None, limit: tuple[int, str] | None
) -> None:
    """Refuse a target of ``shape`` and ``dtype`` (numeric, 2-D, non-empty, the chain's
    shape, within ``limit``, a working copy within memory) before any entry is read."""
    if dtype.kind not in "biufc":  # timedelta64 is a NumPy number, but not one
        what = _NON_NUMERIC.get(dtype.kind, "non-numeric values")
        raise TypeError(f"the target must hold real or complex numbers, got {what} (dtype {dtype})")
    if len(shape) != 2:
        raise ValueError(f"the target must be a 2-D matrix, got shape {shape}")
    if 0 in shape:
        raise ValueError(f"the target must have at least one row and one column, got {shape}")
    if chain is not None and shape != chain.shape:
        raise ValueError(
            f"the target has shape {shape} but the chain is {chain.shape[0]} x {chain.shape[1]}"
        )
    if any(not isinstance(size, (int, np.integer)) for size in shape):  # a Dask array's nan
        raise ValueError(f"the target's shape {shape} is not known; compute its chunk sizes")
    size = shape[0] * shape[1]
    if limit is not None and size > limit[0]:
        raise ValueError(f"the target has {size:,} entries, more than {limit[1]}")
    working = working_dtype(dtype)
    check_fits_in_memory(
        size * working.itemsize,
        f"a working copy of the {shape[0]} x {shape[1]} target in {working}",
        "fit a smaller target, or one larger than memory with pydebut.dask.fit_hierarchical",
    )


def as_working(matrix: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``matrix`` in the working ``dtype``; ``ValueError`` if its largest entry
    overflows there or lies below its normal range (:func:`check_in_range`)."""
    if matrix.dtype.kind in "fc":
        check_in_range(largest_magnitude(matrix), dtype)
    return np.asarray(matrix, dtype=dtype)


def check_in_range(largest: Any, dtype: np.dtype) -> None:
    """Refuse a target whose largest entry ``largest`` overflows in ``dtype`` or lies
    below its normal range (rounding is monotone: it overflows exactly when any entry does).

    A target below the normal range would fit as zero, or with few digits: the fit
    runs on it scaled up by a power of two, and the weights scaled back round to
    subnormal numbers (a float32 target of largest entry 2e-44 reported 0.033 for a
    true 0.071).
    """
    dtype = np.dtype(dtype)
    with np.errstate(over="ignore"):
        overflows = np.isinf(np.asarray(largest).astype(dtype))
    if overflows:
        raise ValueError(
            f"the target's entries overflow to infinity in {dtype} "
            f"(largest {dtype} {np.finfo(dtype).max:.4g})"
        )
    tiny = np.finfo(dtype).tiny
    if 0 < largest < tiny:  # both shown in full: they can agree to many digits
        raise ValueError(
            f"the target's entries underflow in {dtype}: the largest is "
            f"{np.format_float_scientific(largest)}, below its smallest normal number "
            f"{np.format_float_scientific(tiny)}; scale the target"
        )


@dataclass(frozen=True)
class TargetScale:
    """The power of two ``2**exponent`` that brings a target's largest entry into ``[0.5, 1)``.

    Both fitting methods solve for ``D / 2**exponent`` and multiply the fitted
    weights back, the exponent spread evenly over the factors so that no factor
    overflows or underflows. Squares of entries (Gram matrices, norms) then
    stay in range for any finite target the dtype holds, scaling by a power of
    two is exact, and fitting ``c * D`` gives ``c`` times the fit of ``D``
    exactly when ``c`` is a power of two (another ``c`` rounds the target
    differently, which can decide ties differently: :func:`fit_hierarchical`), barring
    a product shrunk at the top of the range (:meth:`restore_operator`).
    """

    exponent: int

    @classmethod
    def of(cls, matrix: np.ndarray) -> TargetScale:
        """The scale of a finite ``matrix`` (exponent 0 for a zero matrix)."""
        largest = largest_magnitude(matrix)
        return cls(int(np.frexp(largest)[1]) if largest > 0 else 0)

    def normalise(self, matrix: np.ndarray) -> np.ndarray:
        """``matrix / 2**exponent`` (``matrix`` itself when the exponent is 0)."""
        return matrix if self.exponent == 0 else _times_power_of_two(matrix, -self.exponent)

    def factor_exponents(self, n_factors: int) -> list[int]:
        """Exponents summing to :attr:`exponent`, as equal as integers allow."""
        base, extra = divmod(self.exponent, n_factors)
        return [base + (index < extra) for index in range(n_factors)]

    def restore(self, weights: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Weights fitted to the normalised target, scaled to fit the original one."""
        exponents = self.factor_exponents(len(weights))
        return [_times_power_of_two(w, e) for w, e in zip(weights, exponents, strict=True)]

    def restore_operator(
        self, operator: DeButOperator, matrix: np.ndarray, error: float
    ) -> tuple[DeButOperator, float]:
        """``operator``, fitted with relative error ``error`` to the normalised target
        ``matrix``, scaled to fit the original target, and the error of the one returned:
        measured again on its product if it had to be shrunk (:meth:`shrunk_into_range`).
        """
        shrunk = self.shrunk_into_range(operator)
        if shrunk is not operator:
            product = shrunk.toarray()
            product = product.astype(np.result_type(product, matrix))
            error = relative_error(product, matrix, float(np.linalg.norm(matrix)))
        restored = DeButOperator(
            shrunk.chain,
            self.restore(shrunk.weights),
            row_perm=shrunk.row_perm,
            col_perm=shrunk.col_perm,
        )
        return restored, error

    def shrunk_into_range(self, operator: DeButOperator) -> DeButOperator:
        """``operator``, fitted to the normalised target, with an end factor shrunk
        until, scaled back by ``2**exponent``, it evaluates without overflow;
        ``operator`` itself if it does.

        Two things can overflow once scaled back. The product: a target whose
        largest entries lie near the largest float can be fitted by a product a hair
        above them (every entry of a 16 x 16 target of the largest double, fitted
        with error 1e-16). The last factor is then shrunk by the ratio of the largest
        float to the product's largest entry, a rounding further below 1 each try,
        as the product shrunk rounds anew. And the sums that evaluate the product,
        where the factors' partial products cancel: a coupled chain fitted to a
        target of largest entry 0.99 times the largest double overflowed in 156 of
        its 192 entries. The last factor is then halved until the
        product's columns evaluate in range (``matmat`` of the identity, the last
        factor applied first), and the first until its rows do (``rmatmat``): the
        fewest halvings, found by bisection.

        Nothing is evaluated when the factors' norms bound every such sum below the
        largest float (:func:`_log2_evaluation_bound`), as they do but for targets
        near it.
        """
        finfo = np.finfo(operator.dtype)
        bound = _log2_evaluation_bound(operator.weights, self.factor_exponents(operator.n_factors))
        if bound < finfo.maxexp - 1:
            return operator
        limit = np.ldexp(finfo.max, -self.exponent)
        weights, below_one = list(operator.weights), 1.0
        while (largest := _largest_of_product(operator)) > limit:
            below_one -= finfo.eps
            weights[-1] = weights[-1] * (limit / largest * below_one)
            operator = _with_weights(operator, weights)
        most = math.ceil(bound - (finfo.maxexp - 2))
        for end, evaluate in ((-1, "matmat"), (0, "rmatmat")):
            operator = self._halved_until_finite(operator, end, evaluate, most)
        return operator

    def _halved_until_finite(
        self, operator: DeButOperator, end: int, evaluate: str, most: int
    ) -> DeButOperator:
        """``operator`` with its factor ``end`` halved the fewest times (at most
        ``most``) for its ``evaluate`` of the identity, scaled back, to hold no overflow."""

        def halved(halvings: int) -> list[np.ndarray]:
            weights = list(operator.weights)
            weights[end] = _times_power_of_two(weights[end], -halvings)
            return weights

        def overflows(halvings: int) -> bool:
            restored = DeButOperator(operator.chain, self.restore(halved(halvings)))
            return not _evaluates_finitely(restored, evaluate)

        halvings = _fewest(overflows, most)
        return _with_weights(operator, halved(halvings)) if halvings else operator

    def normalise_weights(
        self, weights: Sequence[np.ndarray], dtype: np.dtype
    ) -> tuple[list[np.ndarray], int]:
        """Weights of an operator for the original target, for the normalised one, and
        ``shift``: the given product divided by ``2**exponent`` is ``2**shift`` times theirs.

        The factors are balanced (each brought to the same power-of-two
        magnitude) and their product divided by ``2**exponent``, so that their
        Gram matrices stay in range whatever the scales of the factors given;
        ``shift`` is 0. If that product's scale (the sum of the factors' own
        exponents, minus :attr:`exponent`) is more than ``2**(maxexp // 4)``
        (``maxexp`` of ``dtype``) above or below the normalised target's, its
        Gram matrices could still over- or underflow: the factors are then only
        balanced (each largest entry in ``[0.5, 1)``), and ``shift`` is the power
        of two left out. ALS does not depend on how the product's scale is
        shared out, nor, after its first update, on the product's scale at all:
        only the start error does, which is measured with ``shift``.
        """
        own = [TargetScale.of(w).exponent for w in weights]
        total = sum(own) - self.exponent
        kept = total if abs(total) <= np.finfo(dtype).maxexp // 4 else 0
        shared = TargetScale(kept).factor_exponents(len(weights))
        normalised = [
            _times_power_of_two(w, e - o) for w, o, e in zip(weights, own, shared, strict=True)
        ]
        return normalised, total - kept


#: Entries of the product formed at a time by :func:`_largest_of_product` (32 MiB of float64).
PRODUCT_PANEL = 2**22


def _largest_of_product(operator: DeButOperator) -> Any:
    """The largest magnitude (of a part) in the dense product of ``operator``, formed a
    panel of columns at a time (:func:`_identity_panels`)."""
    return max(largest_magnitude(panel) for panel in _identity_panels(operator, "matmat"))


def _evaluates_finitely(operator: DeButOperator, evaluate: str) -> bool:
    """Whether ``operator.matmat`` of the identity's columns (``evaluate="matmat"``) or
    ``operator.rmatmat`` of its rows (``"rmatmat"``) holds no infinity or NaN.

    An overflow anywhere in the evaluation reaches its result: the kernels multiply
    every entry of the support, so an infinity meets a zero weight as NaN.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        return all(np.isfinite(panel).all() for panel in _identity_panels(operator, evaluate))


def _identity_panels(operator: DeButOperator, evaluate: str) -> Iterator[np.ndarray]:
    """``operator.matmat`` (``evaluate="matmat"``) or ``operator.rmatmat`` of the
    identity, a panel of at most :data:`PRODUCT_PANEL` entries at a time."""
    m, n = operator.shape
    size, height = (n, m) if evaluate == "matmat" else (m, n)
    width = max(1, PRODUCT_PANEL // height)
    apply = getattr(operator, evaluate)
    for start in range(0, size, width):
        yield apply(np.eye(size, min(width, size - start), -start, operator.dtype))


def _log2_evaluation_bound(weights: Sequence[np.ndarray], exponents: Sequence[int]) -> float:
    """``log2`` of a bound on every magnitude (of a real or imaginary part) met while
    the factors of ``weights``, each scaled by ``2**exponent``, are applied to a
    vector of magnitudes at most 1, in either direction; ``-inf`` for a zero factor.

    Applied from the last factor, the vector after factors ``l, ..., L`` and each
    sum forming it are bounded by the product of their largest absolute row sums
    (the infinity norms); applied adjoint from the first, by that of their largest
    absolute column sums. A part of a complex product is no larger than the
    product's magnitude, so magnitudes bound both parts.
    """
    with np.errstate(divide="ignore"):
        rows = [np.log2(np.abs(w).sum(axis=2).max(initial=0)) for w in weights]
        columns = [np.log2(np.abs(w).sum(axis=1).max(initial=0)) for w in weights]
    from_last = np.cumsum(np.add(rows, exponents)[::-1])
    from_first = np.cumsum(np.add(columns, exponents))
    return float(max(from_last.max(), from_first.max()))


def _fewest(overflows: Callable[[int], bool], most: int) -> int:
    """The least ``h`` in ``[0, most]`` with ``overflows(h)`` false, for ``overflows``
    true below it and false from it on (``most`` if ``overflows(0)`` is true), by bisection.

    Halving an end factor ``most`` times brings the bound of
    :func:`_log2_evaluation_bound` under a quarter of the largest float.
    """
    if not overflows(0):
        return 0
    low, high = 0, most
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if overflows(middle) else (low, middle)
    return high


def _with_weights(operator: DeButOperator, weights: Sequence[np.ndarray]) -> DeButOperator:
    """An operator of the chain and permutations of ``operator`` with ``weights``."""
    return DeButOperator(
        operator.chain, weights, row_perm=operator.row_perm, col_perm=operator.col_perm
    )


def scaled_norm(values: np.ndarray) -> tuple[float, int]:
    """The Frobenius norm of ``values`` as ``(f, e)``, the norm being ``f 2**e``.

    ``numpy.linalg.norm`` sums the squares as they are; here ``values`` are first
    scaled by the power of two that brings the largest into ``[0.5, 1)``, so no
    square over- or underflows, and the norm is kept apart from its power of two:
    many entries near the largest float have a norm beyond it.
    """
    scale = TargetScale.of(values)
    return float(np.linalg.norm(scale.normalise(values))), scale.exponent


def hypot_of_scaled(norms: Iterable[tuple[float, int]]) -> tuple[float, int]:
    """``sqrt(sum of (f 2**e)**2)`` over scaled norms ``(f, e)`` (:func:`scaled_norm`), scaled."""
    norms = [(f, e) for f, e in norms if f != 0]
    if not norms:
        return 0.0, 0
    top = max(e for _, e in norms)
    return math.hypot(*(math.ldexp(f, e - top) for f, e in norms)), top


def unscaled(f: float, e: int) -> float:
    """``f 2**e`` as a float: ``inf`` beyond the largest, 0 below the smallest."""
    with np.errstate(over="ignore", under="ignore"):
        return float(np.ldexp(f, e))


def frobenius_norm(values: np.ndarray) -> float:
    """The Frobenius norm of ``values`` (:func:`scaled_norm`); ``inf`` beyond the largest float."""
    return unscaled(*scaled_norm(values))


def _times_power_of_two(array: np.ndarray, exponent: int | np.ndarray) -> np.ndarray:
    """``array * 2**exponent`` exactly (barring subnormals), for real or complex arrays.

    ``exponent`` is an integer or an integer array that broadcasts against ``array``
    along all but its last axis (where a complex array's parts lie side by side).
    """
    array = np.ascontiguousarray(array)
    parts = array.view(array.real.dtype) if np.iscomplexobj(array) else array
    exponents = np.asarray(exponent)
    if parts.dtype.kind == "f" and exponents.size:
        info = np.finfo(parts.dtype)
        if info.minexp <= exponents.min() and exponents.max() < info.maxexp:
            # by normal powers of two: a product rounded once is ldexp's result, 4x faster
            powers = np.ldexp(np.ones(exponents.shape, parts.dtype), exponents.astype(np.intc))
            return np.multiply(parts, powers).view(array.dtype)
    return np.ldexp(parts, exponent).view(array.dtype)


def adjoint_product(chain: Chain, weights: Sequence[np.ndarray], dtype: np.dtype) -> np.ndarray:
    """``(F_1 ... F_L)^H`` as a dense ``n x m`` array, ``F_L^H ... F_1^H I_m`` by the kernels.

    The kernels take a window of columns through every factor while it is in cache:
    on the 4096 butterfly that took a fifth of the time of one pass over ``n x m``
    per factor (:func:`apply_factor_adjoint`, their NumPy twin).
    """
    operator = DeButOperator(chain, weights, dtype, check_finite=False)
    return np.ascontiguousarray(operator.rmatmat(np.eye(chain.shape[0], dtype=dtype)))


def relative_residual(chain: Chain, weights: Sequence[np.ndarray], target: np.ndarray) -> float:
    """The true relative error ``||D - F_1 ... F_L||_F / ||D||_F``, from the residual.

    The product is formed on the cheaper side (:meth:`DeButOperator.toarray`, in
    the layout of the C-ordered ``target``) and subtracted entry by entry, so the
    error is what one measures on the fitted operator, never the difference of
    two squared norms.
    """
    dtype = np.result_type(target, *weights)
    product = DeButOperator(chain, weights, dtype, check_finite=False).toarray()
    target = np.ascontiguousarray(target)
    return relative_error(product, target, float(np.linalg.norm(target)))


_NON_NUMERIC = {
    "U": "strings",
    "S": "bytes",
    "O": "Python objects",
    "M": "datetimes",
    "m": "time differences",
    "V": "records",
}


def _load_npy(path: str | os.PathLike) -> np.ndarray:
    """Memory-map the ``.npy`` file ``path``; ``ValueError`` naming the file if it is not one,
    or if its data is not exactly what its header announces."""
    if os.path.isdir(path):
        raise ValueError(
            f"the target file {os.fspath(path)!r} is a folder: give the name of a .npy file"
        )
    with open(path, "rb", opener=_open_without_waiting) as file:  # a pipe: no writer needed
        status = os.fstat(file.fileno())
        if not stat.S_ISREG(status.st_mode):  # a pipe cannot be mapped
            raise ValueError(
                f"the target file {os.fspath(path)!r} is not a regular file (a pipe or a "
                "device): save the matrix to a .npy file first"
            )
        magic = file.read(6)
    check_address_space(
        status.st_size,
        f"memory-mapping the target file {os.fspath(path)!r}",
        "raise the limit, or fit a smaller target",
    )
    if magic != b"\x93NUMPY":
        kind = "an .npz archive" if magic.startswith(b"PK") else "not a .npy file"
        raise ValueError(
            f"the target file {os.fspath(path)!r} is {kind}; save the matrix as a 2-D .npy "
            "file with numpy.save(path, matrix)"
        )
    try:
        # a damaged header's shape can overflow the size memmap computes; the array
        # built on it then refuses that size with a ValueError, not a warning first; a
        # size below zero memmap itself refuses with an OverflowError
        with np.errstate(over="ignore"):
            matrix = np.load(path, mmap_mode="r", allow_pickle=False)
    except _NPY_HEADER_ERRORS:
        if _holds_objects(path):  # which only unpickling could read
            raise ValueError(
                f"the target file {os.fspath(path)!r} holds Python objects, not numbers; "
                "pydebut never unpickles files: save a numeric array with numpy.save"
            ) from None
        raise ValueError(
            f"the target file {os.fspath(path)!r} is a damaged or truncated .npy file: its "
            "header or its data cannot be read"
        ) from None
    data_bytes = status.st_size - matrix.offset
    if data_bytes != matrix.nbytes:  # more than announced: np.load ignores the rest
        raise ValueError(
            f"the target file {os.fspath(path)!r} holds {data_bytes:,} data bytes, but its "
            f"header announces {matrix.nbytes:,} (shape {matrix.shape}, dtype {matrix.dtype}): "
            "it is damaged, or holds more than one array"
        )
    return matrix


#: What ``np.load`` raises on a damaged header (a Python literal) or a size that cannot be
#: mapped: each becomes a ``ValueError`` naming the file.
_NPY_HEADER_ERRORS = (
    ValueError,
    OverflowError,
    SyntaxError,
    TypeError,  # a shape of bools: "an integer is required"
    tokenize.TokenError,
    RecursionError,
)


def _holds_objects(path: str | os.PathLike) -> bool:
    """Whether the ``.npy`` header of ``path`` declares Python objects (False if unreadable)."""
    try:
        with open(path, "rb") as file:
            version = np.lib.format.read_magic(file)
            if version == (1, 0):
                header = np.lib.format.read_array_header_1_0(file)
            else:
                header = np.lib.format.read_array_header_2_0(file)
    except (*_NPY_HEADER_ERRORS, OSError):
        return False
    return header[2].hasobject


def relative_error(
    approx: np.ndarray, target: np.ndarray, target_norm: float, exponent: int = 0
) -> float:
    """Return ``||target - 2**exponent approx||_F / ||target||_F`` (the absolute error if
    the target is 0, measured without over- or underflow); ``inf`` beyond the largest float.

    ``approx`` (C-contiguous) may be overwritten with the residual, divided by a power
    of two when ``exponent`` is not 0: by the one that brings the larger of the two
    terms to the scale of ``target``'s largest entry, so that no square overflows
    (a part that underflows lies below the larger term's rounding).
    """
    if target_norm == 0:
        norm, scale = scaled_norm(approx)
        return unscaled(norm, scale + exponent)
    top = 0
    if exponent and approx.any():
        top = max(0, exponent + TargetScale.of(approx).exponent - TargetScale.of(target).exponent)
        real = approx.view(approx.real.dtype)
        with np.errstate(under="ignore"):
            np.ldexp(real, exponent - top, out=real)
            if top:  # approx is the larger term: the target is scaled down too (a copy)
                target = _times_power_of_two(target, -top)
    residual = float(np.linalg.norm(np.subtract(approx, target, out=approx)))
    return unscaled(residual / target_norm, top)


def make_operator(chain: Chain, weights: Sequence[np.ndarray]) -> DeButOperator:
    """Wrap fitted weights in a :class:`~pydebut.DeButOperator`."""
    return DeButOperator(chain, tuple(weights))


@dataclass
class FitResult:
    """Outcome of a fit: the fitted operator and its error history.

    Attributes
    ----------
    operator : DeButOperator
        The fitted chain and weights.
    errors : list of float
        Relative Frobenius error ``||D - D_hat||_F / ||D||_F`` (``||D_hat||_F``
        if ``D`` is zero): after the initialisation, then after every
        half-sweep (ALS) or once (hierarchical).
    times : list of float
        Seconds since the fit started, at the moment of each entry of ``errors``.
    method : str
        ``"als"`` or ``"hierarchical"``.

    Examples
    --------
    >>> import numpy as np
    >>> from pydebut import Chain, fit_als
    >>> chain = Chain.from_factorizations([2, 2], [2, 2])
    >>> result = fit_als(np.eye(4), chain, n_sweeps=2, init="random", rng=0)
    >>> result.n_sweeps, len(result.errors), result.operator.shape
    (2, 5, (4, 4))
    """

    operator: DeButOperator
    errors: list[float]
    times: list[float]
    method: str

    @property
    def error(self) -> float:
        """The final relative error."""
        return self.errors[-1]

    @property
    def n_sweeps(self) -> int:
        """Number of complete ALS sweeps in ``errors`` (0 for a hierarchical fit)."""
        return (len(self.errors) - 1) // 2 if self.method == "als" else 0

    def summary(self) -> str:
        """One line: method, chain size, parameters, compression, error and time.

        Examples
        --------
        >>> import numpy as np
        >>> from pydebut import Chain, fit_hierarchical
        >>> chain = Chain.from_factorizations([2, 2], [2, 2])
        >>> print(fit_hierarchical(np.eye(4), chain).summary())  # doctest: +ELLIPSIS
        hierarchical fit, 4 x 4 chain of 2 factors, 16 params (compression 1.00x): ...
        """
        chain = self.operator.chain
        m, n = chain.shape
        steps = f" after {self.n_sweeps} sweeps" if self.method == "als" else ""
        start = f"{self.errors[0]:.4g} -> " if self.method == "als" else ""
        return (
            f"{self.method} fit, {m} x {n} chain of {chain.n_factors} factors, "
            f"{chain.n_params} params (compression {chain.compression_ratio:.2f}x): "
            f"relative error {start}{self.error:.4g}{steps} in {self.times[-1]:.3g} s"
        )
