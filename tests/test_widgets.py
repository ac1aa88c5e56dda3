"""Explorers driven headless: every control changes .state and the figure's artists; errors are
shown inside the explorer and it keeps working; user models and data are accepted or clearly
refused."""
import numpy as np
import pytest
import torch
from torch import nn

from lrp_widgets.data import shapes, two_squares
from lrp_widgets.models import CNN, MLP, MiniVGG
from lrp_widgets.widgets import L1Explorer, RuleExplorer


def _image_data(explorer_heatmap):
    return np.ma.getdata(explorer_heatmap.image.get_array()).copy()


@pytest.fixture(scope="module")
def rule_explorer():
    torch.manual_seed(0)
    model = MiniVGG(width=0.125, inplace=True).eval()
    return RuleExplorer(model, shapes(60, seed=1).test, n_samples=8)


def test_rule_explorer_every_control(rule_explorer):
    e = rule_explorer
    assert e.last_error is None and set(e.controls) == {"composite", "epsilon", "gamma", "sample"}
    before = e.state["heatmap"].copy()
    e.controls["composite"].value = "epsilon"
    assert e.state["composite"].startswith("epsilon(")
    assert not np.allclose(before, e.state["heatmap"])
    np.testing.assert_allclose(_image_data(e.heatmap), e.state["heatmap"])

    before = e.state["stage_sums"].copy()
    e.controls["epsilon"].value = 1.0  # a large epsilon absorbs relevance: the bars shrink
    assert abs(e.state["stage_sums"][-1]) < abs(before[-1])
    assert [bar.get_width() for bar in e.bars] == pytest.approx(list(e.state["stage_sums"]))

    e.controls["composite"].value = "epsilon_gamma_box"
    before = e.state["heatmap"].copy()
    e.controls["gamma"].value = 10.0
    assert not np.allclose(before, e.state["heatmap"])

    before = e.state["heatmap"].copy()
    e.controls["sample"].value = 3
    assert not np.allclose(before, e.state["heatmap"])
    assert "prediction" in e.readout.value
    e.figure.canvas.draw()


def test_rule_explorer_conservation_bars_are_flat_for_lrp0_without_bias():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 30 * 30, 5, bias=False))
    e = RuleExplorer(model, shapes(20, seed=2), n_samples=4)
    e.controls["composite"].value = "lrp0"
    sums = e.state["stage_sums"]
    np.testing.assert_allclose(sums, sums[0], rtol=1e-4)


def test_callback_error_is_shown_and_the_explorer_keeps_working(rule_explorer):
    e = rule_explorer
    original = e.compute

    def broken(values):
        if values["sample"] == 5:
            raise RuntimeError("boom at sample 5")
        return original(values)

    e.compute = broken
    try:
        e.controls["sample"].value = 5
        assert "boom at sample 5" in e.last_error and "boom" in e.error.value
        e.controls["sample"].value = 2
        assert e.last_error is None and e.error.value == ""
    finally:
        e.compute = original


def test_user_data_with_nan_is_refused_clearly():
    data = shapes(10, seed=0)
    data.x[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        RuleExplorer(MiniVGG(width=0.125), data)


@pytest.fixture(scope="module")
def l1_explorer():
    data = two_squares(40, size=16, seed=3)
    torch.manual_seed(0)
    models = {
        "MLP": {0.0: MLP((1, 16, 16), 2), 1e-3: MLP((1, 16, 16), 2), 1e-2: MLP((1, 16, 16), 2)},
        "CNN": {0.0: CNN(1, 2, 16), 1e-3: CNN(1, 2, 16), 1e-2: CNN(1, 2, 16)},
    }
    return L1Explorer(models, data.test, progress=False)


def test_l1_explorer_every_control(l1_explorer):
    e = l1_explorer
    assert e.last_error is None and set(e.controls) == {"l1", "architecture", "sample"}
    before = dict(e.state)
    e.controls["l1"].value = 1e-2
    assert not np.allclose(before["mean_map"], e.state["mean_map"])
    assert e.quality.marker.get_xdata()[0] == 2
    np.testing.assert_allclose(_image_data(e.mean_heatmap), e.state["mean_map"], rtol=1e-6)

    before = dict(e.state)
    e.controls["architecture"].value = "CNN"
    assert not np.allclose(before["accuracy_curve"], e.state["accuracy_curve"]) or not np.allclose(
        before["share_curve"], e.state["share_curve"]
    )
    np.testing.assert_allclose(e.share_curve.lines["share"].get_ydata(), e.state["share_curve"])

    before = e.state["sample_map"].copy()
    e.controls["sample"].value = 4
    assert not np.allclose(before, e.state["sample_map"])
    assert "informative square" in e.readout.value
    e.figure.canvas.draw()
