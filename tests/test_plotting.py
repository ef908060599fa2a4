"""Pictures: true aspect ratios, drawing into given axes, labels, bounded images."""

import re

import numpy as np
import pytest

pytest.importorskip("matplotlib")

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from pydebut import Chain, FitResult, fit_als, fit_hierarchical, plotting
from pydebut.density import MAX_REACH_WORK
from pydebut.plotting import plot_chain, plot_fit_history
from pydebut.special import butterfly_chain

TALL = Chain([(12, 8, 3, 2, 2)])  # one 12 x 8 factor
LENET = Chain.from_sup_sub(
    "128 256 256 512 512 512 512 256 256 400", "2 4 64 1 2 64 2 2 32 2 1 16 16 25 1"
)


@pytest.mark.parametrize("chain", [TALL, LENET], ids=["12x8", "lenet"])
def test_every_panel_keeps_the_true_aspect_ratio(chain):
    figure = plot_chain(chain, max_pixels=64)
    figure.draw_without_rendering()  # applies the aspect ratios and the layout
    shapes = [spec.shape for spec in chain] + [(spec.p, chain.shape[1]) for spec in chain]
    for ax, (rows, cols) in zip(figure.axes, shapes, strict=True):
        assert ax.get_xlim() == (0, cols) and ax.get_ylim() == (rows, 0)
        box = ax.get_window_extent()  # where the panel is drawn, in pixels
        assert box.height / box.width == pytest.approx(rows / cols, rel=0.03)


def test_pooled_cells_are_square_and_show_the_fraction_of_possible_nonzeros():
    figure = plot_chain(LENET, max_pixels=64)
    product = figure.axes[LENET.n_factors].images[0]  # F_1 ... F_5, 128 x 400 and dense
    assert product.get_array().shape == (19, 58)  # cells of 7 x 7 entries
    assert np.all(product.get_array() == 1.0)
    left, right, bottom, top = product.get_extent()
    assert (right - left) / 58 == (bottom - top) / 19 == 7
    factor = figure.axes[0].images[0].get_array()  # F_1 (128, 256, 2, 4, 64): 4 / 256 per row
    assert np.any((factor > 0) & (factor < 1))  # grey cells, not black wherever one entry is
    np.testing.assert_allclose(factor.mean(), 4 / 256, rtol=0.1)


def test_images_stay_within_max_pixels():
    chain = Chain([(2048, 2048, 2, 2, 1024), (2048, 2048, 2, 2, 512)])
    figure = plot_chain(chain, max_pixels=32)
    assert all(max(ax.images[0].get_array().shape) <= 32 for ax in figure.axes)


def test_titles_are_mathtext_with_the_factor_tuple():
    chain = Chain.from_factorizations([4, 2, 8], [3, 3, 4])
    titles = [ax.get_title() for ax in plot_chain(chain).axes]
    assert titles[:3] == [f"$F_{{{i}}}$ {spec.as_tuple()}" for i, spec in enumerate(chain, 1)]
    assert titles[3].startswith("$F_{1} \\cdots F_{3}$  $64 \\times 36$")
    assert titles[5].startswith("$F_{3}$  $72 \\times 36$")


def test_draws_into_a_pyplot_figure_or_given_axes():
    chain = Chain.from_factorizations([2, 2], [2, 2])
    managed = plt.figure()
    try:
        assert plot_chain(chain, ax=managed) is managed
        assert len(managed.axes) == 4 and managed.get_suptitle()
    finally:
        plt.close(managed)
    figure = Figure()
    grid = figure.subplots(2, 2)
    assert plot_chain(chain, ax=grid) is figure
    assert [len(ax.images) for ax in grid.ravel()] == [1, 1, 1, 1]
    assert not figure.get_suptitle()  # a layout of the caller's: its title is theirs
    flat = Figure().subplots(1, 4)
    plot_chain(chain, ax=list(flat))
    assert flat[2].get_title().startswith("$F_{1} \\cdots F_{2}$")


def test_rejects_wrong_axes_before_drawing():
    chain = Chain.from_factorizations([2, 2], [2, 2])
    with pytest.raises(ValueError, match=r"ax must hold 2 \* n_factors = 4 axes.*got 3"):
        plot_chain(chain, ax=Figure().subplots(1, 3))
    # an (L, 2) grid, one row per factor, was filled row by row: factors and products mixed
    three = Chain.from_factorizations([4, 2, 8], [3, 3, 4])
    with pytest.raises(ValueError, match=r"grid of 3 x 2 axes: it must be 2 x 3 \(factors"):
        plot_chain(three, ax=Figure().subplots(3, 2))
    with pytest.raises(TypeError, match="ax must be a matplotlib Figure or a sequence of Axes"):
        plot_chain(chain, ax="left")
    with pytest.raises(ValueError, match="max_pixels must be positive"):
        plot_chain(chain, max_pixels=0)
    for value in (1.5, float("nan"), "8"):
        with pytest.raises(TypeError, match="plot_chain: max_pixels must be an integer"):
            plot_chain(chain, max_pixels=value)
    long = Chain([(2, 2, 2, 2, 1)] * 5000)  # over two minutes to draw
    with pytest.raises(ValueError, match=r"5000 factors, more than MAX_PLOT_FACTORS = 64"):
        plot_chain(long)


WIDE = 3 * 2**24  # F_1 alone pools 4 words of input cells per coordinate: 4 * 2 * WIDE words


@pytest.mark.parametrize(
    ("chain", "what"),
    [
        (butterfly_chain(2**25), "6,710,886,400 operations .* 1,677,721,600 rows"),
        # the product (n = 1) is within the limit, its first factor alone is not
        (Chain([(WIDE, WIDE, 1, 1, WIDE), (WIDE, 1, WIDE, 1, 1)]), "402,653,184 operations"),
    ],
    ids=["product", "factor"],
)
def test_work_beyond_the_limit_is_refused_before_any_image_or_panel(chain, what, monkeypatch):
    # Before: every factor's image was computed (2**25: 92 s, 3.5 GiB) before the product's
    # work was checked, and the caller's figure had its axes already.
    def unexpected(*args):
        raise AssertionError("an image was computed before the work limit was checked")

    monkeypatch.setattr(plotting, "_pooled_partial_supports", unexpected)
    figure = Figure()
    with pytest.raises(ValueError, match=f"^plot_chain cannot draw this chain: .*{what}"):
        plot_chain(chain, ax=figure)
    assert not figure.axes


@pytest.mark.parametrize(
    ("chain", "advice"),
    [
        (butterfly_chain(2**22), "pass max_pixels=64 "),
        (butterfly_chain(2**30), "plot a chain whose sum.p_l . q_l. is at most 268,435,456 at"),
    ],
    ids=["fewer pixels", "smaller chain"],
)
def test_work_beyond_the_limit_names_the_plot_and_what_narrows_it(chain, advice):
    # Before: "computing the pooled supports ... so this test cannot decide it", as if the
    # chain's density were in doubt, and no way to narrow the plot.
    with pytest.raises(ValueError, match="MAX_REACH_WORK") as refused:
        plot_chain(chain)
    message = str(refused.value)
    assert message.startswith("plot_chain cannot draw this chain: drawing the supports")
    assert "decide" not in message
    assert re.search(f": {advice}", message)
    if "max_pixels=64" in advice:
        assert plotting._structure_work(chain, 64) <= MAX_REACH_WORK


def test_images_beyond_the_pixel_limit_are_refused_before_any_image(monkeypatch):
    # Before: 7.5 billion pixels of 16384 x 16384 panels ran out of 6 GiB after 9 s.
    def unexpected(*args):
        raise AssertionError("an image was computed before the pixel limit was checked")

    monkeypatch.setattr(plotting, "_panel_images", unexpected)
    chain = butterfly_chain(16384)  # 14 factors: 28 panels
    with pytest.raises(ValueError, match=r"28 images .* MAX_PLOT_PIXELS .* e\.g\. 1094$"):
        plot_chain(chain, max_pixels=16384)
    suggested = Chain([(2048, 2048, 2, 2, 1024)] * 14)
    assert plotting._image_pixels(suggested, 1094) <= plotting.MAX_PLOT_PIXELS


def _fit():
    chain = Chain.from_factorizations([4, 4], [4, 4])
    target = np.random.default_rng(0).standard_normal(chain.shape)
    return fit_als(target, chain, n_sweeps=3, init="random", rng=0)


def test_fit_history_log_axis_fitted_to_the_data_with_integer_ticks():
    result = _fit()
    ax = plot_fit_history(result, label="ALS")
    assert ax.get_yscale() == "log"
    np.testing.assert_array_equal(ax.lines[0].get_xdata(), np.arange(7))
    np.testing.assert_array_equal(ax.lines[0].get_ydata(), result.errors)
    bottom, top = ax.get_ylim()
    low, high = min(result.errors), max(result.errors)
    assert bottom < low and high < top
    assert np.log(top / bottom) < 1.5 * np.log(high / low)  # no empty decades
    ticks = [tick for tick in ax.get_xticks() if 0 <= tick <= 6]
    assert ticks and all(float(tick).is_integer() for tick in ticks)


def test_fit_history_baseline_and_several_fits_share_the_range():
    result = _fit()
    ax = plot_fit_history(result, baseline=0.01, label="first")
    assert ax.get_ylim()[0] < 0.01
    assert ax.lines[1].get_label() == "baseline"
    ax.axhline(1e-4, label="reference")
    shifted = FitResult(result.operator, [e * 1e3 for e in result.errors], result.times, "als")
    plot_fit_history(shifted, ax=ax, label="second")
    bottom, top = ax.get_ylim()
    assert bottom < 1e-4 and top > max(shifted.errors)


def test_fit_history_range_leaves_out_lines_whose_heights_are_not_data():
    # Before: ax.axvline(1) (heights 0 and 1 in axes coordinates) stretched the range
    # of errors 1e-8 ... 1e-9 to (1.9e-10, 5.25).
    result = _fit()
    small = FitResult(result.operator, [1e-8, 3e-9, 1e-9], result.times[:3], "als")
    ax = Figure().subplots()
    ax.axvline(1)
    bottom, top = plot_fit_history(small, ax=ax).get_ylim()
    assert 5e-10 < bottom < 1e-9 and 1e-8 < top < 2e-8


def test_fit_history_line_keywords_override_the_default_style():
    # Before: markersize= (documented as passed to ax.plot) clashed with the default's.
    def style(line):
        return line.get_markersize(), line.get_linestyle(), line.get_marker()

    result = _fit()
    ax = plot_fit_history(result, markersize=6, ls="--", marker="s", label="ALS")
    assert style(ax.lines[0]) == (6, "--", "s")
    assert style(plot_fit_history(result).lines[0]) == (3, "-", "o")


def test_fit_history_rejects_what_a_log_axis_cannot_show():
    result = _fit()
    for baseline in (0.0, -1.0, float("nan"), float("inf")):
        # Before: inf drew the history into ax, then failed on matplotlib's axis limits.
        ax = Figure().subplots()
        with pytest.raises(ValueError, match="baseline must be a positive"):
            plot_fit_history(result, ax=ax, baseline=baseline)
        assert not ax.lines
    for errors, message in [([np.inf, np.nan], "no finite error"), ([0.5, -0.1], "at least 0")]:
        wrong = FitResult(result.operator, errors, result.times[:2], "als")
        with pytest.raises(ValueError, match=message):
            plot_fit_history(wrong)
    # Before: a baseline of 1e300 passed, drew the history, then overflowed in matplotlib
    beyond = "beyond the errors a logarithmic axis draws (1e-200 to 1e200, HISTORY_DECADES)"
    for errors, baseline, name in [
        ([0.5, 0.4], 1e201, "baseline holds 1e+201"),
        ([1.7e308, 0.5], None, "result.errors holds 1.7e+308"),
        ([0.5, 1e-320], None, "result.errors holds 1e-320"),
    ]:
        ax = Figure().subplots()
        outside = FitResult(result.operator, errors, result.times[:2], "als")
        with pytest.raises(ValueError, match=re.escape(f"{name}, {beyond}")):
            plot_fit_history(outside, ax=ax, baseline=baseline)
        assert not ax.lines
    # Before: Python ints beyond the largest float passed the range checks (OverflowError)
    for errors, baseline in [([0.5, 0.4], 10**400), ([10**400, 0.5], None)]:
        outside = FitResult(result.operator, errors, result.times[:2], "als")
        with pytest.raises(ValueError, match="relative errors within the float range"):
            plot_fit_history(outside, baseline=baseline)


def test_fit_history_draws_errors_at_the_ends_of_its_range():
    result = _fit()
    edges = FitResult(result.operator, [1e200, 1e-200, 0.0], result.times[:3], "als")
    ax = plot_fit_history(edges, baseline=1e200)
    ax.figure.canvas.draw()  # overflowed in matplotlib's ticks from about 1e-250 to 1e250
    assert ax.get_ylim() == (1e-200, 1e200)


def _tick_labels(ax):
    """The y tick labels that a saved figure shows."""
    ax.figure.canvas.draw()
    bottom, top = ax.get_ylim()
    ticks = ax.yaxis.get_majorticklabels() + ax.yaxis.get_minorticklabels()
    return [t.get_text() for t in ticks if bottom <= t.get_position()[1] <= top and t.get_text()]


def test_fit_history_marks_exact_zeros_at_the_bottom_a_decade_below():
    # Before: the zeros of [1.4355, 0, 0, 0, 0] were not drawn, the line dropped off the
    # bottom and the range was (1.4302, 1.4408) with labels 1.43, 1.43, 1.44, 1.44, 1.44.
    result = _fit()
    exact = FitResult(result.operator, [1.4355, 0.0, 0.0, 0.0, 0.0], result.times[:5], "als")
    ax = plot_fit_history(exact, label="ALS")
    history, zeros = ax.lines
    np.testing.assert_array_equal(history.get_ydata(), [1.4355] + [np.nan] * 4)
    np.testing.assert_array_equal(zeros.get_xdata(), [1, 2, 3, 4])
    np.testing.assert_array_equal(zeros.get_ydata(), [0, 0, 0, 0])  # the bottom edge
    assert zeros.get_transform() == ax.get_xaxis_transform() and not zeros.get_clip_on()
    assert zeros.get_label() == "ALS: exactly 0" and zeros.get_color() == history.get_color()
    assert "exactly 0" in ax.get_ylabel()
    bottom, top = ax.get_ylim()
    assert bottom < 0.14355 and 1.4355 < top < 2
    labels = _tick_labels(ax)
    assert len(labels) == len(set(labels)) >= 2
    # a decade below the lowest error, not the highest: at 0.0069 under 0.01 they read as
    # a plateau
    for errors in ([0.5, 0.1, 0.0], [1.0, 0.3, 0.05, 0.01, 0.0, 0.0]):
        ax = plot_fit_history(FitResult(result.operator, errors, [0.0] * len(errors), "als"))
        assert ax.get_ylim()[0] < min(e for e in errors if e > 0) / 10


def test_fit_history_of_one_error_has_distinct_tick_labels():
    # Before: a 0-sweep fit's one error 1.2547 gave the range (1.2501, 1.2594), labelled
    # 1.25, 1.25, 1.26, 1.26; a hierarchical fit's exact 0.0 was refused.
    result = _fit()
    for error in (1.2547, 1e-7):
        one = FitResult(result.operator, [error], result.times[:1], "als")
        ax = plot_fit_history(one)
        bottom, top = ax.get_ylim()
        assert np.log10(top / bottom) >= plotting.MIN_HISTORY_DECADES - 1e-9
        labels = _tick_labels(ax)
        assert len(labels) == len(set(labels)) >= 2
    chain = Chain.from_factorizations([2, 2], [2, 2])
    hierarchical = fit_hierarchical(np.eye(4), chain)
    assert hierarchical.errors == [0.0]
    ax = plot_fit_history(hierarchical)
    assert ax.lines[1].get_gid() == plotting.EXACT_ZEROS
    labels = _tick_labels(ax)
    assert len(labels) == len(set(labels)) >= 2


def test_fit_history_draws_into_a_figure_as_plot_chain_does():
    # Before: ax=Figure() raised AttributeError: 'Figure' object has no attribute 'plot'.
    result = _fit()
    figure = Figure()
    ax = plot_fit_history(result, ax=figure, label="first")
    assert figure.axes == [ax] and ax.get_yscale() == "log"
    assert plot_fit_history(result, ax=figure, label="second") is ax  # its only axes again
    assert len(ax.lines) == 2
    crowded = Figure()
    crowded.subplots(1, 2)
    with pytest.raises(ValueError, match="ax is a figure with 2 axes: pass the one"):
        plot_fit_history(result, ax=crowded)


def test_fit_history_names_the_argument_of_the_wrong_type():
    # Before: baseline="0.5" raised "'<' not supported between 'int' and 'str'",
    # baseline=True drew a baseline at 1, and a list as result or a list as ax raised
    # AttributeError.
    result = _fit()
    for baseline in ("0.5", True, np.bool_(True)):
        ax = Figure().subplots()
        with pytest.raises(TypeError, match="baseline must be a real number"):
            plot_fit_history(result, ax=ax, baseline=baseline)
        assert not ax.lines
    assert plot_fit_history(result, baseline=np.float32(0.5)).lines[1].get_ydata()[0] == 0.5
    with pytest.raises(TypeError, match="result must be a FitResult .*, got list"):
        plot_fit_history(result.errors)
    with pytest.raises(TypeError, match="ax must be a matplotlib Axes or Figure, got list"):
        plot_fit_history(result, ax=[Figure().subplots()])


def test_fit_history_range_leaves_out_an_overflowed_error():
    # Before: matplotlib refused the infinite axis limit after the history was drawn.
    result = _fit()
    overflowed = FitResult(result.operator, [np.inf, 0.5, 0.4], result.times[:3], "als")
    bottom, top = plot_fit_history(overflowed).get_ylim()
    assert 0.3 < bottom < 0.4 and 0.5 < top < 0.6


@pytest.mark.parametrize("shape", [(2**16 + 5, 2), (2, 2**16 + 5)])
def test_pooling_a_thin_support_holds_little_beyond_it(shape):
    # A 2**20 x 2 panel was padded to 2**20 x 4096 booleans (4.3 GB for `check --plot`).
    import tracemalloc

    from pydebut.plotting import _pool

    mask = np.random.default_rng(0).random(shape) < 0.3
    tracemalloc.start()
    try:
        image, cell = _pool(mask, max_pixels=64)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    long_axis = 0 if shape[0] > shape[1] else 1
    assert cell == 1025 and image.shape[long_axis] == 64 and image.size == 64  # last run short
    # NumPy 2.0-2.2 sum through two int64 buffers of np.getbufsize() entries (128 KiB, peak
    # 133256 B: about this mask's size); a widened copy (8x) or the padding is far above 2x.
    assert peak < 2 * mask.nbytes
    for i in range(64):
        run = np.take(mask, range(i * cell, min((i + 1) * cell, max(shape))), axis=long_axis)
        assert image.flat[i] == pytest.approx(run.mean())


@pytest.mark.parametrize("shape", [(10, 7), (7, 10), (9, 9), (3, 20), (1, 9), (13, 1)])
def test_pooling_is_the_fraction_of_each_cell_cut_by_the_edges(shape):
    from pydebut.plotting import _pool

    mask = np.random.default_rng(0).random(shape) < 0.3
    image, cell = _pool(mask, max_pixels=4)
    assert cell == -(-max(shape) // 4) and max(image.shape) <= 4
    for i, j in np.ndindex(image.shape):
        block = mask[i * cell : (i + 1) * cell, j * cell : (j + 1) * cell]
        assert image[i, j] == pytest.approx(block.mean())


# --- limits a one-line change of the module went unnoticed by (a mutation audit) -----------


def test_a_chain_of_exactly_max_plot_factors_is_drawn(monkeypatch):
    monkeypatch.setattr(plotting, "MAX_PLOT_FACTORS", 2)
    assert len(plot_chain(Chain([(4, 4, 2, 2, 1)] * 2)).axes) == 4
    with pytest.raises(ValueError, match="MAX_PLOT_FACTORS"):
        plot_chain(Chain([(4, 4, 2, 2, 1)] * 3))


def test_pooling_by_two_keeps_every_image_within_max_pixels():
    figure = plot_chain(Chain.from_factorizations([2] * 6, [2] * 6), max_pixels=32)
    assert all(max(ax.images[0].get_array().shape) <= 32 for ax in figure.axes)


def test_the_pixel_limit_counts_the_panels_of_the_products(monkeypatch):
    # factor panels 16 + 256 pixels, product panels 2 x 256: over 600 only with the products
    monkeypatch.setattr(plotting, "MAX_PLOT_PIXELS", 600)
    with pytest.raises(ValueError, match="MAX_PLOT_PIXELS"):
        plot_chain(Chain([(4, 4, 1, 1, 1), (4, 64, 1, 16, 1)]))
