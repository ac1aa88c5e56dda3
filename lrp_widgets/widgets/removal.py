"""RemovalExplorer: remove pixels in relevance order and watch the prediction fall.

REFERENCE.md §3. The explanation is tested by what happens when the pixels it calls relevant
are taken away: MoRF (most relevant first) should make the model's score fall fastest, LeRF
(least relevant first) slowest, a random order in between. AOPC (the area over the curve) puts
each curve in one number.

Costs, and where they are paid:

* construction: one LRP explanation of the explained set, and the three curves (MoRF, LeRF,
  random) of every baseline (``precompute=False``: of the selected baseline only; another
  baseline's curves are then computed on its first visit, with a progress bar, and kept);
* every change: one :func:`~lrp_widgets.removal.perturb` of the explained set (the same
  ranking and masking code the curves use, so the image shown is exactly the input the curve
  fed the model at that fraction) and one forward pass of one sample.
"""
from __future__ import annotations

import contextlib
import math

import ipywidgets as widgets
import numpy as np
import torch
from tqdm.auto import tqdm

from .. import explain
from ..plotting import Heatmap, ImagePanel, MarkedCurves, lean_figure, relevance_map, to_numpy
from ..engine.modes import evaluating
from ..removal import BASELINES, ORDERS, SCORES, make_baseline, perturb, removal_curve
from .base import Explorer, torch_threads
from .common import check_model_and_data, model_and_data, class_name, sample_slider

DEFAULT_MODEL = "digits_cnn"
ORDER_NAMES = {"morf": "MoRF", "lerf": "LeRF", "random": "random"}
ORDER_COLORS = {"morf": "tab:red", "lerf": "tab:blue", "random": "0.45"}


class RemovalExplorer(Explorer):
    """Remove the most / least relevant pixels (or random ones) and see the prediction change.

    Controls: ``fraction`` (share of pixels removed, on the curves' grid), ``order`` (MoRF, LeRF,
    random), ``baseline`` (what removed pixels become: zero, the data mean, the sample's own mean,
    a blur of the sample, uniform noise), ``sample``. Shows the input, its relevance, the input
    with the chosen share removed, and the mean score curves of the three orders over the
    explained set (the selected order drawn bold, the current sample's own curve dotted, a marker
    at the current fraction), with the AOPC of each order in the legend; the readout gives the
    prediction and its confidence for the perturbed sample.

    Parameters
    ----------
    model : nn.Module, optional
        A classifier returning (batch, classes) logits. Defaults to the zoo's digits CNN.
    data : Dataset-like or torch.Tensor, optional
        Anything with ``.x`` of shape (N, C, H, W) with 1 or 3 channels (and optionally ``.y``,
        ``.classes``), or the tensor itself. Defaults to the digits test set.
    n_samples : int
        How many samples are explained and averaged in the curves (the first ``n_samples``);
        the ``sample`` slider offers the same ones. Each baseline costs ``3 * steps * n_samples``
        forward passes, once.
    composite : str or Composite
        LRP composite of the relevance that ranks the pixels (target: the predicted class).
    steps : int
        Points of the curves are ``k / steps``; the ``fraction`` slider moves on that grid.
    score : {"probability", "logit"}
        The score of the originally predicted class the curves track.
    patch : int
        Remove ``patch x patch`` squares instead of single pixels (the region variant).
    seed : int
        Seed of the random order, of ties in the ranking and of the noise baseline.
    data_mean : torch.Tensor or float, optional
        The value of the ``"mean"`` baseline (e.g. the training set's mean image); default: the
        per-channel mean of the explained set.
    blur_sigma : float
        Width of the ``"blur"`` baseline, in pixels.
    fraction, order, baseline : initial control values.
    precompute : bool
        Compute the curves of every baseline at construction (about 0.3 s a baseline for the
        default model and 128 samples), so that no control change waits. Without it, a baseline's
        first visit computes its curves (with a progress bar in the explorer).
    threads : int or None
        Torch intra-op threads for the explorer's own computations (explanation, curves, the
        forward pass of each change), restored afterwards. One suits small models best (see
        ``_threads``); pass None to keep torch's setting, e.g. for a large model.
    progress : bool
        Show a progress bar while curves are computed.

    Examples
    --------
    >>> RemovalExplorer()                           # the digits CNN and its test set
    >>> RemovalExplorer(my_model, my_data, n_samples=64, baseline="blur")
    """

    def __init__(
        self,
        model=None,
        data=None,
        n_samples: int = 128,
        composite="epsilon_plus_flat",
        steps: int = 20,
        *,
        score: str = "probability",
        patch: int = 1,
        seed: int = 0,
        data_mean=None,
        blur_sigma: float = 1.0,
        fraction: float = 0.15,
        order: str = "morf",
        baseline: str = "mean",
        precompute: bool = True,
        threads: int | None = 1,
        progress: bool = True,
    ):
        model, data = model_and_data(model, data, DEFAULT_MODEL, "RemovalExplorer", "with .x of shape (N, C, H, W)")
        if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
            raise ValueError(f"RemovalExplorer: steps must be an integer >= 1, got {steps!r}")
        if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) or n_samples < 1:
            raise ValueError(f"RemovalExplorer: n_samples must be an integer >= 1, got {n_samples!r}")
        for value, choices, name in ((order, ORDERS, "order"), (baseline, BASELINES, "baseline"), (score, SCORES, "score")):
            if value not in choices:
                raise ValueError(f"RemovalExplorer: unknown {name} {value!r}; choose one of {', '.join(map(repr, choices))}")
        x_all = data if isinstance(data, torch.Tensor) else getattr(data, "x", None)
        y_all = None if isinstance(data, torch.Tensor) else getattr(data, "y", None)
        if x_all is None:
            raise TypeError(f"RemovalExplorer: data must have .x (or be a tensor), got {type(data).__name__}")
        check_model_and_data(model, x_all, y_all, "RemovalExplorer")
        if x_all.ndim != 4 or x_all.shape[1] not in (1, 3):
            raise ValueError(
                "RemovalExplorer shows images: data.x must have shape (N, C, H, W) with 1 or 3 channels, "
                f"got {tuple(x_all.shape)}; for (N, D) features use lrp_widgets.removal.removal_curve directly"
            )
        if not x_all.is_floating_point():
            raise TypeError(f"RemovalExplorer: data.x must be a floating-point tensor, got {x_all.dtype}")

        self.model, self.data = model, data
        self.x = x_all[:n_samples].detach()
        self.y = None if y_all is None else y_all[:n_samples]
        self.steps, self.score, self.patch, self.seed = int(steps), score, patch, seed
        self.threads = threads
        self.data_mean, self.blur_sigma, self.progress = data_mean, blur_sigma, progress
        with torch_threads(threads), evaluating(model):
            logits = model(self.x)
        if not isinstance(logits, torch.Tensor) or logits.ndim != 2 or logits.shape[0] != len(self.x):
            shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
            raise ValueError(f"RemovalExplorer: the model must return class scores of shape (batch, classes), got {shape}")
        probabilities = logits.softmax(1)
        self.original_prediction = probabilities.argmax(1)
        self.original_confidence = probabilities.max(1).values
        # The relevance of the predicted class ranks the pixels; computed once.
        with torch_threads(threads):
            self.relevance = explain(model, self.x, composite=composite).relevance.detach()
        self.composite = composite if isinstance(composite, str) else getattr(composite, "name", type(composite).__name__)
        self.value_range = (float(self.x.min()), float(self.x.max()))
        self._marker = self.x + 1  # a "baseline" that differs from every pixel: shows what was removed
        self._fills: dict = {}  # baseline -> the replacement values of the explained set
        self._curves: dict = {}  # baseline -> {order: RemovalCurve}; at most len(BASELINES)
        self.progress_area = widgets.Output()  # later baselines' progress bars, inside the explorer
        self._built = False

        grid = np.round(np.linspace(0.0, 1.0, self.steps + 1), 10)
        start = float(grid[np.abs(grid - fraction).argmin()])
        controls = {
            "fraction": widgets.FloatSlider(
                value=start, min=0.0, max=1.0, step=1.0 / self.steps, description="fraction",
                readout_format=".0%" if 100 % self.steps == 0 else ".3f", continuous_update=True,
            ),
            "order": widgets.ToggleButtons(options=[(ORDER_NAMES[o], o) for o in ORDERS], value=order, description="order"),
            "baseline": widgets.Dropdown(options=list(BASELINES), value=baseline, description="baseline"),
            # open on a sample the model gets right (when labels are known): a wrong prediction
            # is a confusing first picture of "removing evidence"
            "sample": sample_slider(len(self.x), self._first_correct()),
        }
        # with a progress bar in the cell output: the selected baseline first, so that it is
        # ready even if the others are interrupted
        for name in [baseline, *(b for b in BASELINES if b != baseline)] if precompute else [baseline]:
            self.curves_for(name)

        shape = tuple(self.x.shape[-2:])
        figure, axes = lean_figure((11, 2.9), 1, 4, width_ratios=[1, 1, 1, 1.6], left=0.01, right=0.985, wspace=0.3, bottom=0.17, top=0.88)
        self.input_panel = ImagePanel(axes[0, 0], shape, title="input")
        self.heatmap = Heatmap(axes[0, 1], shape, title=f"relevance ({self.composite})")
        self.perturbed_panel = ImagePanel(axes[0, 2], shape, title="removed")
        ax = axes[0, 3]
        self.curve_plot = MarkedCurves(ax, xlabel="fraction removed", ylabel=("p" if score == "probability" else "logit") + "(original class)")
        for name in ORDERS:
            self.curve_plot.line(name, color=ORDER_COLORS[name])
        self.sample_line = self.curve_plot.line("_this sample", color="k", lw=0.9, ls=":")
        (self.point,) = ax.plot([np.nan], [np.nan], "o", color="k", ms=4, zorder=5)
        self.legend = ax.legend(fontsize=7, loc="upper right", framealpha=0.85, handlelength=1.5, borderaxespad=0.3)
        self.curve_title = ax.set_title("", fontsize=9)
        ax.set_xlim(-0.02, 1.02)
        ax.set_xticks([0, 0.5, 1])
        if score == "probability":
            ax.set_ylim(-0.02, 1.02)
            ax.set_yticks([0, 0.5, 1])
        for panel_ax in figure.axes:
            # a title at a fixed height: matplotlib otherwise measures every axis's tick labels on
            # each draw to place it (about a tenth of this figure's redraw)
            title = panel_ax.title
            panel_ax.set_title(title.get_text(), fontsize=title.get_fontsize(), y=1.0)
        super().__init__(controls, figure, title="Removal curves: take the relevant pixels away")
        self.children = tuple(self.children) + (self.progress_area,)
        self._built = True

    def _first_correct(self) -> int:
        if self.y is None:
            return 0
        correct = (self.original_prediction == torch.as_tensor(self.y)).nonzero()
        return int(correct[0, 0]) if len(correct) else 0

    # -- the cached sweeps ---------------------------------------------------------------------
    def fill(self, baseline: str) -> torch.Tensor:
        """The replacement values of every explained sample for ``baseline`` (computed once)."""
        if baseline not in self._fills:
            self._fills[baseline] = make_baseline(
                self.x, baseline, self.seed, data_mean=self.data_mean, blur_sigma=self.blur_sigma
            ).contiguous()
        return self._fills[baseline]

    @property
    def computed_baselines(self) -> tuple:
        """The baselines whose curves are computed (and kept)."""
        return tuple(self._curves)

    def curves_for(self, baseline: str) -> dict:
        """``{order: RemovalCurve}`` over the explained set for ``baseline`` (computed once)."""
        if baseline not in self._curves:
            curves = {}
            # during construction the bar goes to the cell's output; later (a callback, whose
            # printed output a notebook does not show) into the explorer's own output area
            area = self.progress_area if self._built else contextlib.nullcontext()
            with area, torch_threads(self.threads):
                bar = tqdm(ORDERS, desc=f"removal curves, baseline {baseline!r}", disable=not self.progress, leave=False)
                for order in bar:
                    # the baseline by name (the curve's label says which), built from the same
                    # explained set as self.fill(baseline), so the values are the same
                    curves[order] = removal_curve(
                        self.model, self.x, self.relevance, order, baseline, steps=self.steps, score=self.score,
                        patch=self.patch, seed=self.seed, data_mean=self.data_mean, labels=self.y,
                        blur_sigma=self.blur_sigma,
                    )
                bar.close()
            self._curves[baseline] = curves
        return self._curves[baseline]

    # -- controller ----------------------------------------------------------------------------
    def compute(self, values):
        index, order, baseline = values["sample"], values["order"], values["baseline"]
        curves = self.curves_for(baseline)
        fractions = curves[order].fractions
        step = int(round(values["fraction"] * self.steps))
        fraction = float(fractions[step])
        with torch_threads(self.threads):
            # The whole explained set goes through perturb, as in the curves: a sample's rank
            # (ties are broken by a seeded permutation of the batch) depends on its batch. The
            # marker fill (x + 1, never equal to x) tells which pixels were removed, also where
            # the baseline happens to equal the pixel; the perturbed input is then exactly
            # perturb's torch.where(removed, fill, x).
            marked = perturb(self.x, self.relevance, fraction, order, self._marker, self.patch, self.seed)[index]
            removed = (marked != self.x[index]).any(0)
            perturbed = torch.where(removed, self.fill(baseline)[index], self.x[index])
            with evaluating(self.model):
                probabilities = self.model(perturbed[None]).softmax(1)[0]
        original = int(self.original_prediction[index])
        prediction = int(probabilities.argmax())
        label = None if self.y is None else int(self.y[index])
        return {
            "sample": index,
            "order": order,
            "baseline": baseline,
            "fraction": fraction,
            "step": step,
            "input": to_numpy(self.x[index]),
            "relevance_map": relevance_map(self.relevance[index]),
            "perturbed": to_numpy(perturbed),
            "removed": removed.numpy(),
            "n_removed": math.floor(fraction * curves[order].n_units + 0.5),  # removal.py's rounding
            "n_units": curves[order].n_units,
            "fractions": fractions.numpy(),
            "curves": {o: curves[o].mean_scores.numpy() for o in ORDERS},
            "accuracy_curves": {o: curves[o].accuracy.numpy() for o in ORDERS},
            "aopc": {o: curves[o].aopc for o in ORDERS},
            "sample_curve": curves[order].scores[index].numpy(),
            "prediction": prediction,
            "confidence": float(probabilities[prediction]),
            "original_prediction": original,
            "original_confidence": float(self.original_confidence[index]),
            "original_class_probability": float(probabilities[original]),
            "label": label,
        }

    def draw(self, state):
        order, baseline = state["order"], state["baseline"]
        self.input_panel.update(state["input"], limits=self.value_range)
        self.heatmap.update(state["relevance_map"])
        self.perturbed_panel.update(state["perturbed"], limits=self.value_range)
        self.perturbed_panel.title.set_text(f"{ORDER_NAMES[order]}: {state['fraction']:.0%} removed")
        fractions = state["fractions"]
        for name, text in zip(ORDERS, self.legend.get_texts()):
            line = self.curve_plot.update(name, fractions, state["curves"][name])
            selected = name == order
            line.set_linewidth(2.2 if selected else 1.0)
            line.set_alpha(1.0 if selected else 0.55)
            text.set_text(f"{ORDER_NAMES[name]}  AOPC {state['aopc'][name]:.3f}")
        self.curve_plot.update("_this sample", fractions, state["sample_curve"])
        self.sample_line.set_color(ORDER_COLORS[order])
        self.curve_plot.mark(state["fraction"])
        self.point.set_data([state["fraction"]], [state["sample_curve"][state["step"]]])
        self.curve_title.set_text(f"mean of {len(self.x)} images, baseline {baseline!r}")
        if self.score != "probability":
            self.curve_plot.rescale()
        names = (class_name(self.data, state["prediction"]), class_name(self.data, state["original_prediction"]))
        items = {
            "prediction": f"{names[0]} ({state['confidence']:.0%})",
            "before removal": f"{names[1]} ({state['original_confidence']:.0%})",
        }
        if state["label"] is not None:
            items["label"] = class_name(self.data, state["label"])
        unit = "patches" if self.patch > 1 else "pixels"
        items["removed"] = f"{state['n_removed']}/{state['n_units']} {unit} ({baseline})"
        items["still correct (" + ORDER_NAMES[order] + ")"] = f"{state['accuracy_curves'][order][state['step']]:.0%}"
        items["AOPC"] = ", ".join(f"{ORDER_NAMES[o]} {state['aopc'][o]:.3f}" for o in ORDERS)
        self.set_readout(**items)
