"""RemovalExplorer driven headless: every control changes .state and the figure's artists as it
should; the image shown is exactly the input the curve fed the model; errors are shown inside the
explorer and it keeps working; user models and data are accepted or clearly refused."""
import numpy as np
import pytest
import torch
from torch import nn

from lrp_widgets.data import shapes
from lrp_widgets.plotting import image_for_display
from lrp_widgets.removal import ORDERS, perturb
from lrp_widgets.widgets import RemovalExplorer


def _image_data(panel):
    """What a panel shows: its first field as drawn ((C, H, W) -> (H, W) or (H, W, 3))."""
    assert bytes(panel.image.value).startswith(b"\x89PNG")
    return image_for_display(panel.inputs[panel.fields[0]])


@pytest.fixture(scope="module")
def explorer():
    # the zoo's digits CNN on its test set: a trained model, so the science can be checked.
    # Two threads before: the explorer works on one and must give the caller's setting back.
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        built = RemovalExplorer(n_samples=32, steps=10, progress=False)
        built.threads_after_construction = torch.get_num_threads()
    finally:
        torch.set_num_threads(previous)
    return built


def _reset(e, **values):
    defaults = {"fraction": 0.2, "order": "morf", "baseline": "mean", "sample": 1}
    with e.hold():
        for name, value in {**defaults, **values}.items():
            e.controls[name].value = value
    assert e.last_error is None, e.last_error


def test_builds_on_the_zoo_with_its_controls_and_state(explorer):
    e = explorer
    assert e.last_error is None
    assert set(e.controls) == {"fraction", "order", "baseline", "sample"}
    assert set(e.computed_baselines) == {"zero", "mean", "sample_mean", "blur", "noise"}  # precomputed
    assert e.threads_after_construction == 2  # the explorer's one-thread work restored the setting
    assert e.controls["fraction"].step == pytest.approx(0.1)
    assert e.controls["sample"].max == 31
    for key in ("fraction", "perturbed", "removed", "curves", "aopc", "prediction", "confidence", "sample_curve"):
        assert key in e.state
    assert set(e.state["curves"]) == set(ORDERS) == set(e.state["aopc"])
    assert len(e.state["fractions"]) == 11 and e.state["fractions"][0] == 0 and e.state["fractions"][-1] == 1
    # the paper's claim on a trained model: MoRF destroys the prediction fastest, LeRF slowest
    aopc = e.state["aopc"]
    assert aopc["morf"] > aopc["random"] > aopc["lerf"]
    e.figure.canvas.draw()


def test_fraction_moves_the_marker_and_removes_more(explorer):
    e = explorer
    _reset(e, fraction=0.0)
    np.testing.assert_allclose(e.state["perturbed"], e.state["input"])
    assert e.state["n_removed"] == 0 and not e.state["removed"].any()

    e.controls["fraction"].value = 0.3
    assert e.state["fraction"] == pytest.approx(0.3)
    assert e.marker.get_xdata()[0] == pytest.approx(0.3)
    assert e.point.get_xdata()[0] == pytest.approx(0.3)
    assert e.state["n_removed"] == int(e.state["removed"].sum()) == round(0.3 * 64)
    np.testing.assert_allclose(_image_data(e.perturbed_panel), e.state["perturbed"][0])
    assert "30% removed" in e.perturbed_panel.caption.value

    # a larger MoRF fraction lowers the probability of the originally predicted class, on average
    def mean_probability(fraction):
        values = []
        for sample in range(0, 32, 2):
            with e.hold():
                e.controls["sample"].value = sample
                e.controls["fraction"].value = fraction
            values.append(e.state["original_class_probability"])
        return np.mean(values)

    low, high = mean_probability(0.1), mean_probability(0.5)
    assert high < low - 0.2


def test_the_shown_input_is_the_one_the_curve_scored(explorer):
    e = explorer
    for order, baseline in (("morf", "noise"), ("lerf", "blur"), ("random", "sample_mean"), ("morf", "mean")):
        _reset(e, fraction=0.4, order=order, baseline=baseline, sample=5)
        state = e.state
        # the single forward pass agrees with the curve's score at this step for this sample
        assert state["original_class_probability"] == pytest.approx(state["sample_curve"][state["step"]], abs=1e-5)
        # and the image is what perturb gives for the explained set
        expected = perturb(e.x, e.relevance, state["fraction"], order, baseline, seed=e.seed)[5]
        np.testing.assert_allclose(state["perturbed"], expected.numpy(), atol=1e-6)


def test_order_changes_the_image_and_the_highlight(explorer):
    e = explorer
    _reset(e, fraction=0.3, order="morf")
    morf = e.state["perturbed"].copy()
    morf_removed = e.state["removed"].copy()
    assert e.lines["morf"].get_linewidth() > e.lines["lerf"].get_linewidth()
    e.controls["order"].value = "lerf"
    assert not np.allclose(morf, e.state["perturbed"])
    assert (morf_removed != e.state["removed"]).any()
    assert e.lines["lerf"].get_linewidth() > e.lines["morf"].get_linewidth()
    np.testing.assert_allclose(_image_data(e.perturbed_panel), e.state["perturbed"][0])
    # the dotted line is this sample's curve for the selected order
    np.testing.assert_allclose(e.sample_line.get_ydata(), e.state["sample_curve"])
    # removing the least relevant pixels keeps the prediction more often than the most relevant
    lerf_kept = e.state["accuracy_curves"]["lerf"][e.state["step"]]
    assert lerf_kept > e.state["accuracy_curves"]["morf"][e.state["step"]]
    assert "LeRF" in e.readout.value


def test_baseline_changes_the_curves_and_is_computed_once(explorer):
    e = explorer
    _reset(e, fraction=0.5, baseline="mean")
    mean_curves = {k: v.copy() for k, v in e.state["curves"].items()}
    e.controls["baseline"].value = "zero"
    assert e.last_error is None
    assert not np.allclose(mean_curves["morf"], e.state["curves"]["morf"])
    for order in ORDERS:
        np.testing.assert_allclose(e.lines[order].get_ydata(), e.state["curves"][order])
    assert "(zero)" in e.readout.value
    assert "AOPC" in e.legend.get_texts()[0].get_text()
    # removed pixels hold the baseline value
    assert (e.state["perturbed"][0][e.state["removed"]] == 0).all()
    assert e.curves_for("zero") is e.curves_for("zero")  # cached per baseline
    assert e.curves_for("zero")["morf"].label == "MoRF, baseline 'zero'"


def test_without_precompute_a_baseline_is_computed_on_its_first_visit():
    e = RemovalExplorer(_tiny_rgb_model(), shapes(10, seed=0), n_samples=4, steps=2, progress=False, precompute=False)
    assert e.computed_baselines == ("mean",)
    e.controls["baseline"].value = "noise"
    assert e.last_error is None and e.computed_baselines == ("mean", "noise")
    assert e.state["baseline"] == "noise" and "(noise)" in e.readout.value


def test_sample_changes_input_heatmap_and_readout(explorer):
    e = explorer
    _reset(e, sample=1)
    before_input, before_map = e.state["input"].copy(), e.state["relevance_map"].copy()
    e.controls["sample"].value = 7
    assert not np.allclose(before_input, e.state["input"])
    assert not np.allclose(before_map, e.state["relevance_map"])
    np.testing.assert_allclose(_image_data(e.input_panel), e.state["input"][0])
    np.testing.assert_allclose(_image_data(e.heatmap), e.state["relevance_map"], rtol=1e-6)
    assert "prediction" in e.readout.value and "before removal" in e.readout.value
    e.figure.canvas.draw()


def test_callback_error_is_shown_and_the_explorer_keeps_working(explorer):
    e = explorer
    _reset(e)
    original = e.compute

    def broken(values):
        if values["sample"] == 9:
            raise RuntimeError("boom at sample 9")
        return original(values)

    e.compute = broken
    try:
        e.controls["sample"].value = 9
        assert "boom at sample 9" in e.last_error and "boom" in e.error.value
        e.controls["sample"].value = 2
        assert e.last_error is None and e.error.value == "" and e.state["sample"] == 2
    finally:
        e.compute = original


def _tiny_rgb_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(4), nn.Flatten(), nn.Linear(4 * 8 * 8, 10))


def test_user_model_and_rgb_data_with_patches():
    data = shapes(20, seed=0)
    model = _tiny_rgb_model().train()
    e = RemovalExplorer(model, data, n_samples=6, steps=4, patch=4, baseline="blur", progress=False)
    assert e.last_error is None and model.training  # training flags restored
    assert e.state["n_units"] == 64 and e.state["perturbed"].shape == (3, 32, 32)
    e.controls["fraction"].value = 0.5
    assert e.state["n_removed"] == 32 and e.state["removed"].sum() == 32 * 16
    assert _image_data(e.perturbed_panel).shape == (32, 32, 3)
    assert "patches" in e.readout.value
    e.figure.canvas.draw()


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda d: (_tiny_rgb_model(), None), ValueError, "pass data"),
        (lambda d: ("not a model", d), TypeError, "nn.Module"),
        (lambda d: (_tiny_rgb_model(), d.x[:, 0].flatten(1)), ValueError, r"\(N, C, H, W\)"),
        (lambda d: (nn.Identity(), d), ValueError, "class scores"),
        (lambda d: (_tiny_rgb_model(), torch.where(torch.arange(d.x.numel()).view(d.x.shape) == 5, float("nan"), d.x)), ValueError, "NaN"),
    ],
    ids=["no data", "not a module", "flat features", "bad output", "nan"],
)
def test_invalid_user_input_is_refused_clearly(make, error, match):
    model, data = make(shapes(10, seed=0))
    with pytest.raises(error, match=match):
        RemovalExplorer(model, data, n_samples=4, progress=False)


def test_invalid_choices_are_refused():
    data = shapes(10, seed=0)
    with pytest.raises(ValueError, match="baseline"):
        RemovalExplorer(_tiny_rgb_model(), data, baseline="grey", progress=False)
    with pytest.raises(ValueError, match="steps"):
        RemovalExplorer(_tiny_rgb_model(), data, steps=0, progress=False)


def test_logit_score_rescales_the_curve_axes():
    e = RemovalExplorer(_tiny_rgb_model(), shapes(10, seed=0), n_samples=4, steps=2, score="logit", progress=False)
    assert e.last_error is None and "logit" in e.curve_plot.ax.get_ylabel()
    low, high = e.curve_plot.ax.get_ylim()
    values = np.concatenate(list(e.state["curves"].values()))
    assert low <= values.min() and values.max() <= high
