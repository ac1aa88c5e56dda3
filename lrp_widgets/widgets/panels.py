"""Panels: each shows a few fields of an explorer's state as a small picture or a text.

A panel declares the state ``fields`` it shows. On every change the controller hands it the new
state; the panel fingerprints those fields and does nothing when they are what it shows already.
Otherwise it renders them (or takes the rendering from its bounded cache) and sets its widget's
value, which ipywidgets sends to the browser at once: a PNG in an ``ipywidgets.Image`` (measured
in Chromium: ~44 ms key press -> pixels, against 120+ ms for an ipympl canvas that asks back for
its drawing, and 200+ ms for a multi-panel figure redrawn whole).

* :class:`HeatmapPanel` / :class:`ImagePanel`: arrays coloured in numpy (no matplotlib draw);
* :class:`PlotPanel`: curves, bars, graphs on a small matplotlib figure, rendered with Agg;
* :class:`TextPanel`: the readout, an HTML line.
"""
from __future__ import annotations

import hashlib
import html
import io
from typing import Callable, Sequence

import ipywidgets as widgets
import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from ..plotting import RELEVANCE_CMAP, image_for_display, symmetric_limit, to_numpy
from ..engine.cache import BoundedCache

#: on-screen size (pixels) a heatmap or image is scaled up to, by whole pixels (nearest)
PICTURE_SIZE = 168
MISSING_RGB = (191, 191, 191)


def fingerprint(value):
    """A hashable summary of ``value`` that changes when its contents change (arrays by hash)."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ma.MaskedArray):
        return ("masked", fingerprint(value.filled(np.nan) if value.dtype.kind == "f" else value.data), fingerprint(np.ma.getmaskarray(value)))
    if isinstance(value, np.ndarray):
        data = np.ascontiguousarray(value)
        return ("array", data.shape, data.dtype.str, hashlib.blake2b(data.view(np.uint8).reshape(-1), digest_size=12).digest())
    if isinstance(value, dict):
        return ("dict", tuple((k, fingerprint(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return ("seq", tuple(fingerprint(v) for v in value))
    if isinstance(value, float):
        return ("float", repr(value))  # NaN == NaN here
    return value


def encode_png(rgb: np.ndarray) -> bytes:
    """(H, W, 3|4) uint8 -> PNG bytes (fast zlib level: these pictures are small)."""
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def upscale(rgb: np.ndarray, size: int = PICTURE_SIZE) -> np.ndarray:
    """Enlarge by whole pixels (each axis on its own) so a 32x32 map shows as crisp blocks."""
    height, width = rgb.shape[:2]
    rows, cols = max(1, size // height), max(1, size // width)
    return np.repeat(np.repeat(rgb, rows, axis=0), cols, axis=1)


def edges(mask: np.ndarray) -> np.ndarray:
    """The cells of ``mask`` with a neighbour outside it (an outline, drawn black on a map)."""
    inner = mask.copy()
    inner[1:] &= mask[:-1]
    inner[:-1] &= mask[1:]
    inner[:, 1:] &= mask[:, :-1]
    inner[:, :-1] &= mask[:, 1:]
    return mask & ~inner


def colorize(values, cmap, low: float, high: float, mask=None) -> np.ndarray:
    """(H, W) values -> (H, W, 3) uint8 with ``cmap`` applied in numpy; NaN/masked cells grey."""
    values = np.ma.masked_invalid(np.ma.asarray(values, dtype=float))
    if mask is not None:
        values = np.ma.masked_where(np.asarray(mask, dtype=bool), values)
    lut = (matplotlib.colormaps[cmap](np.linspace(0, 1, 256))[:, :3] * 255).round().astype(np.uint8)
    scaled = (values.filled(low) - low) / max(high - low, 1e-300)
    rgb = lut[np.clip(np.rint(scaled * 255), 0, 255).astype(np.intp)]
    rgb[np.ma.getmaskarray(values)] = MISSING_RGB
    return rgb


class Panel:
    """Base: fingerprint the fields, render on change (cached), set the widget's value."""

    cache_size = 64

    def __init__(self, fields: Sequence[str], title: str = ""):
        self.fields = tuple(fields)
        self.title = title
        self.shown = None  # the fingerprint on screen
        self.inputs: dict = {}  # the field values on screen (what tests assert on)
        self.renders = BoundedCache(self.cache_size)
        self.sends = 0  # how often a new picture went to the browser

    def inputs_of(self, state) -> tuple[dict, object]:
        """The fields this panel shows of ``state`` and their fingerprint (the render cache's key;
        the HTML export dedupes on it too)."""
        inputs = {name: getattr(state, name) for name in self.fields}
        return inputs, fingerprint(tuple(inputs.values()))

    def show(self, state) -> bool:
        """Show ``state``'s fields; False (and nothing sent) when they are shown already."""
        inputs, key = self.inputs_of(state)
        if key == self.shown:
            return False
        picture = self.renders.get(key, lambda: self.render(**inputs))
        self.display(picture)
        self.shown, self.inputs = key, inputs
        self.sends += 1
        return True

    def render(self, **inputs):
        raise NotImplementedError

    def display(self, picture) -> None:
        raise NotImplementedError


class PicturePanel(Panel):
    """A titled ``ipywidgets.Image`` with a caption line; renders to (rgb, caption)."""

    def __init__(self, fields, title: str = "", mask: str | None = None):
        super().__init__(fields, title)
        self.mask_field = mask  # the field (one of ``fields``) marking missing cells, if any
        self.image = widgets.Image(format="png")
        self.caption = widgets.HTML()
        self.widget = widgets.VBox(
            [widgets.HTML(f"<div style='font-size:12px;text-align:center'>{html.escape(title)}</div>"), self.image, self.caption],
            layout=widgets.Layout(align_items="center", margin="0 4px"),
        )
        self.pixels: np.ndarray | None = None

    def display(self, picture) -> None:
        rgb, png, caption = picture
        self.image.value = png
        if self.caption.value != caption:
            self.caption.value = caption
        self.pixels = rgb

    def picture_and_mask(self, inputs):
        """The shown array (the first field) and the mask (the ``mask`` field, or None)."""
        return inputs[self.fields[0]], (inputs[self.mask_field] if self.mask_field else None)

    def finish(self, rgb: np.ndarray, caption: str = ""):
        caption = f"<div style='font-size:11px;text-align:center;color:#444'>{html.escape(caption)}</div>" if caption else ""
        return rgb, encode_png(rgb), caption


class HeatmapPanel(PicturePanel):
    """A relevance map: zero-centred diverging colours, missing cells grey, ``±limit`` caption.

    ``fields[0]`` is the (H, W) map; the field named by ``mask`` marks missing cells (True).
    """

    def __init__(self, fields, title: str = "", cmap: str = RELEVANCE_CMAP, size: int = PICTURE_SIZE, outline=None, mask=None):
        super().__init__(fields, title, mask)
        self.cmap, self.size = cmap, size
        self.outline = None if outline is None else np.asarray(outline, dtype=bool)

    def render(self, **inputs):
        data, mask = self.picture_and_mask(inputs)
        data = to_numpy(data)
        masked = np.ma.masked_invalid(data)
        if mask is not None:
            masked = np.ma.masked_where(np.asarray(mask, dtype=bool), masked)
        limit = symmetric_limit(masked)
        rgb = upscale(colorize(masked, self.cmap, -limit, limit), self.size)
        if self.outline is not None:
            rgb[edges(upscale(self.outline, self.size))] = 0
        return self.finish(rgb, f"blue -{limit:.2g}  ·  0  ·  +{limit:.2g} red")


class ImagePanel(PicturePanel):
    """An input: (C, H, W) or (H, W); grey (or ``cmap``) with min-max or given limits, RGB as is."""

    def __init__(self, fields, title: str = "", cmap: str = "gray", limits=None, symmetric: bool = False, size: int = PICTURE_SIZE,
                 caption=None, mask=None):
        super().__init__(fields, title, mask)
        self.cmap, self.limits, self.symmetric, self.size = cmap, limits, symmetric, size
        self.caption_text = caption  # optional: (**fields) -> str shown under the picture

    def render(self, **inputs):
        image, mask = self.picture_and_mask(inputs)
        image = image_for_display(image)
        if image.ndim == 3:
            rgb = (np.clip(np.nan_to_num(image), 0, 1) * 255).round().astype(np.uint8)
        else:
            if self.symmetric:
                high = symmetric_limit(np.ma.masked_where(mask, image) if mask is not None else image)
                low = -high
            elif self.limits is not None:
                low, high = self.limits
            else:
                low, high = float(np.nanmin(image)), float(np.nanmax(image))
            rgb = colorize(image, self.cmap, low, high if high > low else low + 1e-12, mask)
        return self.finish(upscale(rgb, self.size), self.caption_text(**inputs) if self.caption_text else "")


class PlotPanel(PicturePanel):
    """Curves, bars or a graph on a small matplotlib figure (Agg), drawn by ``draw(ax, **fields)``.

    The explorer builds the kept artists on ``panel.ax`` once; ``draw`` updates them in place.
    Renders are cached per field values, so a revisited state costs no matplotlib draw. With
    ``marker`` (one of ``fields``, an x position), the rest is drawn once per value of the other
    fields and the marker, a dashed vertical line, is put on a copy in numpy: moving it costs no
    matplotlib draw either.
    """

    def __init__(self, fields, draw: Callable, title: str = "", figsize=(3.3, 2.5), dpi: int = 72, marker: str | None = None, **subplot):
        super().__init__(fields, title)
        self.draw, self.marker = draw, marker
        self.figure = Figure(figsize=figsize, dpi=dpi)
        FigureCanvasAgg(self.figure)
        self.ax = self.figure.add_subplot(**subplot)
        self.figure.subplots_adjust(left=0.2, right=0.96, bottom=0.2, top=0.95)
        self.backgrounds = BoundedCache(16)

    def render(self, **inputs):
        if self.marker is None:
            return self.finish(self._draw(inputs))
        position = inputs.pop(self.marker)
        rgb = self.backgrounds.get(fingerprint(tuple(inputs.values())), lambda: self._draw(inputs)).copy()
        self._mark(rgb, position)
        return self.finish(rgb)

    def _draw(self, inputs) -> np.ndarray:
        self.draw(self.ax, **inputs)
        self.figure.canvas.draw()
        return np.asarray(self.figure.canvas.buffer_rgba())[..., :3].copy()

    def _mark(self, rgb: np.ndarray, x) -> None:
        """A dashed black vertical line at data ``x`` over the axes (pixel rows top-down)."""
        box, height = self.ax.bbox, rgb.shape[0]
        column = self.ax.transData.transform([(float(x), 1.0)])[0, 0]
        if not np.isfinite(column) or not box.x0 <= column <= box.x1:
            return
        rows = np.arange(max(int(height - box.y1), 0), min(int(height - box.y0), height))
        rgb[rows[(rows - rows[0]) % 6 < 4], int(round(column)) if column < rgb.shape[1] else rgb.shape[1] - 1] = 0


class TextPanel(Panel):
    """An HTML line of ``name: value`` pairs from ``format(**fields) -> dict``."""

    def __init__(self, fields, format: Callable):
        super().__init__(fields)
        self.format = format
        self.widget = widgets.HTML()
        self.items: dict = {}

    def render(self, **inputs):
        items = self.format(**inputs)
        text = " &nbsp;|&nbsp; ".join(f"<b>{html.escape(k.replace('_', ' '))}</b>: {html.escape(str(v))}" for k, v in items.items())
        return items, text

    def display(self, picture) -> None:
        self.items, self.widget.value = picture
