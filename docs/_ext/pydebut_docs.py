"""Sphinx helpers for the pydebut docs.

- ``chain-figure``: a directive that runs a few lines of Python ending in a
  Matplotlib figure (usually from :func:`pydebut.plotting.plot_chain`), shows
  the code and inserts the picture. Figures are drawn at build time into
  ``docs/_generated/`` (never committed).
- :func:`detached_figure_scraper`: a sphinx-gallery scraper for figures that
  are not registered with pyplot, as ``plot_chain`` returns them.
- Offline intersphinx: on ``config-inited`` write small NumPy/SciPy inventories
  from the installed packages, used as fallbacks when the real ones cannot be
  downloaded, so that a build without network neither warns nor fails.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import zlib
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.util.docutils import SphinxDirective

GENERATED = "_generated"


# --- chain-figure ---------------------------------------------------------------


class ChainFigure(SphinxDirective):
    """Run the content (Python) and show the figure bound to ``fig``.

    Options: ``:alt:`` (alternative text), ``:width:`` (e.g. ``80%``),
    ``:hide-code:`` (flag). Optional argument: caption text.
    """

    has_content = True
    optional_arguments = 1
    final_argument_whitespace = True
    option_spec = {  # noqa: RUF012 - docutils API
        "alt": directives.unchanged,
        "width": directives.unchanged,
        "hide-code": directives.flag,
    }

    def run(self) -> list[nodes.Node]:
        import matplotlib

        matplotlib.use("Agg")
        code = "\n".join(self.content)
        namespace: dict[str, Any] = {}
        exec(
            "import numpy as np\nimport pydebut\nfrom pydebut import *\n"
            "from pydebut.plotting import plot_chain\n",
            namespace,
        )
        try:
            exec(compile(code, f"<{self.env.docname} chain-figure>", "exec"), namespace)
        except Exception as err:
            raise self.error(f"chain-figure code failed: {type(err).__name__}: {err}") from err
        figure = namespace.get("fig")
        if figure is None:
            raise self.error("chain-figure code must bind the figure to the name 'fig'")
        digest = hashlib.sha1(f"{self.env.docname}\n{code}".encode()).hexdigest()[:12]
        name = f"{self.env.docname.replace('/', '-')}-{digest}.png"
        out_dir = Path(self.env.srcdir) / GENERATED / "figures"
        out_dir.mkdir(parents=True, exist_ok=True)
        figure.savefig(out_dir / name, dpi=90)
        self.env.note_dependency(__file__)

        result: list[nodes.Node] = []
        if "hide-code" not in self.options:
            block = nodes.literal_block(code, code, language="python")
            result.append(block)
        uri = str(PurePosixPath("/") / GENERATED / "figures" / name)
        default_alt = self.arguments[0] if self.arguments else ""
        image = nodes.image(uri=uri, alt=self.options.get("alt", default_alt))
        if "width" in self.options:
            image["width"] = self.options["width"]
        figure_node = nodes.figure("", image)
        if self.arguments:
            caption, _ = self.state.inline_text(self.arguments[0], self.lineno)
            figure_node += nodes.caption(self.arguments[0], "", *caption)
        result.append(figure_node)
        return result


# --- sphinx-gallery scraper for figures not managed by pyplot ----------------------

_seen: dict[str, set[int]] = {}


def detached_figure_scraper(block: Any, block_vars: dict[str, Any], gallery_conf: Any) -> str:
    """Save every new ``matplotlib.figure.Figure`` bound in the example's globals.

    pyplot figures are left to sphinx-gallery's own ``matplotlib`` scraper.
    """
    from matplotlib.figure import Figure
    from sphinx_gallery.scrapers import figure_rst

    seen = _seen.setdefault(str(block_vars.get("src_file")), set())
    figures = [
        value
        for value in block_vars["example_globals"].values()
        if isinstance(value, Figure)
        and not hasattr(value, "number")  # pyplot numbers the figures it manages
        and id(value) not in seen
    ]
    paths = []
    for figure, path in zip(figures, block_vars["image_path_iterator"]):
        seen.add(id(figure))
        figure.savefig(path, dpi=90)
        paths.append(path)
    return figure_rst(paths, gallery_conf["src_dir"])


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


# --- autosummary: keep inline literals whole in summaries --------------------------


def _patch_autosummary_summaries() -> None:
    """Do not cut an autosummary summary inside an inline literal.

    ``extract_summary`` takes the text up to the first ``". "``, so the summary
    of a docstring that starts with, e.g., ````F_1 F_2 ... F_L```` ends inside
    the literal and docutils warns. When the cut leaves an odd number of
    ````` `` ````` marks, use the whole first paragraph instead.
    """
    from sphinx.ext import autosummary

    original = autosummary.extract_summary
    if getattr(original, "_pydebut_patched", False):
        return

    def extract_summary(doc: list[str], settings: Any) -> str:
        summary = original(doc, settings)
        if summary.count("``") % 2 == 0:
            return summary
        paragraph = []
        for line in doc:
            if not line.strip():
                if paragraph:
                    break
                continue
            paragraph.append(line.strip())
        return " ".join(paragraph)

    extract_summary._pydebut_patched = True  # type: ignore[attr-defined]
    autosummary.extract_summary = extract_summary


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
    _patch_autosummary_summaries()
    app.connect("autodoc-process-signature", class_signature_from_init)
    app.add_directive("chain-figure", ChainFigure)
    app.connect("config-inited", write_offline_inventories)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
