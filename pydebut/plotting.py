"""Pictures of chains: factor supports and the densification of partial products.

Matplotlib is an optional dependency (``pip install pydebut[plot]``); it is
imported only when a picture is drawn.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

from .density import _pooled_partial_supports, _support_fraction
from .spec import Chain

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["plot_chain"]


def plot_chain(chain: Chain | Iterable[Any], *, max_pixels: int = 256) -> Figure:
    """Draw each factor's support and the support of each partial product.

    Column ``l`` shows ``F_l`` on top and, below it, ``F_l F_{l+1} ... F_L``:
    reading the bottom row from right to left shows how the product fills in
    as the chain is applied (as in the paper's figure of a bulging chain).

    Parameters
    ----------
    chain : Chain or iterable of (p, q, r, s, t)
        The chain, left to right.
    max_pixels : int
        Larger matrices are shown pooled into at most this many cells a side;
        a cell is dark when any entry inside it may be non-zero.

    Returns
    -------
    matplotlib.figure.Figure
        A figure not attached to pyplot; save it with ``fig.savefig(path)``.

    Raises
    ------
    ImportError
        If matplotlib is not installed.

    Examples
    --------
    >>> fig = plot_chain(Chain.from_factorizations([2, 2], [2, 2]))
    >>> len(fig.axes)
    4
    """
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError(
            "plotting needs matplotlib: install it with pip install pydebut[plot]"
        ) from None
    chain = chain if isinstance(chain, Chain) else Chain(chain)
    if max_pixels < 1:
        raise ValueError(f"max_pixels must be positive, got {max_pixels}")
    factor_images, product_images, fractions = _pooled_images(chain, max_pixels)
    n_factors = chain.n_factors
    # at least 4.5 inches wide, so the title fits above a short chain
    figure = Figure(figsize=(max(2.4 * n_factors, 4.5), 5.0), layout="constrained")
    axes = figure.subplots(2, n_factors, squeeze=False)
    for l, spec in enumerate(chain):  # noqa: E741
        label = f"F_{l + 1}"
        tail = label if l == n_factors - 1 else f"F_{l + 1}…F_{n_factors}"
        fraction = fractions[l]
        share = "too large to count" if fraction is None else f"{100 * fraction:.3g}% non-zero"
        panels = (
            (axes[0, l], factor_images[l], f"{label}  {spec.p}x{spec.q}\n(r, s, t) = "
             f"({spec.r}, {spec.s}, {spec.t})"),
            (axes[1, l], product_images[l], f"{tail}  {spec.p}x{chain.shape[1]}\n{share}"),
        )  # fmt: skip
        for ax, image, title in panels:
            ax.imshow(image, cmap="Greys", vmin=0, vmax=1,
                      interpolation="nearest", aspect="auto")  # fmt: skip
            ax.set_title(title, fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
    m, n = chain.shape
    factors = f"{n_factors} factor{'s' if n_factors > 1 else ''}"
    figure.suptitle(f"{m} x {n}: {factors}, {chain.n_params} params, {chain.kind}")
    return figure


def _pooled_images(
    chain: Chain, max_pixels: int
) -> tuple[list[np.ndarray], list[np.ndarray], list[float | None]]:
    """Images of each factor's and each partial product's support, pooled, from the structure.

    Returns, for ``l = 1 ... L``, the pooled support of ``F_l`` and of
    ``F_l ... F_L`` (at most ``max_pixels`` cells a side, a cell True when any
    entry inside may be non-zero) and the exact fraction of non-zeros of
    ``F_l ... F_L`` (``None`` when counting it would exceed the density work
    limit). Full supports are never built.
    """
    factors = [_pooled_partial_supports(Chain([spec]), max_pixels)[0] for spec in chain]
    products = _pooled_partial_supports(chain, max_pixels)[::-1]
    fractions = [_support_fraction(chain[first:]) for first in range(chain.n_factors)]
    return factors, products, fractions
