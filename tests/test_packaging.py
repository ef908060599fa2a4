"""Import-time behaviour: a clear message when Numba is missing."""

import subprocess
import sys
import textwrap


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


def test_ci_runs_the_readme_test_command_verbatim():
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    readme = (root / "README.md").read_text()
    command = next(line for line in readme.splitlines() if "python -m pytest" in line)
    assert command in (root / ".ci" / "run").read_text()
    assert "pydebut demo" in readme
