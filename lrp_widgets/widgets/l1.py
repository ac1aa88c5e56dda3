"""L1Explorer: slide the L1 strength a model was trained with and see where its relevance goes."""
from __future__ import annotations

import ipywidgets as widgets
import numpy as np
from tqdm.auto import tqdm

from .. import explain
from ..plotting import Heatmap, MarkedCurves, lean_figure
from ..train import accuracy, sparsity
from .base import Explorer
from .common import check_model_and_data, sample_slider


def informative_share(relevance: np.ndarray, mask: np.ndarray) -> float:
    """Share of the total |relevance| (over samples and pixels) that falls inside ``mask``."""
    magnitude = np.abs(relevance)
    total = magnitude.sum()
    return float(magnitude[..., mask].sum() / total) if total > 0 else float("nan")


class L1Explorer(Explorer):
    """How L1 regularisation moves relevance onto the informative input (the fact-or-artifact paper).

    Controls: ``l1`` (the models' L1 strengths), ``architecture``, ``sample``. Shows the mean
    relevance over the test set, one sample's relevance, accuracy and weight sparsity against L1,
    and the share of |relevance| on the informative square, with the current L1 marked.

    Everything is computed once at construction (one explanation of the test set per model,
    with a progress bar); moving a control only redraws.

    Parameters
    ----------
    models : dict, optional
        ``{architecture: {l1: model}}``. Defaults to the zoo's two_squares sweeps (MLP and CNN).
    data : Dataset-like, optional
        Test data with ``.x``, ``.y`` and optionally ``.informative_mask`` (H, W). Defaults to the
        zoo models' two_squares test set.
    n_samples : int
        How many test samples to explain per model.
    composite : str or Composite
        LRP composite; the epsilon rule by default. (A flat first layer, as in
        ``epsilon_plus_flat``, would spread relevance evenly over all pixels of a dense first
        layer and hide exactly what this explorer is about.)
    """

    def __init__(self, models: dict | None = None, data=None, n_samples: int = 200, composite="epsilon", progress: bool = True):
        if models is None:
            from .. import zoo

            models, name = {}, None
            for architecture in ("mlp", "cnn"):
                sweep = zoo.l1_sweep(architecture)
                models[architecture.upper()] = {l1: zoo.load(name) for l1, name in sweep}
                name = name or sweep[0][1]
            data = zoo.dataset(name).test if data is None else data
        if data is None:
            raise ValueError("L1Explorer: pass test data (with .x and .y) along with your own models")
        if not models or not all(models.values()):
            raise ValueError("L1Explorer: models must be {architecture: {l1: model}} with at least one model each")
        x, y = data.x[:n_samples], data.y[:n_samples]
        mask = getattr(data, "informative_mask", None)
        self.mask = None if mask is None else np.asarray(mask, dtype=bool)
        self.x, self.y = x, y
        self.sweeps = {}
        jobs = [(arch, l1, model) for arch, by_l1 in models.items() for l1, model in sorted(by_l1.items())]
        for arch, l1, model in tqdm(jobs, desc="explaining the L1 sweep", disable=not progress):
            check_model_and_data(model, x, y, "L1Explorer")
            result = explain(model, x, composite=composite)
            relevance = result.relevance.sum(1).numpy()  # (N, H, W), channels summed
            entry = {
                "mean_map": relevance.mean(0),
                "maps": relevance,
                "accuracy": accuracy(model, x, y),
                "sparsity": sparsity(model),
                "share": informative_share(relevance, self.mask) if self.mask is not None else float("nan"),
            }
            self.sweeps.setdefault(arch, {})[float(l1)] = entry
        architectures = list(self.sweeps)
        l1_values = sorted(self.sweeps[architectures[0]])
        controls = {
            "l1": widgets.SelectionSlider(options=[(f"{v:g}", v) for v in l1_values], value=l1_values[0], description="L1", continuous_update=True),
            "architecture": widgets.ToggleButtons(options=architectures, value=architectures[0], description="model"),
            "sample": sample_slider(len(x)),
        }
        shape = tuple(x.shape[-2:])
        figure, axes = lean_figure((11, 2.9), 1, 4, width_ratios=[1, 1, 1.1, 1.1], left=0.02, right=0.97, wspace=0.6, bottom=0.2)
        self.mean_heatmap = Heatmap(axes[0, 0], shape, title="mean relevance (test set)")
        self.sample_heatmap = Heatmap(axes[0, 1], shape, title="one sample")
        if self.mask is not None:
            for ax in (axes[0, 0], axes[0, 1]):
                ax.contour(self.mask, levels=[0.5], colors="k", linewidths=0.6)
        self.quality = MarkedCurves(axes[0, 2], xlabel="L1", ylabel="fraction")
        axes[0, 2].set_title("accuracy (green), sparsity (purple)", fontsize=8)
        self.share_curve = MarkedCurves(axes[0, 3], xlabel="L1", ylabel="|relevance| share")
        axes[0, 3].set_title("on the informative square", fontsize=9)
        for curves in (self.quality, self.share_curve):
            curves.ax.set_xlim(-0.3, len(l1_values) - 0.7)
            # few, unrotated tick labels: text is most of a redraw
            labels = [f"{v:.0e}" if v else "0" for v in l1_values]
            keep = {0, len(l1_values) // 2, len(l1_values) - 1}
            curves.ax.set_xticks(range(len(l1_values)), [t if i in keep else "" for i, t in enumerate(labels)], fontsize=7)
            curves.ax.set_yticks([0, 0.5, 1])
        self.quality.ax.set_ylim(0, 1.05)
        self.share_curve.ax.set_ylim(0, 1.05)
        if self.mask is not None:
            area = self.mask.mean()
            self.share_curve.ax.axhline(area, color="0.5", lw=0.8, ls=":")
        self.l1_values = l1_values
        super().__init__(controls, figure, title="L1 regularisation and relevance")

    def compute(self, values):
        sweep = self.sweeps[values["architecture"]]
        entry = sweep[values["l1"]]
        l1s = sorted(sweep)
        return {
            "mean_map": entry["mean_map"],
            "sample_map": entry["maps"][values["sample"]],
            "accuracy": entry["accuracy"],
            "sparsity": entry["sparsity"],
            "share": entry["share"],
            "l1_values": np.array(l1s),
            "accuracy_curve": np.array([sweep[v]["accuracy"] for v in l1s]),
            "sparsity_curve": np.array([sweep[v]["sparsity"] for v in l1s]),
            "share_curve": np.array([sweep[v]["share"] for v in l1s]),
        }

    def draw(self, state):
        self.mean_heatmap.update(state["mean_map"])
        self.sample_heatmap.update(state["sample_map"])
        positions = np.arange(len(state["l1_values"]))
        self.quality.update("accuracy", positions, state["accuracy_curve"], marker="o", ms=3, color="tab:green")
        self.quality.update("sparsity", positions, state["sparsity_curve"], marker="s", ms=3, color="tab:purple")
        self.share_curve.update("share", positions, state["share_curve"], marker="o", ms=3, color="tab:red")
        current = list(state["l1_values"]).index(self.controls["l1"].value)
        self.quality.mark(current)
        self.share_curve.mark(current)
        self.set_readout(
            accuracy=f"{state['accuracy']:.1%}",
            sparsity=f"{state['sparsity']:.1%}",
            relevance_on_informative_square=f"{state['share']:.1%}",
        )
