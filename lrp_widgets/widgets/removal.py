"""RemovalExplorer: remove pixels in relevance order and watch the prediction fall (REFERENCE.md §3).

MoRF (most relevant first) should make the model's score fall fastest, LeRF slowest, a random
order in between; AOPC (the area over the curve) puts each curve in one number. Construction
explains the set once and computes the three curves of every baseline (``precompute=False``: of
the selected one; the others on first visit, with a progress bar inside the explorer). A change
runs one :func:`~lrp_widgets.removal.perturb` of the set (the curves' own ranking and masking, so
the image shown is exactly the input the curve scored) and one forward pass.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import ipywidgets as widgets
import numpy as np
import torch
from tqdm.auto import tqdm

from .. import composites, explain
from ..engine.modes import evaluating
from ..plotting import relevance_map, to_numpy
from ..removal import BASELINES, ORDERS, SCORES, make_baseline, perturb, removal_curve
from .base import Explorer, State, torch_threads
from .common import DATA_FORMS, check_model_and_data, class_name, model_and_data, sample_slider
from .panels import HeatmapPanel, ImagePanel, PlotPanel, TextPanel

DEFAULT_MODEL = "digits_cnn"
ORDER_NAMES = {"morf": "MoRF", "lerf": "LeRF", "random": "random"}
ORDER_COLORS = {"morf": "tab:red", "lerf": "tab:blue", "random": "0.45"}


@dataclass(frozen=True)
class RemovalState(State):
    sample: int
    order: str
    baseline: str
    fraction: float
    step: int
    input: np.ndarray
    relevance_map: np.ndarray
    perturbed: np.ndarray
    removed: np.ndarray
    n_removed: int
    n_units: int
    fractions: np.ndarray
    curves: dict  # order -> mean score per fraction
    accuracy_curves: dict
    aopc: dict
    sample_curve: np.ndarray
    prediction: int
    confidence: float
    original_prediction: int
    original_confidence: float
    original_class_probability: float
    label: int | None


class RemovalExplorer(Explorer):
    """Remove the most / least relevant pixels (or random ones) and see the prediction change.

    Controls: ``fraction`` (share removed, on the curves' grid), ``order`` (MoRF, LeRF, random),
    ``baseline`` (what removed pixels become: zero, data mean, the sample's mean, a blur, noise),
    ``sample``. Shows the input, its relevance, the input with the share removed, and the mean
    score curves of the three orders over the explained set (the selected one bold, the sample's
    own curve dotted, the current fraction marked, AOPC in the legend).

    Parameters
    ----------
    model : nn.Module, optional
        A classifier returning (batch, classes) logits. Defaults to the zoo's digits CNN.
    data : optional
        Images (N, C, H, W) with 1 or 3 channels: {forms} (optionally ``.classes``). Defaults
        to the digits test set.
    n_samples : int
        Samples explained and averaged in the curves (the first ones; the ``sample`` slider
        offers the same). Each baseline costs ``3 * steps * n_samples`` forward passes, once.
    composite : str or Composite
        LRP composite of the relevance that ranks the pixels (target: the predicted class).
    steps : int
        Points of the curves are ``k / steps``; the ``fraction`` slider moves on that grid.
    score : {"probability", "logit"}
        The score of the originally predicted class the curves track.
    patch, seed, data_mean, blur_sigma :
        As in :func:`~lrp_widgets.removal.removal_curve`.
    fraction, order, baseline : initial control values.
    precompute : bool
        Compute the curves of every baseline at construction, so that no change waits.
    threads : int or None
        Torch threads for the explorer's own work (restored after); None keeps torch's setting.
    progress : bool
        Show a progress bar while curves are computed.
    """

    __doc__ = __doc__.replace("{forms}", DATA_FORMS)

    def __init__(self, model=None, data=None, n_samples: int = 128, composite=None, steps: int = 20, *,
                 score: str = "probability", patch: int = 1, seed: int = 0, data_mean=None, blur_sigma: float = 1.0,
                 fraction: float = 0.15, order: str = "morf", baseline: str = "mean", precompute: bool = True,
                 threads: int | None = 1, progress: bool = True):
        super().__init__("Removal curves: take the relevant pixels away")
        model, data = model_and_data(model, data, DEFAULT_MODEL, "RemovalExplorer")
        for value, name in ((steps, "steps"), (n_samples, "n_samples")):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"RemovalExplorer: {name} must be an integer >= 1, got {value!r}")
        for value, choices, name in ((order, ORDERS, "order"), (baseline, BASELINES, "baseline"), (score, SCORES, "score")):
            if value not in choices:
                raise ValueError(f"RemovalExplorer: unknown {name} {value!r}; choose one of {', '.join(map(repr, choices))}")
        check_model_and_data(model, data.x, data.y, "RemovalExplorer")
        if data.x.ndim != 4 or data.x.shape[1] not in (1, 3):
            raise ValueError("RemovalExplorer shows images: data.x must have shape (N, C, H, W) with 1 or 3 channels, "
                             f"got {tuple(data.x.shape)}; for (N, D) features use lrp_widgets.removal.removal_curve directly")
        if not data.x.is_floating_point():
            raise TypeError(f"RemovalExplorer: data.x must be a floating-point tensor, got {data.x.dtype}")
        self.model, self.data = model, data
        self.x = data.x[:n_samples].detach()
        self.y = None if data.y is None else data.y[:n_samples]
        self.steps, self.score, self.patch, self.seed, self.threads = int(steps), score, patch, seed, threads
        self.data_mean, self.blur_sigma, self.progress = data_mean, blur_sigma, progress
        with torch_threads(threads), evaluating(model):
            logits = model(self.x)
        if not isinstance(logits, torch.Tensor) or logits.ndim != 2 or logits.shape[0] != len(self.x):
            shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
            raise ValueError(f"RemovalExplorer: the model must return class scores of shape (batch, classes), got {shape}")
        self.original_confidence, self.original_prediction = logits.softmax(1).max(1)
        composite = composites.default_for(model).name if composite is None else composite  # as explain chooses
        with torch_threads(threads):  # the predicted class's relevance ranks the pixels; once
            self.relevance = explain(model, self.x, composite=composite).relevance.detach()
        self.composite = composite if isinstance(composite, str) else getattr(composite, "name", type(composite).__name__)
        self.value_range = (float(self.x.min()), float(self.x.max()))
        self._marker = self.x + 1  # a fill that differs from every pixel: shows what was removed
        self._fills, self._curves = self.cache(len(BASELINES)), {}
        self.progress_area = widgets.Output()  # later baselines' progress bars, inside the explorer
        grid = np.round(np.linspace(0.0, 1.0, self.steps + 1), 10)
        controls = {
            "fraction": widgets.FloatSlider(value=float(grid[np.abs(grid - fraction).argmin()]), min=0.0, max=1.0, step=1.0 / self.steps, description="fraction",
                                            readout_format=".0%" if 100 % self.steps == 0 else ".3f", continuous_update=True),
            "order": widgets.ToggleButtons(options=[(ORDER_NAMES[o], o) for o in ORDERS], value=order, description="order"),
            "baseline": widgets.Dropdown(options=list(BASELINES), value=baseline, description="baseline"),
            # open on a sample the model gets right: a wrong prediction is a confusing first picture
            "sample": sample_slider(len(self.x), self._first_correct()),
        }
        for name in [baseline, *(b for b in BASELINES if b != baseline)] if precompute else [baseline]:
            self.curves_for(name, area=contextlib.nullcontext())  # bars in the cell's output
        self.input_panel = ImagePanel(["input"], title="input", limits=self.value_range)
        self.heatmap = HeatmapPanel(["relevance_map"], title=f"relevance ({self.composite})")
        self.perturbed_panel = ImagePanel(["perturbed", "order", "fraction"], title="removed", limits=self.value_range,
                                          caption=lambda perturbed, order, fraction: f"{ORDER_NAMES[order]}: {fraction:.0%} removed")
        self.curve_plot = PlotPanel(["fractions", "curves", "aopc", "order", "sample_curve", "fraction", "step"], self._draw_curves,
                                    title="mean score of the explained set", figsize=(3.8, 2.6))
        ax = self.curve_plot.ax
        self.lines = {name: ax.plot([], [], color=ORDER_COLORS[name], label=name)[0] for name in ORDERS}
        (self.sample_line,) = ax.plot([], [], color="k", lw=0.9, ls=":")
        (self.point,) = ax.plot([np.nan], [np.nan], "o", color="k", ms=4, zorder=5)
        self.marker = ax.axvline(np.nan, color="k", lw=1, ls="--")
        self.legend = ax.legend(fontsize=7, loc="upper right", framealpha=0.85, handlelength=1.5)
        ax.set_xlim(-0.02, 1.02)
        ax.set_xticks([0, 0.5, 1])
        ax.set_xlabel("fraction removed", fontsize=8)
        ax.set_ylabel(("p" if score == "probability" else "logit") + "(original class)", fontsize=8)
        ax.tick_params(labelsize=7)
        if score == "probability":
            ax.set_ylim(-0.02, 1.02)
            ax.set_yticks([0, 0.5, 1])
        readout = TextPanel(["prediction", "confidence", "original_prediction", "original_confidence", "label", "n_removed", "n_units",
                             "baseline", "order", "accuracy_curves", "step", "aopc"], self._readout)
        self.connect(controls, [[self.input_panel, self.heatmap, self.perturbed_panel, self.curve_plot]], readout)
        self.children = tuple(self.children) + (self.progress_area,)

    def _first_correct(self) -> int:
        if self.y is None:
            return 0
        correct = (self.original_prediction == torch.as_tensor(self.y)).nonzero()
        return int(correct[0, 0]) if len(correct) else 0

    def fill(self, baseline: str) -> torch.Tensor:
        """The replacement values of every explained sample for ``baseline`` (computed once)."""
        return self._fills.get(baseline, lambda: make_baseline(self.x, baseline, self.seed, data_mean=self.data_mean,
                                                               blur_sigma=self.blur_sigma).contiguous())

    @property
    def computed_baselines(self) -> tuple:
        """The baselines whose curves are computed (and kept)."""
        return tuple(self._curves)

    def curves_for(self, baseline: str, area=None) -> dict:
        """``{order: RemovalCurve}`` over the explained set for ``baseline`` (computed once)."""
        if baseline not in self._curves:
            with area or self.progress_area, torch_threads(self.threads):
                bar = tqdm(ORDERS, desc=f"removal curves, baseline {baseline!r}", disable=not self.progress, leave=False)
                self._curves[baseline] = {order: removal_curve(
                    self.model, self.x, relevance=self.relevance, order=order, baseline=baseline, steps=self.steps, score=self.score, patch=self.patch,
                    seed=self.seed, data_mean=self.data_mean, labels=self.y, blur_sigma=self.blur_sigma) for order in bar}
        return self._curves[baseline]

    def compute(self, values) -> RemovalState:
        index, order, baseline = values["sample"], values["order"], values["baseline"]
        curves = self.curves_for(baseline)
        step = int(round(values["fraction"] * self.steps))
        fraction = float(curves[order].fractions[step])
        # the whole set goes through perturb, as in the curves (ties are broken per batch); the
        # marker fill tells which pixels were removed, also where the baseline equals the pixel
        marked = perturb(self.x, self.relevance, fraction, order, self._marker, self.patch, self.seed)[index]
        removed = (marked != self.x[index]).any(0)
        perturbed = torch.where(removed, self.fill(baseline)[index], self.x[index])
        with evaluating(self.model):
            probabilities = self.model(perturbed[None]).softmax(1)[0]
        original, prediction = int(self.original_prediction[index]), int(probabilities.argmax())
        return RemovalState(
            sample=index, order=order, baseline=baseline, fraction=fraction, step=step,
            input=to_numpy(self.x[index]), relevance_map=relevance_map(self.relevance[index]), perturbed=to_numpy(perturbed),
            removed=removed.numpy(), n_removed=math.floor(fraction * curves[order].n_units + 0.5), n_units=curves[order].n_units,
            fractions=curves[order].fractions.numpy(),
            curves={o: curves[o].mean_scores.numpy() for o in ORDERS},
            accuracy_curves={o: curves[o].accuracy.numpy() for o in ORDERS},
            aopc={o: curves[o].aopc for o in ORDERS},
            sample_curve=curves[order].scores[index].numpy(),
            prediction=prediction, confidence=float(probabilities[prediction]),
            original_prediction=original, original_confidence=float(self.original_confidence[index]),
            original_class_probability=float(probabilities[original]),
            label=None if self.y is None else int(self.y[index]),
        )

    def _draw_curves(self, ax, fractions, curves, aopc, order, sample_curve, fraction, step):
        for name, text in zip(ORDERS, self.legend.get_texts()):
            line = self.lines[name]
            line.set_data(fractions, curves[name])
            line.set_linewidth(2.2 if name == order else 1.0)
            line.set_alpha(1.0 if name == order else 0.55)
            text.set_text(f"{ORDER_NAMES[name]}  AOPC {aopc[name]:.3f}")
        self.sample_line.set_data(fractions, sample_curve)
        self.sample_line.set_color(ORDER_COLORS[order])
        self.marker.set_xdata([fraction, fraction])
        self.point.set_data([fraction], [sample_curve[step]])
        if self.score != "probability":
            values = np.concatenate([*curves.values(), sample_curve])
            span = max(float(values.max() - values.min()), 1e-12)
            ax.set_ylim(values.min() - 0.05 * span, values.max() + 0.05 * span)

    def _readout(self, prediction, confidence, original_prediction, original_confidence, label, n_removed, n_units, baseline, order,
                 accuracy_curves, step, aopc):
        items = {"prediction": f"{class_name(self.data, prediction)} ({confidence:.0%})",
                 "before removal": f"{class_name(self.data, original_prediction)} ({original_confidence:.0%})"}
        items.update({} if label is None else {"label": class_name(self.data, label)})
        items["removed"] = f"{n_removed}/{n_units} {'patches' if self.patch > 1 else 'pixels'} ({baseline})"
        items[f"still correct ({ORDER_NAMES[order]})"] = f"{accuracy_curves[order][step]:.0%}"
        items["AOPC"] = ", ".join(f"{ORDER_NAMES[o]} {aopc[o]:.3f}" for o in ORDERS)
        return items
