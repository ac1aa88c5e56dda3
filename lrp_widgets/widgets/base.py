"""The one controller every explorer shares (the mpl-interactions ``Controls`` pattern).

An explorer is controls + a typed state + panels:

* ``compute(values) -> State``: a dataclass of the arrays to show for the control values. States
  are kept in a :class:`~lrp_widgets.engine.cache.BoundedCache`, so a slider moved back to a
  value it had costs a look-up; slow parts are cached by the explorer on the controls they
  depend on (``self.cache(...)``).
* panels (:mod:`~lrp_widgets.widgets.panels`) each declare the state fields they show; after a
  change only the panels whose fields changed render (or take their picture from their cache)
  and send it to the browser, at once.

Building one: ``super().__init__(title)`` anywhere in the subclass's ``__init__`` (it computes
nothing), then ``self.connect(controls, rows_of_panels, readout)`` last, which shows the first
state. No base-class call has to wait for the subclass's attributes.

Changes from the browser are coalesced: while an update runs, further slider values only mark
the explorer dirty, and one update then runs on the latest value (a drag shows fresh states and
always ends on its last value). Changes made from Python (``controls[name].value = v``) update
at once, so ``.state`` is current on the next line. An error in a callback is shown inside the
explorer (``.error``, traceback in ``.error_log``) and the explorer keeps working.
"""
from __future__ import annotations

import contextlib
import dataclasses
import html
import time
import traceback

import ipywidgets as widgets
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..engine.cache import BoundedCache


@contextlib.contextmanager
def torch_threads(count: int | None):
    """Run torch on at most ``count`` intra-op threads, then restore the caller's setting.

    The explorers' work is many small tensor operations; waking a second thread costs more than
    it gains (on a loaded 2-core machine one thread was 4-10x faster). ``None`` leaves it alone.
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


class State:
    """Base of the explorers' state dataclasses; fields also read as ``state["name"]``."""

    def __getitem__(self, name: str):
        if name not in self.keys():
            raise KeyError(name)
        return getattr(self, name)

    def __contains__(self, name) -> bool:
        return name in self.keys()

    def keys(self):
        return [field.name for field in dataclasses.fields(self)]


def _event_loop():
    """The running asyncio loop of a kernel, or None (headless: update synchronously)."""
    import asyncio

    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class Explorer(widgets.VBox):
    """Base class of the explorers: controls -> cached typed state -> panels that changed.

    Attributes
    ----------
    controls : dict
        Control name -> ipywidget. Setting ``controls[name].value`` updates the explorer.
    state : State
        The latest computed state, a dataclass (also readable as ``state["field"]``).
    panels : list
        The panels; each has ``.fields``, ``.inputs`` (the values it shows) and ``.widget``.
    figure : matplotlib.figure.Figure
        A snapshot: a new figure showing every panel's current picture, built on access (for
        saving, e.g. the gallery). The live view is ``.view``, a box of light image widgets.
    readout : ipywidgets.HTML
        A short text with the current numbers (accuracy, AOPC, prediction, ...).
    error : ipywidgets.HTML
        The last callback error, shown in the explorer (empty when the last update worked).
    """

    #: torch threads while computing (small models: one thread avoids synchronisation costs)
    threads = 1
    state_cache_size = 64

    def __init__(self, title: str = ""):
        super().__init__()
        self.title = title
        self.controls: dict = {}
        self.panels: list = []
        self.rows: list = []
        self.state = None
        self.last_error: str | None = None
        self.timings: dict = {}
        self.updates = 0  # updates run (a coalesced drag runs fewer than it had values)
        self.states = BoundedCache(self.state_cache_size)
        self.readout = widgets.HTML()
        self.error = widgets.HTML()
        self.error_log = widgets.Output(layout=widgets.Layout(max_height="12em", overflow="auto"))
        self.view = widgets.VBox()
        self._held = self._dirty = self._scheduled = False

    def cache(self, size: int = 64) -> BoundedCache:
        """A bounded cache for one of the explorer's slow parts (keyed on what it depends on)."""
        return BoundedCache(size)

    # -- what an explorer implements -----------------------------------------------------------
    def compute(self, values: dict) -> State:
        raise NotImplementedError

    # -- wiring --------------------------------------------------------------------------------
    def connect(self, controls: dict, rows, readout=None) -> None:
        """Lay out ``controls`` and the panels (``rows``: a list of rows of panels), observe the
        controls and show the first state. ``readout`` is a TextPanel shown under the panels."""
        self.controls = dict(controls)
        self.rows = [list(row) for row in rows]
        self.panels = [panel for row in self.rows for panel in row] + ([readout] if readout is not None else [])
        if readout is not None:
            self.readout = readout.widget
        self.view.children = [widgets.HBox([panel.widget for panel in row]) for row in self.rows]
        names = list(self.controls.values())
        header = [widgets.HTML(f"<b>{html.escape(self.title)}</b>")] if self.title else []
        control_rows = [widgets.HBox(names[i : i + 3]) for i in range(0, len(names), 3)]
        self.children = header + control_rows + [self.view, self.readout, self.error]
        for control in self.controls.values():
            control.observe(self._on_change, names="value")
        self.update()

    def values(self) -> dict:
        """The current control values."""
        return {name: control.value for name, control in self.controls.items()}

    @staticmethod
    def _key(values: dict) -> tuple:
        return tuple((name, tuple(v) if isinstance(v, list) else v) for name, v in values.items())

    @property
    def up_to_date(self) -> bool:
        """True when the state shown is the one of the controls' current values (after a drag:
        the last value, not a stale one)."""
        return self.last_error is None and getattr(self, "_shown_key", None) == self._key(self.values())

    def _on_change(self, change):
        if self._held:
            return
        loop = _event_loop()
        from_browser = bool(getattr(change["owner"], "_property_lock", None))
        if loop is None or not from_browser:
            self.update()
            return
        # from the browser: let the kernel take in the values already sent, then show the last
        self._dirty = True
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)

    def _flush(self):
        self._scheduled = False
        if self._dirty:
            self._dirty = False
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
        """Compute (or look up) the state and show it in the panels that changed.

        Returns False if it failed; the error is then shown in the explorer.
        """
        start = time.perf_counter()
        try:
            values = self.values()
            key = self._key(values)
            with torch_threads(self.threads):
                state = self.states.get(key, lambda: self.compute(values))
            computed = time.perf_counter()
            sent = [panel for panel in self.panels if panel.show(state)]
            self.state, self._shown_key = state, key
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
        if self.error.value:
            self.error.value = ""
        self.updates += 1
        self.timings = {"compute": computed - start, "panels": time.perf_counter() - computed, "sent": len(sent)}
        return True

    # -- export --------------------------------------------------------------------------------
    @property
    def figure(self) -> Figure:
        """A new matplotlib figure with every panel's current picture, laid out as on screen."""
        rows = [[p for p in row if getattr(p, "pixels", None) is not None] for row in self.rows]
        rows = [row for row in rows if row]
        gap, title = 12, 18
        widths = [sum(p.pixels.shape[1] for p in row) + gap * (len(row) + 1) for row in rows]
        heights = [max(p.pixels.shape[0] for p in row) + title + gap for row in rows]
        width, height, dpi = max(widths), sum(heights), 100
        figure = Figure(figsize=(width / dpi, height / dpi), dpi=dpi)
        FigureCanvasAgg(figure)
        top = height
        for row, row_height in zip(rows, heights):
            left = gap
            for panel in row:
                h, w = panel.pixels.shape[:2]
                ax = figure.add_axes([left / width, (top - title - h) / height, w / width, h / height])
                ax.imshow(panel.pixels, interpolation="nearest")
                ax.set_axis_off()
                if panel.title:
                    ax.set_title(panel.title, fontsize=8)
                left += w + gap
            top -= row_height
        return figure


    def to_html(self, path, grid: dict | None = None, **options):
        """Write this explorer as one self-contained HTML page that runs without a kernel.

        The panels are precomputed over a grid of control values (each control's own steps;
        ``grid`` narrows it, e.g. ``{"leak_rate": [0.01, 0.1, 0.5]}``); see
        :func:`lrp_widgets.widgets.export.export_html` for the options. Returns an
        :class:`~lrp_widgets.widgets.export.ExportReport` (path, size, grid).
        """
        from .export import export_html

        return export_html(self, path, grid, **options)
