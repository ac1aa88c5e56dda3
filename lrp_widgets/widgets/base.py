"""The one controller every explorer shares (the mpl-interactions pattern).

An explorer declares its controls, builds its figure once, and implements two methods:

* ``compute(values) -> state``: the arrays to show for the control values (cached here, so a
  slider moved back to a value it had returns at once);
* ``draw(state)``: update the kept artists in place (``set_data``, ``set_clim``, ...).

On every change the base class calls both, then ``figure.canvas.draw_idle()``. An exception
in either is shown inside the explorer (``.error``) with its traceback kept in ``.error_log``, and
the explorer keeps working: the next change tries again.
"""
from __future__ import annotations

import contextlib
import html
import time
import traceback
from collections import OrderedDict

import ipywidgets as widgets
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..plotting import freeze_layout


@contextlib.contextmanager
def torch_threads(count: int | None):
    """Run torch on at most ``count`` intra-op threads, then restore the caller's setting.

    The explorers' work is many small tensor operations; for those, waking a second thread costs
    more than it gains (on a loaded 2-core machine one thread was 4-10x faster). ``None`` leaves
    the setting alone, e.g. for a large user model.
    """
    import torch

    previous = torch.get_num_threads()
    if count is None or count >= previous:
        yield
        return
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def in_kernel() -> bool:
    """True inside a Jupyter kernel (where an ipympl canvas can be shown)."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython comes with ipywidgets
        return False
    shell = get_ipython()
    return shell is not None and hasattr(shell, "kernel")


def attach_canvas(figure: Figure):
    """Give ``figure`` a canvas: ipympl's widget in a kernel, Agg otherwise (headless, tests).

    Returns the widget to place in the explorer, or None when headless.
    """
    if in_kernel():
        try:
            from ipympl.backend_nbagg import Canvas, FigureManager

            canvas = Canvas(figure)
            FigureManager(canvas, 0)
            canvas.header_visible = False
            canvas.footer_visible = False
            canvas.toolbar_visible = False
            canvas.resizable = False
            return canvas
        except Exception:  # noqa: BLE001 - fall back to a static image below
            pass
        FigureCanvasAgg(figure)
        return _StaticFigure(figure)
    FigureCanvasAgg(figure)
    return None


class _StaticFigure(widgets.Image):
    """Fallback display without ipympl: the figure as a PNG, refreshed after each draw."""

    def __init__(self, figure: Figure):
        super().__init__(format="png")
        self._figure = figure
        figure.canvas.mpl_connect("draw_event", lambda event: self.refresh())

    def refresh(self):
        import io

        buffer = io.BytesIO()
        self._figure.savefig(buffer, format="png")
        self.value = buffer.getvalue()


class Explorer(widgets.VBox):
    """Base class of the explorers: controls -> cached compute -> in-place draw.

    Attributes
    ----------
    controls : dict
        Control name -> ipywidget. Setting ``controls[name].value`` updates the explorer.
    figure : matplotlib.figure.Figure
        Built once; its artists are updated in place.
    state : dict
        The latest computed arrays (what tests assert on).
    error : ipywidgets.HTML
        The last callback error, shown in the explorer (empty when the last update worked).
    readout : ipywidgets.HTML
        A short text with the current numbers (accuracy, AOPC, prediction, ...).
    """

    cache_size = 64
    #: torch threads while computing. The explorers' models are small: one thread avoids the
    #: synchronisation cost that dominates small kernels, and on a busy or shared machine
    #: (Binder, a laptop running a browser) oversubscribed threads slowed them 10x here.
    threads = 1

    def __init__(self, controls: dict, figure: Figure, title: str = ""):
        super().__init__()
        self.controls = dict(controls)
        self.figure = figure
        self.state: dict = {}
        self.last_error: str | None = None
        self.timings: dict = {}
        self._cache: OrderedDict = OrderedDict()
        self._held = False
        self.readout = widgets.HTML()
        self.error = widgets.HTML()
        self.error_log = widgets.Output(layout=widgets.Layout(max_height="12em", overflow="auto"))
        self.canvas = attach_canvas(figure)
        header = [widgets.HTML(f"<b>{html.escape(title)}</b>")] if title else []
        rows = [widgets.HBox(list(self.controls.values())[i : i + 3]) for i in range(0, len(self.controls), 3)]
        self.children = header + rows + ([self.canvas] if self.canvas is not None else []) + [self.readout, self.error]
        for control in self.controls.values():
            control.observe(self._on_change, names="value")
        self.update()
        freeze_layout(self.figure)

    # -- what an explorer implements -----------------------------------------------------------
    def compute(self, values: dict) -> dict:
        raise NotImplementedError

    def draw(self, state: dict) -> None:
        raise NotImplementedError

    # -- the controller ------------------------------------------------------------------------
    def values(self) -> dict:
        """The current control values."""
        return {name: control.value for name, control in self.controls.items()}

    def _key(self, values: dict):
        return tuple(sorted((k, v if not isinstance(v, list) else tuple(v)) for k, v in values.items()))

    def cached_compute(self, values: dict) -> dict:
        key = self._key(values)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        state = self.compute(values)
        self._cache[key] = state
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return state

    def _on_change(self, change):
        if not self._held:
            self.update()

    @contextlib.contextmanager
    def hold(self):
        """Change several controls with one update at the end."""
        self._held = True
        try:
            yield self
        finally:
            self._held = False
            self.update()

    def update(self) -> bool:
        """Recompute (or fetch from the cache) and redraw. Returns False if it failed."""
        start = time.perf_counter()
        try:
            with torch_threads(self.threads):
                state = self.cached_compute(self.values())
            computed = time.perf_counter()
            self.draw(state)
            self.state = state
        except Exception as error:  # noqa: BLE001 - shown to the user, the explorer keeps working
            self.last_error = f"{type(error).__name__}: {error}"
            self.error.value = f"<pre style='color:#b00020;white-space:pre-wrap'>{html.escape(self.last_error)}</pre>"
            self.error_log.clear_output()
            with self.error_log:
                traceback.print_exc()
            if self.error_log not in self.children:
                self.children = tuple(self.children) + (self.error_log,)
            return False
        self.last_error = None
        self.error.value = ""
        if self.canvas is not None:
            # in a notebook: ipympl renders when the front end is ready. Headless (tests, scripts)
            # nothing is shown, so nothing is rendered until asked: figure.canvas.draw()/savefig.
            self.figure.canvas.draw_idle()
        self.timings = {"compute": computed - start, "draw": time.perf_counter() - computed}
        return True

    def set_readout(self, **items):
        """Show ``name: value`` pairs under the figure (and keep them in ``state['readout']``)."""
        parts = [f"<b>{html.escape(k.replace('_', ' '))}</b>: {html.escape(str(v))}" for k, v in items.items()]
        self.readout.value = " &nbsp;|&nbsp; ".join(parts)
