"""Neuron selection and paths: the k-best search against brute force, messages against the engine's
masks, conservation of path relevance, path heatmaps, fidelity, deconvolution, MiniVGG and VGG16."""
import itertools
from collections import OrderedDict

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import lrp_widgets
from lrp_widgets import Composite, explain, rules
from lrp_widgets.engine.errors import InputError, UnsupportedModuleError
from lrp_widgets.paths import PathFinder, default_layers, smape

torch.set_num_threads(1)  # tiny convolutions: more threads only add contention on a shared machine

LAYERS = ["classifier.2", "features.4", "features.1"]  # top first: 6, 5 and 4 neurons, 120 paths
SIZES = {"classifier.2": 6, "features.4": 5, "features.1": 4}


def tiny_net(seed=1, bias=True):
    torch.manual_seed(seed)
    features = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1, bias=bias), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.Conv2d(4, 5, 3, padding=1, bias=bias), nn.ReLU(),
    )
    classifier = nn.Sequential(nn.Flatten(), nn.Linear(80, 6, bias=bias), nn.ReLU(), nn.Linear(6, 3, bias=bias))
    return nn.Sequential(OrderedDict(features=features, classifier=classifier)).double()


def positive_composite():
    """z+ everywhere, bias-free net: every message is >= 0 and every layer conserves relevance."""
    zplus = rules.ZPlus(epsilon=1e-30)  # a negligible stabilizer: nothing absorbed
    return Composite(layer_rules={(nn.Conv2d, nn.Linear): zplus}, first=rules.Flat(epsilon=1e-30), name="zplus")


def sample(seed=101):
    torch.manual_seed(seed)
    return torch.randn(1, 2, 8, 8, dtype=torch.float64)


# -- independent references --------------------------------------------------------------------
def reference_messages(model, x, layers, composite):
    """Messages from the full model with the engine's masks: one masked explain per upper neuron."""
    def neuron_sums(masks, record):
        seen = {}
        masks = dict(masks)
        masks[record] = lambda R: seen.setdefault("R", R.detach().clone())
        result = explain(model, x, composite=composite, masks=masks)
        return seen["R"][0].reshape(seen["R"].shape[1], -1).sum(1).numpy(), result

    root, full = neuron_sums({}, layers[0])
    messages = {}
    for upper, lower in zip(layers[:-1], layers[1:]):
        n = SIZES[upper]
        shape = (1, n) if upper.startswith("classifier") else (1, n, 1, 1)
        columns = []
        for k in range(n):
            onehot = torch.zeros(shape, dtype=torch.float64)
            onehot[0, k] = 1
            columns.append(neuron_sums({upper: onehot}, lower)[0])
        messages[(upper, lower)] = np.stack(columns, 1)
    f = float(full.output[0, full.target[0]])
    return f, root, messages


def brute_force(f, root, messages, layers, score):
    """Every path with its score, by enumeration (shares as the paths module defines them)."""
    relevance = {layers[0]: root}
    for (upper, lower), M in messages.items():
        relevance[lower] = M.sum(1)

    def share(message, upper_relevance):
        return message / upper_relevance if message > 0 and upper_relevance > 0 else 0.0

    sizes = [len(relevance[layer]) for layer in layers]
    scored = {}
    for nodes in itertools.product(*[range(n) for n in sizes]):
        shares = [share(root[nodes[0]], f)]
        for i in range(1, len(layers)):
            M = messages[(layers[i - 1], layers[i])]
            shares.append(share(M[nodes[i], nodes[i - 1]], relevance[layers[i - 1]][nodes[i - 1]]))
        value = float(np.prod(shares)) if score == "product" else float(min(shares))
        if value > 0:
            scored[nodes] = value
    return scored


# -- the k-best search and the messages ---------------------------------------------------------
@pytest.mark.parametrize(
    "composite",
    ["epsilon_plus_flat", lambda: Composite({nn.Conv2d: rules.ZPlus(), nn.Linear: rules.Epsilon(0.01)},
                                            name_rules={"features.3": rules.Gamma(0.5)}, first=rules.Flat())],
    ids=["epsilon_plus_flat", "named_gamma"],
)
def test_messages_match_masked_explanations_of_the_full_model(composite):
    model, x = tiny_net(), sample()
    finder = PathFinder(model, x, layers=LAYERS, composite=composite)
    f, root, messages = reference_messages(model, x, LAYERS, lrp_widgets.composites.get(composite))
    assert finder.layers == LAYERS
    assert finder.output_relevance == pytest.approx(f)
    np.testing.assert_allclose(finder.relevance[LAYERS[0]], root, rtol=1e-9, atol=1e-12)
    for key, M in messages.items():
        np.testing.assert_allclose(finder.messages[key], M, rtol=1e-9, atol=1e-12)
        # messages from all upper neurons to j add up to R_j (rules are linear in the relevance)
        np.testing.assert_allclose(finder.messages[key].sum(1), finder.relevance[key[1]], rtol=1e-9, atol=1e-12)
    assert (np.concatenate([M.ravel() for M in messages.values()]) < 0).any()  # the epsilon rule sends negatives


@pytest.mark.parametrize("score", ["product", "min"])
def test_top_paths_equal_brute_force_enumeration(score):
    model, x = tiny_net(), sample()
    finder = PathFinder(model, x, layers=LAYERS)
    f, root, messages = reference_messages(model, x, LAYERS, lrp_widgets.composites.get("epsilon_plus_flat"))
    scored = brute_force(f, root, messages, LAYERS, score)
    ranked = sorted(scored.items(), key=lambda item: -item[1])
    assert 10 < len(ranked) < 120  # some paths carry no positive relevance, several do
    for k in (1, 2, 5, 13, len(ranked), 120):
        found = lrp_widgets.top_paths(model, x, k=k, layers=LAYERS, score=score) if k == 5 else finder.paths(k, score)
        expected = [value for _, value in ranked[:k]]
        np.testing.assert_allclose([p.score for p in found], expected, rtol=1e-9)
        nodes = [tuple(index for _, index in p.neurons) for p in found]
        assert len(set(nodes)) == len(nodes)
        for p, key in zip(found, nodes):
            assert p.score == pytest.approx(scored[key], rel=1e-9)
            assert [layer for layer, _ in p.neurons] == LAYERS
        if score == "product":  # no ties among products of random shares: the paths themselves agree
            assert nodes == [key for key, _ in ranked[:k]]


def test_path_relevance_adds_up_as_the_messages_say():
    model, x = tiny_net(bias=False), sample()
    finder = PathFinder(model, x, layers=LAYERS, composite=positive_composite())
    f = finder.output_relevance
    assert f > 0
    np.testing.assert_allclose(finder.relevance[LAYERS[0]].sum(), f, rtol=1e-9)
    for (upper, lower), M in finder.messages.items():
        assert (M >= 0).all()
        np.testing.assert_allclose(M.sum(0), finder.relevance[upper], rtol=1e-9, atol=1e-12)  # conservation
        np.testing.assert_allclose(M.sum(1), finder.relevance[lower], rtol=1e-9, atol=1e-12)  # linearity
    every = finder.paths(120)
    assert sum(p.relevance for p in every) == pytest.approx(f, rel=1e-9)
    bottom = np.zeros(4)
    for p in every:
        bottom[p.neurons[-1][1]] += p.relevance
    np.testing.assert_allclose(bottom, finder.relevance["features.1"], rtol=1e-9, atol=1e-12)
    # with every neuron on some path, the path heatmap is the full explanation
    full = explain(model, x, composite=positive_composite()).relevance
    torch.testing.assert_close(finder.heatmap(120), full)
    torch.testing.assert_close(lrp_widgets.path_heatmap(model, x, every), full)
    assert not torch.allclose(finder.heatmap(1), full)


def test_path_heatmap_with_all_neurons_equals_explanation_and_masks_select():
    model, x = tiny_net(), sample()
    full = explain(model, x).relevance
    everything = {"features.4": range(5), "classifier.2": range(6)}
    torch.testing.assert_close(lrp_widgets.path_heatmap(model, x, everything), full)
    some = lrp_widgets.path_heatmap(model, x, {"features.4": [0, 2]})
    rest = lrp_widgets.path_heatmap(model, x, {"features.4": [1, 3, 4]})
    torch.testing.assert_close(some + rest, full)
    assert not torch.allclose(some, full)


def test_fidelity_falls_with_k_and_reaches_zero_with_all_neurons():
    model, x = tiny_net(bias=False), sample()
    finder = PathFinder(model, x, layers=LAYERS, composite=positive_composite())
    ks = list(range(1, 121))
    curve = lrp_widgets.path_fidelity(model, x, ks=ks, finder=finder)
    assert curve.mse.shape == curve.smape.shape == (120,)
    assert np.all(np.diff(curve.mse) <= 1e-15)
    assert np.all(np.diff(curve.n_neurons) >= 0)
    assert curve.mse[0] > 100 * curve.mse[-1] + 1e-12
    assert curve.mse[-1] < 1e-20 and curve.smape[-1] < 1e-6
    heat, full = finder.heatmap(3).numpy(), finder.full_heatmap.numpy()
    assert curve.mse[2] == pytest.approx(np.mean((heat - full) ** 2))
    assert curve.smape[2] == pytest.approx(smape(heat, full))


def test_smape_formula():
    assert smape([0.0, 1.0], [0.0, 1.0]) == 0.0  # 0/0 counts as 0
    assert smape([0.0, 2.0], [0.0, 1.0]) == pytest.approx(100 / 2 * (1 / 1.5))
    assert smape([1.0], [-1.0]) == pytest.approx(200.0)


# -- neuron selection --------------------------------------------------------------------------
def test_select_neurons_keeps_scores_above_mean_minus_std():
    model, x = tiny_net(), sample()
    result = explain(model, x, layers=True)
    chosen = lrp_widgets.select_neurons(result, "features.4")
    scores = result.layers["features.4"][0].sum((1, 2)).numpy()  # a ReLU passes relevance: input = output
    np.testing.assert_allclose(chosen.scores, scores, rtol=1e-12)
    threshold = scores.mean() - scores.std()
    assert chosen.threshold == pytest.approx(threshold)
    assert sorted(chosen.indices.tolist()) == np.flatnonzero(scores > threshold).tolist()
    assert list(chosen.scores[chosen.indices]) == sorted(chosen.scores[chosen.indices], reverse=True)
    # a conv layer's output neurons: the relevance at the next module's input, as a PathFinder records it
    conv = lrp_widgets.select_neurons(result, "features.3")
    np.testing.assert_allclose(conv.scores, scores, rtol=1e-12)
    finder = PathFinder(model, x, layers=LAYERS)
    np.testing.assert_allclose(lrp_widgets.select_neurons(finder, "features.4").scores, scores, rtol=1e-9)
    with pytest.raises(InputError, match="layers=True"):
        lrp_widgets.select_neurons(explain(model, x), "features.4")
    with pytest.raises(InputError, match="last module"):
        lrp_widgets.select_neurons(result, "classifier.3")


@pytest.mark.parametrize("score", ["product", "min"])
def test_paper_mode_searches_only_through_selected_neurons(score):
    """through="selected": brute force over the paths whose every neuron GetOptimizer keeps."""
    model, x = tiny_net(seed=2), sample(102)
    finder = PathFinder(model, x, layers=LAYERS)
    kept = {layer: set(lrp_widgets.select_neurons(finder, layer).indices.tolist()) for layer in LAYERS}
    assert all(0 < len(kept[layer]) < SIZES[layer] for layer in LAYERS[1:])  # the selection drops someone
    f, root, messages = reference_messages(model, x, LAYERS, lrp_widgets.composites.get("epsilon_plus_flat"))
    scored = brute_force(f, root, messages, LAYERS, score)
    allowed = {nodes: v for nodes, v in scored.items() if all(n in kept[layer] for layer, n in zip(LAYERS, nodes))}
    ranked = sorted(allowed.items(), key=lambda item: -item[1])
    assert 0 < len(ranked) < len(scored)
    for k in (1, 3, len(ranked), 120):
        found = finder.paths(k, score, through="selected")
        assert found.through == "selected"
        np.testing.assert_allclose([p.score for p in found], [v for _, v in ranked[:k]], rtol=1e-9)
        for path in found:
            assert all(index in kept[layer] for layer, index in path.neurons)
    paper = lrp_widgets.top_paths(model, x, k=3, layers=LAYERS, score=score, through="selected")
    assert [p.neurons for p in paper] == [p.neurons for p in finder.paths(3, score, through="selected")]


def test_paper_mode_differs_from_the_unrestricted_search():
    """Here the single best path overall runs through a neuron whose own relevance is below mean - std."""
    model, x = tiny_net(seed=2), sample(102)
    finder = PathFinder(model, x, layers=LAYERS)
    selections = finder.selections()
    best, paper = finder.paths(1)[0], finder.paths(1, through="selected")[0]
    assert best.neurons != paper.neurons
    assert best.score > paper.score  # the restriction costs path score
    dropped = [(layer, index) for layer, index in best.neurons if not selections[layer].mask[index]]
    assert dropped and all(selections[layer].scores[index] <= selections[layer].threshold for layer, index in dropped)
    # the heatmaps follow the mode, and both are cached separately
    assert not torch.allclose(finder.heatmap(1), finder.heatmap(1, through="selected"))
    fidelity = lrp_widgets.path_fidelity(model, x, ks=(1, 2), finder=finder, through="selected")
    heat = finder.heatmap(1, through="selected").numpy()
    assert fidelity.mse[0] == pytest.approx(float(np.mean((heat - finder.full_heatmap.numpy()) ** 2)))
    assert "selected" in finder.paths(2, through="selected").summary()
    with pytest.raises(ValueError, match="through must be one of"):
        finder.paths(2, through="paper")


# -- activation heatmaps and deconvolution -----------------------------------------------------
def test_activation_heatmap_is_the_upsampled_channel_sum():
    model, x = tiny_net(), sample()
    with torch.no_grad():
        activation = model.features[:5](x)
    assert activation.shape[-1] == 4
    expected = F.interpolate(activation[:, [1, 3]].sum(1, keepdim=True), size=(8, 8), mode="bilinear", align_corners=False)[:, 0]
    torch.testing.assert_close(lrp_widgets.activation_heatmap(model, x, "features.4", [1, 3]), expected)
    mean = lrp_widgets.activation_heatmap(model, x, "features.4", [1, 3], reduce="mean")
    torch.testing.assert_close(mean, expected / 2)
    with pytest.raises(InputError, match="convolutional"):
        lrp_widgets.activation_heatmap(model, x, "classifier.2", [0])


def test_deconvolve_equals_explicit_unpool_relu_conv_transpose_chain():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.Conv2d(4, 5, 3, stride=2, padding=1), nn.ReLU(), nn.Dropout(0.5),
        nn.Flatten(), nn.Linear(5 * 4 * 4, 2),
    ).double()
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    conv1, conv2 = model[0], model[3]
    with torch.no_grad():
        a1 = F.relu(conv1(x))
        pooled, switches = F.max_pool2d(a1, 2, return_indices=True)
        a2 = F.relu(conv2(pooled))
        y = torch.zeros_like(a2)
        y[:, 3] = a2[:, 3]
        y = F.relu(y)
        y = F.conv_transpose2d(y, conv2.weight, stride=2, padding=1, output_padding=1)
        y = F.max_unpool2d(y, switches, 2, output_size=a1.shape[-2:])
        y = F.relu(y)
        expected = F.conv_transpose2d(y, conv1.weight, padding=1)
    result = lrp_widgets.deconvolve(model, x, "5", 3)
    assert result.shape == x.shape
    torch.testing.assert_close(result, expected)
    assert result.abs().sum() > 0
    with pytest.raises(UnsupportedModuleError, match="cannot reverse .6. .Flatten."):
        lrp_widgets.deconvolve(model, x, "7", 0)
    with pytest.raises(InputError, match="out of range"):
        lrp_widgets.deconvolve(model, x, "4", 5)


# -- errors ---------------------------------------------------------------------------------------
def test_clear_errors():
    model, x = tiny_net(), sample()

    class Branching(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = tiny_net()

        def forward(self, t):
            return self.body(t)

    with pytest.raises(UnsupportedModuleError, match="Sequential"):
        PathFinder(Branching(), x)
    with pytest.raises(InputError, match="one sample"):
        PathFinder(model, torch.cat([x, x]))
    with pytest.raises(InputError, match="not leaf modules"):
        PathFinder(model, x, layers=["features"])
    with pytest.raises(InputError, match="output layer"):
        PathFinder(model, x, layers=["classifier.3"])
    with pytest.raises(ValueError, match="score"):
        PathFinder(model, x, layers=LAYERS).paths(3, score="sum")


# -- the project's models -------------------------------------------------------------------------
def test_minivgg_default_layers_paths_graph_and_heatmaps():
    from lrp_widgets.models import MiniVGG

    torch.manual_seed(0)
    model = MiniVGG(width=0.25)
    x = torch.rand(1, 3, 32, 32)
    assert default_layers(model) == ["classifier.2", "features.10", "features.4"]
    finder = PathFinder(model, x)
    paths = finder.paths(5)
    assert 1 <= len(paths) <= 5 and paths.layers == default_layers(model)
    assert [p.score for p in paths] == sorted((p.score for p in paths), reverse=True)
    graph = paths.to_networkx()
    assert graph.number_of_nodes() == 1 + sum(len(v) for v in paths.neurons_by_layer().values())
    assert all(graph.has_edge("output", p.neurons[0]) for p in paths)
    assert paths.heatmap().shape == x.shape
    assert lrp_widgets.activation_heatmap(model, x, "features.10", paths).shape == (1, 32, 32)
    assert lrp_widgets.deconvolve(model, x, "features.10", paths[0].neurons[1][1]).shape == x.shape


def test_vgg16_at_224():
    from lrp_widgets.models import vgg16

    torch.manual_seed(0)
    model = vgg16(num_classes=10)
    x = torch.rand(1, 3, 224, 224)
    assert default_layers(model) == [
        "classifier.4", "classifier.1", "features.29", "features.22", "features.15", "features.8", "features.3",
    ]
    paths = lrp_widgets.top_paths(model, x, k=3, layers=["features.29"])
    assert len(paths) == 3 and paths[0].neurons[0][0] == "features.29"
    assert paths.heatmap().shape == x.shape
    assert lrp_widgets.deconvolve(model, x, "features.4", 0).shape == x.shape
