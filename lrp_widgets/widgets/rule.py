"""RuleExplorer: slide LRP rule parameters and see the heatmap and per-layer conservation change."""
from __future__ import annotations

from dataclasses import dataclass

import ipywidgets as widgets
import numpy as np
import torch

from .. import composites, explain
from ..engine import types
from ..engine.modes import evaluating
from ..plotting import relevance_map, to_numpy
from .base import Explorer, State
from .common import DATA_FORMS, check_model_and_data, class_name, log_slider, model_and_data, sample_slider
from .panels import HeatmapPanel, ImagePanel, PlotPanel, TextPanel

DEFAULT_MODEL = "shapes_minivgg"


def build_composite(name: str, epsilon: float, gamma: float, low: float, high: float):
    """The named composite with the explorer's epsilon and gamma where it has them."""
    if name == "lrp0":
        return composites.lrp0()
    if name == "epsilon_gamma_box":
        return composites.epsilon_gamma_box(low, high, epsilon=epsilon, gamma=gamma)
    return composites.NAMES[name](epsilon=epsilon)


def as_picture(values) -> np.ndarray:
    """What a panel shows of one sample: (C, H, W) -> (H, W) summed over channels; a sequence
    (T, F) -> (F, T), time along x; features (F,) stay as they are (drawn as bars)."""
    values = to_numpy(values)
    if values.ndim == 3:
        return relevance_map(values)
    return values.T if values.ndim == 2 else values


@dataclass(frozen=True)
class RuleState(State):
    sample: int
    input: np.ndarray  # as shown: image (C, H, W), sequence (F, T) or features (F,)
    relevance: np.ndarray  # the sample's relevance, the input's shape
    heatmap: np.ndarray  # as shown: (H, W), (F, T) or (F,)
    stage_names: list
    stage_sums: np.ndarray
    target: int
    probability: float
    composite: str


def _bars(ax, values, color=None):
    ax.clear()
    colors = color or np.where(np.asarray(values) >= 0, "tab:red", "tab:blue")
    ax.bar(np.arange(len(values)), values, color=colors, width=0.85)
    ax.axhline(0, color="k", lw=0.5)
    ax.tick_params(labelsize=7)


class RuleExplorer(Explorer):
    """Compare LRP composites and their parameters on one model.

    Controls: ``composite``, ``epsilon``, ``gamma`` (used by ``epsilon_gamma_box``), ``sample``.
    Shows the input, its relevance (zero-centred) and the relevance sum at every layer with
    parameters (equal bars: relevance is conserved; bias and stabilizers make them differ).

    Data: the first ``n_samples`` of ``data``, which may be {forms}. Images (N, C, H, W) are
    shown as pictures and heatmaps, sequences (N, T, F) as feature x time maps (time along x),
    feature vectors (N, F) as bars. The model's train/eval flags are restored after every use.

    Parameters
    ----------
    model : nn.Module, optional
        Defaults to the zoo's MiniVGG trained on coloured shapes (then ``data`` defaults to its
        test set).
    data : optional
        See above (and optionally ``.classes`` for class names).
    """

    __doc__ = __doc__.replace("{forms}", DATA_FORMS)

    def __init__(self, model=None, data=None, n_samples: int = 64):
        super().__init__("LRP rules and composites")
        model, data = model_and_data(model, data, DEFAULT_MODEL, "RuleExplorer")
        data = data[:n_samples]
        check_model_and_data(model, data.x, None, "RuleExplorer")
        self.model, self.data, self.x = model, data, data.x
        self.low, self.high = float(self.x.min()), float(self.x.max())
        with evaluating(model):
            self.probabilities = torch.softmax(model(self.x), 1)
        self.explanations = self.cache(128)
        # stage names are the same for every composite; sums change only at layers with
        # parameters, so only those get a bar (plus the output and the input)
        probe = explain(model, self.x[:1], composite="epsilon").conservation()
        modules = dict(model.named_modules())
        self.stage_rows = [
            i for i, name in enumerate(probe.names)
            if name in ("output", "input") or isinstance(modules.get(name), types.LINEAR)
        ]
        self.stage_names = [probe.names[i] for i in self.stage_rows]
        controls = {
            "composite": widgets.Dropdown(options=list(composites.NAMES), value=composites.default_for(self.model).name, description="composite"),
            "epsilon": log_slider(1e-6, -9, 1, 0.25, "epsilon"),
            "gamma": log_slider(0.25, -2, 1.5, 0.125, "gamma"),
            "sample": sample_slider(len(self.x)),
        }
        if self.x.ndim == 2:  # feature vectors: bars
            panels = [PlotPanel(["input"], lambda ax, input: _bars(ax, input, "0.5"), title="input"),
                      PlotPanel(["heatmap"], lambda ax, heatmap: _bars(ax, heatmap), title="relevance")]
        else:
            panels = [ImagePanel(["input"], title="input"), HeatmapPanel(["heatmap"], title="relevance")]
        self.input_panel, self.heatmap = panels
        self.bars = PlotPanel(["stage_sums"], self._draw_bars, title="relevance sum per layer", figsize=(3.6, 2.6))
        self.bars.figure.subplots_adjust(left=0.38, right=0.95, bottom=0.12, top=0.97)
        self.bar_artists = self.bars.ax.barh(np.arange(len(self.stage_names)), np.zeros(len(self.stage_names)), color="tab:red")
        self.bars.ax.set_yticks(np.arange(len(self.stage_names)), self.stage_names, fontsize=7)
        self.bars.ax.invert_yaxis()
        self.bars.ax.axvline(0, color="k", lw=0.5)
        self.bars.ax.tick_params(axis="x", labelsize=7)
        readout = TextPanel(["target", "probability", "stage_sums"], self._readout)
        self.connect(controls, [[self.input_panel, self.heatmap, self.bars]], readout)

    def _explanation(self, composite_name, epsilon, gamma, index):
        # epsilon does not enter LRP-0, gamma only the gamma composite: they are not in the key there
        key = (composite_name, None if composite_name == "lrp0" else epsilon, gamma if composite_name == "epsilon_gamma_box" else None, index)

        def run():
            composite = build_composite(composite_name, epsilon, gamma, self.low, self.high)
            result = explain(self.model, self.x[index : index + 1], composite=composite)
            return result, result.conservation(), composite.name

        return self.explanations.get(key, run)

    def compute(self, values) -> RuleState:
        index = values["sample"]
        result, table, name = self._explanation(values["composite"], values["epsilon"], values["gamma"], index)
        target = int(result.target[0])
        relevance = result.relevance[0].numpy()
        return RuleState(
            sample=index,
            input=as_picture(self.x[index]) if self.x.ndim != 4 else to_numpy(self.x[index]),
            relevance=relevance,
            heatmap=as_picture(relevance),
            stage_names=self.stage_names,
            stage_sums=table.sums[self.stage_rows, 0],
            target=target,
            probability=float(self.probabilities[index, target]),
            composite=name,
        )

    def _draw_bars(self, ax, stage_sums):
        for bar, value in zip(self.bar_artists, stage_sums):
            bar.set_width(value)
            bar.set_color("tab:red" if value >= 0 else "tab:blue")
        limit = max(float(np.abs(stage_sums).max()), 1e-12) * 1.1
        ax.set_xlim(-limit if stage_sums.min() < 0 else 0, limit)

    def _readout(self, target, probability, stage_sums):
        kept = stage_sums[-1] / stage_sums[0] if stage_sums[0] != 0 else float("nan")
        return {
            "prediction": f"{class_name(self.data, target)} ({probability:.0%})",
            "output": f"{stage_sums[0]:.3g}",
            "input_relevance": f"{stage_sums[-1]:.3g}",
            "conserved": f"{kept:.1%}",
        }
