"""LeakRateExplorer: slide an echo state network's leak rate and watch its memory and relevance."""
from __future__ import annotations

from dataclasses import dataclass

import ipywidgets as widgets
import numpy as np
import torch
from tqdm.auto import tqdm

from ..esn import ESN, effective_radius, explain_esn, image_to_sequence, leak_only_profile, sequence_to_image, suggest_leak_rate
from ..plotting import plain_log_axis
from .base import Explorer, State, torch_threads
from .common import DATA_FORMS, as_data, check_model_and_data, log_slider, sample_slider
from .leak_compare import COMPARE, ZooComparison, comparison_note
from .panels import HeatmapPanel, ImagePanel, PlotPanel, TextPanel

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


@dataclass(frozen=True)
class LeakRateState(State):
    leak_rate: float
    slices: int
    direction: str
    sample: int
    input: np.ndarray  # (H, W), channels summed
    invalid: np.ndarray | None  # (H, W) True where data is missing (land), or None
    accuracy: float
    decay_rate: float
    theory_decay_rate: float
    relevance_map: np.ndarray  # (H, W), NaN where data is missing
    time_profile: np.ndarray  # mean |relevance| per column, max 1
    theory_profile: np.ndarray  # leak-only alpha (1 - alpha)^lag per column, max 1
    sweep: dict  # leak_rates, accuracy, decay_rate over SWEEP
    suggested_leak_rate: float
    compare: str  # "none", "lstm" or "gru"
    compare_profile: np.ndarray | None  # the zoo LSTM/GRU's mean |relevance| per column, max 1
    compare_note: str


class LeakRateExplorer(Explorer):
    """An echo state network's leak rate against its memory: relevance maps and time-decay curves.

    Images are fed column by column (time = columns). Controls: ``leak_rate`` (log scale),
    ``slices``, ``direction``, ``sample`` and ``compare`` (none / lstm / gru: overlay the time
    profile of the zoo's LSTM or GRU trained on the same 32x32 two squares, see
    :mod:`~lrp_widgets.widgets.leak_compare`; disabled, with the reason, for other data). Shows the input, the relevance map (missing data
    grey), the time-decay curve (mean |relevance| per column, log scale) with the leak-only
    theory (:func:`lrp_widgets.esn.leak_only_profile`) overlaid, and test accuracy and measured
    decay rate against the leak rate, with the current value and the heuristic
    (:func:`lrp_widgets.suggest_leak_rate` with the reservoir's
    :func:`~lrp_widgets.esn.effective_radius`) marked.

    A change refits the readout in closed form on the same reservoir and explains the shown test
    samples; results are cached per (leak rate, slices, direction).

    Parameters
    ----------
    data : data set or {"two_squares", "enso"}
        With ``.train`` and ``.test`` (attributes or keys), each {forms} of images
        (N, C, H, W) with labels; optional ``ocean`` (H, W) bool marks valid points (land is
        masked), ``informative_mask`` (H, W) is outlined.
    n_reservoir : int
        Reservoir size (100 keeps a first visit near 100 ms at 32x32 on 2 cores).
    n_explain : int
        Test samples explained per setting (the sample slider picks among them).
    """

    __doc__ = __doc__.replace("{forms}", DATA_FORMS)

    def __init__(self, data="two_squares", n_reservoir: int = 100, n_explain: int = 32, ridge: float = 1e-6, seed: int = 0, progress: bool = True):
        super().__init__("Echo state network: leak rate and memory")
        if isinstance(data, str):
            data = default_data(data)
        split = (lambda name: data[name]) if isinstance(data, dict) else (lambda name: getattr(data, name))
        train, test = as_data(split("train"), "LeakRateExplorer"), as_data(split("test"), "LeakRateExplorer")
        check_model_and_data(torch.nn.Identity(), train.x, train.y, "LeakRateExplorer")
        check_model_and_data(torch.nn.Identity(), test.x, test.y, "LeakRateExplorer")
        self.data, self.progress = data, progress
        self.channels, self.height, self.width = train.x.shape[1:]
        ocean = train.extra("ocean") if train.extra("ocean") is not None else (data.get("ocean") if isinstance(data, dict) else getattr(data, "ocean", None))
        self.valid = None if ocean is None else np.asarray(ocean, dtype=bool)
        self.invalid = None if self.valid is None else ~self.valid
        self.train_y, self.test_y = train.y, test.y
        self.shown = test.x[:n_explain]
        # columns as time steps, per feeding direction: built once, reused by every refit
        self.sequences = {
            direction: tuple(image_to_sequence(x, direction) for x in (train.x, test.x, self.shown))
            for direction in ("left_to_right", "right_to_left")
        }
        self.reservoir = ESN(self.channels * self.height, n_outputs=int(train.y.max()) + 1, n_reservoir=n_reservoir, ridge=ridge, seed=seed)
        # the linearised reservoir's memory, 1 / (a (1 - rho_eff)) steps (notebook 04 validates it)
        self.suggested = suggest_leak_rate(int(self.width), rho_eff=effective_radius(self.reservoir, self.sequences["left_to_right"][0][:256]))
        self.fits, self.sweeps = self.cache(256), self.cache(16)
        with torch_threads(self.threads):  # the default setting's sweep, once, with a progress bar
            self.sweep_curves(1, "left_to_right")
        controls = {
            "leak_rate": log_slider(0.05, -3, 0, 0.05, "leak rate", readout_format=".3g"),
            "slices": widgets.Dropdown(options=[1, 2, 4, 8], value=1, description="slices"),
            "direction": widgets.ToggleButtons(options=["left_to_right", "right_to_left"], value="left_to_right", description="feed"),
            "sample": sample_slider(len(self.shown)),
            "compare": widgets.Dropdown(options=list(COMPARE), value="none", description="compare"),
        }
        self.comparison = ZooComparison(self.shown, test.x, test.y)
        self.compare_unavailable = comparison_note(data, (self.channels, self.height, self.width))
        controls["compare"].disabled = self.compare_unavailable is not None
        controls["compare"].tooltip = self.compare_unavailable or "overlay the zoo's LSTM / GRU (trained on the same data)"
        controls["leak_rate"].tooltip = f"heuristic for {self.width} columns: {self.suggested:.3g}"
        mask = as_data(split("test")).extra("informative_mask")
        mask = mask if mask is not None else (getattr(data, "informative_mask", None) if not isinstance(data, dict) else data.get("informative_mask"))
        self.input_panel = ImagePanel(["input", "invalid"], title="input (columns = time)", cmap="RdBu_r", symmetric=True, mask="invalid")
        self.heatmap = HeatmapPanel(["relevance_map", "invalid"], title="relevance", outline=mask, mask="invalid")
        self.decay = PlotPanel(["time_profile", "theory_profile", "compare_profile"], self._draw_decay,
                               title="time decay (dashed: leak-only; blue: LSTM/GRU)")
        plain_log_axis(self.decay.ax.yaxis)
        self.decay.ax.set_xlim(-0.5, self.width - 0.5)
        self.decay.ax.set_ylim(1e-4, 1.5)
        self.decay.ax.set_xlabel("column (time step)", fontsize=8)
        self.decay.ax.tick_params(labelsize=7)
        self.decay_lines = [self.decay.ax.plot([], [], **style)[0] for style in ({"color": "tab:red", "marker": ".", "ms": 3}, {"color": "k", "ls": "--", "lw": 1}, {"color": "tab:blue", "marker": "x", "ms": 3, "lw": 1})]
        self.sweep = PlotPanel(["sweep", "leak_rate"], self._draw_sweep, title="accuracy (green), decay/step (red)", marker="leak_rate")
        ax = self.sweep.ax
        plain_log_axis(ax.xaxis)
        ax.axvline(self.suggested, color="tab:orange", ls=":", lw=1.2)
        ax.set_xlim(SWEEP[0] / 1.3, 1.3)
        ax.set_ylim(-0.1, 1.1)
        ax.set_xlabel("leak rate", fontsize=8)
        ax.tick_params(labelsize=7)
        self.sweep_lines = [ax.plot([], [], **style)[0] for style in (
            {"color": "tab:green", "marker": "o", "ms": 3}, {"color": "tab:red", "marker": "s", "ms": 3}, {"color": "k", "ls": "--", "lw": 1})]
        readout = TextPanel(["leak_rate", "accuracy", "decay_rate", "theory_decay_rate", "compare_note"], lambda leak_rate, accuracy, decay_rate, theory_decay_rate, compare_note: {
            "leak_rate": f"{leak_rate:.3g}", "heuristic": f"{self.suggested:.3g}", "test_accuracy": f"{accuracy:.1%}",
            "decay_per_step": f"{decay_rate:.3g} (leak-only theory {theory_decay_rate:.3g})",
            **({"compare": compare_note} if compare_note else {})})
        self.connect(controls, [[self.input_panel, self.heatmap, self.decay, self.sweep]], readout)

    # -- computations (cached) ------------------------------------------------------------------
    def fit_and_explain(self, leak_rate: float, slices: int, direction: str) -> dict:
        """Fit the readout at this setting and explain the shown samples (cached)."""

        def run():
            esn = self.reservoir.with_leak_rate(float(leak_rate)).with_slices(int(slices))
            train, test, shown = self.sequences[direction]
            esn.fit(train, self.train_y)
            explanation = explain_esn(esn, shown)
            maps = sequence_to_image(explanation.relevance, self.channels, direction, mask=self.valid).sum(1)
            columns = np.abs(maps.nan_to_num().numpy()).sum(1).mean(0)  # mean |relevance| per image column
            return {
                "accuracy": esn.score(test, self.test_y),
                "maps": maps.numpy(),
                "column_profile": columns / max(columns.max(), 1e-30),
                "decay_rate": explanation.decay_rate,
                "theory_decay_rate": explanation.theory_decay_rate,
                "leaked": explanation.leaked.numpy(),
            }

        return self.fits.get((round(float(leak_rate), 6), int(slices), direction), run)

    def sweep_curves(self, slices: int, direction: str) -> dict:
        """Accuracy and measured decay rate over :data:`SWEEP` (computed once, with a progress bar)."""

        def run():
            bar = tqdm(SWEEP, desc=f"leak-rate sweep ({slices} slice(s), {direction})", disable=not self.progress, leave=False)
            results = [self.fit_and_explain(a, slices, direction) for a in bar]
            return {
                "leak_rates": np.array(SWEEP),
                "accuracy": np.array([r["accuracy"] for r in results]),
                "decay_rate": np.array([r["decay_rate"] for r in results]),
            }

        return self.sweeps.get((int(slices), direction), run)

    def compute(self, values) -> LeakRateState:
        leak_rate, slices, direction, index = values["leak_rate"], values["slices"], values["direction"], values["sample"]
        fit = self.fit_and_explain(leak_rate, slices, direction)
        # the profile runs in feeding order; shown per image column
        theory = leak_only_profile(self.width, leak_rate, slices)
        compare = values["compare"] if self.compare_unavailable is None else "none"
        compare_profile, compare_note = self.comparison.profile(compare, direction)
        return LeakRateState(
            leak_rate=leak_rate, slices=slices, direction=direction, sample=index,
            input=self.shown[index].sum(0).numpy(),
            invalid=self.invalid,
            accuracy=fit["accuracy"],
            decay_rate=fit["decay_rate"],
            theory_decay_rate=fit["theory_decay_rate"],
            relevance_map=fit["maps"][index],
            time_profile=fit["column_profile"],
            theory_profile=theory if direction == "left_to_right" else theory[::-1].copy(),
            sweep=self.sweep_curves(slices, direction),
            suggested_leak_rate=self.suggested,
            compare=compare, compare_profile=compare_profile,
            compare_note=compare_note if values["compare"] == "none" or self.compare_unavailable is None else self.compare_unavailable,
        )

    def _draw_decay(self, ax, time_profile, theory_profile, compare_profile):
        columns = np.arange(self.width)
        for line, profile in zip(self.decay_lines, (time_profile, theory_profile, compare_profile)):
            line.set_data(*((columns, np.clip(profile, 1e-6, None)) if profile is not None else ([], [])))

    def _draw_sweep(self, ax, sweep):
        rates = sweep["leak_rates"]
        theory = -np.log1p(-np.minimum(rates, 0.999))
        for line, values in zip(self.sweep_lines, (sweep["accuracy"], sweep["decay_rate"], theory)):
            line.set_data(rates, values)
