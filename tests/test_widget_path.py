"""PathExplorer driven headless: every control changes .state and the figure's artists as it
should; the batched heatmaps and fidelity agree with PathFinder's own; errors are shown inside
the explorer and it keeps working; user models and data are accepted or clearly refused."""
from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

from lrp_widgets import zoo
from lrp_widgets.data import shapes
from lrp_widgets.engine.errors import UnsupportedModuleError
from lrp_widgets.models import MLP
from lrp_widgets.paths import activation_heatmap, deconvolve
from lrp_widgets.widgets import PathExplorer

KS = range(1, 11)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny convolutions: a second thread only adds contention on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def explorer():
    model = zoo.load("shapes_minivgg")
    return PathExplorer(model, zoo.dataset("shapes_minivgg").test, n_samples=4, ks=KS, progress=False)


def image_data(panel):
    """What a panel shows: the value of its first field (its picture is rendered from it)."""
    assert bytes(panel.image.value).startswith(b"\x89PNG")
    return np.asarray(panel.inputs[panel.fields[0]]).copy()


def test_k_control_grows_the_paths_and_moves_the_markers(explorer):
    e = explorer
    assert e.last_error is None and set(e.controls) == {"k", "layer", "sample"}
    assert (e.controls["k"].min, e.controls["k"].max) == (1, 10)
    finder = e._sample(0)["finder"]

    e.controls["k"].value = 1
    small = dict(e.state)
    assert small["k"] == 1 and len(small["paths"]) == 1
    assert len(small["edges"]) == len(e.layers)  # output -> top layer, then one edge per pair of layers
    assert small["edges"][0][0] == ("output", small["target"])

    e.controls["k"].value = 10
    large = e.state
    assert len(large["paths"]) == 10 and large["paths"][0] == small["paths"][0]
    assert len(large["edges"]) > len(small["edges"])
    assert np.all(np.diff(large["path_relevance"]) <= 1e-12)  # best first
    assert [p.neurons for p in finder.paths(10)] == large["paths"]

    # the edge pool and the path nodes follow the state; the widest edge carries the most relevance
    assert len(e.graph.edge_lines.get_segments()) == len(large["edges"])
    widths = np.asarray(e.graph.edge_lines.get_linewidths())
    assert np.argmax(widths) == np.argmax(large["edge_relevance"])
    nodes = {node for path in large["paths"] for node in path}
    assert len(e.graph.path_nodes.get_offsets()) == len(nodes)

    # heatmap artist = state = PathFinder's own (one masked pass per k) = batched row
    np.testing.assert_allclose(image_data(e.path_heatmap), large["path_heatmap"], rtol=1e-5, atol=1e-9)
    own = finder.heatmap(10)[0].sum(0).numpy()
    np.testing.assert_allclose(large["path_heatmap"], own, rtol=1e-4, atol=1e-6 * np.abs(own).max())
    assert not np.allclose(small["path_heatmap"], large["path_heatmap"])

    # fidelity: the curves are PathFinder.fidelity's, the value is the curve at k, the marker moves
    fidelity = finder.fidelity([1, 10])
    np.testing.assert_allclose(large["mse_curve"][[0, 9]], fidelity.mse, rtol=1e-3)
    np.testing.assert_allclose(large["smape_curve"][[0, 9]], fidelity.smape, rtol=1e-3)
    assert large["mse"] == large["mse_curve"][9] and small["mse"] == small["mse_curve"][0]
    assert e.fidelity.inputs["k"] == 10
    for line, name in zip(e.fidelity_lines, ("mse", "smape")):  # drawn relative to k=1
        curve = large[f"{name}_curve"]
        np.testing.assert_allclose(line.get_ydata(), curve / curve[0])
    e.controls["k"].value = 3
    assert e.fidelity.inputs["k"] == 3 and len(e.state["paths"]) == 3

    # a k change builds no PathFinder: the sample's finder is the one made at construction
    assert e._sample(0)["finder"] is finder
    e.figure.canvas.draw()


def test_layer_control_changes_activation_and_deconvolution(explorer):
    e = explorer
    assert list(e.controls["layer"].options) == ["features.10", "features.4"]
    e.controls["k"].value = 6
    e.controls["layer"].value = "features.4"
    before = dict(e.state)
    box = e.graph.layer_box.get_x()
    e.controls["layer"].value = "features.10"
    state = e.state
    assert state["layer"] == "features.10" and e.graph.layer_box.get_x() != box
    assert state["selected_channels"] == tuple(state["neurons"]["features.10"])
    assert not np.allclose(before["activation_map"], state["activation_map"])
    assert not np.allclose(before["deconvolution"], state["deconvolution"])
    np.testing.assert_array_equal(before["path_heatmap"], state["path_heatmap"])  # the layer only picks the views

    x = e.x[0:1]
    expected = activation_heatmap(e.model, x, "features.10", list(state["selected_channels"]))[0].numpy()
    np.testing.assert_allclose(state["activation_map"], expected, rtol=1e-5)
    np.testing.assert_allclose(image_data(e.activation_panel), state["activation_map"], rtol=1e-5)
    expected = sum(deconvolve(e.model, x, "features.10", c)[0].numpy() for c in state["selected_channels"])
    np.testing.assert_allclose(state["deconvolution"], expected, rtol=1e-4, atol=1e-7)
    assert state["deconvolution_note"] == ""
    e.figure.canvas.draw()


def test_sample_control_changes_everything(explorer):
    e = explorer
    e.controls["sample"].value = 0
    before = dict(e.state)
    shown = image_data(e.input_panel)
    e.controls["sample"].value = 2
    state = e.state
    assert state["sample"] == 2 and state["paths"] != before["paths"]
    for key in ("path_heatmap", "full_heatmap", "activation_map", "deconvolution", "mse_curve", "smape_curve"):
        assert not np.allclose(before[key], state[key]), key
    assert not np.allclose(shown, image_data(e.input_panel))
    np.testing.assert_allclose(e.fidelity_lines[0].get_ydata(), state["mse_curve"] / state["mse_curve"][0])
    assert "prediction" in e.readout.value and "SMAPE" in e.readout.value
    assert len(e.samples) <= e.samples.size
    e.figure.canvas.draw()


def test_callback_error_is_shown_and_the_explorer_keeps_working(explorer):
    e = explorer
    original = e.compute

    def broken(values):
        if values["sample"] == 3:
            raise RuntimeError("boom at sample 3")
        return original(values)

    e.compute = broken
    try:
        e.controls["sample"].value = 3
        assert "boom at sample 3" in e.last_error and "boom" in e.error.value
        e.controls["sample"].value = 1
        assert e.last_error is None and e.error.value == "" and e.state["sample"] == 1
    finally:
        e.compute = original


def small_cnn(bias=0.0):
    torch.manual_seed(0)
    features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
    classifier = nn.Sequential(nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
    with torch.no_grad():
        classifier[1].bias.fill_(bias)
    return nn.Sequential(OrderedDict(features=features, classifier=classifier))


def test_user_model_with_no_positive_path_still_works():
    # every logit is far below zero: no path carries positive relevance, so none is drawn
    data = shapes(20, size=12, seed=0).test
    e = PathExplorer(small_cnn(bias=-100.0), data, n_samples=3, ks=range(1, 4), progress=False)
    assert e.last_error is None and e.layers == ["features.1"]
    assert e.state["paths"] == [] and e.state["edges"] == [] and len(e.graph.edge_lines.get_segments()) == 0
    assert np.all(e.state["path_heatmap"] == 0)
    e.controls["k"].value = 3
    e.controls["sample"].value = 2
    assert e.last_error is None
    e.figure.canvas.draw()


def test_k_between_the_slider_values_and_a_bounded_sample_cache():
    data = shapes(20, size=12, seed=0).test
    e = PathExplorer(small_cnn(), data, n_samples=4, ks=(1, 4), precompute=False)
    assert e.last_error is None and len(e.samples) == 1  # only the shown sample so far
    e.samples.size = 2
    e.controls["k"].value = 2  # not one of ks: computed by the sample's PathFinder
    finder = e._sample(0)["finder"]
    fidelity = finder.fidelity([2])
    assert len(e.state["paths"]) == len(finder.paths(2))
    np.testing.assert_allclose([e.state["mse"], e.state["smape"]], [fidelity.mse[0], fidelity.smape[0]], rtol=1e-6)
    np.testing.assert_allclose(e.state["path_heatmap"], finder.heatmap(2)[0].sum(0).numpy(), rtol=1e-6)
    for sample in (1, 2, 3):
        e.controls["sample"].value = sample
        assert e.last_error is None
    assert len(e.samples) == 2 and e.samples.keys() == [2, 3]


def test_invalid_user_data_and_models_are_refused_clearly():
    data = shapes(20, size=12, seed=0).test
    with pytest.raises(ValueError, match="pass data"):
        PathExplorer(small_cnn())
    broken = shapes(20, size=12, seed=0).test
    broken.x[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        PathExplorer(small_cnn(), broken)
    flat = shapes(20, size=12, seed=0).test
    flat.x = flat.x.flatten(1)
    with pytest.raises(ValueError, match=r"images \(N, C, H, W\)"):
        PathExplorer(nn.Sequential(nn.Linear(432, 8), nn.ReLU(), nn.Linear(8, 3)), flat)
    with pytest.raises(ValueError, match="convolutional layer"):
        PathExplorer(MLP((3, 12, 12), 3), data, progress=False)

    class Branching(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = small_cnn()

        def forward(self, x):
            return self.net(x) + self.net(x.flip(-1))

    with pytest.raises(UnsupportedModuleError, match="Sequential"):
        PathExplorer(Branching(), data, progress=False)


def test_default_explorer_on_the_zoo_model():
    e = PathExplorer(progress=False)
    assert e.last_error is None and len(e.samples) == 16  # every sample precomputed
    assert (e.controls["k"].min, e.controls["k"].max, e.controls["k"].value) == (1, 20, 5)
    e.controls["k"].value = 20
    assert len(e.state["paths"]) == 20 and len(e.state["mse_curve"]) == 20
    # more paths explain more: the 20-path heatmap is closer to the full one than the 1-path heatmap
    assert e.state["mse_curve"][-1] < e.state["mse_curve"][0]
    assert e.state["smape_curve"][-1] < e.state["smape_curve"][0]
    e.controls["sample"].value = 7
    assert e.last_error is None
    e.figure.canvas.draw()
