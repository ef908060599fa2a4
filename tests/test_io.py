"""save/load: round trips, and a clear error for every damaged or foreign file."""

import errno
import io
import os
import re
import stat
import threading
import tracemalloc
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from pydebut import Chain, DeButOperator, load, save
from pydebut.io import MAX_FACTORS, npz_path
from pydebut.special import hadamard

CHAIN = Chain([(8, 8, 2, 2, 2), (8, 12, 2, 3, 1)])
CHAIN_NAN = Chain([(4, 4, 2, 2, 2), (4, 4, 2, 2, 1)])


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex64, np.complex128])
@pytest.mark.parametrize("compress", [False, True])
def test_round_trip(tmp_path, dtype, compress):
    op = DeButOperator.random(CHAIN, rng=0, dtype=dtype)
    save(tmp_path / "op.npz", op, compress=compress)
    back = load(tmp_path / "op.npz")
    assert back.chain == op.chain and back.dtype == op.dtype
    assert all(np.array_equal(a, b) for a, b in zip(back.weights, op.weights))


@pytest.mark.parametrize("compress", [False, True])
def test_round_trip_through_file_objects(tmp_path, compress):
    op = DeButOperator.random(CHAIN, rng=0, dtype=np.complex64).with_permutations(
        row_perm=np.arange(8)[::-1]
    )
    buffer = io.BytesIO(b"head")  # an archive after other bytes is read from the position
    buffer.seek(4)
    save(buffer, op, compress=compress)
    buffer.seek(4)
    back = load(buffer)
    assert back.chain == op.chain and back.dtype == op.dtype
    assert np.array_equal(back.toarray(), op.toarray())
    with open(tmp_path / "named", "wb") as file:  # no .npz added to an open file
        save(file, op)
    with open(tmp_path / "named", "rb") as file:
        assert np.array_equal(load(file).toarray(), op.toarray())


def saved_bytes(op, compress=False):
    buffer = io.BytesIO()
    save(buffer, op, compress=compress)
    return buffer.getvalue()


def test_each_archive_of_a_stream_is_read_at_its_position(tmp_path):
    # zipfile reads the archive that ends a stream: load() of a stream holding the
    # archives of an (8, 8) and a (4, 4) operator returned the (4, 4) one from position 0
    ops = [DeButOperator.random(CHAIN, rng=0), hadamard(4), DeButOperator.random(CHAIN_NAN, rng=1)]
    buffer = io.BytesIO(b"head")
    starts = []
    for op, compress in zip(ops, (False, True, False), strict=True):
        starts.append(buffer.tell())
        save(buffer, op, compress=compress)
    buffer.write(b"tail")  # bytes after the last archive, as after a single one
    for start, op in zip(starts, ops, strict=True):
        buffer.seek(start)
        assert np.array_equal(load(buffer).toarray(), op.toarray())
    path = tmp_path / "two.npz"
    path.write_bytes(saved_bytes(ops[0]) + saved_bytes(ops[1]))
    assert np.array_equal(load(path).toarray(), ops[0].toarray())
    buffer = io.BytesIO(saved_bytes(ops[0]) + b"gap" * 10 + saved_bytes(ops[1]))
    assert load(buffer).shape == (8, 12)  # the bytes after an archive are read past


@pytest.mark.parametrize(
    ("data", "position", "message"),
    [
        (b"head" + saved_bytes(hadamard(4)), 0, "byte 0, is followed by a zip archive, at byte 4,"),
        (saved_bytes(hadamard(8))[:-30] + saved_bytes(hadamard(4)), 0, "archive, at byte [0-9,]+,"),
        (saved_bytes(hadamard(4)), 10, "position, byte 10, is inside or after the zip archive"),
        (saved_bytes(hadamard(4)), len(saved_bytes(hadamard(4))), "seek to byte 0"),
        (saved_bytes(hadamard(4)) + saved_bytes(hadamard(2)) * 101, 0, "more than 100 zip"),
    ],
)
def test_a_stream_without_an_archive_at_its_position_is_refused(data, position, message):
    # a cut archive followed by another was read as the other, as were bytes before one
    buffer = io.BytesIO(data)
    buffer.seek(position)
    with pytest.raises(ValueError, match=f"^<BytesIO>: .*{message}"):
        load(buffer)


def test_save_refuses_what_load_would_not_read(tmp_path):
    long = DeButOperator.identity([(2, 2, 2, 2, 1)] * (MAX_FACTORS + 1))
    with pytest.raises(ValueError, match="10,001 factors; a pydebut file holds at most"):
        save(tmp_path / "long.npz", long)
    assert not (tmp_path / "long.npz").exists()
    just = DeButOperator.identity([(2, 2, 2, 2, 1)] * MAX_FACTORS)
    save(tmp_path / "just.npz", just)
    assert load(tmp_path / "just.npz").n_factors == MAX_FACTORS


def test_operators_with_non_finite_weights_round_trip_on_request(tmp_path):
    weights = [np.ones((1, 2, 2, 2)), np.array([1.0, np.inf, np.nan, 3.0] * 2).reshape(2, 2, 2, 1)]
    op = DeButOperator([(4, 4, 2, 2, 2), (4, 4, 2, 2, 1)], weights, check_finite=False)
    path = tmp_path / "inf.npz"
    save(path, op)
    with pytest.raises(ValueError, match=r"contain NaN or infinity \(check_finite=False accepts"):
        load(path)
    for copy in (
        load(path, check_finite=False),
        DeButOperator.from_twiddle(*op.to_twiddle(), check_finite=False),
        op.astype(np.complex64).astype(np.float64),
    ):
        for mine, theirs in zip(copy.weights, op.weights, strict=True):
            np.testing.assert_array_equal(mine, theirs)
    with pytest.raises(ValueError, match="overflow to infinity in float32"):
        DeButOperator([(2, 2, 2, 2, 1)], [np.full((1, 2, 2, 1), 1e300)]).astype(np.float32)


def test_the_finiteness_check_takes_no_array_of_its_own():
    # np.isfinite(weights).all() took a byte per weight: load()'s peak was 2.12x the weights
    # (271 MiB of RSS for 128 MiB of float64), above the 2x its docstring states
    weights = np.frombuffer(bytes(8 << 20), dtype=np.float64).reshape(1, 1024, 1024, 1)
    tracemalloc.start()
    try:
        op = DeButOperator([(1024, 1024, 1024, 1024, 1)], [weights])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert op.weights[0] is weights  # kept as given: what was taken is the check's
    assert peak < weights.nbytes / 16


@pytest.mark.parametrize("flag", [None, 0, 1, [], "no", np.float64(1.0)])
def test_boolean_flags_refuse_what_is_not_a_bool(tmp_path, flag):
    # each was read by its truth: check_finite=None loaded NaN weights, compress="no"
    # deflated the archive
    weights = [np.ones((1, 2, 2, 2)), np.full((2, 2, 2, 1), np.nan)]
    op = DeButOperator(CHAIN_NAN, weights, check_finite=False)
    save(tmp_path / "nan.npz", op)
    name = type(flag).__name__
    calls = [
        ("compress", lambda: save(tmp_path / "op.npz", op, compress=flag)),
        ("check_finite", lambda: load(tmp_path / "nan.npz", check_finite=flag)),
        ("check_finite", lambda: DeButOperator(CHAIN_NAN, weights, check_finite=flag)),
        ("permutations", lambda: op.to_twiddle(permutations=flag)),
        ("adjoint", lambda: op.apply_rows(np.ones((3, 4)), adjoint=flag)),
    ]
    for argument, call in calls:
        with pytest.raises(TypeError, match=f"^{argument} must be a bool, got {name}$"):
            call()
    assert not (tmp_path / "op.npz").exists()
    for flag in (True, np.True_):  # NumPy's bools are bools, as for progress and allow_diagonal
        save(tmp_path / "op.npz", op, compress=flag)
        with pytest.raises(ValueError, match="NaN or infinity"):
            load(tmp_path / "nan.npz", check_finite=flag)
        assert len(op.to_twiddle(permutations=flag)) == 4
        assert op.apply_rows(np.ones((3, 4)), adjoint=flag).shape == (3, 4)


def test_file_objects_in_text_mode_or_unseekable_are_refused(tmp_path):
    op = DeButOperator.random(CHAIN, rng=0)
    with open(tmp_path / "t.npz", "w") as text, pytest.raises(TypeError, match="binary mode"):
        save(text, op)
    save(tmp_path / "b.npz", op)
    with open(tmp_path / "b.npz") as text, pytest.raises(TypeError, match="binary mode"):
        load(text)

    class Stream(io.RawIOBase):
        def readable(self):
            return True

    with pytest.raises(TypeError, match="seekable"):
        load(Stream())
    with pytest.raises(ValueError, match="<BytesIO> is not a pydebut .npz file"):
        load(io.BytesIO(b"not a zip"))


def arrays_of(op):
    return {
        "format": np.array("pydebut"),
        "format_version": np.array(1),
        "specs": np.array([f.as_tuple() for f in op.chain]),
        **{f"weights_{i}": w for i, w in enumerate(op.weights)},
    }


def write(path, **arrays):
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda a: a.pop("specs"), "the array 'specs' is missing"),
        (lambda a: a.update(format=np.array("other")), "is not a pydebut file"),
        (lambda a: a.update(format_version=np.array(7)), "format version 7"),
        (lambda a: a.update(format_version=np.array(1.0)), "format_version must be an integer"),
        (lambda a: a.update(specs=np.array([[8, 8, 2, 2]])), r"specs must be .* shape \(L, 5\)"),
        (
            lambda a: a.update(specs=np.array([[8, 8, 2, 2, 2], [8, 12, 2, 3, 5]])),
            "invalid chain: factor 2 of 2",
        ),
        (lambda a: a.pop("weights_1"), r"arrays missing \['weights_1'\]"),
        (lambda a: a.update(extra=np.zeros(2)), r"unexpected \['extra'\]"),
        (lambda a: a.update(weights_0=np.zeros((1, 2, 2))), "factor 1 of 2 .* must have shape"),
        (lambda a: a.update(weights_1=np.full((4, 2, 3, 1), np.inf)), "NaN or infinity"),
        (lambda a: a.update(weights_1=np.full((4, 2, 3, 1), "x")), "dtype <U1"),
    ],
)
def test_tampered_files_are_rejected(tmp_path, change, message):
    arrays = arrays_of(DeButOperator.random(CHAIN, rng=0))
    change(arrays)
    path = write(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ValueError, match=message):
        load(path)


def test_pickled_objects_are_never_loaded(tmp_path):
    arrays = arrays_of(DeButOperator.random(CHAIN, rng=0))
    arrays["weights_0"] = np.array([object()], dtype=object)
    path = write(tmp_path / "pickle.npz", **arrays)
    with pytest.raises(ValueError, match="pickle"):
        load(path)


def test_truncated_and_foreign_files(tmp_path):
    good = tmp_path / "good.npz"
    save(good, hadamard(16))
    data = good.read_bytes()
    for size in (10, len(data) // 2, len(data) - 30):
        cut = tmp_path / f"cut{size}.npz"
        cut.write_bytes(data[:size])
        with pytest.raises(ValueError):
            load(cut)
    text = tmp_path / "text.npz"
    text.write_text("hello")
    with pytest.raises(ValueError, match="not a pydebut .npz file"):
        load(text)
    single = tmp_path / "single.npy"
    np.save(single, np.zeros(3))
    with pytest.raises(ValueError, match="single .npy array"):
        load(single)
    with pytest.raises(OSError):
        load(tmp_path / "missing.npz")
    with pytest.raises(TypeError, match="needs a DeButOperator, got ndarray$"):
        save(tmp_path / "x.npz", np.eye(3))
    # a chain has no weights: the error said only "got Chain"
    with pytest.raises(TypeError, match=r"got Chain: a Chain has no weights; write chain.to_json"):
        save(tmp_path / "x.npz", Chain([(4, 4, 2, 2, 2)]))
    assert not (tmp_path / "x.npz").exists()


def test_corrupted_member_is_reported(tmp_path):
    buffer = io.BytesIO()
    np.savez(buffer, **arrays_of(DeButOperator.random(CHAIN, rng=0)))
    raw = bytearray(buffer.getvalue())
    with zipfile.ZipFile(io.BytesIO(bytes(raw))) as archive:
        info = archive.getinfo("weights_1.npy")
    start = info.header_offset + 30 + len(info.filename) + 80
    raw[start : start + 16] = b"\xff" * 16  # flip data bytes: CRC no longer matches
    path = tmp_path / "crc.npz"
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="damaged or truncated|pydebut"):
        load(path)


@pytest.mark.parametrize("path", ["", ".", "sub/", "sub/.."])
def test_save_refuses_a_path_that_names_a_folder(tmp_path, monkeypatch, path):
    # Path("sub/") would drop the separator and write sub.npz
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="empty|names a folder"):
        save(path, hadamard(4))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("path", ["", Path(""), ".", "sub/"])
def test_load_refuses_a_path_that_names_no_file(tmp_path, monkeypatch, path):
    # Path("") is Path("."): open() then raised IsADirectoryError for '.'
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="the path is empty|names a folder, not a file"):
        load(path)


def test_load_refuses_an_existing_folder_by_name(tmp_path):
    # Before: IsADirectoryError from open() for a folder named without a trailing separator
    with pytest.raises(ValueError, match=f"{tmp_path} is a folder, not a file"):
        load(tmp_path)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="no /proc file system")
def test_a_file_that_cannot_seek_to_its_end_is_not_a_pydebut_file():
    # a /proc file is regular, but seeking to its end fails (EINVAL)
    with pytest.raises(ValueError, match="/proc/self/status is not a pydebut .npz file"):
        load("/proc/self/status")


# --- a save replaces the file in one step -------------------------------------------------


def same_operator(a: DeButOperator, b: DeButOperator) -> bool:
    return a.chain == b.chain and all(np.array_equal(x, y) for x, y in zip(a.weights, b.weights))


def test_a_failed_save_leaves_the_old_file_and_no_other(tmp_path, monkeypatch):
    # Before: the file was opened "wb" and written in place: a full disk or an interrupt
    # midway left a damaged file where the last good one had been
    path = tmp_path / "op.npz"
    old = DeButOperator.random([(8, 8, 2, 2, 1)], rng=0)
    save(path, old)

    def full_disk(handle, **arrays):
        handle.write(b"PK" + bytes(1000))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "savez", full_disk)
    # and named the file as little as the disk did: "[Errno 28] No space left on device"
    with pytest.raises(OSError, match=re.escape(f"No space left on device: '{path}'")):
        save(path, DeButOperator.random([(8, 8, 2, 2, 1)], rng=1))
    assert [p.name for p in tmp_path.iterdir()] == ["op.npz"]
    assert same_operator(load(path), old)


def test_readers_never_see_a_part_of_a_save(tmp_path):
    # Before: loads beside a thread saving the same file every few ms failed about 70% of
    # the time ("File is not a zip file", "Truncated file header")
    path = tmp_path / "op.npz"
    versions = [DeButOperator.random([(64, 64, 2, 2, 1)] * 3, rng=seed) for seed in range(2)]
    save(path, versions[0])
    stop = threading.Event()

    def saving() -> None:
        turn = 0
        while not stop.is_set():
            save(path, versions[turn % 2])
            turn += 1

    saver = threading.Thread(target=saving)
    saver.start()
    try:
        loads = [load(path) for _ in range(200)]
    finally:
        stop.set()
        saver.join()
    assert all(any(same_operator(op, v) for v in versions) for op in loads)
    assert [p.name for p in tmp_path.iterdir()] == ["op.npz"]


def test_a_save_keeps_permissions_follows_links_and_names_the_path(tmp_path):
    op = DeButOperator.random([(8, 8, 2, 2, 1)], rng=0)
    kept = tmp_path / "kept.npz"
    save(kept, op)
    kept.chmod(0o640)
    save(kept, op)
    assert stat.S_IMODE(kept.stat().st_mode) == 0o640
    opened, new = tmp_path / "opened", tmp_path / "new.npz"
    opened.open("wb").close()  # the mode open() gives a new file under this umask
    save(new, op)
    assert stat.S_IMODE(new.stat().st_mode) == stat.S_IMODE(opened.stat().st_mode)
    link = tmp_path / "link.npz"
    link.symlink_to(kept)
    save(link, DeButOperator.random([(8, 8, 2, 2, 1)], rng=1))
    assert link.is_symlink() and same_operator(load(kept), load(link))
    missing = tmp_path / "no" / "such" / "op.npz"
    with pytest.raises(FileNotFoundError) as refused:
        save(missing, op)
    assert refused.value.filename == str(missing)


def test_compress_deflates_every_member_and_its_absence_stores_them(tmp_path):
    op = DeButOperator.random([(4, 4, 2, 2, 2), (4, 4, 2, 2, 1)], rng=0)
    for compress, method in ((True, zipfile.ZIP_DEFLATED), (False, zipfile.ZIP_STORED)):
        save(tmp_path / "op.npz", op, compress=compress)
        with zipfile.ZipFile(tmp_path / "op.npz") as zf:
            assert {info.compress_type for info in zf.infolist()} == {method}
        assert same_operator(load(tmp_path / "op.npz"), op)


def test_the_npz_suffix_is_matched_as_numpy_matches_it():
    # case-sensitive, as np.savez: "op.NPZ" gets the suffix added
    assert [npz_path(name).name for name in ("op.NPZ", "op.npz", "op.npz.v2")] == [
        "op.NPZ.npz",
        "op.npz",
        "op.npz.v2.npz",
    ]


@pytest.mark.parametrize("name", ["w" * 251 + ".npz", "\u00e9" * 125 + ".npz"])
def test_a_save_takes_a_file_name_of_every_length_a_file_may_have(tmp_path, name):
    # the temporary name added 23 characters: a name of 233-255 bytes was "too long"
    assert len(os.fsencode(name)) in (254, 255)
    op = DeButOperator.random([(8, 8, 2, 2, 1)], rng=0)
    save(tmp_path / name, op)
    assert same_operator(load(tmp_path / name), op)
    assert os.listdir(tmp_path) == [name]


def test_a_save_refuses_a_file_open_would_refuse(tmp_path, monkeypatch):
    # it wrote a new file beside the read-only one, swapped it in and made it read-only
    op = DeButOperator.random([(8, 8, 2, 2, 1)], rng=0)
    kept = tmp_path / "kept.npz"
    save(kept, op)
    kept.chmod(0o444)
    if os.geteuid() == 0:  # root may write it, with open() as with save(): as another user
        access = os.access
        monkeypatch.setattr(os, "access", lambda p, mode: mode != os.W_OK and access(p, mode))
    with pytest.raises(PermissionError) as refused:
        save(kept, DeButOperator.random([(8, 8, 2, 2, 1)], rng=1))
    assert refused.value.filename == str(kept)
    assert same_operator(load(kept), op) and os.listdir(tmp_path) == ["kept.npz"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes on this system")
def test_a_save_into_a_named_pipe_writes_through_it(tmp_path):
    pipe = tmp_path / "pipe.npz"
    os.mkfifo(pipe)
    op = DeButOperator.random([(8, 8, 2, 2, 1)], rng=0)
    with ThreadPoolExecutor(1) as pool:
        received = pool.submit(pipe.read_bytes)
        save(pipe, op)
        data = received.result(timeout=30)
    assert stat.S_ISFIFO(pipe.stat().st_mode)
    assert same_operator(load(io.BytesIO(data)), op)


def test_a_file_that_ends_while_it_is_read_is_damaged_not_a_struct_error():
    # Before: a zip64 locator read short raised struct.error ("unpack requires a buffer of
    # 20 bytes"), as when a file shrinks under a reader
    saved = io.BytesIO()
    save(saved, DeButOperator.random([(64, 64, 2, 2, 1)] * 3, rng=0))

    class EndsEarly(io.BytesIO):
        def __init__(self, data: bytes, reads: int) -> None:
            super().__init__(data)
            self.reads_left = reads

        def read(self, size: int | None = -1) -> bytes:
            self.reads_left -= 1
            return super().read(size) if self.reads_left >= 0 else b""

    whole = EndsEarly(saved.getvalue(), 10**6)
    load(whole)
    for reads in range(10**6 - whole.reads_left):  # every read of a whole load, cut there
        with pytest.raises(ValueError, match="is not a pydebut .npz file|damaged"):
            load(EndsEarly(saved.getvalue(), reads))
