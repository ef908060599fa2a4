"""The Dask back-end: lazy application, many fits on a real cluster, out-of-core fits."""

from __future__ import annotations

import functools
import os
import pickle
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
import tracemalloc
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from threadpoolctl import threadpool_limits

from pydebut import Chain, DeButOperator, approximate, fit_als, fit_hierarchical, special
from pydebut.testing import chainable_chains

from .example_counts import examples
from .fit_cases import COUPLED, PAPER_512, random_target, random_weights

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("dask.distributed")
pydebut_dask = pytest.importorskip("pydebut.dask")

DTYPES = [np.float32, np.float64, np.complex64, np.complex128]
OUT_OF_CORE_CHAINS = [
    special.butterfly_chain(64),
    Chain.from_factorizations([4, 2, 8], [2, 8, 4]),
    Chain.from_factorizations([2, 2, 2], [2, 4, 1]),
    Chain.from_abcd([(1, 2, 3, 2, 1, 2), (3, 2, 1, 1, 2, 1)]),  # rank-weighted, w = 2
    Chain.from_abcd([(1, 1, 2, 2, 1, 3), (2, 2, 1, 1, 3, 1)]),  # rank 3 > R1 = 1: padded
]


@pytest.fixture(scope="module")
def client():
    with (
        distributed.LocalCluster(
            processes=True, n_workers=2, threads_per_worker=1, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster, set_as_default=False) as dask_client,
    ):
        yield dask_client


def test_import_pydebut_does_not_import_dask():
    code = textwrap.dedent(
        """
        import sys
        import numpy as np
        import pydebut
        op = pydebut.DeButOperator.random(pydebut.special.butterfly_chain(8), rng=0)
        op.apply_rows((op @ np.ones((8, 3))).T)
        pydebut.fit_hierarchical(op.toarray(), op.chain)
        print(sorted(name for name in sys.modules if name.split(".")[0] == "dask"))
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "[]", result.stderr


# --- lazy application ---------------------------------------------------------------------
def random_data(rng, shape, dtype):
    return random_target(shape, rng, dtype)


@pytest.mark.parametrize(
    ("dtype", "data_dtype"), [*((d, d) for d in DTYPES), (np.float64, np.complex128)]
)
@pytest.mark.parametrize("chunks", [(64, 7), (16, 40), (64, 200), (64, (1, 198, 1))])
def test_apply_to_dask_columns_equals_numpy_bitwise(dtype, data_dtype, chunks):
    rng = np.random.default_rng(0)
    op = DeButOperator.random(Chain.from_factorizations([2, 4, 8], [4, 4, 4]), rng=1, dtype=dtype)
    X = random_data(rng, (64, 200), data_dtype)
    Y = random_data(rng, (64, 200), data_dtype)
    lazy = da.from_array(X, chunks=chunks)
    lazy_y = da.from_array(Y, chunks=chunks)
    for result, expected in [
        (op @ lazy, op @ X),
        (op.matmat(lazy), op.matmat(X)),
        (op.dot(lazy), op.dot(X)),
        (op.rmatmat(lazy_y), op.rmatmat(Y)),
        (op.H @ lazy_y, op.H @ Y),
        (op.T @ lazy_y, op.T @ Y),
    ]:
        assert isinstance(result, da.Array)
        assert result.chunks == ((64,), lazy.chunks[1])
        computed = result.compute()
        assert computed.dtype == expected.dtype
        np.testing.assert_array_equal(computed, expected)


def test_merging_the_operator_axis_keeps_a_task_within_the_chunk_size():
    # The operator's axis was merged keeping the batch chunks: chunks (1, 10**6) of a
    # 4096 x 10**6 float32 array made one task of 15.6 GiB. The arrays stay lazy here.
    op = special.hadamard(4096, dtype="float32")
    with dask.config.set({"array.chunk-size": "128MiB"}):
        columns = op @ da.ones((4096, 10**6), chunks=(1, 10**6), dtype="float32")
        rows = op.apply_rows(da.ones((10**6, 4096), chunks=(10**6, 1), dtype="float32"))
    for result, batch_axis in [(columns, 1), (rows, 0)]:
        assert result.chunks[1 - batch_axis] == (4096,)
        assert sum(result.chunks[batch_axis]) == 10**6
        assert max(result.chunks[batch_axis]) * 4096 * 4 <= 2**27


@pytest.mark.parametrize(
    ("chunks", "width"), [((16, 40), 10), ((1, 200), 3), ((64, (1, 198, 1)), 198)]
)
def test_a_task_holds_at_most_the_largest_chunk_or_the_chunk_size(chunks, width):
    # With array.chunk-size at 128 float64 entries, a task holds 64-long vectors in a
    # block no larger than the input's largest chunk: 640, 200 and 12672 entries.
    rng = np.random.default_rng(0)
    op = DeButOperator.random(Chain.from_factorizations([2, 4, 8], [4, 4, 4]), rng=1)
    X = random_data(rng, (64, 200), np.float64)
    with dask.config.set({"array.chunk-size": "1KiB"}):
        columns = op @ da.from_array(X, chunks=chunks)
        rows = op.apply_rows(da.from_array(X.T, chunks=chunks[::-1]), adjoint=True)
    assert max(columns.chunks[1]) == max(rows.chunks[0]) == width
    if width == 198:  # the operator's axis was whole: chunks as given
        assert columns.chunks[1] == rows.chunks[0] == (1, 198, 1)
    np.testing.assert_array_equal(columns.compute(), op @ X)
    np.testing.assert_array_equal(rows.compute(), op.apply_rows(X.T, adjoint=True))


@pytest.mark.parametrize("adjoint", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.complex128])
def test_apply_rows_numpy_and_dask(adjoint, dtype):
    rng = np.random.default_rng(2)
    op = DeButOperator.random(PAPER_512, rng=0, dtype=dtype)
    n_in = op.shape[0] if adjoint else op.shape[1]
    rows = random_data(rng, (30, n_in), dtype)
    dense = op.toarray()
    expected = rows @ (dense.conj() if adjoint else dense.T)
    in_memory = op.apply_rows(rows, adjoint=adjoint)
    assert in_memory.shape == (30, op.shape[1] if adjoint else op.shape[0])
    scale = np.abs(expected).max()
    assert np.abs(in_memory - expected).max() <= 1e-4 * scale
    np.testing.assert_array_equal(in_memory, (op.H if adjoint else op).matmat(rows.T).T)
    lazy = op.apply_rows(da.from_array(rows, chunks=(7, 512)), adjoint=adjoint)
    assert lazy.chunks == ((7, 7, 7, 7, 2), (in_memory.shape[1],))
    np.testing.assert_array_equal(lazy.compute(), in_memory)
    one_row = op.apply_rows(rows[:1], adjoint=adjoint)  # the one-vector kernel
    assert np.abs(one_row - in_memory[:1]).max() <= 1e-4 * scale
    by_single_rows = op.apply_rows(da.from_array(rows, chunks=(1, n_in)), adjoint=adjoint)
    np.testing.assert_array_equal(by_single_rows.compute(), in_memory)


@pytest.mark.parametrize("dtype", [np.float64, np.complex64])
def test_products_from_the_left_of_a_dask_array_are_lazy(dtype):
    # SciPy's product from the left ran np.asarray on X: the whole Dask array in memory
    rng = np.random.default_rng(5)
    op = DeButOperator.random(PAPER_512, rng=0, dtype=dtype).with_permutations(
        rng.permutation(512), None
    )
    rows = random_data(rng, (30, 512), dtype)
    lazy_rows = da.from_array(rows, chunks=(7, 512))
    for product, expected in [
        (lazy_rows @ op, rows @ op),
        (lazy_rows[:1] @ op, rows[:1] @ op),
        (lazy_rows[0] @ op, rows[0] @ op),
    ]:
        assert isinstance(product, da.Array)
        np.testing.assert_array_equal(product.compute(), expected)
    columns = da.from_array(random_data(rng, (5, 2048), dtype), chunks=(2, 2048))
    np.testing.assert_array_equal((columns @ op.T).compute(), columns.compute() @ op.T)
    with pytest.raises(ValueError, match=r"shape \(batch, 512\), got \(2, 3, 512\)"):
        da.ones((2, 3, 512)) @ op


def test_permutations_travel_with_the_operator():
    rng = np.random.default_rng(9)
    chain = special.butterfly_chain(16)
    weights = DeButOperator.random(chain, rng=0).weights
    op = DeButOperator(chain, weights, row_perm=rng.permutation(16), col_perm=rng.permutation(16))
    X = rng.standard_normal((16, 12))
    lazy = da.from_array(X, chunks=(16, 5))
    np.testing.assert_array_equal((op @ lazy).compute(), op @ X)
    np.testing.assert_array_equal((op.H @ lazy).compute(), op.H @ X)
    np.testing.assert_array_equal(op.apply_rows(X.T), (op @ X).T)
    np.testing.assert_array_equal(op.apply_rows(lazy.T).compute(), (op @ X).T)
    clone = pickle.loads(pickle.dumps(op))
    np.testing.assert_array_equal(clone.row_perm, op.row_perm)
    np.testing.assert_array_equal(clone.col_perm, op.col_perm)
    np.testing.assert_array_equal(clone.toarray(), op.toarray())


def test_apply_to_a_dask_vector():
    op = DeButOperator.random(special.butterfly_chain(16), rng=0)
    x = np.arange(16.0)
    result = op @ da.from_array(x, chunks=4)
    assert isinstance(result, da.Array) and result.shape == (16,)
    np.testing.assert_array_equal(result.compute(), op @ x)


def test_a_masked_chunk_with_masked_entries_is_refused_when_computed():
    # its hidden (stored) values went through the operator, the mask dropped
    op = DeButOperator.identity(special.butterfly_chain(4))
    X = np.ma.masked_array(np.ones((4, 3)), mask=False)
    lazy = da.from_array(X, chunks=(4, 1), asarray=False)
    np.testing.assert_array_equal((op @ lazy).compute(), np.ones((4, 3)))
    X[2, 1] = np.ma.masked
    lazy = da.from_array(X, chunks=(4, 1), asarray=False)
    message = "a chunk of X is a masked array with 1 masked entries"
    for call in [lambda: op @ lazy, lambda: op.apply_rows(lazy.T), lambda: op @ lazy[:, 1]]:
        result = call()  # lazy: the mask is known when a chunk is computed
        with pytest.raises(ValueError, match=message):
            result.compute()


def test_matvec_and_rmatvec_of_a_dask_vector_are_lazy():
    # they fell through to SciPy's matvec, which computed the Dask vector
    op = DeButOperator.random([(4, 8, 1, 2, 4)], rng=0)
    x, y = np.arange(8.0), np.arange(4.0)
    for call, vector, expected in [
        (op.matvec, x, op @ x),
        (op.rmatvec, y, op.H @ y),
        (op.matvec, x[:, None], (op @ x)[:, None]),
        (op.rmatvec, y[:, None], (op.H @ y)[:, None]),
    ]:
        result = call(da.from_array(vector, chunks=2))
        assert isinstance(result, da.Array)
        np.testing.assert_array_equal(result.compute(), expected)
    with pytest.raises(ValueError, match=r"expected \(8,\) or \(8, 1\), got \(8, 2\)"):
        op.matvec(da.ones((8, 2)))


def test_the_direct_apply_of_a_dask_array_is_lazy_and_refuses_out():
    # apply() ran np.asarray(x), computing all of a Dask x into memory ("Unable to allocate
    # 15.3 GiB" for docs/scaling.md's 4096 x 10**6 example), where op @ x stays lazy
    op = DeButOperator.random(special.butterfly_chain(16), rng=0)
    X = np.arange(16.0 * 6).reshape(16, 6)
    for data in (X, X[:, 0]):
        result = op.apply(da.from_array(data, chunks=4))
        assert isinstance(result, da.Array)
        np.testing.assert_array_equal(result.compute(), op @ data)
    with pytest.raises(TypeError, match=r"apply\(x, out=...\) takes an array in memory"):
        op.apply(da.from_array(X, chunks=4), out=np.empty((16, 6)))


def test_apply_rejects_bad_shapes_and_axes():
    op = DeButOperator.random([(4, 8, 1, 2, 4)], rng=0)
    with pytest.raises(ValueError, match=r"shape \(8,\) or \(8, batch\)"):
        op @ da.ones((4, 3))
    with pytest.raises(ValueError, match=r"shape \(batch, 8\)"):
        op.apply_rows(da.ones((3, 4)))
    with pytest.raises(ValueError, match=r"shape \(batch, 4\)"):
        op.apply_rows(np.ones((3, 8)), adjoint=True)
    for axis in [2, 1.0, True]:  # 1.0 failed later, on a float index; True ran as 1
        with pytest.raises(ValueError, match="axis must be 0"):
            pydebut_dask.apply(op, da.ones((8, 3)), axis=axis)
    with pytest.raises(TypeError, match="dtype"):
        op @ da.ones((8, 3), dtype=object, chunks=(8, 3))
    with pytest.raises(TypeError, match="apply needs a DeButOperator, got ndarray"):
        pydebut_dask.apply(np.eye(8), da.ones((8, 3)))
    for adjoint in [None, 0, "no"]:  # read by their truth, "no" applied the adjoint
        with pytest.raises(
            TypeError, match=f"^adjoint must be a bool, got {type(adjoint).__name__}$"
        ):
            pydebut_dask.apply(op, da.ones((4, 3)), adjoint=adjoint)


def test_unknown_sizes_along_the_operator_axis_are_named():
    op = DeButOperator.random(special.butterfly_chain(16), rng=0)
    X = da.from_array(np.random.default_rng(1).standard_normal((16, 37)), chunks=(4, 5))
    unknown_rows = X[X[:, 0] > -100, :]  # the same 16 rows, in chunks of unknown size
    words = r"size along the operator's axis \(axis 0\) is unknown .* compute_chunk_sizes\(\)"
    with pytest.raises(ValueError, match=words):
        op @ unknown_rows
    with pytest.raises(ValueError, match="size along the target's rows .* is unknown"):
        pydebut_dask.fit_hierarchical(unknown_rows[:, :16], special.butterfly_chain(16))
    unknown_batch = X[:, X[0] > -100]  # unknown along the batch axis: computed as usual
    np.testing.assert_array_equal((op @ unknown_batch).compute(), op @ X.compute())


def test_pickle_holds_chain_and_weights_only():
    op = DeButOperator.random(special.butterfly_chain(1024), rng=0, dtype=np.float32)
    op @ np.ones((1024, 4), dtype=np.float32)  # caches the kernels' plans
    op @ np.ones((1024, 4))
    weight_bytes = sum(w.nbytes for w in op.weights)
    payload = pickle.dumps(op)
    assert weight_bytes <= len(payload) <= 1.05 * weight_bytes + 2000
    clone = pickle.loads(payload)
    assert clone.chain == op.chain and clone.dtype == op.dtype
    assert not clone.weights[0].flags.writeable
    np.testing.assert_array_equal(clone.toarray(), op.toarray())


@pytest.mark.parametrize("lazy", ["columns", "rows"])
def test_the_operator_travels_in_one_task_of_the_graph_not_in_every_task(lazy):
    # As a plain argument of map_blocks it was part of every task: a worker process
    # unpickled and rebuilt it once per task (4-8x slower than one process for 100 tasks).
    op = DeButOperator.random([(128, 128, 128, 128, 1)], rng=0)  # 128 KiB of weights
    X = da.ones((128, 640), chunks=(128, 32))  # 20 tasks
    product = op @ X if lazy == "columns" else op.apply_rows(X.T)
    graph = dict(product.__dask_graph__())
    payloads = sorted(len(pickle.dumps(task)) for task in graph.values())
    weight_bytes = op.weights[0].nbytes
    assert payloads[-1] >= weight_bytes  # the operator's own task
    assert sum(payloads[:-1]) < weight_bytes / 2  # every other task refers to it by key
    np.testing.assert_array_equal(
        product.compute(),
        op @ np.ones((128, 640)) if lazy == "columns" else op.apply_rows(np.ones((640, 128))),
    )


def test_operator_works_in_forked_workers():
    # Workers forked from a process that already ran the parallel kernel need a fork-safe
    # Numba threading layer (GNU OpenMP aborts forked children); spawn needs nothing.
    code = textwrap.dedent(
        """
        import multiprocessing, numpy as np, pydebut
        op = pydebut.DeButOperator.random(pydebut.special.butterfly_chain(64), rng=0)
        X = np.arange(64.0 * 16).reshape(64, 16)
        expected = op @ X
        with multiprocessing.get_context("fork").Pool(1) as pool:
            print(np.array_equal(pool.apply(op.matmat, (X,)), expected))
        """
    )
    env = {**__import__("os").environ, "NUMBA_THREADING_LAYER": "forksafe"}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.stdout.strip() == "True", result.stderr


def test_apply_on_a_cluster_of_spawned_processes(client):
    op = DeButOperator.random(PAPER_512, rng=0, dtype=np.float32)
    X = np.random.default_rng(3).standard_normal((2048, 300)).astype(np.float32)
    lazy = op @ da.from_array(X, chunks=(512, 100))
    np.testing.assert_array_equal(client.compute(lazy).result(), op @ X)
    rows = op.apply_rows(da.from_array(X.T, chunks=(100, 2048)))
    np.testing.assert_array_equal(client.compute(rows).result(), (op @ X).T)


# --- many fits ----------------------------------------------------------------------------
def fit_cases(count):
    rng = np.random.default_rng(4)
    chains = [PAPER_512, Chain.from_factorizations([4, 4, 4], [8, 4, 2])] * count
    targets = [random_target(chain.shape, rng) for chain in chains[:count]]
    return targets, chains[:count]


def assert_same_fits(results, expected):
    assert len(results) == len(expected)
    for result, reference in zip(results, expected):
        assert result.errors == reference.errors
        assert result.operator.chain == reference.operator.chain
        for w, w_ref in zip(result.operator.weights, reference.operator.weights):
            np.testing.assert_array_equal(w, w_ref)


def test_fit_many_on_a_cluster_equals_serial(client, tmp_path):
    targets, chains = fit_cases(4)
    path = tmp_path / "target.npy"
    np.save(path, targets[0])
    targets[2] = str(path)  # read by the worker
    results = pydebut_dask.fit_many(targets, chains, "als", client=client, n_sweeps=2)
    with threadpool_limits(1):  # Dask's workers run BLAS on one thread (OMP_NUM_THREADS=1)
        expected = [fit_als(t, c, n_sweeps=2) for t, c in zip(targets, chains)]
    assert_same_fits(results, expected)


def test_fit_many_on_a_cluster_again_with_the_same_targets(client):
    # The second call's scattered targets had the first's keys, which the scheduler was
    # releasing: FutureCancelledError, "lost dependencies" (3 runs of 3).
    chain = Chain.from_factorizations([2, 2], [2, 2])
    targets = [np.eye(4), np.ones((4, 4))]
    for _ in range(4):
        results = pydebut_dask.fit_many(targets, [chain, chain], "hierarchical", client=client)
        assert [round(r.error, 12) for r in results] == [0.0, 0.0]


def _fit_als_once_allowed(target, spec, *, go, **options):
    """fit_als, once the file ``go`` exists (at most 60 s later)."""
    deadline = time.monotonic() + 60
    while not os.path.exists(go) and time.monotonic() < deadline:
        time.sleep(0.01)
    return fit_als(target, spec, **options)


def _kill_a_busy_worker(client, go):
    """SIGKILL a worker processing a fit, then let the fits run (create the file ``go``)."""
    pids = client.run(os.getpid)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        busy = [address for address, keys in client.processing().items() if keys]
        if busy:
            os.kill(pids[busy[0]], signal.SIGKILL)
            break
        time.sleep(0.01)
    open(go, "w").close()


def test_fit_many_on_a_cluster_survives_a_lost_worker(client, tmp_path):
    # Scattered targets were lost with the worker holding them, and with them every fit
    # needing them, finished or not: FutureCancelledError, "already forgotten".
    chain = Chain.from_factorizations([4, 4, 4], [8, 4, 2])
    rng = np.random.default_rng(4)
    targets, chains = [random_target(chain.shape, rng) for _ in range(4)], [chain] * 4
    go = str(tmp_path / "go")
    killer = threading.Thread(target=_kill_a_busy_worker, args=(client, go))
    killer.start()
    try:
        results = pydebut_dask.fit_many(
            targets, chains, _fit_als_once_allowed, client=client, go=go, n_sweeps=2
        )
    finally:
        killer.join()
        client.wait_for_workers(2, timeout=60)  # the nanny restarts it, for the next tests
    with threadpool_limits(1):
        expected = [fit_als(t, c, n_sweeps=2) for t, c in zip(targets, chains)]
    assert_same_fits(results, expected)


def _shape_of(target, spec):
    return target.shape


def test_fit_many_sends_a_large_target_without_a_warning(client):
    # A target travels in its fit's task, whose size Dask warns about past 10 MB.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        shapes = pydebut_dask.fit_many([np.zeros((1200, 1200))], [None], _shape_of, client=client)
    assert shapes == [(1200, 1200)]


def test_fit_many_local_scheduler_with_progress(capsys):
    targets, chains = fit_cases(3)
    results = pydebut_dask.fit_many(targets, chains, "hierarchical", progress=True)
    assert_same_fits(results, [fit_hierarchical(t, c) for t, c in zip(targets, chains)])
    assert "3/3" in capsys.readouterr().err


def test_fit_many_gives_each_fit_a_copy_of_a_generator():
    targets, chains = fit_cases(4)
    options = {"n_sweeps": 1, "init": "random"}
    expected = [
        fit_als(t, c, rng=np.random.default_rng(5), **options) for t, c in zip(targets, chains)
    ]
    for _ in range(3):  # the local scheduler's threads once shared the generator
        results = pydebut_dask.fit_many(targets, chains, rng=np.random.default_rng(5), **options)
        assert_same_fits(results, expected)


def test_fit_many_takes_names_and_callables():
    targets, chains = fit_cases(2)
    expected = [fit_als(t, c, n_sweeps=1, init="random", rng=5) for t, c in zip(targets, chains)]
    for method in ["fit_als", fit_als]:
        results = pydebut_dask.fit_many(targets, chains, method, n_sweeps=1, init="random", rng=5)
        assert_same_fits(results, expected)
    target = random_target((16, 16), np.random.default_rng(3))
    [result] = pydebut_dask.fit_many([target], [200], "approximate", n_sweeps=1)
    expected = approximate(target, 200, n_sweeps=1)
    assert result.operator.chain == expected.operator.chain and result.error == expected.error


def test_fit_many_rejects_bad_arguments():
    targets, chains = fit_cases(2)
    with pytest.raises(ValueError, match="unknown fitting method 'svd'"):
        pydebut_dask.fit_many(targets, chains, "svd")
    # Any callable attribute of pydebut passed, to fail inside the tasks.
    for name in ["DeButOperator", "Chain", "load", "fit_many"]:
        with pytest.raises(ValueError, match=f"'{name}': use one of 'als', .*'approximate'"):
            pydebut_dask.fit_many(targets, chains, name)
    with pytest.raises(ValueError, match="2 targets but 1 chains"):
        pydebut_dask.fit_many(targets, chains[:1])
    # Before: progress="no" showed a bar (read by its truth); client=5 failed in submit
    for progress in ["no", 1, None]:
        with pytest.raises(TypeError, match="progress must be a bool"):
            pydebut_dask.fit_many(targets, chains, progress=progress)
    with pytest.raises(TypeError, match="client must be a dask.distributed.Client .*, got int"):
        pydebut_dask.fit_many(targets, chains, client=5)


def test_fit_many_refuses_a_bad_numpy_target_before_any_fit_naming_it(monkeypatch):
    import pydebut

    targets, chains = fit_cases(5)
    fits = []
    monkeypatch.setattr(pydebut, "fit_als", lambda *args, **kwargs: fits.append(args))
    bad = targets[2].copy()
    bad[0, 7] = np.nan
    with pytest.raises(ValueError, match="^target 2: the target has non-finite entries"):
        pydebut_dask.fit_many([*targets[:2], bad, *targets[3:]], chains)
    with pytest.raises(ValueError, match=r"^target 4: the target has shape \(16, 8\)"):
        pydebut_dask.fit_many([*targets[:4], np.ones((16, 8))], chains)
    with pytest.raises(TypeError, match="^target 0: the target must hold real or complex"):
        pydebut_dask.fit_many([targets[0].astype(object)], chains[:1])
    assert not fits


@pytest.mark.parametrize(
    ("method", "options", "error", "words"),
    [
        ("als", {"n_sweeps": -1}, ValueError, "n_sweeps must be >= 0, got -1"),
        ("als", {"tol": float("nan")}, ValueError, "tol must be finite and >= 0"),
        ("als", {"callback": 3}, TypeError, "callback must be callable, got int"),
        ("als", {"rng": "x"}, TypeError, "rng must be None, a non-negative integer seed"),
        ("als", {"sweeps": 3}, TypeError, "fit_als: got an unexpected keyword argument 'sweeps'"),
        ("hierarchical", {"order": "x"}, ValueError, "order must be 'left-to-right' or"),
        ("fit_hierarchical", {"n_sweeps": 2}, TypeError, "fit_hierarchical: got an unexpected"),
        ("als", {"chain": None}, TypeError, "fit_als: multiple values for argument 'chain'"),
        # approximate's options named target 0, as they were checked with its budget
        ("approximate", {"rng": 1.5}, TypeError, "rng must be None, a non-negative integer"),
        ("approximate", {"beam_width": 0}, ValueError, "beam_width must be >= 1, got 0"),
        ("approximate", {"include": [3]}, TypeError, "include[0] must be a Chain"),
        ("approximate", {"beam": 2}, TypeError, "approximate: got an unexpected keyword"),
        ("approximate", {"max_params": 9}, TypeError, "approximate: multiple values for"),
    ],
)
def test_fit_many_refuses_a_bad_option_before_any_fit_naming_no_target(
    monkeypatch, method, options, error, words
):
    # The workers' errors named whichever target failed first ("target 0", "target 5", ...)
    import pydebut

    targets, chains = fit_cases(4)
    specs = [200] * len(targets) if method == "approximate" else chains
    fits = []
    for name in ("fit_als", "fit_hierarchical", "approximate"):
        fit = getattr(pydebut, name)
        monkeypatch.setattr(pydebut, name, functools.wraps(fit)(lambda *a, **k: fits.append(a)))
    with pytest.raises(error, match="^" + re.escape(words)):
        pydebut_dask.fit_many(targets, specs, method, **options)
    assert not fits


def test_fit_many_refuses_a_bad_budget_before_any_approximation_naming_it(monkeypatch, tmp_path):
    import pydebut

    fits = []
    monkeypatch.setattr(pydebut, "approximate", lambda *args, **kwargs: fits.append(args))
    rng = np.random.default_rng(0)
    targets = [random_target((16, 16), rng) for _ in range(3)]
    path = tmp_path / "target.npy"
    np.save(path, targets[0])
    with pytest.raises(ValueError, match="^target 2: no chain of at most 10 factors for a 16 x 16"):
        pydebut_dask.fit_many(targets, [200, 200, 10], "approximate")
    with pytest.raises(ValueError, match="^target 3: max_params must be >= 1, got 0"):
        pydebut_dask.fit_many([*targets, str(path)], [200, 200, 200, 0], "approximate")
    with pytest.raises(TypeError, match="^target 1: max_params must be an int, got float"):
        pydebut_dask.fit_many([str(path), str(path)], [200, 200.5], "approximate")
    with pytest.raises(ValueError, match=r"^target 1: include\[0\] is 16 x 16, the target 8 x 8"):
        include = [Chain.from_factorizations([4, 4], [4, 4])]
        pydebut_dask.fit_many(
            [targets[0], np.ones((8, 8))], [200, 200], "approximate", include=include
        )
    assert not fits


def test_fit_many_names_the_target_a_worker_refuses(tmp_path):
    targets, chains = fit_cases(2)
    path = tmp_path / "bad.npy"
    bad = targets[1].copy()
    bad[1, 1] = np.inf
    np.save(path, bad)
    with pytest.raises(ValueError, match="^target 1: the target has non-finite entries"):
        pydebut_dask.fit_many([targets[0], str(path)], chains, n_sweeps=1)
    # a file the worker cannot read: its OSError named no target
    with pytest.raises(FileNotFoundError, match="^target 1: .*missing.npy"):
        pydebut_dask.fit_many([targets[0], str(tmp_path / "missing.npy")], chains, n_sweeps=1)


def _on_a_worker(target, spec):
    return distributed.get_worker().address  # ValueError outside a worker


def test_fit_many_runs_on_the_default_client_with_progress(capsys):
    targets, chains = fit_cases(3)
    with (
        distributed.LocalCluster(
            processes=False, n_workers=1, threads_per_worker=1, dashboard_address=":0"
        ) as cluster,
        distributed.Client(cluster) as default,
    ):
        addresses = pydebut_dask.fit_many(targets, chains, _on_a_worker, progress=True)
        assert set(addresses) == set(default.scheduler_info()["workers"])
    assert "3/3" in capsys.readouterr().err  # the local scheduler's counter stayed at 0/3


# --- targets larger than memory -------------------------------------------------------------
@pytest.mark.parametrize("chain", OUT_OF_CORE_CHAINS, ids=repr)
@pytest.mark.parametrize("memory_limit", [0, 2048])
@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_out_of_core_fit_equals_in_memory_fit(chain, memory_limit, dtype):
    rng = np.random.default_rng(6)
    target = random_target(chain.shape, rng, dtype)
    m, n = chain.shape
    lazy = da.from_array(target, chunks=(max(1, m // 2), max(1, n // 3)))
    result = pydebut_dask.fit_hierarchical(lazy, chain, memory_limit=memory_limit)
    expected = fit_hierarchical(target, chain)
    assert abs(result.error - expected.error) <= 1e-12
    for w, w_ref in zip(result.operator.weights, expected.operator.weights):
        assert w.dtype == w_ref.dtype
        np.testing.assert_allclose(w, w_ref, rtol=0, atol=1e-10 * np.abs(w_ref).max())
    exact = np.linalg.norm(result.operator.toarray() - target) / np.linalg.norm(target)
    assert abs(pydebut_dask.relative_error(result.operator, lazy) - exact) <= 1e-12
    assert abs(result.error - exact) <= 1e-10


def _smooth_kernel(m: int, n: int) -> np.ndarray:
    x, y = np.linspace(0, 1, m), np.linspace(0, 1, n)
    return np.exp(-30 * (x[:, None] - y) ** 2)


@pytest.mark.parametrize(
    "chain, floor",
    [
        (Chain([(64, 256, 4, 16, 16), (256, 256, 16, 16, 4), (256, 128, 16, 8, 1)]), 7.93e-6),
        (Chain([(32, 128, 4, 16, 8), (128, 128, 16, 16, 2), (128, 64, 8, 4, 1)]), 1.2e-7),
    ],
    ids=repr,
)
def test_out_of_core_fit_of_a_float32_target_is_as_accurate_as_in_memory(chain, floor):
    # Every level reads the panels (memory_limit=0), and at level 2 decomposes the 16 x 16
    # Gram matrices M M^H where the in-memory fit takes the 8 x 8 M^H M. Formed and
    # decomposed in float32, they gave 4.86e-5 against 8.10e-6 in memory and 7.93e-6 in
    # float64 (64 x 128), and 4.52e-5 against 1.18e-7 (32 x 64, 6e-16 in float64: float32
    # rounding); in double precision, 7.93e-6 all three, and 1.07e-7 against 1.09e-7.
    # ``floor``: the float64 error, or float32 rounding's where the chain is exact.
    target = _smooth_kernel(*chain.shape)
    lazy = da.from_array(target.astype(np.float32), chunks=(chain.shape[0], 16))
    result = pydebut_dask.fit_hierarchical(lazy, chain, memory_limit=0)
    in_memory = fit_hierarchical(target.astype(np.float32), chain)
    assert result.operator.dtype == in_memory.operator.dtype == np.float32
    double = fit_hierarchical(target.astype(np.float32).astype(np.float64), chain).error
    assert result.error < 1.05 * in_memory.error
    assert max(result.error, in_memory.error) < 1.05 * max(double, floor)


@settings(max_examples=examples(15))
@given(chainable_chains(max_dim=64), st.integers(0, 2**32 - 1))
def test_out_of_core_recovers_any_chainable_product(chain, seed):
    target = DeButOperator(chain, random_weights(chain, np.random.default_rng(seed))).toarray()
    lazy = da.from_array(target, chunks=(chain.shape[0], max(1, chain.shape[1] // 4)))
    result = pydebut_dask.fit_hierarchical(lazy, chain, memory_limit=0)
    assert result.error < 1e-10


@pytest.mark.parametrize("exponent", [900, -900])
def test_out_of_core_fit_reports_the_true_error_at_any_scale(exponent):
    # Squares of 2**900 times the entries overflow, of 2**-900 times them underflow: the
    # fit and the error it reports must be those of the target at scale 1.
    chain = special.butterfly_chain(64)
    target = random_target(chain.shape, np.random.default_rng(9))
    base = pydebut_dask.fit_hierarchical(da.from_array(target, chunks=(64, 16)), chain)
    scaled_target = da.from_array(np.ldexp(target, exponent), chunks=(64, 16))
    scaled = pydebut_dask.fit_hierarchical(scaled_target, chain)
    assert scaled.error == pytest.approx(base.error, rel=1e-12)
    assert pydebut_dask.relative_error(scaled.operator, scaled_target) == pytest.approx(
        base.error, rel=1e-12
    )
    expected = np.ldexp(base.operator.toarray(), exponent)
    assert np.array_equal(scaled.operator.toarray(), expected)


@pytest.mark.parametrize("chunks", [(64, 1), (64, 16), (64, 64)])
def test_out_of_core_fit_of_a_target_near_the_largest_float_reports_the_true_error(chunks):
    # A panel's norm, the norm of the whole target and op - D exceed the largest float: the
    # error came out 0.0, nan, or an OverflowError, where the fit in memory reports it.
    chain = special.butterfly_chain(64)
    target = np.ldexp(random_target(chain.shape, np.random.default_rng(9)), 1020)
    in_memory = fit_hierarchical(target, chain)
    result = pydebut_dask.fit_hierarchical(da.from_array(target, chunks=chunks), chain)
    assert result.error == pytest.approx(in_memory.error, rel=1e-12)
    assert 0.1 < result.error < 1


@pytest.mark.parametrize("chunks", [(16, 1), (16, 4), (16, 16)])
def test_relative_error_of_entries_near_the_largest_float(chunks):
    from scipy.sparse.linalg import aslinearoperator

    target = np.full((16, 16), 4e307)
    lazy = da.from_array(target, chunks=chunks)
    assert pydebut_dask.relative_error(aslinearoperator(0.9 * target), lazy) == pytest.approx(0.1)
    # the residual's entries themselves overflow: 4e307 + 1.5e308
    opposite = aslinearoperator(np.full((16, 16), -1.5e308))
    assert pydebut_dask.relative_error(opposite, lazy) == pytest.approx(1.5e308 / 4e307 + 1)
    assert pydebut_dask.relative_error(aslinearoperator(target), lazy) == 0.0


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_errors_of_a_target_at_the_largest_float_are_the_true_errors(dtype):
    # The operator's columns were built at full scale: entries at the largest float overflowed
    # in the products of the factors, and the fit and relative_error reported inf where the
    # fit in memory reports 0.68 (float32: 0.67).
    chain = Chain.from_factorizations([2, 2, 2], [2, 2, 2])
    signs = np.sign(np.random.default_rng(0).standard_normal(chain.shape))
    target = (signs * np.finfo(dtype).max * 0.999).astype(dtype)
    in_memory = fit_hierarchical(target, chain)
    rel = 1e-12 if dtype == np.float64 else 1e-6
    assert 0.5 < in_memory.error < 1
    for chunks in [(8, 2), (8, 8)]:
        lazy = da.from_array(target, chunks=chunks)
        assert pydebut_dask.fit_hierarchical(lazy, chain).error == pytest.approx(
            in_memory.error, rel=rel
        )
        error = pydebut_dask.relative_error(in_memory.operator, lazy)
        assert error == pytest.approx(in_memory.error, rel=rel)
    # the permutations stay with the operator: op.with_permutations(col_perm=p) is op[:, p]
    p = np.random.default_rng(1).permutation(8)
    permuted = in_memory.operator.with_permutations(col_perm=p)
    error = pydebut_dask.relative_error(permuted, da.from_array(target[:, p], chunks=(8, 2)))
    assert error == pytest.approx(in_memory.error, rel=rel)


def test_out_of_core_fit_of_a_target_of_the_largest_float_is_a_finite_operator():
    # the fit scaled back rounded a hair above the largest float: 128 infinite entries,
    # reported error 9.6e-17 (the fit in memory likewise)
    chain = Chain.from_factorizations([4, 4], [4, 4])
    target = 1j * np.full(chain.shape, np.finfo(np.float64).max)
    result = pydebut_dask.fit_hierarchical(da.from_array(target, chunks=(16, 8)), chain)
    assert np.isfinite(result.operator.toarray()).all()
    assert result.error < 1e-15
    assert result.error == pytest.approx(fit_hierarchical(target, chain).error, rel=1e-6)


def test_out_of_core_fit_of_a_target_with_empty_chunks():
    # An empty row chunk failed in the first pass (the target's largest entry) with NumPy's
    # "all the input array dimensions except for the concatenation axis must match".
    chain = special.butterfly_chain(16)
    target = random_target(chain.shape, np.random.default_rng(3))
    expected = pydebut_dask.fit_hierarchical(da.from_array(target, chunks=(16, 8)), chain)
    lazy = da.from_array(target, chunks=((0, 7, 0, 9), (0, 8, 0, 8)))
    result = pydebut_dask.fit_hierarchical(lazy, chain, memory_limit=0)
    assert result.errors == expected.errors
    for w, w_ref in zip(result.operator.weights, expected.operator.weights):
        np.testing.assert_array_equal(w, w_ref)


class _TaskNames(dask.callbacks.Callback):
    """Records the names of the tasks the local scheduler runs."""

    def __init__(self):
        super().__init__()
        self.names = []

    def _pretask(self, key, dsk, state):
        self.names.append(dask.utils.key_split(key))


def test_narrow_chunks_are_read_in_panels_of_many_columns():
    # One task a chunk and pass: one-column chunks of a 2048 x 2048 target took 96.4 s to fit
    # (1.6 s in chunks of 256 columns), and 9.9 s for relative_error (0.2 s).
    chain = special.butterfly_chain(256)
    target = random_target(chain.shape, np.random.default_rng(5))
    expected = pydebut_dask.fit_hierarchical(da.from_array(target), chain, memory_limit=0)
    lazy = da.from_array(target, chunks=(256, 1))  # 2 KiB columns, one panel
    with _TaskNames() as tasks:
        result = pydebut_dask.fit_hierarchical(lazy, chain, memory_limit=0)
        error = pydebut_dask.relative_error(result.operator, lazy)
    passes = [name for name in tasks.names if name in ("gram_pass", "replay", "error_pass")]
    assert len(passes) == len(chain) + 2  # a Gram pass a level but the last, and 3 others
    assert result.errors == expected.errors == [error]
    for w, w_ref in zip(result.operator.weights, expected.operator.weights):
        np.testing.assert_array_equal(w, w_ref)


def test_the_operator_is_not_rebuilt_for_every_panel(monkeypatch):
    # Dask tokenized the operator, an argument of every panel's task, once a task: two
    # operators rebuilt a panel (4,096 for 2,048 panels, 13.2 s of 23.4 s).
    op = DeButOperator.random(special.butterfly_chain(256), rng=0)
    target = da.from_array(op.toarray(), chunks=(256, 32))
    monkeypatch.setattr(pydebut_dask, "PANEL_BYTES", 2**16)  # 32 columns: 8 panels
    built = []
    real_init = DeButOperator.__init__

    def counting_init(self, *args, **kwargs):
        built.append(self)
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(DeButOperator, "__init__", counting_init)
    assert pydebut_dask.relative_error(op, target) < 1e-15
    assert len(built) == 1  # its balanced copy


def test_relative_error_refuses_a_target_with_non_finite_entries():
    from scipy.sparse.linalg import aslinearoperator

    target = np.ones((8, 8))
    target[3, 5] = np.nan
    with pytest.raises(ValueError, match="non-finite entries"):
        pydebut_dask.relative_error(aslinearoperator(np.ones((8, 8))), da.from_array(target))


def test_fit_hierarchical_dispatches_a_dask_target():
    chain = special.butterfly_chain(32)
    target = random_target(chain.shape, np.random.default_rng(7))
    result = fit_hierarchical(da.from_array(target, chunks=(32, 8)), chain)
    expected = fit_hierarchical(target, chain).operator.toarray()
    np.testing.assert_allclose(result.operator.toarray(), expected, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="left-to-right order, without permutations"):
        fit_hierarchical(da.from_array(target), chain, order="balanced")


def test_a_dask_target_on_a_chain_that_qualifies_only_transposed_is_shown_the_adjoint_fit():
    # in memory the chain is fitted through its transpose; out of core it is named, with the way
    chain = special.butterfly_chain(32).T
    target = DeButOperator.random(chain, rng=2).toarray()
    assert fit_hierarchical(target, chain).error < 1e-12
    dask_target = da.from_array(target, chunks=(32, 8))
    with pytest.raises(ValueError, match=r"qualifies only transposed; fit the adjoint instead"):
        fit_hierarchical(dask_target, chain)
    adjoint = pydebut_dask.fit_hierarchical(dask_target.conj().T, chain.T).operator.H
    np.testing.assert_allclose(adjoint.toarray(), target, atol=1e-12)


def test_out_of_core_fit_of_targets_subnormal_in_their_own_dtype():
    # 2**-exponent overflowed the target's dtype: NaN weights, refused as such. (Targets
    # subnormal in the working precision are refused: tests/test_validation.py.)
    dtype, scale = np.float16, 1e-5
    chain = special.butterfly_chain(8)
    target = (DeButOperator.random(chain, rng=1).toarray() * scale).astype(dtype)
    result = pydebut_dask.fit_hierarchical(da.from_array(target, chunks=(8, 4)), chain)
    expected = fit_hierarchical(target, chain)
    assert result.operator.dtype == expected.operator.dtype
    np.testing.assert_allclose(result.operator.toarray(), expected.operator.toarray(), rtol=1e-3)


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.float16, np.bool_])
def test_out_of_core_error_of_integer_float16_and_bool_targets_is_the_true_error(dtype):
    # Panels were compared in their own dtype: ldexp of int8 and uint8 gave float16, so the
    # error of the zero operator read 1.00009; the norm of a bool panel raised TypeError.
    chain = special.butterfly_chain(32)
    values = np.random.default_rng(3).integers(-128, 128, chain.shape)
    target = {np.uint8: values + 128, np.bool_: values > 0}.get(dtype, values).astype(dtype)
    lazy = da.from_array(target, chunks=(32, 8))
    dense = target.astype(np.float64)
    zero = DeButOperator(chain, [np.zeros(f.weight_shape) for f in chain])
    assert pydebut_dask.relative_error(zero, lazy) == pytest.approx(1.0, rel=1e-15)
    op = DeButOperator.random(chain, rng=0)
    exact = np.linalg.norm(dense - op.toarray()) / np.linalg.norm(dense)
    assert pydebut_dask.relative_error(op, lazy) == pytest.approx(exact, rel=1e-12)
    result = pydebut_dask.fit_hierarchical(lazy, chain, memory_limit=0)
    fitted = result.operator.toarray().astype(np.float64)
    exact = np.linalg.norm(dense - fitted) / np.linalg.norm(dense)
    rel = 1e-12 if result.operator.dtype == np.float64 else 1e-6  # float16 is fitted in float32
    assert result.error == pytest.approx(exact, rel=rel)
    assert result.error == pytest.approx(fit_hierarchical(target, chain).error, rel=rel)


@pytest.mark.parametrize("bad", [complex(0.5, np.nan), complex(0.5, np.inf), complex(np.nan, 1)])
def test_out_of_core_fit_refuses_non_finite_imaginary_parts_first(bad, monkeypatch):
    # max(1.0, nan) is 1.0: NaN in an imaginary part passed the first pass, and the fit
    # failed at the end on NaN weights.
    chain = special.butterfly_chain(16)
    target = random_target(chain.shape, np.random.default_rng(4), np.complex128)
    target[3, 10] = bad
    monkeypatch.setattr(pydebut_dask, "_each_panel", None)  # no pass after the first
    with pytest.raises(ValueError, match=r"non-finite entries \(NaN or Inf\)"):
        pydebut_dask.fit_hierarchical(da.from_array(target, chunks=(16, 4)), chain, memory_limit=0)


def masked_target(dtype=np.float64, hidden=1e20):
    """An 8 x 8 masked array with entry (0, 5) masked, ``hidden`` stored under the mask."""
    target = np.ma.masked_array(random_target((8, 8), np.random.default_rng(0), dtype))
    target[0, 5] = np.ma.masked
    target.data[0, 5] = hidden
    return target


@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
@pytest.mark.parametrize("hidden", [1e20, np.nan])
def test_a_dask_target_of_masked_chunks_is_refused_as_in_memory(dtype, hidden, monkeypatch):
    # The out-of-core fit took the masked entry at its stored value (error 4e-20 on a fit of
    # the hidden 1e20; a hidden NaN was refused after the fit as NaN weights of factor 1),
    # and relative_error compared the operator with it (1.0 for the fit of the filled target).
    chain = Chain.from_factorizations([2, 2, 2], [2, 2, 2])
    target = masked_target(dtype, hidden)
    lazy = da.from_array(target, chunks=(8, 4))
    monkeypatch.setattr(pydebut_dask, "MIN_PANEL_BYTES", 0)  # panels of 4 columns, named
    words = r"masked array with 1 masked entries, .* fill them first \(numpy.ma.filled"
    with pytest.raises(ValueError, match=words):
        fit_hierarchical(target, chain)
    filled = fit_hierarchical(target.filled(0), chain).operator
    with pytest.raises(
        ValueError,
        match=r"the target \(columns 4 to 7\) is a masked array with 1 masked entries, which",
    ):
        pydebut_dask.relative_error(filled, lazy)
    # masked chunks without masked entries are fitted as the filled target
    unmasked = da.from_array(np.ma.masked_array(target.filled(0)), chunks=(8, 4))
    result = pydebut_dask.fit_hierarchical(unmasked, chain)
    expected = pydebut_dask.fit_hierarchical(da.from_array(target.filled(0), chunks=(8, 4)), chain)
    assert result.error == expected.error
    assert pydebut_dask.relative_error(result.operator, unmasked) == result.error
    monkeypatch.setattr(pydebut_dask, "_each_panel", None)  # refused in the first pass
    for fit in [fit_hierarchical, pydebut_dask.fit_hierarchical]:
        with pytest.raises(ValueError, match=words):
            fit(lazy, chain)


def test_the_in_memory_fits_refuse_a_dask_target_of_masked_chunks():
    # A Dask target was made dense with numpy.asarray, which drops the mask: fit_als and
    # approximate fitted the hidden 1e20 (errors 4.1e-20 and 6.6e-20).
    chain = Chain.from_factorizations([2, 2, 2], [2, 2, 2])
    lazy = da.from_array(masked_target(), chunks=(8, 4))
    for fit in [lambda: fit_als(lazy, chain, n_sweeps=1), lambda: approximate(lazy, 40)]:
        with pytest.raises(ValueError, match="masked array with 1 masked entries, which"):
            fit()


def test_masked_chunks_are_refused_whatever_the_dask_array_declares(monkeypatch):
    # A Dask array declared of NumPy arrays whose chunks are masked arrays: the first pass
    # does not count masked entries, the panels are refused as they are read.
    monkeypatch.setattr(pydebut_dask, "MIN_PANEL_BYTES", 0)  # panels of 4 columns, named
    chain = Chain.from_factorizations([2, 2, 2], [2, 2, 2])
    lazy = da.from_array(masked_target(), chunks=(8, 4), meta=np.empty((0, 0)))
    assert not isinstance(lazy._meta, np.ma.MaskedArray)
    for memory_limit in [0, 2**27]:  # the panels read level by level, or gathered at once
        with pytest.raises(
            ValueError, match=r"\(columns 4 to 7\) is a masked array with 1 masked entries"
        ):
            pydebut_dask.fit_hierarchical(lazy, chain, memory_limit=memory_limit)


def test_relative_error_of_any_linear_operator():
    # It read operator.chain: AttributeError for aslinearoperator(A).
    from scipy.sparse import random_array
    from scipy.sparse.linalg import aslinearoperator

    rng = np.random.default_rng(5)
    target = random_target((24, 40), rng, np.complex128)
    lazy = da.from_array(target, chunks=(24, 7))
    for approx in [
        random_target((24, 40), rng),
        random_target((24, 40), rng, np.complex128),  # its rows: conjugated back
        random_array((24, 40), density=0.2, random_state=rng),
    ]:
        dense = approx if isinstance(approx, np.ndarray) else approx.toarray()
        exact = np.linalg.norm(target - dense) / np.linalg.norm(target)
        error = pydebut_dask.relative_error(aslinearoperator(approx), lazy)
        assert error == pytest.approx(exact, rel=1e-13)
    with pytest.raises(TypeError, match="needs a DeButOperator or another .*LinearOperator"):
        pydebut_dask.relative_error(target, lazy)
    with pytest.raises(ValueError, match=r"shape \(24, 40\) but the operator is 40 x 24"):
        pydebut_dask.relative_error(aslinearoperator(target.T), lazy)


def test_the_error_pass_of_a_wide_target_takes_the_operator_s_rows(monkeypatch):
    # From unit columns, a 4 x 2**18 target took 34 s (0.2 s in memory): n products with
    # unit vectors and n x n zeros to fill; the operator's rows cost m = 4 products a panel.
    # (Before that, the unit columns were n x (panel width): 32 GiB for a 4 x 65536 target.)
    chain = Chain.from_factorizations([2, 2], [64, 64])  # 4 x 4096
    op = DeButOperator.random(chain, rng=0)
    target = da.from_array(op.toarray(), chunks=(4, 4096))
    monkeypatch.setattr(pydebut_dask, "PANEL_BYTES", 2**16)  # 2,048 columns; 2 rows of op^H
    calls = []
    for name in ("matmat", "rmatmat"):
        real = getattr(DeButOperator, name)

        def recording(self, X, name=name, real=real):
            calls.append((name, X.shape))
            return real(self, X)

        monkeypatch.setattr(DeButOperator, name, recording)
    assert pydebut_dask.relative_error(op, target) < 1e-15
    assert calls == [("rmatmat", (4, 2))] * 4  # two panels, two blocks of rows each


def test_the_error_pass_of_an_operator_without_adjoint_holds_a_few_unit_columns(monkeypatch):
    # A LinearOperator may give matvec only: its columns come from unit vectors, n x w of
    # them at a time (they were n x (panel width): 32 GiB for a 4 x 65536 target).
    from scipy.sparse.linalg import LinearOperator

    chain = Chain.from_factorizations([2, 2], [64, 64])  # 4 x 4096
    op = DeButOperator.random(chain, rng=0)
    target = da.from_array(op.toarray(), chunks=(4, 4096))
    monkeypatch.setattr(pydebut_dask, "PANEL_BYTES", 2**16)  # 2 unit columns of 4096
    calls = []

    def recording_matmat(X):
        calls.append(X.shape)
        return op @ X

    forward_only = LinearOperator(op.shape, matvec=op.matvec, matmat=recording_matmat, dtype=float)
    assert pydebut_dask.relative_error(forward_only, target) < 1e-15
    assert set(calls) == {(4096, 2)} and len(calls) == 2048


def test_out_of_core_fit_holds_a_few_panels_only(monkeypatch):
    chain = special.butterfly_chain(2048)
    target = da.random.default_rng(8).standard_normal(chain.shape, chunks=(2048, 64))
    monkeypatch.setattr(pydebut_dask, "PANEL_BYTES", 2**20)
    # One panel at a time: on the threaded scheduler, how many panels are in flight depends
    # on the scheduling (0.28-0.35 of the target in three runs).
    with dask.config.set(scheduler="synchronous"):
        # A first fit loads the kernels and this thread's work buffers (at most
        # pydebut._workspace.KEEP_BYTES a thread, whatever the target): the second one is
        # measured. Warmed on the threaded scheduler, this thread's 4 MiB buffer came into
        # the peak (0.36 of the target) unless an earlier test had run in the thread.
        pydebut_dask.fit_hierarchical(target, chain, memory_limit=2**18)
        tracemalloc.start()
        try:
            result = pydebut_dask.fit_hierarchical(target, chain, memory_limit=2**18)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    target_bytes = 2048 * 2048 * 8
    # A panel, and in the error pass also the operator's columns and the identity columns
    # they come from (0.18-0.19 of the target in three runs); never the target itself.
    assert peak < target_bytes / 3, peak
    assert 0.9 < result.error < 1.0  # a random matrix is far from any butterfly


def test_out_of_core_splits_count_the_gram_matrices_they_accumulate(monkeypatch):
    # The panels give the Gram matrices M M^H of the 256 x 2 sub-blocks, summed over the
    # columns (the in-memory fit takes the 2 x 2 M^H M): 512 of 256 x 256, and their
    # eigenvectors, 512 MiB. Refused before any pass.
    def unreadable(block):
        raise AssertionError("a pass read the target")

    chain = Chain.from_sup_sub("512 512 512 512", "256 256 2 2 2 1")
    target = da.zeros(chain.shape, chunks=(512, 64)).map_blocks(unreadable, dtype=float)
    monkeypatch.setattr("pydebut._memory.physical_memory", lambda: 2**28)
    words = "out-of-core split into 512 sub-blocks of 256 x 2, with a 256 x 256 Gram matrix each"
    with pytest.raises(ValueError, match=words + ", needs 512 MiB"):
        pydebut_dask.fit_hierarchical(target, chain, memory_limit=0)


def test_out_of_core_fit_refuses_to_gather_more_than_memory_before_any_pass(monkeypatch):
    def unreadable(block):
        raise AssertionError("a pass read the target")

    chain = special.butterfly_chain(1024)
    target = da.zeros(chain.shape, chunks=(1024, 64)).map_blocks(unreadable, dtype=float)
    monkeypatch.setattr("pydebut._memory.physical_memory", lambda: 2**20)
    with pytest.raises(ValueError, match=r"gathering the 1024 x 1024 entries left after 0 .*"
                       r"lower memory_limit \(now 1099511627776 bytes\)"):  # fmt: skip
        pydebut_dask.fit_hierarchical(target, chain, memory_limit=2**40)
    with pytest.raises(ValueError, match="the 128 x 1024 entries left after 3 levels"):
        pydebut_dask.fit_hierarchical(target, chain, memory_limit=2**20)


def test_out_of_core_fit_rejects_bad_targets_and_chains():
    chain = special.butterfly_chain(16)
    bad = np.ones(chain.shape)
    bad[3, 5] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        pydebut_dask.fit_hierarchical(da.from_array(bad, chunks=(16, 4)), chain, memory_limit=0)
    with pytest.raises(ValueError, match="non-finite"):
        pydebut_dask.fit_hierarchical(da.from_array(bad, chunks=(16, 4)), chain)
    with pytest.raises(ValueError, match=r"shape \(16, 8\)"):
        pydebut_dask.fit_hierarchical(da.ones((16, 8)), chain)
    with pytest.raises(TypeError, match="numbers"):
        pydebut_dask.fit_hierarchical(da.ones(chain.shape, dtype=object, chunks=16), chain)
    with pytest.raises(TypeError, match="Dask array"):
        pydebut_dask.fit_hierarchical(np.ones(chain.shape), chain)
    with pytest.raises(ValueError, match="k_1 = 1 and t_L = 1"):
        pydebut_dask.fit_hierarchical(da.ones((8, 8)), Chain([(8, 8, 2, 2, 2)]))
    with pytest.raises(ValueError, match="neither chainable nor rank-weighted"):
        pydebut_dask.fit_hierarchical(da.ones((4, 9)), COUPLED[4])
    bad_limits = [("128MB", TypeError), (None, TypeError), (2.5, TypeError), (-5, ValueError)]
    for limit, error in bad_limits:
        with pytest.raises(error, match="fit_hierarchical: memory_limit must be"):
            pydebut_dask.fit_hierarchical(da.ones(chain.shape), chain, memory_limit=limit)


def test_relative_error_of_a_zero_target_is_the_operator_norm():
    op = DeButOperator.random(special.butterfly_chain(8), rng=0)
    error = pydebut_dask.relative_error(op, da.zeros((8, 8), chunks=(8, 4)))
    assert error == pytest.approx(np.linalg.norm(op.toarray()), rel=1e-14)


def test_relative_error_of_a_tiny_panel_against_large_operator_columns_is_finite(monkeypatch):
    from scipy.sparse.linalg import aslinearoperator

    monkeypatch.setattr(pydebut_dask, "MIN_PANEL_BYTES", 0)  # one panel per chunk
    target = np.ones((8, 8))
    target[:, :4] = 1e-300
    approx = np.ones((8, 8))
    approx[:, :4] = 1e10  # far off on the tiny panel: an error of about 1e10, not inf
    exact = np.linalg.norm(approx - target) / np.linalg.norm(target)
    lazy = da.from_array(target, chunks=(8, 4))
    assert pydebut_dask.relative_error(aslinearoperator(approx), lazy) == pytest.approx(
        exact, rel=1e-13
    )


def test_fit_many_refuses_more_chains_than_targets():
    targets, chains = fit_cases(2)
    with pytest.raises(ValueError, match="1 targets but 2 chains"):
        pydebut_dask.fit_many(targets[:1], chains, n_sweeps=1)


def test_fit_many_gives_each_fit_a_copy_of_a_bit_generator():
    targets, chains = fit_cases(3)
    options = {"n_sweeps": 1, "init": "random"}
    expected = [fit_als(t, c, rng=np.random.PCG64(5), **options) for t, c in zip(targets, chains)]
    results = pydebut_dask.fit_many(targets, chains, rng=np.random.PCG64(5), **options)
    assert_same_fits(results, expected)


def test_fit_many_refuses_an_executor_as_client_before_any_fit(monkeypatch):
    import concurrent.futures

    import pydebut

    fits = []
    monkeypatch.setattr(pydebut, "fit_als", lambda *args, **kwargs: fits.append(args))
    targets, chains = fit_cases(2)
    with (
        concurrent.futures.ThreadPoolExecutor(1) as executor,  # submit, but no gather
        pytest.raises(TypeError, match="client must be a dask.distributed.Client"),
    ):
        pydebut_dask.fit_many(targets, chains, client=executor)
    assert not fits


def test_fit_many_progress_counts_fits_not_the_chunks_of_a_dask_target(capsys):
    # a Dask target's chunks are tasks of the fits' graph, not fits
    chain = special.butterfly_chain(16)
    lazy = da.from_array(np.random.default_rng(0).standard_normal((16, 16)), chunks=(16, 4))
    pydebut_dask.fit_many([lazy, lazy], [chain, chain], "hierarchical", progress=True)
    counts = re.findall(r"(\d+)/2", capsys.readouterr().err)
    assert counts and counts[-1] == "2", counts


def test_out_of_core_fit_names_t_L_of_a_chain_with_k_1_equal_to_1():
    chain = Chain([(4, 4, 2, 2, 2)])  # k_1 = 1, t_L = 2
    with pytest.raises(ValueError, match="k_1 = 1 and t_L = 1.*k_1 = 1, t_L = 2"):
        pydebut_dask.fit_hierarchical(da.ones((4, 4), chunks=(4, 2)), chain)


def test_apply_refuses_a_3d_dask_array_before_computing():
    op = DeButOperator.random(special.butterfly_chain(8), rng=0)
    with pytest.raises(ValueError, match=re.escape("shape (8,) or (8, batch), got (8, 2, 3)")):
        pydebut_dask.apply(op, da.ones((8, 2, 3)))  # refused as the graph is built


def test_a_dask_vector_of_unknown_size_is_named():
    op = DeButOperator.random(special.butterfly_chain(16), rng=0)
    x = da.from_array(np.arange(16.0), chunks=4)
    with pytest.raises(ValueError, match=r"unknown .*compute_chunk_sizes\(\)"):
        op @ x[x > -1]  # the same 16 entries, in chunks of unknown size


def test_a_narrow_chunk_is_not_merged_into_a_panel_beyond_panel_bytes(monkeypatch):
    column_bytes = 8 * 8  # 8 rows of float64
    monkeypatch.setattr(pydebut_dask, "PANEL_BYTES", 100 * column_bytes)
    monkeypatch.setattr(pydebut_dask, "MIN_PANEL_BYTES", 10 * column_bytes)
    panels = pydebut_dask._as_panels(da.zeros((8, 200), chunks=(8, (1, 100, 99))))
    assert max(panels.chunks[1]) <= 100, panels.chunks[1]
