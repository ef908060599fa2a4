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

Everything is read with ``allow_pickle=False`` and validated before an
operator is built, so a truncated or tampered file raises ``ValueError``.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from .operator import DeButOperator
from .spec import Chain

__all__ = ["load", "npz_path", "save"]

FORMAT_NAME = "pydebut"
FORMAT_VERSION = 2
_PERMUTATIONS = ("row_perm", "col_perm")
_MAX_FACTORS = 10_000


def npz_path(path: str | os.PathLike[str]) -> Path:
    """The file :func:`save` writes for ``path``: ``path`` with ``.npz`` added if it lacks it.

    This is ``np.savez``'s rule; :func:`load` takes the real name, as ``np.load`` does.

    Examples
    --------
    >>> npz_path("op").name, npz_path("op.npz").name, npz_path("op.v2").name
    ('op.npz', 'op.npz', 'op.v2.npz')
    """
    path = Path(path)
    return path if path.suffix == ".npz" else path.with_name(path.name + ".npz")


def save(path: str | os.PathLike[str], operator: DeButOperator, *, compress: bool = False) -> None:
    """Save ``operator`` to an ``.npz`` file; as ``np.savez``, add ``.npz`` if ``path`` lacks it.

    Parameters
    ----------
    path : str or path-like
        Where to write; ``"op"`` writes ``op.npz`` (``pydebut.io.npz_path``).
        :func:`load` takes the real name, as ``np.load`` does (``load("op")``
        does not look for ``op.npz``).
    operator : DeButOperator
    compress : bool, default False
        Use ``np.savez_compressed``.

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
        raise TypeError(f"save() needs a DeButOperator, got {type(operator).__name__}")
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
    writer = np.savez_compressed if compress else np.savez
    with open(npz_path(path), "wb") as handle:
        writer(handle, **arrays)


def load(path: str | os.PathLike[str]) -> DeButOperator:
    """Load a ``DeButOperator`` saved by :func:`save`.

    Raises
    ------
    OSError
        If the file cannot be opened.
    ValueError
        If the file is not a valid pydebut archive: not a zip, truncated, of
        another format or version, with missing, extra or malformed arrays,
        with weights that do not fit the chain or are not finite, or with a
        row or column permutation that is not a permutation.
    """
    name = Path(path)
    if not name.exists() and npz_path(name) != name and npz_path(name).exists():
        raise FileNotFoundError(
            f"no file {name}, but {name.name}.npz exists: load() takes the name save() returned"
        )
    try:
        archive = np.load(name, allow_pickle=False)
    except (zipfile.BadZipFile, EOFError, ValueError) as err:
        raise ValueError(f"{name} is not a pydebut .npz file: {err}") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError(f"{name} is a single .npy array, not a pydebut .npz file")
    try:
        with archive:
            return _read(archive, name)
    except (zipfile.BadZipFile, EOFError, OSError) as err:
        raise ValueError(f"{name} is damaged or truncated: {err}") from None


def _read(archive: np.lib.npyio.NpzFile, name: Path) -> DeButOperator:
    keys = set(archive.files)
    for required in ("format", "format_version", "specs"):
        if required not in keys:
            raise ValueError(f"{name} is not a pydebut file: the array {required!r} is missing")
    fmt = archive["format"]
    if fmt.shape != () or fmt.dtype.kind != "U" or str(fmt) != FORMAT_NAME:
        raise ValueError(f"{name} is not a pydebut file (format {fmt!r})")
    version = archive["format_version"]
    if version.shape != () or version.dtype.kind not in "iu":
        raise ValueError(f"{name}: format_version must be an integer scalar")
    if not 1 <= int(version) <= FORMAT_VERSION:
        raise ValueError(
            f"{name} has format version {int(version)}; this pydebut reads versions 1 to "
            f"{FORMAT_VERSION}"
        )
    specs = archive["specs"]
    if specs.ndim != 2 or specs.shape[1] != 5 or specs.dtype.kind not in "iu":
        raise ValueError(f"{name}: specs must be an integer array of shape (L, 5)")
    if not 1 <= specs.shape[0] <= _MAX_FACTORS:
        raise ValueError(f"{name}: specs has {specs.shape[0]} factors")
    try:
        chain = Chain(specs.tolist())
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name}: invalid chain: {err}") from None
    expected = {"format", "format_version", "specs"} | {f"weights_{i}" for i in range(len(chain))}
    if int(version) >= 2:
        expected |= keys & set(_PERMUTATIONS)
    if keys != expected:
        missing, extra = sorted(expected - keys), sorted(keys - expected)
        raise ValueError(f"{name}: arrays missing {missing} and unexpected {extra}")
    weights = [archive[f"weights_{i}"] for i in range(len(chain))]
    permutations = {key: archive[key] for key in _PERMUTATIONS if key in keys}
    try:
        return DeButOperator(chain, weights, **permutations)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name}: {err}") from None
