"""Rich display of results in Jupyter: a compact picture (PNG) and a short text summary.

An :class:`~lrp_widgets.Explanation`, an :class:`~lrp_widgets.esn.ESNExplanation`, a
:class:`~lrp_widgets.removal.RemovalCurve` and a :class:`~lrp_widgets.paths.PathSet` shown as the
last expression of a cell render as a picture (``image/png``) with a text summary naming target,
output and conservation as the plain-text fallback (``text/plain``). Batches show the first
:data:`MAX_SAMPLES` samples and say how many there are.

Every result class derives from :class:`lrp_widgets.engine.results.Result`, whose
``_repr_mimebundle_`` asks a registry keyed by class for the picture; this module fills that
registry when it is imported (``import lrp_widgets`` does it), so the engine never imports
drawing code. The text summaries are the results' own ``summary()``. This module imports only
numpy and the result classes at import time; matplotlib is loaded when the first picture is drawn.

Drawing uses a private :class:`matplotlib.figure.Figure` with an Agg canvas: no pyplot, no
global state, no backend switch. Every array is copied out of the result before drawing, so
rendering never changes a result.

Examples
--------
>>> import torch, lrp_widgets
>>> from lrp_widgets import display
>>> model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
>>> result = lrp_widgets.explain(model, torch.rand(5, 4))
>>> display.summarize(result).splitlines()[0]
'Explanation of 5 samples of shape (4,), composite epsilon_plus'
>>> display.to_png(result)[:8] == b"\\x89PNG\\r\\n\\x1a\\n"
True
"""
from __future__ import annotations

import io

import numpy as np

from .engine.explain import Explanation
from .engine.results import Result, plural as _plural, register_display
from .esn.lrp import ESNExplanation
from .paths.results import PathSet
from .removal.curves import RemovalCurve

__all__ = ["MAX_SAMPLES", "summarize", "short_repr", "figure", "to_png", "mimebundle", "RichDisplayMixin"]

#: How many samples of a batch the picture shows.
MAX_SAMPLES = 4
#: Resolution of the pictures (dots per inch); the figures are a few inches wide.
DPI = 80
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# -- helpers ---------------------------------------------------------------------------------------
def _array(value) -> np.ndarray:
    """A float64 copy of a tensor or array (never a view: drawing must not touch the result)."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().double().numpy()
    return np.array(value, dtype=float, copy=True)


def _integers(value) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.array(value, dtype=np.int64, copy=True).reshape(-1)


def _curves(result) -> list:
    return list(result) if isinstance(result, (list, tuple)) else [result]


def _drawer(result):
    """The figure function for ``result`` (nearest class along its MRO); a list of curves draws together."""
    if isinstance(result, (list, tuple)) and result and all(isinstance(item, RemovalCurve) for item in result):
        return _figure_removal
    for klass in type(result).__mro__:
        if klass in _FIGURES:
            return _FIGURES[klass]
    raise TypeError(
        f"lrp_widgets.display cannot show a {type(result).__name__}; it shows Explanation, ESNExplanation, "
        "RemovalCurve (or a list of them) and PathSet"
    )


# -- public entry points ---------------------------------------------------------------------------
def summarize(result) -> str:
    """A short text summary of a result: what was explained, the output, conservation.

    Parameters
    ----------
    result : Explanation, ESNExplanation, RemovalCurve (or a list of them) or PathSet

    Returns
    -------
    str
        A few lines; the first one says what the result is.
    """
    if isinstance(result, (list, tuple)):
        _drawer(result)  # refuses what is not a list of curves
        return "\n".join(curve.summary() for curve in result)
    if not isinstance(result, Result):
        _drawer(result)
    return result.summary()


def figure(result):
    """The result's picture as a :class:`matplotlib.figure.Figure` with an Agg canvas.

    Use it to save or adjust the picture (``figure(result).savefig("relevance.png")``).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = _drawer(result)(result)
    if not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)
    return fig


def to_png(result) -> bytes:
    """The result's picture as PNG bytes."""
    buffer = io.BytesIO()
    figure(result).savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def mimebundle(result, include=None, exclude=None) -> dict:
    """``{"image/png": ..., "text/plain": ...}`` for IPython's ``_repr_mimebundle_`` protocol.

    Only the requested types are built (``include``/``exclude`` as IPython passes them), so a
    text-only front end never pays for a picture. No ``text/html``: front ends would show it
    instead of the picture, and an embedded copy of the PNG would double the notebook's size.
    """

    def wanted(mime):
        return (not include or mime in include) and (not exclude or mime not in exclude)

    bundle = {}
    if wanted("image/png"):
        bundle["image/png"] = to_png(result)
    if wanted("text/plain"):
        bundle["text/plain"] = summarize(result)
    return bundle


#: Old name of the results' base class (results now derive from it in the engine).
RichDisplayMixin = Result


# -- Explanation -----------------------------------------------------------------------------------
def short_repr(result) -> str:
    """One line for ``repr(explanation)``: samples, shape, composite, target."""
    return repr(result)


def _sample_view(relevance: np.ndarray):
    """One sample's relevance as ("map", (rows, cols)) or ("values", (F,)) for drawing."""
    relevance = np.atleast_1d(relevance)
    while relevance.ndim > 1 and relevance.shape[0] == 1:
        relevance = relevance[0]
    if relevance.ndim == 1:
        return "values", relevance
    if relevance.ndim == 2:
        return "map", relevance  # (H, W) image, or (C, L) channels x positions of a sequence
    # (C, H, W) and deeper: sum everything but the last two axes (channels of an image)
    return "map", relevance.reshape(-1, *relevance.shape[-2:]).sum(0)


def _limit(data) -> float:
    """Symmetric colour/axis limit; 1 for an all-zero map (not a 1e-12 scale full of noise)."""
    from .plotting import symmetric_limit

    limit = symmetric_limit(data)
    return limit if limit > 1e-12 else 1.0


def _new_figure(width: float, height: float, nrows: int, ncols: int, left=0.35, right=0.1, top=0.75, bottom=0.35,
                wspace=0.5, hspace=0.2, **ratios):
    """A figure (Agg canvas) and its axes, with margins given in inches.

    A fixed layout, not a layout engine: constrained layout would draw every picture twice and
    double the time a result takes to show.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    layout = dict(left=left / width, right=1 - right / width, top=1 - top / height, bottom=bottom / height,
                  wspace=wspace, hspace=hspace, **ratios)
    return fig, fig.subplots(nrows, ncols, squeeze=False, gridspec_kw=layout)


def _draw_map(ax, data, title="", label="relevance", aspect=None, axis_labels=None):
    """Zero-centred diverging heatmap with a three-tick colorbar; NaN cells grey (masked)."""
    import matplotlib

    from .plotting import RELEVANCE_CMAP

    data = np.ma.masked_invalid(data)
    limit = _limit(data)
    cmap = matplotlib.colormaps[RELEVANCE_CMAP].with_extremes(bad="0.75")
    if aspect is None:
        rows, cols = data.shape
        aspect = "equal" if max(rows, cols) <= 4 * min(rows, cols) else "auto"
    image = ax.imshow(data, cmap=cmap, vmin=-limit, vmax=limit, interpolation="nearest", aspect=aspect)
    ax.set_xticks([])
    ax.set_yticks([])
    if aspect == "auto" and axis_labels is None:  # long and thin: channels x positions, not an image
        axis_labels = ("position", "channel") if data.shape[1] > data.shape[0] else ("channel", "position")
    if axis_labels:
        ax.set_xlabel(axis_labels[0], fontsize=7)
        ax.set_ylabel(axis_labels[1], fontsize=7)
    if title:
        ax.set_title(title, fontsize=8)
    colorbar = ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.02, shrink=0.9)
    colorbar.set_ticks([-limit, 0, limit], labels=[f"{-limit:.2g}", "0", f"{limit:.2g}"])
    colorbar.ax.tick_params(labelsize=7)
    colorbar.set_label(label, fontsize=7)
    return image


def _draw_values(ax, values, title="", xlabel="feature"):
    """1-D relevance: bars (red positive, blue negative) for a few values, a filled line for many."""
    positions = np.arange(len(values))
    if len(values) <= 48:
        ax.bar(positions, values, color=np.where(values >= 0, "tab:red", "tab:blue"), width=0.8)
    else:
        ax.plot(positions, values, color="k", lw=0.6)
        ax.fill_between(positions, values, 0, where=values >= 0, color="tab:red", alpha=0.6, lw=0)
        ax.fill_between(positions, values, 0, where=values < 0, color="tab:blue", alpha=0.6, lw=0)
    ax.axhline(0, color="k", lw=0.5)
    limit = _limit(values) * 1.1
    ax.set_ylim(-limit, limit)
    ax.set_xlabel(xlabel, fontsize=7)
    ax.tick_params(labelsize=7)
    if title:
        ax.set_title(title, fontsize=8)


def _figure_explanation(result):
    numbers = result._numbers()
    n = len(result)
    shown = min(n, MAX_SAMPLES)
    relevance = _array(result.relevance[:shown])
    views = [_sample_view(relevance[i]) for i in range(shown)]
    is_map = views[0][0] == "map"
    if is_map:
        fig, axes = _new_figure(2.8 * shown + 0.7, 3.1, 1, shown, left=0.35, right=0.75, bottom=0.35, wspace=0.55)
    else:
        fig, axes = _new_figure(3.0 * shown + 0.3, 2.7, 1, shown, left=0.55, bottom=0.45, wspace=0.4)
    axes = axes[0]
    for i, (ax, (kind, data)) in enumerate(zip(axes, views)):
        title = f"sample {i}: target {numbers['target'][i]}\noutput {numbers['output'][i]:.3g}, input/output {numbers['ratio'][i]:.2f}"
        if kind == "map":
            _draw_map(ax, data, title)
        else:
            _draw_values(ax, data, title)
    name = getattr(result.composite, "name", result.composite)
    heading = f"LRP relevance ({name})"
    if n > shown:
        heading += f": first {shown} of {n} samples"
    fig.suptitle(heading, fontsize=9)
    return fig


# -- ESNExplanation --------------------------------------------------------------------------------
def _figure_esn(result):
    numbers = result._numbers()
    n = result.relevance.shape[0]
    shown = min(n, MAX_SAMPLES)
    relevance = _array(result.relevance[:shown])  # (shown, T, F)
    profile = _array(result.time_profile[:shown])  # (shown, T)
    fig, axes = _new_figure(2.9 * shown + 1.0, 4.8, 2, shown, left=0.6, right=0.75, bottom=0.45, wspace=0.55, hspace=0.35,
                            height_ratios=[2, 1])
    steps = np.arange(profile.shape[1])
    for i in range(shown):
        title = f"sample {i}: target {numbers['target'][i]}\noutput {numbers['output'][i]:.3g}, input/output {numbers['ratio'][i]:.2f}"
        _draw_map(axes[0, i], relevance[i].T, title, axis_labels=("time step", "feature"))  # time across
        ax = axes[1, i]
        ax.plot(steps, profile[i], color="k", lw=0.8)
        ax.fill_between(steps, profile[i], 0, where=profile[i] >= 0, color="tab:red", alpha=0.6, lw=0)
        ax.fill_between(steps, profile[i], 0, where=profile[i] < 0, color="tab:blue", alpha=0.6, lw=0)
        ax.axhline(0, color="k", lw=0.5)
        ax.set_xlabel("time step", fontsize=7)
        if i == 0:
            ax.set_ylabel("relevance per step", fontsize=7)
        ax.tick_params(labelsize=7)
        ax.set_xlim(steps[0] - 0.5, steps[-1] + 0.5)
    heading = (f"ESN relevance through time: leak rate {result.leak_rate:g}, {_plural(result.slices, 'slice')}, "
               f"decay {result.decay_rate:.3g} per step")
    if n > shown:
        heading += f"; first {shown} of {n} samples"
    fig.suptitle(heading, fontsize=9)
    return fig


# -- RemovalCurve ----------------------------------------------------------------------------------
def _figure_removal(result):
    curves = _curves(result)
    fig, ((score_ax, correct_ax),) = _new_figure(7.2, 2.9, 1, 2, left=0.6, right=0.15, top=0.35, bottom=0.45,
                                                   wspace=0.3)
    colors = ["tab:red", "tab:blue", "tab:green", "tab:purple", "tab:orange", "tab:brown"]
    for index, curve in enumerate(curves):
        color = colors[index % len(colors)]
        fractions = _array(curve.fractions)
        scores = _array(curve.scores)
        if len(curves) == 1:  # one curve: show the spread of the samples behind the mean
            for row in scores[:20]:
                score_ax.plot(fractions, row, color=color, lw=0.5, alpha=0.25)
        label = f"{curve.label}: AOPC {curve.aopc:.3g}"
        score_ax.plot(fractions, scores.mean(0), color=color, lw=2, label=label)
        correct_ax.plot(fractions, _array(curve.accuracy), color=color, lw=2, label=curve.label)
    first = curves[0]
    score_ax.set_xlabel("fraction removed", fontsize=8)
    score_ax.set_ylabel(f"score ({first.score})", fontsize=8)
    correct_ax.set_xlabel("fraction removed", fontsize=8)
    correct_ax.set_ylabel("share still correct", fontsize=8)
    correct_ax.set_ylim(-0.03, 1.03)
    for ax in (score_ax, correct_ax):
        ax.tick_params(labelsize=7)
        ax.set_xlim(0, 1)
    score_ax.legend(fontsize=7, loc="best")
    if len(curves) == 1:
        title = f"{first.label}: AOPC {first.aopc:.3g} ({_plural(first.scores.shape[0], 'sample')})"
    else:
        title = "removal curves: " + ", ".join(f"{c.label} AOPC {c.aopc:.3g}" for c in curves)
    fig.suptitle(title, fontsize=9)
    return fig


# -- PathSet ---------------------------------------------------------------------------------------
def _edge_message(paths, depth, upper_node, layer, index) -> float:
    """Relevance on the edge into ``(layer, index)`` from the node above it (as to_networkx)."""
    if depth == 0:
        return float(paths.neuron_relevance[layer][index])
    upper = paths.layers[depth - 1]
    return float(paths.messages[(upper, layer)][index, upper_node[1]])


def _figure_paths(paths):
    import matplotlib

    from .plotting import RELEVANCE_CMAP, symmetric_limit

    layers = list(paths.layers)
    fig, ((graph_ax, table_ax),) = _new_figure(8.0, 3.6, 1, 2, left=0.2, right=0.1, top=0.35, bottom=0.6,
                                                 wspace=0.15, width_ratios=[1.4, 1])
    table_ax.axis("off")
    title = f"top {_plural(len(paths), 'path')} to target {paths.target} ({paths.score} score)"
    fig.suptitle(title, fontsize=9)
    if len(paths) == 0:
        graph_ax.axis("off")
        graph_ax.text(0.5, 0.5, "no path carries positive relevance", ha="center", va="center", fontsize=9)
        return fig
    # x: the deepest layer (nearest the input) at 0, the output at the right, like the forward pass
    column = {layer: len(layers) - 1 - depth for depth, layer in enumerate(layers)}
    by_layer = {layer: sorted({index for path in paths for name, index in path.neurons if name == layer}) for layer in layers}
    tallest = max(len(v) for v in by_layer.values())
    position = {"output": (len(layers), (tallest - 1) / 2)}
    for layer, indices in by_layer.items():
        offset = (tallest - len(indices)) / 2
        for row, index in enumerate(indices):
            position[(layer, index)] = (column[layer], offset + row)
    edges = {}
    for path in paths:
        upper = "output"
        for depth, (layer, index) in enumerate(path.neurons):
            node = (layer, index)
            if (upper, node) not in edges:
                edges[(upper, node)] = _edge_message(paths, depth, upper, layer, index)
            upper = node
    largest = max((abs(m) for m in edges.values()), default=1.0) or 1.0
    for (upper, node), message in edges.items():
        (x0, y0), (x1, y1) = position[upper], position[node]
        graph_ax.plot([x0, x1], [y0, y1], color="tab:red" if message >= 0 else "tab:blue",
                      lw=0.5 + 4.5 * abs(message) / largest, alpha=0.7, zorder=1, solid_capstyle="round")
    nodes = [node for node in position if node != "output"]
    values = np.array([float(paths.neuron_relevance[layer][index]) for layer, index in nodes])
    limit = symmetric_limit(values)
    xy = np.array([position[node] for node in nodes])
    cmap = matplotlib.colormaps[RELEVANCE_CMAP]
    dots = graph_ax.scatter(xy[:, 0], xy[:, 1], c=values, cmap=cmap, vmin=-limit, vmax=limit, s=180,
                            edgecolors="k", linewidths=0.6, zorder=2)
    for (layer, index), (x, y), value in zip(nodes, xy, values):
        ink = "white" if abs(value) > 0.6 * limit else "black"  # readable on dark red and blue
        graph_ax.text(x, y, str(index), ha="center", va="center", fontsize=6, color=ink, zorder=3)
    ox, oy = position["output"]
    graph_ax.scatter([ox], [oy], s=260, color="0.85", edgecolors="k", linewidths=0.6, zorder=2, marker="s")
    graph_ax.text(ox, oy, str(paths.target), ha="center", va="center", fontsize=7, zorder=3)
    graph_ax.set_xticks(range(len(layers) + 1), [layers[len(layers) - 1 - c] for c in range(len(layers))] + ["output"],
                        fontsize=7, rotation=20)
    graph_ax.set_yticks([])
    graph_ax.set_xlim(-0.5, len(layers) + 0.5)
    graph_ax.set_ylim(-0.8, tallest - 0.2)
    graph_ax.invert_yaxis()
    for side in ("top", "right", "left"):
        graph_ax.spines[side].set_visible(False)
    colorbar = fig.colorbar(dots, ax=graph_ax, fraction=0.04, pad=0.02)
    colorbar.set_ticks([-limit, 0, limit], labels=[f"{-limit:.2g}", "0", f"{limit:.2g}"])
    colorbar.ax.tick_params(labelsize=7)
    colorbar.set_label("neuron relevance", fontsize=7)
    rows = ["rank  score   relevance  neurons (top first)"]
    for rank, path in enumerate(paths.paths[:12]):
        rows.append(f"{rank + 1:>4}  {path.score:<7.3g} {path.relevance:<10.3g} " + " ".join(str(i) for _, i in path.neurons))
    if len(paths) > 12:
        rows.append(f"      ... {len(paths) - 12} more")
    table_ax.text(0, 1, "\n".join(rows), family="monospace", fontsize=7, va="top", ha="left", transform=table_ax.transAxes)
    return fig


#: result class -> figure function; each class is registered with the results' display registry.
_FIGURES = {
    Explanation: _figure_explanation,
    ESNExplanation: _figure_esn,
    RemovalCurve: _figure_removal,
    PathSet: _figure_paths,
}
for _cls in _FIGURES:
    register_display(_cls, to_png)
