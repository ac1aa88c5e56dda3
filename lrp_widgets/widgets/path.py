"""PathExplorer: the k most relevant neuron paths, their heatmaps, and how close k paths come.

Definitions are those of :mod:`lrp_widgets.paths` (REFERENCE.md §4): a path is a chain of neurons,
one per chosen layer, from the explained output down; its relevance is the output's relevance
times the product of the edge shares; the k-path heatmap is the input relevance when only the
neurons on the k best paths pass relevance at their layers.
"""
from __future__ import annotations

from collections import OrderedDict

import ipywidgets as widgets
import numpy as np
import torch
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from .. import explain
from ..engine.errors import UnsupportedModuleError
from ..paths import PathFinder, activation_heatmap, deconvolve, smape
from ..plotting import Heatmap, ImagePanel, MarkedCurves, relevance_map, to_numpy
from .base import Explorer
from .common import check_model_and_data, model_and_data, class_name, sample_slider

DEFAULT_MODEL = "shapes_minivgg"
OUTPUT = "output"


class PathExplorer(Explorer):
    """The k most relevant neuron paths of one prediction, and what they explain.

    Controls: ``k`` (how many paths), ``layer`` (a convolutional path layer: where the activation
    heatmap and the deconvolution are taken), ``sample``. Shows the neuron graph (layers as
    columns of dots, the output on the right; edge width = relevance flowing along the edge, the
    sum over the k paths that use it), the input, the k-path relevance heatmap, the activation
    heatmap of the selected channels (the channels on the k paths at ``layer``), their
    deconvolution, and MSE and SMAPE between the k-path heatmap and the full heatmap against k
    (in one panel, each divided by its value at the smallest k; the absolute values are in the
    readout and in ``.state``), with the current k marked.

    Cost: the first visit of a sample builds its :class:`~lrp_widgets.paths.PathFinder` (the
    messages) and, in one batched LRP pass, the k-path heatmaps for every k of the slider and the
    full heatmap (which give the fidelity curves). Both are kept per sample (bounded); a k change
    then only looks paths and a heatmap up and sums cached activation maps and deconvolutions.

    Parameters
    ----------
    model : nn.Module, optional
        A Sequential-style image model (as :class:`~lrp_widgets.paths.PathFinder` needs).
        Defaults to the zoo's MiniVGG trained on coloured shapes.
    data : Dataset-like, optional
        Anything with ``.x`` (N, C, H, W) (and optionally ``.y``, ``.classes``); defaults to the
        shapes test set.
    n_samples : int
        How many samples the ``sample`` slider offers (the first ``n_samples`` of ``data.x``).
    layers : list of str, optional
        Path layers (module names); default :func:`~lrp_widgets.paths.default_layers`.
    composite : str or Composite
        LRP rules for the messages and heatmaps.
    ks : iterable of int
        The values of the ``k`` slider (and of the fidelity curves).
    precompute : bool
        Compute every sample at construction (with a progress bar; about 50 ms a sample for the
        default model), so that no slider move waits for a PathFinder. Without it a sample's
        first visit pays that cost.
    progress : bool
        Show the progress bar while precomputing.
    """

    finder_cache_size = 32

    def __init__(
        self,
        model=None,
        data=None,
        n_samples: int = 16,
        layers=None,
        composite="epsilon_plus_flat",
        ks=range(1, 21),
        precompute: bool = True,
        progress: bool = True,
    ):
        model, data = model_and_data(model, data, DEFAULT_MODEL, "PathExplorer", "with .x")
        x = getattr(data, "x", None)
        if isinstance(x, torch.Tensor):
            x = x[:n_samples]
        y = getattr(data, "y", None)
        y = y[:n_samples] if isinstance(y, torch.Tensor) else None
        check_model_and_data(model, x, y, "PathExplorer")
        if x.ndim != 4:
            raise ValueError(
                f"PathExplorer: data.x must be images (N, C, H, W) — activation maps and deconvolutions are "
                f"drawn in image space; got shape {tuple(x.shape)}"
            )
        self.ks = np.array(sorted({int(k) for k in ks}), dtype=np.int64)
        if self.ks.size == 0 or self.ks[0] < 1:
            raise ValueError(f"PathExplorer: ks must hold integers >= 1, got {list(ks)}")
        self.model, self.data, self.x, self.y = model, data, x, y  # the model's train/eval flag is left alone
        self.composite, self.path_layers = composite, layers
        self._samples: OrderedDict = OrderedDict()
        # precomputed samples must all stay, or a sweep over them would recompute each in turn
        self.sample_cache_size = max(self.finder_cache_size, len(x)) if precompute else self.finder_cache_size

        # the first sample surfaces a bad model or layer list here, as a clear error at
        # construction (inside update() it would only be shown in the widget)
        first = self._sample(0)
        finder = first["finder"]
        self.layers = list(finder.layers)  # top (nearest the output) first
        self.image_layers = [layer for layer in self.layers if len(finder.shapes[layer]) == 4]
        if not self.image_layers:
            raise ValueError(
                f"PathExplorer: none of the path layers {self.layers} outputs (N, C, H, W); activation heatmaps "
                "and deconvolutions need a convolutional layer. Pass layers=[...] naming at least one conv ReLU."
            )
        self.sizes = {layer: finder.shapes[layer][1] for layer in self.layers}
        if precompute:
            from tqdm.auto import tqdm

            for index in tqdm(range(1, len(x)), desc="paths per sample", disable=not progress):
                self._sample(index)

        controls = {
            "k": widgets.IntSlider(value=5 if 5 in self.ks else int(self.ks[0]), min=int(self.ks[0]), max=int(self.ks[-1]),
                                   description="k paths", continuous_update=True),
            "layer": widgets.Dropdown(options=self.image_layers, value=self.image_layers[-1], description="layer"),
            "sample": sample_slider(len(x)),
        }
        figure = self._build_figure(tuple(x.shape[-2:]))
        super().__init__(controls, figure, title="Neuron paths: the k most relevant chains of neurons")

    # -- per sample, computed once -----------------------------------------------------------
    def _sample(self, index: int) -> dict:
        """The PathFinder, every k's path heatmap and the fidelity curves of one sample (cached)."""
        if index in self._samples:
            self._samples.move_to_end(index)
            return self._samples[index]
        x = self.x[index : index + 1]
        finder = PathFinder(self.model, x, layers=self.path_layers, composite=self.composite)
        heatmaps, full = self._heatmaps(finder)
        full_np = full[0].double().numpy()
        maps = heatmaps.double().numpy()
        mse = ((maps - full_np[None]) ** 2).reshape(len(maps), -1).mean(1)
        entry = {
            "finder": finder,
            # only what is shown is kept per k: the map summed over input channels
            "heatmaps": {int(k): relevance_map(maps[i]) for i, k in enumerate(self.ks)},
            "full": full_np,
            "mse": mse,
            "smape": np.array([smape(m, full_np) for m in maps]),
            "activations": {},
            "deconvolutions": {},
        }
        self._samples[index] = entry
        while len(self._samples) > self.sample_cache_size:
            self._samples.popitem(last=False)
        return entry

    def _heatmaps(self, finder: PathFinder):
        """Every k's path heatmap and the full heatmap in one batched LRP pass.

        Row ``i`` masks the path layers to the neurons of the ``ks[i]`` best paths (as
        ``finder.heatmap(k)`` does, one pass per k); the last row keeps every neuron, which is
        the full heatmap. Masks multiply the relevance per row, so batching changes nothing but
        the cost: one pass of ``len(ks) + 1`` rows instead of ``len(ks) + 1`` passes.
        """
        rows = [finder.masks(dict(finder.paths(int(k)).neurons_by_layer())) for k in self.ks]
        rows.append(finder.masks({layer: np.arange(finder.shapes[layer][1]) for layer in finder.layers}))
        masks = {layer: torch.cat([row[layer] for row in rows]) for layer in finder.layers}
        x = finder.x.expand(len(rows), *finder.x.shape[1:])
        relevance = explain(self.model, x, target=finder.target, composite=finder.composite, masks=masks).relevance
        return relevance[:-1], relevance[-1:]

    def _activation(self, entry, index, layer, channels) -> np.ndarray:
        key = (layer, channels)
        if key not in entry["activations"]:
            heat = activation_heatmap(self.model, self.x[index : index + 1], layer, list(channels))
            entry["activations"][key] = to_numpy(heat[0])
        return entry["activations"][key]

    def _deconvolution(self, entry, index, layer, channels):
        """Sum of the selected channels' deconvolutions, each with only its channel kept (Zeiler-Fergus).

        Returns ``(image (C, H, W), note)``; the note says why it is blank when the modules below
        ``layer`` cannot be walked back.
        """
        total = np.zeros(tuple(self.x.shape[1:]))
        for channel in channels:
            key = (layer, channel)
            if key not in entry["deconvolutions"]:
                try:
                    image = deconvolve(self.model, self.x[index : index + 1], layer, channel)
                    entry["deconvolutions"][key] = to_numpy(image[0])
                except UnsupportedModuleError as error:
                    return total, str(error)
            total = total + entry["deconvolutions"][key]
        return total, ""

    # -- the controller's two methods --------------------------------------------------------
    def compute(self, values):
        k, layer, index = int(values["k"]), values["layer"], int(values["sample"])
        entry = self._sample(index)
        finder = entry["finder"]
        path_set = finder.paths(k)
        by_layer = path_set.neurons_by_layer()
        channels = tuple(int(c) for c in by_layer[layer])
        deconvolution, note = self._deconvolution(entry, index, layer, channels)
        edges, flow = self._edges(path_set)
        position = int(np.searchsorted(self.ks, k))
        on_grid = position < len(self.ks) and self.ks[position] == k
        if on_grid:
            path_map, mse, smape_k = entry["heatmaps"][k], float(entry["mse"][position]), float(entry["smape"][position])
        else:  # a k between the slider's values (custom ks): PathFinder computes and caches it
            heat = finder.heatmap(k)[0].double().numpy()
            path_map, mse, smape_k = relevance_map(heat), float(np.mean((heat - entry["full"]) ** 2)), smape(heat, entry["full"])
        full_map = relevance_map(entry["full"])
        return {
            "k": k,
            "layer": layer,
            "sample": index,
            "target": finder.target,
            "output_relevance": finder.output_relevance,
            "paths": [path.neurons for path in path_set],
            "path_relevance": np.array([path.relevance for path in path_set]),
            "path_scores": np.array([path.score for path in path_set]),
            "neurons": {name: np.asarray(v) for name, v in by_layer.items()},
            "selected_channels": channels,
            "edges": edges,
            "edge_relevance": flow,
            "path_heatmap": path_map,
            "full_heatmap": full_map,
            "activation_map": self._activation(entry, index, layer, channels),
            "deconvolution": deconvolution,
            "deconvolution_note": note,
            "ks": self.ks,
            "mse_curve": entry["mse"],
            "smape_curve": entry["smape"],
            "mse": mse,
            "smape": smape_k,
        }

    def _edges(self, path_set):
        """Distinct edges of the paths (upper node, lower node), top first, and the relevance on each.

        A node is ``("output", target)`` or ``(layer, index)``. The relevance on an edge is the sum
        of the relevances of the paths that use it.
        """
        flow: "OrderedDict[tuple, float]" = OrderedDict()
        for path in path_set:
            nodes = [(OUTPUT, path_set.target)] + list(path.neurons)
            for upper, lower in zip(nodes[:-1], nodes[1:]):
                flow[(upper, lower)] = flow.get((upper, lower), 0.0) + path.relevance
        return list(flow), np.array(list(flow.values()), dtype=float)

    # -- the figure, built once --------------------------------------------------------------
    def _node_xy(self, node):
        layer, index = node
        if layer == OUTPUT:
            return len(self.layers), 0.5
        return self.columns[layer], (index + 0.5) / self.sizes[layer]

    def _build_figure(self, shape):
        # Lean on purpose (REFERENCE.md §5): text is most of a redraw's cost, so the panels carry
        # short titles, the graph names its columns with plain texts instead of an axis, and the
        # fidelity curves share one axes with two ticks per axis; the numbers are in the readout.
        figure = Figure(figsize=(10.5, 5.2), dpi=72)
        grid = figure.add_gridspec(2, 4, left=0.03, right=0.97, top=0.94, bottom=0.04, wspace=0.35, hspace=0.25,
                                   height_ratios=[1.05, 1])
        # the graph: columns from the layer nearest the input (left) to the output (right)
        ax = figure.add_subplot(grid[0, :3])
        self.columns = {layer: column for column, layer in enumerate(reversed(self.layers))}
        dots = np.array([self._node_xy((layer, i)) for layer in self.layers for i in range(self.sizes[layer])])
        ax.scatter(dots[:, 0], dots[:, 1], s=5, c="0.7", linewidths=0, zorder=2)
        ax.scatter([len(self.layers)], [0.5], s=30, c="k", zorder=3)
        self.layer_box = Rectangle((-0.25, -0.03), 0.5, 1.06, facecolor="tab:orange", alpha=0.15, edgecolor="none", zorder=0)
        ax.add_patch(self.layer_box)
        # one LineCollection for all edges: each draw sets its segments and widths in place
        self.edge_lines = LineCollection([], colors="tab:red", alpha=0.75, zorder=1, capstyle="round")
        ax.add_collection(self.edge_lines)
        self.path_nodes = ax.scatter(np.empty(0), np.empty(0), s=18, c="tab:red", zorder=4, linewidths=0)
        names = [self._short(layer) for layer in reversed(self.layers)] + ["output"]
        for column, name in enumerate(names):
            ax.text(column, -0.05, name, fontsize=7, ha="center", va="top")
        ax.set_xlim(-0.4, len(self.layers) + 0.4)
        ax.set_ylim(-0.12, 1.04)
        ax.set_axis_off()
        ax.set_title("top-k paths (width: relevance)", fontsize=9)
        self.graph_axes = ax

        # MSE and SMAPE share one small axes, each divided by its value at the smallest k: one
        # axes' worth of ticks instead of two; the absolute values are in the readout and .state
        ax = figure.add_subplot(grid[0, 3])
        self.fidelity_curves = MarkedCurves(ax)
        ax.set_xticks([self.ks[0], self.ks[-1]])
        ax.set_xlim(self.ks[0] - 0.5, self.ks[-1] + 0.5)
        ax.text(0.0, 1.04, "MSE", color="tab:purple", fontsize=9, transform=ax.transAxes)
        ax.text(0.25, 1.04, "SMAPE", color="tab:green", fontsize=9, transform=ax.transAxes)
        ax.text(1.0, 1.04, f"vs k, ÷ k={self.ks[0]}", color="0.3", fontsize=8, ha="right", transform=ax.transAxes)

        self.input_panel = ImagePanel(figure.add_subplot(grid[1, 0]), shape, title="input")
        self.path_heatmap = Heatmap(figure.add_subplot(grid[1, 1]), shape, title="k-path relevance", label="")
        self.activation_panel = ImagePanel(figure.add_subplot(grid[1, 2]), shape, title="activation", cmap="magma")
        color = (3,) if self.x.shape[1] == 3 else ()
        self.deconvolution_panel = ImagePanel(figure.add_subplot(grid[1, 3]), shape + color, title="deconvolution")
        return figure

    @staticmethod
    def _short(layer: str) -> str:
        return layer.replace("features.", "conv ").replace("classifier.", "dense ")

    def draw(self, state):
        index, layer = state["sample"], state["layer"]
        segments = [[self._node_xy(upper), self._node_xy(lower)] for upper, lower in state["edges"]]
        flow = state["edge_relevance"]
        widths = 0.6 + 5.4 * flow / flow.max() if flow.size and flow.max() > 0 else []
        self.edge_lines.set_segments(segments)
        self.edge_lines.set_linewidths(widths)
        nodes = {node for path in state["paths"] for node in path}
        self.path_nodes.set_offsets(np.array([self._node_xy(n) for n in sorted(nodes)]).reshape(-1, 2))
        self.layer_box.set_x(self.columns[layer] - 0.25)
        target = class_name(self.data, state["target"])

        self.input_panel.update(self.x[index])
        self.path_heatmap.update(state["path_heatmap"])
        self.activation_panel.update(state["activation_map"])
        deconvolution = state["deconvolution"]
        scale = 2 * max(float(np.abs(deconvolution).max()), 1e-12)
        self.deconvolution_panel.update(deconvolution / scale + 0.5)  # zero is mid-grey

        curves, low, high = self.fidelity_curves, np.inf, -np.inf
        for name, color in (("mse", "tab:purple"), ("smape", "tab:green")):
            curve = state[f"{name}_curve"]
            relative = curve / curve[0] if curve[0] > 0 else curve
            curves.update(name, state["ks"], relative, color=color, marker="o", ms=2.5, lw=1)
            low, high = min(low, float(relative.min())), max(high, float(relative.max()))
        span = max(high - low, 1e-3 * max(abs(high), 1e-30))
        curves.ax.set_ylim(low - 0.08 * span, high + 0.08 * span)
        curves.ax.set_yticks([low, high], [f"{low:.2f}", f"{high:.2f}" if high != low else ""])
        curves.mark(state["k"])

        share = state["path_relevance"].sum() / state["output_relevance"] if state["output_relevance"] else float("nan")
        items = {"prediction": target, "layer": f"{self._short(layer)} ({len(state['selected_channels'])} channels on the paths)"}
        if self.y is not None:
            items["label"] = class_name(self.data, int(self.y[index]))
        items.update(
            paths=f"{len(state['paths'])} (of k = {state['k']})",
            path_relevance=f"{share:.1%} of the output",
            MSE=f"{state['mse']:.3g}",
            SMAPE=f"{state['smape']:.1f}%",
        )
        if state["deconvolution_note"]:
            items["deconvolution"] = "not available at this layer"
        self.set_readout(**items)
