"""LeakRateExplorer: slide an echo state network's leak rate and watch its memory and relevance."""
from __future__ import annotations

import ipywidgets as widgets
import numpy as np
import torch
from tqdm.auto import tqdm

from ..esn import ESN, explain_esn, image_to_sequence, sequence_to_image, suggest_leak_rate
from ..plotting import Heatmap, ImagePanel, MarkedCurves, lean_figure, plain_log_axis
from .base import Explorer, torch_threads
from .common import check_model_and_data, sample_slider

#: Leak rates of the accuracy/decay sweep drawn beside the slider (log-spaced).
SWEEP = tuple(float(v) for v in np.round(np.logspace(-2.5, 0, 7), 4))


def default_data(name: str = "two_squares"):
    """The explorer's bundled data: 32x32 two squares (default) or ENSO sea-surface fields."""
    from .. import data

    if name == "two_squares":
        return data.two_squares(n_per_class=150, size=32, seed=0)
    if name == "enso":
        return data.enso_fields(600, seed=0)
    raise ValueError(f"unknown data {name!r}: use 'two_squares', 'enso' or pass a data set")


def leak_only_profile(n_steps: int, leak_rate: float, slices: int = 1) -> np.ndarray:
    """``alpha (1 - alpha)^lag`` per column (lag counted within each slice), normalised to max 1."""
    bounds = np.linspace(0, n_steps, slices + 1).round().astype(int)
    lags = np.concatenate([np.arange(b - a - 1, -1, -1) for a, b in zip(bounds[:-1], bounds[1:])])
    profile = leak_rate * (1 - leak_rate) ** lags.astype(float)
    return profile / profile.max()


class LeakRateExplorer(Explorer):
    """An echo state network's leak rate against its memory: relevance maps and time-decay curves.

    Images are fed column by column (time = columns). Controls: ``leak_rate`` (log scale),
    ``slices``, ``direction``, ``sample``. Shows the input, the relevance map (missing data
    masked), the time-decay curve (mean |relevance| per column, log scale) with the leak-only
    theory ``alpha (1 - alpha)^(T - t)`` overlaid, and test accuracy and measured decay rate
    against the leak rate, with the current value and the heuristic
    (:func:`lrp_widgets.suggest_leak_rate`) marked.

    A change refits the readout in closed form on the same reservoir and explains the shown test
    samples; results are cached per (leak rate, slices, direction).

    Parameters
    ----------
    data : Dataset-like or {"two_squares", "enso"}
        With ``.train`` and ``.test`` (each ``.x`` (N, C, H, W), ``.y``); optional ``.ocean``
        (H, W) bool marks valid points (land is masked), ``.informative_mask`` (H, W).
    n_reservoir : int
        Reservoir size (100 keeps a change near 100 ms at 32x32 on 2 cores; the paper used 300).
    n_explain : int
        Test samples explained per setting (the sample slider picks among them).
    """

    def __init__(self, data="two_squares", n_reservoir: int = 100, n_explain: int = 32, ridge: float = 1e-6, seed: int = 0, progress: bool = True):
        if isinstance(data, str):
            data = default_data(data)
        train, test = data.train, data.test
        check_model_and_data(torch.nn.Identity(), train.x, train.y, "LeakRateExplorer")
        check_model_and_data(torch.nn.Identity(), test.x, test.y, "LeakRateExplorer")
        self.data, self.progress = data, progress
        self.channels, self.height, self.width = train.x.shape[1:]
        ocean = getattr(data, "ocean", None)
        self.valid = None if ocean is None else np.asarray(ocean, dtype=bool)
        self.train_x, self.train_y = train.x, train.y
        self.test_x, self.test_y = test.x, test.y
        self.shown = test.x[:n_explain]
        # columns as time steps, per feeding direction: built once, reused by every refit
        self.sequences = {
            direction: tuple(image_to_sequence(x, direction) for x in (self.train_x, self.test_x, self.shown))
            for direction in ("left_to_right", "right_to_left")
        }
        self.reservoir = ESN(self.channels * self.height, n_outputs=int(train.y.max()) + 1, n_reservoir=n_reservoir, ridge=ridge, seed=seed)
        self.suggested = suggest_leak_rate(int(self.width))
        self._fits: dict = {}
        self._sweeps: dict = {}
        with torch_threads(self.threads):  # the default setting's sweep, once, with a progress bar
            self.sweep_curves(1, "left_to_right")
        controls = {
            "leak_rate": widgets.FloatLogSlider(value=0.05, base=10, min=-3, max=0, step=0.05, description="leak rate", readout_format=".3g", continuous_update=False),
            "slices": widgets.Dropdown(options=[1, 2, 4, 8], value=1, description="slices"),
            "direction": widgets.ToggleButtons(options=["left_to_right", "right_to_left"], value="left_to_right", description="feed"),
            "sample": sample_slider(len(self.shown)),
        }
        controls["leak_rate"].tooltip = f"heuristic for {self.width} columns: {self.suggested:.3g}"
        shape = (self.height, self.width)
        figure, axes = lean_figure((12, 2.9), 1, 4, width_ratios=[1, 1.15, 1.2, 1.2], left=0.02, right=0.97, wspace=0.6, bottom=0.2)
        self.input_panel = ImagePanel(axes[0, 0], shape, title="input (columns = time)", cmap="RdBu_r")
        self.heatmap = Heatmap(axes[0, 1], shape, title="relevance")
        self.decay = MarkedCurves(axes[0, 2], xlabel="column (time step)", ylabel="mean |relevance| (max 1)")
        plain_log_axis(self.decay.ax.yaxis)
        self.decay.ax.set_xlim(-0.5, self.width - 0.5)
        self.decay.ax.set_ylim(1e-4, 1.5)
        # the titles are the keys: a legend costs more than a third of a redraw
        self.decay.ax.set_title("time decay: measured (red), leak-only (dashed)", fontsize=8)
        self.sweep = MarkedCurves(axes[0, 3], xlabel="leak rate", ylabel="accuracy, decay per step", logx=True)
        self.sweep.ax.axvline(self.suggested, color="tab:orange", ls=":", lw=1.2)
        self.sweep.ax.set_xlim(SWEEP[0] / 1.3, 1.3)
        self.sweep.ax.set_ylim(-0.1, 1.1)
        self.sweep.ax.set_title("accuracy (green), decay/step (red),\nleak-only (dashed), heuristic (orange)", fontsize=7)
        for mask_name in ("informative_mask",):
            mask = getattr(data, mask_name, None)
            if mask is not None:
                for ax in axes[0, :2]:
                    ax.contour(np.asarray(mask, dtype=bool), levels=[0.5], colors="k", linewidths=0.6)
        super().__init__(controls, figure, title="Echo state network: leak rate and memory")

    # -- computations (cached) ------------------------------------------------------------------
    def fit_and_explain(self, leak_rate: float, slices: int, direction: str) -> dict:
        """Fit the readout at this setting and explain the shown samples (cached)."""
        key = (round(float(leak_rate), 6), int(slices), direction)
        if key not in self._fits:
            esn = self.reservoir.with_leak_rate(float(leak_rate)).with_slices(int(slices))
            train, test, shown = self.sequences[direction]
            esn.fit(train, self.train_y)
            accuracy = esn.score(test, self.test_y)
            explanation = explain_esn(esn, shown)
            maps = sequence_to_image(explanation.relevance, self.channels, direction, mask=self.valid).sum(1)
            columns = np.abs(maps.nan_to_num().numpy()).sum(1).mean(0)  # mean |relevance| per image column
            self._fits[key] = {
                "accuracy": accuracy,
                "maps": maps.numpy(),
                "column_profile": columns / max(columns.max(), 1e-30),
                "decay_rate": explanation.decay_rate,
                "theory_decay_rate": explanation.theory_decay_rate,
                "leaked": explanation.leaked.numpy(),
            }
        return self._fits[key]

    def sweep_curves(self, slices: int, direction: str) -> dict:
        """Accuracy and measured decay rate over :data:`SWEEP` (computed once, with a progress bar)."""
        key = (int(slices), direction)
        if key not in self._sweeps:
            results = [self.fit_and_explain(a, slices, direction) for a in tqdm(SWEEP, desc=f"leak-rate sweep ({slices} slice(s), {direction})", disable=not self.progress, leave=False)]
            self._sweeps[key] = {
                "leak_rates": np.array(SWEEP),
                "accuracy": np.array([r["accuracy"] for r in results]),
                "decay_rate": np.array([r["decay_rate"] for r in results]),
            }
        return self._sweeps[key]

    def compute(self, values):
        fit = self.fit_and_explain(values["leak_rate"], values["slices"], values["direction"])
        sweep = self.sweep_curves(values["slices"], values["direction"])
        index = values["sample"]
        column_order = np.arange(self.width) if values["direction"] == "left_to_right" else np.arange(self.width)[::-1]
        theory = leak_only_profile(self.width, values["leak_rate"], values["slices"])[np.argsort(column_order)]
        return {
            "leak_rate": values["leak_rate"],
            "accuracy": fit["accuracy"],
            "decay_rate": fit["decay_rate"],
            "theory_decay_rate": fit["theory_decay_rate"],
            "relevance_map": fit["maps"][index],
            "time_profile": fit["column_profile"],
            "theory_profile": theory,
            "sweep": sweep,
            "suggested_leak_rate": self.suggested,
        }

    def draw(self, state):
        index = self.controls["sample"].value
        image = self.shown[index].sum(0).numpy()
        invalid = None if self.valid is None else ~self.valid
        self.input_panel.update(image, mask=invalid, limits=(-np.abs(image).max(), np.abs(image).max()))
        self.heatmap.update(state["relevance_map"], mask=invalid)
        columns = np.arange(self.width)
        self.decay.update("measured", columns, np.clip(state["time_profile"], 1e-6, None), color="tab:red", marker=".", ms=3)
        self.decay.update("leak-only theory", columns, np.clip(state["theory_profile"], 1e-6, None), color="k", ls="--", lw=1)
        sweep = state["sweep"]
        self.sweep.update("accuracy", sweep["leak_rates"], sweep["accuracy"], color="tab:green", marker="o", ms=3)
        self.sweep.update("decay per step", sweep["leak_rates"], sweep["decay_rate"], color="tab:red", marker="s", ms=3)
        theory = -np.log1p(-np.minimum(sweep["leak_rates"], 0.999))
        self.sweep.update("leak-only -log(1-a)", sweep["leak_rates"], theory, color="k", ls="--", lw=1)
        self.sweep.mark(state["leak_rate"])
        self.set_readout(
            leak_rate=f"{state['leak_rate']:.3g}",
            heuristic=f"{self.suggested:.3g}",
            test_accuracy=f"{state['accuracy']:.1%}",
            decay_per_step=f"{state['decay_rate']:.3g} (leak-only theory {state['theory_decay_rate']:.3g})",
        )
