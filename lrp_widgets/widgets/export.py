"""An explorer as one self-contained HTML page: pictures precomputed over a grid of control values.

Course pages, learning platforms and nbviewer run no kernel. :func:`export_html` walks a grid of
control values, computes the explorer's state at every point, renders each panel once per
distinct input and writes one HTML file: the pictures as base64 PNG, a few kilobytes of plain
JavaScript, the same controls (range inputs for sliders, dropdowns, radio buttons for toggle
buttons, checkboxes) and the same readout. Moving a control swaps pictures; nothing is fetched.

Keeping it small:

* a panel's table is indexed only by the controls it depends on: after the walk, every control
  along which the panel's pictures never change is dropped from its table (exact on the grid:
  the input panel of a rule explorer depends on ``sample`` only, whatever the composite);
* identical pictures and texts are stored once (by content), and pictures are re-encoded as
  small as PNG allows (a palette where a picture has at most 256 colours; same pixels).

The default grid (:func:`default_grid`) is each control's own steps or options, except that the
``sample`` slider offers the first few samples, and while the grid holds more than a budget of
points the slider with the most values keeps every 2nd (4th, ...) step; :data:`DEFAULTS` sets
both per explorer. The page, the command's output and :class:`ExportReport` state the grid used.

The page's data, a JSON object in ``<script id="explorer-data">``: ``controls`` (``name``,
``description``, ``kind`` in range/select/radio/checkbox, ``values``, ``labels``, ``index`` of
the initial value), ``panels`` (``title``, ``kind`` picture/text, ``deps``: the indices of the
controls it depends on; ``pictures``/``captions`` or ``texts``: ids into ``pictures`` (base64
PNG) and ``texts`` (HTML), flattened row-major over the ``deps`` controls' values), ``rows`` (panel
indices per row) and ``readout`` (the readout's panel index).
"""
from __future__ import annotations

import base64
import hashlib
import html
import io
import itertools
import json
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import ipywidgets as widgets
import numpy as np
from PIL import Image

from .base import torch_threads

#: how many samples the default grid offers on a ``sample`` slider
SAMPLES = 4
#: the default grid is thinned until it holds at most this many points (states computed)
MAX_STATES = 800
#: per explorer class: (samples, max_states) of its default grid, chosen so that a default page
#: stays under 5 MB and every explorer exports in under 2 minutes on 2 cores. Removal curves
#: and path graphs are large antialiased plots (15-20 kB each) that change with every control.
DEFAULTS = {
    "RuleExplorer": (3, 1600),  # composite 6, epsilon 1e-9..10 by decades, gamma 8: ~400 explanations
    "L1Explorer": (8, MAX_STATES),  # everything precomputed: all of L1 and both models
    "LeakRateExplorer": (3, 450),  # a fit per (leak rate, slices, direction): leak rate 16 values
    "RemovalExplorer": (2, 200),  # fraction 0, 20, ..., 100 %, every order and baseline
    "PathExplorer": (3, 120),  # every k, both layers
    "AttentionExplorer": (3, 320),  # rule 4, layer 2, head 2, epsilon thinned: explanations are cached per (rule, epsilon)
}

__all__ = ["SAMPLES", "MAX_STATES", "DEFAULTS", "ExportReport", "control_values", "default_grid", "export_html", "export_explorers"]

_SLIDERS = (widgets.IntSlider, widgets.FloatSlider, widgets.FloatLogSlider, widgets.SelectionSlider)
_SELECTS = (widgets.Dropdown, widgets.Select)
_RADIOS = (widgets.ToggleButtons, widgets.RadioButtons)
_CHECKS = (widgets.Checkbox, widgets.ToggleButton)


@dataclass
class ExportReport:
    """What :func:`export_html` wrote: ``path``, ``size`` (bytes), ``grid`` (control -> values),
    ``states`` (grid points computed), ``pictures`` (distinct pictures stored), ``seconds``."""

    path: Path
    size: int
    grid: dict
    states: int
    pictures: int
    seconds: float
    depends_on: dict = field(default_factory=dict)  # panel title -> the controls it depends on

    def __str__(self) -> str:
        return (f"{self.path}: {self.size / 1e6:.2f} MB, {self.pictures} pictures, {self.states} states in "
                f"{self.seconds:.1f} s; grid {describe_grid(self.grid)}")

    def _repr_pretty_(self, printer, cycle):  # a notebook shows the summary line
        printer.text(str(self))


def _options(widget) -> tuple[list, list]:
    """A selection widget's (values, labels); options are values or (label, value) pairs."""
    pairs = [option if isinstance(option, tuple) else (str(option), option) for option in widget.options]
    return [value for _, value in pairs], [label for label, _ in pairs]


def _snapped(values: list, current) -> list:
    """``values`` with the one nearest the control's current value replaced by it, so the page
    opens on exactly the value the explorer shows (a slider's value may differ in the last bit)."""
    if values and isinstance(current, (int, float)) and not isinstance(current, bool) and current not in values:
        nearest = int(np.argmin([abs(v - current) for v in values]))
        if abs(values[nearest] - current) <= 1e-9 * max(abs(current), 1e-300):
            values[nearest] = current
    return values


def control_values(widget) -> list:
    """Every value a control can take from its own steps: a slider's steps, a selection's options,
    a toggle's False/True. Raises TypeError for a widget the page cannot show."""
    if isinstance(widget, (widgets.SelectionSlider, *_SELECTS, *_RADIOS)):
        return _options(widget)[0]
    if isinstance(widget, _CHECKS):
        return [False, True]
    if isinstance(widget, widgets.IntSlider):
        return list(range(widget.min, widget.max + 1, widget.step))
    if isinstance(widget, widgets.FloatLogSlider):
        count = int(round((widget.max - widget.min) / widget.step))
        return _snapped([float(widget.base ** (widget.min + i * widget.step)) for i in range(count + 1)], widget.value)
    if isinstance(widget, widgets.FloatSlider):
        count = int(round((widget.max - widget.min) / widget.step))
        return _snapped([round(widget.min + i * widget.step, 12) for i in range(count + 1)], widget.value)
    raise TypeError(f"cannot export a {type(widget).__name__} control; the page shows sliders, dropdowns, toggle buttons and checkboxes")


def _labels(widget, values: list) -> list:
    if isinstance(widget, (widgets.SelectionSlider, *_SELECTS, *_RADIOS)):
        all_values, all_labels = _options(widget)
        return [all_labels[all_values.index(v)] for v in values]
    if isinstance(widget, _CHECKS):
        return ["off", "on"]
    form = getattr(widget, "readout_format", "d")
    labels = []
    for value in values:
        try:
            labels.append(format(value, form))
        except (ValueError, TypeError):
            labels.append(str(value))
    return labels


def _kind(widget) -> str:
    if isinstance(widget, _SLIDERS):
        return "range"
    if isinstance(widget, _SELECTS):
        return "select"
    if isinstance(widget, _RADIOS):
        return "radio"
    return "checkbox"


def _thinned(values: list, stride: int) -> list:
    """Every ``stride``-th value from the first, and the last."""
    kept = values[::stride]
    return kept if kept[-1] == values[-1] else kept + [values[-1]]


def default_grid(explorer, samples: int | None = None, max_states: int | None = None) -> dict:
    """The grid an export uses unless told otherwise: control name -> values.

    Each control's own steps or options; a ``sample`` slider offers its first ``samples``;
    while the grid holds more than ``max_states`` points, the slider with the most values keeps
    every 2nd, 4th, ... of its steps (and its last). Unless given, ``samples`` and
    ``max_states`` come from :data:`DEFAULTS` for the explorer's class (else :data:`SAMPLES`,
    :data:`MAX_STATES`).

    Example
    -------
    >>> describe_grid(default_grid(LeakRateExplorer()))  # doctest: +SKIP
    'leak_rate 16 values (0.001..1), slices [1, 2, 4, 8], direction [left_to_right, right_to_left], sample [0, 1, 2]'
    """
    preset_samples, preset_states = DEFAULTS.get(type(explorer).__name__, (SAMPLES, MAX_STATES))
    samples = preset_samples if samples is None else samples
    max_states = preset_states if max_states is None else max_states
    full = {name: control_values(widget) for name, widget in explorer.controls.items()}
    grid = {name: (values[:samples] if name == "sample" else values) for name, values in full.items()}
    strides = dict.fromkeys(grid, 1)
    while np.prod([len(v) for v in grid.values()]) > max_states:
        sliders = [n for n, w in explorer.controls.items() if isinstance(w, _SLIDERS) and n != "sample" and len(grid[n]) > 2]
        if not sliders:
            break
        widest = max(sliders, key=lambda n: len(grid[n]))
        strides[widest] *= 2
        grid[widest] = _thinned(full[widest], strides[widest])
    return grid


def _check_grid(explorer, grid: dict | None, samples, max_states) -> dict:
    """The default grid with ``grid``'s controls replaced; clear errors for unknown controls and
    values a control cannot take."""
    full = default_grid(explorer, samples, max_states)
    for name, values in (grid or {}).items():
        if name not in explorer.controls:
            raise ValueError(f"grid: the explorer has no control {name!r}; its controls are {', '.join(explorer.controls)}")
        widget, values = explorer.controls[name], list(values)
        if not values:
            raise ValueError(f"grid: give at least one value for {name!r}")
        if isinstance(widget, _SLIDERS) and not isinstance(widget, widgets.SelectionSlider):
            low, high = (widget.base ** widget.min, widget.base ** widget.max) if isinstance(widget, widgets.FloatLogSlider) else (widget.min, widget.max)
            outside = [v for v in values if not low - 1e-12 * abs(low) <= v <= high + 1e-12 * abs(high)]
            if outside:
                raise ValueError(f"grid: {name} values {outside} are outside the slider's range [{low:g}, {high:g}]")
            values = [type(widget.value)(v) for v in values]
        else:
            allowed = control_values(widget)
            unknown = [v for v in values if v not in allowed]
            if unknown:
                raise ValueError(f"grid: {name} cannot be {unknown}; its values are {allowed}")
            values = [allowed[allowed.index(v)] for v in values]  # the control's own objects (0 -> 0.0)
        full[name] = values
    return full


def describe_grid(grid: dict) -> str:
    """``leak_rate 16 values (0.001..1), sample [0, 1, 2, 3]`` for messages and the page."""
    parts = []
    for name, values in grid.items():
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        if len(values) > 6 and numeric:
            parts.append(f"{name} {len(values)} values ({values[0]:.3g}..{values[-1]:.3g})")
        else:
            parts.append(f"{name} [{', '.join(f'{v:.3g}' if isinstance(v, float) else str(v) for v in values)}]")
    return ", ".join(parts)


def compact_png(rgb: np.ndarray) -> bytes:
    """The same pixels as small as PNG makes them: a palette image when there are at most 256
    colours (most maps, upscaled by whole pixels), else RGB, both at full zlib effort."""
    rgb = np.ascontiguousarray(rgb[..., :3], dtype=np.uint8)
    image = Image.fromarray(rgb)
    colors = image.getcolors(256)  # None when there are more (a fast C count)
    buffer = io.BytesIO()
    if colors is not None:
        palette = np.array(sorted(color for _, color in colors), dtype=np.uint32)
        packed = (rgb[..., 0].astype(np.uint32) << 16) | (rgb[..., 1].astype(np.uint32) << 8) | rgb[..., 2]
        keys = (palette[:, 0] << 16) | (palette[:, 1] << 8) | palette[:, 2]
        image = Image.fromarray(np.searchsorted(keys, packed).astype(np.uint8), mode="P")
        image.putpalette(palette.astype(np.uint8).reshape(-1).tolist())
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


class _Store:
    """Pictures and texts, each stored once (keyed by content)."""

    def __init__(self):
        self.pictures, self.texts, self._pictures, self._texts = [], [], {}, {}

    def picture(self, rgb: np.ndarray) -> int:
        key = hashlib.blake2b(np.ascontiguousarray(rgb).tobytes() + str(rgb.shape).encode(), digest_size=16).digest()
        if key not in self._pictures:
            self._pictures[key] = len(self.pictures)
            self.pictures.append(compact_png(rgb))
        return self._pictures[key]

    def text(self, value: str) -> int:
        if value not in self._texts:
            self._texts[value] = len(self.texts)
            self.texts.append(value)
        return self._texts[value]


def _factor(table: np.ndarray) -> tuple[list, np.ndarray]:
    """The axes ``table`` varies along and the table over those only (exact: an axis is dropped
    when every slice along it is the same)."""
    deps = []
    for axis in range(table.ndim):
        first = np.take(table, [0], axis=axis)
        if np.array_equal(np.broadcast_to(first, table.shape), table):
            table = first
        else:
            deps.append(axis)
    return deps, table.reshape([table.shape[a] for a in deps])


def _nearest(values: list, current) -> int:
    """The grid position the page opens on: the control's value, or the nearest to it."""
    if current in values:
        return values.index(current)
    try:
        return int(np.argmin([abs(np.log(v / current)) if current > 0 and v > 0 else abs(v - current) for v in values]))
    except TypeError:
        return 0


def precompute(explorer, grid: dict, progress: bool = True) -> dict:
    """Walk ``grid``, render every panel once per distinct input; the page's data (module doc)."""
    from tqdm.auto import tqdm

    names = list(explorer.controls)
    shape = [len(grid[n]) for n in names]
    store = _Store()
    panels = explorer.panels
    views = [dict() for _ in panels]  # per panel: fingerprint -> (picture id, caption id) or text id
    tables = [np.zeros(shape + ([2] if hasattr(p, "image") else []), dtype=np.int64) for p in panels]
    points = list(itertools.product(*(range(n) for n in shape)))
    with torch_threads(explorer.threads):
        for point in tqdm(points, desc=f"exporting {explorer.title or type(explorer).__name__}", disable=not progress, leave=False):
            values = {name: grid[name][i] for name, i in zip(names, point)}
            try:
                state = explorer.compute(values)
            except Exception as error:
                raise RuntimeError(f"{type(explorer).__name__} failed at {values}: {type(error).__name__}: {error}") from error
            for panel, seen, table in zip(panels, views, tables):
                inputs, key = panel.inputs_of(state)
                if key not in seen:
                    if hasattr(panel, "image"):
                        rgb, _, caption = panel.render(**inputs)
                        seen[key] = (store.picture(rgb), store.text(caption))
                    else:
                        seen[key] = store.text(panel.render(**inputs)[1])
                table[point] = seen[key]
    panel_data = []
    for panel, table in zip(panels, tables):
        if hasattr(panel, "image"):  # a view is a picture and its caption: one id for both
            deps, _ = _factor(table[..., 0] * (len(store.texts) + 1) + table[..., 1])
            views = table[tuple(slice(None) if a in deps else slice(0, 1) for a in range(len(shape)))].reshape(-1, 2)
            panel_data.append({"title": panel.title, "kind": "picture", "deps": deps,
                               "pictures": views[:, 0].tolist(), "captions": views[:, 1].tolist()})
        else:
            deps, factored = _factor(table)
            panel_data.append({"title": panel.title or "readout", "kind": "text", "deps": deps, "texts": factored.reshape(-1).tolist()})
    position = {id(p): i for i, p in enumerate(panels)}
    readout = next((i for i, p in enumerate(panels) if getattr(p, "widget", None) is explorer.readout), None)
    controls = []
    for name in names:
        widget, values = explorer.controls[name], grid[name]
        current = widget.value
        controls.append({"name": name, "description": widget.description or name, "kind": _kind(widget),
                         "values": [v if isinstance(v, (bool, int, float, str)) else str(v) for v in values],
                         "labels": _labels(widget, values), "index": _nearest(values, current)})
    return {"title": explorer.title, "controls": controls, "panels": panel_data, "readout": readout,
            "rows": [[position[id(p)] for p in row] for row in explorer.rows],
            "pictures": [base64.b64encode(png).decode("ascii") for png in store.pictures], "texts": store.texts,
            "states": len(points)}


def page(data: dict, footer: str = "") -> str:
    """The HTML page for ``data`` (from :func:`precompute`)."""
    template = resources.files(__package__).joinpath("export_page.html").read_text(encoding="utf-8")
    payload = json.dumps(data, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")
    title = html.escape(data["title"] or "explorer")
    return template.replace("__TITLE__", title).replace("__FOOTER__", footer).replace("__DATA__", payload)


def export_html(explorer, path, grid: dict | None = None, *, samples: int | None = None, max_states: int | None = None,
                progress: bool = True) -> ExportReport:
    """Write ``explorer`` as one self-contained HTML page that works without a kernel.

    Parameters
    ----------
    explorer : Explorer
        Any explorer (its current control values are the page's initial ones where on the grid).
    path : str or Path
        The HTML file to write (its folder is created).
    grid : dict, optional
        Control name -> values, e.g. ``{"leak_rate": [0.01, 0.1, 0.5]}``, for the controls to
        narrow; the others follow :func:`default_grid`.
    samples, max_states :
        Of the default grid (see the module doc).
    progress : bool
        A progress bar while precomputing.

    Returns
    -------
    ExportReport
        Path, size in bytes, grid, states computed and distinct pictures stored.

    Example
    -------
    >>> LeakRateExplorer().to_html("leak_rate.html", grid={"leak_rate": [0.01, 0.1, 0.5]})  # doctest: +SKIP
    """
    start = time.perf_counter()
    full = _check_grid(explorer, grid, samples, max_states)
    data = precompute(explorer, full, progress)
    count = len(data["pictures"])
    footer = (f"Precomputed by lrp_widgets: {html.escape(describe_grid(full))} ({data['states']} states, {count} pictures). "
              "Runs without a kernel and fetches nothing.")
    text = page(data, footer)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    depends = {panel["title"]: [data["controls"][d]["name"] for d in panel["deps"]] for panel in data["panels"]}
    return ExportReport(path, len(text.encode("utf-8")), full, data["states"], count, time.perf_counter() - start, depends)


def export_explorers(names, out, progress: bool = True) -> list[ExportReport]:
    """Build each named explorer (registry names: ``rule``, ``l1``, ...) with its defaults and
    write ``out/<name>.html`` and ``out/index.html`` linking them."""
    from .registry import lookup

    out = Path(out)
    reports = []
    for name in names:
        entry = lookup(name)
        explorer = entry.load()()
        reports.append(export_html(explorer, out / f"{entry.name}.html", progress=progress))
        if progress:
            print(reports[-1])
    items = "\n".join(f"<li><a href='{html.escape(r.path.name)}'>{html.escape(_title(r.path))}</a> "
                      f"({r.size / 1e6:.1f} MB; {html.escape(describe_grid(r.grid))})</li>" for r in reports)
    (out / "index.html").write_text(
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>lrp_widgets explorers</title></head>"
        "<body style='font-family:system-ui,sans-serif'><h1>lrp_widgets explorers</h1>"
        f"<p>Each page runs without a kernel: the pictures were precomputed over the grid named.</p><ul>\n{items}\n</ul></body></html>\n",
        encoding="utf-8")
    return reports


def _title(path: Path) -> str:
    text = path.read_text(encoding="utf-8")
    return html.unescape(text[text.index("<title>") + 7 : text.index("</title>")])
