"""Pictures of chains and fits: factor supports, the densification of partial
products, and the error history of a fit.

Matplotlib is an optional dependency (``pip install pydebut[plot]``); it is
imported only when a picture is drawn. Every function takes ``ax=`` so that the
pictures go into figures that pyplot (and sphinx-gallery) manage, or into a
layout of your own.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from . import density
from ._arguments import as_positive_int
from .density import (
    _pooled_partial_supports,
    _pooled_work,
    _support_fraction,
    partial_supports,
)
from .spec import Chain

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from .fit import FitResult

__all__ = ["plot_chain", "plot_fit_history"]


def _matplotlib_figure() -> type:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError(
            "plotting needs matplotlib: install it with pip install pydebut[plot]"
        ) from None
    return Figure


#: Most factors :func:`plot_chain` draws: 64 make a 2 x 64 grid about 120 inches wide,
#: drawn in 0.7 s and saved in 2.8 s here; 5,000 took over two minutes.
MAX_PLOT_FACTORS = 64

#: Most pixels in all the images :func:`plot_chain` draws (each panel's image is at most
#: ``max_pixels`` a side): 64 factors of 2048 x 2048 at ``max_pixels=512`` are drawn and
#: saved in 12 s at 0.8 GB here (9 s at the default 256); 16384 x 16384 butterflies at
#: ``max_pixels=16384`` (7.5 billion pixels) ran out of 6 GiB of memory.
MAX_PLOT_PIXELS = 2**25


def plot_chain(
    chain: Chain | Iterable[Any],
    *,
    ax: Figure | Sequence[Axes] | np.ndarray | None = None,
    max_pixels: int = 256,
) -> Figure:
    r"""Draw each factor's support and the support of each partial product.

    Column ``l`` shows :math:`F_l` on top and, below it, :math:`F_l F_{l+1}
    \cdots F_L`: reading the bottom row from right to left shows how the
    product fills in as the chain is applied (as in the paper's figure of a
    bulging chain). Every panel keeps the matrix's true aspect ratio and is
    labelled with its factor and ``(p, q, r, s, t)``.

    Parameters
    ----------
    chain : Chain or iterable of (p, q, r, s, t)
        The chain, left to right.
    ax : Figure, sequence of 2 L Axes, or None
        Where to draw. A figure gets a ``2 x L`` grid of new axes and a title;
        axes (a ``(2, L)`` array as from ``plt.subplots(2, L)``, or a flat
        sequence, factors first) are drawn into as they are. ``None`` makes a
        new figure that is not attached to pyplot.
    max_pixels : int
        Larger matrices are shown pooled into square cells, at most this many a
        side; a cell's grey level grows with the fraction of its entries that
        may be non-zero (as its square root, so that sparse structure stays
        visible; black: all of them). A chain with a panel (``F_l`` or
        ``F_l ... F_L``) of more than ``2**22`` entries is drawn from its
        structure, without building a support: a cell is black where any of its
        entries may be non-zero. The ``2 L`` images together hold at most
        :data:`MAX_PLOT_PIXELS` pixels.

    Returns
    -------
    matplotlib.figure.Figure
        The figure drawn into; save it with ``fig.savefig(path)``.

    Raises
    ------
    ImportError
        If matplotlib is not installed.
    TypeError
        If ``ax`` is neither a figure nor a sequence of axes, or ``max_pixels``
        is not an integer.
    ValueError
        If ``ax`` holds a number of axes other than ``2 * chain.n_factors``
        or is a grid of another shape than ``(2, L)``, ``max_pixels`` is not
        positive, the chain has more than :data:`MAX_PLOT_FACTORS` factors,
        its images would hold more than :data:`MAX_PLOT_PIXELS` pixels, or
        drawing the supports of a large chain from its structure would take more than
        :data:`pydebut.density.MAX_REACH_WORK` operations: about
        ``ceil(min(n, max_pixels) / 64)`` words for each of the ``sum(p_l + q_l)``
        rows and columns of the factors, so a smaller ``max_pixels`` (down to
        64) or fewer or smaller factors narrow it. The check comes before anything
        is drawn, and the message says what to change.

    Examples
    --------
    >>> fig = plot_chain(Chain.from_factorizations([2, 2], [2, 2]))
    >>> len(fig.axes), fig.axes[0].get_title()
    (4, '$F_{1}$ (4, 4, 2, 2, 2)')

    Into a figure of your own (e.g. one that pyplot manages):

    >>> from matplotlib.figure import Figure
    >>> fig = plot_chain([(12, 8, 3, 2, 2)], ax=Figure(figsize=(3, 5)))
    >>> [float(limit) for limit in fig.axes[0].get_xlim() + fig.axes[0].get_ylim()]
    [0.0, 8.0, 12.0, 0.0]
    """
    Figure = _matplotlib_figure()
    chain = chain if isinstance(chain, Chain) else Chain(chain)
    max_pixels = as_positive_int(max_pixels, "max_pixels", "plot_chain")
    refusal = _refusal(chain, max_pixels)
    if refusal is not None:
        reason, remedy = refusal
        raise ValueError(f"plot_chain cannot draw this chain: {reason}: {remedy}")
    n_factors = chain.n_factors
    # Both panels of column l have p_l rows; the wider of them (q_l or n columns) sets
    # the column's width for a common panel height (at most 2 inches, less when the
    # panels would be over 14 inches wide); a title needs 1.7 inches.
    aspects = np.clip([max(spec.q, chain.shape[1]) / spec.p for spec in chain], 0.3, 4.0)
    height = min(2.0, 14.0 / aspects.sum())
    widths = np.maximum(height * aspects, 1.7)
    axes = None if ax is None or isinstance(ax, Figure) else _axes_grid(ax, n_factors)
    panels = _panel_images(chain, max_pixels)
    fractions = _product_fractions(chain)
    if ax is None:
        size = (max(widths.sum() + 0.2 * n_factors, 4.5), 2 * height + 1.4)
        ax = Figure(figsize=size, layout="constrained")
    if axes is None:
        figure = ax
        axes = figure.subplots(2, n_factors, squeeze=False, width_ratios=widths)
        m, n = chain.shape
        factors = f"{n_factors} factor{'s' if n_factors > 1 else ''}"
        figure.suptitle(
            f"${m} \\times {n}$: {factors}, {chain.n_params} params, {chain.kind}", fontsize=10
        )
    else:
        figure = axes[0, 0].figure
    for l, (spec, (factor, product), fraction) in enumerate(  # noqa: E741
        zip(chain, panels, fractions, strict=True)
    ):
        label = f"$F_{{{l + 1}}}$"
        tail = label if l == n_factors - 1 else f"$F_{{{l + 1}}} \\cdots F_{{{n_factors}}}$"
        share = "too large to count" if fraction is None else f"{100 * fraction:.3g}% non-zero"
        _draw_support(
            axes[0, l],
            spec.shape,
            factor,
            f"{label} ({spec.p}, {spec.q}, {spec.r}, {spec.s}, {spec.t})",
        )
        _draw_support(
            axes[1, l],
            (spec.p, chain.shape[1]),
            product,
            f"{tail}  ${spec.p} \\times {chain.shape[1]}$\n{share}",
        )
    return figure


def _refusal(chain: Chain, max_pixels: int) -> tuple[str, str] | None:
    """Which limit of :func:`plot_chain` ``chain`` is beyond at ``max_pixels``, or None.

    Returns the reason and how to narrow the request in Python (the command
    line gives its own advice), checked from the chain's structure alone.
    """
    n_factors = chain.n_factors
    if n_factors > MAX_PLOT_FACTORS:
        return (
            f"it draws two panels per factor, and this chain has {n_factors} factors, more than "
            f"MAX_PLOT_FACTORS = {MAX_PLOT_FACTORS} of pydebut.plotting",
            f"plot a part of it, e.g. Chain(chain.factors[:{MAX_PLOT_FACTORS}])",
        )
    pixels = _image_pixels(chain, max_pixels)
    if pixels > MAX_PLOT_PIXELS:
        return (
            f"its {2 * n_factors} images would hold up to {pixels:,} pixels at max_pixels = "
            f"{max_pixels}, more than MAX_PLOT_PIXELS = {MAX_PLOT_PIXELS:,} of pydebut.plotting",
            f"pass a smaller max_pixels, e.g. {math.isqrt(MAX_PLOT_PIXELS // (2 * n_factors))}",
        )
    work = _structure_work(chain, max_pixels)
    if work <= density.MAX_REACH_WORK:
        return None
    rows = sum(spec.p + spec.q for spec in chain)
    reason = (
        f"drawing the supports of its factors and partial products, at most {max_pixels} cells "
        f"a side, from the structure takes about {work:,} operations (up to "
        f"{-(-max_pixels // 64)} words of 64 bits for each of the sum(p_l + q_l) = {rows:,} rows "
        f"and columns of the factors), above the limit MAX_REACH_WORK = "
        f"{density.MAX_REACH_WORK:,} of pydebut.density"
    )
    if max_pixels > 64 and _structure_work(chain, 64) <= density.MAX_REACH_WORK:
        return reason, "pass max_pixels=64 (one word for each row and column)"
    at_64 = " at max_pixels=64" if max_pixels > 64 else ""
    return reason, f"plot a chain whose sum(p_l + q_l) is at most {density.MAX_REACH_WORK:,}{at_64}"


def _structure_work(chain: Chain, max_pixels: int) -> int:
    """Operations of :func:`_panel_images` drawing ``chain`` from its structure; 0 if it
    pools the exact supports instead (bounded by :data:`EXACT_POOL_ENTRIES`)."""
    if _max_panel_entries(chain) <= EXACT_POOL_ENTRIES:
        return 0
    factors = (_pooled_work(Chain([spec]), max_pixels) for spec in chain)
    return max(_pooled_work(chain, max_pixels), *factors)


def _max_panel_entries(chain: Chain) -> int:
    """Entries of the largest panel: ``F_l`` (``p_l x q_l``) or ``F_l ... F_L`` (``p_l x n``)."""
    n = chain.shape[1]
    return max(spec.p * max(spec.q, n) for spec in chain)


def _image_pixels(chain: Chain, max_pixels: int) -> int:
    """Most pixels of the images of ``F_l`` and ``F_l ... F_L``, at most ``max_pixels`` a side."""
    n = chain.shape[1]
    return sum(
        min(spec.p, max_pixels) * (min(spec.q, max_pixels) + min(n, max_pixels)) for spec in chain
    )


def _axes_grid(ax: Any, n_factors: int) -> np.ndarray:
    """The ``(2, L)`` array of axes in ``ax``, or an error naming what is wrong."""
    from matplotlib.axes import Axes

    grid = np.asarray(ax, dtype=object) if np.iterable(ax) else np.array([ax], object)
    flat = grid.ravel()
    if not all(isinstance(each, Axes) for each in flat):
        raise TypeError(
            f"ax must be a matplotlib Figure or a sequence of Axes, got {type(ax).__name__}"
        )
    if grid.ndim > 1 and sorted(grid.shape)[-2] > 1 and grid.shape != (2, n_factors):
        raise ValueError(  # filled row by row, an (L, 2) grid would mix factors and products
            f"ax is a grid of {' x '.join(map(str, grid.shape))} axes: it must be 2 x "
            f"{n_factors} (factors, then partial products, as plt.subplots(2, {n_factors}) "
            "gives) or a flat sequence"
        )
    if flat.size != 2 * n_factors:
        raise ValueError(
            f"ax must hold 2 * n_factors = {2 * n_factors} axes (factors, then partial "
            f"products), got {flat.size}"
        )
    return flat.reshape(2, n_factors)


def _draw_support(
    ax: Axes, mask_shape: tuple[int, int], pooled: tuple[np.ndarray, tuple[int, int]], title: str
) -> None:
    """Show a pooled support over the true extent of a ``mask_shape`` matrix."""
    from matplotlib.colors import PowerNorm

    image, (cell_rows, cell_cols) = pooled
    rows, cols = mask_shape
    ax.imshow(
        image,
        cmap="Greys",
        norm=PowerNorm(0.5, vmin=0, vmax=1),  # sparse pooled structure stays visible
        interpolation="nearest",
        extent=(0, image.shape[1] * cell_cols, image.shape[0] * cell_rows, 0),
    )
    ax.set_xlim(0, cols)
    ax.set_ylim(rows, 0)
    ax.set_aspect("equal")
    ax.set_title(title, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])


def _pool(mask: np.ndarray, max_pixels: int) -> tuple[np.ndarray, int]:
    """Pool a support into square cells of ``cell x cell`` entries, at most ``max_pixels`` a side.

    Returns the image, the fraction of each cell's entries that may be non-zero
    (the last row and column of cells may be cut short by the matrix's edge),
    and the cell size.
    """
    rows, cols = mask.shape
    cell = -(-max(rows, cols) // max_pixels)
    grid = (-(-rows // cell), -(-cols // cell))
    if cell == 1:
        return mask.astype(np.float64), 1
    longer, shorter = (0, 1) if rows >= cols else (1, 0)  # the first sums shrink the most
    counts = _cell_sums(_cell_sums(mask, cell, longer), cell, shorter)
    row_sizes = np.minimum(cell, rows - cell * np.arange(grid[0]))
    col_sizes = np.minimum(cell, cols - cell * np.arange(grid[1]))
    return counts / np.outer(row_sizes, col_sizes), cell


def _cell_sums(values: np.ndarray, cell: int, axis: int) -> np.ndarray:
    """Sums of runs of ``cell`` entries along ``axis`` (the last run may be short), as int64.

    Sums views of ``values``, so no padded or widened copy of it is made.
    """
    runs = np.moveaxis(values, axis, 0)
    whole = runs.shape[0] // cell * cell
    sums = runs[:whole].reshape(whole // cell, cell, *runs.shape[1:]).sum(axis=1, dtype=np.int64)
    if whole < runs.shape[0]:
        rest = runs[whole:].sum(axis=0, keepdims=True, dtype=np.int64)
        sums = np.concatenate([sums, rest])
    return np.moveaxis(sums, 0, axis)


#: Panels of at most this many entries are pooled exactly, as the fraction of possible
#: non-zeros in each square cell; larger ones from the structure (any non-zero per cell).
EXACT_POOL_ENTRIES = 2**22


def _panel_images(
    chain: Chain, max_pixels: int
) -> list[tuple[tuple[np.ndarray, tuple[int, int]], tuple[np.ndarray, tuple[int, int]]]]:
    """Pooled images and cell sizes of ``F_l`` and ``F_l ... F_L`` for ``l = 1 ... L``.

    Small panels show the share of possible non-zeros in each square cell
    (:func:`_pool`); a chain with a larger panel is drawn from its structure
    (:func:`_pooled_images`, a cell dark where any entry may be non-zero), so
    no full support is ever built for it.
    """
    n = chain.shape[1]
    if _max_panel_entries(chain) <= EXACT_POOL_ENTRIES:
        products = partial_supports(chain)[::-1]
        return [
            (_square(_pool(spec.support(), max_pixels)), _square(_pool(product, max_pixels)))
            for spec, product in zip(chain, products, strict=True)
        ]
    factors, products = _pooled_images(chain, max_pixels)
    return [
        ((factor, _cells(spec.shape, max_pixels)), (product, _cells((spec.p, n), max_pixels)))
        for spec, factor, product in zip(chain, factors, products, strict=True)
    ]


def _square(pooled: tuple[np.ndarray, int]) -> tuple[np.ndarray, tuple[int, int]]:
    image, cell = pooled
    return image, (cell, cell)


def _cells(shape: tuple[int, int], max_pixels: int) -> tuple[int, int]:
    """Cell size of :func:`pydebut.density._pooled_partial_supports` for a ``shape`` panel."""
    return -(-shape[0] // max_pixels), -(-shape[1] // max_pixels)


def _product_fractions(chain: Chain) -> list[float | None]:
    """Exact share of non-zeros of ``F_l ... F_L``; None beyond the density work limit."""
    return [_support_fraction(chain[first:]) for first in range(chain.n_factors)]


def _pooled_images(chain: Chain, max_pixels: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Images of each factor's and each partial product's support, pooled, from the structure.

    Returns, for ``l = 1 ... L``, the pooled support of ``F_l`` and of
    ``F_l ... F_L`` (at most ``max_pixels`` cells a side, a cell True when any
    entry inside may be non-zero). Full supports are never built; :func:`plot_chain`
    has checked the work of every image (:func:`_structure_work`) before.
    """
    factors = [Chain([spec]) for spec in chain]
    products = _pooled_partial_supports(chain, max_pixels)[::-1]
    return [_pooled_partial_supports(factor, max_pixels)[0] for factor in factors], products


#: ``gid`` of the markers of exact zeros, which a logarithmic axis cannot show.
EXACT_ZEROS = "pydebut-exact-zeros"
#: Fewest decades the error axis spans: ticks labelled with 3 significant digits stay apart.
MIN_HISTORY_DECADES = 0.2
#: Decades of the error axis, ``10**-HISTORY_DECADES`` to ``10**HISTORY_DECADES`` at most
#: (errors and baselines beyond are refused): axes spanning 1e-250 to 1e250 overflowed in
#: matplotlib's logarithmic ticks.
HISTORY_DECADES = 200


def plot_fit_history(
    result: FitResult,
    *,
    ax: Axes | Figure | None = None,
    baseline: float | None = None,
    baseline_label: str = "baseline",
    **line: Any,
) -> Axes:
    """Plot a fit's relative error after the start and after every half-sweep.

    The error axis is logarithmic and fitted to the data (every line drawn in
    ``ax`` so far whose heights are data, as the baseline's and ``ax.axhline``'s
    but not ``ax.axvline``'s), so the gain of the ALS sweeps stays
    visible even when it is small next to the error itself; it spans at least
    ``MIN_HISTORY_DECADES`` (0.2), so that its tick labels stay apart, and an
    axis with a single power of ten labels 2, 3, 4 and 6 times it too. Errors of
    exactly 0, which a logarithmic axis cannot show, are marked with a triangle
    on its bottom edge (in the history's colour, labelled ``"<label>: exactly
    0"``, the axis label saying so), at least a decade below the other errors;
    the history's line leaves them out. Half-sweeps are counted with integer
    ticks.

    Parameters
    ----------
    result : FitResult
        A result of :func:`pydebut.fit_als` (or of
        :func:`pydebut.fit_hierarchical`: one point, its single error, which
        may be exactly 0).
    ax : Axes, Figure or None
        Where to draw: axes, or a figure's only axes (made if it has none);
        ``None`` makes a new figure that is not attached to pyplot. Call again
        with the same ``ax`` to compare several fits.
    baseline : float, optional
        A relative error to draw as a horizontal dashed line for comparison,
        e.g. that of a truncated SVD with as many parameters as the chain, or
        the noise level of a synthetic target.
    baseline_label : str
        The baseline's label in a legend.
    **line
        Passed to ``ax.plot`` for the history (e.g. ``label=``, ``color=``);
        they override the default circles of size 3 joined by a solid line.

    Returns
    -------
    matplotlib.axes.Axes
        The axes drawn into.

    Raises
    ------
    ImportError
        If matplotlib is not installed.
    TypeError
        If ``result`` is not a :class:`~pydebut.FitResult`, ``ax`` is neither
        axes nor a figure, or ``baseline`` is not a real number (a bool is not).
    ValueError
        If ``ax`` is a figure with several axes, ``result`` has no finite error
        or a negative one, or ``baseline`` is not positive and finite (a
        logarithmic axis cannot show it); or an error other than 0 or a
        baseline lies beyond ``10**-HISTORY_DECADES`` to ``10**HISTORY_DECADES``
        (200).

    Examples
    --------
    >>> import numpy as np
    >>> from pydebut import Chain, fit_als
    >>> chain = Chain.from_factorizations([4, 4], [4, 4])
    >>> D = np.random.default_rng(0).standard_normal(chain.shape)
    >>> result = fit_als(D, chain, n_sweeps=3, init="random", rng=0)
    >>> ax = plot_fit_history(result, baseline=0.5, label="ALS")
    >>> ax.get_yscale(), len(ax.lines[0].get_xdata())
    ('log', 7)
    """
    Figure = _matplotlib_figure()
    from matplotlib.cbook import normalize_kwargs
    from matplotlib.lines import Line2D
    from matplotlib.ticker import LogFormatterSciNotation, MaxNLocator, StrMethodFormatter

    from .fit import FitResult

    if not isinstance(result, FitResult):
        raise TypeError(
            "result must be a FitResult (of fit_als or fit_hierarchical), "
            f"got {type(result).__name__}"
        )
    if baseline is not None and (
        isinstance(baseline, bool) or not isinstance(baseline, numbers.Real)
    ):
        raise TypeError(
            f"baseline must be a real number (a relative error), got {type(baseline).__name__}"
        )
    try:  # a Python int beyond the largest float
        errors = np.asarray(result.errors, dtype=np.float64)
        baseline = None if baseline is None else float(baseline)
    except OverflowError:
        raise ValueError(
            "result.errors and baseline must be relative errors within the float range"
        ) from None
    if not np.any(errors < np.inf):
        raise ValueError("result.errors has no finite error to show")
    if np.any(errors < 0):
        raise ValueError(f"result.errors must be relative errors, at least 0; got {errors.min()}")
    if baseline is not None and not 0 < baseline < np.inf:
        raise ValueError(f"baseline must be a positive finite relative error, got {baseline}")
    lowest, highest = 10.0**-HISTORY_DECADES, 10.0**HISTORY_DECADES
    drawn = errors[(errors > 0) & (errors < np.inf)]
    baselines = [] if baseline is None else [baseline]
    for name, values in (("result.errors", drawn), ("baseline", baselines)):
        outside = [value for value in values if not lowest <= value <= highest]
        if outside:
            raise ValueError(
                f"{name} holds {outside[0]:.3g}, beyond the errors a logarithmic axis draws "
                f"(1e-{HISTORY_DECADES} to 1e{HISTORY_DECADES}, HISTORY_DECADES)"
            )
    ax = _history_axes(Figure(figsize=(5.5, 3.4), layout="constrained") if ax is None else ax)
    style = {"marker": "o", "linestyle": "-", "markersize": 3}
    steps, exact = np.arange(errors.size), errors == 0
    (history,) = ax.plot(
        steps, np.where(exact, np.nan, errors), **style | normalize_kwargs(line, Line2D)
    )
    if exact.any():  # at the bottom edge, in the history's colour, not clipped by the axes
        ax.plot(
            steps[exact],
            np.zeros(exact.sum()),
            transform=ax.get_xaxis_transform(),
            linestyle="none",
            marker="v",
            color=history.get_color(),
            clip_on=False,
            label=f"{history.get_label()}: exactly 0",
            gid=EXACT_ZEROS,
        )
    if baseline is not None:
        ax.axhline(baseline, color="0.4", linestyle="--", linewidth=1, label=baseline_label)
    ax.set_yscale("log")
    values = _data_heights(ax)
    values = values[(values > 0) & (values < np.inf)]
    if values.size:
        low, high = np.log10(values.min()), np.log10(values.max())
    else:  # only exact zeros: the range of relative errors in float64
        low, high = np.log10(np.finfo(np.float64).eps), 0.0
    zeros = any(each.get_gid() == EXACT_ZEROS for each in ax.lines)
    if zeros:  # the exact zeros, marked at the bottom, are at least a decade below the rest
        low -= 1
    margin = max(0.08 * (high - low), (MIN_HISTORY_DECADES - (high - low)) / 2)
    # within HISTORY_DECADES, whatever else ax holds
    bottom, top = max(low - margin, -HISTORY_DECADES), min(high + margin, HISTORY_DECADES)
    ax.set_ylim(10.0**bottom, 10.0**top)
    if high - low < 1:  # within a decade, label the minor ticks plainly, not as 9.3 x 10^-1
        ax.yaxis.set_major_formatter(StrMethodFormatter("{x:.3g}"))
        ax.yaxis.set_minor_formatter(StrMethodFormatter("{x:.3g}"))
    elif math.floor(top) == math.ceil(bottom):  # one power of ten on the axis: label 2, 3,
        # 4 and 6 times it as well (matplotlib before 3.11 labelled the power alone)
        ax.yaxis.set_minor_formatter(
            LogFormatterSciNotation(labelOnlyBase=False, minor_thresholds=(2, 0.4))
        )
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("half-sweep (0: start)")
    ax.set_ylabel("relative error" + (" (\u25bc: exactly 0)" if zeros else ""))
    return ax


def _history_axes(ax: Any) -> Axes:
    """The axes ``ax`` names: itself, or a figure's only axes (new if it has none)."""
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    if isinstance(ax, Axes):
        return ax
    if not isinstance(ax, Figure):
        raise TypeError(f"ax must be a matplotlib Axes or Figure, got {type(ax).__name__}")
    if len(ax.axes) > 1:
        raise ValueError(
            f"ax is a figure with {len(ax.axes)} axes: pass the one to draw into as ax"
        )
    return ax.axes[0] if ax.axes else ax.subplots()


def _data_heights(ax: Axes) -> np.ndarray:
    """Heights of the lines in ``ax`` whose y coordinates are data (not ``axvline``'s)."""
    heights = [
        np.asarray(line.get_ydata(), float).ravel()
        for line in ax.lines
        if line.get_transform().contains_branch_seperately(ax.transData)[1]
    ]
    return np.concatenate(heights)
