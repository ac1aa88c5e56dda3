"""Shared drawing helpers: arrays for display, zero-centred limits, the relevance colormap, plain
log axes. The explorers' panels (``lrp_widgets.widgets.panels``) colour maps with these in numpy."""
from __future__ import annotations

import numpy as np

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


def plain_log_axis(axis):
    """A log scale with plain tick labels ("0.01", not mathtext "10^-2") and no minor labels:
    mathtext is one of the most expensive things in a redraw."""
    from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter, NullLocator

    axis._set_axes_scale("log")
    axis.set_major_locator(LogLocator(base=10, numticks=4))
    axis.set_major_formatter(FormatStrFormatter("%g"))
    axis.set_minor_locator(NullLocator())  # every tick is a Line2D drawn on each redraw
    axis.set_minor_formatter(NullFormatter())
