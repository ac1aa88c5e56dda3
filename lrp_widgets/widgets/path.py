"""PathExplorer: the k most relevant neuron paths, their heatmaps, and how close k paths come.

Definitions are those of :mod:`lrp_widgets.paths` (REFERENCE.md §4): a path is a chain of neurons,
one per chosen layer, from the explained output down; its relevance is the output's relevance
times the product of the edge shares; the k-path heatmap is the input relevance when only the
neurons on the k best paths pass relevance at their layers.
"""
from __future__ import annotations

from dataclasses import dataclass

import ipywidgets as widgets
import numpy as np
import torch

from .. import composites, explain
from ..engine.errors import UnsupportedModuleError
from ..paths import PathFinder, activation_heatmap, deconvolve, smape
from ..plotting import relevance_map, to_numpy
from .base import Explorer, State
from .common import DATA_FORMS, check_model_and_data, class_name, model_and_data, sample_slider
from .panels import HeatmapPanel, ImagePanel, PlotPanel, TextPanel
from .path_graph import PathGraphPanel, path_edges, short_name

DEFAULT_MODEL = "shapes_minivgg"


@dataclass(frozen=True)
class PathState(State):
    k: int
    layer: str
    sample: int
    input: np.ndarray
    target: int
    output_relevance: float
    paths: list  # per path: its neurons [(layer, index), ...], top first
    path_relevance: np.ndarray
    path_scores: np.ndarray
    neurons: dict  # layer -> indices on the paths
    selected_channels: tuple
    edges: list  # (upper node, lower node); a node is ("output", target) or (layer, index)
    edge_relevance: np.ndarray
    path_heatmap: np.ndarray
    full_heatmap: np.ndarray
    activation_map: np.ndarray
    deconvolution: np.ndarray  # (C, H, W) sum of the selected channels' deconvolutions
    deconvolution_shown: np.ndarray  # scaled so that zero is mid-grey
    deconvolution_note: str
    ks: np.ndarray
    mse_curve: np.ndarray
    smape_curve: np.ndarray
    mse: float
    smape: float


class PathExplorer(Explorer):
    """The k most relevant neuron paths of one prediction, and what they explain.

    Controls: ``k`` (how many paths), ``layer`` (a convolutional path layer: where the activation
    heatmap and the deconvolution are taken), ``sample``. Shows the neuron graph (edge width =
    relevance along the edge, summed over the k paths), the MSE and SMAPE between the k-path and
    the full heatmap against k (each divided by its value at the smallest k), the input, the
    k-path heatmap, the activation heatmap of the channels on the paths at ``layer`` and their
    deconvolution.

    A sample's first visit builds its :class:`~lrp_widgets.paths.PathFinder` and, in one batched
    LRP pass, the heatmaps of every k of the slider (kept per sample, bounded); a k change then
    only looks paths up and sums cached activation maps and deconvolutions.

    Parameters
    ----------
    model : nn.Module, optional
        A Sequential-style image model. Defaults to the zoo's MiniVGG on coloured shapes.
    data : optional
        Images (N, C, H, W): {forms} (optionally ``.classes``); defaults to the shapes test set.
    n_samples : int
        How many samples the ``sample`` slider offers (the first ones).
    layers : list of str, optional
        Path layers (module names); default :func:`~lrp_widgets.paths.default_layers`.
    composite : str or Composite
        LRP rules of the messages and heatmaps.
    ks : iterable of int
        The values of the ``k`` slider (and of the fidelity curves).
    precompute, progress : bool
        Compute every sample at construction (with a progress bar), so no slider move waits.
    """

    __doc__ = __doc__.replace("{forms}", DATA_FORMS)
    finder_cache_size = 32

    def __init__(self, model=None, data=None, n_samples: int = 16, layers=None, composite=None,
                 ks=range(1, 21), precompute: bool = True, progress: bool = True):
        super().__init__("Neuron paths: the k most relevant chains of neurons")
        model, data = model_and_data(model, data, DEFAULT_MODEL, "PathExplorer")
        data = data[:n_samples]
        x, y = data.x, data.y
        check_model_and_data(model, x, y, "PathExplorer")
        if x.ndim != 4:
            raise ValueError(f"PathExplorer: data.x must be images (N, C, H, W) — activation maps and deconvolutions are "
                             f"drawn in image space; got shape {tuple(x.shape)}")
        self.ks = np.array(sorted({int(k) for k in ks}), dtype=np.int64)
        if self.ks.size == 0 or self.ks[0] < 1:
            raise ValueError(f"PathExplorer: ks must hold integers >= 1, got {list(ks)}")
        self.model, self.data, self.x, self.y = model, data, x, y  # the model's train/eval flag is left alone
        # None: chosen by the model, as explain does (epsilon_plus_flat only for a convolutional first layer)
        self.composite, self.path_layers = composites.default_for(self.model).name if composite is None else composite, layers
        # precomputed samples must all stay, or a sweep over them would recompute each in turn
        self.samples = self.cache(max(self.finder_cache_size, len(x)) if precompute else self.finder_cache_size)
        # the first sample surfaces a bad model or layer list here, as a clear error
        finder = self._sample(0)["finder"]
        self.layers = list(finder.layers)  # top (nearest the output) first
        self.image_layers = [layer for layer in self.layers if len(finder.shapes[layer]) == 4]
        if not self.image_layers:
            raise ValueError(f"PathExplorer: none of the path layers {self.layers} outputs (N, C, H, W); activation heatmaps "
                             "and deconvolutions need a convolutional layer. Pass layers=[...] naming at least one conv ReLU.")
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
        self.graph = PathGraphPanel(self.layers, self.sizes)
        self.fidelity = PlotPanel(["ks", "mse_curve", "smape_curve", "k"], self._draw_fidelity,
                                  title=f"MSE (purple), SMAPE (green) vs k, ÷ k={self.ks[0]}", figsize=(3.4, 2.6), marker="k")
        self.fidelity_lines = [self.fidelity.ax.plot([], [], color=c, marker="o", ms=2.5, lw=1)[0] for c in ("tab:purple", "tab:green")]
        self.fidelity.ax.set_xticks([self.ks[0], self.ks[-1]])
        self.fidelity.ax.set_xlim(self.ks[0] - 0.5, self.ks[-1] + 0.5)
        self.fidelity.ax.tick_params(labelsize=7)
        self.input_panel = ImagePanel(["input"], title="input")
        self.path_heatmap = HeatmapPanel(["path_heatmap"], title="k-path relevance")
        self.activation_panel = ImagePanel(["activation_map"], title="activation", cmap="magma")
        self.deconvolution_panel = ImagePanel(["deconvolution_shown"], title="deconvolution", limits=(0, 1))
        readout = TextPanel(["target", "sample", "layer", "selected_channels", "paths", "k", "path_relevance", "output_relevance",
                             "mse", "smape", "deconvolution_note"], self._readout)
        self.connect(controls, [[self.graph, self.fidelity],
                                [self.input_panel, self.path_heatmap, self.activation_panel, self.deconvolution_panel]], readout)

    # -- per sample, computed once -----------------------------------------------------------
    def _sample(self, index: int) -> dict:
        """The PathFinder, every k's path heatmap and the fidelity curves of one sample (cached)."""
        return self.samples.get(index, lambda: self._compute_sample(index))

    def _compute_sample(self, index: int) -> dict:
        finder = PathFinder(self.model, self.x[index : index + 1], layers=self.path_layers, composite=self.composite)
        heatmaps, full = self._heatmaps(finder)
        full_np = full[0].double().numpy()
        maps = heatmaps.double().numpy()
        return {
            "finder": finder,
            # only what is shown is kept per k: the map summed over input channels
            "heatmaps": {int(k): relevance_map(maps[i]) for i, k in enumerate(self.ks)},
            "full": full_np,
            "mse": ((maps - full_np[None]) ** 2).reshape(len(maps), -1).mean(1),
            "smape": np.array([smape(m, full_np) for m in maps]),
            "activations": {},
            "deconvolutions": {},
        }

    def _heatmaps(self, finder: PathFinder):
        """Every k's path heatmap (row i: ``finder.heatmap(ks[i])``) and the full heatmap (last
        row, every neuron kept) in one batched LRP pass; masks act per row, so batching is exact."""
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

    def compute(self, values) -> PathState:
        k, layer, index = int(values["k"]), values["layer"], int(values["sample"])
        entry = self._sample(index)
        finder = entry["finder"]
        path_set = finder.paths(k)
        by_layer = path_set.neurons_by_layer()
        channels = tuple(int(c) for c in by_layer[layer])
        deconvolution, note = self._deconvolution(entry, index, layer, channels)
        edges, flow = path_edges(path_set)
        position = int(np.searchsorted(self.ks, k))
        if position < len(self.ks) and self.ks[position] == k:
            path_map, mse, smape_k = entry["heatmaps"][k], float(entry["mse"][position]), float(entry["smape"][position])
        else:  # a k between the slider's values (custom ks): PathFinder computes and caches it
            heat = finder.heatmap(k)[0].double().numpy()
            path_map, mse, smape_k = relevance_map(heat), float(np.mean((heat - entry["full"]) ** 2)), smape(heat, entry["full"])
        return PathState(
            k=k, layer=layer, sample=index, input=to_numpy(self.x[index]), target=finder.target,
            output_relevance=finder.output_relevance,
            paths=[path.neurons for path in path_set],
            path_relevance=np.array([path.relevance for path in path_set]),
            path_scores=np.array([path.score for path in path_set]),
            neurons={name: np.asarray(v) for name, v in by_layer.items()},
            selected_channels=channels, edges=edges, edge_relevance=flow,
            path_heatmap=path_map, full_heatmap=relevance_map(entry["full"]),
            activation_map=self._activation(entry, index, layer, channels),
            deconvolution=deconvolution,
            deconvolution_shown=deconvolution / (2 * max(float(np.abs(deconvolution).max()), 1e-12)) + 0.5,
            deconvolution_note=note, ks=self.ks, mse_curve=entry["mse"], smape_curve=entry["smape"], mse=mse, smape=smape_k,
        )

    # -- the panels ------------------------------------------------------------------------------
    def _draw_fidelity(self, ax, ks, mse_curve, smape_curve):
        low, high = np.inf, -np.inf
        for line, curve in zip(self.fidelity_lines, (mse_curve, smape_curve)):
            relative = curve / curve[0] if curve[0] > 0 else curve
            line.set_data(ks, relative)
            low, high = min(low, float(relative.min())), max(high, float(relative.max()))
        span = max(high - low, 1e-3 * max(abs(high), 1e-30))
        ax.set_ylim(low - 0.08 * span, high + 0.08 * span)
        ax.set_yticks([low, high], [f"{low:.2f}", f"{high:.2f}" if high != low else ""])

    def _readout(self, target, sample, layer, selected_channels, paths, k, path_relevance, output_relevance, mse, smape, deconvolution_note):
        share = path_relevance.sum() / output_relevance if output_relevance else float("nan")
        items = {"prediction": class_name(self.data, target), "layer": f"{short_name(layer)} ({len(selected_channels)} channels on the paths)"}
        if self.y is not None:
            items["label"] = class_name(self.data, int(self.y[sample]))
        items.update(paths=f"{len(paths)} (of k = {k})", path_relevance=f"{share:.1%} of the output", MSE=f"{mse:.3g}", SMAPE=f"{smape:.1f}%")
        if deconvolution_note:
            items["deconvolution"] = "not available at this layer"
        return items
