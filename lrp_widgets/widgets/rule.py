"""RuleExplorer: slide LRP rule parameters and see the heatmap and per-layer conservation change."""
from __future__ import annotations

import ipywidgets as widgets
import numpy as np
import torch
from matplotlib.ticker import MaxNLocator

from .. import composites, explain
from ..plotting import Heatmap, ImagePanel, lean_figure, relevance_map
from .base import Explorer
from .common import check_model_and_data, model_and_data, class_name, sample_slider

DEFAULT_MODEL = "shapes_minivgg"


def build_composite(name: str, epsilon: float, gamma: float, low: float, high: float):
    """The named composite with the explorer's epsilon and gamma where it has them."""
    if name == "lrp0":
        return composites.lrp0()
    if name == "epsilon_gamma_box":
        return composites.epsilon_gamma_box(low, high, epsilon=epsilon, gamma=gamma)
    return composites.NAMES[name](epsilon=epsilon)


class RuleExplorer(Explorer):
    """Compare LRP composites and their parameters on one model.

    Controls: ``composite``, ``epsilon``, ``gamma`` (used by ``epsilon_gamma_box``), ``sample``.
    Shows the input, the relevance heatmap (zero-centred) and the relevance sum at every layer
    (bars: equal bars mean relevance is conserved; bias and stabilizers make them differ).

    Parameters
    ----------
    model : nn.Module, optional
        Defaults to the zoo's MiniVGG trained on coloured shapes.
    data : Dataset-like, optional
        Anything with ``.x`` (N, C, H, W) (and optionally ``.y``, ``.classes``); defaults to the
        first 64 test images of the model's data set.
    """

    def __init__(self, model=None, data=None, n_samples: int = 64):
        model, data = model_and_data(model, data, DEFAULT_MODEL, "RuleExplorer", "with .x")
        x = data.x[:n_samples]
        check_model_and_data(model, x, None, "RuleExplorer")
        self.model, self.data, self.x = model, data, x
        self.low, self.high = float(x.min()), float(x.max())
        with torch.no_grad():
            self.probabilities = torch.softmax(model.eval()(x), 1)
        controls = {
            "composite": widgets.Dropdown(options=list(composites.NAMES), value="epsilon_plus_flat", description="composite"),
            "epsilon": widgets.FloatLogSlider(value=1e-6, base=10, min=-9, max=1, step=0.25, description="epsilon", continuous_update=False),
            "gamma": widgets.FloatLogSlider(value=0.25, base=10, min=-2, max=1.5, step=0.125, description="gamma", continuous_update=False),
            "sample": sample_slider(len(x)),
        }
        # stage names are the same for every composite: one probe explanation fixes the bars.
        # Relevance sums change only at layers with parameters, so only those get a bar (plus
        # the output and the input): fewer labels keep the redraw cheap (text dominates it).
        probe = explain(model, x[:1], composite="epsilon").conservation()
        modules = dict(model.named_modules())
        self.stage_rows = [
            i for i, name in enumerate(probe.names)
            if name in ("output", "input") or isinstance(modules.get(name), (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d))
        ]
        figure, axes = lean_figure((10.5, 3.2), 1, 3, width_ratios=[1, 1.15, 1.3], left=0.02, right=0.98, wspace=0.6, bottom=0.15)
        shape = tuple(x.shape[-2:])
        self.input_panel = ImagePanel(axes[0, 0], shape, title="input")
        self.heatmap = Heatmap(axes[0, 1], shape, title="relevance")
        ax = axes[0, 2]
        self.stage_names = [probe.names[i] for i in self.stage_rows]
        positions = np.arange(len(self.stage_names))
        self.bars = ax.barh(positions, np.zeros(len(positions)), color="tab:red")
        ax.set_yticks(positions, self.stage_names, fontsize=7)
        ax.xaxis.set_major_locator(MaxNLocator(3))
        ax.invert_yaxis()
        ax.axvline(0, color="k", lw=0.5)
        ax.set_title("relevance sum per layer", fontsize=9)
        ax.tick_params(axis="x", labelsize=7)
        self.bar_axes = ax
        super().__init__(controls, figure, title="LRP rules and composites")

    def compute(self, values):
        index = values["sample"]
        composite = build_composite(values["composite"], values["epsilon"], values["gamma"], self.low, self.high)
        result = explain(self.model, self.x[index : index + 1], composite=composite)
        table = result.conservation()
        target = int(result.target[0])
        return {
            "relevance": result.relevance[0].numpy(),
            "heatmap": relevance_map(result.relevance[0]),
            "stage_names": [table.names[i] for i in self.stage_rows],
            "stage_sums": table.sums[self.stage_rows, 0],
            "target": target,
            "probability": float(self.probabilities[index, target]),
            "composite": composite.name,
        }

    def draw(self, state):
        index = self.controls["sample"].value
        self.input_panel.update(self.x[index])
        self.heatmap.update(state["heatmap"])
        sums = state["stage_sums"]
        for bar, value in zip(self.bars, sums):
            bar.set_width(value)
            bar.set_color("tab:red" if value >= 0 else "tab:blue")
        limit = max(float(np.abs(sums).max()), 1e-12) * 1.1
        self.bar_axes.set_xlim(-limit if sums.min() < 0 else 0, limit)
        kept = sums[-1] / sums[0] if sums[0] != 0 else float("nan")
        self.set_readout(
            prediction=f"{class_name(self.data, state['target'])} ({state['probability']:.0%})",
            output=f"{sums[0]:.3g}",
            input_relevance=f"{sums[-1]:.3g}",
            conserved=f"{kept:.1%}",
        )
