"""Sphinx helpers for the pydebut docs.

- Offline intersphinx: on ``config-inited`` write small NumPy/SciPy inventories
  from the installed packages, used as fallbacks when the real ones cannot be
  downloaded, so that a build without network neither warns nor fails.
- Class signatures: show ``__init__``'s signature where SciPy's
  ``LinearOperator.__new__`` would hide it.
"""

from __future__ import annotations

import importlib
import inspect
import zlib
from pathlib import Path
from typing import Any

import numpy as np

GENERATED = "_generated"


# --- offline intersphinx inventories ------------------------------------------------

#: Modules whose public functions and classes have a page
#: ``reference/generated/<full name>.html`` in their project's documentation.
OFFLINE_MODULES = {
    "numpy": ("numpy", "numpy.linalg"),
    "scipy": ("scipy.linalg", "scipy.sparse", "scipy.sparse.linalg"),
}


def _inventory_lines(modules: tuple[str, ...]) -> list[str]:
    lines = []
    for module_name in modules:
        module = importlib.import_module(module_name)
        public = [n for n in dir(module) if not n.startswith("_")]
        names = getattr(module, "__all__", None) or public
        for name in sorted(set(names)):
            obj = getattr(module, name, None)
            if obj is None or inspect.ismodule(obj) or not callable(obj):
                continue
            if inspect.isclass(obj) and issubclass(obj, np.generic):
                continue  # scalar types share one page, not one each
            role = "py:class" if inspect.isclass(obj) else "py:function"
            full = f"{module_name}.{name}"
            lines.append(f"{full} {role} 1 reference/generated/{full}.html#$ -")
    return lines


def write_offline_inventories(app: Any, config: Any) -> None:
    """Write ``_generated/intersphinx/<project>.inv`` for the projects above."""
    out_dir = Path(app.srcdir) / GENERATED / "intersphinx"
    out_dir.mkdir(parents=True, exist_ok=True)
    for project, modules in OFFLINE_MODULES.items():
        version = importlib.import_module(project).__version__
        header = (
            "# Sphinx inventory version 2\n"
            f"# Project: {project}\n# Version: {version}\n"
            "# The remainder of this file is compressed using zlib.\n"
        )
        body = "\n".join(_inventory_lines(modules)) + "\n"
        data = header.encode() + zlib.compress(body.encode())
        path = out_dir / f"{project}.inv"
        if not path.exists() or path.read_bytes() != data:
            path.write_bytes(data)


# --- class signatures hidden by LinearOperator.__new__ ------------------------------


def class_signature_from_init(
    app: Any, what: str, name: str, obj: Any, options: Any, signature: str | None, annotation: Any
) -> tuple[str, Any] | None:
    """Show ``__init__``'s signature for classes that inherit a ``(*args, **kwargs)`` ``__new__``.

    SciPy's ``LinearOperator.__new__`` takes ``*args, **kwargs``, and autodoc
    prefers it to the subclass's ``__init__`` (e.g. :class:`pydebut.DeButOperator`).
    """
    if what != "class" or signature != "(*args, **kwargs)" or "__init__" not in vars(obj):
        return None
    parameters = [
        parameter.replace(annotation=inspect.Parameter.empty)
        for parameter in list(inspect.signature(obj.__init__).parameters.values())[1:]
    ]
    return str(inspect.Signature(parameters)), annotation


def setup(app: Any) -> dict[str, Any]:
    app.connect("autodoc-process-signature", class_signature_from_init)
    app.connect("config-inited", write_offline_inventories)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
