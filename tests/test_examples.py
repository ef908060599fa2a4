"""Run every tutorial script in ``examples/`` (they are also the docs' tutorials).

Each script runs in a fresh interpreter with the non-interactive Agg backend, as
``python examples/plot_....py`` from the repository root.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SCRIPTS = sorted(EXAMPLES.glob("*.py"))

pytest.importorskip("matplotlib")


def test_examples_found():
    assert SCRIPTS, f"no example scripts in {EXAMPLES}"


@pytest.mark.parametrize("script", SCRIPTS, ids=[path.stem for path in SCRIPTS])
def test_example_runs(script, tmp_path):
    temporary = tmp_path / "tmp"  # where the script's temporary files go: it must empty it
    temporary.mkdir()
    env = {**os.environ, "MPLBACKEND": "Agg", "TMPDIR": str(temporary)}
    result = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, f"{script.name} failed:\n{result.stdout}\n{result.stderr}"
    assert result.stdout.strip(), f"{script.name} printed nothing"
    left = sorted(path.name for path in temporary.iterdir())
    assert not left, f"{script.name} left {left} in the temporary folder"
