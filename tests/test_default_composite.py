"""The default composite is chosen by the model (issue 16): flat on the first layer only when it
is a convolution, because flat on a dense first layer gives a constant map."""
import warnings

import pytest
import torch
from torch import nn

import lrp_widgets
from lrp_widgets import composites


def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))


def cnn():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 64, 10))


def test_flat_on_a_dense_first_layer_gives_a_constant_map_and_a_warning():
    x = torch.rand(3, 1, 8, 8)
    with pytest.warns(lrp_widgets.LRPWarning, match=r"flat rule on the dense layer '1'.*all 64 of its inputs"):
        result = lrp_widgets.explain(mlp(), x, composite="epsilon_plus_flat")
    per_sample = result.relevance.flatten(1)
    assert torch.allclose(per_sample, per_sample[:, :1].expand_as(per_sample))  # one value per sample


def test_the_default_for_a_dense_first_layer_is_epsilon_plus_and_informative():
    x = torch.rand(3, 1, 8, 8)
    model = mlp()
    with warnings.catch_warnings():
        warnings.simplefilter("error", lrp_widgets.LRPWarning)
        result = lrp_widgets.explain(model, x)
    assert result.composite.name == "epsilon_plus"
    assert bool((result.relevance.flatten(1).std(1) > 0).all())  # not a constant map
    expected = lrp_widgets.explain(model, x, composite="epsilon_plus").relevance
    assert torch.equal(result.relevance, expected)


def test_the_default_for_a_convolutional_first_layer_is_epsilon_plus_flat():
    x = torch.rand(3, 1, 8, 8)
    model = cnn()
    with warnings.catch_warnings():
        warnings.simplefilter("error", lrp_widgets.LRPWarning)  # flat on a conv: no warning
        result = lrp_widgets.explain(model, x)
    assert result.composite.name == "epsilon_plus_flat"
    assert torch.equal(result.relevance, lrp_widgets.explain(model, x, composite="epsilon_plus_flat").relevance)


def test_default_for_looks_at_the_first_linear_or_conv_module():
    assert composites.default_for(cnn()).name == "epsilon_plus_flat"
    assert composites.default_for(mlp()).name == "epsilon_plus"
    bn_first = nn.Sequential(nn.BatchNorm2d(1), nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(72, 2))
    assert composites.default_for(bn_first).name == "epsilon_plus_flat"
    assert composites.default_for(nn.Sequential(nn.ReLU())).name == "epsilon_plus"
