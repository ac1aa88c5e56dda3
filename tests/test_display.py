"""Rich display: valid PNG pictures for single samples and batches of every result type, a text
summary naming target, output and conservation, IPython's formatter picks them up, and drawing
never changes a result."""
import ast
import dataclasses
import io
import importlib
import sys
from collections import OrderedDict
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
import torch
from IPython.core.formatters import DisplayFormatter
from torch import nn

import lrp_widgets
from lrp_widgets import display, explain
from lrp_widgets.esn import ESN, explain_esn
from lrp_widgets.paths import PathSet
from lrp_widgets.removal import removal_curve


def decode_png(data: bytes) -> np.ndarray:
    assert isinstance(data, bytes) and data[:8] == display.PNG_SIGNATURE
    image = matplotlib.image.imread(io.BytesIO(data), format="png")
    assert image.ndim == 3 and image.shape[0] > 50 and image.shape[1] > 50
    assert image[..., :3].std() > 0.01, "the picture is blank"
    return image


def cnn():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4 * 4 * 4, 3)
    ).double()


def mlp():
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(12, 6), nn.ReLU(), nn.Linear(6, 3))


def images(n, seed=2):
    torch.manual_seed(seed)
    return torch.randn(n, 3, 8, 8, dtype=torch.float64)


def snapshot(result) -> dict:
    """Every tensor and array reachable from the result's fields, as raw bytes."""
    found = {}

    def visit(name, value):
        if isinstance(value, torch.Tensor):
            found[name] = (value.dtype, tuple(value.shape), value.detach().cpu().contiguous().numpy().tobytes())
        elif isinstance(value, np.ndarray):
            found[name] = (value.dtype, value.shape, value.tobytes())
        elif isinstance(value, dict):
            for key, item in value.items():
                visit(f"{name}[{key}]", item)
        elif isinstance(value, (list, tuple)):
            for index, item in enumerate(value):
                visit(f"{name}[{index}]", item)

    for name, value in vars(result).items():
        visit(name, value)
    return found


# -- Explanation -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def image_batch():
    return explain(cnn(), images(6), target=[0, 1, 2, 0, 1, 2], layers=True)


def test_explanation_batch_and_single_show_in_ipython_and_stay_unchanged(image_batch):
    before = snapshot(image_batch)
    assert any(name.startswith("layers[") for name in before)
    data, _ = DisplayFormatter().format(image_batch)  # what a notebook does with a cell's last value
    assert snapshot(image_batch) == before, "rendering changed the explanation"
    many = decode_png(data["image/png"])
    assert data["text/plain"] == display.summarize(image_batch)
    one = decode_png(explain(cnn(), images(1))._repr_png_())
    assert many.shape[1] > 3 * one.shape[1]  # four panels side by side, not six
    assert "first 4 of 6 samples" in display.figure(image_batch)._suptitle.get_text()


@pytest.mark.parametrize(
    "model, x",
    [
        (mlp, lambda: torch.randn(3, 12)),  # features: bars
        (lambda: nn.Sequential(nn.Conv1d(2, 3, 5), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 96, 2)),
         lambda: torch.randn(2, 2, 100)),  # sequences with channels: channels x positions map
        (lambda: nn.Sequential(nn.Conv1d(1, 3, 5), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 96, 2)),
         lambda: torch.randn(2, 1, 100)),  # a single-channel sequence: a filled curve
    ],
    ids=["features", "sequence_channels", "sequence"],
)
def test_explanation_of_non_image_inputs(model, x):
    torch.manual_seed(3)
    result = explain(model(), x())
    decode_png(display.to_png(result))


def test_text_summary_names_target_output_and_conservation(image_batch):
    text = image_batch._repr_mimebundle_(include=["text/plain"])["text/plain"]
    table = image_batch.conservation()
    ratio = table.sums[-1] / table.sums[0]
    assert "Explanation of 6 samples of shape (3, 8, 8), composite epsilon_plus_flat" in text
    assert "target [0, 1, 2, 0, 1, 2]" in text
    assert f"explained output [{table.sums[0, 0]:.4g}, " in text
    assert f"conservation: input/output relevance = [{ratio[0]:.3g}, {ratio[1]:.3g}, " in text
    single = display.summarize(explain(cnn(), images(1), target=2))
    assert "Explanation of 1 sample " in single and "target 2," in single and "conservation" in single
    assert repr(image_batch).startswith("Explanation(6 samples of shape (3, 8, 8)") and "\n" not in repr(image_batch)


def test_include_and_exclude_build_only_what_is_asked(image_batch):
    assert set(display.mimebundle(image_batch, include=["text/plain"])) == {"text/plain"}
    assert set(display.mimebundle(image_batch, exclude=["image/png"])) == {"text/plain"}


def test_many_samples_are_elided_in_the_text():
    result = explain(mlp(), torch.randn(20, 12), target=1)
    text = display.summarize(result)
    assert "20 samples" in text and "target [1, 1, 1, 1, 1, 1, ...]" in text


def test_masked_values_and_all_zero_relevance_draw():
    result = explain(cnn(), images(2))
    result.relevance[0, :, :2] = float("nan")  # masked cells (land) are drawn grey
    result.relevance[1] = 0.0
    decode_png(display.to_png(result))


# -- ESNExplanation --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def esn_result():
    torch.manual_seed(4)
    X = torch.randn(30, 10, 3)
    esn = ESN(3, n_outputs=2, n_reservoir=20, leak_rate=0.3).fit(X, (X[:, :, 0].sum(1) > 0).long())
    return explain_esn(esn, X[:5])


def test_esn_explanation_picture_and_summary(esn_result):
    before = snapshot(esn_result)
    bundle = display.mimebundle(esn_result)
    assert snapshot(esn_result) == before, "rendering changed the ESN explanation"
    decode_png(bundle["image/png"])
    first = {name: getattr(esn_result, name)[:1] for name in ("relevance", "time_profile", "leaked", "output", "target")}
    decode_png(display.to_png(dataclasses.replace(esn_result, **first)))  # a single sample
    text = bundle["text/plain"]
    assert "ESN explanation of 5 samples of 10 time steps x 3 features, leak rate 0.3" in text
    assert "target [" in text and "conservation: input/output relevance" in text
    assert "leak-only theory" in text


# -- RemovalCurve ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def curves():
    model, x = cnn(), images(8)
    relevance = explain(model, x).relevance
    return [removal_curve(model, x, relevance=relevance, order=order, steps=5) for order in ("morf", "random")]


def test_removal_curve_picture_and_summary(curves):
    morf = curves[0]
    before = snapshot(morf)
    bundle = display.mimebundle(morf)
    assert snapshot(morf) == before, "rendering changed the removal curve"
    decode_png(bundle["image/png"])
    decode_png(display.to_png(curves))  # several curves compared on one picture
    assert f"AOPC {morf.aopc:.3g}" in display.figure(morf)._suptitle.get_text()
    text = bundle["text/plain"]
    assert "MoRF" in text and "8 samples" in text and f"AOPC {morf.aopc:.4g}" in text and "target [" in text


# -- PathSet ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def paths():
    torch.manual_seed(5)
    features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 5, 3, padding=1), nn.ReLU())
    classifier = nn.Sequential(nn.Flatten(), nn.Linear(80, 6), nn.ReLU(), nn.Linear(6, 3))
    model = nn.Sequential(OrderedDict(features=features, classifier=classifier)).double()
    return lrp_widgets.top_paths(model, images(1), k=4, layers=["classifier.2", "features.4", "features.1"])


def test_path_set_picture_summary_and_ipython(paths):
    assert len(paths) > 0
    before = snapshot(paths)
    data, _ = DisplayFormatter().format(paths)
    assert snapshot(paths) == before, "rendering changed the path set"
    decode_png(data["image/png"])
    text = data["text/plain"]
    assert f"to target {paths.target}" in text and "conservation" in text
    assert " -> ".join(f"{layer}[{index}]" for layer, index in paths[0].neurons) in text


def test_empty_path_set_draws_a_note():
    empty = PathSet(paths=[], layers=["a", "b"], score="product", target=1, output_relevance=2.0, neuron_relevance={}, messages={})
    decode_png(display.to_png(empty))
    assert "no path carries positive relevance" in display.summarize(empty)


# -- wiring ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("fixture", ["esn_result", "curves"])
def test_results_show_themselves_in_ipython(fixture, request):
    result = request.getfixturevalue(fixture)
    result = result[0] if isinstance(result, list) else result
    data, _ = DisplayFormatter().format(result, include=["text/plain"])  # text only: no picture drawn
    assert data["text/plain"] == display.summarize(result), (
        f"{type(result).__name__} has no rich display: inherit lrp_widgets.display.RichDisplayMixin"
    )


def test_unknown_objects_are_refused_clearly():
    with pytest.raises(TypeError, match="cannot show a dict"):
        display.to_png({})


class _BlockMatplotlib:
    """An import hook that refuses matplotlib: code that needs it fails loudly."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "matplotlib":
            raise ImportError(f"{name} imported where no picture is drawn")


def test_explain_repr_and_summaries_need_no_matplotlib(monkeypatch):
    for name in [name for name in sys.modules if name.split(".")[0] == "matplotlib"]:
        monkeypatch.delitem(sys.modules, name)  # restored afterwards
    monkeypatch.setattr(sys, "meta_path", [_BlockMatplotlib()] + sys.meta_path)
    result = explain(mlp(), torch.randn(2, 12))
    assert repr(result).startswith("Explanation(2 samples")
    assert "conservation" in display.mimebundle(result, include=["text/plain"])["text/plain"]
    importlib.reload(display)  # importing the display module itself loads no matplotlib


def test_the_engine_imports_no_drawing_code_at_all():
    """No import in the engine, at module level or inside a function, names display, plotting,
    widgets or matplotlib (the engine is the lowest layer: it never imports upward, not even lazily)."""
    engine = Path(lrp_widgets.__file__).parent / "engine"
    for path in engine.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [alias.name for alias in node.names] + [getattr(node, "module", None) or ""]
                assert not any(
                    part in ("display", "plotting", "widgets", "matplotlib") for name in names for part in name.split(".")
                ), f"{path.name} imports {names}"
