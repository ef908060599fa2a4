"""Packaging and import-time behaviour: the typing marker, a clear message when Numba is missing."""

import subprocess
import sys
import textwrap

import pytest


def test_missing_numba_gives_an_actionable_import_error():
    code = textwrap.dedent(
        """
        import sys
        sys.modules["numba"] = None  # makes 'import numba' raise ImportError
        try:
            import pydebut
        except ImportError as err:
            print(err)
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "pydebut needs numba for its kernels; install it with 'pip install numba'" in (
        result.stdout
    ), result.stderr


def test_ci_runs_both_readme_commands_verbatim_in_order_then_the_cli_elsewhere():
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    readme = (root / "README.md").read_text().splitlines()
    ci = (root / ".ci" / "run").read_text()
    demo = next(line for line in readme if line.endswith("pydebut demo"))
    tests = next(line for line in readme if "python -m pytest" in line)
    assert demo.startswith("python3 -m venv .venv && ") and "pip install . " in demo
    assert tests.startswith("python3 -m venv .venv && ") and "pip install -e" in tests
    assert demo in ci.splitlines() and tests in ci.splitlines()
    help_elsewhere = '(cd "$(mktemp -d)" && pydebut --help'
    assert ci.index(demo) < ci.index(tests) < ci.index(help_elsewhere)
    # the README commands must run with the user's cache location, not a NUMBA_CACHE_DIR
    assert "unset NUMBA_CACHE_DIR" in ci[: ci.index(demo)]


def test_the_wheel_ships_a_py_typed_marker_so_type_checkers_read_the_hints():
    # PEP 561: without pydebut/py.typed in the wheel, mypy ignored every annotation of an
    # installed pydebut ("module is installed, but missing library stubs or py.typed marker")
    from pathlib import Path

    tomllib = pytest.importorskip("tomllib")
    root = Path(__file__).resolve().parent.parent
    config = tomllib.loads((root / "pyproject.toml").read_text())
    assert (root / "pydebut" / "py.typed").is_file()
    shipped = set(config["tool"]["setuptools"]["package-data"]["pydebut"])
    assert {"py.typed", "__init__.pyi"} <= shipped  # the stub lists the public names
    assert "Typing :: Typed" in config["project"]["classifiers"]


def test_every_public_name_is_imported_on_first_use_from_the_stub():
    import ast
    from pathlib import Path

    import pydebut

    stub = Path(pydebut.__file__).with_suffix(".pyi")
    imported = {
        alias.name
        for statement in ast.parse(stub.read_text()).body
        if isinstance(statement, ast.ImportFrom)
        for alias in statement.names
    }
    assert imported == set(pydebut.__all__) - {"__version__"}
    assert set(pydebut.__all__) <= set(dir(pydebut))
    for name in pydebut.__all__:
        assert getattr(pydebut, name) is not None
    from pydebut.operator import DeButOperator

    assert pydebut.DeButOperator is DeButOperator
    assert pydebut.special is sys.modules["pydebut.special"]
    with pytest.raises(AttributeError, match="module 'pydebut' has no attribute 'Operator'"):
        pydebut.Operator  # noqa: B018
