"""load() on damaged, forged and hostile files: a ValueError naming the file, in bounded memory."""

from __future__ import annotations

import io
import os
import struct
import tempfile
import tracemalloc
import warnings
import zipfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pydebut import Chain, DeButOperator, load, save

from .example_counts import examples

CHAIN = Chain([(8, 8, 2, 2, 2), (8, 12, 2, 3, 1)])


def saved(compress: bool) -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "op.npz"
        save(path, DeButOperator.random(CHAIN, rng=0), compress=compress)
        return path.read_bytes()


GOOD = {False: saved(False), True: saved(True)}


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def archive(members: dict[str, bytes], compress: bool = False) -> bytes:
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=method) as zf:
        for key, data in members.items():
            zf.writestr(key + ".npy", data)
    return buffer.getvalue()


def raw_zip(name: str, data: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr(name, data)
    return buffer.getvalue()


def header_members(specs: list[tuple[int, ...]]) -> dict[str, bytes]:
    return {
        "format": npy(np.array("pydebut")),
        "format_version": npy(np.array(1)),
        "specs": npy(np.array(specs, dtype=np.int64)),
    }


def forged_header(shape: tuple[int, ...], descr: str = "<f8") -> bytes:
    """A .npy header that claims ``shape`` (and no data behind it)."""
    text = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape!r}, }}"
    text += " " * (-(len(text) + 11) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text.encode("latin1")


def load_bytes(tmp_path, data: bytes, **kwargs):
    path = tmp_path / "hostile.npz"
    path.write_bytes(data)
    return path, lambda: load(path, **kwargs)


def assert_refused(tmp_path, data: bytes, words: str = "", max_peak: int = 8 << 20, **kwargs):
    """load() raises a ValueError naming the file, with a peak allocation below ``max_peak``."""
    path, call = load_bytes(tmp_path, data, **kwargs)
    tracemalloc.start()
    try:
        with pytest.raises(ValueError) as info:
            call()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(path) in str(info.value)
    assert words in str(info.value)
    assert peak < max_peak, f"load() allocated {peak} bytes before refusing"


@given(compress=st.booleans(), data=st.data())
@settings(
    max_examples=examples(60),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
def test_truncations_and_bit_flips_load_or_raise_value_error(tmp_path, compress, data):
    good = GOOD[compress]
    if data.draw(st.booleans(), label="truncate"):
        damaged = good[: data.draw(st.integers(0, len(good) - 1), label="size")]
    else:
        raw = bytearray(good)
        for _ in range(data.draw(st.integers(1, 4), label="flips")):
            position = data.draw(st.integers(0, len(raw) - 1), label="byte")
            raw[position] ^= 1 << data.draw(st.integers(0, 7), label="bit")
        damaged = bytes(raw)
    path, call = load_bytes(tmp_path, damaged)
    try:
        op = call()
    except ValueError as err:
        assert str(path) in str(err)
    else:  # the flip hit something the format does not use (e.g. a timestamp)
        assert op.chain == CHAIN


@given(
    shape=st.lists(st.integers(0, 2**40), min_size=0, max_size=5).map(tuple),
    descr=st.sampled_from(["<f8", ">c16", "|O", "<U3", "|V8", "<f4", "[('a', '<f8')]"]),
)
@settings(
    max_examples=examples(60),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
def test_forged_headers_are_refused_before_reading(tmp_path, shape, descr):
    members = header_members([spec.as_tuple() for spec in CHAIN])
    members["weights_0"] = npy(DeButOperator.random(CHAIN, rng=0).weights[0])
    members["weights_1"] = forged_header(shape, descr) + b"\0" * 64
    assert_refused(tmp_path, archive(members))


def test_a_header_claiming_tebibytes_is_refused_before_allocation(tmp_path):
    big = (2**40, 2**40, 1, 1, 1)  # a valid factor with 2**40 weights: 8 TiB
    members = header_members([big])
    members["weights_0"] = forged_header((2**40, 1, 1, 1)) + b"\0" * 4096
    assert_refused(tmp_path, archive(members), "header announces 8796093022208")
    assert_refused(tmp_path, archive(members), "announces", max_bytes=2**50)


def test_a_zip_bomb_is_refused_without_inflating_it(tmp_path):
    # 64 MiB of zeros deflate to 64 KiB; the chain expects exactly that many weights.
    side = 2**23
    members = header_members([(side, side, 1, 1, 1)])
    members["weights_0"] = forged_header((side, 1, 1, 1)) + bytes(8 * side)
    bomb = archive(members, compress=True)
    assert len(bomb) < 1 << 20
    assert_refused(tmp_path, bomb, "max_bytes", max_bytes=2**20)


def test_a_member_longer_than_its_declared_size_is_not_inflated(tmp_path):
    # The zip directory declares a small member, the deflate stream holds 64 MiB.
    members = header_members([spec.as_tuple() for spec in CHAIN])
    op = DeButOperator.random(CHAIN, rng=0)
    members["weights_0"] = npy(op.weights[0])
    members["weights_1"] = npy(op.weights[1]) + bytes(64 << 20)
    raw = bytearray(archive(members, compress=True))
    with zipfile.ZipFile(io.BytesIO(bytes(raw))) as zf:
        info = zf.getinfo("weights_1.npy")
    honest = len(npy(op.weights[1]))
    # patch the uncompressed size in the local header and in the central directory
    local = info.header_offset
    raw[local + 22 : local + 26] = struct.pack("<I", honest)
    for start in _central_entries(bytes(raw)):
        name_length = struct.unpack("<H", raw[start + 28 : start + 30])[0]
        if raw[start + 46 : start + 46 + name_length] == b"weights_1.npy":
            raw[start + 24 : start + 28] = struct.pack("<I", honest)
    assert_refused(tmp_path, bytes(raw))


def _central_entries(raw: bytes) -> list[int]:
    starts, position = [], raw.find(b"PK\x01\x02")
    while position >= 0:
        starts.append(position)
        position = raw.find(b"PK\x01\x02", position + 4)
    return starts


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda: archive({"format": b"\x93NUMPY\x01\x00\x10\x00{'descr': ((((("}), ""),
        (lambda: archive({"format": b"\x93NUMPY\x09\x00\x10\x00"}), "version"),
        (lambda: raw_zip("specs.txt", b"1"), "unexpected archive member 'specs.txt'"),
        (lambda: b"PK\x03\x04" + bytes(100), ""),
        (lambda: zlib.compress(b"x" * 1000), ""),
    ],
)
def test_malformed_archives_raise_value_error(tmp_path, make, words):
    assert_refused(tmp_path, make(), words)


def test_fortran_order_and_big_endian_members_load_as_written(tmp_path):
    op = DeButOperator.random(CHAIN, rng=0)
    members = header_members([spec.as_tuple() for spec in CHAIN])
    members["weights_0"] = npy(np.asfortranarray(op.weights[0]))
    members["weights_1"] = npy(op.weights[1].astype(">f8"))
    path = tmp_path / "variants.npz"
    path.write_bytes(archive(members, compress=True))
    back = load(path)
    assert all(np.array_equal(a, b) for a, b in zip(back.weights, op.weights, strict=True))


def test_a_device_or_pipe_is_refused_before_reading(tmp_path):
    # zipfile looks for the archive's directory by reading a file of unknown size to its
    # end: /dev/zero never ends
    with pytest.raises(ValueError, match="not a regular file"):
        load("/dev/zero")
    with open("/dev/zero", "rb") as device, pytest.raises(ValueError, match="not a regular"):
        load(device)


def test_max_bytes_counts_the_weights_in_the_operators_dtype(tmp_path):
    # 1 MiB of bool weights (a kilobyte compressed) become 4 MiB of float32 in the
    # operator: max_bytes = 2 MiB refuses them before their data is inflated
    n = 1 << 20
    members = header_members([(n, n, 1, 1, 1)])
    members["weights_0"] = npy(np.ones((n, 1, 1, 1), dtype=bool))
    words = "the weights take 4194304 bytes in memory (the operator holds them in float32)"
    assert_refused(tmp_path, archive(members, compress=True), words, 1 << 19, max_bytes=2 << 20)


def test_a_huge_string_member_is_refused_before_it_is_inflated(tmp_path):
    # "pydebut" padded with NULs to 40 MB compresses to a few KB; str() drops the NULs
    members = header_members([spec.as_tuple() for spec in CHAIN])
    op = DeButOperator.random(CHAIN, rng=0)
    members.update(weights_0=npy(op.weights[0]), weights_1=npy(op.weights[1]))
    for key in ("format", "format_version"):
        forged = dict(members, **{key: npy(np.array("pydebut", dtype="<U10000000"))})
        assert_refused(tmp_path, archive(forged, compress=True), "more than its role allows")


def listed(count: int, last_comment: bytes = b"") -> tuple[bytes, bytes]:
    """One member's local header, and a directory listing it ``count`` times (the last
    entry with ``last_comment``): zipfile builds an entry for each."""
    name = b"a.npy"
    local = struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 0, 0, 0, 0, 0, 0, len(name), 0)

    def entry(comment: bytes = b"") -> bytes:
        fields = (20, 20, 0, 0, 0, 0, 0, 0, 0, len(name), 0, len(comment), 0, 0, 0, 0)
        return struct.pack("<4s6H3L5H2L", b"PK\x01\x02", *fields) + name + comment

    return local + name, entry() * (count - 1) + entry(last_comment)


def end_record(count: int, directory: bytes, offset: int) -> bytes:
    return struct.pack(
        "<4s4H2LH", b"PK\x05\x06", 0, 0, count & 0xFFFF, count & 0xFFFF, len(directory), offset, 0
    )


def test_a_string_member_of_zero_size_is_refused_before_allocation(tmp_path):
    # 2**40 strings of dtype <U0 announce no data, but np.empty makes them <U1: 4 TiB
    members = header_members([spec.as_tuple() for spec in CHAIN])
    members["format"] = forged_header((2**40,), "<U0")
    assert_refused(tmp_path, archive(members), "format has dtype <U0, of zero size")


def test_a_directory_longer_than_a_pydebut_files_is_refused_before_it_is_parsed(tmp_path):
    start, directory = listed(100_000)
    # the count field has 16 bits; zipfile reads entries until the directory's size is used up
    for count in (100_000, 3):
        end = end_record(count, directory, len(start))
        assert_refused(tmp_path, start + directory + end, "its directory lists")


def test_a_zip64_record_without_its_locator_does_not_hide_the_directorys_size(tmp_path):
    # zipfile takes a zip64 record's sizes only when the zip64 locator directly precedes
    # the end record: a record claiming 3 members in 100 bytes, in the last entry's
    # comment, left the end record's 12,000 members unchecked, and zipfile parsed them
    zip64 = struct.pack("<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, 3, 3, 100, 0)
    start, directory = listed(12_000, last_comment=zip64 + b"X" * 20)
    end = end_record(12_000, directory, len(start))
    assert_refused(tmp_path, start + directory + end, "its directory lists 12,000 members")


@pytest.mark.parametrize("where", ["signature in its own fields", "before a 64 KiB comment"])
def test_the_directory_guard_finds_the_end_record_zipfile_finds(tmp_path, where):
    # zipfile first takes a record without comment ending the file, else the last
    # signature in the last 64 KiB + 22 bytes: the guard looked only for the last
    # signature, one byte less far, and passed the 12,000 entries to zipfile
    start, directory = listed(12_000)
    end = end_record(12_000, directory, len(start))
    if where == "signature in its own fields":
        end = end[:16] + b"PK\x05\x06" + end[20:]  # the directory's offset: zipfile ignores it
    else:
        end = end[:20] + struct.pack("<H", 0xFFFF) + b"X" * (1 << 16)
    assert_refused(tmp_path, start + directory + end, "its directory lists 12,000 members")


def test_the_archives_after_the_position_are_looked_back_through_in_bounds(tmp_path):
    # load() reads the directory of each archive after the position, back to the one
    # there: two of 5,100 members are more than a pydebut file's most, and are refused
    start, directory = listed(5_100)
    later = start + directory + end_record(5_100, directory, len(start))
    assert_refused(tmp_path, GOOD[False] + later * 2, "or 10,005 members in all, follow")


def as_zip64(data: bytes) -> bytes:
    """``data``, a zip archive without comment, with zip64 end records, the end record's
    own figures set to "see zip64" as some writers do."""
    count, size, offset = struct.unpack_from("<H2L", data, len(data) - 12)
    at = len(data) - 22
    zip64 = struct.pack("<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, count, count, size, offset)
    locator = struct.pack("<4sLQL", b"PK\x06\x07", 0, at, 1)
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 2**32 - 1, 2**32 - 1, 0)
    return data[:at] + zip64 + locator + end


def test_a_pydebut_file_with_zip64_end_records_loads(tmp_path):
    path = tmp_path / "zip64.npz"
    path.write_bytes(as_zip64(GOOD[True]))
    with zipfile.ZipFile(path) as archive:
        assert len(archive.infolist()) == 5
    assert np.array_equal(load(path).toarray(), DeButOperator.random(CHAIN, rng=0).toarray())


@pytest.mark.parametrize("dtype", [np.float64, np.int8])
@pytest.mark.parametrize("order", ["C", "F"])
def test_loading_takes_the_weights_twice_at_most(tmp_path, dtype, order):
    # read once, converted a piece at a time to the operator's dtype (int8 weights to
    # float32) whatever the member's layout, then copied into the operator's immutable
    # buffers; zipfile's reads go through bytes objects, which are kept small
    n = 1 << 18
    members = header_members([(8 * n, 8 * n, 1, 1, 8)])  # weights of shape (n, 1, 1, 8)
    members["weights_0"] = npy(np.ones((n, 1, 1, 8), dtype=dtype, order=order))
    for compress in (False, True):
        path = tmp_path / f"op{compress}.npz"
        path.write_bytes(archive(members, compress=compress))
        tracemalloc.start()
        try:
            weights = load(path).weights[0]
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 2 * weights.nbytes + (1 << 20), f"load() peaked at {peak} bytes"
        assert weights.flags.c_contiguous and (weights == 1).all()


def test_running_out_of_memory_is_not_reported_as_a_damaged_file(tmp_path, monkeypatch):
    path = tmp_path / "op.npz"
    save(path, DeButOperator.random(CHAIN, rng=0))

    def no_memory(*args, **kwargs):
        raise MemoryError("Unable to allocate 1 EiB")

    monkeypatch.setattr("pydebut.io.np.empty", no_memory)
    with pytest.raises(MemoryError, match="Unable to allocate"):
        load(path)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes on this system")
def test_a_named_pipe_is_refused_without_waiting_for_a_writer(tmp_path):
    # open() of a pipe for reading waits for a writer: load() must refuse it before
    pipe = tmp_path / "pipe.npz"
    os.mkfifo(pipe)
    link = tmp_path / "link.npz"
    link.symlink_to(pipe)
    for path in (pipe, link):
        with ThreadPoolExecutor(1) as pool:
            loading = pool.submit(load, path)
            try:
                error = loading.exception(timeout=30)
            except FutureTimeout:
                # a writer that opens and closes the pipe releases the blocked load()
                os.close(os.open(pipe, os.O_WRONLY | os.O_NONBLOCK))
                pytest.fail(f"load({path.name!r}) waited for a writer to open the pipe")
        assert isinstance(error, ValueError) and "not a regular file" in str(error)


def rewritten(change: dict[str, bytes], extra: dict[str, bytes] | None = None) -> bytes:
    """A saved file of CHAIN with the members of ``change`` replaced and ``extra`` appended
    (a name already in the archive then appears twice)."""
    buffer = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(GOOD[False])) as source,
        zipfile.ZipFile(buffer, "w") as target,
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore")  # zipfile warns of a duplicate name
        for info in source.infolist():
            target.writestr(info.filename, change.get(info.filename, source.read(info)))
        for name, data in (extra or {}).items():
            target.writestr(name, data)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("make", "words"),
    [
        # the last of two members of one name won: weights all 7.0 behind the real ones
        (
            lambda: rewritten({}, {"weights_0.npy": npy(np.full((2, 2, 2, 2), 7.0))}),
            "unexpected archive member 'weights_0.npy'",
        ),
        # bytes beyond what the member's header announces
        (
            lambda: rewritten({"weights_0.npy": npy(np.ones((2, 2, 2, 2))) + b"more"}),
            "weights_0.npy holds 132 data bytes, but its header announces 128",
        ),
        # permutations belong to format version 2 on
        (
            lambda: rewritten(
                {"format_version.npy": npy(np.array(1))}, {"row_perm.npy": npy(np.arange(8))}
            ),
            "unexpected ['row_perm']",
        ),
    ],
)
def test_tampered_members_are_refused(tmp_path, make, words):
    assert_refused(tmp_path, make(), words)


def test_a_permutation_larger_than_its_role_is_refused_before_it_is_inflated(tmp_path):
    # the size check of the permutations was not pinned by any forged file
    op = DeButOperator.random(CHAIN, rng=0).with_permutations(np.arange(8)[::-1], None)
    buffer = io.BytesIO()
    save(buffer, op)
    with zipfile.ZipFile(buffer) as zf:
        members = {info.filename[: -len(".npy")]: zf.read(info) for info in zf.infolist()}
    members["row_perm"] = npy(np.zeros(1 << 22, dtype=np.int64))  # 32 MiB, a few KB deflated
    words = "row_perm takes 33554432 bytes"
    assert_refused(tmp_path, archive(members, compress=True), words, 1 << 22)


def test_max_bytes_takes_weights_of_exactly_that_size(tmp_path):
    op = DeButOperator.identity([(64, 64, 1, 1, 1)])  # 64 float64 weights: 512 bytes
    path = tmp_path / "op.npz"
    save(path, op)
    assert np.array_equal(load(path, max_bytes=512).toarray(), op.toarray())
    assert_refused(tmp_path, path.read_bytes(), "max_bytes", max_bytes=511)


def test_load_looks_back_through_at_most_100_archives():
    # archives written one after another into a stream: the first is read from the start
    op = DeButOperator.random([(2, 2, 2, 2, 1)], rng=0)
    for count, readable in ((101, True), (102, False)):
        stream = io.BytesIO()
        for _ in range(count):
            save(stream, op)
        stream.seek(0)
        if readable:
            assert np.array_equal(load(stream).toarray(), op.toarray())
        else:
            with pytest.raises(ValueError, match="more than 100 zip archives"):
                load(stream)
