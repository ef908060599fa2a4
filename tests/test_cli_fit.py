"""The ``pydebut fit`` command."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from pydebut import Chain, DeButOperator, enumerate_chains
from pydebut.cli import main
from pydebut.commands.demo import fit_target, noisy_target
from pydebut.commands.fit import format_approximation, format_report
from pydebut.fit import MAX_SWEEPS, ApproximationResult, ExploredChain, FitResult, SVDBaseline
from pydebut.io import MAX_FACTORS, load

from .fit_cases import CHAINABLE, POINTWISE_3_TO_64, dense_product, random_weights
from .test_cli_errors import run_cli


@pytest.fixture
def target_file(tmp_path):
    chain = CHAINABLE[1]
    target = dense_product(chain, random_weights(chain, np.random.default_rng(0)))
    path = tmp_path / "target.npy"
    np.save(path, target)
    return chain, target, path


def chain_args(chain):
    sup, sub = chain.to_sup_sub()
    return ["--sup", json.dumps(sup), "--sub", json.dumps(sub)]


def test_fit_saves_factors_and_prints_the_table(target_file, tmp_path, capsys):
    chain, target, path = target_file
    out = tmp_path / "factors.npz"
    argv = ["fit", str(path), *chain_args(chain), "--sweeps", "2", "--init", "random"]
    status = main([*argv, "--seed", "3", "--no-progress", "-o", str(out)])
    printed = capsys.readouterr().out
    assert status == 0
    for word in ("init", "sweep 1", "sweep 2", "compression", f"params     {chain.n_params}"):
        assert word in printed
    op = load(out)
    assert op.chain == chain
    error = np.linalg.norm(op.toarray() - target) / np.linalg.norm(target)
    final = float(printed.split("error      ")[1].split()[0])
    assert error == pytest.approx(final, rel=1e-4, abs=1e-12)


def run_fit(target_file, tmp_path, output, **options):
    """``pydebut fit`` in a subprocess (:func:`run_cli`) saving to ``output``, its output
    encoded as strict UTF-8."""
    chain, _, path = target_file
    argv = ["fit", str(path), *chain_args(chain), "--sweeps", "1", "--no-progress"]
    return run_cli(
        [*argv, "-o", output], cwd=tmp_path, variables={"PYTHONIOENCODING": "utf-8"}, **options
    )


@pytest.mark.skipif(sys.platform == "win32", reason="file names are text on Windows")
def test_fit_reports_a_saved_file_whose_name_is_not_utf8(target_file, tmp_path):
    # printing the name with a strict stdout failed (exit 2) after the file was saved
    result = run_fit(target_file, tmp_path, os.fsdecode(b"\xfc"), stdout=subprocess.PIPE)
    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith(f"saved {target_file[0].n_factors} factors to \\xfc.npz\n")
    assert os.path.exists(os.path.join(os.fsencode(tmp_path), b"\xfc.npz"))


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_fit_saves_the_factors_when_stdout_cannot_be_written(target_file, tmp_path):
    # the report failed to print and the factors were never saved, with a message that
    # did not say which file could not be written
    with open("/dev/full", "w") as full:
        result = run_fit(target_file, tmp_path, "out", stdout=full)
    assert result.returncode == 2
    assert result.stderr == (
        f"pydebut: error: saved {target_file[0].n_factors} factors to out.npz, but cannot write "
        "to standard output: No space left on device\n"
    )
    assert load(tmp_path / "out.npz").chain == target_file[0]


def test_fit_with_a_chain_file_and_hierarchical_init(target_file, tmp_path, capsys):
    chain, target, path = target_file
    chain_file = tmp_path / "chain.json"
    chain_file.write_text(json.dumps(chain.to_json()))
    out = tmp_path / "factors.npz"
    status = main(["fit", str(path), "--chain", str(chain_file), "--sweeps", "0", "-o", str(out)])
    assert status == 0
    assert np.allclose(load(out).toarray(), target)
    assert "sweep 1" not in capsys.readouterr().out


def test_the_output_checked_is_the_file_written(target_file, tmp_path, capsys):
    # -o results was refused for a folder called results, though results.npz is written
    chain, target, path = target_file
    (tmp_path / "results").mkdir()
    argv = ["fit", str(path), *chain_args(chain), "--sweeps", "0", "--no-progress"]
    assert main([*argv, "-o", str(tmp_path / "results")]) == 0
    assert load(tmp_path / "results.npz").shape == target.shape
    (tmp_path / "results.npz").unlink()
    (tmp_path / "results.npz").mkdir()
    assert main([*argv, "-o", str(tmp_path / "results")]) == 2
    assert "results.npz: it is a folder" in capsys.readouterr().err


def test_progress_bar_goes_to_stderr(target_file, tmp_path, capsys):
    pytest.importorskip("tqdm")
    chain, _, path = target_file
    out = tmp_path / "factors.npz"
    assert main(["fit", str(path), *chain_args(chain), "--sweeps", "1", "-o", str(out)]) == 0
    assert "ALS" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--sweeps", "-1"], "--sweeps must be from 0 to 100,000, got -1"),
        (["--sweeps", str(10**30)], f"--sweeps must be from 0 to 100,000, got {10**30}"),
        (["--init", "svd"], "invalid choice: 'svd'"),
        (["--tol", "-1"], "--tol must be finite and >= 0, got -1.0"),
        (["--tol", "nan"], "--tol must be finite and >= 0, got nan"),
    ],
)
def test_bad_options(target_file, tmp_path, capsys, extra, message):
    chain, _, path = target_file
    argv = ["fit", str(path), *chain_args(chain), "-o", str(tmp_path / "f.npz"), *extra]
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "f.npz").exists()


@pytest.mark.parametrize("name", ["target.npy", "new.npy", "chain.JSON", "data"])
def test_a_target_taken_by_sub_is_named_in_the_error(
    target_file, tmp_path, capsys, monkeypatch, name
):
    """``--sub 2 2 1 target.npy`` reads the target as a number of --sub: say so."""
    chain, _, path = target_file
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").write_bytes(path.read_bytes())  # an existing file, without suffix
    target = name
    assert main(["fit", *chain_args(chain), target, "-o", "f.npz"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pydebut fit: error: the following arguments are required: TARGET.npy;")
    assert f"{target!r} was read as a value of --sub, which takes every value after it: " in err
    assert "give TARGET.npy before the options, or last after --" in err
    assert err.count("\n") == 1
    argv = ["fit", *chain_args(chain), "-o", "f.npz", "--no-progress"]
    assert main([*argv, "--", target]) == (0 if name in ("target.npy", "data") else 2)


def test_a_missing_target_without_a_file_in_a_list_is_argparse_s_message(
    target_file, tmp_path, capsys
):
    chain, _, _ = target_file
    assert main(["fit", *chain_args(chain), "-o", str(tmp_path / "f.npz")]) == 2
    assert capsys.readouterr().err == (
        "pydebut fit: error: the following arguments are required: TARGET.npy "
        "(see 'pydebut fit --help')\n"
    )


def test_a_chain_too_long_to_save_is_refused_before_the_fit(tmp_path, capsys, monkeypatch):
    # the fit ran (10 s at 10,001 factors), then saving its result was refused
    monkeypatch.setattr("pydebut.commands.fit.fit_als", lambda *a, **k: pytest.fail("fitted"))
    # (a chain file that long is refused as it is read: test_cli_errors.py)
    n = MAX_FACTORS + 1
    chain = ["--sup", " ".join(["1 1"] * n), "--sub", " ".join(["1 1 1"] * n)]
    np.save(tmp_path / "one.npy", np.array([[3.0]]))
    argv = ["fit", str(tmp_path / "one.npy"), *chain, "--no-progress"]
    assert main([*argv, "-o", str(tmp_path / "out.npz")]) == 2
    assert "10,001 factors; a pydebut file holds at most" in capsys.readouterr().err


def test_bad_targets(tmp_path, capsys):
    chain = CHAINABLE[1]
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.ones((3, 3)))
    out = str(tmp_path / "f.npz")
    assert main(["fit", str(wrong), *chain_args(chain), "-o", out]) == 2
    assert "the target has shape (3, 3) but the chain is 8 x 8" in capsys.readouterr().err
    bad = tmp_path / "bad.npy"
    np.save(bad, np.full(chain.shape, np.nan))
    assert main(["fit", str(bad), *chain_args(chain), "-o", out]) == 2
    assert "non-finite" in capsys.readouterr().err
    assert main(["fit", str(tmp_path / "missing.npy"), *chain_args(chain), "-o", out]) == 2
    assert "missing.npy" in capsys.readouterr().err


def test_hierarchical_init_on_a_non_chainable_chain(tmp_path, capsys):
    path = tmp_path / "t.npy"
    np.save(path, np.ones(POINTWISE_3_TO_64.shape))
    argv = ["fit", str(path), *chain_args(POINTWISE_3_TO_64), "--init", "hierarchical"]
    assert main([*argv, "-o", str(tmp_path / "f.npz")]) == 2
    assert "use fit_als" in capsys.readouterr().err


def test_demo_fit_reports_errors_and_compression(capsys):
    chain = CHAINABLE[1]
    target = noisy_target(chain, np.random.default_rng(4))
    hierarchical_result, als_result = fit_target(chain, target)
    # ALS never increases the error, up to rounding (fit_als's docstring): here the
    # hierarchical fit is already a stationary point, and some BLAS builds end 1 ulp above it
    assert als_result.error <= hierarchical_result.error * (1 + 1e-12)
    printed = capsys.readouterr().out
    hierarchical = float(printed.split("fit_hierarchical")[1].split()[0])
    als = float(printed.split("fit_als, 3 sweeps from it")[1].split()[0])
    assert hierarchical == pytest.approx(hierarchical_result.error, abs=1e-6)
    assert 0 < als <= hierarchical < 0.06
    assert f"compression {chain.compression_ratio:.2f}x" in printed


def test_auto_chooses_a_chain_under_the_budget(tmp_path, capsys):
    chain = CHAINABLE[1]  # 8 x 8, 3 factors, 48 parameters
    target = dense_product(chain, random_weights(chain, np.random.default_rng(5)))
    path, out = tmp_path / "target.npy", tmp_path / "factors.npz"
    np.save(path, target)
    argv = ["fit", str(path), "--auto", "--max-params", "48", "--beam-width", "4"]
    assert main([*argv, "--refine", "2", "--sweeps", "2", "--no-progress", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "explored" in printed and "<- chosen" in printed and "truncated SVD" in printed
    op = load(out)
    assert op.chain.n_params <= 48
    error = np.linalg.norm(op.toarray() - target) / np.linalg.norm(target)
    assert error < 1e-10
    final = float(printed.split("error      ")[1].split()[0])
    assert error == pytest.approx(final, rel=1e-4, abs=1e-12)
    chosen = next(line for line in printed.splitlines() if "<- chosen" in line)
    assert float(chosen.split()[-3]) == pytest.approx(final, rel=1e-4, abs=1e-12)
    sup, sub = op.chain.to_sup_sub()
    assert f"--sup '{sup}' --sub '{sub}'" in printed


def test_auto_prints_the_svd_baseline_beside_the_chosen_chain(tmp_path, capsys):
    x = np.linspace(0, 1, 16)
    path, out = tmp_path / "kernel.npy", tmp_path / "factors.npz"
    np.save(path, np.exp(-30 * (x[:, None] - np.linspace(0, 1, 32)) ** 2))
    argv = ["fit", str(path), "--auto", "--max-params", "144", "--sweeps", "1"]
    assert main([*argv, "--no-progress", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    baseline = next(line for line in printed.splitlines() if line.startswith("truncated SVD"))
    assert "rank 3, 144 params" in baseline
    final = float(printed.split("error      ")[1].split()[0])
    assert final <= float(baseline.split("error")[-1])


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--auto"], "--auto needs --max-params N"),
        (["--auto", "--max-params", "1"], "most max_params=1 weights"),
        (["--auto", "--max-params", "64", "--sup", "8 8", "--sub", "2 2 4"], "not both"),
        ([], "no chain given"),
        (["--max-params", "64"], "--max-params only applies with --auto"),
        (["--sup", "8 8", "--sub", "2 2 4", "--beam-width", "0"], "--beam-width only applies"),
        (["--sup", "8 8", "--sub", "2 2 4", "--refine", "2"], "--refine only applies"),
        (["--sup", "8 8", "--sub", "2 2 4", "--max-splits", "9"], "--max-splits only applies"),
        (["--auto", "--max-params", "64", "--init", "random"], "--init applies to a given"),
        (["--auto", "--max-params", "64", "--max-splits", "0"], "--max-splits must be >= 1"),
        (["--auto", "--max-params", "64", "--workers", "0"], "--workers must be >= 1 or -1"),
        (["--sup", "8 8", "--sub", "2 2 4", "--workers", "2"], "--workers only applies"),
    ],
)
def test_auto_usage_errors(target_file, tmp_path, capsys, extra, message):
    _, _, path = target_file
    assert main(["fit", str(path), *extra, "-o", str(tmp_path / "f.npz")]) == 2
    assert message in capsys.readouterr().err


def test_auto_gives_the_same_factors_on_every_cpu(tmp_path, capsys):
    chain = CHAINABLE[1]
    path = tmp_path / "target.npy"
    np.save(path, dense_product(chain, random_weights(chain, np.random.default_rng(5))) + 0.1)
    argv = ["fit", str(path), "--auto", "--max-params", "40", "--sweeps", "1", "--no-progress"]
    assert main([*argv, "-o", str(tmp_path / "one.npz")]) == 0
    assert main([*argv, "--workers", "-1", "-o", str(tmp_path / "all.npz")]) == 0
    one, every = load(tmp_path / "one.npz"), load(tmp_path / "all.npz")
    assert one.chain == every.chain
    assert all(np.array_equal(a, b) for a, b in zip(one.weights, every.weights))


def test_auto_refuses_a_budget_below_the_smallest_chain_before_reading(tmp_path, capsys):
    # The whole target was read (and checked for NaN) before the budget: an 8192 x 8192
    # float64 target (512 MB) peaked at 719 MB before "the smallest has 16384".
    path = tmp_path / "nan.npy"  # read, it would be refused for its NaN entries
    np.save(path, np.full((64, 256), np.nan))
    argv = ["fit", str(path), "--auto", "--max-params", "100", "--max-factors", "3"]
    assert main([*argv, "-o", str(tmp_path / "f.npz")]) == 2
    assert capsys.readouterr().err == (
        "pydebut: error: no chain of at most 3 factors for a 64 x 256 matrix has at most "
        "max_params=100 weights (the smallest has 320)\n"
    )


def test_auto_reports_a_narrowed_search_once_and_takes_max_splits(tmp_path, capsys):
    x = np.linspace(0, 1, 32)
    path, out = tmp_path / "kernel.npy", tmp_path / "factors.npz"
    np.save(path, np.exp(-30 * (x[:, None] - np.linspace(0, 1, 64)) ** 2))
    argv = ["fit", str(path), "--auto", "--max-params", "600", "--max-splits", "5"]
    assert main([*argv, "--sweeps", "0", "--no-progress", "-o", str(out)]) == 0
    printed, err = capsys.readouterr()
    assert "(search narrowed: approximate reached max_splits=5" in printed
    assert "--max-splits, --beam-width, --max-factors)" in printed
    assert "Warning" not in err and "max_splits" not in err


def test_auto_lists_a_chosen_chain_the_search_did_not_meet():
    # A butterfly candidate won on the tutorial's VGG target at 25,600 parameters and no
    # row of the table was marked chosen: the table lists only the search's chains.
    searched = Chain.from_factorizations([4, 4], [4, 4])
    butterfly = Chain.from_factorizations([2, 2, 2, 2], [2, 2, 2, 2])
    result = ApproximationResult(
        DeButOperator.random(butterfly, rng=0),
        0.25,
        [ExploredChain(searched, 0.5, 0.4)],
        SVDBaseline(1, 32, 0.9, False),
        n_splits=3,
    )
    chosen = [line for line in format_approximation(result).splitlines() if "<- chosen" in line]
    assert len(chosen) == 1
    assert chosen[0].split()[:5] == [f"{butterfly.n_params}", "4", butterfly.kind, "-", "0.25"]


def test_auto_shows_the_error_of_a_chosen_chain_the_search_left_unfitted():
    # The rank-1 SVD won as a chain the search had met but not fitted: its row was marked
    # chosen with an empty fitted column.
    rank_one = Chain([(4, 1, 4, 1, 1), (1, 8, 1, 8, 1)])
    result = ApproximationResult(
        DeButOperator.random(rank_one, rng=0),
        0.75,
        [ExploredChain(rank_one, 0.75), ExploredChain(Chain.from_factorizations([2], [8]), 0.9)],
        SVDBaseline(1, 12, 0.75, False),
        n_splits=3,
    )
    chosen = [line for line in format_approximation(result).splitlines() if "<- chosen" in line]
    assert len(chosen) == 1
    assert chosen[0].split()[3:5] == ["0.75", "0.75"]


# --- what a one-line change of the command went unnoticed by (a mutation audit) -----------


def test_the_sweep_rows_show_the_error_and_time_after_each_whole_sweep():
    # errors and times hold the start, then one entry per half-sweep: sweep i is entry 2 i;
    # the last line's time is the whole command's, loading the target included
    op = DeButOperator.random(Chain.from_factorizations([2, 2], [2, 2]), rng=0)
    result = FitResult(op, [0.9, 0.5, 0.4, 0.3, 0.2], [0.25, 1.0, 2.0, 3.0, 4.0], "als")
    lines = format_report(result, 7.0).splitlines()
    rows = [line.rsplit(maxsplit=3) for line in lines[2:5]]
    assert rows == [
        ["init", "0.9", "250", "ms"],
        ["sweep 1", "0.4", "2", "s"],
        ["sweep 2", "0.2", "4", "s"],
    ]
    assert lines[-1] == "time       7 s"


def test_auto_report_names_the_shape_the_dense_size_and_every_chain_explored():
    # the count is of every chain explored, not of the 10 unfitted ones the table shows
    chosen = Chain.from_factorizations([4, 4], [3, 4])  # 16 x 12
    others = [c for c in enumerate_chains(16, 12, range(1, 5), kind="any") if c != chosen][:15]
    explored = [ExploredChain(chain, 0.5 + i / 100) for i, chain in enumerate(others)]
    result = ApproximationResult(
        DeButOperator.random(chosen, rng=0), 0.25, explored, SVDBaseline(1, 28, 0.9, False), 3
    )
    lines = format_approximation(result).splitlines()
    assert lines[0].startswith("explored 15 chains (3 split spectra)")
    assert "chain      16 x 12, 2 factors, monotonic" in lines
    assert any(line.startswith(f"params     {chosen.n_params} (dense 192,") for line in lines)


def test_auto_table_is_ordered_by_params_then_estimate():
    small = Chain.from_factorizations([2, 2], [2, 2])  # 4 x 4, 16 params
    bigger = Chain.from_factorizations([4, 2], [2, 4])  # 8 x 8
    explored = [ExploredChain(bigger, 0.1, 0.1), ExploredChain(small, 0.7, 0.6)]
    result = ApproximationResult(
        DeButOperator.random(bigger, rng=0), 0.1, explored, SVDBaseline(1, 16, 0.9, False), 3
    )
    rows = [line.split() for line in format_approximation(result).splitlines()[3:5]]
    assert [int(row[0]) for row in rows] == [small.n_params, bigger.n_params]


def test_the_limits_of_sweeps_and_tol_are_taken(target_file, tmp_path):
    chain, _, path = target_file
    argv = ["fit", str(path), *chain_args(chain), "--no-progress", "-o", str(tmp_path / "f")]
    assert main([*argv, "--sweeps", "1", "--tol", "0"]) == 0
    # the most sweeps allowed, stopped after the first by a huge tol
    assert main([*argv, "--sweeps", str(MAX_SWEEPS), "--tol", "1e9"]) == 0
    assert load(tmp_path / "f.npz").shape == chain.shape


def test_fit_without_tqdm_fits_without_a_bar(target_file, tmp_path, capsys, monkeypatch):
    # tqdm is an optional extra: without it the command fits and says how to get a bar
    for name in [name for name in sys.modules if name == "tqdm" or name.startswith("tqdm.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    chain, _, path = target_file
    argv = ["fit", str(path), *chain_args(chain), "--sweeps", "1", "-o", str(tmp_path / "f")]
    assert main(argv) == 0
    assert "install tqdm" in capsys.readouterr().err
