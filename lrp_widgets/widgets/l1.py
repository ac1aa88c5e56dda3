"""L1Explorer: slide the L1 strength a model was trained with and see where its relevance goes."""
from __future__ import annotations

from dataclasses import dataclass

import ipywidgets as widgets
import numpy as np
from tqdm.auto import tqdm

from .. import explain
from ..engine.modes import eval_mode
from ..train import accuracy, sparsity
from .base import Explorer, State
from .common import DATA_FORMS, as_data, check_model_and_data, sample_slider
from .panels import HeatmapPanel, PlotPanel, TextPanel


def informative_share(relevance: np.ndarray, mask: np.ndarray) -> float:
    """Share of the total |relevance| (over samples and pixels) that falls inside ``mask``."""
    magnitude = np.abs(relevance)
    total = magnitude.sum()
    return float(magnitude[..., mask].sum() / total) if total > 0 else float("nan")


@dataclass(frozen=True)
class L1State(State):
    architecture: str
    l1: float
    sample: int
    position: int  # index of l1 in l1_values (the curves' marker)
    mean_map: np.ndarray
    sample_map: np.ndarray
    accuracy: float
    sparsity: float
    share: float
    l1_values: np.ndarray
    accuracy_curve: np.ndarray
    sparsity_curve: np.ndarray
    share_curve: np.ndarray


class L1Explorer(Explorer):
    """How L1 regularisation moves relevance onto the informative input (the fact-or-artifact paper).

    Controls: ``l1`` (the models' L1 strengths), ``architecture``, ``sample``. Shows the mean
    relevance over the test set, one sample's relevance, accuracy and weight sparsity against L1,
    and the share of |relevance| on the informative square, with the current L1 marked.

    Everything is computed once at construction (one explanation of the test set per model,
    with a progress bar); moving a control only looks up and shows.

    Parameters
    ----------
    models : dict, optional
        ``{architecture: {l1: model}}``. Defaults to the zoo's two_squares sweeps (MLP and CNN).
    data : optional
        Test images (N, C, H, W) with labels: {forms}; an ``informative_mask`` (H, W) attribute
        or key is outlined and measured. Defaults to the zoo models' two_squares test set.
    n_samples : int
        How many test samples to explain per model.
    composite : str or Composite
        LRP composite; the epsilon rule by default (a flat first layer would spread relevance
        evenly over all pixels of a dense first layer and hide what this explorer is about).
    """

    __doc__ = __doc__.replace("{forms}", DATA_FORMS)

    def __init__(self, models: dict | None = None, data=None, n_samples: int = 200, composite="epsilon", progress: bool = True):
        super().__init__("L1 regularisation and relevance")
        if models is None:
            from .. import zoo

            models, name = {}, None
            for architecture in ("mlp", "cnn"):
                sweep = zoo.l1_sweep(architecture)
                models[architecture.upper()] = {l1: zoo.load(name) for l1, name in sweep}
                name = name or sweep[0][1]
            data = zoo.dataset(name).test if data is None else data
        if data is None:
            raise ValueError(f"L1Explorer: pass test data ({DATA_FORMS}, with labels) along with your own models")
        if not models or not all(models.values()):
            raise ValueError("L1Explorer: models must be {architecture: {l1: model}} with at least one model each")
        data = as_data(data, "L1Explorer")[:n_samples]
        if data.y is None:
            raise ValueError("L1Explorer: data needs labels y (accuracy is plotted against L1)")
        mask = data.extra("informative_mask")
        self.mask = None if mask is None else np.asarray(mask, dtype=bool)
        self.x, self.y = data.x, data.y
        self.sweeps: dict = {}
        jobs = [(arch, l1, model) for arch, by_l1 in models.items() for l1, model in sorted(by_l1.items())]
        for arch, l1, model in tqdm(jobs, desc="explaining the L1 sweep", disable=not progress):
            check_model_and_data(model, self.x, self.y, "L1Explorer")
            relevance = explain(model, self.x, composite=composite).relevance.sum(1).numpy()  # (N, H, W)
            with eval_mode(model):
                quality = accuracy(model, self.x, self.y)
            self.sweeps.setdefault(arch, {})[float(l1)] = {
                "mean_map": relevance.mean(0),
                "maps": relevance,
                "accuracy": quality,
                "sparsity": sparsity(model),
                "share": informative_share(relevance, self.mask) if self.mask is not None else float("nan"),
            }
        architectures = list(self.sweeps)
        self.l1_values = sorted(self.sweeps[architectures[0]])
        controls = {
            "l1": widgets.SelectionSlider(options=[(f"{v:g}", v) for v in self.l1_values], value=self.l1_values[0], description="L1", continuous_update=True),
            "architecture": widgets.ToggleButtons(options=architectures, value=architectures[0], description="model"),
            "sample": sample_slider(len(self.x)),
        }
        self.mean_heatmap = HeatmapPanel(["mean_map"], title="mean relevance (test set)", outline=self.mask)
        self.sample_heatmap = HeatmapPanel(["sample_map"], title="one sample", outline=self.mask)
        self.quality = PlotPanel(["accuracy_curve", "sparsity_curve", "position"], self._draw_quality, title="accuracy (green), sparsity (purple)", marker="position")
        self.share_curve = PlotPanel(["share_curve", "position"], self._draw_share, title="|relevance| share on the square", marker="position")
        for panel in (self.quality, self.share_curve):
            self._axes(panel.ax)
        self.quality_lines = [self.quality.ax.plot([], [], marker=m, ms=3, color=c)[0] for m, c in (("o", "tab:green"), ("s", "tab:purple"))]
        (self.share_line,) = self.share_curve.ax.plot([], [], marker="o", ms=3, color="tab:red")
        if self.mask is not None:  # the square's share of the area: what an even spread would give
            self.share_curve.ax.axhline(self.mask.mean(), color="0.5", lw=0.8, ls=":")
        readout = TextPanel(["accuracy", "sparsity", "share"], lambda accuracy, sparsity, share: {
            "accuracy": f"{accuracy:.1%}", "sparsity": f"{sparsity:.1%}", "relevance_on_informative_square": f"{share:.1%}"})
        self.connect(controls, [[self.mean_heatmap, self.sample_heatmap, self.quality, self.share_curve]], readout)

    def _axes(self, ax):
        count = len(self.l1_values)
        ax.set_xlim(-0.3, count - 0.7)
        ax.set_ylim(0, 1.05)
        labels = [f"{v:.0e}" if v else "0" for v in self.l1_values]
        keep = {0, count // 2, count - 1}
        ax.set_xticks(range(count), [t if i in keep else "" for i, t in enumerate(labels)], fontsize=7)
        ax.set_yticks([0, 0.5, 1])
        ax.tick_params(labelsize=7)
        ax.set_xlabel("L1", fontsize=8)

    def compute(self, values) -> L1State:
        sweep = self.sweeps[values["architecture"]]
        entry = sweep[values["l1"]]
        l1s = sorted(sweep)
        return L1State(
            architecture=values["architecture"],
            l1=values["l1"],
            sample=values["sample"],
            position=l1s.index(values["l1"]),
            mean_map=entry["mean_map"],
            sample_map=entry["maps"][values["sample"]],
            accuracy=entry["accuracy"],
            sparsity=entry["sparsity"],
            share=entry["share"],
            l1_values=np.array(l1s),
            accuracy_curve=np.array([sweep[v]["accuracy"] for v in l1s]),
            sparsity_curve=np.array([sweep[v]["sparsity"] for v in l1s]),
            share_curve=np.array([sweep[v]["share"] for v in l1s]),
        )

    def _draw_quality(self, ax, accuracy_curve, sparsity_curve):
        for line, curve in zip(self.quality_lines, (accuracy_curve, sparsity_curve)):
            line.set_data(np.arange(len(curve)), curve)

    def _draw_share(self, ax, share_curve):
        self.share_line.set_data(np.arange(len(share_curve)), share_curve)
