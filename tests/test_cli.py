"""The command-line skeleton and ``pydebut demo``."""

import json
import subprocess
import sys

import pytest

import pydebut
from pydebut.cli import load_chain_json, main


def run(capsys, *argv):
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_demo_reports_agreement_and_solves(capsys):
    status, out, err = run(capsys, "demo", "--seed", "1")
    assert status == 0, err
    assert "Chain 512 x 2048, 9 factors, 25600 params" in out
    assert "== apply: DeBut chain vs dense matrix ==" in out
    difference_lines = [line for line in out.splitlines() if line.strip().startswith(("1 ", "64 "))]
    assert len(difference_lines) == 2
    assert all(float(line.split()[1]) < 1e-12 for line in difference_lines)
    solution_line = next(line for line in out.splitlines() if "dense normal-equations" in line)
    assert float(solution_line.rsplit(" ", 1)[1]) < 1e-6


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "required: COMMAND"),
        (["bogus"], "invalid choice: 'bogus'"),
        (["demo", "--seed", "x"], "invalid int value: 'x'"),
    ],
)
def test_usage_errors_are_one_line_with_status_2(capsys, argv, message):
    status, _, err = run(capsys, *argv)
    assert status == 2
    assert err.count("\n") == 1 and err.startswith("pydebut: error:") and message in err
    assert "Traceback" not in err


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


def test_console_script_entry_point():
    result = subprocess.run(
        [sys.executable, "-m", "pydebut", "bogus"], capture_output=True, text=True
    )
    assert result.returncode == 2 and result.stderr.count("\n") == 1
