"""Saving and loading ``DeButOperator``s as ``.npz`` files, without pickle.

A pydebut file is an ``.npz`` archive holding:

- ``format``: the string ``"pydebut"``;
- ``format_version``: an integer, 1 or 2;
- ``specs``: int64 array ``(L, 5)`` of ``(p, q, r, s, t)``, left to right;
- ``weights_0`` ... ``weights_{L-1}``: each factor's ``(k, r, s, t)`` weights;
- version 2 only, each optional: ``row_perm`` and ``col_perm``, int64 arrays of
  the operator's row and column permutations (absent for the identity).

An operator without permutations is written as version 1, which every pydebut
reads; one with permutations as version 2. Both versions are read.

Nothing is unpickled, every header is validated before its data is read, and
a truncated, tampered or hostile file raises ``ValueError`` naming the file.
"""

from __future__ import annotations

import errno
import io
import os
import secrets
import stat
import struct
import tokenize
import zipfile
import zlib
from collections.abc import Callable
from math import prod
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from ._arguments import as_bool, as_positive_int
from ._weights import weights_dtype
from .operator import DeButOperator
from .spec import Chain

__all__ = ["load", "npz_path", "save"]

FORMAT_NAME = "pydebut"
FORMAT_VERSION = 2
_PERMUTATIONS = ("row_perm", "col_perm")
MAX_FACTORS = 10_000
"""Most factors a pydebut file holds: :func:`save` refuses more, :func:`load` reads no more."""
_MAX_HEADER = 10_000  # bytes of a .npy header, numpy's own default
_NAME_MAX_BYTES = 255  # of a file name, on the usual file systems
_MAX_DEFLATE_RATIO = 1032  # deflate never expands data more than this
_READ_CHUNK = 1 << 20  # bytes read at once: zipfile copies each read through a bytes object
MAX_LOAD_BYTES = 2**32
"""Default limit of :func:`load` on the total size of the weights (4 GiB)."""


def npz_path(path: str | os.PathLike[str]) -> Path:
    """The file :func:`save` writes for ``path``: ``path`` with ``.npz`` added if it lacks it.

    This is ``np.savez``'s rule; :func:`load` takes the real name, as ``np.load`` does.

    Parameters
    ----------
    path : str or os.PathLike of str
        A file name (not a file object). The suffix test is case-sensitive:
        ``"op.NPZ"`` becomes ``"op.NPZ.npz"``.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    TypeError
        If ``path`` is neither a string nor a path-like object giving one.
    ValueError
        If ``path`` is empty or names a folder rather than a file: it ends with
        a path separator, or its last part is ``.`` or ``..``.

    Examples
    --------
    >>> npz_path("op").name, npz_path("op.npz").name, npz_path("op.v2").name
    ('op.npz', 'op.npz', 'op.v2.npz')
    """
    path = _file_path(path)
    return path if path.name.endswith(".npz") else path.with_name(path.name + ".npz")


def _file_path(path: str | os.PathLike[str]) -> Path:
    """``path`` as a ``Path``; ``ValueError`` if it is empty or names a folder.

    ``Path`` would turn ``""`` into ``"."`` and drop a trailing separator, so
    the text is checked first.
    """
    text = os.fspath(path)
    if not text:
        raise ValueError("the path is empty: give a file name such as 'op.npz'")
    if os.path.basename(text) in ("", ".", ".."):
        raise ValueError(
            f"path {text!r} names a folder, not a file: give a file name such as "
            f"{os.path.join(text, 'op.npz')!r}"
        )
    return Path(text)


def save(
    path: str | os.PathLike[str] | BinaryIO, operator: DeButOperator, *, compress: bool = False
) -> None:
    """Save ``operator`` to an ``.npz`` file; as ``np.savez``, add ``.npz`` if ``path`` lacks it.

    Parameters
    ----------
    path : str, path-like or binary file
        Where to write; ``"op"`` writes ``op.npz`` (``pydebut.io.npz_path``).
        :func:`load` takes the real name, as ``np.load`` does (``load("op")``
        does not look for ``op.npz``). A file there is replaced in one step:
        a reader sees the old file or the new one, and a save that fails leaves
        the old one (and, only if the process is killed outright, by SIGKILL or
        a SIGTERM Python does not handle, the new one's part beside it as
        ``.NAME.HEX.part``, ``NAME`` cut short where the name would be too long).
        A read-only file there is refused, as ``open`` refuses it. A file opened
        for binary writing (or an ``io.BytesIO``) receives the archive at its
        position.
    operator : DeButOperator
    compress : bool, default False
        Use ``np.savez_compressed``.

    Raises
    ------
    TypeError
        If ``operator`` is not a ``DeButOperator``, ``path`` is a file in text mode
        or ``compress`` is not a bool.
    ValueError
        If ``path`` is empty or names a folder (as for :func:`npz_path`), or the
        operator has more than :data:`MAX_FACTORS` factors, which :func:`load`
        would refuse to read.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from pydebut import DeButOperator, load, save
    >>> op = DeButOperator.random([(4, 4, 2, 2, 2), (4, 4, 2, 2, 1)], rng=0)
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> save(folder / "op", op)
    >>> sorted(path.name for path in folder.iterdir())
    ['op.npz']
    >>> bool((load(folder / "op.npz").toarray() == op.toarray()).all())
    True
    """
    if not isinstance(operator, DeButOperator):
        hint = (
            ": a Chain has no weights; write chain.to_json() as JSON (Chain.from_sup_sub(**data) "
            "and the command line's --chain read it back), or save an operator of the chain"
            if isinstance(operator, Chain)
            else ""
        )
        raise TypeError(f"save() needs a DeButOperator, got {type(operator).__name__}{hint}")
    check_savable(operator.chain)
    permutations = {
        key: perm
        for key, perm in zip(_PERMUTATIONS, (operator.row_perm, operator.col_perm), strict=True)
        if perm is not None
    }
    arrays = {
        "format": np.array(FORMAT_NAME),
        "format_version": np.array(2 if permutations else 1, dtype=np.int64),
        "specs": np.array([f.as_tuple() for f in operator.chain], dtype=np.int64),
        **permutations,
    }
    for index, weights in enumerate(operator.weights):
        arrays[f"weights_{index}"] = weights
    writer = np.savez_compressed if as_bool(compress, "compress") else np.savez
    if _is_file(path, "save"):
        writer(path, **arrays)
        return
    _write_in_one_step(npz_path(path), lambda handle: writer(handle, **arrays))


def _write_in_one_step(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Write a file at ``path`` with ``write``, replacing any file there in one step.

    The data goes to a new file beside it, which then takes its place
    (``os.replace``): a reader sees the old file or the new one, never a part,
    and a write that fails (a full disk, an interrupt) leaves the old file and
    no other; a process killed outright (SIGKILL, or SIGTERM at its default,
    which the command line turns into an exception) leaves the new file's part.
    A symbolic link is followed, as ``open`` does; the file keeps the
    old file's permissions, or a new one gets those ``open`` would give it. A
    device or pipe at ``path`` is written as it is.
    """
    target = Path(os.path.realpath(path))
    try:
        mode: int | None = target.stat().st_mode
    except FileNotFoundError:
        mode = None
    if mode is not None and not stat.S_ISREG(mode):
        with open(target, "wb") as handle:
            write(handle)
        return
    if mode is not None and not os.access(target, os.W_OK):  # open() would refuse it too
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(path))
    temporary = _temporary_beside(target)
    try:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)  # Windows
        descriptor = os.open(temporary, flags, 0o666)
    except OSError as err:
        raise _naming_the_file_asked_for(err, temporary, path) from None
    try:
        with os.fdopen(descriptor, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        if mode is not None:
            os.chmod(temporary, stat.S_IMODE(mode))
        os.replace(temporary, target)
    except BaseException as err:
        temporary.unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise _naming_the_file_asked_for(err, temporary, path) from None
        raise


def _temporary_beside(target: Path) -> Path:
    """A new name beside ``target``, ``.NAME.HEX.part``, with ``NAME`` cut short where the
    whole would pass the 255 bytes of a file name (``target``'s own may have them all)."""
    suffix = f".{secrets.token_hex(8)}.part"
    name = os.fsencode(target.name)[: _NAME_MAX_BYTES - 1 - len(suffix)]
    return target.with_name("." + os.fsdecode(name) + suffix)


def _naming_the_file_asked_for(err: OSError, temporary: Path, path: Path) -> OSError:
    """``err`` naming ``path`` where it named the ``temporary`` file or no file."""
    if err.errno is None or err.filename not in (None, os.fspath(temporary)):
        return err
    return type(err)(err.errno, err.strerror, os.fspath(path))


def check_savable(chain: Chain) -> None:
    """Refuse a chain of more factors than a pydebut file holds (:data:`MAX_FACTORS`)."""
    if chain.n_factors > MAX_FACTORS:
        raise ValueError(
            f"the operator has {chain.n_factors:,} factors; a pydebut file holds at most "
            f"MAX_FACTORS = {MAX_FACTORS:,} (pydebut.io), the most load() reads"
        )


def _is_file(path: Any, caller: str) -> bool:
    """Whether ``path`` is a file object; ``TypeError`` for one in text mode."""
    if not hasattr(path, "read" if caller == "load" else "write"):
        return False
    if isinstance(path, io.TextIOBase):
        mode = "rb" if caller == "load" else "wb"
        raise TypeError(f"{caller}() needs a file opened in binary mode ({mode!r}), got text mode")
    return True


def load(
    path: str | os.PathLike[str] | BinaryIO,
    *,
    max_bytes: int = MAX_LOAD_BYTES,
    check_finite: bool = True,
) -> DeButOperator:
    """Load a ``DeButOperator`` saved by :func:`save`.

    Every array's ``.npy`` header (shape and dtype, never pickle) is checked
    against the chain's expected sizes and against ``max_bytes`` before its
    data is read or decompressed, and decompression never goes past the sizes
    the headers announce: a damaged, forged or hostile file costs at most twice
    the size of the weights counted against ``max_bytes`` (they are read into
    the operator's dtype, whatever the file's dtype and layout, then copied into
    its immutable buffers). Devices, pipes and archives whose directory lists
    more members than a pydebut file has are refused before zipfile reads them.

    Parameters
    ----------
    path : str, path-like or binary file
        The archive must start the file, or a file object (opened with ``"rb"``,
        or an ``io.BytesIO``) at its position; a file object must be seekable, as
        a zip archive is read from its end. Other archives may follow it, as
        :func:`save` leaves a stream it writes several to: up to 100, holding
        ``MAX_FACTORS + 5`` arrays in all, are looked back through.
    max_bytes : int, default ``MAX_LOAD_BYTES`` (4 GiB)
        Largest total size of the weights to read, counted in the dtype the
        operator holds them in (see ``DeButOperator``: four bytes a weight for
        bool, 8- and 16-bit integer and float16 weights), or in the file's where
        it is wider (extended precision); raise it to load a larger operator.
    check_finite : bool, default True
        Refuse weights that contain NaN or infinity; False reads them, as
        saved from an operator built with ``check_finite=False``.

    Raises
    ------
    OSError
        If the file cannot be opened.
    TypeError
        If a file object is in text mode or cannot seek, ``check_finite`` is
        not a bool or ``max_bytes`` not an integer.
    ValueError
        If ``max_bytes`` is not positive, or ``path`` is empty or names a folder (as for
        :func:`npz_path`, or an existing folder). Naming the file, if it is not a valid
        pydebut archive: not a zip, truncated or corrupted, of another format or
        version, with missing, extra or malformed arrays, with weights that do not fit
        the chain or are not finite (unless ``check_finite`` is False), with a row or
        column permutation that is not a permutation, or larger than ``max_bytes``; or
        if no archive starts the file or the file object's position (other data comes
        first, or the position is past an archive's start).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from pydebut import DeButOperator, load, save
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "op.npz"
    >>> save(path, DeButOperator.identity([(4096, 4096, 1, 1, 1)]))
    >>> try:
    ...     load(path, max_bytes=1000)
    ... except ValueError as err:
    ...     print(str(err).removeprefix(f"{path}: "))
    the weights take 32768 bytes in memory (the operator holds them in float64), above
    max_bytes = 1000; pass a larger max_bytes to load them
    >>> load(path).shape
    (4096, 4096)
    """
    max_bytes = as_positive_int(max_bytes, "max_bytes", "load")
    check_finite = as_bool(check_finite, "check_finite")
    if _is_file(path, "load"):
        if not (hasattr(path, "seekable") and path.seekable()):
            raise TypeError(
                "load() needs a seekable file (a zip archive is read from its end); "
                "read the stream into io.BytesIO first"
            )
        name = getattr(path, "name", f"<{type(path).__name__}>")
        return _load_archive(path, name, max_bytes, check_finite)
    name = _file_path(path)
    if name.is_dir():
        raise ValueError(
            f"{name} is a folder, not a file: load() takes the name of the file save() wrote"
        )
    hint = npz_path(name)
    if not name.exists() and hint != name and hint.exists():
        raise FileNotFoundError(
            f"no file {name}, but {hint.name} exists: load() takes the name of the file save() "
            "wrote, pydebut.io.npz_path(path)"
        )
    with open(name, "rb", opener=_open_without_waiting) as handle:
        return _load_archive(handle, name, max_bytes, check_finite)


def _open_without_waiting(path: str, flags: int) -> int:
    """Open ``path`` as ``open()`` does, but without blocking: a named pipe with no
    writer would keep ``open()`` waiting for one, before :func:`_check_regular` refuses it."""
    return os.open(path, flags | getattr(os, "O_NONBLOCK", 0))


def _check_regular(handle: BinaryIO, name: str | Path) -> None:
    """Refuse a device, pipe or socket: its size is unknown, and zipfile reads such a
    file to its end looking for the archive's directory (``/dev/zero`` never ends)."""
    try:
        mode = os.fstat(handle.fileno()).st_mode
    except (AttributeError, OSError, ValueError):  # io.BytesIO and other in-memory files
        return
    if not stat.S_ISREG(mode):
        raise ValueError(
            f"{name} is not a regular file (a device, pipe or socket): save() writes "
            "pydebut archives to regular files, or read the stream into io.BytesIO first"
        )


_MAX_MEMBERS = MAX_FACTORS + 5  # the weights, format, format_version, specs, permutations
_MAX_DIRECTORY_ENTRY = 256  # bytes of one member's directory entry, with room to spare
_END_RECORD = struct.Struct("<4s4H2LH")  # a zip archive's end of central directory record
_END_RECORD_64 = struct.Struct("<4sQ2H2L4Q")  # its zip64 extension
_LOCATOR_64 = struct.Struct("<4sLQL")  # the zip64 locator, just before the end record


def _check_directory(handle: BinaryIO, name: str | Path) -> None:
    """Refuse an archive whose directory is larger than a pydebut file's, before zipfile
    reads it (zipfile builds an entry for every member the directory lists).

    The sizes come from the end record, found as zipfile finds it, and from the
    zip64 records zipfile may take in its place (:func:`_directory_sizes`); a file
    without an end record is left to zipfile, which reports the damage.
    """
    start = handle.tell()
    end = handle.seek(0, os.SEEK_END)
    tail_start = max(0, end - _END_RECORD.size - (1 << 16))  # zipfile's search, over 64 KiB
    handle.seek(tail_start)
    tail = handle.read(end - tail_start)
    at = len(tail) - _END_RECORD.size  # zipfile looks first for a record without comment last
    if at < 0 or not (tail.startswith(b"PK\x05\x06", at) and tail.endswith(b"\0\0")):
        at = tail.rfind(b"PK\x05\x06")
    sizes = []
    if at >= 0 and len(tail) - at >= _END_RECORD.size:
        sizes = _directory_sizes(handle, tail_start + at, tail[at : at + _END_RECORD.size])
    handle.seek(start)
    for members, size in sizes:
        if members > _MAX_MEMBERS or size > _MAX_MEMBERS * _MAX_DIRECTORY_ENTRY:
            raise ValueError(
                f"{name} is not a pydebut .npz file: its directory lists {members:,} members "
                f"in {size:,} bytes, and a pydebut file has at most {_MAX_MEMBERS:,} "
                f"(MAX_FACTORS = {MAX_FACTORS:,} weights and five more arrays)"
            )


def _directory_sizes(handle: BinaryIO, at: int, end_record: bytes) -> list[tuple[int, int]]:
    """The member counts and byte sizes of the directory zipfile may take from an archive
    whose end record ``end_record`` is at ``at``.

    zipfile takes a zip64 record's figures in place of the end record's only when a
    zip64 locator directly precedes the end record, and then, depending on the Python
    release, the record just before the locator (3.11) or first the one the locator
    points to. Every figure a release may take is returned, so that none reads a larger
    directory than checked.
    """
    sizes = [_END_RECORD.unpack(end_record)[4:6]]
    before = at - _LOCATOR_64.size - _END_RECORD_64.size  # where the zip64 record usually is
    if before < 0:
        return sizes
    handle.seek(before)
    records = [handle.read(_END_RECORD_64.size)]
    signature, _, pointed, _ = _LOCATOR_64.unpack(handle.read(_LOCATOR_64.size))
    if signature != b"PK\x06\x07":
        return sizes
    if pointed < before:
        handle.seek(pointed)
        records.append(handle.read(_END_RECORD_64.size))
    zip64 = [_END_RECORD_64.unpack(r)[7:9] for r in records if r.startswith(b"PK\x06\x06")]
    # without a zip64 record before the locator, Python 3.11 keeps the end record's figures
    return zip64 if records[0].startswith(b"PK\x06\x06") else sizes + zip64


def _load_archive(
    handle: BinaryIO, name: str | Path, max_bytes: int, check_finite: bool
) -> DeButOperator:
    """The operator in the archive that starts at ``handle``'s position."""
    _check_regular(handle, name)
    try:  # reading may raise OSError: a file of /proc, for one, cannot seek to its end
        start = handle.tell()
        if handle.read(6) == b"\x93NUMPY":
            raise ValueError(f"{name} is a single .npy array, not a pydebut .npz file")
        with _archive_at(handle, start, name) as archive:
            return _read(archive, name, max_bytes, check_finite)
    except _READ_ERRORS as err:
        raise ValueError(f"{name} is not a pydebut .npz file, or is damaged: {err}") from None


_MAX_ARCHIVES = 100
"""Most archives :func:`load` looks back through for the one at a stream's position."""


def _archive_at(handle: BinaryIO, start: int, name: str | Path) -> zipfile.ZipFile:
    """The zip archive whose first byte is ``start``, the position of ``handle``.

    zipfile reads the archive that ends a stream, wherever that archive starts.
    When it starts after ``start``, the bytes before it are read the same way,
    as a stream of their own, and so on back to an archive that starts at
    ``start``, which is returned: it is followed by the others (and by any bytes
    after the last), as :func:`save` leaves a stream it writes several archives
    to. Anything else is refused, and so are more than :data:`_MAX_ARCHIVES`
    archives after the position, or more than ``_MAX_MEMBERS`` members in them
    (a pydebut file's most): each has its directory read.
    """
    archive = _last_archive(handle, name)
    first = _first_byte(archive)
    if first < start:
        archive.close()
        raise ValueError(
            f"{name}: its position, byte {start:,}, is inside or after the zip archive that "
            f"starts at byte {first:,}; load() reads the archive at the position: seek to "
            f"byte {first:,} to read that one"
        )
    skipped = []  # the members of each archive after the position
    while first != start:
        skipped.append(len(archive.infolist()))
        archive.close()
        if len(skipped) > _MAX_ARCHIVES or sum(skipped) > _MAX_MEMBERS:
            raise ValueError(
                f"{name}: more than {_MAX_ARCHIVES} zip archives, or {_MAX_MEMBERS:,} members "
                f"in all, follow its position, byte {start:,}, the most load() looks back "
                "through from the end for the archive at the position; read that archive's "
                "bytes into io.BytesIO, or save one archive per file"
            )
        archive = _archive_ending(handle, first, start, name)
        if archive is None:
            raise ValueError(
                f"{name}: the data at its position, byte {start:,}, is followed by a zip "
                f"archive, at byte {first:,}, that zipfile (which reads the archive that ends "
                "a stream) would read in its place, and is not itself an archive that ends "
                "there. To read the archive at the position, read its own bytes into "
                f"io.BytesIO or save one archive per file; seek to byte {first:,} to read the "
                "later one"
            )
        first = _first_byte(archive)
    return archive


def _archive_ending(
    handle: BinaryIO, end: int, start: int, name: str | Path
) -> zipfile.ZipFile | None:
    """The zip archive that ends the first ``end`` bytes of ``handle``, if there is one
    and it starts at ``start`` or after."""
    try:
        archive = _last_archive(_Head(handle, end), name)
    except _READ_ERRORS:
        return None
    if _first_byte(archive) >= start:
        return archive
    archive.close()
    return None


def _last_archive(stream: BinaryIO, name: str | Path) -> zipfile.ZipFile:
    """The zip archive that ends ``stream``, as zipfile reads it, once its directory's
    size has been checked."""
    _check_directory(stream, name)
    return zipfile.ZipFile(stream)


def _first_byte(archive: zipfile.ZipFile) -> int:
    """Where ``archive`` starts in its stream: its first member's header, or its directory
    if it has no member."""
    return min([info.header_offset for info in archive.infolist()] + [archive.start_dir])


class _Head:
    """The first ``end`` bytes of a seekable binary file, as a file of their own: zipfile
    finds the archive that ends them as it finds the one that ends the file."""

    def __init__(self, handle: BinaryIO, end: int) -> None:
        self._handle, self._end = handle, end

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._handle.tell()

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        if whence == os.SEEK_END:
            offset, whence = self._end + offset, os.SEEK_SET
        if whence == os.SEEK_SET and offset < 0:  # refused as a file refuses it
            raise OSError(errno.EINVAL, f"cannot seek to byte {offset}")
        return self._handle.seek(offset, whence)

    def read(self, size: int | None = -1) -> bytes:
        left = max(0, self._end - self._handle.tell())
        return self._handle.read(left if size is None or size < 0 else min(size, left))


# What a damaged or hostile archive can raise from zipfile, zlib and the .npy
# header parser (a Python literal); every one becomes a ValueError naming the file.
# A MemoryError is not among them: every size is checked before its memory is taken,
# so running out of memory means the machine lacks it, not that the file is damaged.
_READ_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    zlib.error,
    EOFError,
    OSError,
    KeyError,
    NotImplementedError,
    RuntimeError,  # includes RecursionError
    SyntaxError,
    TypeError,
    tokenize.TokenError,
    UnicodeDecodeError,
    OverflowError,
    struct.error,  # a record read short: the file ended, or shrank while read
)


_DAMAGE_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError)


def _read(
    archive: zipfile.ZipFile, name: str | Path, max_bytes: int, check_finite: bool
) -> DeButOperator:
    members = {}
    for info in archive.infolist():
        if not info.filename.endswith(".npy") or info.filename[:-4] in members:
            raise ValueError(f"{name}: unexpected archive member {info.filename!r}")
        members[info.filename[:-4]] = info
    for required in ("format", "format_version", "specs"):
        if required not in members:
            raise ValueError(f"{name} is not a pydebut file: the array {required!r} is missing")
    fmt = _read_array(archive, members["format"], name, "U", max_bytes=4 * len(FORMAT_NAME))
    if fmt.shape != () or str(fmt) != FORMAT_NAME:
        raise ValueError(f"{name} is not a pydebut file (format {fmt!r})")
    version = _read_array(archive, members["format_version"], name, "biufcU", max_bytes=32)
    if version.shape != () or version.dtype.kind not in "iu":
        raise ValueError(f"{name}: format_version must be an integer scalar")
    if not 1 <= int(version) <= FORMAT_VERSION:
        raise ValueError(
            f"{name} has format version {int(version)}; this pydebut reads versions 1 to "
            f"{FORMAT_VERSION}"
        )
    specs = _read_array(archive, members["specs"], name, "iu", max_bytes=40 * MAX_FACTORS)
    if specs.ndim != 2 or specs.shape[1] != 5:
        raise ValueError(f"{name}: specs must be an integer array of shape (L, 5)")
    if not 1 <= specs.shape[0] <= MAX_FACTORS:
        raise ValueError(f"{name}: specs has {specs.shape[0]} factors")
    try:
        chain = Chain(specs.tolist())
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name}: invalid chain: {err}") from None
    expected = {"format", "format_version", "specs"} | {f"weights_{i}" for i in range(len(chain))}
    if int(version) >= 2:
        expected |= members.keys() & set(_PERMUTATIONS)
    if members.keys() != expected:
        missing, extra = sorted(expected - members.keys()), sorted(members.keys() - expected)
        raise ValueError(f"{name}: arrays missing {missing} and unexpected {extra}")
    headers = [_header(archive, members[f"weights_{i}"], name) for i in range(len(chain))]
    for index, (spec, (shape, dtype, _)) in enumerate(zip(chain, headers, strict=True)):
        _check_numbers(dtype, name, f"weights_{index}")
        if shape != spec.weight_shape:
            raise ValueError(
                f"{name}: weights_{index} has shape {shape}, but factor {index + 1} of "
                f"{len(chain)} ({spec}) must have shape {spec.weight_shape}"
            )
    # the operator holds the weights in its dtype, wider than the file's but for
    # extended precision, which is rounded
    held = weights_dtype([dtype for _, dtype, _ in headers])
    total = sum(prod(shape) * max(dtype.itemsize, held.itemsize) for shape, dtype, _ in headers)
    if total > max_bytes:
        raise ValueError(
            f"{name}: the weights take {total} bytes in memory (the operator holds them in "
            f"{held}), above max_bytes = {max_bytes}; pass a larger max_bytes to load them"
        )
    weights = [
        _read_array(archive, members[f"weights_{i}"], name, "biufc", max_bytes=None, into=held)
        for i in range(len(chain))
    ]
    m, n = chain.shape
    permutations = {
        key: _read_array(archive, members[key], name, "iu", max_bytes=8 * size)
        for key, size in zip(_PERMUTATIONS, (m, n), strict=True)
        if key in members
    }
    try:
        return DeButOperator(chain, weights, check_finite=check_finite, **permutations)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name}: {err}") from None


def _check_numbers(dtype: np.dtype, name: str | Path, member: str, kinds: str = "biufc") -> None:
    if dtype.hasobject:
        raise ValueError(
            f"{name}: {member} holds Python objects, which would need pickle; "
            "pydebut files never do"
        )
    if dtype.kind not in kinds or dtype.fields is not None or dtype.subdtype is not None:
        raise ValueError(f"{name}: {member} has dtype {dtype}; expected kind {kinds!r}")
    if dtype.itemsize == 0:  # its header's size says nothing: NumPy makes it one character
        raise ValueError(f"{name}: {member} has dtype {dtype}, of zero size")


def _header(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, name: str | Path
) -> tuple[tuple[int, ...], np.dtype, bool]:
    """Shape, dtype and Fortran order of a member, from its ``.npy`` header only."""
    with archive.open(info) as stream:
        return _parse_header(stream, info, name)[:3]


def _parse_header(
    stream: Any, info: zipfile.ZipInfo, name: str | Path
) -> tuple[tuple[int, ...], np.dtype, bool, int]:
    """Parse a ``.npy`` header and check the member's announced size against it.

    Returns shape, dtype, Fortran order and the number of data bytes.
    """
    member = info.filename
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise ValueError(f"{name}: {member} uses unsupported compression {info.compress_type}")
    if info.compress_type == zipfile.ZIP_DEFLATED and info.file_size > (
        _MAX_DEFLATE_RATIO * info.compress_size + 1024
    ):
        raise ValueError(f"{name}: {member} announces an impossible size {info.file_size}")
    try:
        version = np.lib.format.read_magic(stream)
        if version not in ((1, 0), (2, 0)):
            raise ValueError(f"unsupported .npy version {version}")
        read = np.lib.format.read_array_header_1_0
        if version == (2, 0):
            read = np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read(stream, _MAX_HEADER)
    except _DAMAGE_ERRORS as err:
        raise ValueError(f"{name} is damaged or truncated ({member}): {err}") from None
    except (ValueError, *_READ_ERRORS) as err:
        raise ValueError(f"{name}: {member} has no valid .npy header: {err}") from None
    if any(not isinstance(d, int) or d < 0 for d in shape):
        raise ValueError(f"{name}: {member} has an invalid shape {shape}")
    n_bytes = prod(shape) * dtype.itemsize
    header_bytes = stream.tell()
    if info.file_size != header_bytes + n_bytes:
        raise ValueError(
            f"{name}: {member} holds {info.file_size - header_bytes} data bytes, but its "
            f"header announces {n_bytes} (shape {shape}, dtype {dtype})"
        )
    return shape, dtype, fortran, n_bytes


def _read_array(
    archive: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    name: str | Path,
    kinds: str,
    max_bytes: int | None,
    into: np.dtype | None = None,
) -> np.ndarray:
    """Read a member whose header has been checked, never more than it announces.

    ``max_bytes`` bounds the member's data for its role (None: checked by the
    caller). The data is read in pieces of at most ``_READ_CHUNK`` bytes, converted
    to ``into`` where it is a dtype the file's casts to safely (by default the
    file's dtype in native byte order), so reading takes no more memory than the
    array returned.
    """
    member = info.filename[:-4]
    with archive.open(info) as stream:
        shape, dtype, fortran, n_bytes = _parse_header(stream, info, name)
        _check_numbers(dtype, name, member, kinds)
        if max_bytes is not None and n_bytes > max_bytes:
            raise ValueError(
                f"{name}: {member} takes {n_bytes} bytes (shape {shape}, dtype {dtype}), "
                f"more than its role allows ({max_bytes})"
            )
        if into is None or not np.can_cast(dtype, into):
            into = dtype.newbyteorder("=")
        # an F-ordered member holds its transpose's data in C order
        array = np.empty(shape[::-1] if fortran else shape, dtype=into)
        flat = array.reshape(-1)
        if into == dtype:
            _read_into(stream, flat.view(np.uint8), name, member)
        else:
            piece = np.empty(max(1, min(flat.size, _READ_CHUNK // dtype.itemsize)), dtype=dtype)
            for start in range(0, flat.size, piece.size):
                part = piece[: flat.size - start]
                _read_into(stream, part.view(np.uint8), name, member)
                flat[start : start + part.size] = part
        stream.read(1)  # at the end: zipfile checks the CRC
    return array.T if fortran else array


def _read_into(stream: Any, buffer: np.ndarray, name: str | Path, member: str) -> None:
    """Fill the bytes ``buffer`` from ``stream``, a piece of at most ``_READ_CHUNK`` at a time
    (zipfile copies each read through a bytes object)."""
    view = memoryview(buffer)
    done = 0
    while done < len(view):
        got = stream.readinto(view[done : done + _READ_CHUNK])
        if not got:
            raise ValueError(f"{name}: {member} is truncated")
        done += got
