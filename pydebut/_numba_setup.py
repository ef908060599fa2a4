"""How pydebut sets up Numba: the threading layer and where compiled kernels are cached.

Both choices live here and nowhere else.

Threading layer
    :data:`THREADING_LAYER` is ``"forksafe"``: Numba then uses TBB when it is
    installed and otherwise its ``workqueue`` layer (on Linux; elsewhere a
    fork-safe OpenMP first). Numba's default prefers GNU OpenMP, which kills
    any child forked after a parallel kernel ran ("fork() called from a
    process already using GNU OpenMP") and hangs ``multiprocessing.Pool``
    with the fork start method. ``workqueue`` is fork-safe but not
    thread-safe; the operator serialises its parallel launches with one
    process-wide lock, so sharing operators between threads stays safe. TBB
    is both, and starts a parallel region in microseconds where
    ``workqueue`` takes tens to hundreds (``pip install "pydebut[tbb]"``;
    Numba does not find a TBB that pip put into a virtual environment, so
    :func:`load_environment_tbb` loads it first). A choice the user made
    (``NUMBA_THREADING_LAYER`` or ``numba.config.THREADING_LAYER`` set before
    importing pydebut) is kept, once :func:`check_threading_layer` finds that
    Numba knows it and can load it here. A layer that Numba already started
    (parallel code ran before pydebut was imported) stays in force, since Numba
    starts one per process; if it is OpenMP and the user chose none, importing
    pydebut warns that forked children will die (:func:`choose_threading_layer`).

Kernel cache
    Compiled kernels are cached in ``$NUMBA_CACHE_DIR`` when it is set, else in
    a per-user folder (``$XDG_CACHE_HOME/pydebut`` or ``~/.cache/pydebut`` on
    Linux, the platform's cache folder elsewhere), else, where neither can be
    written (a read-only home), in a private folder under the system's temporary
    one (:func:`temporary_cache_dir`), never inside the installed package:
    Numba's default writes ``.nbi``/``.nbc`` files into
    ``site-packages/pydebut/__pycache__``, which ``pip uninstall`` leaves
    behind as a namespace package that shadows a later editable install.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import os
import site
import stat
import sys
import tempfile
import warnings
from collections.abc import Callable

try:
    import numba
except ImportError as err:  # pragma: no cover - exercised only without numba
    raise ImportError(
        "pydebut needs numba for its kernels; install it with 'pip install numba' "
        f"(import failed: {err})"
    ) from err
from numba.core import caching
from numba.misc.appdirs import AppDirs

#: Numba threading layer pydebut selects unless the user chose one.
THREADING_LAYER = "forksafe"


#: The TBB library Numba's TBB layer links to (``TBB_INTERFACE_VERSION`` 12xxx).
TBB_LIBRARY = "libtbb.so.12"


def check_jit_enabled() -> None:
    """Raise ImportError if Numba's JIT compiler is turned off (``NUMBA_DISABLE_JIT``).

    The kernels reach below Python (LLVM intrinsics, Numba's array internals) and
    cannot run as Python functions: ``import pydebut`` failed inside the cache setup
    with an AttributeError, and without it the first product failed inside a kernel.
    """
    if numba.config.DISABLE_JIT:
        raise ImportError(
            "pydebut's kernels need Numba's JIT compiler, which NUMBA_DISABLE_JIT "
            "(numba.config.DISABLE_JIT) turns off: unset it to use pydebut"
        )


def choose_threading_layer() -> str:
    """Select :data:`THREADING_LAYER` unless the user chose a layer; return the layer in force.

    The environment variable is set too, so Numba's reloads of its configuration
    from the environment keep the choice (and child processes inherit it).
    Unless the layer in force excludes TBB, :func:`load_environment_tbb` runs first.
    A layer Numba already started (:func:`started_layer`) is the one in force:
    ``RuntimeWarning`` if it is OpenMP and the user chose none. ``import pydebut``
    runs this; whether the layer can load is checked later, by
    :func:`check_layer_in_force`, so that refusing it does not fail the import.
    """
    user_chose = "NUMBA_THREADING_LAYER" in os.environ or configured_layer() != "default"
    started = started_layer()
    if started is not None:
        if started == "omp" and not user_chose:
            warnings.warn(
                "Numba's threading layer was started before pydebut was imported, on "
                "OpenMP, which (as GNU OpenMP) kills processes forked after a parallel "
                "kernel ran and hangs multiprocessing's 'fork' pools: import pydebut before "
                "running Numba parallel code, or set NUMBA_THREADING_LAYER=forksafe",
                RuntimeWarning,
                stacklevel=2,
            )
        return started
    if not user_chose:
        os.environ["NUMBA_THREADING_LAYER"] = THREADING_LAYER
        numba.config.THREADING_LAYER = THREADING_LAYER
    layer = configured_layer()
    if layer not in ("workqueue", "omp"):
        load_environment_tbb()
    return layer


def check_layer_in_force() -> None:
    """Raise ValueError unless the threading layer in force can load here
    (:func:`check_threading_layer`); the kernels run it when they are imported."""
    check_threading_layer(started_layer() or configured_layer())


#: The libraries each threading layer of Numba may run on (its ``forksafe`` excludes GNU
#: OpenMP, which this check does not tell apart from other OpenMP builds).
LAYER_LIBRARIES = {
    "default": ("tbb", "omp", "workqueue"),
    "forksafe": ("tbb", "omp", "workqueue"),
    "threadsafe": ("tbb", "omp"),
    "safe": ("tbb",),
    "tbb": ("tbb",),
    "omp": ("omp",),
    "workqueue": ("workqueue",),
}


def configured_layer() -> str:
    """The threading layer Numba is configured to start, as Numba reads it (any case)."""
    return str(numba.config.THREADING_LAYER).lower()


def check_threading_layer(layer: str) -> None:
    """Raise ValueError unless ``layer`` is a Numba threading layer that can load here.

    Numba itself finds out only at the first parallel launch, which pydebut makes
    only for large enough problems: a misspelt ``NUMBA_THREADING_LAYER``, or
    ``tbb`` without TBB installed, would otherwise fail in the middle of use, on
    some sizes only.
    """
    libraries = LAYER_LIBRARIES.get(layer)
    if libraries is None:
        raise ValueError(
            f"the Numba threading layer {layer!r} (NUMBA_THREADING_LAYER or "
            f"numba.config.THREADING_LAYER) is unknown: use one of "
            f"{', '.join(LAYER_LIBRARIES)}, or leave it unset (pydebut selects "
            f"{THREADING_LAYER!r})"
        )
    if not any(library_loads(library) for library in libraries):
        raise ValueError(
            f"the Numba threading layer {layer!r} (NUMBA_THREADING_LAYER or "
            f"numba.config.THREADING_LAYER) needs {' or '.join(libraries)}, which cannot be "
            f'loaded here: install TBB (pip install "pydebut[tbb]"), or leave it unset '
            f"(pydebut selects {THREADING_LAYER!r})"
        )


def library_loads(library: str) -> bool:
    """Whether Numba's threading library ``library`` (tbb, omp or workqueue) loads."""
    if library == "workqueue":  # built into Numba
        return True
    try:
        importlib.import_module(f"numba.np.ufunc.{library}pool")
    except (ImportError, OSError):
        return False
    return True


def load_environment_tbb(prefixes: tuple[str, ...] | None = None) -> str | None:
    """Load the TBB that pip installed into this environment, so that Numba finds it; its path.

    The ``tbb`` wheel puts :data:`TBB_LIBRARY` into ``<prefix>/lib``, which
    is not on the dynamic loader's path of a virtual environment or a user
    install, so Numba's TBB layer fails to load there and ``forksafe`` falls
    back to ``workqueue`` (numba/numba#7148, #9740). Once loaded by its path,
    the library resolves by name. Only on Linux, only from ``prefixes``
    (``sys.prefix`` and the user base by default), and never when a TBB is
    already in the process (two copies would not share their threads).
    Returns the path loaded, or None.
    """
    if not sys.platform.startswith("linux") or _tbb_is_loaded():
        return None
    for prefix in (sys.prefix, site.getuserbase()) if prefixes is None else prefixes:
        path = os.path.join(prefix, "lib", TBB_LIBRARY)
        if os.path.isfile(path):
            try:
                ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
            except OSError:
                continue
            return path
    return None


def _tbb_is_loaded() -> bool:
    """Whether a library named :data:`TBB_LIBRARY` is mapped into this process."""
    try:
        with open("/proc/self/maps") as maps:
            return any("/" + TBB_LIBRARY in line for line in maps)  # or libtbb.so.12.x
    except OSError:
        return False


def started_layer() -> str | None:
    """The threading layer Numba has started in this process (``"tbb"``, ``"omp"`` or
    ``"workqueue"``), or None before its first parallel launch."""
    from numba.np.ufunc import parallel

    return numba.threading_layer() if getattr(parallel, "_is_initialized", False) else None


def launches_through_workqueue() -> bool:
    """Whether parallel kernels run on Numba's ``workqueue`` layer (no TBB installed).

    ``workqueue`` starts a parallel region slowly: enough for one launch per
    batched apply, too slow for one launch per factor of a single vector.
    """
    started = started_layer()
    if started is not None:
        return started == "workqueue"
    layer = configured_layer()
    if layer == "workqueue":
        return True
    if layer not in ("forksafe", "safe"):
        return False  # "default", "threadsafe", "omp", "tbb": OpenMP or TBB comes first
    return not library_loads("tbb")


def user_cache_dir() -> str:
    """The per-user folder for compiled kernels (``$XDG_CACHE_HOME/pydebut`` on Linux)."""
    return AppDirs(appname="pydebut", appauthor=False).user_cache_dir


class _PerUserCacheLocator(caching.UserWideCacheLocator):
    """Numba's user-wide locator with pydebut's folder instead of Numba's."""

    def __init__(self, py_func: Callable, py_file: str) -> None:
        super().__init__(py_func, py_file)
        self._cache_path = os.path.join(user_cache_dir(), self.get_suitable_cache_subpath(py_file))


def temporary_cache_dir() -> str | None:
    """The folder for compiled kernels when the per-user one cannot be written (a
    read-only home, ``HOME=/nonexistent``): ``pydebut-cache-UID`` in the system's
    temporary folder, or None where there are no user ids (Windows).

    Numba's cache index is unpickled, so the folder must be this user's alone: it is
    made with mode 0700, and one found there owned by another user, or open to
    others, is not used (:class:`_TemporaryCacheLocator`).
    """
    if not hasattr(os, "getuid"):
        return None
    return os.path.join(tempfile.gettempdir(), f"pydebut-cache-{os.getuid()}")


class _TemporaryCacheLocator(caching.UserWideCacheLocator):
    """Numba's user-wide locator in :func:`temporary_cache_dir`, if it is this user's alone."""

    def __init__(self, py_func: Callable, py_file: str) -> None:
        super().__init__(py_func, py_file)
        folder = temporary_cache_dir()
        self._cache_path = os.path.join(folder or "", self.get_suitable_cache_subpath(py_file))

    def ensure_cache_path(self) -> None:
        folder = temporary_cache_dir()
        if folder is None:
            raise OSError("no user ids to keep a shared temporary folder private")
        with contextlib.suppress(FileExistsError):
            os.mkdir(folder, 0o700)
        status = os.lstat(folder)
        if not stat.S_ISDIR(status.st_mode) or status.st_uid != os.getuid():
            raise OSError(f"{folder} is not a folder of this user's")
        if stat.S_IMODE(status.st_mode) & 0o077:
            raise OSError(f"{folder} is open to other users")
        super().ensure_cache_path()


class _KernelCacheImpl(caching.CompileResultCacheImpl):
    # NUMBA_CACHE_DIR first, then the per-user folder, then a private temporary one;
    # never the package's __pycache__.
    _locator_classes = (
        caching.UserProvidedCacheLocator,
        _PerUserCacheLocator,
        _TemporaryCacheLocator,
    )


class _KernelCache(caching.FunctionCache):
    _impl_class = _KernelCacheImpl


def enable_kernel_cache(dispatcher: numba.core.dispatcher.Dispatcher) -> None:
    """Cache ``dispatcher``'s compiled code outside the package (as ``cache=True`` does inside).

    Raises
    ------
    RuntimeError
        If none of ``NUMBA_CACHE_DIR``, the per-user folder and the private
        temporary one (:func:`temporary_cache_dir`) is writable.
    """
    dispatcher._cache = _KernelCache(dispatcher.py_func)
