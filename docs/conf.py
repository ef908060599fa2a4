"""Sphinx configuration for the pydebut documentation.

Build with ``sphinx-build -W -b html docs docs/_build/html`` (needs the
``docs`` extra: ``pip install -e ".[docs]"``). The tutorials in ``examples/``
run during the build (sphinx-gallery); the figures of the pages are drawn by
``pydebut.plotting`` at build time (Matplotlib's ``plot`` directive). MathJax
comes with the build (``sphinx-mathjax-offline`` copies it into ``_static``),
so the pages render their formulas without a network. Nothing generated is
committed.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE / "_ext"))
sys.path.insert(0, str(ROOT))  # document the working tree, not an older installed copy

os.environ.setdefault("MPLBACKEND", "Agg")

import pydebut  # noqa: E402

project = "pydebut"
author = "pydebut developers"
copyright = "pydebut developers"
version = release = pydebut.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "sphinx-mathjax-offline",  # serves MathJax from _static/mathjax, not from a CDN
    "numpydoc",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
    "matplotlib.sphinxext.plot_directive",
    "pydebut_docs",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = [
    "_build",
    "_generated",
    "tutorials/*.ipynb",
    "tutorials/*.py",
    "tutorials/*.zip",
    "tutorials/*.md5",
    "tutorials/*.json",
]
templates_path = ["_templates"]  # autosummary/class.rst: numpydoc lists the members

# --- API reference -------------------------------------------------------------------
autosummary_generate = True
autosummary_imported_members = False
autodoc_default_options = {"members": True, "inherited-members": False}
autodoc_typehints = "none"
numpydoc_show_class_members = True
numpydoc_show_inherited_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

# --- intersphinx ---------------------------------------------------------------------
# The real inventories are tried first; without network, Sphinx falls back (quietly)
# to inventories that docs/_ext/pydebut_docs.py writes from the installed packages.
intersphinx_mapping = {
    "numpy": ("https://numpy.org/doc/stable/", (None, "_generated/intersphinx/numpy.inv")),
    "scipy": (
        "https://docs.scipy.org/doc/scipy/",
        (None, "_generated/intersphinx/scipy.inv"),
    ),
}
intersphinx_timeout = 5

# --- MyST (benchmarks/README.md, chain JSON page) -----------------------------------------
myst_heading_anchors = 3
suppress_warnings = ["myst.header"]

# --- sphinx-gallery (the tutorials) -----------------------------------------------------------
sphinx_gallery_conf = {
    "examples_dirs": str(ROOT / "examples"),
    "gallery_dirs": "tutorials",
    "filename_pattern": r"/plot_",
    "within_subsection_order": "FileNameSortKey",
    "image_scrapers": ("matplotlib",),
    "download_all_examples": False,
    "show_memory": False,
    "remove_config_comments": True,
    "min_reported_time": 1,
    "write_computation_times": False,  # its pages load jQuery and DataTables from CDNs
    "reference_url": {"pydebut": None},
}

# --- figures in the pages (matplotlib's plot directive) ----------------------------------
plot_pre_code = """
import matplotlib.pyplot as plt
import numpy as np
from pydebut import *
from pydebut.plotting import plot_chain, plot_fit_history
"""
plot_include_source = True
plot_html_show_source_link = False
plot_html_show_formats = False
plot_formats = [("png", 90)]
plot_rcparams = {"savefig.bbox": "tight"}

# --- HTML ------------------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"pydebut {release}"
html_theme_options = {
    "navigation_with_keys": False,
    "header_links_before_dropdown": 8,
    "show_toc_level": 2,
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
    # the benchmarks' wide tables get the width of the "On this page" column
    "secondary_sidebar_items": {
        "**": ["page-toc", "edit-this-page", "sourcelink"],
        "benchmarks": [],
    },
}
html_static_path = ["_static"]
html_css_files = ["pydebut.css"]
# Pages without sub-pages get no (empty) left sidebar.
_SINGLE_PAGES = "index quickstart concepts structure fitting scaling benchmarks chain-json api"
html_sidebars = {page: [] for page in _SINGLE_PAGES.split()}
html_show_sourcelink = False
