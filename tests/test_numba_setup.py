"""Where compiled kernels are cached, and which threading layer pydebut selects."""

import ctypes
import importlib
import os
import stat
import subprocess
import sys
import tempfile
import textwrap
import warnings
from pathlib import Path

import numba
import pytest

import pydebut
from pydebut import _kernels, _numba_setup

PACKAGE_DIR = Path(pydebut.__file__).resolve().parent
KERNELS = [
    value
    for value in vars(_kernels).values()
    if isinstance(value, numba.core.registry.CPUDispatcher)
]


def run_python(code: str, env: dict[str, str], timeout: float = 120) -> str:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        cwd=PACKAGE_DIR.parent,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def clean_env(*drop: str, **extra: str) -> dict[str, str]:
    """The environment without a threading-layer choice (nor the variables in ``drop``)."""
    env = {k: v for k, v in os.environ.items() if k not in {"NUMBA_THREADING_LAYER", *drop}}
    env["PYTHONPATH"] = str(PACKAGE_DIR.parent)
    env.update(extra)
    return env


def import_pydebut(**extra: str) -> subprocess.CompletedProcess:
    """``import pydebut`` and the kernels (``DeButOperator``) in a new interpreter, in
    :func:`clean_env` with ``extra``."""
    return subprocess.run(
        [sys.executable, "-c", "import pydebut; pydebut.DeButOperator"],
        capture_output=True,
        text=True,
        env=clean_env(**extra),
        timeout=120,
    )


def add(x, y):  # a function in a real source file, for Numba's cache locators
    return x + y


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="XDG_CACHE_HOME is Linux's")
def test_kernels_are_cached_per_user_and_never_inside_the_package(tmp_path):
    xdg = tmp_path / "xdg"
    out = run_python(
        """
        import numpy as np
        from pydebut import _kernels
        paths = {d._cache.cache_path for d in vars(_kernels).values() if hasattr(d, "_cache")}
        print(*paths, sep="\\n")
        w, x, y = np.ones(4), np.ones(2), np.empty(2)
        _kernels.vector_general(2, 2, 2, 1, w, 0, x, y)  # compiles, so writes the cache
        print(y.tolist())
        """,
        clean_env("NUMBA_CACHE_DIR", XDG_CACHE_HOME=str(xdg), HOME=str(tmp_path / "home")),
    )
    *paths, values = out.splitlines()
    assert values == "[2.0, 2.0]"
    assert paths and all(Path(p).is_relative_to(xdg / "pydebut") for p in paths), paths
    assert list(xdg.rglob("_kernels.vector_general-*.nbi"))
    assert not list(PACKAGE_DIR.rglob("*.nbi"))


def test_numba_cache_dir_wins_when_set(tmp_path, monkeypatch):
    monkeypatch.setattr(numba.config, "CACHE_DIR", str(tmp_path))
    cache = _numba_setup._KernelCache(add)
    assert Path(cache.cache_path).is_relative_to(tmp_path)


def no_cache_folders(tmp_path, monkeypatch, temporary: str) -> None:
    """No NUMBA_CACHE_DIR, and XDG_CACHE_HOME and HOME below a file (so unwritable);
    the system's temporary folder ``tmp_path`` itself if ``temporary`` is "writable"."""
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    monkeypatch.setattr(numba.config, "CACHE_DIR", "")
    monkeypatch.setenv("XDG_CACHE_HOME", str(not_a_folder / "cache"))
    monkeypatch.setenv("HOME", str(not_a_folder / "home"))
    writable = temporary == "writable"
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path if writable else not_a_folder / "tmp"))


def test_unwritable_cache_folders_fall_back_to_uncached_kernels_with_one_warning(
    tmp_path, monkeypatch
):
    no_cache_folders(tmp_path, monkeypatch, temporary="unwritable")
    with pytest.raises(RuntimeError, match="no locator available"):
        _numba_setup._KernelCache(add)
    monkeypatch.setattr(_kernels, "_cache_warning_issued", False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        compiled = _kernels._jit()(add)
        _kernels._jit()(add)
    assert compiled(2, 3) == 5
    assert len(caught) == 1
    assert caught[0].category is RuntimeWarning
    assert "cannot cache compiled kernels" in str(caught[0].message)
    assert "NUMBA_CACHE_DIR" in str(caught[0].message)


@pytest.mark.skipif(not hasattr(os, "getuid"), reason="no user ids")
def test_without_a_writable_home_kernels_are_cached_in_a_private_temporary_folder(
    tmp_path, monkeypatch
):
    # a read-only home (HOME=/nonexistent, nobody's) compiled every kernel in every
    # process, about 40 s of CPU before the first block product
    no_cache_folders(tmp_path, monkeypatch, temporary="writable")
    private = tmp_path / f"pydebut-cache-{os.getuid()}"
    cache = _numba_setup._KernelCache(add)
    assert Path(cache.cache_path).is_relative_to(private)
    assert stat.S_IMODE(private.stat().st_mode) == 0o700
    for mode in (0o755, 0o750):  # open to others or the group: one could plant a pickled index
        private.chmod(mode)
        with pytest.raises(RuntimeError, match="no locator available"):
            _numba_setup._KernelCache(add)


@pytest.mark.skipif(not hasattr(os, "getuid"), reason="no user ids")
def test_a_temporary_cache_folder_of_another_user_is_not_used(tmp_path, monkeypatch):
    # a folder of that name planted by another user, private to them, would hold the
    # pickled index this user's processes unpickle
    no_cache_folders(tmp_path, monkeypatch, temporary="writable")
    other = os.getuid() + 1
    (tmp_path / f"pydebut-cache-{other}").mkdir(mode=0o700)  # this user's, named for other
    monkeypatch.setattr(os, "getuid", lambda: other)
    with pytest.raises(RuntimeError, match="no locator available"):
        _numba_setup._KernelCache(add)


def test_per_user_kernel_caches_are_kept_apart_by_source_folder(tmp_path, monkeypatch):
    # one folder for every installation (two virtual environments, an editable checkout)
    # would let each overwrite the others' index files
    monkeypatch.setattr(numba.config, "CACHE_DIR", "")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    locator = _numba_setup._PerUserCacheLocator
    kernels = locator(_kernels.largest_dim.py_func, _kernels.__file__).get_cache_path()
    here = locator(add, __file__).get_cache_path()
    root = str(tmp_path / "xdg" / "pydebut")
    assert kernels.startswith(root) and here.startswith(root)
    assert kernels != here and root not in (kernels, here)


def test_the_kernels_refuse_a_turned_off_jit_naming_the_setting():
    # it failed inside the cache setup: "'function' object has no attribute 'py_func'"
    result = import_pydebut(NUMBA_DISABLE_JIT="1")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "ImportError: pydebut's kernels need Numba's JIT compiler, which NUMBA_DISABLE_JIT "
        "(numba.config.DISABLE_JIT) turns off: unset it to use pydebut"
    )


def test_every_kernel_is_cached_outside_the_package():
    assert len(KERNELS) >= 8
    for kernel in KERNELS:
        assert isinstance(kernel._cache, _numba_setup._KernelCache), kernel
        assert not Path(kernel._cache.cache_path).resolve().is_relative_to(PACKAGE_DIR)


def test_the_fork_safe_threading_layer_is_selected_by_default():
    out = run_python(
        """
        import numba, numpy as np
        from pydebut import DeButOperator, _batched
        _batched.MIN_WORKER_FLOPS = 1  # so that a small block runs on two workers
        op = DeButOperator.random([(8, 8, 2, 2, 4), (8, 8, 2, 2, 2)], rng=0)
        op @ np.ones((8, 64))  # a block through the parallel batched kernel
        print(numba.config.THREADING_LAYER, numba.threading_layer())
        """,
        clean_env(NUMBA_NUM_THREADS="2"),  # a parallel launch on any machine
    )
    requested, used = out.split()
    assert requested == _numba_setup.THREADING_LAYER == "forksafe"
    assert used in ("tbb", "workqueue") if sys.platform.startswith("linux") else used != ""


def test_a_threading_layer_chosen_by_the_user_is_kept(monkeypatch):
    monkeypatch.setattr(_numba_setup, "started_layer", lambda: None)  # before any launch
    monkeypatch.setenv("NUMBA_THREADING_LAYER", "unset")  # so monkeypatch restores it
    monkeypatch.delenv("NUMBA_THREADING_LAYER")
    monkeypatch.setattr(numba.config, "THREADING_LAYER", "threadsafe")
    monkeypatch.setattr(_numba_setup, "library_loads", lambda library: True)  # no OpenMP here
    assert _numba_setup.choose_threading_layer() == "threadsafe"
    assert "NUMBA_THREADING_LAYER" not in os.environ
    monkeypatch.setenv("NUMBA_THREADING_LAYER", "workqueue")
    monkeypatch.setattr(numba.config, "THREADING_LAYER", "default")
    assert _numba_setup.choose_threading_layer() == "default"  # Numba reads the variable
    monkeypatch.delenv("NUMBA_THREADING_LAYER")
    assert _numba_setup.choose_threading_layer() == "forksafe"
    assert os.environ["NUMBA_THREADING_LAYER"] == "forksafe"


PARALLEL_CODE_FIRST = """
    import warnings
    import numba, numpy as np

    @numba.njit(parallel=True)
    def total(a):
        s = 0.0
        for i in numba.prange(a.size):
            s += a[i]
        return s

    total(np.ones(1000))  # starts Numba's threading layer
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        from pydebut import _numba_setup
    print(numba.threading_layer(), _numba_setup.launches_through_workqueue())
    for warning in caught:
        if warning.category is RuntimeWarning:
            print(warning.message)
"""


def test_a_started_layer_is_the_one_in_force(monkeypatch):
    monkeypatch.setattr(numba.config, "THREADING_LAYER", "forksafe")
    for started in ("workqueue", "tbb"):
        monkeypatch.setattr(_numba_setup, "started_layer", lambda layer=started: layer)
        assert _numba_setup.choose_threading_layer() == started
        assert _numba_setup.launches_through_workqueue() is (started == "workqueue")


@pytest.mark.skipif(not _numba_setup.library_loads("omp"), reason="needs Numba's OpenMP layer")
def test_an_openmp_layer_started_before_the_import_is_in_force_with_a_warning():
    # The layer in force was OpenMP, silently, while pydebut reported its own choice.
    first, *warned = run_python(PARALLEL_CODE_FIRST, clean_env(NUMBA_NUM_THREADS="2")).splitlines()
    assert first == "omp False"
    assert warned and "started before pydebut was imported, on OpenMP" in warned[0]
    chosen = clean_env(NUMBA_NUM_THREADS="2", NUMBA_THREADING_LAYER="omp")
    assert run_python(PARALLEL_CODE_FIRST, chosen).splitlines() == ["omp False"]


def test_a_threading_layer_numba_cannot_use_is_refused_by_the_kernels():
    result = import_pydebut(NUMBA_THREADING_LAYER="tbbb")
    assert result.returncode != 0
    assert "ValueError: the Numba threading layer 'tbbb' (NUMBA_THREADING_LAYER" in result.stderr


def test_import_pydebut_selects_the_layer_and_leaves_the_kernels_unloaded():
    # a setting the kernels refuse failed "import pydebut" itself, so every pydebut command
    # printed a traceback; the layer is still selected at import, before Numba code runs
    out = run_python(
        """
        import os, sys
        import pydebut
        print(os.environ["NUMBA_THREADING_LAYER"], "pydebut._kernels" in sys.modules)
        print(pydebut.Chain([(4, 4, 2, 2, 2), (4, 4, 2, 2, 1)]).n_params)
        """,
        clean_env(NUMBA_DISABLE_JIT="1"),
    )
    assert out.split() == ["forksafe", "False", "16"]


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"NUMBA_DISABLE_JIT": "1"}, "pydebut's kernels need Numba's JIT compiler"),
        ({"NUMBA_THREADING_LAYER": "tbbb"}, "the Numba threading layer 'tbbb'"),
    ],
)
def test_the_command_line_reports_a_refused_numba_setting_in_one_line(setting, message):
    result = subprocess.run(
        [sys.executable, "-m", "pydebut", "chains", "8", "8"],
        capture_output=True,
        text=True,
        env=clean_env(**setting),
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.startswith(f"pydebut: error: {message}")
    assert len(result.stderr.splitlines()) == 1 and result.stdout == ""


def test_threading_layers_are_checked_against_the_libraries_that_load(monkeypatch):
    for layer in ("", " workqueue", "garbage"):
        with pytest.raises(ValueError, match=f"layer '{layer}' .* is unknown: use one of"):
            _numba_setup.check_threading_layer(layer)
    monkeypatch.setattr(_numba_setup, "library_loads", lambda library: library == "workqueue")
    for layer in ("tbb", "safe", "threadsafe", "omp"):
        with pytest.raises(ValueError, match=f"layer '{layer}' .* cannot be loaded here"):
            _numba_setup.check_threading_layer(layer)
    for layer in ("default", "forksafe", "workqueue"):
        _numba_setup.check_threading_layer(layer)
    monkeypatch.setattr(_numba_setup, "library_loads", lambda library: library != "tbb")
    _numba_setup.check_threading_layer("threadsafe")  # OpenMP
    with pytest.raises(ValueError, match="needs tbb, which cannot be loaded"):
        _numba_setup.check_threading_layer("safe")
    assert _numba_setup.library_loads("workqueue")


def test_a_threading_layer_is_read_in_any_case_as_numba_reads_it(monkeypatch):
    # NUMBA_THREADING_LAYER=WORKQUEUE, which Numba runs, made import pydebut fail
    monkeypatch.setattr(_numba_setup, "started_layer", lambda: None)  # before any launch
    for layer in ("WORKQUEUE", "Workqueue"):
        monkeypatch.setattr(numba.config, "THREADING_LAYER", layer)
        assert _numba_setup.choose_threading_layer() == "workqueue"
        assert _numba_setup.launches_through_workqueue()


@pytest.mark.parametrize(
    ("layer", "expected"), [("workqueue", True), ("omp", False), ("tbb", False)]
)
def test_workqueue_is_recognised_for_the_long_vector_choice(monkeypatch, layer, expected):
    monkeypatch.setattr(_numba_setup, "started_layer", lambda: None)  # before any launch
    monkeypatch.setattr(numba.config, "THREADING_LAYER", layer)
    assert _numba_setup.launches_through_workqueue() is expected


@pytest.mark.parametrize("tbb_loads", [False, True])
def test_the_fork_safe_layer_launches_through_workqueue_only_without_tbb(monkeypatch, tbb_loads):
    # taken for a fast layer without TBB, it split blocks and long vectors among threads
    # from 2**21 operations, where workqueue's slow launches need 2**25
    monkeypatch.setattr(_numba_setup, "started_layer", lambda: None)  # before any launch
    monkeypatch.setattr(numba.config, "THREADING_LAYER", "forksafe")
    monkeypatch.setattr(_numba_setup, "library_loads", lambda lib: tbb_loads or lib != "tbb")
    assert _numba_setup.launches_through_workqueue() is (not tbb_loads)


def test_the_default_layer_loads_a_tbb_that_pip_installed_first(monkeypatch):
    # test_a_tbb_that_pip_installed_is_the_layer_in_force needs TBB installed; here the
    # loading is stubbed: the default layer tries it, a layer that excludes TBB does not
    monkeypatch.setattr(_numba_setup, "started_layer", lambda: None)  # before any launch
    monkeypatch.delenv("NUMBA_THREADING_LAYER", raising=False)
    monkeypatch.setattr(numba.config, "THREADING_LAYER", "default")
    loaded = []
    monkeypatch.setattr(_numba_setup, "load_environment_tbb", lambda: loaded.append(True))
    assert _numba_setup.choose_threading_layer() == "forksafe"
    assert loaded == [True]
    for layer in ("workqueue", "omp"):
        monkeypatch.setattr(numba.config, "THREADING_LAYER", layer)
        monkeypatch.setenv("NUMBA_THREADING_LAYER", layer)
        assert _numba_setup.choose_threading_layer() == layer
    assert loaded == [True]


def test_a_started_layer_is_checked_instead_of_the_configured_one(monkeypatch):
    # a "tbb" setting that cannot load failed the import although workqueue was in force
    monkeypatch.setattr(numba.config, "THREADING_LAYER", "tbb")
    monkeypatch.setattr(_numba_setup, "library_loads", lambda library: library == "workqueue")
    monkeypatch.setattr(_numba_setup, "started_layer", lambda: "workqueue")
    _numba_setup.check_layer_in_force()
    monkeypatch.setattr(_numba_setup, "started_layer", lambda: None)
    with pytest.raises(ValueError, match="layer 'tbb' .* cannot be loaded here"):
        _numba_setup.check_layer_in_force()


@pytest.mark.parametrize("error", [ImportError, OSError])
@pytest.mark.parametrize("library", ["tbb", "omp"])
def test_a_threading_library_that_fails_to_import_does_not_load(monkeypatch, library, error):
    # OpenMP was taken to load like workqueue (NUMBA_THREADING_LAYER=omp without it failed
    # at the first large product), and a library there that fails to load (OSError)
    # failed import pydebut
    real_import = importlib.import_module

    def failing(name, *args):
        if name == f"numba.np.ufunc.{library}pool":
            raise error(f"no {library} here")
        return real_import(name, *args)

    monkeypatch.setattr(importlib, "import_module", failing)
    assert not _numba_setup.library_loads(library)
    assert _numba_setup.library_loads("workqueue")
    with pytest.raises(ValueError, match=f"layer '{library}' .* needs {library}, which cannot"):
        _numba_setup.check_threading_layer(library)


ENVIRONMENT_TBB = Path(sys.prefix, "lib", _numba_setup.TBB_LIBRARY)


@pytest.mark.skipif(not ENVIRONMENT_TBB.is_file(), reason='needs pip install "pydebut[tbb]"')
def test_a_tbb_that_pip_installed_is_the_layer_in_force():
    """Numba alone does not find pip's TBB in a virtual environment; pydebut loads it."""
    out = run_python(
        """
        import numba, numpy as np
        from pydebut import DeButOperator, _batched
        from pydebut.special import butterfly_chain
        op = DeButOperator.random(butterfly_chain(1024), rng=0)
        x = np.ones((1024, 256))  # 2 x 2**21 floating-point operations and more per thread
        assert np.allclose(op @ x, op.toarray() @ x)
        print(numba.threading_layer(), _batched.MIN_WORKER_FLOPS == 2**21)
        """,
        clean_env("LD_LIBRARY_PATH", NUMBA_NUM_THREADS="2"),  # a parallel launch on any machine
    )
    assert out.split() == ["tbb", "True"]


def test_workqueue_chosen_by_the_user_loads_no_tbb():
    out = run_python(
        """
        from pydebut import _batched, _numba_setup
        print(_numba_setup._tbb_is_loaded(), _batched.MIN_WORKER_FLOPS == 2**25)
        """,
        clean_env("LD_LIBRARY_PATH", NUMBA_THREADING_LAYER="workqueue"),
    )
    assert out.split() == ["False", "True"]


def test_environment_tbb_is_loaded_only_where_it_can_be(tmp_path, monkeypatch):
    monkeypatch.setattr(_numba_setup, "_tbb_is_loaded", lambda: False)
    monkeypatch.setattr(sys, "platform", "linux")
    prefixes = (str(tmp_path),)
    assert _numba_setup.load_environment_tbb(prefixes) is None  # no library there
    library = tmp_path / "lib" / _numba_setup.TBB_LIBRARY
    library.parent.mkdir()
    library.write_text("not a shared library")
    assert _numba_setup.load_environment_tbb(prefixes) is None  # fails to load: passed over
    monkeypatch.setattr(ctypes, "CDLL", lambda path, mode: path)  # as if it loaded
    assert _numba_setup.load_environment_tbb(prefixes) == str(library)
    monkeypatch.setattr(_numba_setup, "_tbb_is_loaded", lambda: True)
    assert _numba_setup.load_environment_tbb(prefixes) is None  # never a second copy
    monkeypatch.setattr(_numba_setup, "_tbb_is_loaded", lambda: False)
    monkeypatch.setattr(sys, "platform", "darwin")
    assert _numba_setup.load_environment_tbb(prefixes) is None  # Linux only


def test_a_tbb_that_fails_to_load_is_passed_over_for_the_next_prefix(tmp_path, monkeypatch):
    # a broken libtbb in sys.prefix hid a working one in the user base
    monkeypatch.setattr(_numba_setup, "_tbb_is_loaded", lambda: False)
    monkeypatch.setattr(sys, "platform", "linux")
    broken, working = tmp_path / "broken", tmp_path / "working"
    for prefix in (broken, working):
        (prefix / "lib").mkdir(parents=True)
        (prefix / "lib" / _numba_setup.TBB_LIBRARY).write_text("a library")

    def load(path, mode):
        if path.startswith(str(broken)):
            raise OSError("invalid ELF header")
        return path

    monkeypatch.setattr(ctypes, "CDLL", load)
    loaded = _numba_setup.load_environment_tbb((str(broken), str(working)))
    assert loaded == str(working / "lib" / _numba_setup.TBB_LIBRARY)
