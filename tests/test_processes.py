"""Operators work after fork, under spawn, and from several threads (``process_scenarios.py``).

Each scenario runs in its own interpreter with a timeout: with Numba's GNU
OpenMP layer a forked child is killed and a fork ``Pool`` hangs, which here
fails the test instead of blocking the suite.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("process_scenarios.py")
FORK = pytest.mark.skipif(sys.platform == "win32", reason="no fork on Windows")


@pytest.mark.parametrize(
    "scenario",
    [
        pytest.param("fork", marks=FORK),
        pytest.param("fork-while-busy", marks=FORK),
        pytest.param("fork-while-compiling", marks=FORK),
        pytest.param("pool-fork", marks=FORK),
        "pool-spawn",
        "threads",
        "own-parallel-code",
    ],
)
def test_batches_apply_in_every_process_and_thread(scenario):
    # two Numba threads, so that the parallel kernels run even on one core (or under taskset)
    environment = os.environ | {"NUMBA_NUM_THREADS": "2"}
    try:
        result = subprocess.run(
            [sys.executable, str(SCRIPT), scenario],
            capture_output=True,
            text=True,
            timeout=240,
            env=environment,
        )
    except subprocess.TimeoutExpired as err:
        pytest.fail(f"{scenario}: hung for {err.timeout} s\n{err.stderr}")
    assert result.returncode == 0, f"{scenario}:\n{result.stdout}\n{result.stderr}"
    assert result.stdout.split() == [scenario, "ok"]
