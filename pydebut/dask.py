"""Dask back-end: lazy application, many fits in parallel, fits of targets larger than memory.

Imported only when used (``import pydebut`` never imports Dask); install it with
``pip install "pydebut[dask]"``. Three workflows, described on the *Scaling out*
page of the documentation:

- :func:`apply` (also reached through ``op @ X``, ``op.matmat``, ``op.rmatmat``,
  ``op.H @ X`` and :meth:`~pydebut.DeButOperator.apply_rows` with a Dask array):
  push a Dask array of vectors through an operator, lazily, chunk by chunk;
- :func:`fit_many`: fit many targets as Dask tasks, on a ``dask.distributed``
  cluster or the local scheduler;
- :func:`fit_hierarchical` (also reached through :func:`pydebut.fit_hierarchical`
  with a Dask array target) and :func:`relative_error`: factor a target that
  does not fit in memory, reading it column panel by column panel.
"""

from __future__ import annotations

import copy
import inspect
import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np
from scipy.sparse.linalg import LinearOperator

try:
    import dask
    import dask.array as da
    from dask.callbacks import Callback
    from dask.utils import parse_bytes
    from threadpoolctl import threadpool_limits
except ImportError as err:  # pragma: no cover - exercised only without Dask
    raise ImportError(
        'pydebut.dask needs Dask and threadpoolctl: pip install "pydebut[dask]"'
    ) from err

from ._arguments import as_bool, as_positive_int, refuse_masked
from ._memory import check_fits_in_memory
from ._weights import result_dtype
from .fit._als import OPTION_CHECKS as ALS_OPTION_CHECKS
from .fit._common import (
    FitResult,
    TargetScale,
    check_in_range,
    double_dtype,
    hypot_of_scaled,
    in_double,
    load_target,
    make_operator,
    progress_bars,
    scaled_norm,
    unscaled,
    working_dtype,
)
from .fit._hierarchical import OPTION_CHECKS as HIERARCHICAL_OPTION_CHECKS
from .fit._hierarchical import (
    _bases,
    _fits_through_transpose,
    _peel,
    _Split,
    _top_eigenvectors,
    hierarchy_ranks,
)
from .fit._search import check_arguments as check_approximate_arguments
from .operator import DeButOperator
from .spec import Chain

__all__ = ["apply", "fit_hierarchical", "fit_many", "relative_error"]

#: Bytes of one column panel of the target read by the out-of-core fit.
PANEL_BYTES = 2**25
#: Bytes below which a column panel takes in the target's next chunks.
MIN_PANEL_BYTES = 2**20


# --- lazy application -------------------------------------------------------------------
def apply(operator: DeButOperator, X: Any, *, adjoint: bool = False, axis: int = 0) -> Any:
    """Apply ``operator`` (or its adjoint) to the vectors of a Dask array, lazily.

    Parameters
    ----------
    operator : DeButOperator
    X : dask.array.Array or array_like
        With ``axis=0``, vectors are columns: shape ``(n,)`` or ``(n, batch)``
        (``(m, ...)`` for the adjoint). With ``axis=1``, vectors are rows: shape
        ``(batch, n)``, the layout of data frames, PyTorch and scikit-learn.
    adjoint : bool, default False
        Apply ``operator.H`` instead.
    axis : {0, 1}
        The axis of ``X`` that runs along the operator's input.

    Returns
    -------
    dask.array.Array
        ``operator @ X`` (``axis=0``) or ``X @ operator.T`` (``axis=1``), with the
        chunks of ``X`` along the batch axis (split where the rechunk of the Notes
        would make them too large) and one chunk along the operator's axis. Nothing
        is computed until the result is.

    Raises
    ------
    ValueError
        If ``axis`` is neither 0 nor 1, ``X`` does not have the operator's size
        along ``axis``, or its size there is unknown (chunks of unknown size,
        ``nan``); when the result is computed, if a chunk of ``X`` is a masked
        array with masked entries.
    TypeError
        If ``operator`` is not a ``DeButOperator``, ``adjoint`` is not a bool or
        the dtype of ``X`` is not numeric.

    Notes
    -----
    Every chunk runs the operator's kernels on its own block of vectors, so the
    operator's axis must lie in one chunk: ``X`` is rechunked to one chunk along
    that axis when it is not (keep that axis whole when you create ``X``, so
    the rechunk costs nothing). The rechunk splits a chunk of the batch axis into
    equal pieces where merging would make it larger than the larger of ``X``'s
    largest chunk and Dask's ``array.chunk-size`` (128 MiB by default): no task
    holds more of ``X`` than that, and its result is that block of vectors through
    the operator. Each vector is computed by the same kernel and
    the same arithmetic as in memory, so results equal ``operator @ X.compute()``
    bit for bit, whatever the chunks. The operator travels to workers as its
    chain, weights and permutations only (it pickles to about the weights' size),
    as one key of the graph: a worker process receives it once, not once per task,
    and keeps the plans it builds for its first chunk.

    Examples
    --------
    >>> import dask.array as da
    >>> from pydebut import DeButOperator, special
    >>> op = DeButOperator.random(special.butterfly_chain(8), rng=0)
    >>> X = da.ones((8, 100), chunks=(8, 25))
    >>> Y = op @ X
    >>> Y.chunks
    ((8,), (25, 25, 25, 25))
    >>> bool((Y.compute() == op @ np.ones((8, 100))).all())
    True
    """
    if not isinstance(operator, DeButOperator):
        raise TypeError(f"apply needs a DeButOperator, got {type(operator).__name__}")
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)) or axis not in (0, 1):
        raise ValueError(f"axis must be 0 (vectors are columns) or 1 (rows), got {axis!r}")
    adjoint = as_bool(adjoint, "adjoint")
    X = da.asarray(X)
    _check_known_size(X, axis, "the operator's axis")
    dtype = result_dtype(operator.dtype, X.dtype)
    n_out, n_in = operator.shape[::-1] if adjoint else operator.shape
    if axis == 0 and (X.ndim not in (1, 2) or X.shape[0] != n_in):
        raise ValueError(
            f"expected a Dask array of shape ({n_in},) or ({n_in}, batch), got {X.shape}"
        )
    if axis == 1 and (X.ndim != 2 or X.shape[1] != n_in):
        raise ValueError(f"expected a Dask array of shape (batch, {n_in}), got {X.shape}")
    X = X.rechunk(_task_chunks(X, axis))
    chunks = list(X.chunks)
    chunks[axis] = (n_out,)
    # One vector runs the one-vector kernel in memory, several run the block kernel: a chunk
    # of one vector out of many is padded so that it runs the block kernel too.
    batched = X.ndim == 2 and X.shape[1 - axis] > 1
    name = "debut-adjoint" if adjoint else "debut-apply"
    # The operator as one key of the graph: as a plain argument it would be part of every
    # task, sent (and rebuilt, its plans too) once per task rather than once per worker
    shared_operator = dask.delayed(operator, traverse=False)
    return X.map_blocks(
        _apply_block,
        shared_operator,
        adjoint,
        axis,
        batched,
        chunks=tuple(chunks),
        dtype=dtype,
        token=name,
    )


def _task_chunks(X: Any, axis: int) -> dict:
    """Chunks of ``X`` for :func:`apply`'s tasks: ``axis`` whole, the batch axis split to fit.

    A chunk of the batch axis is split into equal pieces where, with ``axis``
    whole, it would hold more bytes than the larger of ``X``'s largest chunk and
    Dask's ``array.chunk-size``. Chunks of unknown size stay as they are.
    """
    if X.ndim == 1 or any(math.isnan(chunk) for chunk in X.chunks[1 - axis]):
        return {axis: -1}
    largest_chunk = max(X.chunks[0]) * max(X.chunks[1])
    chunk_size = parse_bytes(dask.config.get("array.chunk-size")) // X.dtype.itemsize
    width = max(1, max(largest_chunk, chunk_size) // X.shape[axis])
    batch = []
    for chunk in X.chunks[1 - axis]:
        n_pieces = max(1, -(-chunk // width))
        size, longer = divmod(chunk, n_pieces)
        batch += [size + 1] * longer + [size] * (n_pieces - longer)
    return {axis: -1, 1 - axis: tuple(batch)}


def _check_known_size(X: Any, axis: int, what: str) -> None:
    """Raise unless the size of Dask array ``X`` along ``axis`` (``what``) is known."""
    if X.ndim > axis and math.isnan(X.shape[axis]):
        raise ValueError(
            f"the Dask array's size along {what} (axis {axis}) is unknown (chunks of nan "
            "size); call its compute_chunk_sizes() method first"
        )


def _apply_block(
    block: np.ndarray, operator: DeButOperator, adjoint: bool, axis: int, batched: bool
) -> np.ndarray:
    refuse_masked(block, "a chunk of X", "the operator")  # known only when it is computed
    columns = block if axis == 0 else block.T
    if batched and columns.shape[1] == 1:
        padded = np.concatenate([columns, np.zeros_like(columns)], axis=1)
        result = operator._apply_permuted(padded, adjoint)[:, :1]
    else:
        result = operator._apply_permuted(columns, adjoint)
    return result if axis == 0 else result.T


# --- many fits ------------------------------------------------------------------------
#: The fitting functions of ``pydebut`` that :func:`fit_many` runs by name.
FITTING_FUNCTIONS = ("fit_als", "fit_hierarchical", "approximate")
#: Short names of fitting functions.
METHODS = {"als": "fit_als", "hierarchical": "fit_hierarchical"}


def _fitting_function(method: str | Callable[..., Any]) -> Callable[..., Any]:
    """The fitting function named by ``method`` (looked up when called), or ``method``."""
    if callable(method):
        return method
    name = METHODS.get(method, method) if isinstance(method, str) else None
    if name not in FITTING_FUNCTIONS:
        names = ", ".join(repr(name) for name in (*METHODS, *FITTING_FUNCTIONS))
        raise ValueError(f"unknown fitting method {method!r}: use one of {names}, or a callable")
    import pydebut

    return getattr(pydebut, name)


def _fit_one(
    method: str | Callable[..., Any], target: Any, spec: Any, options: dict, index: int
) -> Any:
    try:
        return _fitting_function(method)(target, spec, **options)
    except (TypeError, ValueError, OSError) as err:  # OSError: a target file it cannot read
        named = _naming_target(err, index)
        if named is err:
            raise
        raise named from err


def _naming_target(err: Exception, index: int) -> Exception:
    """``err`` with its message prefixed by ``target {index}: `` (``err`` itself if its
    class takes other arguments than a message)."""
    try:
        return type(err)(f"target {index}: {err}")
    except TypeError:
        return err


def _check_targets(
    method: str | Callable[..., Any],
    targets: Sequence[Any],
    specs: Sequence[Any],
    options: dict[str, Any],
) -> None:
    """Refuse, before any fit runs, what a named fit would refuse, naming the target: a
    NumPy target's dtype, finiteness and shape (against its chain); for ``approximate``,
    every target's budget, and a NumPy target's shape against it and the options. Options
    that depend on no target are checked once, naming none. Other targets are checked by
    the fit on the worker, whose error names the target too."""
    if callable(method):
        return
    name = METHODS.get(method, method)
    approximating = name == "approximate"
    _check_shared_options(name, options)
    for index, (target, spec) in enumerate(zip(targets, specs)):
        try:
            if approximating:
                check_approximate_arguments(target, spec, **options)
            elif isinstance(target, np.ndarray):
                load_target(target, Chain(spec))
        except (TypeError, ValueError) as err:
            raise _naming_target(err, index) from err


def _check_shared_options(name: str, options: dict[str, Any]) -> None:
    """Refuse, naming no target, what the fit ``name`` would refuse whatever the target and
    its chain or budget: an unknown option, one given twice, or an option's value."""
    try:  # the target and the chain (or budget) come first, as fit_many passes them
        inspect.signature(_fitting_function(name)).bind_partial(None, None, **options)
    except TypeError as err:
        raise TypeError(f"{name}: {err}") from None
    if name == "approximate":
        check_approximate_arguments(None, 1, **options)  # 1: a budget no option refuses
        return
    checks = ALS_OPTION_CHECKS if name == "fit_als" else HIERARCHICAL_OPTION_CHECKS
    for option, value in options.items():
        if option in checks:
            checks[option](value)


def fit_many(
    targets: Sequence[Any],
    specs: Sequence[Any],
    method: str | Callable[..., Any] = "als",
    *,
    client: Any = None,
    progress: bool = False,
    **options: Any,
) -> list[Any]:
    """Fit every target with its chain (or budget) as a Dask task; results in input order.

    Parameters
    ----------
    targets : sequence
        Matrices (arrays, or paths of ``.npy`` files read by the workers).
    specs : sequence
        One second argument of the fitting function per target: a
        :class:`~pydebut.Chain` for ``"als"`` and ``"hierarchical"``, a budget
        (most parameters) for ``"approximate"``.
    method : str or callable, default "als"
        ``"als"`` or ``"fit_als"`` (:func:`~pydebut.fit_als`), ``"hierarchical"``
        or ``"fit_hierarchical"`` (:func:`~pydebut.fit_hierarchical`),
        ``"approximate"`` (:func:`~pydebut.approximate`),
        or a callable ``method(target, spec, **options)``. Names are resolved on
        the workers.
    client : dask.distributed.Client, optional
        Run on this cluster: an array travels in its fit's task, which the
        scheduler holds until the call returns, so that a fit lost with its
        worker runs again on another one (a path is read by the worker). By
        default, on the client Dask computes on (the last one created with
        ``set_as_default=True``, as ``Client(...)`` is) if there is one, else on
        Dask's local scheduler (threads, unless configured otherwise with
        ``dask.config.set(scheduler=...)``).
    progress : bool, default False
        Show a progress bar counting finished fits (needs ``tqdm``).
    **options
        Passed to every fit, e.g. ``n_sweeps=5``.

    Returns
    -------
    list
        The fitting function's results (:class:`~pydebut.FitResult`), in the
        order of ``targets``. Each equals the result of the serial call: the
        fits are deterministic (seed ``rng`` in ``options`` for random
        initialisations). A NumPy ``Generator`` (or bit generator) as ``rng``
        reaches every fit as a copy in its state at the call, on the local
        scheduler as on a cluster: each result equals
        ``fit(target, spec, rng=copy.deepcopy(rng))``.

    Raises
    ------
    ValueError, TypeError
        If ``targets`` and ``specs`` differ in length, ``method`` is unknown,
        ``client`` is not a client or ``progress`` not a bool;
        before any fit runs, if an option is unknown to the fit, is given twice or has
        a value it refuses whatever the target, if a NumPy target is not numeric, is not
        finite or does not have its chain's shape, or, for ``"approximate"``, if a
        budget is one it refuses (for a NumPy target, against its shape and the options
        too); or as a fit raises them. The message names the target (``target 2: ...``)
        where one is to blame.

    Examples
    --------
    >>> from pydebut import Chain
    >>> from pydebut.dask import fit_many
    >>> chain = Chain.from_factorizations([2, 2], [2, 2])
    >>> targets = [np.eye(4), np.ones((4, 4))]
    >>> results = fit_many(targets, [chain, chain], "hierarchical")
    >>> [round(r.error, 12) for r in results]
    [0.0, 0.0]
    """
    if len(targets) != len(specs):
        raise ValueError(f"{len(targets)} targets but {len(specs)} chains or budgets were given")
    progress = as_bool(progress, "progress")
    if client is not None and not (hasattr(client, "submit") and hasattr(client, "gather")):
        raise TypeError(
            f"client must be a dask.distributed.Client (or None), got {type(client).__name__}"
        )
    _fitting_function(method)  # unknown names fail here, before any work
    _check_targets(method, targets, specs, options)
    client = _default_client() if client is None else client
    bar = _progress_bar(len(targets)) if progress else None
    try:
        if client is None:
            tasks = [
                dask.delayed(_fit_one, pure=False)(method, target, spec, _own_rng(options), index)
                for index, (target, spec) in enumerate(zip(targets, specs))
            ]
            with _TaskCounter(bar, {task.key for task in tasks}):
                return list(dask.compute(*tasks))
        from dask.distributed import as_completed

        futures = [
            _submit_fit(client, method, target, spec, options, index)
            for index, (target, spec) in enumerate(zip(targets, specs))
        ]
        if bar is not None:
            for _ in as_completed(futures):
                bar.update()
        return client.gather(futures)
    finally:
        if bar is not None:
            bar.close()


def _submit_fit(
    client: Any, method: str | Callable[..., Any], target: Any, spec: Any, options: dict, index: int
) -> Any:
    """The future of one fit on ``client``, its target an argument of its task.

    The scheduler keeps a task's arguments, so a fit lost with its worker runs again on
    another one; a scattered target would be lost with its worker, and every fit needing
    it with it. Only the worker running the fit receives the target, which the scheduler
    holds until the result is released; Dask's warning about graphs larger than
    ``distributed.admin.large-graph-warning-threshold`` counts what else the task holds.
    """
    threshold = parse_bytes(dask.config.get("distributed.admin.large-graph-warning-threshold"))
    target_bytes = target.nbytes if isinstance(target, np.ndarray) else 0
    with dask.config.set(
        {"distributed.admin.large-graph-warning-threshold": threshold + target_bytes}
    ):
        return client.submit(_fit_one, method, target, spec, options, index, pure=False)


def _default_client() -> Any:
    """The ``dask.distributed`` client Dask computes on by default, or ``None``."""
    if dask.config.get("scheduler", None) != "dask.distributed":
        return None
    from dask.distributed import default_client

    try:
        return default_client()
    except ValueError:  # the setting outlived its client
        return None


def _own_rng(options: dict) -> dict:
    """``options`` with a copy of its random generator, if it holds one (tasks share nothing)."""
    rng = options.get("rng")
    if isinstance(rng, (np.random.Generator, np.random.BitGenerator)):
        return {**options, "rng": copy.deepcopy(rng)}
    return options


def _progress_bar(total: int) -> Any:
    return progress_bars(True)(total=total, desc="fits", unit="fit")


class _TaskCounter(Callback):
    """Advances a progress bar when one of ``keys`` finishes on the local scheduler."""

    def __init__(self, bar: Any, keys: set) -> None:
        super().__init__()
        self.bar, self.keys = bar, keys

    def _posttask(self, key: Any, result: Any, dsk: Any, state: Any, worker_id: Any) -> None:
        if self.bar is not None and key in self.keys:
            self.bar.update()


# --- targets larger than memory ---------------------------------------------------------
def fit_hierarchical(
    target: Any, chain: Chain | Iterable[Any], *, memory_limit: int = 2**27
) -> FitResult:
    """Hierarchical factorization (left to right) of a target read panel by panel.

    Parameters
    ----------
    target : dask.array.Array
        The ``m x n`` matrix, e.g. ``dask.array.from_zarr(path)``. It is read in
        column panels holding every row (store it in chunks of whole columns,
        ``chunks=(m, width)``, to read every byte once per pass).
    chain : Chain or iterable of (p, q, r, s, t)
        Chainable or rank-weighted (:func:`~pydebut.hierarchy_ranks`), with
        ``k_1 = 1`` and ``t_L = 1`` (the product's support is the whole matrix).
    memory_limit : int, default 2**27
        Bytes: once the entries still to factor (``R_l x n`` after ``l`` levels)
        fit in this, they are gathered and the remaining levels run in memory
        (0: never, every level reads the panels).

    Returns
    -------
    FitResult
        As :func:`pydebut.fit_hierarchical` with ``order="left-to-right"``; the
        factors equal the in-memory ones to rounding error (in the target's
        precision: the Gram matrices are in double precision, see Notes).

    Raises
    ------
    ValueError
        If the chain does not qualify (a chain that qualifies only transposed is
        named with the way to fit the adjoint), the target does not have its shape (or
        has chunks of unknown size), ``memory_limit`` is negative or lets more
        entries be gathered than this machine's memory holds (before any pass),
        or the target holds NaN or infinity, or masked entries (its chunks are
        masked arrays), found in the first pass.
    TypeError
        If the target is not a Dask array or not numeric, or ``memory_limit`` is not
        an integer.

    Notes
    -----
    In the left-to-right order the split of ``F_1`` needs, for each of its
    ``R1 x S2`` sub-blocks ``M``, the eigenvectors of the ``R1 x R1`` Gram matrix
    ``M M^H``: a sum over the columns of ``M``, accumulated panel by panel. The
    entries left for ``F_2 ... F_L`` are ``U^H M``, again an ``R_2 x n`` matrix
    whose columns depend only on the same columns of the target, so every level
    is one pass over the panels that replays the levels before it (small
    products with the kept bases) and accumulates the next Gram matrices and
    the previous level's residual. Only Gram matrices and bases (the size of
    the factors) stay in memory, plus a few panels in flight. For a butterfly
    chain ``R_l = m / 2^l``; once ``R_l n`` entries fit in ``memory_limit``
    they are gathered and :func:`pydebut.fit_hierarchical`'s own code finishes.

    As in memory, the Gram matrices of float32 and complex64 targets are formed,
    summed and decomposed in double precision, and the bases rounded to the
    target's dtype: the panels give ``M M^H`` where the in-memory fit may take
    the smaller ``M^H M``, and in single precision both lose the singular
    values below about ``3e-4`` of the largest, differently: in single
    precision a float32 smooth kernel was fitted to ``4.9e-5`` here against
    ``8.1e-6`` in memory, and in double precision both give ``7.9e-6``, as its
    float64 fit does.

    Examples
    --------
    >>> import dask.array as da
    >>> from scipy.linalg import hadamard
    >>> from pydebut import special
    >>> from pydebut.dask import fit_hierarchical
    >>> target = da.from_array(hadamard(64).astype(float), chunks=(64, 16))
    >>> result = fit_hierarchical(target, special.butterfly_chain(64), memory_limit=4096)
    >>> result.error < 1e-14
    True
    """
    start = time.perf_counter()
    memory_limit = as_positive_int(
        memory_limit, "memory_limit", "fit_hierarchical", allow_zero=True
    )
    chain = Chain(chain)
    if _fits_through_transpose(chain):
        raise ValueError(
            "the out-of-core fit reads the target's columns in panels and factors the chain "
            "as it is, and this chain qualifies only transposed; fit the adjoint instead: "
            "fit_hierarchical(target.conj().T, chain.T).operator.H"
        )
    ranks = hierarchy_ranks(chain)
    if chain[0].n_blocks != 1 or chain[-1].t != 1:
        raise ValueError(
            f"the out-of-core fit needs k_1 = 1 and t_L = 1 (a product supported on the whole "
            f"matrix); this chain has k_1 = {chain[0].n_blocks}, t_L = {chain[-1].t}"
        )
    _, dtype = _column_panels(target, chain.shape, "the chain")  # checks it before any pass
    splits, shape = _panel_levels(chain, ranks, memory_limit, dtype)
    scale = _scale_of(target)
    normalised = target.map_blocks(_normalised, scale, dtype=dtype)
    panels, _ = _column_panels(normalised, chain.shape, "the chain")
    levels: list[tuple[_Split, np.ndarray]] = []
    weights: list[np.ndarray] = []
    for split in splits:
        parts = _each_panel(panels, _gram_pass, levels, split)
        shape_of_grams = (split.k * split.C1, split.B2, split.R1, split.R1)
        gram = np.zeros(shape_of_grams, dtype=double_dtype(dtype))  # see _gram_pass
        for part in parts:
            for group, partial in part:
                gram[group] += partial
        gram = gram.reshape(split.k, split.C1, split.B2, 1, split.R1, split.R1)
        basis = _top_eigenvectors(gram, split.kept).astype(dtype, copy=False)
        left, basis_h = _bases(basis, split)
        weights.append(left)
        groups = (split.k * split.C1, split.B2)
        levels.append((split, basis_h.reshape(*groups, basis_h.shape[-2], split.R1)))
    parts = _each_panel(panels, _replay, levels)
    rest = np.concatenate(parts, axis=1)
    entries = np.ascontiguousarray(rest.reshape(shape[1], shape[0], shape[2]).transpose(1, 0, 2))
    del rest, parts
    done = len(levels)
    rest_weights = _peel(entries[..., None], chain.factors[done:], ranks[done:])
    # a product a hair above the largest float would overflow once scaled back
    fitted = scale.shrunk_into_range(make_operator(chain, weights + rest_weights))
    operator = make_operator(chain, scale.restore(fitted.weights))
    error = relative_error(operator, target)  # measured, one more pass over the panels
    return FitResult(operator, [error], [time.perf_counter() - start], "hierarchical")


def _panel_levels(
    chain: Chain, ranks: list[int], memory_limit: int, dtype: np.dtype
) -> tuple[list[_Split], tuple[int, int, int, int]]:
    """The splits that read the panels, and the shape ``(k, R, n / k, 1)`` of the entries
    gathered after them: levels read the panels until ``R n`` entries fit in
    ``memory_limit``. Refuses Gram matrices, or gathered entries, larger than memory."""
    m, n = chain.shape
    splits = []
    shape = (1, m, n, 1)
    for index, rank in enumerate(ranks):
        if shape[1] * n * dtype.itemsize <= memory_limit:
            break
        split = _Split.of(shape, chain[index], chain[index + 1], rank)
        check_fits_in_memory(  # accumulated over the panels, and their eigenvectors
            2 * split.groups * split.R1 * split.R1 * double_dtype(dtype).itemsize,
            f"the out-of-core split into {split.groups:,} sub-blocks of {split.R1} x "
            f"{split.S2}, with a {split.R1} x {split.R1} Gram matrix each,",
            "choose a chain whose factors have smaller blocks (r)",
        )
        splits.append(split)
        shape = (shape[0] * split.C1, rank * split.B2, shape[2] // split.C1, 1)
    check_fits_in_memory(  # the panels' parts, then the entries in order
        2 * shape[1] * n * dtype.itemsize,
        f"gathering the {shape[1]} x {n} entries left after {len(splits)} levels in {dtype}",
        f"lower memory_limit (now {memory_limit} bytes): levels read the panels until the "
        "entries left fit in it",
    )
    return splits, shape


def _scale_of(target: Any) -> TargetScale:
    """The power of two of the target's largest entry (one pass), refusing masked entries
    (counted in the same pass if the target's chunks are masked arrays), non-finite ones
    and ones that over- or underflow in the working precision (as ``as_working`` does)."""
    working = working_dtype(target.dtype)
    target = _as_panels(target)  # the max of a Dask array with an empty chunk fails
    parts = (target.real, target.imag) if np.iscomplexobj(target) else (target,)
    masked = da.ma.getmaskarray(target).sum() if isinstance(target._meta, np.ma.MaskedArray) else 0
    with threadpool_limits(limits=1, user_api="blas"):
        masked, *largest = dask.compute(masked, *(abs(part).max() for part in parts))
    # the largest entry and finiteness were of the others only
    refuse_masked(target, "the target", "a fit", masked=int(masked))
    largest = np.max(largest)  # NaN stays
    if not np.isfinite(largest):
        raise ValueError("the target has non-finite entries (NaN or Inf)")
    check_in_range(largest, working)
    return TargetScale(int(np.frexp(float(largest))[1]) if largest > 0 else 0)


def _normalised(block: np.ndarray, scale: TargetScale) -> np.ndarray:
    """A block of the target in the working dtype, divided by the target's power of two."""
    return scale.normalise(np.asarray(block, dtype=working_dtype(block.dtype)))


def relative_error(operator: LinearOperator, target: Any) -> float:
    """``||D - op||_F / ||D||_F`` for a target ``D`` read in column panels.

    ``operator`` is a :class:`~pydebut.DeButOperator` or any other SciPy
    ``LinearOperator`` of the target's shape (e.g.
    ``scipy.sparse.linalg.aslinearoperator(A)``). Each panel of ``D`` is
    compared with the same columns of the operator, ``op @ I[:, j0:j1]`` (a
    block of unit vectors at a time, at most :data:`PANEL_BYTES`), or, where
    the operator has fewer rows than the panel has columns, with the panel's
    entries of its rows, ``op^H @ I[:, i0:i1]`` (an operator without an
    adjoint takes the columns); nothing of size ``m x n`` is held in memory.
    A panel of ``w`` columns thus costs ``min(m, w)`` products of the
    operator with unit vectors: ``n`` in all for a square or tall target,
    ``m`` a panel for a wide one (a 4 x 2**18 target in one panel: 4, not
    262,144).

    Parameters
    ----------
    operator : DeButOperator or LinearOperator, shape (m, n)
        The approximation.
    target : dask.array.Array, shape (m, n)
        The matrix ``D``, of a numeric dtype, in chunks of known sizes; it is
        rechunked into panels of whole columns and computed panel by panel.

    Returns
    -------
    float
        The relative Frobenius error; for a zero target, ``||op||_F``.

    Raises
    ------
    TypeError
        If ``operator`` is not a ``LinearOperator``, or ``target`` is not a
        Dask array of numbers.
    ValueError
        If ``target`` does not have the operator's shape (or has chunks of
        unknown size), or holds NaN or infinity or masked entries (its chunks
        are masked arrays).

    Notes
    -----
    Each panel's norms are kept apart from their powers of two, and the
    operator's columns and the panel are scaled by one power of two before
    they are subtracted; a ``DeButOperator``'s columns are built from its
    factors balanced and scaled by a power of two, whose products do not
    overflow. Entries near the largest float, whose squares, sums, differences
    or products of factors overflow, give their true relative error.

    Examples
    --------
    >>> import dask.array as da
    >>> from pydebut import DeButOperator
    >>> op = DeButOperator.random([(4, 4, 2, 2, 2), (4, 4, 2, 2, 1)], rng=0)
    >>> relative_error(op, da.from_array(op.toarray(), chunks=(4, 2))) < 1e-15
    True
    """
    if not isinstance(operator, LinearOperator):
        raise TypeError(
            "relative_error needs a DeButOperator or another scipy.sparse.linalg.LinearOperator "
            f"(aslinearoperator wraps arrays and sparse matrices), got {type(operator).__name__}"
        )
    panels, _ = _column_panels(target, operator.shape, "the operator")
    operator, shift = _balanced(operator)
    parts = _each_panel(panels, _error_pass, operator, shift, _has_adjoint(operator))
    # norms as (f, e) for f 2**e: neither a square nor a norm over- or underflows
    residual, residual_exponent = hypot_of_scaled(part[0] for part in parts)
    total, total_exponent = hypot_of_scaled(part[1] for part in parts)
    if total == 0:
        return unscaled(residual, residual_exponent)
    return unscaled(residual / total, residual_exponent - total_exponent)


def _balanced(operator: LinearOperator) -> tuple[LinearOperator, int]:
    """``operator`` as ``2**shift`` times one whose columns do not overflow, and ``shift``.

    A :class:`~pydebut.DeButOperator`'s factors are balanced, and their product
    divided by ``2**shift`` when it lies far from 1
    (:meth:`~pydebut.fit._common.TargetScale.normalise_weights`): an operator of
    entries near the largest float has columns that overflow in the products of its
    factors. Powers of two scale every product exactly (barring subnormals). Another
    operator is taken as it is (``shift`` 0).
    """
    if not isinstance(operator, DeButOperator):
        return operator, 0
    weights, shift = TargetScale(0).normalise_weights(operator.weights, operator.dtype)
    balanced = DeButOperator(
        operator.chain,
        weights,
        operator.dtype,
        check_finite=False,
        row_perm=operator.row_perm,
        col_perm=operator.col_perm,
    )
    return balanced, shift


def _column_panels(
    target: Any, shape: tuple[int, int], owner: str
) -> tuple[list[tuple[int, Any]], np.dtype]:
    """Delayed column panels ``(j0, panel)`` of a Dask target, and the working dtype.

    The target must have ``shape``, that of ``owner`` (named in the error).
    """
    if not hasattr(target, "chunks") or not hasattr(target, "to_delayed"):
        raise TypeError(f"expected a Dask array target, got {type(target).__name__}")
    if target.dtype.kind not in "biufc":
        raise TypeError(f"the target must hold numbers, got dtype {target.dtype}")
    if target.ndim == 2:
        for axis in (0, 1):
            _check_known_size(target, axis, "the target's " + ("rows", "columns")[axis])
    if target.ndim != 2 or target.shape != shape:
        raise ValueError(
            f"the target has shape {target.shape} but {owner} is {shape[0]} x {shape[1]}"
        )
    dtype = working_dtype(target.dtype)
    panels = _as_panels(target)
    starts = np.cumsum((0, *panels.chunks[1][:-1]))
    delayed = panels.to_delayed().ravel()
    return [(int(j0), block) for j0, block in zip(starts, delayed)], dtype


def _as_panels(target: Any) -> Any:
    """The Dask ``target`` in panels of whole columns, of :data:`PANEL_BYTES` at most.

    Chunks wider than that are split into panels. Narrower chunks are panels, except
    that a panel of less than :data:`MIN_PANEL_BYTES` takes in the next chunks while it
    stays within :data:`PANEL_BYTES`: every panel costs a task, with fixed costs, in
    each pass.
    """
    column_bytes = target.shape[0] * working_dtype(target.dtype).itemsize
    width = max(1, PANEL_BYTES // column_bytes)
    if max(target.chunks[1]) > width:
        return target.rechunk({0: -1, 1: width})
    panels: list[int] = []
    for chunk in target.chunks[1]:
        if panels and panels[-1] * column_bytes < MIN_PANEL_BYTES and panels[-1] + chunk <= width:
            panels[-1] += chunk
        else:
            panels.append(chunk)
    return target.rechunk({0: -1, 1: tuple(panels)})


def _each_panel(panels: list[tuple[int, Any]], function: Callable, *args: Any) -> list[Any]:
    """``function(panel, j0, *args)`` for every panel, as Dask tasks.

    Panels run in parallel, so BLAS runs on one thread in this process (Dask's
    workers already do), as stacked BLAS threads slow each other down.
    """
    # Dask objects once: as plain arguments, Dask would tokenize them for every task
    shared = [dask.delayed(arg, traverse=False) for arg in args]
    tasks = [dask.delayed(function, pure=True)(block, j0, *shared) for j0, block in panels]
    with threadpool_limits(limits=1, user_api="blas"):
        return list(dask.compute(*tasks))


def _panel_values(panel: Any, j0: int, dtype: np.dtype) -> np.ndarray:
    """The panel of columns ``j0, ...`` as an array of ``dtype``, refusing masked entries."""
    refuse_masked(panel, f"the target (columns {j0} to {j0 + panel.shape[1] - 1})", "pydebut.dask")
    return np.asarray(panel, dtype=dtype)


def _replay(panel: Any, j0: int, levels: list) -> np.ndarray:
    """The panel's columns of the entries after ``levels``."""
    panel = _panel_values(panel, j0, working_dtype(panel.dtype))
    for split, basis_h in levels:
        blocks = _panel_blocks(panel, split)
        out = np.zeros((split.w, split.B2, panel.shape[1]), dtype=basis_h.dtype)
        kept = basis_h.shape[-2]
        for group, columns in _groups(j0, panel.shape[1], split.S2):
            M = blocks[:, :, columns]
            out[:kept, :, columns] = np.matmul(basis_h[group], M).transpose(1, 0, 2)
        panel = out.reshape(split.w * split.B2, -1)
    return panel


def _panel_blocks(panel: np.ndarray, split: _Split) -> np.ndarray:
    """``(B2, R1, width)`` view of a panel whose rows are ``rho * B2 + b2``."""
    return panel.reshape(split.R1, split.B2, panel.shape[1]).transpose(1, 0, 2)


def _groups(j0: int, width: int, group_width: int) -> list[tuple[int, slice]]:
    """Sub-block groups (``S2`` columns each) met by columns ``j0 ... j0 + width - 1``."""
    pieces = []
    column = j0
    while column < j0 + width:
        group = column // group_width
        end = min((group + 1) * group_width, j0 + width)
        pieces.append((group, slice(column - j0, end - j0)))
        column = end
    return pieces


def _gram_pass(panel: Any, j0: int, levels: list, split: _Split) -> list[tuple[int, np.ndarray]]:
    """The panel's contributions ``M M^H`` to the Gram matrices of the next split, in
    double precision (as :func:`~pydebut.fit._hierarchical._leading_vectors` forms them)."""
    blocks = _panel_blocks(_replay(panel, j0, levels), split)
    partials = []
    for group, columns in _groups(j0, blocks.shape[2], split.S2):
        M = in_double(blocks[:, :, columns])
        partials.append((group, np.matmul(M, np.conj(np.swapaxes(M, -1, -2)))))
    return partials


def _error_pass(
    panel: Any, j0: int, operator: LinearOperator, shift: int, has_adjoint: bool
) -> tuple[tuple[float, int], tuple[float, int]]:
    """Frobenius norms of the panel's columns of ``2**shift op - D`` and of ``D``, as
    :func:`~pydebut.fit._common.scaled_norm` gives them.

    The operator's columns come from :func:`_operator_columns`. Both are computed
    in the working dtype of the panel and the operator, as in memory; ``2**shift``
    times the columns and the panel are scaled by one power of two (the larger of
    theirs) before they are subtracted, so that the difference does not overflow.
    """
    panel = _panel_values(panel, j0, np.result_type(working_dtype(panel.dtype), operator.dtype))
    with np.errstate(over="ignore", invalid="ignore"):  # refused just below
        panel_norm = scaled_norm(panel)
    if not math.isfinite(panel_norm[0]):
        raise ValueError("the target has non-finite entries (NaN or Inf)")
    residuals = []
    for start, stop, columns in _operator_columns(operator, j0, panel.shape[1], has_adjoint):
        block = panel[:, start:stop]
        top = max(TargetScale.of(columns).exponent + shift, panel_norm[1])
        difference = TargetScale(top - shift).normalise(columns) - TargetScale(top).normalise(block)
        norm, exponent = scaled_norm(difference)
        residuals.append((norm, exponent + top))
    return hypot_of_scaled(residuals), panel_norm


def _operator_columns(
    operator: LinearOperator, j0: int, width: int, has_adjoint: bool
) -> Iterator[tuple[int, int, np.ndarray]]:
    """Columns ``j0 + start`` to ``j0 + stop - 1`` of ``operator``, as ``(start, stop, columns)``
    blocks that cover ``width`` columns.

    From unit vectors, ``op @ I[:, j:j + w]``, ``w`` columns at a time so that the
    ``n x w`` identity takes at most :data:`PANEL_BYTES`: ``width`` products of the
    operator. Where the operator has fewer rows ``m`` than that and an adjoint
    (``has_adjoint``), its rows instead, ``op^H @ I[:, i:i + h]`` with ``n x h`` within
    :data:`PANEL_BYTES`, of which the panel's entries are kept: ``m`` products. A wide
    target's panels thus cost ``m`` products each, where unit columns cost ``n`` in
    all (a 4 x 2**18 target took 34 s, most of it filling identity columns).
    """
    m, n = operator.shape
    itemsize = operator.dtype.itemsize
    if has_adjoint and m < width:
        height = max(1, PANEL_BYTES // (n * itemsize))
        columns = np.empty((m, width), dtype=operator.dtype)
        for i0 in range(0, m, height):
            i1 = min(i0 + height, m)
            rows = np.asarray(operator.rmatmat(_unit_columns(m, i0, i1, operator.dtype)))
            columns[i0:i1] = rows[j0 : j0 + width].conj().T
            del rows
        yield 0, width, columns
        return
    step = max(1, PANEL_BYTES // (n * itemsize))
    for start in range(0, width, step):
        stop = min(start + step, width)
        identity = _unit_columns(n, j0 + start, j0 + stop, operator.dtype)
        columns = np.asarray(operator.matmat(identity))
        del identity
        yield start, stop, columns


def _unit_columns(size: int, start: int, stop: int, dtype: np.dtype) -> np.ndarray:
    """Columns ``start`` to ``stop - 1`` of the ``size x size`` identity."""
    identity = np.zeros((size, stop - start), dtype=dtype)
    identity[np.arange(start, stop), np.arange(stop - start)] = 1
    return identity


def _has_adjoint(operator: LinearOperator) -> bool:
    """Whether ``operator`` applies its adjoint (a ``LinearOperator`` may give ``matvec`` only)."""
    if isinstance(operator, DeButOperator):
        return True
    try:
        operator.rmatvec(np.zeros(operator.shape[0], dtype=operator.dtype))
    except NotImplementedError:
        return False
    return True
