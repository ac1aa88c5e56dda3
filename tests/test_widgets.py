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
from lrp_widgets.widgets.panels import MISSING_RGB


def _image_data(panel):
    """What a panel shows: the value of its first field (its picture is rendered from it)."""
    assert bytes(panel.image.value).startswith(b"\x89PNG")
    return np.asarray(panel.inputs[panel.fields[0]]).copy()


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
    assert [bar.get_width() for bar in e.bar_artists] == pytest.approx(list(e.state["stage_sums"]))

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
    assert e.quality.inputs["position"] == 2 == e.share_curve.inputs["position"]
    np.testing.assert_allclose(_image_data(e.mean_heatmap), e.state["mean_map"], rtol=1e-6)

    before = dict(e.state)
    e.controls["architecture"].value = "CNN"
    assert not np.allclose(before["accuracy_curve"], e.state["accuracy_curve"]) or not np.allclose(
        before["share_curve"], e.state["share_curve"]
    )
    np.testing.assert_allclose(e.share_line.get_ydata(), e.state["share_curve"])

    before = e.state["sample_map"].copy()
    e.controls["sample"].value = 4
    assert not np.allclose(before, e.state["sample_map"])
    assert "informative square" in e.readout.value
    e.figure.canvas.draw()


# -- LeakRateExplorer ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def leak_explorer():
    from lrp_widgets.widgets import LeakRateExplorer

    return LeakRateExplorer(two_squares(60, size=16, seed=4), n_reservoir=60, n_explain=8, progress=False)


def test_leak_rate_explorer_every_control(leak_explorer):
    e = leak_explorer
    assert e.last_error is None and set(e.controls) == {"leak_rate", "slices", "direction", "sample", "compare"}
    e.controls["leak_rate"].value = 0.01
    slow = e.state["decay_rate"]
    slow_theory = e.state["theory_profile"].copy()
    e.controls["leak_rate"].value = 0.6
    assert e.state["decay_rate"] > slow  # a larger leak rate forgets faster
    assert e.state["theory_profile"][0] < slow_theory[0]
    assert e.sweep.inputs["leak_rate"] == pytest.approx(0.6, rel=0.02)
    np.testing.assert_allclose(e.decay_lines[0].get_ydata(), np.clip(e.state["time_profile"], 1e-6, None))
    np.testing.assert_allclose(np.nan_to_num(_image_data(e.heatmap)), np.nan_to_num(e.state["relevance_map"]), atol=1e-12)
    assert "test accuracy" in e.readout.value and "heuristic" in e.readout.value

    before = e.state["relevance_map"].copy()
    e.controls["slices"].value = 4
    assert not np.allclose(before, e.state["relevance_map"])
    before = e.state["relevance_map"].copy()
    e.controls["direction"].value = "right_to_left"
    assert not np.allclose(before, e.state["relevance_map"])
    before = e.state["relevance_map"].copy()
    e.controls["sample"].value = 3
    assert not np.allclose(before, e.state["relevance_map"])


def test_leak_rate_explorer_masks_land_on_enso():
    from lrp_widgets.data import enso_fields
    from lrp_widgets.widgets import LeakRateExplorer

    data = enso_fields(120, seed=1)
    e = LeakRateExplorer(data, n_reservoir=40, n_explain=4, progress=False)
    land = ~np.asarray(data.ocean, dtype=bool)
    assert land.any() and e.last_error is None
    assert np.isnan(e.state["relevance_map"][land]).all()
    assert np.isfinite(e.state["relevance_map"][~land]).all()
    rgb = e.heatmap.pixels  # land is drawn grey, block by block
    blocks = rgb[:: rgb.shape[0] // land.shape[0], :: rgb.shape[1] // land.shape[1]][: land.shape[0], : land.shape[1]]
    assert (blocks[land] == MISSING_RGB).all() and not (blocks[~land] == MISSING_RGB).all(axis=-1).any()


def test_leak_rate_explorer_compares_with_the_zoo_lstm_and_gru():
    from lrp_widgets.widgets import LeakRateExplorer

    e = LeakRateExplorer("two_squares", n_reservoir=60, n_explain=8, progress=False)  # the zoo's 32x32 data
    assert not e.controls["compare"].disabled and e.state["compare_profile"] is None
    assert len(e.decay_lines[2].get_xdata()) == 0  # nothing overlaid
    profiles = {}
    for choice in ("lstm", "gru"):
        e.controls["compare"].value = choice
        assert e.last_error is None and e.state["compare"] == choice
        profile = e.state["compare_profile"]
        assert profile.shape == (32,) and profile.max() == pytest.approx(1.0)
        np.testing.assert_allclose(e.decay_lines[2].get_ydata(), np.clip(profile, 1e-6, None))
        assert choice.upper() in e.readout.value and "test accuracy" in e.state["compare_note"]
        profiles[choice] = profile
    assert not np.allclose(profiles["lstm"], profiles["gru"])
    # the zoo models read left to right: fed right to left, nothing is drawn and the note says why
    e.controls["direction"].value = "right_to_left"
    assert e.state["compare_profile"] is None and "not drawn" in e.state["compare_note"]
    assert len(e.decay_lines[2].get_xdata()) == 0


def test_leak_rate_explorer_compare_disabled_for_other_data(leak_explorer):
    control = leak_explorer.controls["compare"]
    assert control.disabled and "32x32 two squares" in control.tooltip  # 16x16 data: no zoo model
    control.value = "lstm"
    assert leak_explorer.state["compare_profile"] is None and "32x32" in leak_explorer.state["compare_note"]
    control.value = "none"
