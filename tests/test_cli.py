"""The command-line skeleton and ``pydebut demo``."""

import argparse
import inspect
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

import pydebut
from pydebut.cli import build_parser, load_chain_json, main


def run(capsys, *argv):
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_demo_chooses_fits_applies_and_solves(capsys, tmp_path):
    status, out, err = run(capsys, "demo", "--seed", "1", "--plot", str(tmp_path / "figures"))
    assert status == 0, err
    for heading in (
        "1. choosing a chain",
        "2. fitting the chain",
        "3. applying",
        "4. ridge",
        "5. letting approximate",
    ):
        assert f"== {heading}" in out
    assert "the paper's 9-factor chain (25,600 params, 40.96x) is among them" in out
    assert "density check: dense" in out
    lines = out.splitlines()
    hierarchical = float(out.split("\nfit_hierarchical")[1].split()[0])
    als = float(out.split("\nfit_als, 3 sweeps from it")[1].split()[0])
    assert als <= hierarchical < 0.0505
    assert "timings steady" in out or "the machine is busy" in out
    differences = [line for line in lines if line.strip().startswith(("1 ", "64 "))]
    assert len(differences) == 2
    assert all(float(line.split()[1]) < 1e-12 for line in differences)
    solution = next(line for line in lines if "dense normal-equations" in line)
    assert float(solution.rsplit(" ", 1)[1]) < 1e-6
    chosen = next(line for line in lines if line.startswith("chosen:"))
    svd = next(line for line in lines if line.startswith("truncated SVD, rank"))
    assert float(chosen.split()[-1]) <= float(svd.split()[-1])
    assert "--sup '[[64, " in out
    for name in ("chain_supports.png", "fit_errors.png"):
        assert (tmp_path / "figures" / name).stat().st_size > 10_000


def test_demo_load_note_calls_a_load_reaching_the_cores_busy():
    from pydebut.commands.demo import load_note

    assert load_note([0.0], 2.0, 2).startswith("the machine is busy")
    assert load_note([0.0], 1.9, 2).startswith("timings steady")


def test_demo_speed_up_is_dense_time_over_debut_time(capsys, monkeypatch):
    from pydebut.commands import demo

    op = pydebut.DeButOperator.random([(4, 4, 2, 2, 2), (4, 4, 2, 2, 1)], rng=0)
    times = iter([[1e-3] * 7, [4e-3] * 7] * 2)  # DeBut's, then dense @'s, for each batch
    monkeypatch.setattr(demo, "repeat_times", lambda function: next(times))
    demo.compare_with_dense(op, op.toarray(), np.random.default_rng(0))
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert [(row[0], row[-1]) for row in rows if row[:1] in (["1"], ["64"])] == [
        ("1", "4.00x"),
        ("64", "4.00x"),
    ]


def test_demo_ridge_difference_is_relative(capsys, monkeypatch):
    # an lsqr answer of zero is 100% off, whatever the size of the solution
    from pydebut.commands import demo

    op = pydebut.DeButOperator.random([(4, 4, 2, 2, 2), (4, 4, 2, 2, 1)], rng=0)
    monkeypatch.setattr(demo.spla, "lsqr", lambda *args, **kwargs: (np.zeros(4), 0, 0, 0.0))
    demo.solve_ridge(op, op.toarray(), np.random.default_rng(0))
    out = capsys.readouterr().out
    assert out.rstrip().endswith("relative difference from the dense normal-equations solution: 1")


def test_demo_plot_makes_the_folders_it_names(capsys, monkeypatch, tmp_path):
    pytest.importorskip("matplotlib")
    from pydebut.commands import demo

    # the steps are stubbed: only --plot's folder matters here
    for step in ("choose_chain", "compare_with_dense", "solve_ridge", "approximate_kernel"):
        monkeypatch.setattr(demo, step, lambda *args: None)
    monkeypatch.setattr(demo, "noisy_target", lambda *args: None)
    fitted = type("Fitted", (), {"operator": None})()
    monkeypatch.setattr(demo, "fit_target", lambda *args: (fitted, fitted))
    monkeypatch.setattr(demo, "save_figures", lambda folder, *args: print(f"to {folder}"))
    folder = tmp_path / "out" / "figures"
    status, out, err = run(capsys, "demo", "--plot", str(folder))
    assert status == 0, err
    assert folder.is_dir() and out == f"to {folder}\n"


@pytest.mark.parametrize(
    ("argv", "start", "message"),
    [
        (["bogus"], "pydebut: error:", "invalid choice: 'bogus'"),
        (["demo", "--seed", "x"], "pydebut demo: error:", "invalid integer: 'x'"),
        (["fit", "--sweeps"], "pydebut fit: error:", "expected one argument"),
    ],
)
def test_usage_errors_are_one_line_with_status_2(capsys, argv, start, message):
    status, _, err = run(capsys, *argv)
    assert status == 2
    assert err.count("\n") == 1 and err.startswith(start) and message in err
    assert "Traceback" not in err and err.count("pydebut") == 2  # prog, and the --help hint


def test_a_repeated_list_option_is_refused_not_cut_to_its_last_value(capsys):
    """``--sup 64 72 ... --sup 72 144`` reads as one list; argparse kept only the last."""
    argv = ["check", "--sup", "64", "72", "--sub", "8", "9", "8", "--sup", "72", "144"]
    status, out, err = run(capsys, *argv, "--sub", "2", "4", "4")
    assert status == 2 and out == ""
    assert err == (
        "pydebut check: error: argument --sup: given twice; give it once (a repeat would "
        "replace its value, not add to it) (see 'pydebut check --help')\n"
    )


def _valued_options():
    """Every option of every command that takes a value: (command, option, value)."""
    commands = next(
        action for action in build_parser()._actions
        if isinstance(action, argparse._SubParsersAction)
    ).choices  # fmt: skip
    return [
        (command, action.option_strings[-1], str(action.choices[0]) if action.choices else "1")
        for command, parser in commands.items()
        for action in parser._actions
        if action.option_strings and action.nargs != 0
    ]


@pytest.mark.parametrize(("command", "option", "value"), _valued_options())
def test_every_option_given_twice_is_refused_naming_it(
    capsys, tmp_path, monkeypatch, command, option, value
):
    monkeypatch.chdir(tmp_path)  # what a command given these values writes lands here
    status, out, err = run(capsys, command, option, value, option, value)
    assert status == 2 and out == ""
    assert err.startswith(f"pydebut {command}: error: argument ") and err.count("\n") == 1
    assert f"{option}: given twice" in err


@pytest.mark.parametrize(
    ("argv", "abbreviation"),
    [
        (["chains", "64", "64", "--lim", "3"], "--lim 3"),
        (["check", "--sup", "4 4 4 4", "--sub", "2 2 2 2 2 1", "--form", "json"], "--form json"),
        (
            ["fit", "t.npy", "--sup", "4 4 4 4", "--sub", "2 2 2 2 2 1", "--sw", "1", "-o", "o"],
            "--sw 1",
        ),
        (["demo", "--se", "1"], "--se 1"),
    ],
)
def test_options_are_taken_only_as_spelled(capsys, argv, abbreviation):
    # argparse took any unambiguous prefix: "--sw 1" was --sweeps, until an option
    # added with the same start would have made the scripts that used it fail
    status, out, err = run(capsys, *argv)
    assert status == 2 and out == ""
    assert f"unrecognized arguments: {abbreviation}" in err


def test_no_command_prints_the_usage_once(capsys):
    status, out, err = run(capsys)
    assert status == 2 and out == ""
    assert err.startswith("usage: pydebut") and err.count("usage:") == 1
    assert "error" not in err.splitlines()[0]
    for command in ("chains", "check", "demo", "fit"):
        assert f"\n    {command} " in err
    assert "exit status" in err


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"pydebut {pydebut.__version__}"


def test_chain_json_files(tmp_path):
    path = tmp_path / "chain.json"
    path.write_text(json.dumps({"sup": [[4, 4], [4, 4]], "sub": [[2, 2, 2], [2, 2, 1]]}))
    assert load_chain_json(path) == pydebut.Chain([(4, 4, 2, 2, 2), (4, 4, 2, 2, 1)])
    path.write_text(json.dumps({"r_shapes": [[4, 4, 2, 2, 1], [4, 4, 2, 2, 2]]}))
    assert load_chain_json(path) == pydebut.Chain([(4, 4, 2, 2, 2), (4, 4, 2, 2, 1)])
    for text, message in [
        ("{", "not valid JSON"),
        ("[1, 2]", "lists 2 chains: choose one with --row"),
        ("5", "expected a JSON object"),
        ('{"sup": []}', "expected keys 'sup' and 'sub'"),
    ]:
        path.write_text(text)
        with pytest.raises(Exception, match=message):
            load_chain_json(path)
    with pytest.raises(Exception, match="cannot read chain file"):
        load_chain_json(tmp_path / "missing.json")
    # Before: row=True and row=1.0 read row 1
    path.write_text(json.dumps([{"sup": [[4, 4]], "sub": [[2, 2, 2]]}] * 2))
    assert load_chain_json(path, row=2) == pydebut.Chain([(4, 4, 2, 2, 2)])
    for row, error in [(True, TypeError), (1.0, TypeError), (0, ValueError)]:
        with pytest.raises(error, match="load_chain_json: row must be"):
            load_chain_json(path, row=row)


def test_console_script_entry_point():
    result = subprocess.run(
        [sys.executable, "-m", "pydebut", "bogus"], capture_output=True, text=True
    )
    assert result.returncode == 2 and result.stderr.count("\n") == 1


@pytest.mark.parametrize(
    ("command", "words"),
    [
        ("check", ["--format", "json: every field", "chainable", "rank weights", "family"]),
        ("fit", ["--tol", "fraction of it"]),
        ("chains", ["--rank", "widened", "--kind", "monotonic"]),
    ],
)
def test_help_explains_options_and_terms(capsys, command, words):
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for word in words:
        assert word in text


def test_chains_kind_help_states_the_library_defaults(capsys):
    # Before: the help called monotonic "the default of the library's chain design",
    # but enumerate_chains and count_chains default to any.
    with pytest.raises(SystemExit):
        main(["chains", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    stated = {
        "monotonic": "monotonic, as min_param_chain and pareto_front choose",
        "any": "enumerate_chains and count_chains default to any",
    }
    functions = (
        pydebut.min_param_chain,
        pydebut.pareto_front,
        pydebut.enumerate_chains,
        pydebut.count_chains,
    )
    for function in functions:
        default = inspect.signature(function).parameters["kind"].default
        assert function.__name__ in stated[default] and stated[default] in text


def test_one_number_format_across_commands(capsys):
    from pydebut.commands._output import count, duration, error, ratio, table

    chain = pydebut.special.PAPER_CHAINS["resnet50-layer4"]
    sup, sub = chain.to_sup_sub()
    assert main(["check", "--sup", json.dumps(sup), "--sub", json.dumps(sub)]) == 0
    out = capsys.readouterr().out
    assert f"{count(chain.n_params)} params (compression {ratio(chain.compression_ratio)})" in out
    assert "25,600 params (compression 40.96x)" in out
    assert main(["check", "--sup", "4096 4096", "--sub", "1 1 1"]) == 1  # diagonal: not dense
    assert "4,096 params (compression 4,096.00x)" in capsys.readouterr().out
    assert [duration(t) for t in (2e-5, 1e-3, 0.5, 1.0, 3.0, 999.0, 1000.0)] == [
        "20 us", "1 ms", "500 ms", "1 s", "3 s", "999 s", "1,000 s"
    ]  # fmt: skip
    assert [error(e) for e in (0.04981321, 1.9e-15, 0.123456789)] == [
        "0.0498132", "1.9e-15", "0.123457"
    ]  # fmt: skip
    assert table([["1", "0.5"], ["64", "12.25"]], ["batch", "rel. error"]).splitlines() == [
        "  batch    rel. error",
        "-------  ------------",
        "      1           0.5",
        "     64         12.25",
    ]


def test_counts_too_long_for_text_are_powers_of_two_or_refused(capsys):
    # a chain of 2,500-digit sizes was read, then its 5,000-digit parameter count failed
    # to print with Python's own advice: "use sys.set_int_max_str_digits()"
    size = str(10**2500)
    argv = ["check", "--sup", size, size, "--sub", size, size, "1"]
    assert main(argv) == 0
    assert "about 2**16609 params" in capsys.readouterr().out
    assert main([*argv, "--format", "json"]) == 2
    assert capsys.readouterr().err == (
        "pydebut: error: a count of this chain (params about 2**16609) has more than 4,300 "
        "digits, more than Python writes as text: --format table gives such counts as powers "
        "of two\n"
    )


def test_the_commands_do_not_import_the_cli():
    """cli.py imports the commands; the commands take what they share from commands._common."""
    code = (
        "import sys, pydebut.commands; "
        "print(sorted(name for name in sys.modules if name.startswith('pydebut.cli')))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_the_readme_command_lines_run_in_order(tmp_path):
    # its last line fitted target.npy and chain.json, which nothing before it made
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", readme, re.DOTALL)
    block = next(block for block in blocks if "pydebut fit" in block)
    folder = os.path.dirname(sys.executable)  # this Python's scripts: pydebut, python
    if shutil.which("pydebut", path=folder) is None:
        pytest.skip("pydebut's script is not installed beside this Python")
    environment = {**os.environ, "PATH": os.pathsep.join([folder, os.environ.get("PATH", "")])}
    for line in block.splitlines():
        result = subprocess.run(
            line, shell=True, cwd=tmp_path, env=environment, capture_output=True, text=True
        )
        assert result.returncode == 0, (line, result.stderr)
    assert (tmp_path / "factors.npz").is_file()


def test_a_chain_file_of_max_factors_is_read(tmp_path):
    # one more is refused before the chain is built (test_cli_errors.py)
    from pydebut.io import MAX_FACTORS

    path = tmp_path / "long.json"
    path.write_text(json.dumps({"sup": [[1, 1]] * MAX_FACTORS, "sub": [1, 1, 1] * MAX_FACTORS}))
    assert load_chain_json(path).n_factors == MAX_FACTORS
