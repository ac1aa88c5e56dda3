"""A composite's rule reaches only the modules that can take it (issue 16, item 4): the README's
own example runs on the shipped MiniVGG, a rule a module cannot take is the composite's error
naming both, and our own errors are never passed off as the input's fault."""
import pytest
import torch
from torch import nn

import lrp_widgets
from lrp_widgets import Composite, data, rules, zoo
from lrp_widgets.engine.errors import CompositeError, InputError


@pytest.fixture(scope="module")
def minivgg_and_x():
    return zoo.load("shapes_minivgg"), data.shapes(n=20, seed=1).x[:3]


def readme_composite(**names):
    return Composite(layer_rules={nn.Conv2d: rules.Gamma(0.5)}, name_rules=names, first=rules.ZBox(0.0, 1.0))


def test_the_readme_composite_runs_on_the_shipped_minivgg(minivgg_and_x):
    model, x = minivgg_and_x
    globbed = lrp_widgets.explain(model, x, composite=readme_composite(**{"classifier.*": rules.Epsilon(0.01)}))
    # the glob reached exactly the two Linear layers, and skipped Flatten, ReLU and Dropout
    named = lrp_widgets.explain(model, x, composite=readme_composite(**{"classifier.1": rules.Epsilon(0.01),
                                                                      "classifier.4": rules.Epsilon(0.01)}))
    torch.testing.assert_close(globbed.relevance, named.relevance)
    plain = lrp_widgets.explain(model, x, composite=readme_composite())
    assert not torch.allclose(globbed.relevance, plain.relevance)  # the glob did change something


def test_a_rule_given_by_exact_name_to_a_module_that_cannot_take_it_names_both(minivgg_and_x):
    model, x = minivgg_and_x
    with pytest.raises(CompositeError) as raised:
        lrp_widgets.explain(model, x, composite=readme_composite(**{"classifier.0": rules.Epsilon(0.01)}))
    message = str(raised.value)
    assert "Epsilon(epsilon=0.01)" in message and "'classifier.0' (Flatten)" in message
    assert "rejected an input" not in message
    with pytest.raises(CompositeError, match=r"Pass\(\) to 'features.0' \(Conv2d\)"):
        lrp_widgets.explain(model, x, composite=readme_composite(**{"features.0": rules.Pass()}))
    with pytest.raises(CompositeError, match=r"'features.0' \(Conv2d\)"):
        lrp_widgets.explain(model, x, composite=Composite({nn.Conv2d: rules.Gradient()}))


def test_our_own_errors_are_not_relabelled_as_input_errors():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.MaxPool2d(2, dilation=2), nn.Flatten(), nn.Linear(2, 2))
    with pytest.raises(ValueError, match="dilation") as raised:
        lrp_widgets.explain(model, torch.rand(1, 1, 6, 6), composite=Composite(maxpool="average"))
    assert not isinstance(raised.value, InputError)
    # the model's own complaint about the input still is an input error
    with pytest.raises(InputError, match=r"rejected an input of shape \(1, 1, 9, 9\)"):
        lrp_widgets.explain(model, torch.rand(1, 1, 9, 9))
