"""Shared drawing: zero-centred relevance heatmaps with masked cells, curves with a moving marker.

Every artist here is built once and updated in place (``set_data``, ``set_clim``,
``set_xdata``/``set_ydata``), which is what keeps the explorers' redraws cheap
(REFERENCE.md §5: ticks, text and layout engines dominate a redraw, so panels stay lean).
"""
from __future__ import annotations

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

#: Diverging colormap centred on zero: red = positive relevance, blue = negative.
RELEVANCE_CMAP = "bwr"


def to_numpy(value) -> np.ndarray:
    """A tensor or array as a float numpy array (detached, on the CPU)."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=float)


def symmetric_limit(data, floor: float = 1e-12) -> float:
    """The largest |value| ignoring NaN and masked cells, so the colour scale is centred on zero."""
    values = np.ma.masked_invalid(np.ma.asarray(data)).compressed()
    if values.size == 0:
        return 1.0
    return max(float(np.abs(values).max()), floor)


def image_for_display(image) -> np.ndarray:
    """(C, H, W) or (H, W) -> (H, W) or (H, W, 3) scaled to [0, 1] for ``imshow``."""
    image = to_numpy(image)
    if image.ndim == 3:
        image = image[0] if image.shape[0] == 1 else np.moveaxis(image, 0, -1)
    low, high = np.nanmin(image), np.nanmax(image)
    if image.ndim == 3 and (low < 0 or high > 1):
        image = (image - low) / max(high - low, 1e-12)
    return image


def relevance_map(relevance) -> np.ndarray:
    """(C, H, W) or (H, W) relevance -> (H, W), summed over channels."""
    relevance = to_numpy(relevance)
    return relevance.sum(0) if relevance.ndim == 3 else relevance


class Heatmap:
    """A relevance heatmap on ``ax``: diverging colormap, symmetric limits, masked cells in grey.

    Parameters
    ----------
    ax : Axes
    shape : tuple
        (H, W) of the maps it will show.
    colorbar : bool
        Add a colorbar labelled ``label`` (built once).
    """

    def __init__(self, ax: Axes, shape, title: str = "", colorbar: bool = True, label: str | None = None, cmap=RELEVANCE_CMAP):
        self.ax = ax
        empty = np.ma.masked_all(shape)
        cmap = matplotlib.colormaps[cmap].with_extremes(bad="0.75") if isinstance(cmap, str) else cmap
        self.image = ax.imshow(empty, cmap=cmap, vmin=-1, vmax=1, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        if title:
            ax.set_title(title, fontsize=9)
        self.colorbar = None
        if colorbar:
            # three ticks (-max, 0, +max), set on each update: few texts keep redraws cheap
            self.colorbar = ax.figure.colorbar(self.image, ax=ax, fraction=0.046, pad=0.04)
            self.colorbar.ax.tick_params(labelsize=7)
            if label:  # the -max/0/+max ticks already say the scale is symmetric about zero
                self.colorbar.set_label(label, fontsize=7)

    def update(self, data, mask=None, limit: float | None = None):
        """Show ``data`` (H, W); ``mask`` True marks missing cells (shown grey, not as zero)."""
        data = np.ma.masked_invalid(np.asarray(data, dtype=float))
        if mask is not None:
            data = np.ma.masked_where(np.asarray(mask, dtype=bool), data)
        limit = symmetric_limit(data) if limit is None else limit
        self.image.set_data(data)
        self.image.set_clim(-limit, limit)
        if self.colorbar is not None:
            self.colorbar.set_ticks([-limit, 0, limit], labels=[f"{-limit:.2g}", "0", f"{limit:.2g}"])
        return limit


class ImagePanel:
    """An input image (grey or RGB) shown without ticks, updated in place."""

    def __init__(self, ax: Axes, shape, title: str = "", cmap="gray"):
        self.ax = ax
        cmap = matplotlib.colormaps[cmap].with_extremes(bad="0.75") if isinstance(cmap, str) else cmap
        self.image = ax.imshow(np.zeros(shape), cmap=cmap, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        if title:
            self.title = ax.set_title(title, fontsize=9)

    def update(self, image, mask=None, limits=None):
        image = image_for_display(image)
        if mask is not None and image.ndim == 2:
            image = np.ma.masked_where(np.asarray(mask, dtype=bool), image)
        self.image.set_data(image)
        if image.ndim == 2:
            low, high = limits if limits is not None else (np.nanmin(image), np.nanmax(image))
            self.image.set_clim(low, high if high > low else low + 1e-12)


class MarkedCurves:
    """Named curves on ``ax`` plus a vertical marker line that moves with a control."""

    def __init__(self, ax: Axes, xlabel: str = "", ylabel: str = "", logx: bool = False):
        self.ax = ax
        self.lines: dict = {}
        self.marker = ax.axvline(np.nan, color="k", lw=1, ls="--")
        if logx:
            plain_log_axis(ax.xaxis)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.tick_params(labelsize=7)

    def line(self, name: str, **style):
        if name not in self.lines:
            (self.lines[name],) = self.ax.plot([], [], label=name, **style)
        return self.lines[name]

    def update(self, name: str, x, y, **style):
        line = self.line(name, **style)
        line.set_data(np.asarray(x, dtype=float), np.asarray(y, dtype=float))
        return line

    def mark(self, x):
        self.marker.set_xdata([x, x])

    def rescale(self, margin: float = 0.05):
        """Fit the axes to the data of all lines (cheap: no layout engine)."""
        xs = [np.asarray(l.get_xdata(), float) for l in self.lines.values() if len(l.get_xdata())]
        ys = [np.asarray(l.get_ydata(), float) for l in self.lines.values() if len(l.get_ydata())]
        if not xs:
            return
        x = np.concatenate(xs)
        y = np.concatenate(ys)
        x, y = x[np.isfinite(x)], y[np.isfinite(y)]
        if x.size == 0 or y.size == 0:
            return
        if self.ax.get_xscale() == "log":
            x = x[x > 0]
            if x.size:
                self.ax.set_xlim(x.min() / 1.2, x.max() * 1.2)
        else:
            span = max(x.max() - x.min(), 1e-12)
            self.ax.set_xlim(x.min() - margin * span, x.max() + margin * span)
        span = max(y.max() - y.min(), 1e-12)
        self.ax.set_ylim(y.min() - margin * span, y.max() + margin * span)


def plain_log_axis(axis):
    """A log scale with plain tick labels ("0.01", not mathtext "10^-2") and no minor labels:
    mathtext is one of the most expensive things in a redraw."""
    from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter, NullLocator

    axis._set_axes_scale("log")
    axis.set_major_locator(LogLocator(base=10, numticks=4))
    axis.set_major_formatter(FormatStrFormatter("%g"))
    axis.set_minor_locator(NullLocator())  # every tick is a Line2D drawn on each redraw
    axis.set_minor_formatter(NullFormatter())


def freeze_layout(figure: Figure) -> None:
    """Lay the figure out once and pin it: axis labels and titles keep their positions.

    Matplotlib otherwise measures every tick label on every draw to place the axis labels and
    titles (about a third of a redraw of the explorers' figures). Call it after the artists have
    their first data; later data changes that alter tick label widths do not move the labels.
    """
    # lay out without touching the canvas: an ipympl canvas must only render once its view exists
    figure.draw_without_rendering()
    for ax in figure.axes:
        to_axes = ax.transAxes.inverted()
        for axis in (ax.xaxis, ax.yaxis):
            label = axis.label
            if label.get_text():
                x, y = to_axes.transform(label.get_transform().transform(label.get_position()))
                axis.set_label_coords(x, y)
        for title in (ax.title, ax._left_title, ax._right_title):
            if title.get_text():
                x, y = to_axes.transform(title.get_transform().transform(title.get_position()))
                title.set_transform(ax.transAxes)
                title.set_position((x, y))
        ax._autotitlepos = False  # private, but the only switch that stops the title search


def lean_figure(figsize, nrows: int = 1, ncols: int = 1, **gridspec) -> tuple[Figure, np.ndarray]:
    """A figure laid out once (no layout engine on every draw) with an array of axes."""
    figure = Figure(figsize=figsize, dpi=72)
    axes = figure.subplots(nrows, ncols, squeeze=False, gridspec_kw=gridspec or None)
    return figure, axes
