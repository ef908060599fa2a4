"""``DeButOperator``: a DeBut chain with weights, as a SciPy ``LinearOperator``."""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import scipy.sparse as sp
from numpy.typing import ArrayLike, DTypeLike
from scipy.sparse.linalg import LinearOperator

from . import _batched, _kernels, _numba_setup, _sparse, _workspace
from ._arguments import as_bool, refuse_masked, shown
from ._memory import check_fits_in_memory
from ._permutation import check_permutation, inverse_permutation
from ._weights import (
    all_finite,
    check_weights,
    check_weights_fit,
    factor_label,
    fill_gaussian,
    immutable,
    result_dtype,
    supported_dtype,
)
from .spec import Chain, FactorSpec

__all__ = ["DeButOperator"]


def _check_out(out: Any, shape: tuple[int, ...], dtype: np.dtype) -> None:
    """Raise unless ``out`` can receive a result of ``shape`` and ``dtype``."""
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out must be a NumPy array, got {type(out).__name__}")
    if out.dtype != dtype:
        raise TypeError(f"out has dtype {out.dtype}; the result has dtype {dtype}")
    if out.shape != shape:
        raise ValueError(f"out must have shape {shape}, got {out.shape}")
    if not out.flags.writeable:
        raise ValueError("out is read-only")


def _writes_directly(out: Any, shape: tuple[int, ...], dtype: np.dtype, order: str = "C") -> bool:
    """Whether a kernel can write a result of ``shape`` and ``dtype`` into ``out`` (but overlap).

    ``out`` must be contiguous in ``order``, the layout the kernel writes.
    """
    if type(out) is not np.ndarray or out.dtype != dtype or out.shape != shape:
        return False
    flags = out.flags
    return (flags.c_contiguous if order == "C" else flags.f_contiguous) and flags.writeable


def _kernel_order(x: np.ndarray, dtype: np.dtype) -> str:
    """``"F"`` if the batched kernels take the block ``x`` column-major as it is, else ``"C"``.

    They copy each window of a real F-contiguous ``x`` of the plan's dtype out of its
    columns (the transpose of row-major data, as :meth:`DeButOperator.apply_rows` passes
    it), and write a result of the same layout; fewer than :data:`COLUMNS_ALONE` columns
    go one by one through the one-vector kernel, in C order.
    """
    flags = x.flags  # the layout first: a C-ordered block, the usual one, is done after it
    by_columns = (
        x.ndim == 2
        and not flags.c_contiguous
        and flags.f_contiguous
        and x.shape[1] >= COLUMNS_ALONE
        and x.dtype == dtype
        and dtype.kind == "f"
    )
    return "F" if by_columns else "C"


class _Plan(NamedTuple):
    """A chain laid out for the kernels, factors in application order, for data of ``dtype``."""

    specs: np.ndarray  # (L, 5) int64: (p, q, r, s, t)
    offsets: np.ndarray  # (L + 1,) int64
    weights: np.ndarray  # flat, of dtype or (a real operator's, for complex data) its precision
    max_dim: int
    n_out: int
    n_in: int
    batched: list  # [_batched.BatchPlan], built by the first block of vectors
    dtype: np.dtype  # of the data and the results

    @property
    def real_weights_for_complex(self) -> bool:
        """Whether complex data meets a real operator's real weights (:func:`_parts_as_columns`)."""
        return self.dtype.kind == "c" and self.weights.dtype.kind == "f"


def _make_plan(
    specs: Sequence[FactorSpec],
    weights: Sequence[np.ndarray],
    dtype: np.dtype,
    weight_dtype: np.dtype | None = None,
) -> _Plan:
    """The plan for data of ``dtype``, its weights of ``weight_dtype`` (default ``dtype``)."""
    table = np.array([f.as_tuple() for f in specs], dtype=np.int64)
    offsets = np.zeros(len(specs) + 1, dtype=np.int64)
    np.cumsum([w.size for w in weights], out=offsets[1:])
    flat = np.concatenate([np.asarray(w, dtype=weight_dtype or dtype).ravel() for w in weights])
    max_dim = max(max(f.p, f.q) for f in specs)
    return _Plan(table, offsets, flat, max_dim, specs[-1].p, specs[0].q, [], dtype)


#: Vectors at least this long run on all Numba threads, in phases (one parallel launch each,
#: see :func:`_kernels.apply_chain_vector_parallel`) ...
PARALLEL_VECTOR_SIZE = 2**16
#: ... when each thread gets at least this many floating-point operations. On Numba's
#: ``workqueue`` layer (the fork-safe choice when TBB is not installed) a launch wakes
#: sleeping threads, 40-490 us on the 2-core VM of benchmarks/README.md, where the phases
#: (two launches for a butterfly) measured 0.65-1.35x one thread at 2**16. One vector
#: streams its weights from memory at 2-4 GFLOP/s, so 2**22 operations per thread are
#: about 1 ms of one core: from there (a butterfly from 2**17) the split measured
#: 1.28-1.52x one thread (medians; tight loops and calls after a pause, forty-third
#: session), where the rule of blocks of vectors (:data:`_batched.MIN_WORKER_FLOPS`,
#: 2**25, about 2 ms of the batched kernels) had kept vectors up to 2**19 on one thread.
#: Other layers launch in microseconds.
VECTOR_WORKER_FLOPS = 2**22 if _numba_setup.launches_through_workqueue() else 0


#: A block of fewer columns runs column by column through the one-vector kernel
#: (:func:`_kernels.apply_chain_columns`), unless one vector is split between threads:
#: on windows that narrow the batched kernels are slower. On the paper's chains and the 4096
#: butterfly (benchmarks/README.md, eighth session) that measured 1.56-3.14x faster at 2
#: columns and 1.02-1.70x at 4; at 6 the two ways were even (0.81-1.35x), and from 8
#: columns the batched kernels were faster.
COLUMNS_ALONE = 6


def _splits_vector(plan: _Plan) -> bool:
    """Whether one vector through ``plan`` is split among threads (:data:`VECTOR_WORKER_FLOPS`).

    A complex vector through real weights costs what two real vectors do.
    """
    if plan.max_dim < PARALLEL_VECTOR_SIZE:
        return False
    n_threads = _kernels.numba.get_num_threads()
    flops = _batched.real_flops(plan.weights, 2 if plan.real_weights_for_complex else 1)
    return n_threads > 1 and flops >= n_threads * VECTOR_WORKER_FLOPS


def _parts_as_columns(block: np.ndarray) -> np.ndarray:
    """A C-ordered complex ``block``'s real and imaginary parts as the columns of a real one.

    A view: column ``2 j`` holds the real parts of column ``j``, ``2 j + 1`` the
    imaginary parts. A real operator maps each column on its own, so it applies a
    complex block as this real one: two real products per complex multiply-add,
    where complex weights take four. Fewer complex columns than the batched kernels
    take as real ones run one by one through the one-vector kernel, which takes
    their parts one by one with the real weights in the same way. On the paper's
    chains and the 4096 butterfly that took 0.67-0.85x the time of complex weights
    at one and two vectors, and the real columns 0.22-0.98x from three vectors on
    (benchmarks/README.md).
    """
    return block.view(block.real.dtype).reshape(block.shape[0], -1)


def _dask_backend(x: Any) -> Any:
    """The :mod:`pydebut.dask` module if ``x`` is a Dask array, else None (Dask not imported)."""
    if not type(x).__module__.startswith("dask."):
        return None
    from . import dask as backend

    return backend


class _LaunchLock:
    """A re-entrant lock, used as a context manager, that a forked child gets afresh.

    A child forked while another thread of its parent held the lock would
    otherwise wait for a thread it does not have.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()

    def __enter__(self) -> _LaunchLock:
        self._lock.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._lock.release()

    def __repr__(self) -> str:
        return "pydebut.parallel_launch_lock"

    def renew(self) -> None:
        self._lock = threading.RLock()


parallel_launch_lock = _LaunchLock()
"""The lock around every launch of pydebut's parallel kernels; hold it around yours.

Numba's fork-safe threading layer ``workqueue``, which importing pydebut
selects where TBB is not installed (see "Threads" in ``docs/speed.md``), ends
the process when two threads launch parallel kernels at once: pydebut's, your
own ``parallel=True`` functions, or another library's. pydebut launches its
own under this lock (the kernel already uses every core, so waiting costs
little), so operators may be shared between threads; call your parallel
functions under it too::

    with pydebut.parallel_launch_lock:
        my_parallel_function(x)

It is re-entrant (pydebut's operators may be applied inside the ``with``),
and a child forked while a thread of its parent held it starts with it free.
"""

if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=parallel_launch_lock.renew)


#: What every ``rng`` argument takes: what :func:`numpy.random.default_rng` takes.
SeedLike = (
    int | np.integer | np.random.SeedSequence | np.random.BitGenerator | np.random.Generator | None
)


def random_generator(rng: SeedLike, name: str = "rng") -> np.random.Generator:
    """``numpy.random.default_rng(rng)``, with an error naming ``rng`` (the argument
    ``name``) for what it cannot take.

    Raises
    ------
    TypeError
        If ``rng`` is none of what ``default_rng`` takes: None, an integer
        seed, a ``Generator``, a ``SeedSequence`` or a bit generator; or a bool.
    ValueError
        If it is a negative integer seed.
    """
    wanted = f"{name} must be None, a non-negative integer seed or a numpy.random.Generator"
    if isinstance(rng, bool):  # NumPy takes True as the seed 1 (np.True_ it refuses)
        raise TypeError(f"{wanted}, got bool {rng}")
    try:
        return np.random.default_rng(rng)
    except ValueError:
        raise ValueError(f"{wanted}, got {shown(rng)}") from None
    except TypeError:
        raise TypeError(f"{wanted}, got {type(rng).__name__} {shown(rng)}") from None


class DeButOperator(LinearOperator):
    r"""A Deformable Butterfly product ``F_1 F_2 … F_L`` as a ``LinearOperator``.

    Parameters
    ----------
    chain : Chain or sequence of (p, q, r, s, t)
        The factors' shapes, left to right (``F_1`` on the output side).
    weights : sequence of array_like
        One array per factor, ``weights[l][b, rho, sigma, alpha]`` of shape
        ``(k, r, s, t)`` (see the Concepts page of the documentation). The
        arrays are copied.
    dtype : dtype, optional
        float32, float64, complex64 or complex128. By default NumPy's result
        type of float32 and the weights: float32 for bool, 8- and 16-bit
        integer and float16 weights, float64 for 32- and 64-bit integers;
        extended precision, ``longdouble``, is rounded to float64, or
        ``clongdouble`` to complex128, the widest the kernels compute in
        (weights beyond float64's range are refused).
    check_finite : bool, default True
        Reject weights that contain NaN or infinity, and finite weights that the
        cast to ``dtype`` would take to infinity, or, for a factor whose largest
        weight lies below the normal range of ``dtype``, to subnormal numbers or zero.
    row_perm, col_perm : array_like of int, optional
        Permutations of ``range(m)`` and ``range(n)`` applied to the rows and
        the columns of the product ``B = F_1 ... F_L``: the operator is
        ``A = B[row_perm][:, col_perm]``, i.e. ``A[i, j] = B[row_perm[i], col_perm[j]]``.
        None (the default) or ``arange`` means no permutation and costs nothing.

    Attributes
    ----------
    chain : Chain
    weights : tuple of ndarray
        Read-only weight arrays, left to right.
    row_perm, col_perm : ndarray of int64 or None
        Read-only permutations, None for the identity.

    Raises
    ------
    TypeError
        If ``weights`` is not a sequence of numeric arrays, the dtype is
        not supported, ``dtype`` is real while a weight is complex,
        ``check_finite`` is not a bool, a permutation is not an array of
        integers, or ``chain`` is malformed (as for :class:`Chain`).
    ValueError
        If ``chain`` is invalid (as for :class:`Chain`), the number or the
        shape of the weight arrays does not match the chain, a weight is not
        finite or leaves the range of ``dtype`` (with
        ``check_finite``), or a weight array is a masked array with masked
        entries; the message names the factor. If a permutation is not a
        1-D permutation of ``range(m)`` (``range(n)``).

    Notes
    -----
    Forward: :math:`y_{b\rho\alpha} = \sum_\sigma W_{b\rho\sigma\alpha}\, x_{b\sigma\alpha}`
    for each factor, from ``F_L`` to ``F_1``. Adjoint:
    :math:`x_{b\sigma\alpha} = \sum_\rho \overline{W_{b\rho\sigma\alpha}}\, y_{b\rho\alpha}`
    for each factor, from ``F_1`` to ``F_L``. Both cost ``sum_l p_l s_l``
    multiply-adds per vector. Each factor's result is rounded in NumPy's result
    type of the operator's and the data's dtypes, so where the partial products
    are far larger than the product (factors of weights 1e-200 and 1e200),
    applying the factors in turn can overflow, or underflow, where
    ``op.toarray() @ x`` would not. The whole chain runs in one Numba call; blocks
    of vectors are split into chunks of columns processed in parallel by
    ``numba.get_num_threads()`` threads (a block of fewer than
    :data:`COLUMNS_ALONE` columns goes column by column through the one-vector
    kernel), and one vector of length at least
    :data:`PARALLEL_VECTOR_SIZE` (``2**16``; on Numba's slow-launching
    ``workqueue`` layer only with about 1 ms of work per thread, a butterfly
    from ``2**17``, see :data:`VECTOR_WORKER_FLOPS`) is split between them in
    phases, one parallel launch each (two for a butterfly chain).
    For small layers, where a call's Python overhead rivals the arithmetic,
    :meth:`apply` skips ``LinearOperator``'s dispatch. A thread keeps at most
    32 MiB of work buffers between calls (``pydebut._workspace``). On a
    machine whose cores are busy with other work, ``numba.set_num_threads(1)``
    (or ``NUMBA_NUM_THREADS=1``) avoids waiting on descheduled threads. One
    operator may be shared by several Python threads, and used in child processes
    started by fork or spawn (``multiprocessing``, joblib, Dask): pydebut selects
    Numba's fork-safe threading layer (see ``pydebut._numba_setup``), TBB when
    it is installed (``pip install "pydebut[tbb]"``), whose parallel launches take
    microseconds, so that blocks of large chains use every core from a few dozen
    vectors (32 for the 4096 butterfly).

    With permutations, ``A = P_r B P_c`` with the permutation matrices
    ``P_r = I[row_perm]`` and ``P_c = I[:, col_perm]``: ``A x`` gathers
    ``x[argsort(col_perm)]`` before the chain and ``row_perm`` of the result
    after it; ``A^H = P_c^T B^H P_r^T`` gathers with ``argsort(row_perm)`` before
    and ``col_perm`` after. Each gather is ``O(m + n)`` per vector.

    ``op.H`` and ``op.T`` are operators of their own, built on first use and
    kept (their weights take the operator's memory once more); ``op.rmatvec``
    and ``op.rmatmat`` apply ``A^H`` with the operator's own weights.

    Examples
    --------
    >>> import numpy as np
    >>> from pydebut import Chain, DeButOperator
    >>> chain = Chain.from_factorizations([2, 2], [2, 2])
    >>> op = DeButOperator.random(chain, rng=0)
    >>> x = np.ones(4)
    >>> np.allclose(op @ x, op.toarray() @ x)
    True
    >>> np.allclose(op.H @ x, op.toarray().conj().T @ x)
    True
    """

    def __init__(
        self,
        chain: Chain | Sequence[FactorSpec | Sequence[int]],
        weights: Sequence[ArrayLike],
        dtype: DTypeLike | None = None,
        *,
        check_finite: bool = True,
        row_perm: ArrayLike | None = None,
        col_perm: ArrayLike | None = None,
    ) -> None:
        chain = chain if isinstance(chain, Chain) else Chain(chain)
        check_finite = as_bool(check_finite, "check_finite")
        owned, dtype = check_weights(chain, weights, dtype, check_finite)
        m, n = chain.shape
        self._row_perm = check_permutation(row_perm, m, "row_perm")
        self._col_perm = check_permutation(col_perm, n, "col_perm")
        self._row_inverse = None if self._row_perm is None else inverse_permutation(self._row_perm)
        self._col_inverse = None if self._col_perm is None else inverse_permutation(self._col_perm)
        super().__init__(dtype, chain.shape)
        self._chain = chain
        self._weights = owned
        self._plans: dict[tuple[np.dtype, bool], _Plan] = {}  # by the kernels' dtype
        self._routes: dict[tuple[np.dtype, bool], _Plan] = {}  # by the data's dtype
        # Plans by the data's dtype when the data need no conversion and no permutation: the
        # one-vector path (apply, @, matvec, rmatvec) is then a lookup and a kernel call.
        self._direct: dict[tuple[np.dtype, bool], _Plan] = {}
        # A^T and A^H, built on first use and kept: op.H @ y in a loop costs a product
        # (a weak reference back from them, so that no cycle keeps the weights alive)
        self._reversals: dict[bool, DeButOperator | weakref.ref[DeButOperator]] = {}

    # --- construction ---------------------------------------------------------
    @classmethod
    def random(
        cls,
        chain: Chain | Sequence[FactorSpec | Sequence[int]],
        rng: SeedLike = None,
        dtype: DTypeLike = np.float64,
    ) -> DeButOperator:
        """Operator with independent Gaussian weights of variance ``1/s_l``.

        Each factor then maps a vector ``x`` to one of expected squared norm
        ``(r_l / s_l) ||x||^2``, so for a chainable ``m x n`` chain the
        product behaves like a dense matrix with ``N(0, 1/n)`` entries.

        Parameters
        ----------
        chain : Chain or sequence of (p, q, r, s, t)
        rng : int, Generator or None
            Seed or generator for ``np.random.default_rng``.
        dtype : dtype, default float64
            Complex dtypes draw real and imaginary parts of variance ``1/(2 s_l)``.

        Raises
        ------
        TypeError
            If ``chain`` is malformed (as for :class:`Chain`), ``dtype`` is not
            float32, float64, complex64 or complex128, or ``rng`` is none of what
            ``np.random.default_rng`` takes.
        ValueError
            If ``chain`` is invalid (as for :class:`Chain`), or ``rng`` is a
            negative seed.

        Examples
        --------
        >>> op = DeButOperator.random([(4, 4, 2, 2, 2), (4, 4, 2, 2, 1)], rng=1)
        >>> op.shape, op.dtype
        ((4, 4), dtype('float64'))
        """
        chain = chain if isinstance(chain, Chain) else Chain(chain)
        dtype = supported_dtype(dtype, "DeButOperator.random")
        # each factor is drawn, then frozen (copied) before the next: both copies of the largest
        check_weights_fit(chain.n_params, dtype.itemsize, max(f.nnz for f in chain))
        generator = random_generator(rng)
        weights = []
        for spec in chain:
            scale = 1.0 / np.sqrt(spec.s)
            w = np.empty(spec.weight_shape, dtype)
            if dtype.kind == "c":  # NumPy's (x + 1j y) / sqrt(2) multiplies by 1 / sqrt(2)
                fill_gaussian(w.real, generator, 1.0 / np.sqrt(2), scale)
                fill_gaussian(w.imag, generator, 1.0 / np.sqrt(2), scale)
            else:
                fill_gaussian(w, generator, scale)
            weights.append(immutable(w))
            del w
        return cls(chain, weights, dtype, check_finite=False)

    @classmethod
    def identity(
        cls, chain: Chain | Sequence[FactorSpec | Sequence[int]], dtype: DTypeLike = np.float64
    ) -> DeButOperator:
        """Operator whose every factor is the identity, so the product is the identity.

        Possible when every factor is square (``p = q``, hence ``r = s``):
        ``W[b, rho, sigma, alpha] = 1`` if ``rho == sigma`` else ``0``.

        Parameters
        ----------
        chain : Chain or sequence of (p, q, r, s, t)
        dtype : dtype, default float64
            float32, float64, complex64 or complex128.

        Raises
        ------
        TypeError
            If ``dtype`` is not one of those four, or ``chain`` is malformed
            (as for :class:`Chain`).
        ValueError
            If ``chain`` is invalid (as for :class:`Chain`); naming the first
            factor that is not square.

        Examples
        --------
        >>> op = DeButOperator.identity([(4, 4, 2, 2, 2), (4, 4, 2, 2, 1)])
        >>> op.toarray().tolist() == np.eye(4).tolist()
        True
        """
        chain = chain if isinstance(chain, Chain) else Chain(chain)
        for index, spec in enumerate(chain):
            if spec.r != spec.s:
                raise ValueError(
                    f"{factor_label(chain, index)} is not square (r != s), so the chain "
                    "has no identity weights"
                )
        itemsize = supported_dtype(dtype, "DeButOperator.identity").itemsize
        check_weights_fit(chain.n_params, itemsize)
        weights = [np.broadcast_to(np.eye(f.r)[None, :, :, None], f.weight_shape) for f in chain]
        return cls(chain, weights, dtype)

    @classmethod
    def from_twiddle(
        cls,
        r_shapes: Any,
        vector: ArrayLike,
        dtype: DTypeLike | None = None,
        *,
        check_finite: bool = True,
        row_perm: ArrayLike | None = None,
        col_perm: ArrayLike | None = None,
    ) -> DeButOperator:
        """Operator from the reference PyTorch layer's ``R_shapes`` and flat weight vector.

        ``R_shapes`` lists ``[p, q, r, s, t]`` in application order; ``vector``
        holds, for each factor in that order, ``p*s`` values viewed as
        ``(k, t, r, s)`` (block, diagonal index, row, column). The layer has no
        permutations: they travel beside the vector, as returned by
        ``to_twiddle(permutations=True)``. ``dtype``, ``check_finite`` and the
        permutations are those of :class:`DeButOperator`.

        Parameters
        ----------
        r_shapes : sequence of [p, q, r, s, t]
            The layer's ``R_shapes``, one row per factor in application order
            (as :meth:`Chain.from_r_shapes` reads them).
        vector : array_like, shape (sum of p*s,)
            The flat weights in the layout above.
        dtype : dtype, optional
            As for :class:`DeButOperator`; by default from the dtype of ``vector``.
        check_finite : bool, default True
            Reject a vector that contains NaN or infinity.
        row_perm, col_perm : array_like of int, optional
            Permutations of ``range(m)`` and ``range(n)``, as for
            :class:`DeButOperator`; None (the default) for the identity.

        Returns
        -------
        DeButOperator

        Raises
        ------
        TypeError, ValueError
            As :meth:`Chain.from_r_shapes` for ``r_shapes``, and as
            :class:`DeButOperator` for the weights, dtype and permutations;
            ``ValueError`` too if ``vector`` is not 1-D, does not hold ``sum p*s``
            values or is a masked array with masked entries.

        Examples
        --------
        >>> op = DeButOperator.random([(4, 4, 2, 2, 2), (4, 4, 2, 2, 1)], rng=0)
        >>> r_shapes, vector = op.to_twiddle()
        >>> np.array_equal(DeButOperator.from_twiddle(r_shapes, vector).toarray(), op.toarray())
        True
        """
        chain = Chain.from_r_shapes(r_shapes)
        refuse_masked(vector, "the twiddle vector", "the operator")
        vector = np.asarray(vector)
        if vector.ndim != 1:
            raise ValueError(f"the twiddle vector must be 1-D, got shape {vector.shape}")
        if vector.size != chain.n_params:
            raise ValueError(
                f"R_shapes needs {chain.n_params} weights (sum of p*s), "
                f"the vector has {vector.size}"
            )
        weights_applied = []
        start = 0
        for spec in reversed(chain.factors):
            k, r, s, t = spec.weight_shape
            block = vector[start : start + spec.nnz].reshape(k, t, r, s)
            weights_applied.append(block.transpose(0, 2, 3, 1))
            start += spec.nnz
        return cls(
            chain,
            weights_applied[::-1],
            dtype,
            check_finite=check_finite,
            row_perm=row_perm,
            col_perm=col_perm,
        )

    def to_twiddle(self, *, permutations: bool = False) -> tuple[Any, ...]:
        """Return ``(R_shapes, vector)`` in the reference layer's layout (:meth:`from_twiddle`).

        Parameters
        ----------
        permutations : bool, default False
            Return ``(R_shapes, vector, row_perm, col_perm)`` instead (each
            permutation None for the identity).

        Raises
        ------
        ValueError
            If the operator carries a permutation and ``permutations`` is False:
            the reference layer cannot hold it, and dropping it would change the matrix.
        TypeError
            If ``permutations`` is not a bool.

        Examples
        --------
        >>> op = DeButOperator.identity([(4, 4, 2, 2, 1)]).with_permutations(col_perm=[1, 0, 2, 3])
        >>> r_shapes, vector, row_perm, col_perm = op.to_twiddle(permutations=True)
        >>> row_perm is None, col_perm.tolist()
        (True, [1, 0, 2, 3])
        """
        permutations = as_bool(permutations, "permutations")
        pieces = [w.transpose(0, 3, 1, 2).ravel() for w in reversed(self._weights)]
        r_shapes, vector = self._chain.to_r_shapes(), np.concatenate(pieces)
        if permutations:
            return r_shapes, vector, self._row_perm, self._col_perm
        if self._row_perm is not None or self._col_perm is not None:
            raise ValueError(
                "the operator carries a row or column permutation, which the reference "
                "layer's twiddle format cannot hold; call to_twiddle(permutations=True)"
            )
        return r_shapes, vector

    @classmethod
    def from_faust(
        cls, faust: Any, chain: Any = None, *, check_finite: bool = True
    ) -> DeButOperator:
        """Operator from a ``pyfaust.Faust`` (pyfaust needed): :func:`pydebut.faust.from_faust`.

        Parameters
        ----------
        faust : pyfaust.Faust
            Its factors must each have a DeBut support.
        chain : Chain or sequence of (p, q, r, s, t), optional
            The factors' shapes; by default the smallest DeBut shape holding
            each factor's nonzeros.
        check_finite : bool, default True
            Refuse factors holding NaN or infinity; False keeps them.
        """
        from .faust import from_faust

        return from_faust(faust, chain, check_finite=check_finite)

    def to_faust(self) -> Any:
        """The operator as a ``pyfaust.Faust`` (pyfaust needed): :func:`pydebut.faust.to_faust`."""
        from .faust import to_faust

        return to_faust(self)

    # --- properties -------------------------------------------------------------
    @property
    def chain(self) -> Chain:
        """The chain of factor shapes, left to right."""
        return self._chain

    @property
    def weights(self) -> tuple[np.ndarray, ...]:
        """Read-only weight arrays ``W[b, rho, sigma, alpha]``, left to right."""
        return self._weights

    @property
    def row_perm(self) -> np.ndarray | None:
        """Permutation of the product's rows (``A = B[row_perm][:, col_perm]``), or None."""
        return self._row_perm

    @property
    def col_perm(self) -> np.ndarray | None:
        """Permutation of the product's columns (``A = B[row_perm][:, col_perm]``), or None."""
        return self._col_perm

    def permutation_matrices(self) -> tuple[sp.csr_array, sp.csr_array]:
        """``(P_r, P_c)`` as SciPy CSR arrays of the operator's dtype: ``A = P_r F_1 … F_L P_c``.

        Examples
        --------
        >>> op = DeButOperator.random([(4, 4, 2, 2, 2), (4, 4, 2, 2, 1)], rng=0)
        >>> op = op.with_permutations(col_perm=[1, 0, 3, 2])
        >>> p_r, p_c = op.permutation_matrices()
        >>> product = p_r @ op.factor(0) @ op.factor(1) @ p_c
        >>> np.allclose(product.toarray(), op.toarray())
        True
        """
        m, n = self.shape
        rows = np.arange(m) if self._row_perm is None else self._row_perm
        cols = np.arange(n) if self._col_perm is None else self._col_perm
        p_r = sp.csr_array((np.ones(m, self.dtype), (np.arange(m), rows)), shape=(m, m))
        p_c = sp.csr_array((np.ones(n, self.dtype), (cols, np.arange(n))), shape=(n, n))
        return p_r, p_c

    def with_permutations(
        self, row_perm: ArrayLike | None = None, col_perm: ArrayLike | None = None
    ) -> DeButOperator:
        """The same chain and weights with the given permutations (replacing the present ones).

        Parameters
        ----------
        row_perm, col_perm : array_like of int, optional
            Permutations of ``range(m)`` and ``range(n)``, as for
            :class:`DeButOperator` (``A = B[row_perm][:, col_perm]``). None, the
            default, is the identity: ``op.with_permutations()`` drops both.

        Returns
        -------
        DeButOperator
            A new operator of the same dtype; the read-only weights are shared.

        Raises
        ------
        TypeError
            If a permutation is not an array of integers.
        ValueError
            If a permutation is not a 1-D permutation of ``range(m)`` (``range(n)``).

        Examples
        --------
        >>> op = DeButOperator.identity([(4, 4, 2, 2, 1)])
        >>> op.with_permutations(row_perm=[3, 2, 1, 0]).toarray()[0].tolist()
        [0.0, 0.0, 0.0, 1.0]
        """
        return DeButOperator(
            self._chain,
            self._weights,
            self.dtype,
            check_finite=False,
            row_perm=row_perm,
            col_perm=col_perm,
        )

    @property
    def n_factors(self) -> int:
        """Number of factors."""
        return len(self._chain)

    @property
    def n_params(self) -> int:
        """Number of weights, ``sum_l p_l s_l``."""
        return self._chain.n_params

    nnz = n_params

    @property
    def density(self) -> float:
        """Weights per entry of the product, ``n_params / (m*n)``."""
        m, n = self.shape
        return self.n_params / (m * n)

    @property
    def compression_ratio(self) -> float:
        """Entries of the product per weight, ``m*n / n_params``."""
        return self._chain.compression_ratio

    def factor(self, index: int) -> sp.csr_array:
        """Factor ``F_{index+1}`` (0-based, as ``chain[index]``) as a SciPy CSR array.

        The permutations are not part of any factor (:meth:`permutation_matrices`).

        Parameters
        ----------
        index : int
            Position in the chain, 0-based; negative counts from the end, as in
            ``chain[index]``.

        Returns
        -------
        scipy.sparse.csr_array, shape (p, q)
            Of the operator's dtype, storing every one of the factor's ``p*s``
            weights, zeros included.

        Raises
        ------
        TypeError
            If ``index`` is not an integer (a slice of factors is not one factor:
            :meth:`factors` gives them all).
        IndexError
            If ``index`` is not in ``range(-L, L)`` for ``L`` factors.

        Examples
        --------
        >>> op = DeButOperator.identity([(4, 4, 2, 2, 2), (4, 4, 2, 2, 1)])
        >>> op.factor(0).shape, op.factor(0).nnz
        ((4, 4), 8)
        """
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(
                f"factor index must be an integer, not {type(index).__name__} "
                "(factors() gives every factor)"
            )
        n_factors = len(self._chain)
        if not -n_factors <= index < n_factors:
            raise IndexError(
                f"factor index {index} is out of range for {n_factors} factors "
                f"(range(-{n_factors}, {n_factors}))"
            )
        spec = self._chain[index]
        weights = self._weights[index]
        rows, cols = spec.support_indices()
        return sp.csr_array((weights.ravel(), (rows, cols)), shape=spec.shape)

    def factors(self) -> list[sp.csr_array]:
        """All factors as SciPy CSR arrays, left to right.

        Without the permutations (see :meth:`permutation_matrices`).

        Examples
        --------
        >>> op = DeButOperator.random([(4, 8, 1, 2, 4), (8, 8, 2, 2, 2)], rng=0)
        >>> [f.shape for f in op.factors()]
        [(4, 8), (8, 8)]
        >>> first, second = op.factors()
        >>> bool(np.allclose((first @ second).toarray(), op.toarray()))
        True
        """
        return [self.factor(i) for i in range(len(self._chain))]

    def toarray(self) -> np.ndarray:
        """Return the dense ``m x n`` product (for tests and small sizes).

        It is the operator applied to the identity of its shorter side: ``A I_n``,
        or for a wide operator (``m < n``) the rows ``I_m A^H``, conjugated, so
        that the work and memory are those of the product, not ``n x n``; the
        result is C-ordered. ``todense`` is the same.

        Examples
        --------
        >>> op = DeButOperator.random([(4, 8, 1, 2, 4)], rng=0)
        >>> dense = op.toarray()
        >>> dense.shape, int(np.count_nonzero(dense)) == op.n_params
        ((4, 8), True)
        """
        m, n = self.shape
        wide = m < n
        check_fits_in_memory(  # wide and complex: I_m copied into the rows' layout, the result too
            (2 * m * m + 2 * m * n if wide else (m + n) * n) * self.dtype.itemsize,
            f"the dense {shown(m)} x {shown(n)} product",
            "apply the operator to vectors or blocks of columns instead",
        )
        if wide:  # the rows of conj(A): I_m times A^H, row by row
            rows = np.ascontiguousarray(self.apply_rows(np.eye(m, dtype=self.dtype), adjoint=True))
            return np.conjugate(rows, out=rows) if np.iscomplexobj(rows) else rows
        return np.ascontiguousarray(self.matmat(np.eye(n, dtype=self.dtype)))

    todense = toarray

    def tosparse(
        self, format: str = "csr", *, max_nnz: int = _sparse.MAX_NNZ
    ) -> sp.csr_array | sp.csc_array:
        """Return the product as a SciPy sparse array (CSR or CSC), refusing huge ones.

        Parameters
        ----------
        format : {"csr", "csc"}
        max_nnz : int, default 2**26
            Refuse (``ValueError``, before any work) when the product, or a
            partial product ``F_1 ... F_l`` formed on the way, may hold more
            nonzeros than this. A chainable chain's product is dense, so its
            bound is ``m * n``. Whatever ``max_nnz``, refuse also when two
            sparse arrays of that many nonzeros (a partial product and the
            next) would not fit in this machine's memory.

        Returns
        -------
        scipy.sparse.csr_array or scipy.sparse.csc_array
            The ``m x n`` product, in ``format``.

        Raises
        ------
        TypeError
            If ``max_nnz`` is not an integer.
        ValueError
            If ``format`` is neither ``"csr"`` nor ``"csc"``, ``max_nnz`` is
            negative, or the product is refused as above.

        Examples
        --------
        >>> op = DeButOperator.random([(8, 8, 1, 1, 8), (8, 8, 2, 2, 1)], rng=0)
        >>> A = op.tosparse()
        >>> A.format, A.nnz, bool(np.allclose(A.toarray(), op.toarray()))
        ('csr', 16, True)
        """
        return _sparse.tosparse(self, format, max_nnz)

    def astype(self, dtype: DTypeLike) -> DeButOperator:
        """Copy of the operator with weights cast to ``dtype``.

        Finite weights that overflow ``dtype`` are refused, as are a factor's
        weights whose largest lies below the normal range of ``dtype`` (they would
        round to subnormal numbers or zero); an operator built with non-finite
        weights (``check_finite=False``) keeps them.

        Parameters
        ----------
        dtype : dtype
            float32, float64, complex64 or complex128 (any spelling NumPy reads
            as one of them, e.g. ``"complex64"`` or ``">f8"``).

        Returns
        -------
        DeButOperator
            A new operator with the same chain and permutations.

        Raises
        ------
        TypeError
            If ``dtype`` is not one of these, or is real while the weights are
            complex.
        ValueError
            If a finite weight overflows to infinity in ``dtype``, or a factor's
            largest weight lies below its normal range; the message names the factor.

        Examples
        --------
        >>> op = DeButOperator.random([(4, 8, 1, 2, 4)], rng=0)
        >>> single = op.astype(np.float32)
        >>> single.dtype, bool(np.allclose(single.toarray(), op.toarray(), rtol=1e-6))
        (dtype('float32'), True)
        """
        finite = all(np.isfinite(w).all() for w in self._weights)
        return DeButOperator(
            self._chain,
            self._weights,
            dtype,
            check_finite=finite,
            row_perm=self._row_perm,
            col_perm=self._col_perm,
        )

    # --- algebra ------------------------------------------------------------------
    # SciPy's T and transpose() are typed as returning its _TransposedLinearOperator;
    # these say what they return here: the transpose as a DeButOperator.
    @property
    def T(self) -> DeButOperator:  # type: ignore[override]  # noqa: N802
        """The transpose ``A^T``, a ``DeButOperator``; see :meth:`transpose`."""
        return self._transpose()

    def transpose(self) -> DeButOperator:  # type: ignore[override]
        """Return the transpose ``A^T``, not conjugated (``adjoint()`` and ``.H`` give ``A^H``).

        Returns
        -------
        DeButOperator
            The factors reversed, each block transposed, and the permutations
            swapped; built once and kept, as ``.H`` is.
        """
        return self._transpose()

    def _transpose(self) -> DeButOperator:
        return self._reversed(conjugate=False)

    def _adjoint(self) -> DeButOperator:
        return self._reversed(conjugate=True)

    def _reversed(self, conjugate: bool) -> DeButOperator:
        """``A^T`` (or ``A^H``): the factors reversed, each block transposed (and conjugated).

        Built once and kept (its weights take the operator's memory again), and it
        refers back to this operator, weakly, as its own transpose (adjoint); for a
        real operator the two are one.
        """
        conjugate = conjugate and self.dtype.kind == "c"
        reversed_operator = self._reversals.get(conjugate)
        if isinstance(reversed_operator, weakref.ref):
            reversed_operator = reversed_operator()
        if reversed_operator is None:
            blocks = [w.transpose(0, 2, 1, 3) for w in reversed(self._weights)]
            reversed_operator = DeButOperator(
                self._chain.T,
                [w.conj() for w in blocks] if conjugate else blocks,
                self.dtype,
                check_finite=False,
                row_perm=self._col_perm,
                col_perm=self._row_perm,
            )
            reversed_operator._reversals[conjugate] = weakref.ref(self)
            self._reversals[conjugate] = reversed_operator
        return reversed_operator

    def dot(self, x: Any) -> Any:
        """``self @ x``; with another ``DeButOperator`` the result is the longer chain.

        The product ``(P_r B P_c) (P_r' B' P_c')`` is one DeBut operator
        ``P_r (B B') P_c'`` when ``P_c P_r'`` is the identity (``col_perm`` of
        ``self`` equals ``row_perm`` of ``x``); otherwise it is SciPy's product
        of the two operators, which applies both exactly.

        With a SciPy sparse matrix or array ``x`` (either side: ``op @ S`` and
        ``S @ op``) the result is a dense ndarray, as a DeBut product is dense
        in general; ``S`` is densified a block of 512 columns (rows) at a time.
        For a lazy product, wrap ``S`` in ``scipy.sparse.linalg.aslinearoperator``.

        Parameters
        ----------
        x : array_like, sparse, LinearOperator, scalar or Dask array
            An array of shape ``(n,)`` or ``(n, batch)``; a SciPy sparse matrix or
            array of ``n`` rows; a ``DeButOperator`` or other ``LinearOperator``
            of ``n`` rows; a number, which scales the operator (its first factor's
            weights, in NumPy's result type: a Python float keeps float32, as do
            ``op * c``, ``c * op``, ``op / c`` and ``-op``); or a Dask array, applied
            lazily by :func:`pydebut.dask.apply`. Sums and powers (``op + B``,
            ``op - B``, ``op ** k``) are SciPy's operators, which read data with
            ``np.asarray`` as any SciPy operator does: a masked array's mask is lost
            there.

        Returns
        -------
        ndarray, DeButOperator, LinearOperator or dask.array.Array
            For an array, ``A x`` of shape ``(m,)`` or ``(m, batch)`` and NumPy's
            result type of the two dtypes (a dense ndarray for sparse ``x``); for
            an operator, the product operator described above; for a number, the
            scaled ``DeButOperator``.

        Raises
        ------
        ValueError
            If the shapes do not match, ``x`` is a masked array with masked
            entries, or ``x`` is a number that takes a weight to infinity or NaN.
        TypeError
            If ``x`` is None, text, or an array that is not numeric or is of
            ``longdouble`` precision (cast it to float64 or complex128).

        Examples
        --------
        >>> a = DeButOperator.random([(4, 8, 1, 2, 4)], rng=0)
        >>> b = DeButOperator.random([(8, 8, 2, 2, 4)], rng=1)
        >>> (a @ b).chain
        Chain([(4, 8, 1, 2, 4), (8, 8, 2, 2, 4)])
        >>> import scipy.sparse as sp
        >>> S = sp.eye_array(8, format="csr")
        >>> bool(np.allclose(a @ S, a.toarray())), bool(np.allclose(S[:4] @ b, b.toarray()[:4]))
        (True, True)
        """
        if type(x) is np.ndarray and x.ndim in (1, 2) and x.shape[0] == self.shape[1]:
            return self._matvec(x) if x.ndim == 1 else self._matmat(x)  # no SciPy dispatch
        if sp.issparse(x):
            return _sparse.times_sparse(self, x)
        backend = _dask_backend(x)
        if backend is not None:
            return backend.apply(self, x)
        if _is_number(x):
            return self._scaled(x)
        if isinstance(x, DeButOperator):
            if self.shape[1] != x.shape[0]:
                raise ValueError(f"cannot multiply operators of shapes {self.shape} and {x.shape}")
            if not _same_permutation(self._col_perm, x._row_perm):
                return super().dot(x)
            dtype = np.result_type(self.dtype, x.dtype)
            return DeButOperator(
                self._chain + x._chain,
                self._weights + x._weights,
                dtype,
                check_finite=False,
                row_perm=self._row_perm,
                col_perm=x._col_perm,
            )
        _refuse_text(x)
        refuse_masked(x, "x", "the operator")  # SciPy's dot drops the mask (np.asarray)
        shape = np.shape(x) if isinstance(x, (np.ndarray, list, tuple)) else ()
        if len(shape) > 2 or (len(shape) in (1, 2) and shape[0] != self.shape[1]):
            m, n = self.shape
            raise ValueError(
                f"cannot apply a {m} x {n} DeButOperator to an array of shape {shape}: "
                f"expected ({n},) or ({n}, batch)"
            )
        return super().dot(x)

    def __neg__(self) -> DeButOperator:
        return self._scaled(-1)

    def __truediv__(self, x: Any) -> DeButOperator:
        if not _is_number(x):
            raise TypeError(f"a DeButOperator can be divided by a number, not {shown(x)}")
        return self._scaled(x, np.divide)

    def _scaled(self, number: Any, operation: np.ufunc = np.multiply) -> DeButOperator:
        """The operator times (``operation=np.divide``: divided by) ``number``: its first
        factor's weights scaled, in NumPy's result type of the operator's dtype and
        ``number`` (a Python float keeps float32)."""
        dtype = supported_dtype(np.result_type(self.dtype, number), "the scaled operator")
        finite = all_finite(self._weights[0])
        with np.errstate(all="ignore"):
            first = operation(self._weights[0], number, dtype=dtype)
        if finite and not all_finite(first):
            raise ValueError(
                f"{'dividing' if operation is np.divide else 'multiplying'} the operator by "
                f"{shown(number)} takes weights of "
                f"{factor_label(self._chain, 0)} to infinity or NaN"
            )
        return DeButOperator(
            self._chain,
            [first, *self._weights[1:]],
            dtype,
            check_finite=False,
            row_perm=self._row_perm,
            col_perm=self._col_perm,
        )

    def __rmatmul__(self, x: Any) -> Any:
        if sp.issparse(x):
            return _sparse.sparse_times(x, self)
        return super().__rmatmul__(x)  # through __rmul__

    def __rmul__(self, x: Any) -> Any:
        if sp.issparse(x) and not isinstance(x, sp.sparray):  # spmatrix: * is @
            return _sparse.sparse_times(x, self)
        if _is_number(x):
            return self._scaled(x)
        backend = _dask_backend(x)
        if backend is not None:  # x @ A = (A^T x^T)^T, lazily (SciPy would compute x)
            return backend.apply(self.T, x, axis=0 if x.ndim == 1 else 1)
        refuse_masked(x, "x", "the operator")  # SciPy's product drops the mask (np.asarray)
        return super().__rmul__(x)

    def __matmul__(self, other: Any) -> Any:
        if type(other) is np.ndarray:
            result = self._apply_direct(other)
            if result is not None:
                return result
        _refuse_text(other)  # before SciPy's "Scalar operands are not allowed"
        return super().__matmul__(other)

    # --- application ----------------------------------------------------------------
    def matmat(self, X: Any) -> Any:
        """``self @ X`` for ``X`` of shape ``(n, batch)``; a Dask array gives a lazy result.

        Parameters
        ----------
        X : array_like or Dask array, shape (n, batch)
            A block of column vectors, of a numeric dtype (a Dask array may also
            be one vector of length ``n``).

        Returns
        -------
        ndarray or dask.array.Array, shape (m, batch)
            Of NumPy's result type of the operator's and ``X``'s dtypes.

        Raises
        ------
        ValueError
            If ``X`` does not have ``n`` rows or is not 2-D (but for a Dask
            vector), or is a masked array with masked entries.
        TypeError
            If ``X`` is SciPy sparse (use ``op @ X``), or its dtype is not numeric or
            is of ``longdouble`` precision (cast it to float64 or complex128).
        """
        backend = _dask_backend(X)
        if backend is not None:
            return backend.apply(self, X)
        self._check_block(X, adjoint=False)
        return _matrix_if_matrix(X, super().matmat(X))

    def rmatmat(self, X: Any) -> Any:
        """``self.H @ X`` for ``X`` of shape ``(m, batch)``; a Dask array gives a lazy result.

        Parameters
        ----------
        X : array_like or Dask array, shape (m, batch)
            A block of column vectors, of a numeric dtype (a Dask array may also
            be one vector of length ``m``).

        Returns
        -------
        ndarray or dask.array.Array, shape (n, batch)
            ``A^H X``, of NumPy's result type of the operator's and ``X``'s dtypes.

        Raises
        ------
        ValueError
            If ``X`` does not have ``m`` rows or is not 2-D (but for a Dask
            vector), or is a masked array with masked entries.
        TypeError
            If ``X`` is SciPy sparse (use ``op.H @ X``), or its dtype is not numeric or
            is of ``longdouble`` precision (cast it to float64 or complex128).
        """
        backend = _dask_backend(X)
        if backend is not None:
            return backend.apply(self, X, adjoint=True)
        self._check_block(X, adjoint=True)
        return _matrix_if_matrix(X, super().rmatmat(X))

    def _check_block(self, X: Any, adjoint: bool) -> None:
        """Refuse a block ``X`` (not Dask) that is not 2-D with the rows ``matmat``
        (``rmatmat``) takes, in pydebut's words, not SciPy's (which change between
        releases). Sparse blocks are left to SciPy, which refuses them."""
        if sp.issparse(X):
            return
        method = "rmatmat" if adjoint else "matmat"
        n_in = self.shape[0] if adjoint else self.shape[1]
        shape = np.shape(X)
        if len(shape) != 2:
            raise ValueError(
                f"{method} expected 2-d X of shape ({n_in}, batch), got {len(shape)}-d {shape}"
            )
        if shape[0] != n_in:
            raise ValueError(f"dimension mismatch: {method} expected ({n_in}, batch), got {shape}")

    def apply_rows(self, X: Any, *, adjoint: bool = False) -> Any:
        """Apply the operator (or its adjoint) to every row of ``X``, of shape ``(batch, n)``.

        The row-major layout of data frames, PyTorch and scikit-learn: with
        ``A = self.toarray()`` the result is ``X @ A.T`` (``X @ A.conj()`` for the
        adjoint), of shape ``(batch, m)``, computed without forming any matrix.
        The kernels read the rows of a C-ordered real ``X`` of the operator's
        dtype, of one row or at least six, where they are and write the result
        row by row, a C-ordered array; other NumPy input (two to five rows
        too) is first copied into their layout, and the result is then a
        transposed (Fortran-ordered) view. A Dask array gives a
        lazy Dask array chunked along the batch axis (:func:`pydebut.dask.apply`).

        Parameters
        ----------
        X : array_like or Dask array, shape (batch, n)
            One input per row, of a numeric dtype; ``(batch, m)`` with ``adjoint``.
        adjoint : bool, default False
            Apply ``A^H``: the result is ``X @ A.conj()``, of shape ``(batch, n)``.

        Returns
        -------
        ndarray or dask.array.Array, shape (batch, m)
            ``(batch, n)`` with ``adjoint``; of NumPy's result type of the
            operator's and ``X``'s dtypes.

        Raises
        ------
        ValueError
            If ``X`` is not 2-D with ``n`` columns (``m`` with ``adjoint``), or is
            a masked array with masked entries.
        TypeError
            If ``X`` is SciPy sparse (use ``X @ op.T``), its dtype is not numeric or
            is of ``longdouble`` precision (cast it to float64 or complex128), or
            ``adjoint`` is not a bool.

        Examples
        --------
        >>> op = DeButOperator.random([(4, 8, 1, 2, 4)], rng=0)
        >>> rows = np.arange(24.0).reshape(3, 8)
        >>> np.allclose(op.apply_rows(rows), rows @ op.toarray().T)
        True
        """
        adjoint = as_bool(adjoint, "adjoint")
        backend = _dask_backend(X)
        if backend is not None:
            return backend.apply(self, X, adjoint=adjoint, axis=1)
        _refuse_sparse(X, "apply_rows", "X @ op.T")
        refuse_masked(X, "X", "the operator")
        X = np.asarray(X)
        n_in = self.shape[0] if adjoint else self.shape[1]
        if X.ndim != 2 or X.shape[1] != n_in:
            raise ValueError(f"apply_rows expects an array of shape (batch, {n_in}), got {X.shape}")
        return self._apply_permuted(X.T, adjoint).T

    def _plan(self, dtype: np.dtype, adjoint: bool) -> _Plan:
        key = (dtype, adjoint)
        plan = self._plans.get(key)
        if plan is None:
            if adjoint:  # apply F_1^H first, F_L^H last
                specs = [f.T for f in self._chain]
                weights = [w.transpose(0, 2, 1, 3).conj() for w in self._weights]
            else:  # apply F_L first, F_1 last
                specs = list(reversed(self._chain.factors))
                weights = list(reversed(self._weights))
            # A real operator keeps real weights for complex data (_parts_as_columns).
            weight_dtype = np.finfo(dtype).dtype if self.dtype.kind == "f" else dtype
            plan = _make_plan(specs, weights, dtype, weight_dtype)
            self._plans[key] = plan
        return plan

    def _route(self, data_dtype: np.dtype, adjoint: bool) -> _Plan:
        """The plan for data of ``data_dtype``, remembered so the next call is a dict lookup."""
        plan = self._plan(result_dtype(self.dtype, data_dtype), adjoint)
        self._routes[data_dtype, adjoint] = plan
        unpermuted = self._row_perm is None and self._col_perm is None
        if unpermuted and plan.dtype == data_dtype:
            self._direct[data_dtype, adjoint] = plan
        return plan

    def _apply_direct(
        self, x: np.ndarray, out: Any = None, adjoint: bool = False
    ) -> np.ndarray | None:
        """``A @ x`` (``A^H @ x``) for an ndarray ``x`` needing no conversion, else None.

        The fast path: a dict lookup, a shape and a layout check, the kernel
        call. It takes a C-contiguous ``x`` of a dtype whose plan applies it
        as it is: one vector, or a block of at least two. ``out`` is written
        in place when it is a C-contiguous writeable array of the result's
        dtype and shape that shares no memory with ``x``. Whether it does is
        tested for a block, and for one vector only where that matters: to a
        one-factor chain, whose kernel reads ``x`` while it writes ``out``,
        and to the parallel kernel. Otherwise (as for any ``x`` this path does
        not take) the caller goes the general way, which validates everything.
        """
        plan = self._direct.get((x.dtype, adjoint))
        block = x.ndim == 2
        if (
            plan is None
            or not (x.ndim == 1 or (block and x.shape[1] >= 2))
            or x.shape[0] != plan.n_in
            or not x.flags.c_contiguous
        ):
            return None
        shape = (plan.n_out, x.shape[1]) if block else (plan.n_out,)
        if out is None:
            out = np.empty(shape, dtype=x.dtype)
        elif not _writes_directly(out, shape, x.dtype) or (
            (block or len(plan.specs) == 1 or _splits_vector(plan)) and np.may_share_memory(out, x)
        ):
            return None
        if block:
            self._apply_block(plan, x, out)
        else:
            self._apply_vector(plan, x, out)
        return out

    def _apply(self, x: Any, adjoint: bool, out: np.ndarray | None = None) -> np.ndarray:
        """``B x`` (``B^H x``) without permutations, into ``out`` if it can take the result."""
        x = np.asarray(x)
        plan = self._routes.get((x.dtype, adjoint)) or self._route(x.dtype, adjoint)
        dtype = plan.dtype
        if x.ndim not in (1, 2) or x.shape[0] != plan.n_in:
            raise ValueError(
                f"dimension mismatch: expected an array of shape ({plan.n_in},) or "
                f"({plan.n_in}, batch), got {x.shape}"
            )
        order = _kernel_order(x, dtype)
        if order == "C" and (x.dtype != dtype or not x.flags.c_contiguous):
            x = np.ascontiguousarray(x, dtype=dtype)
        shape = (plan.n_out, *x.shape[1:])
        if (
            out is None
            or not _writes_directly(out, shape, dtype, order)
            or np.may_share_memory(out, x)
        ):
            out = np.empty(shape, dtype=dtype, order=order)
        if x.ndim == 1:
            self._apply_vector(plan, x, out)
        elif x.shape[1] == 1:
            self._apply_vector(plan, x.reshape(plan.n_in), out.reshape(plan.n_out))
        elif x.shape[1] > 0:
            self._apply_block(plan, x, out)
        return out

    @staticmethod
    def _apply_vector(plan: _Plan, x: np.ndarray, out: np.ndarray) -> None:
        if not _splits_vector(plan):
            _kernels.apply_chain_vector(plan.specs, plan.weights, x, out)
            return
        with parallel_launch_lock:
            n_parts = _kernels.numba.get_num_threads()
            size = _kernels.vector_parallel_work(plan.specs, n_parts)
            work = _workspace.workspace.get((size,), out.dtype)
            _kernels.apply_chain_vector_parallel(plan.specs, plan.weights, x, out, work, n_parts)

    @staticmethod
    def _apply_block(plan: _Plan, x: np.ndarray, out: np.ndarray) -> None:
        if plan.real_weights_for_complex and (
            2 * x.shape[1] >= COLUMNS_ALONE or _splits_vector(plan)
        ):
            x, out = _parts_as_columns(x), _parts_as_columns(out)  # else column by column
        if x.shape[1] < COLUMNS_ALONE and not _splits_vector(plan):
            _kernels.apply_chain_columns(plan.specs, plan.weights, x, out)
            return
        if not plan.batched:
            plan.batched.append(_batched.make_batch_plan(plan.specs, plan.offsets, plan.weights))
        _batched.apply(plan.batched[0], x, out, parallel_launch_lock)

    def apply(self, x: ArrayLike, out: np.ndarray | None = None) -> np.ndarray:
        """The product ``A @ x`` with little Python between the caller and the kernel.

        The same product as ``op @ x`` without SciPy's ``LinearOperator``
        dispatch: for small layers, where the arithmetic takes a microsecond
        or two, the overhead of a call decides the speed. The kernel plan of
        each input dtype is built on the first call and reused; a C-contiguous
        ``x`` of that dtype, one vector or a block (and an operator without
        permutations), then goes straight to the kernel after a shape and a
        layout check. A block's windows and workers are worked out once per
        batch size.

        Parameters
        ----------
        x : array_like, shape (n,) or (n, batch)
            A Dask array is applied lazily, as by ``op @ x``
            (:func:`pydebut.dask.apply`), without ``out``.
        out : ndarray, optional
            Array for the result: of shape ``(m,)`` or ``(m, batch)`` as ``x``,
            of the result dtype (that of the operator and ``x`` together),
            writeable. The kernel writes into it directly when it has the
            kernel's layout (C-contiguous; F-contiguous for an F-contiguous
            real ``x`` of the operator's dtype with at least ``COLUMNS_ALONE``
            columns) and shares no memory with ``x`` (and the operator has no
            permutations); otherwise the result is copied into it.

        Returns
        -------
        ndarray or dask.array.Array
            ``out`` if given, else a new array in the kernel's layout (for a
            Dask ``x``, the lazy product).

        Raises
        ------
        ValueError
            If ``x`` or ``out`` has the wrong shape, ``out`` is read-only, or
            ``x`` is a masked array with masked entries (as everywhere an
            operator meets data: fill them first, e.g. ``x.filled(0)``).
        TypeError
            If the dtypes are not supported, ``out`` is not a NumPy array or has
            another dtype, ``x`` is sparse, or ``out`` is given for a Dask ``x``.

        Examples
        --------
        >>> op = DeButOperator.random([(4, 8, 1, 2, 4), (8, 8, 2, 2, 2)], rng=0)
        >>> x = np.arange(8.0)
        >>> out = np.empty(4)
        >>> op.apply(x, out=out) is out
        True
        >>> np.allclose(out, op.toarray() @ x)
        True
        """
        if type(x) is np.ndarray:
            result = self._apply_direct(x, out)
            if result is not None:
                return result
        _refuse_sparse(x, "apply", "op @ x")
        backend = _dask_backend(x)
        if backend is not None:
            if out is not None:  # np.asarray(x) computed all of x into memory
                raise TypeError(
                    "apply(x, out=...) takes an array in memory, got a Dask array: "
                    "op.apply(x) or op @ x is its lazy product (store it with "
                    "dask.array.store), or compute x first"
                )
            return backend.apply(self, x)
        refuse_masked(x, "x", "the operator")
        if out is None:
            return self._apply_permuted(x, adjoint=False)
        x = np.asarray(x)
        m, n = self.shape
        if x.ndim in (1, 2) and x.shape[0] == n:  # else _apply says what is wrong with x
            _check_out(out, (m, *x.shape[1:]), result_dtype(self.dtype, x.dtype))
        unpermuted = self._row_perm is None and self._col_perm is None
        result = self._apply_permuted(x, adjoint=False, out=out if unpermuted else None)
        if result is not out:
            out[...] = result
        return out

    def _apply_permuted(
        self, x: np.ndarray, adjoint: bool, out: np.ndarray | None = None
    ) -> np.ndarray:
        """``A x = (B x[col_inverse])[row_perm]``, ``A^H y = (B^H y[row_inverse])[col_perm]``.

        ``out`` (without permutations only) receives the result when it can.
        """
        before, after = (
            (self._row_inverse, self._col_perm) if adjoint else (self._col_inverse, self._row_perm)
        )
        if before is not None:
            x = np.asarray(x)
            if x.ndim in (1, 2) and x.shape[0] == before.shape[0]:  # else _apply says why not
                x = x[before]
        y = self._apply(x, adjoint, out)
        return y if after is None else y[after]

    def matvec(self, x: Any) -> Any:
        """``A @ x`` for one vector, as ``LinearOperator.matvec`` (1-D arrays skip its checks).

        A Dask vector gives a lazy result.

        Parameters
        ----------
        x : array_like or Dask array, shape (n,) or (n, 1)
            One vector, of a numeric dtype; for a block use :meth:`matmat` or ``op @ x``.

        Returns
        -------
        ndarray or dask.array.Array, shape (m,) or (m, 1)
            As ``x`` is shaped, of NumPy's result type of the operator's and
            ``x``'s dtypes.

        Raises
        ------
        ValueError
            If ``x`` has another shape, or is a masked array with masked entries.
        TypeError
            If ``x`` is None, text, SciPy sparse (use ``op @ x``), not numeric or of
            ``longdouble`` precision (cast it to float64 or complex128).
        """
        if type(x) is np.ndarray and x.ndim == 1:
            return self._matvec(x)
        lazy = self._checked_vector(x, adjoint=False)
        if lazy is not None:
            return lazy
        # a column (n, 1) as a block of one: SciPy deprecates it in matvec from 1.18 on
        return _matrix_if_matrix(x, super().matmat(x) if np.ndim(x) == 2 else super().matvec(x))

    def rmatvec(self, x: Any) -> Any:
        """``A^H @ x`` for one vector, as ``LinearOperator.rmatvec`` (1-D arrays skip checks).

        A Dask vector gives a lazy result.

        Parameters
        ----------
        x : array_like or Dask array, shape (m,) or (m, 1)
            One vector, of a numeric dtype; for a block use :meth:`rmatmat` or
            ``op.H @ x``.

        Returns
        -------
        ndarray or dask.array.Array, shape (n,) or (n, 1)
            As ``x`` is shaped, of NumPy's result type of the operator's and
            ``x``'s dtypes.

        Raises
        ------
        ValueError
            If ``x`` has another shape, or is a masked array with masked entries.
        TypeError
            If ``x`` is None, text, SciPy sparse (use ``op.H @ x``), not numeric or of
            ``longdouble`` precision (cast it to float64 or complex128).
        """
        if type(x) is np.ndarray and x.ndim == 1:
            return self._product(x, adjoint=True)
        lazy = self._checked_vector(x, adjoint=True)
        if lazy is not None:
            return lazy
        return _matrix_if_matrix(x, super().rmatmat(x) if np.ndim(x) == 2 else super().rmatvec(x))

    def _checked_vector(self, x: Any, adjoint: bool) -> Any:
        """Refuse what ``matvec`` (``rmatvec``) cannot take: text, ``None``, sparse input, a
        shape other than ``(n,)`` or ``(n, 1)``. A Dask vector gives the lazy product;
        None is returned for anything else."""
        method, product = ("rmatvec", "op.H @ x") if adjoint else ("matvec", "op @ x")
        _refuse_text(x)
        _refuse_sparse(x, method, product)
        n_in = self.shape[0] if adjoint else self.shape[1]
        if np.shape(x) not in ((n_in,), (n_in, 1)):
            raise ValueError(
                f"dimension mismatch: {method} expected ({n_in},) or ({n_in}, 1), got "
                f"{np.shape(x)}; for ({n_in}, batch) use {product}"
            )
        backend = _dask_backend(x)
        return None if backend is None else backend.apply(self, x, adjoint=adjoint)

    def _product(self, x: Any, adjoint: bool, name: str = "x") -> np.ndarray:
        """``A x`` (``A^H x``): the fast path where it applies, else the general one, which
        refuses a masked ``x`` (called ``name`` in the message)."""
        if type(x) is np.ndarray:
            result = self._apply_direct(x, adjoint=adjoint)
            if result is not None:
                return result
        refuse_masked(x, name, "the operator")
        return self._apply_permuted(x, adjoint)

    def _matvec(self, x: np.ndarray) -> np.ndarray:
        return self._product(x, adjoint=False)

    def _matmat(self, X: np.ndarray) -> np.ndarray:
        return self._product(X, adjoint=False, name="X")

    def _rmatvec(self, x: np.ndarray) -> np.ndarray:
        return self._product(x, adjoint=True)

    def _rmatmat(self, X: np.ndarray) -> np.ndarray:
        return self._product(X, adjoint=True, name="X")

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuilt through __init__, so the weights are immutable again in the copy (unpickled
        # arrays are writeable) and no cached plan travels with it.
        return (
            _rebuild,
            (self._chain, self._weights, self.dtype, self._row_perm, self._col_perm),
        )

    # --- display ----------------------------------------------------------------------
    def __repr__(self) -> str:
        m, n = self.shape
        head = (
            f"<{m}x{n} DeButOperator with dtype={self.dtype}, {self.n_factors} factors, "
            f"{self.n_params} params, density {self.density:.4f} "
            f"(compression {self.compression_ratio:.2f}x)>"
        )
        lines = [head, *self._chain.describe().splitlines()[1:]]
        for name, perm in (("row_perm", self._row_perm), ("col_perm", self._col_perm)):
            if perm is not None:
                lines.append(f"  {name} = {np.array2string(perm, threshold=16, edgeitems=4)}")
        return "\n".join(lines)


def _same_permutation(first: np.ndarray | None, second: np.ndarray | None) -> bool:
    """Whether two permutations (None for the identity) are equal."""
    if first is None or second is None:
        return first is second
    return bool(np.array_equal(first, second))


def _rebuild(
    chain: Chain,
    weights: tuple[np.ndarray, ...],
    dtype: np.dtype,
    row_perm: np.ndarray | None = None,
    col_perm: np.ndarray | None = None,
) -> DeButOperator:
    """Unpickle a :class:`DeButOperator` (weights were checked when it was built)."""
    return DeButOperator(
        chain, weights, dtype, check_finite=False, row_perm=row_perm, col_perm=col_perm
    )


def _matrix_if_matrix(x: Any, result: Any) -> Any:
    """``result`` as an ``np.matrix`` when ``x`` is one: SciPy's ``matvec`` contract, which
    its ``matmat`` keeps for operators defined by their columns."""
    return np.asmatrix(result) if isinstance(x, np.matrix) else result


def _refuse_sparse(x: Any, method: str, instead: str) -> None:
    if sp.issparse(x):
        raise TypeError(
            f"{method} takes dense arrays, got a SciPy sparse {type(x).__name__}: use "
            f"{instead}, which takes sparse operands, or convert with .toarray()"
        )


def _is_number(x: Any) -> bool:
    """Whether ``x`` is a boolean, integer, real or complex scalar (Python's or NumPy's)."""
    return np.isscalar(x) and np.asarray(x).dtype.kind in "biufc"


def _refuse_text(x: Any) -> None:
    if x is None:
        raise TypeError("cannot apply a DeButOperator to None")
    if isinstance(x, (str, bytes)):
        raise TypeError(f"cannot apply a DeButOperator to {type(x).__name__} {shown(x)}")
