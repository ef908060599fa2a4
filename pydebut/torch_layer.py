"""Hand-off to PyTorch: a DeBut chain as an ``nn.Module`` in the paper's twiddle layout.

pydebut does not train networks; it chooses chains and computes good weights.
:func:`to_torch_layer` turns an operator into a PyTorch module laid out as the
paper's reference layer: the chain as ``R_shapes`` (``[p, q, r, s, t]`` in
application order) and all weights in **one flat parameter**, holding for
each factor in application order ``p*s`` values viewed as ``(k, t, r, s)``
(block, diagonal index, row, column); see :meth:`DeButOperator.to_twiddle`.

The forward pass takes row vectors ``x`` of shape ``(..., n)`` and returns
``x @ A.T`` of shape ``(..., m)``, as ``nn.Linear`` does; factor by factor, in
application order, the input is viewed as ``(batch, k, s, t)`` and

.. math:: y_{b \\rho \\alpha} = \\sum_\\sigma V_{b \\alpha \\rho \\sigma}\\, x_{b \\sigma \\alpha}.

:func:`forward_from_twiddle` is the same computation in NumPy, the reference
the module is tested against. PyTorch is imported only by
:func:`to_torch_layer`.
"""

from __future__ import annotations

import functools
import sys
from typing import Any

import numpy as np

from ._arguments import as_bool, refuse_masked
from ._weights import cast_range_error, factor_label, largest_magnitude
from .operator import DeButOperator
from .spec import Chain

__all__ = ["forward_from_twiddle", "from_torch_layer", "to_torch_layer"]


def forward_from_twiddle(r_shapes: Any, vector: Any, x: Any) -> np.ndarray:
    """The layer's forward pass in NumPy: ``x @ A.T`` for row vectors ``x`` of shape ``(..., n)``.

    Parameters
    ----------
    r_shapes : sequence of [p, q, r, s, t]
        The chain in application order (validated).
    vector : array_like
        The flat weights, ``sum p*s`` values in the twiddle layout.
    x : array_like, shape (..., n)

    Returns
    -------
    ndarray, shape (..., m)

    Raises
    ------
    ValueError
        If ``r_shapes`` is not a valid chain, ``vector`` or ``x`` has the wrong
        shape, or either is a masked array with masked entries.
    TypeError
        If ``vector`` or ``x`` does not hold real or complex numbers, or
        ``r_shapes`` is not a list (or array) of integer rows.

    Examples
    --------
    >>> op = DeButOperator.random([(4, 8, 2, 4, 1)], rng=0)
    >>> r_shapes, vector = op.to_twiddle()
    >>> x = np.ones((3, 8))
    >>> np.allclose(forward_from_twiddle(r_shapes, vector, x), x @ op.toarray().T)
    True
    """
    chain = Chain.from_r_shapes(r_shapes)
    refuse_masked(vector, "the twiddle vector", "the forward pass")
    refuse_masked(x, "x", "the forward pass")
    vector = np.asarray(vector)
    if vector.shape != (chain.n_params,):
        raise ValueError(
            f"R_shapes needs {chain.n_params} weights (sum of p*s), got shape {vector.shape}"
        )
    x = np.asarray(x)
    m, n = chain.shape
    if x.ndim == 0 or x.shape[-1] != n:
        raise ValueError(f"x must have shape (..., {n}), got {x.shape}")
    for name, array in (("vector", vector), ("x", x)):
        if array.dtype.kind not in "biufc":
            raise TypeError(f"{name} must hold real or complex numbers, got dtype {array.dtype}")
    if x.dtype.kind in "biu" and vector.dtype.kind in "biu":  # exact, as in conv2d
        x = x.astype(np.result_type(x.dtype, vector.dtype, np.int64))
    lead = x.shape[:-1]
    out = x.reshape(-1, n)
    offset = 0
    for spec in reversed(chain.factors):  # application order
        k, r, s, t = spec.weight_shape
        twiddle = vector[offset : offset + spec.nnz].reshape(k, t, r, s)
        out = np.einsum("ktrs,bkst->bkrt", twiddle, out.reshape(-1, k, s, t)).reshape(-1, spec.p)
        offset += spec.nnz
    return out.reshape(*lead, m)


def to_torch_layer(op: DeButOperator, *, bias: bool = False, dtype: Any = None) -> Any:
    """A ``torch.nn.Module`` computing ``x @ A.T`` (plus a bias) with ``op``'s weights.

    The module has attributes ``r_shapes`` (list of ``[p, q, r, s, t]``,
    application order), ``in_features = n`` and ``out_features = m``, a
    single flat ``nn.Parameter`` named ``twiddle`` in the paper's layout
    (:meth:`DeButOperator.to_twiddle`) and, with ``bias=True``, a zero
    ``bias`` of length ``m``. :func:`from_torch_layer` reads it back.

    Parameters
    ----------
    op : DeButOperator
    bias : bool, default False
    dtype : torch.dtype, optional
        A floating-point or complex ``torch.dtype``, complex for a complex
        operator; by default the dtype matching the operator's.

    Returns
    -------
    torch.nn.Module
        Of the class ``pydebut.torch_layer.DeButLayer``, which pickles as any
        module does (``torch.save`` of a whole model).

    Raises
    ------
    TypeError
        If ``op`` is not a :class:`~pydebut.DeButOperator`, ``dtype`` is not a
        floating-point or complex ``torch.dtype``, or it is real and the
        operator complex (the imaginary parts would be dropped), or ``bias``
        is not a bool.
    ValueError
        If the operator carries a row or column permutation, which the
        layer's single twiddle cannot hold (the message says how to apply
        the layer of ``op.with_permutations()`` between them), or a factor's
        finite weights overflow ``dtype`` or lie below its normal range, as
        :meth:`DeButOperator.astype` refuses them (the message names the factor).
    ImportError
        If PyTorch is not installed.

    Examples
    --------
    >>> import torch
    >>> op = DeButOperator.random([(4, 4, 2, 2, 2), (4, 4, 2, 2, 1)], rng=0)
    >>> layer = to_torch_layer(op)
    >>> layer.r_shapes, tuple(layer.twiddle.shape)
    ([[4, 4, 2, 2, 1], [4, 4, 2, 2, 2]], (16,))
    >>> x = torch.ones(2, 4, dtype=torch.float64)
    >>> np.allclose(layer(x).detach().numpy(), x.numpy() @ op.toarray().T)
    True
    """
    if not isinstance(op, DeButOperator):
        raise TypeError(f"to_torch_layer() needs a DeButOperator, got {type(op).__name__}")
    try:
        import torch
    except ImportError:
        raise ImportError(
            "to_torch_layer() needs PyTorch: install it with pip install torch (or pydebut[torch])"
        ) from None
    _check_layer_dtype(torch, dtype, op.dtype)
    if op.row_perm is not None or op.col_perm is not None:
        raise ValueError(
            "to_torch_layer(): the operator carries a row or column permutation, which the "
            "layer's twiddle cannot hold; make the layer of op.with_permutations() and apply "
            "it between them: layer(x[..., numpy.argsort(op.col_perm)])[..., op.row_perm] "
            "(each index where that permutation is not None)"
        )
    bias = as_bool(bias, "to_torch_layer(): bias")
    if dtype is not None:
        _check_cast(torch, op, dtype)
    r_shapes, vector = op.to_twiddle()
    layer = _layer_class(torch)(r_shapes, torch.from_numpy(np.ascontiguousarray(vector)), bias)
    return layer if dtype is None else layer.to(dtype)


def _check_cast(torch: Any, op: DeButOperator, dtype: Any) -> None:
    """Refuse, naming the factor, finite weights that ``dtype`` cannot hold, as
    :meth:`DeButOperator.astype` does (``Module.to`` makes them infinite or zero)."""
    if not all(np.isfinite(w).all() for w in op.weights):  # built with check_finite=False
        return
    finfo = torch.finfo(dtype)
    for index, weights in enumerate(op.weights):
        cast = torch.from_numpy(np.array(weights)).to(dtype)  # a writable copy, as torch wants
        error = cast_range_error(
            f"to_torch_layer(): weights of {factor_label(op.chain, index)}",
            dtype,
            finfo,
            bool(torch.isfinite(cast).all()),
            largest_magnitude(weights),
        )
        if error is not None:
            raise error


def _check_layer_dtype(torch: Any, dtype: Any, weights: np.dtype) -> None:
    """Refuse a ``dtype`` that is not a floating-point or complex ``torch.dtype``, or is
    real for complex ``weights`` (``Module.to`` would drop their imaginary parts)."""
    if dtype is None:
        return
    if not isinstance(dtype, torch.dtype) or not (dtype.is_floating_point or dtype.is_complex):
        raise TypeError(
            "to_torch_layer(): dtype must be a floating-point or complex torch.dtype such as "
            f"torch.float32, got {type(dtype).__name__} {dtype!r}"
        )
    if weights.kind == "c" and not dtype.is_complex:
        raise TypeError(
            f"to_torch_layer(): the operator's weights are complex but dtype {dtype} is real, "
            "which would drop their imaginary parts; pass a complex dtype"
        )


def from_torch_layer(layer: Any, *, check_finite: bool = True) -> DeButOperator:
    """The ``DeButOperator`` of a DeBut PyTorch module (its bias is left out).

    Parameters
    ----------
    layer : torch.nn.Module
        A module with the attributes ``r_shapes`` and ``twiddle`` (a torch tensor
        in the layout of :meth:`DeButOperator.to_twiddle`), as
        :func:`to_torch_layer` makes it, trained or not; or the DeBut authors'
        layer, whose ``R_shapes`` and ``twiddle`` have the same layout. The
        weights are read through ``twiddle.detach().cpu()``, wherever the tensor
        lives; ``r_shapes`` may be a list or a tensor (a buffer), flat or ``(L, 5)``.
    check_finite : bool, default True
        Refuse weights that are NaN or infinite (a diverged training); False
        reads them as they are, as :meth:`DeButOperator.from_twiddle` does.

    Returns
    -------
    DeButOperator
        Of the dtype :meth:`DeButOperator.from_twiddle` gives the tensor's
        values, with no permutations.

    Raises
    ------
    TypeError
        If ``layer`` lacks these attributes or ``twiddle`` is not a tensor.
    ValueError
        If the weights do not fit ``r_shapes``, or are not finite and
        ``check_finite`` is True.

    Notes
    -----
    Weights of a dtype NumPy lacks (``torch.bfloat16``, ``torch.complex32``,
    the 8-bit floats) are read in float32 or complex64, which hold each of
    their values exactly.

    Examples
    --------
    >>> op = DeButOperator.random([(4, 8, 2, 4, 1)], rng=0)
    >>> np.array_equal(from_torch_layer(to_torch_layer(op)).toarray(), op.toarray())
    True
    """
    r_shapes = getattr(layer, "r_shapes", getattr(layer, "R_shapes", None))
    if not hasattr(layer, "twiddle") or r_shapes is None:
        raise TypeError(
            "from_torch_layer() needs a module with a twiddle and r_shapes (made by "
            f"to_torch_layer()) or R_shapes (the DeBut authors' layer), got {type(layer).__name__}"
        )
    if not hasattr(layer.twiddle, "detach"):
        raise TypeError(
            "from_torch_layer() needs a module whose twiddle is a torch tensor, got "
            f"{type(layer.twiddle).__name__}; DeButOperator.from_twiddle(r_shapes, vector) "
            "reads a NumPy vector"
        )
    if hasattr(r_shapes, "detach"):  # a tensor, kept as a buffer: its rows as lists
        r_shapes = r_shapes.detach().cpu().tolist()
    return DeButOperator.from_twiddle(
        r_shapes, _tensor_values(layer.twiddle), check_finite=check_finite
    )


def _tensor_values(tensor: Any) -> np.ndarray:
    """A tensor's values as a NumPy array, its lazy conjugate or negation applied, in a
    dtype NumPy has: bfloat16 and the 8-bit floats as float32, complex32 as complex64."""
    values = tensor.detach().cpu()
    torch = sys.modules.get("torch")  # imported wherever a torch tensor exists
    if torch is not None and isinstance(values, torch.Tensor):
        values = values.resolve_conj().resolve_neg()
        numpy_has = (torch.float16, torch.float32, torch.float64, torch.complex64, torch.complex128)
        if (values.is_floating_point() or values.is_complex()) and values.dtype not in numpy_has:
            values = values.to(torch.complex64 if values.is_complex() else torch.float32)
    return values.numpy()


@functools.cache
def _layer_class(torch: Any) -> Any:
    """The module class, defined once PyTorch is imported (pydebut does not import it)."""

    class DeButLayer(torch.nn.Module):
        """``x @ A.T (+ bias)`` for a DeBut chain in the paper's twiddle layout."""

        def __init__(self, r_shapes: list[list[int]], vector: Any, bias: bool) -> None:
            super().__init__()
            chain = Chain.from_r_shapes(r_shapes)
            self.r_shapes = [list(shape) for shape in r_shapes]
            self.out_features, self.in_features = chain.shape
            self._views = [
                (spec.nnz, spec.weight_shape) for spec in reversed(chain.factors)
            ]  # application order: (size, (k, r, s, t))
            self.twiddle = torch.nn.Parameter(vector.clone())
            self.bias = (
                torch.nn.Parameter(torch.zeros(self.out_features, dtype=vector.dtype))
                if bias
                else None
            )

        def forward(self, x: Any) -> Any:
            if x.ndim == 0 or x.shape[-1] != self.in_features:
                raise ValueError(
                    f"DeButLayer: x must have shape (..., {self.in_features}) (row vectors), "
                    f"got {tuple(x.shape)}"
                )
            lead = x.shape[:-1]
            out = x.reshape(-1, self.in_features)
            offset = 0
            for size, (k, r, s, t) in self._views:
                twiddle = self.twiddle[offset : offset + size].view(k, t, r, s)
                out = torch.einsum("ktrs,bkst->bkrt", twiddle, out.reshape(-1, k, s, t))
                out = out.reshape(-1, k * r * t)
                offset += size
            out = out.reshape(*lead, self.out_features)
            return out if self.bias is None else out + self.bias

        def extra_repr(self) -> str:
            return (
                f"in_features={self.in_features}, out_features={self.out_features}, "
                f"factors={len(self.r_shapes)}, params={self.twiddle.numel()}, "
                f"bias={self.bias is not None}"
            )

    DeButLayer.__qualname__ = "DeButLayer"  # as pickle finds it: the module's __getattr__
    return DeButLayer


def __getattr__(name: str) -> Any:
    """``DeButLayer``, the class of :func:`to_torch_layer`'s modules, made when first asked
    for (importing PyTorch): pickle finds a saved module's class by this name."""
    if name == "DeButLayer":
        import torch

        return _layer_class(torch)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
