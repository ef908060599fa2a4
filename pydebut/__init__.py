"""pydebut: Deformable Butterfly (DeBut) matrices for NumPy and SciPy.

A DeBut matrix is a product ``F_1 F_2 ... F_L`` of block-diagonal factors made of
grids of diagonal matrices (Lin et al., NeurIPS 2021). pydebut describes such
chains (:class:`FactorSpec`, :class:`Chain`), helps choose them
(:func:`enumerate_chains`, :func:`min_param_chain`, :func:`is_dense`) and
applies them as a SciPy ``LinearOperator`` (:class:`DeButOperator`).

Each public name is imported from its module when it is first used (Scientific
Python's SPEC 1), from the list in ``__init__.pyi``, which type checkers read:
``import pydebut`` does not compile or load the kernels. It does select Numba's
threading layer (``pydebut._numba_setup``), so Numba parallel code run after it
is fork-safe too; a Numba setting the kernels cannot run under
(``NUMBA_DISABLE_JIT``, a threading layer that does not load here) is refused
where they are first needed, which lets the command line report it in one line.
"""

import ast
import importlib
from pathlib import Path
from typing import Any

from . import _numba_setup

__version__ = "0.1.0"

_numba_setup.choose_threading_layer()  # before any Numba parallel code runs


def _read_stub() -> tuple[dict[str, str | None], list[str]]:
    """The public names of ``__init__.pyi``, each with its module (None for a
    submodule), and its ``__all__``."""
    stub = ast.parse(Path(__file__).with_suffix(".pyi").read_text(encoding="utf-8"))
    modules: dict[str, str | None] = {}
    public: list[str] = []
    for statement in stub.body:
        if isinstance(statement, ast.ImportFrom):
            modules.update((alias.name, statement.module) for alias in statement.names)
        elif isinstance(statement, ast.Assign) and ast.unparse(statement.targets) == "__all__":
            public = ast.literal_eval(statement.value)
    return modules, public


_MODULE_OF, __all__ = _read_stub()


def __getattr__(name: str) -> Any:
    """Import the public ``name`` from its module, once (PEP 562)."""
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = _MODULE_OF[name]
    value: Any
    if module is None:
        value = importlib.import_module(f".{name}", __name__)
    else:
        value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The public names (what tab completion offers), not the helpers of this module."""
    return list(__all__)
