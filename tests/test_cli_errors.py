"""No traceback reaches the user: hostile input gives one line and exit status 2.

Exit status 1 means "valid but not dense" for ``pydebut check``, so no error may
use it; an internal bug gives exit status 3 and a line saying how to see the
traceback.
"""

from __future__ import annotations

import errno
import io
import json
import os
import signal
import subprocess
import sys
import threading
import zipfile
import zlib

import numpy as np
import pytest

from pydebut import cli
from pydebut.cli import EXIT_BUG, EXIT_USAGE, main
from pydebut.commands import check
from pydebut.special import butterfly_chain

CHAIN = ["--sup", "4 4 4 4", "--sub", "2 2 2 2 2 1"]


@pytest.fixture
def files(tmp_path, monkeypatch):
    """Hostile files in the working directory, by name."""
    monkeypatch.chdir(tmp_path)
    np.save("ok.npy", np.random.default_rng(0).standard_normal((4, 4)))
    (tmp_path / "deep.json").write_text("[" * 100_000)
    (tmp_path / "binary.json").write_bytes(bytes(range(256)))
    (tmp_path / "text.npy").write_text("hello")
    (tmp_path / "empty.npy").write_bytes(b"")
    (tmp_path / "truncated.npy").write_bytes((tmp_path / "ok.npy").read_bytes()[:100])
    np.savez("archive.npz", a=np.ones((4, 4)))
    np.save("objects.npy", np.array([{}, 1], dtype=object), allow_pickle=True)
    np.save("cube.npy", np.ones((2, 2, 2)))
    np.save("nan.npy", np.full((4, 4), np.nan))
    np.save("strings.npy", np.full((4, 4), "a"))
    os.symlink(tmp_path / "missing" / "x.npz", "dangling.npz")
    os.makedirs("figures/chain_supports.png")  # a folder where demo --plot writes a figure
    too_many = 10_001  # factors: one more than pydebut.io.MAX_FACTORS
    (tmp_path / "long.json").write_text(json.dumps({"r_shapes": [[1, 1, 1, 1, 1]] * too_many}))
    (tmp_path / "long_flat.json").write_text(
        json.dumps({"sup": [1, 1] * too_many, "sub": [1, 1, 1] * too_many})
    )
    (tmp_path / "long_strings.json").write_text(  # strings as --sup/--sub take them
        json.dumps({"sup": " ".join(["1 1"] * too_many), "sub": ", ".join(["1 1 1"] * too_many)})
    )
    (tmp_path / "twice.json").write_text(
        '{"sup": [[4, 4], [4, 4]], "sub": [[2, 2, 2], [2, 2, 1]], "sup": [[8, 8], [8, 8]]}'
    )
    return tmp_path


HOSTILE = {
    "deep chain file": (["check", "--chain", "deep.json"], "nested too deeply"),
    "key given twice": (["check", "--chain", "twice.json"], "gives 'sup' twice in one object"),
    "binary chain file": (["check", "--chain", "binary.json"], "binary.json is not text"),
    # built a million factors (16 s, 550 MB) before the check's report took 2 GB
    "chain file of too many factors": (
        ["check", "--chain", "long.json"],
        "long.json gives 10,001 factors in 'r_shapes': a chain has at most MAX_FACTORS = 10,000",
    ),
    "flat chain file of too many factors": (
        ["check", "--chain", "long_flat.json"],
        "gives 10,001 factors in 'sup': a chain has at most MAX_FACTORS = 10,000",
    ),
    # strings were not counted: 300,000 factors in a 3 MB file took 35 s and 770 MB
    "chain file of too many factors as strings": (
        ["check", "--chain", "long_strings.json"],
        "gives 10,001 factors in 'sup': a chain has at most MAX_FACTORS = 10,000",
    ),
    "directory as chain file": (["check", "--chain", "."], "cannot read chain file"),
    # deep enough for Python 3.13's json, which decodes 5,000 levels and then finds no value
    "deep --r-shapes": (["check", "--r-shapes", "[" * 100_000], "nested too deeply"),
    "deep --sup": (["check", "--sup", "[" * 100_000, "--sub", "1"], "nested too deeply"),
    "float overflow in --sup": (["check", "--sup", "1e400 4", "--sub", "4 4 1"], "integers"),
    "huge m": (["chains", str(10**30), "8"], "m must be below"),
    "huge factor range": (["chains", "8", "8", "--factors", f"1-{10**26}"], ""),
    "plot into a missing directory": (
        ["check", *CHAIN, "--plot", "no/such/dir/x.png"],
        "cannot write the plot to no/such/dir/x.png: folder",
    ),
    "plot into a folder": (["check", *CHAIN, "--plot", "."], "the plot to .: it is a folder"),
    "plot whose file, with the suffix savefig adds, is a folder": (
        ["check", *CHAIN, "--plot", "figures/chain_supports"],
        "cannot write the plot to figures/chain_supports.png: it is a folder",
    ),
    "factors into a folder": (
        ["fit", "ok.npy", *CHAIN, "-o", "."],
        "cannot write the factors to .: it is a folder",
    ),
    "factors to no name": (["fit", "ok.npy", *CHAIN, "-o", ""], "to an empty file name"),
    "plot format unknown": (["check", *CHAIN, "--plot", "x.unknownext"], "not supported"),
    "plot to no name": (["check", *CHAIN, "--plot", ""], "the plot to an empty file name"),
    "missing target": (["fit", "missing.npy", *CHAIN, "-o", "x.npz"], "missing.npy"),
    "text target": (["fit", "text.npy", *CHAIN, "-o", "x.npz"], ""),
    "empty target": (["fit", "empty.npy", *CHAIN, "-o", "x.npz"], ""),
    "truncated target": (["fit", "truncated.npy", *CHAIN, "-o", "x.npz"], ""),
    "npz target": (["fit", "archive.npz", *CHAIN, "-o", "x.npz"], ""),
    "object target": (["fit", "objects.npy", *CHAIN, "-o", "x.npz"], ""),
    "3-D target": (["fit", "cube.npy", *CHAIN, "-o", "x.npz"], "2-D"),
    "NaN target": (["fit", "nan.npy", *CHAIN, "-o", "x.npz"], "non-finite"),
    "string target": (["fit", "strings.npy", *CHAIN, "-o", "x.npz"], "numbers"),
    "directory target": (["fit", ".", *CHAIN, "-o", "x.npz"], "the target file '.' is a folder"),
    "output into a missing directory": (
        ["fit", "ok.npy", *CHAIN, "--no-progress", "-o", "no/such/dir/x.npz"],
        "no/such/dir",
    ),
    "output is a directory": (["fit", "ok.npy", *CHAIN, "--no-progress", "-o", "."], ""),
    "NaN tolerance": (["fit", "ok.npy", *CHAIN, "--tol", "nan", "-o", "x.npz"], "tol"),
    "negative seed": (
        [
            "fit",
            "ok.npy",
            *CHAIN,
            "--no-progress",
            "--init",
            "random",
            "--seed",
            "-1",
            "-o",
            "x.npz",
        ],
        "--seed must be a non-negative integer, got -1",
    ),
    "negative demo seed": (["demo", "--seed", "-1"], "--seed must be a non-negative integer"),
    "demo plots into a file": (["demo", "--plot", "ok.npy"], "--plot ok.npy: a file of that name"),
    "demo plots to no name": (["demo", "--plot", ""], "the figures to an empty folder name"),
    "demo figure is a folder": (
        ["demo", "--plot", "figures"],
        "cannot write the figures to figures/chain_supports.png: it is a folder",
    ),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_input_is_one_line_and_status_2(capsys, files, case):
    argv, words = HOSTILE[case]
    status = main(argv)
    err = capsys.readouterr().err
    assert status == EXIT_USAGE, err
    assert err.count("\n") == 1 and err.startswith("pydebut"), err
    assert words in err
    assert "Traceback" not in err and "bug" not in err


@pytest.mark.parametrize(
    ("output", "words"),
    [
        ("new/", "cannot write the factors to new/: it is a folder"),
        ("a" * 300, "File name too long"),
        ("dangling", "cannot write the factors to dangling.npz: No such file"),
    ],
)
def test_an_output_that_cannot_be_written_is_refused_before_the_fit(capsys, files, output, words):
    status = main(["fit", "ok.npy", *CHAIN, "--no-progress", "-o", output])
    out, err = capsys.readouterr()
    assert status == EXIT_USAGE and words in err, err
    assert out == "", "the fit ran before the output was checked"
    assert not any(name.startswith(("new", "aaa")) for name in os.listdir(files))


def run_cli(argv, cwd=None, variables=(), **options):
    """Run ``pydebut argv`` in a subprocess, killed after 300 s: a regression cannot hang
    (a fit on a cold Numba cache compiles the kernels of its true error first).

    Its standard output and error are captured, unless ``options`` give them elsewhere;
    ``variables`` are environment variables set for it. Its output is block-buffered, as a
    shell's user has it, whatever this process's ``PYTHONUNBUFFERED``: unbuffered, a write
    fails before the flushes that catch a full disk.
    """
    environment = {**os.environ, cli.DEBUG_VARIABLE: "", **dict(variables)}
    environment.pop("PYTHONUNBUFFERED", None)
    return subprocess.run(
        [sys.executable, "-m", "pydebut", *argv],
        cwd=cwd,
        text=True,
        timeout=300,
        env=environment,
        **{"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, **options},
    )


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes on this system")
@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (["check", "--chain", "fifo"], "chain file fifo is empty (or a named pipe that nothing"),
        (["fit", "ok.npy", *CHAIN, "-o", "f.npz"], "cannot write the factors to f.npz: it is not"),
        (["check", *CHAIN, "--plot", "fifo.png"], "cannot write the plot to fifo.png: it is not"),
    ],
)
def test_a_named_pipe_nothing_reads_or_writes_is_refused_without_waiting(files, argv, line):
    # open() waited forever for the pipe's other end: --chain for a writer, -o for a reader
    if "--plot" in argv:
        pytest.importorskip("matplotlib")
    os.mkfifo(files / argv[-1])
    result = run_cli(argv, files)
    assert result.returncode == EXIT_USAGE and result.stdout == ""
    assert result.stderr.startswith(f"pydebut: error: {line}") and result.stderr.count("\n") == 1


@pytest.mark.skipif(not os.path.isdir("/dev/fd"), reason="needs /dev/fd")
def test_a_chain_file_from_a_pipe_with_a_writer_is_read_whole(files):
    # as --chain <(pydebut chains ... --format json): the writer may be slow to start
    read, write = os.pipe()
    try:
        writer = threading.Timer(0.5, _write_and_close, (write, CHAIN_JSON))
        writer.start()
        result = run_cli(["check", "--chain", f"/dev/fd/{read}"], files, pass_fds=(read,))
        writer.join()
    finally:
        os.close(read)
    assert result.returncode == 0, result.stderr
    assert "shape 4 x 4, 2 factors" in result.stdout


CHAIN_JSON = b'{"sup": [[4, 4], [4, 4]], "sub": [[2, 2, 2], [2, 2, 1]]}'


def _write_and_close(fd, data):
    os.write(fd, data)
    os.close(fd)


def test_a_plot_that_cannot_be_written_is_refused_before_the_report(capsys, files, monkeypatch):
    pytest.importorskip("matplotlib")
    monkeypatch.setattr(check, "build_report", raising(AssertionError("the report was built")))
    status = main(["check", *CHAIN, "--plot", "p.xyz"])
    err = capsys.readouterr().err
    assert status == EXIT_USAGE, err
    assert err.startswith("pydebut: error: cannot write the plot to p.xyz: format 'xyz' is not ")
    assert "png" in err and err.count("\n") == 1
    assert not os.path.exists("p.xyz")


@pytest.mark.parametrize(
    ("chain", "limit"),
    [(butterfly_chain(2**30), "MAX_REACH_WORK"), (butterfly_chain(2**65), "MAX_PLOT_FACTORS")],
    ids=["work", "factors"],
)
def test_a_plot_beyond_its_limits_is_refused_before_the_report_naming_the_plot(
    capsys, tmp_path, monkeypatch, chain, limit
):
    # Before: butterfly_chain(2**30) printed the table (density: dense) only without --plot;
    # with it, nothing on stdout and the density test's "so this test cannot decide it".
    pytest.importorskip("matplotlib")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "chain.json").write_text(json.dumps(chain.to_json()))
    monkeypatch.setattr(check, "build_report", raising(AssertionError("the report was built")))
    status = main(["check", "--chain", "chain.json", "--plot", "p.png"])
    out, err = capsys.readouterr()
    assert status == EXIT_USAGE and not out
    assert err.startswith("pydebut: error: --plot cannot draw this chain: ")
    assert limit in err and err.endswith(
        "without --plot, check gives its table and density verdict\n"
    )
    assert "cannot decide" not in err and "Chain(" not in err  # no Python for a shell user
    assert err.count("\n") == 1 and not os.path.exists("p.png")


def raising(error: BaseException):
    def run(args):
        raise error

    return run


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (["check", *CHAIN, "--bogus"], "pydebut check: error: unrecognized arguments: --bogus"),
        (["chains", "4", "4", "--x", "1"], "pydebut chains: error: unrecognized arguments: --x 1"),
        (["--bogus"], "pydebut: error: unrecognized arguments: --bogus (see 'pydebut --help')"),
    ],
)
def test_unknown_options_name_the_command_they_were_given_to(capsys, argv, line):
    assert main(argv) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith(line) and err.count("\n") == 1
    command = argv[0] if argv[0] != "--bogus" else None
    if command:
        assert f"(see 'pydebut {command} --help')" in err


@pytest.mark.parametrize(
    ("error", "words"),
    [
        (RecursionError("maximum recursion depth exceeded"), "nested too deeply"),
        (MemoryError(), "not enough memory for this request; ask for less"),
        (MemoryError("Unable to allocate 8.00 TiB"), "(Unable to allocate 8.00 TiB)"),
        (OverflowError("Python int too large"), "Python int too large"),
        (EOFError("No data left in file"), "No data left in file"),
        (zlib.error("Error -3 while decompressing data"), "Error -3"),
        (zipfile.BadZipFile("File is not a zip file"), "not a zip file"),
        (ValueError("first line\nsecond line"), "first line second line"),
        (ImportError("NUMBA_DISABLE_JIT is set"), "NUMBA_DISABLE_JIT is set"),
        (EOFError(), "pydebut: error: EOFError\n"),  # no message: named by its class
    ],
)
def test_input_error_classes_are_one_line_and_status_2(capsys, monkeypatch, error, words):
    monkeypatch.setattr(check, "run", raising(error))
    status = main(["check", *CHAIN])
    err = capsys.readouterr().err
    assert status == EXIT_USAGE
    assert err.count("\n") == 1 and err.startswith("pydebut: error:") and words in err


@pytest.mark.parametrize("error", [KeyError("x"), IndexError("list index"), AssertionError()])
def test_internal_bugs_say_so_and_how_to_see_the_traceback(capsys, monkeypatch, error):
    monkeypatch.delenv(cli.DEBUG_VARIABLE, raising=False)
    monkeypatch.setattr(check, "run", raising(error))
    status = main(["check", *CHAIN])
    err = capsys.readouterr().err
    assert status == EXIT_BUG
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"internal error ({type(error).__name__}" in err and "bug in pydebut" in err
    assert "--debug" in err and f"{cli.DEBUG_VARIABLE}=1" in err


def test_debug_shows_the_traceback_with_the_bugs_status(capsys, monkeypatch):
    """Status 3, not the 1 of an uncaught exception, which is check's 'not dense'."""
    monkeypatch.setattr(check, "run", raising(KeyError("x")))
    assert main(["--debug", "check", *CHAIN]) == EXIT_BUG
    assert capsys.readouterr().err.startswith("Traceback")
    monkeypatch.setenv(cli.DEBUG_VARIABLE, "1")
    assert main(["check", *CHAIN]) == EXIT_BUG
    err = capsys.readouterr().err
    assert err.startswith("Traceback") and "KeyError: 'x'" in err
    monkeypatch.setenv(cli.DEBUG_VARIABLE, "0")
    assert main(["check", *CHAIN]) == EXIT_BUG
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["check", "--sup", "4 4", "--sub", "2 2"], "not a whole number of (r, s, t) triples"),
        (["chains", "0", "5"], "m must be positive, got 0"),
        (["check", *CHAIN, "--format", "xml"], "invalid choice: 'xml'"),
    ],
)
def test_debug_keeps_user_errors_one_line_and_status_2(capsys, monkeypatch, argv, words):
    """Status 1 is check's 'not dense': a traceback's status would read as a verdict."""
    monkeypatch.delenv(cli.DEBUG_VARIABLE, raising=False)
    assert main(["--debug", *argv]) == EXIT_USAGE
    monkeypatch.setenv(cli.DEBUG_VARIABLE, "1")
    assert main(argv) == EXIT_USAGE
    for err in capsys.readouterr().err.splitlines():
        assert err.startswith("pydebut") and words in err


def test_interrupt_is_one_line_and_status_130(capsys, monkeypatch):
    monkeypatch.setattr(check, "run", raising(KeyboardInterrupt()))
    assert main(["check", *CHAIN]) == 130
    assert capsys.readouterr().err == "pydebut: interrupted\n"


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="no SIGTERM handling to test")
@pytest.mark.parametrize("name", ["SIGTERM", "SIGHUP"])
def test_a_fit_ended_by_a_signal_while_saving_leaves_the_old_file_and_no_other(tmp_path, name):
    # killed by timeout's SIGTERM while saving, it left .NAME.HEX.part as large as the output
    target = tmp_path / "target.npy"
    np.save(target, np.random.default_rng(0).standard_normal((8, 8)))
    output = tmp_path / "out.npz"
    output.write_bytes(b"the last good file")
    script = f"""
import os, signal, sys
from pydebut import cli
def ended_while_saving(descriptor):
    os.kill(os.getpid(), signal.{name})
os.fsync = ended_while_saving
sys.exit(cli.main(sys.argv[1:]))
"""
    argv = ["fit", str(target), "--sup", "8 8 8 8", "--sub", "2 2 4 2 2 2", "--no-progress"]
    result = subprocess.run(
        [sys.executable, "-c", script, *argv, "-o", str(output)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, cli.DEBUG_VARIABLE: ""},
    )
    assert result.returncode == 128 + getattr(signal, name), result.stderr
    assert result.stderr == f"pydebut: ended by {name}\n"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out.npz", "target.npy"]
    assert output.read_bytes() == b"the last good file"


def test_demo_plot_without_matplotlib_is_the_check_message(capsys, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    messages = []
    for argv in (["demo", "--plot", str(tmp_path)], ["check", *CHAIN, "--plot", "x.png"]):
        assert main(argv) == EXIT_USAGE
        messages.append(capsys.readouterr().err)
    assert (
        messages[0]
        == messages[1]
        == ("pydebut: error: --plot needs matplotlib: pip install pydebut[plot]\n")
    )


def test_no_traceback_from_the_real_entry_point(tmp_path):
    """The same as above, through ``python -m pydebut`` with the interpreter's own stack."""
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000)
    result = subprocess.run(
        [sys.executable, "-m", "pydebut", "check", "--chain", str(deep)],
        capture_output=True,
        text=True,
        env={**os.environ, cli.DEBUG_VARIABLE: ""},
    )
    assert result.returncode == EXIT_USAGE
    assert (
        result.stderr == f"pydebut: error: chain file {deep} is nested too deeply to be a chain\n"
    )


@pytest.mark.parametrize("fmt", ["table", "json", "csv"])
def test_a_closed_stdout_is_one_line_and_status_2(capsys, monkeypatch, fmt):
    monkeypatch.setattr(sys, "stdout", None)  # what Python sets for a closed stdout (``>&-``)
    status = main(["chains", "4", "4", "--format", fmt])
    err = capsys.readouterr().err
    assert status == EXIT_USAGE
    assert err == "pydebut: error: standard output is closed: redirect it to a file or /dev/null\n"


def test_help_with_stdout_closed_goes_to_stderr(capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdout", None)  # ``pydebut --help >&-``
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    assert capsys.readouterr().err.startswith("usage: pydebut")


def _no_space_left(*args):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


class _FullDisk(io.StringIO):
    """A standard output on a full disk: every write fails."""

    write = _no_space_left


class _BufferedFullDisk(io.StringIO):
    """A block-buffered standard output on a full disk: writes are kept, the flush fails."""

    flush = _no_space_left


@pytest.mark.parametrize("full_disk", [_FullDisk, _BufferedFullDisk])
@pytest.mark.parametrize(
    "argv",
    [
        ["chains", "4", "4", "--format", "table"],
        ["chains", "4", "4", "--format", "json"],
        ["chains", "4", "4", "--format", "csv"],
        ["check", "--sup", "4 4 4 4", "--sub", "2 2 2 2 2 1"],
        ["--help"],
        ["--version"],
        ["chains", "--help"],
    ],
)
def test_an_stdout_that_cannot_be_written_is_named(capsys, monkeypatch, full_disk, argv):
    # reported as a bare "[Errno 28] No space left on device", as if an input had failed;
    # buffered, it comes from the flush after the output (else at exit, after status 0)
    monkeypatch.setattr(sys, "stdout", full_disk())
    status = main(argv)
    assert status == EXIT_USAGE
    assert capsys.readouterr().err == (
        "pydebut: error: cannot write to standard output: No space left on device\n"
    )


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize(
    "argv", [["chains", "64", "64"], ["--help"], ["--version"], ["chains", "--help"]]
)
def test_an_stdout_on_a_full_disk_is_named_from_the_real_entry_point(tmp_path, argv):
    # the table sits in the buffer until the end: the error comes from the last flush;
    # argparse dropped the error of --help and --version, with status 0
    with open("/dev/full", "w") as full:
        result = run_cli(argv, stdout=full)
    assert result.returncode == EXIT_USAGE
    assert result.stderr == (
        "pydebut: error: cannot write to standard output: No space left on device\n"
    )


@pytest.mark.parametrize("argv", [["chains", "64", "64"], ["--help"], ["--version"]])
def test_a_reader_gone_stops_quietly_with_status_141(argv):
    # as ``pydebut ... | head`` once head has exited; --help's error was dropped (status 0)
    read, write = os.pipe()
    os.close(read)
    try:
        result = run_cli(argv, stdout=write)
    finally:
        os.close(write)
    assert (result.returncode, result.stderr) == (141, "")


def test_a_closed_stderr_drops_messages_and_progress(capsys, monkeypatch, files):
    pytest.importorskip("tqdm")
    monkeypatch.setattr(sys, "stderr", None)  # ``2>&-``
    status = main(["chains", "4", "4", "--format", "json", "--limit", "1"])
    assert status == 0
    json.loads(capsys.readouterr().out)  # the note on rows left out went nowhere, not here
    status = main(["fit", "ok.npy", *CHAIN, "--sweeps", "1", "-o", "x.npz"])  # a progress bar
    assert status == 0 and (files / "x.npz").exists()
    capsys.readouterr()
    assert main(["check", "--sup", "4 4"]) == EXIT_USAGE
    assert capsys.readouterr().out == ""  # the one-line error went nowhere, not here
