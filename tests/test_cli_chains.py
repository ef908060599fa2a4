"""The ``pydebut chains`` and ``pydebut check`` commands."""

from __future__ import annotations

import csv
import io
import json

import pytest

from pydebut import Chain, count_chains, enumerate_chains, is_dense, rank_weights
from pydebut.cli import main
from pydebut.special import PAPER_CHAINS

# A 512 x 4608 chain (512 channels x 3x3 kernels), like the paper's density example.
VGG_512 = Chain.from_factorizations([8, 4, 4, 2, 2], [9, 4, 4, 4, 8])
LENET = PAPER_CHAINS["lenet-fc1"]
NOT_DENSE = Chain([(4, 4, 2, 2, 1), (4, 4, 2, 2, 1)])


def run(capsys, *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def sup_sub_arguments(chain: Chain) -> list[str]:
    sup, sub = chain.to_sup_sub()
    flat_sup = " ".join(str(x) for pair in sup for x in pair)
    return ["--sup", flat_sup, "--sub", json.dumps(sub)]


# --- pydebut chains ----------------------------------------------------------------


def test_json_rows_round_trip_into_chains(capsys, tmp_path):
    arguments = ["chains", "64", "576", "--factors", "2-4", "--kind", "monotonic",
                 "--max-params", "3000", "--limit", "7", "--format", "json"]  # fmt: skip
    status, out, _ = run(capsys, *arguments)
    assert status == 0
    document = json.loads(out)
    request = dict(n_factors=range(2, 5), kind="monotonic", max_params=3000)
    total = count_chains(64, 576, **request)
    assert (document["total"], document["shown"], document["left_out"]) == (total, 7, total - 7)
    expected = list(enumerate_chains(64, 576, order="params", **request))[:7]
    path = tmp_path / "chains.json"
    path.write_text(out)
    for row in document["chains"]:
        chain = Chain.from_sup_sub(row["sup"], row["sub"])
        assert chain == expected[row["row"] - 1]
        assert (row["params"], row["kind"], row["max_dim"], row["rank"]) == (
            chain.n_params, chain.kind, chain.max_dim, 1)  # fmt: skip
        single = tmp_path / f"row{row['row']}.json"
        single.write_text(json.dumps(row))
        status, out, _ = run(capsys, "check", "--chain", str(single), "--format", "json")
        assert status == 0
        assert Chain.from_sup_sub(**{k: json.loads(out)[k] for k in ("sup", "sub")}) == chain
        status, _, _ = run(capsys, "check", "--chain", str(path), "--row", str(row["row"]))
        assert status == 0


def test_listing_needs_a_row(capsys, tmp_path):
    path = tmp_path / "chains.json"
    _, out, _ = run(capsys, "chains", "8", "8", "--factors", "2", "--format", "json")
    path.write_text(out)
    status, _, err = run(capsys, "check", "--chain", str(path))
    assert status == 2
    assert "choose one with --row (its rows: 1, 2" in err
    status, _, err = run(capsys, "check", "--chain", str(path), "--row", "999")
    assert status == 2 and "has no row 999" in err
    status, _, err = run(capsys, "check", "--chain", str(path), "--row", "0")
    assert status == 2 and "--row must be at least 1 (rows count from 1), got 0" in err


def test_row_picks_the_row_of_that_number_in_a_part_of_a_listing(capsys, tmp_path):
    # --row is the `row` column of the listing, also in a file holding some of its rows
    _, out, _ = run(capsys, "chains", "64", "576", "--factors", "2-4", "--limit", "5",
                    "--format", "json")  # fmt: skip
    rows = json.loads(out)["chains"]
    path = tmp_path / "picked.json"
    path.write_text(json.dumps([rows[2], rows[4]]))
    status, out, _ = run(capsys, "check", "--chain", str(path), "--row", "3", "--format", "json")
    assert status in (0, 1) and json.loads(out)["sup"] == rows[2]["sup"]
    status, _, err = run(capsys, "check", "--chain", str(path), "--row", "1")
    assert status == 2 and "has no row 1 (its rows: 3, 5)" in err


def test_chain_files_are_read_up_to_a_limit(capsys, monkeypatch, tmp_path):
    from pydebut.commands import _common

    monkeypatch.setattr(_common, "MAX_CHAIN_FILE_BYTES", 100)
    path = tmp_path / "big.json"
    path.write_text(json.dumps({"sup": [[4, 4]] * 20, "sub": [[2, 2, 2]] * 20}))
    for name in (str(path), "/dev/zero"):
        status, _, err = run(capsys, "check", "--chain", name)
        assert status == 2
        assert "is larger than 100 bytes (MAX_CHAIN_FILE_BYTES of pydebut.cli)" in err


def _refuse_parsing(monkeypatch):
    from pydebut.commands import _common

    def loads(text):
        raise AssertionError(f"parsed {len(text):,} characters")

    monkeypatch.setattr(_common.json, "loads", loads)


def test_chain_files_are_refused_above_what_a_listing_needs_before_parsing(
    capsys, monkeypatch, tmp_path
):
    # A table of pydebut chains holds at most 100,000 rows, about 24 MB; parsing a
    # 256 MiB file of [[],[],...] took about 11 GB.
    path = tmp_path / "big.json"
    path.write_bytes(b"[" + b"[]," * (2**25 // 3) + b"[]]")
    _refuse_parsing(monkeypatch)
    status, _, err = run(capsys, "check", "--chain", str(path))
    assert status == 2 and "larger than" in err and "split it" in err


def test_chain_files_are_refused_when_parsing_would_exceed_memory(capsys, monkeypatch, tmp_path):
    from pydebut import _memory

    path = tmp_path / "chains.json"
    path.write_text(json.dumps([{"sup": [[4, 4]] * 2, "sub": [[2, 2, 2], [2, 2, 1]]}] * 100))
    size = path.stat().st_size
    monkeypatch.setattr(_memory, "physical_memory", lambda: 10 * size)  # parsing takes more
    _refuse_parsing(monkeypatch)
    status, _, err = run(capsys, "check", "--chain", str(path), "--row", "1")
    assert status == 2 and "more than this machine's memory" in err and "split it" in err


@pytest.mark.parametrize("output", ["json", "csv", "table"])
def test_chains_beyond_the_count_limit_are_listed_without_their_total(capsys, monkeypatch, output):
    from pydebut import chains as chains_module

    monkeypatch.setattr(chains_module, "MAX_BUDGET_MOVES", 1000, raising=False)
    status, out, err = run(capsys, "chains", "64", "4096", "--factors", "1-5", "--kind", "any",
                           "--max-params", "8000", "--limit", "3", "--format", output)  # fmt: skip
    assert status == 0
    note = err if output != "table" else out
    assert "total not counted" in note and "MAX_BUDGET_MOVES" in note
    if output == "json":
        listing = json.loads(out)
        assert (listing["total"], listing["shown"], listing["left_out"]) == (None, None, None)
        assert [row["row"] for row in listing["chains"]] == [1, 2, 3]
    elif output == "csv":
        assert len(list(csv.reader(io.StringIO(out)))) == 4


def test_csv_and_table_carry_the_sup_sub_spelling(capsys):
    status, out, err = run(capsys, "chains", "16", "12", "--factors", "2", "--format", "csv",
                           "--sort", "max_dim", "--limit", "1000")  # fmt: skip
    assert status == 0 and err == "" and "\r" not in out
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == count_chains(16, 12, n_factors=2, kind="monotonic")
    dims = [int(row["max_dim"]) for row in rows]
    assert dims == sorted(dims)
    for row in rows:
        chain = Chain.from_sup_sub(row["sup"], row["sub"])
        sup, sub = chain.to_sup_sub()  # flat, as --sup and --sub take them
        assert row["sup"] == " ".join(str(x) for pair in sup for x in pair)
        assert row["sub"] == " ".join(str(x) for triple in sub for x in triple)
        assert (chain.n_params, chain.flops) == (int(row["params"]), int(row["flops"]))
        assert chain.compression_ratio == pytest.approx(float(row["compression"]), abs=1e-3)
    status, out, _ = run(capsys, "chains", "16", "12", "--factors", "2", "--limit", "1000")
    lines = out.splitlines()
    assert lines[0].split() == ["row", "factors", "params", "compression", "flops", "kind",
                                "max_dim", "rank", "sup", "sub"]  # fmt: skip
    assert set(lines[1]) == {"-", " "}
    assert lines[-1] == f"{len(rows):,} chains"


def test_limit_says_how_many_rows_it_left_out(capsys):
    total = count_chains(512, 4608, n_factors=range(1, 4), kind="monotonic")
    status, out, _ = run(capsys, "chains", "512", "4608", "--factors", "1-3", "--limit", "3")
    assert status == 0
    assert out.splitlines()[-1] == f"{total - 3:,} of {total:,} chains left out by --limit 3"
    assert len(out.splitlines()) == 6  # header, rule, 3 rows, note
    status, _, err = run(capsys, "chains", "512", "4608", "--factors", "1-3", "--format", "csv")
    assert err.strip() == f"{total - 50:,} of {total:,} chains left out by --limit 50"
    # a limit above sys.maxsize lists every chain
    status, out, err = run(capsys, "chains", "512", "4608", "--factors", "1-2", "--limit", "9" * 20)
    assert status == 0 and not err
    every = count_chains(512, 4608, n_factors=range(1, 3), kind="monotonic")
    assert out.splitlines()[-1] == f"{every} chains"
    assert len(out.splitlines()) == 3 + every  # header, rule, rows, count


def test_more_factors_than_any_chain_has_are_not_refused(capsys):
    # Before: refused, a state graph of up to 4,605,805 moves above MAX_GRAPH_MOVES
    for sort in ("params", "factors"):
        status, out, _ = run(capsys, "chains", "64", "64", "--factors", "1-64", "--sort", sort,
                             "--limit", "1")  # fmt: skip
        assert status == 0
        assert out.splitlines()[-1] == "31 of 32 chains left out by --limit 1"


def test_an_empty_listing_names_allow_diagonal_when_only_diagonal_factors_fit(capsys):
    # Before: "0 chains" and nothing else, while check called the 1 x 1 chain dense
    status, out, err = run(capsys, "chains", "1", "1")
    assert (status, out) == (0, "0 chains\n")
    assert err == (
        "no chain fits without a diagonal factor (r = s = 1); --allow-diagonal admits them: "
        "4 chains\n"
    )
    status, out, err = run(capsys, "chains", "1", "1", "--factors", "1", "--allow-diagonal")
    assert status == 0 and not err
    assert out.splitlines()[-1] == "1 chain"  # before: "1 chains"
    _, _, err = run(capsys, "chains", "64", "64", "--factors", "13-14", "--format", "csv")
    assert "--allow-diagonal admits them" in err
    _, out, err = run(capsys, "chains", "1", "1", "--factors", "2-3", "--kind", "other")
    assert (out, err) == ("0 chains\n", "")  # none, with or without diagonal factors


def test_sort_by_factors_then_params(capsys):
    _, out, _ = run(capsys, "chains", "24", "36", "--factors", "1-3", "--sort", "factors",
                         "--format", "json", "--limit", "100000")  # fmt: skip
    keys = [(row["factors"], row["params"]) for row in json.loads(out)["chains"]]
    assert keys == sorted(keys)
    assert len(keys) == count_chains(24, 36, n_factors=range(1, 4), kind="monotonic")


def test_sort_by_factors_lists_what_sort_by_params_lists(capsys):
    """A factor count the kind rules out gives no rows, as in one search over all counts."""
    listings = {}
    for sort in ("params", "factors"):
        status, out, err = run(capsys, "chains", "16", "16", "--kind", "other", "--sort", sort,
                               "--format", "json", "--limit", "100000")  # fmt: skip
        assert status == 0, err
        listings[sort] = [(row["sup"], row["sub"]) for row in json.loads(out)["chains"]]
    assert sorted(listings["factors"]) == sorted(listings["params"])
    assert len(listings["params"]) == count_chains(16, 16, n_factors=range(1, 5), kind="other")


@pytest.mark.parametrize("sort", ["params", "factors"])
def test_a_request_too_large_is_refused_before_any_output(capsys, sort):
    size = "963761198400"  # 2^6 3^4 5^2 7^2 11 13 17: many divisors
    status, out, err = run(capsys, "chains", size, size, "--factors", "1-64", "--kind", "any",
                           "--sort", sort, "--limit", "3", "--format", "json")  # fmt: skip
    assert status == 2 and out == ""
    assert "chain request too large" in err and "n_factors=range(1, 65)" in err
    assert err.count("\n") == 1


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["chains", "0", "8"], "m must be positive"),
        (["chains", "8", "x"], "argument N: invalid integer: 'x'"),
        (["chains", "8", "8", "--factors", "5-2"], "the range is empty"),
        (["chains", "8", "8", "--factors", "two"], "--factors must look like"),
        # what the integer options refuse, as int() would not
        (["chains", "8", "8", "--factors", "\u0663"], "--factors must look like"),  # Arabic 3
        (["chains", "8", "8", "--factors", "+3"], "--factors must look like"),
        (["chains", "8", "8", "--factors", "1_0"], "--factors must look like"),
        (["chains", "8", "8", "--factors", "1-+3"], "--factors must look like"),
        (["chains", "8", "8", "--factors", "99"], "at most 64"),
        (["chains", "8", "8", "--kind", "flat"], "invalid choice"),
        (["chains", "8", "8", "--max-dim", "4"], "below max(m, n) = 8"),
        (["chains", "8", "8", "--kind", "bulging", "--max-dim", "8"], "needs a dimension above"),
        (["chains", "8", "8", "--limit", "-1"], "--limit must be at least 0"),
        (["check", "--sup", "4 4 4", "--sub", "2 2 1"], "not a whole number of (p, q) pairs"),
        (["check", "--sup", "4 4 4 4", "--sub", "2 2 1"], "sup has 2 (p, q) pairs but sub has 1"),
        (["check", "--sup", "4 4", "--sub", "2 2 3"], "factor 1 of 1"),
        (["check", "--sup", "4 4"], "--sup and --sub must be given together"),
        (["check"], "no chain given"),
        (["check", "--r-shapes", "[[4, 4, 2, 2"], "malformed JSON"),
        (["check", "--chain", "/nonexistent/chain.json"], "cannot read chain file"),
        (["check", "--sup", "4 4", "--sub", "4 4 1", "--row", "2"], "--row only applies"),
    ],
)
def test_user_errors_print_one_line_and_exit_2(capsys, argv, words):
    status, out, err = run(capsys, *argv)
    assert status == 2
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("pydebut")
    assert words in err
    assert "Traceback" not in err


def test_malformed_chain_files(capsys, tmp_path):
    cases = {
        "not json": "is not valid JSON",
        "[1]": "expected a JSON object with 'sup' and 'sub'",
        '{"sup": [[4, 4]]}': "expected keys 'sup' and 'sub'",
        '{"chains": []}': "lists no chains",
        '{"sup": [[4, 4]], "sub": [[4, 4, 1]], "r_shapes": [[4, 4, 2, 2, 2]]}': "chain twice",
        '{"sup": [[4, 4]], "r_shapes": [[4, 4, 2, 2, 2]]}': "chain twice",
        '[{"row": 1, "sup": [[4, 4]], "sub": [[4, 4, 1]]}, {"row": 1, "sup": [[4, 4]], '
        '"sub": [[2, 2, 2]]}]': "numbers two chains as row 1",
        '{"sup": [[4, 4], [4, 4]], "sub": [[2, 2, 2], [2, 2, 1]], "sub": [2, 2, 1]}': (
            "gives 'sub' twice in one object"
        ),
        '{"sup": [[4, 4]], "sub": [[4, 4, 1]]}': None,
    }
    for i, (text, words) in enumerate(cases.items()):
        path = tmp_path / f"case{i}.json"
        path.write_text(text)
        status, _, err = run(capsys, "check", "--chain", str(path))
        if words is None:
            assert status == 0
        else:
            assert status == 2 and words in err and err.count("\n") == 1


# --- pydebut check -------------------------------------------------------------------


def test_check_exit_status_follows_density(capsys):
    assert run(capsys, "check", *sup_sub_arguments(VGG_512))[0] == 0
    status, out, _ = run(capsys, "check", *sup_sub_arguments(NOT_DENSE))
    assert status == 1
    assert "not dense: output 0 is not connected to input 2" in out


def test_check_of_the_512_by_4608_example(capsys):
    status, out, _ = run(capsys, "check", *sup_sub_arguments(VGG_512), "--format", "json")
    assert status == 0
    report = json.loads(out)
    assert report["shape"] == [512, 4608]
    assert report["dense"] is True and report["missing"] is None
    assert report["chainable"] is True and report["kind"] == VGG_512.kind
    assert [f["nnz"] for f in report["factors"]] == [f.nnz for f in VGG_512]
    assert report["params"] == sum(f["nnz"] for f in report["factors"])


def test_check_table_for_a_non_chainable_dense_chain(capsys):
    r_shapes = "[[4,3,4,3,1],[8,4,2,1,4],[16,8,2,1,4],[32,16,2,1,16],[64,32,2,1,32]]"
    status, out, _ = run(capsys, "check", "--r-shapes", r_shapes)
    assert status == 0
    lines = out.splitlines()
    assert lines[0].split() == ["factor", "p", "q", "r", "s", "t", "blocks", "nnz"]
    assert lines[2].split() == ["F_1", "64", "32", "2", "1", "32", "1", "64"]
    assert "not chainable, family general" in out
    assert out.rstrip().endswith("density: dense (reachability)")


def test_check_reports_a_large_chain_whose_transpose_is_chainable(capsys, tmp_path):
    # Before: only the MAX_REACH_WORK error, exit status 2, for this valid 65536 x 65536 chain
    size = 2**16
    path = tmp_path / "big.json"
    path.write_text(json.dumps({"r_shapes": [(size, size, 2, 2, 2**i) for i in range(16)][::-1]}))
    status, out, _ = run(capsys, "check", "--chain", str(path))
    assert status == 0
    assert "16 factors" in out
    assert out.rstrip().endswith("density: dense (transpose chainable)")


def test_check_counts_one_factor_in_the_singular(capsys):
    status, out, _ = run(capsys, "check", "--sup", "1 1", "--sub", "1 1 1")
    assert status == 0
    assert "shape 1 x 1, 1 factor, 1 params (compression 1.00x), 2 flops per vector" in out


def test_check_reports_rank_weights(capsys):
    chain = Chain.from_abcd([(1, 2, 2, 2, 1, 3), (2, 2, 2, 1, 3, 1)])
    status, out, _ = run(capsys, "check", *sup_sub_arguments(chain))
    assert status == 0
    assert "family rank-weighted (weights 3)" in out
    assert "density: dense (rank-weighted)" in out
    # 8 x 8 through a 16-wide inside: every weight, in order
    unequal = ["--sup", "[[8, 16], [16, 8], [8, 8]]", "--sub", "[[1, 2, 8], [2, 1, 8], [8, 8, 1]]"]
    status, out, _ = run(capsys, "check", *unequal, "--format", "json")
    assert status == 0 and json.loads(out)["rank_weights"] == [2, 1]
    status, out, _ = run(capsys, "check", *unequal)
    assert status == 0 and "family rank-weighted (weights 2, 1)" in out


def test_check_states_the_shape_rows_by_columns(capsys):
    status, out, _ = run(capsys, "check", "--sup", "16 12", "--sub", "16 12 1")
    assert status == 0
    line = "shape 16 x 12, 1 factor, 192 params (compression 1.00x), 384 flops per vector"
    assert f"\n{line}\n" in out


@pytest.mark.parametrize("name", ["lenet.png", "lenet.PNG"])  # any case, as savefig takes it
def test_check_plot_writes_a_png(capsys, tmp_path, name):
    pytest.importorskip("matplotlib")
    path = tmp_path / name
    status, _, err = run(capsys, "check", *sup_sub_arguments(LENET), "--plot", str(path))
    assert status == 0
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"wrote {path}" in err


def test_plot_without_matplotlib_is_a_one_line_error(capsys, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    status, _, err = run(capsys, "check", *sup_sub_arguments(LENET), "--plot",
                         str(tmp_path / "x.png"))  # fmt: skip
    assert status == 2
    assert "pip install pydebut[plot]" in err and err.count("\n") == 1


def test_plot_shows_factors_and_partial_products():
    pytest.importorskip("matplotlib")
    from pydebut.plotting import plot_chain

    figure = plot_chain(LENET, max_pixels=64)
    assert len(figure.axes) == 2 * LENET.n_factors
    full = figure.axes[LENET.n_factors].images[0].get_array()
    assert full.shape == (19, 58) and full.all()  # 128 x 400 pooled by square cells of 7 x 7
    assert is_dense(LENET)
    with pytest.raises(ValueError, match="max_pixels must be positive"):
        plot_chain(LENET, max_pixels=0)


def test_rank_column_shows_the_largest_weight(capsys):
    status, out, _ = run(capsys, "chains", "4", "6", "--factors", "2", "--rank", "3",
                         "--kind", "any", "--format", "json", "--limit", "1000")  # fmt: skip
    assert status == 0
    rows = json.loads(out)["chains"]
    assert len(rows) == count_chains(4, 6, n_factors=2, rank=3)
    ranks = {row["rank"] for row in rows}
    assert ranks == {1, 2, 3}
    for row in rows:
        chain = Chain.from_sup_sub(row["sup"], row["sub"])
        assert row["rank"] == max(rank_weights(chain))
    # three factors have two weights: the largest, also where they differ
    status, out, _ = run(capsys, "chains", "8", "8", "--factors", "3", "--rank", "2",
                         "--kind", "any", "--format", "json", "--limit", "1000")  # fmt: skip
    rows = json.loads(out)["chains"]
    weights = [rank_weights(Chain.from_sup_sub(row["sup"], row["sub"])) for row in rows]
    assert status == 0 and any(len(set(w)) > 1 for w in weights)
    assert [row["rank"] for row in rows] == [max(w) for w in weights]


def test_chains_default_to_the_library_kind(capsys):
    """Like min_param_chain and pareto_front, the listing is monotonic unless asked."""
    status, out, _ = run(capsys, "chains", "16", "16", "--format", "json", "--limit", "5")
    assert status == 0
    document = json.loads(out)
    assert document["filters"]["kind"] == "monotonic"
    assert document["total"] == count_chains(16, 16, n_factors=range(1, 5), kind="monotonic")
    assert {row["kind"] for row in document["chains"]} == {"monotonic"}
    for row in document["chains"]:
        chain = Chain.from_sup_sub(row["sup"], row["sub"])
        assert min(f.q for f in chain) > 1  # no rank-one chain through a dimension of 1


def test_check_plot_without_suffix_reports_the_file_written(capsys, tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    monkeypatch.chdir(tmp_path)
    status, _, err = run(capsys, "check", *sup_sub_arguments(NOT_DENSE), "--plot", "noext")
    assert status == 1
    assert (tmp_path / "noext.png").read_bytes()[:4] == b"\x89PNG"
    assert not (tmp_path / "noext").exists()
    assert err.strip() == "wrote noext.png"


def test_long_listings_stream_and_tables_are_bounded(capsys, monkeypatch):
    from pydebut.commands import chains as chains_command

    first = next(enumerate_chains(8, 8, n_factors=2, order="params"))

    def one_then_fail(m, n, sort, request):  # the search stops after the first chain
        yield first
        raise KeyboardInterrupt

    monkeypatch.setattr(chains_command, "_sorted_chains", one_then_fail)
    for fmt, words in [("csv", f"1,2,{first.n_params},"), ("json", '"row": 1, "factors": 2')]:
        status, out, _ = run(capsys, "chains", "8", "8", "--factors", "2", "--format", fmt)
        assert status != 0 and words in out  # written before the search went on
    monkeypatch.setattr(chains_command, "MAX_TABLE_ROWS", 1)
    status, _, err = run(capsys, "chains", "8", "8", "--factors", "2", "--limit", "2")
    assert status == 2 and "a table of 2 rows, more than 1; --format csv or json" in err


@pytest.mark.parametrize("sort", ["params", "flops", "max_dim", "factors"])
def test_every_sort_orders_the_rows_by_its_column(capsys, sort):
    # --sort max_dim could have listed by factors unnoticed: only params and factors were pinned
    _, out, _ = run(capsys, "chains", "16", "16", "--kind", "any", "--sort", sort,
                    "--format", "json", "--limit", "100000")  # fmt: skip
    column = [row[sort] for row in json.loads(out)["chains"]]
    assert len(column) == count_chains(16, 16, n_factors=range(1, 5), kind="any")
    assert column == sorted(column) and len(set(column)) > 1


def test_a_factor_range_of_one_count_lists_that_count(capsys):
    _, out, _ = run(capsys, "chains", "16", "16", "--factors", "2-2", "--format", "json")
    rows = json.loads(out)["chains"]
    assert rows and {row["factors"] for row in rows} == {2}


def test_row_does_not_apply_to_a_file_of_one_chain(capsys, tmp_path):
    # --row 2 on a file of one chain was ignored, and that chain checked, unnoticed
    path = tmp_path / "chain.json"
    sup, sub = Chain.from_factorizations([2, 2], [2, 2]).to_sup_sub()
    path.write_text(json.dumps({"sup": sup, "sub": sub}))
    status, _, err = run(capsys, "check", "--chain", str(path), "--row", "2")
    assert status == 2 and "holds one chain, so --row does not apply" in err


def test_a_chain_file_of_exactly_the_size_limit_is_read(capsys, tmp_path, monkeypatch):
    from pydebut.commands import _common

    sup, sub = Chain.from_factorizations([2, 2], [2, 2]).to_sup_sub()
    text = json.dumps({"sup": sup, "sub": sub})
    monkeypatch.setattr(_common, "MAX_CHAIN_FILE_BYTES", len(text))
    path = tmp_path / "chain.json"
    path.write_text(text)
    status, out, _ = run(capsys, "check", "--chain", str(path))
    assert status == 0 and "dense" in out
    path.write_text(text + " ")
    status, _, err = run(capsys, "check", "--chain", str(path))
    assert status == 2 and "is larger than" in err
