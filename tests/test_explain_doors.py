"""Smaller doors a new user meets (issue 16, item 7): meta tensors, class names as targets, models
that return tuples or dicts, and a `mean` in a forward that names the module to use instead."""
import pytest
import torch
from torch import nn

import lrp_widgets
from lrp_widgets import data
from lrp_widgets.engine.errors import FunctionalCallError, InputError


def mlp(classes=3):
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, classes))


def test_a_model_or_input_on_the_meta_device_is_a_clear_error():
    with torch.device("meta"):
        empty = mlp()
    with pytest.raises(InputError, match=r"'meta' device.*to_empty\(device='cpu'\)"):
        lrp_widgets.explain(empty, torch.rand(2, 4))
    with pytest.raises(InputError, match=r"x is on the 'meta' device"):
        lrp_widgets.explain(mlp(), torch.empty(2, 4, device="meta"))


def test_target_may_be_a_class_name_where_names_exist():
    model, x = mlp(), torch.rand(5, 4)
    names = ("cat", "dog", "bird")
    by_index = lrp_widgets.explain(model, x, target=1)
    by_name = lrp_widgets.explain(model, x, target="dog", classes=names)
    torch.testing.assert_close(by_name.relevance, by_index.relevance)
    per_sample = lrp_widgets.explain(model, x, target=["cat", "dog", "bird", "cat", "dog"], classes=names)
    assert per_sample.target.tolist() == [0, 1, 2, 0, 1]
    model.classes = names  # names the model carries
    assert lrp_widgets.explain(model, x, target="bird").target.tolist() == [2] * 5
    with pytest.raises(InputError, match=r"'cow' is not a class name; the classes are: cat, dog, bird"):
        lrp_widgets.explain(model, x, target="cow")


def test_a_data_sets_class_names_work_as_targets():
    shapes = data.shapes(n=20)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, len(shapes.classes)))
    result = lrp_widgets.explain(model, shapes.x[:2], target="star", classes=shapes.classes)
    assert result.target.tolist() == [shapes.classes.index("star")] * 2


def test_a_class_name_without_names_says_where_to_give_them():
    with pytest.raises(InputError, match=r"target 'cat' is a class name.*classes=data.classes.*target=3"):
        lrp_widgets.explain(mlp(), torch.rand(2, 4), target="cat")


class TupleModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = mlp()
        self.extra = nn.Linear(4, 2)

    def forward(self, x):
        return self.body(x), self.extra(x)


class DictModel(TupleModel):
    def forward(self, x):
        return {"logits": self.body(x), "hidden": self.extra(x)}


def test_output_selects_the_scores_of_a_model_returning_a_tuple_or_a_dict():
    x = torch.rand(3, 4)
    tuple_model, dict_model = TupleModel(), DictModel()
    expected = lrp_widgets.explain(tuple_model.body, x).relevance
    torch.testing.assert_close(lrp_widgets.explain(tuple_model, x, output=0).relevance, expected)
    torch.testing.assert_close(lrp_widgets.explain(dict_model, x, output="logits").relevance, expected)
    torch.testing.assert_close(lrp_widgets.explain(dict_model, x, output=lambda out: out["logits"]).relevance, expected)
    with pytest.raises(InputError, match=r"returned dict, not a tensor of scores; pass output= one of \['logits', 'hidden'\]"):
        lrp_widgets.explain(dict_model, x)
    with pytest.raises(InputError, match=r"returned tuple.*output=0"):
        lrp_widgets.explain(tuple_model, x)
    with pytest.raises(InputError, match=r"output='scores' selects nothing"):
        lrp_widgets.explain(dict_model, x, output="scores")


def test_output_reads_an_attribute_of_an_output_object():
    class Output:
        def __init__(self, logits):
            self.logits = logits

    class ObjectModel(TupleModel):
        def forward(self, x):
            return Output(self.body(x))

    x = torch.rand(3, 4)
    model = ObjectModel()
    torch.testing.assert_close(lrp_widgets.explain(model, x, output="logits").relevance, lrp_widgets.explain(model.body, x).relevance)


def test_a_mean_over_space_names_adaptive_avg_pool():
    class GlobalMean(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.head = nn.Conv2d(1, 2, 3), nn.Linear(2, 2)

        def forward(self, x):
            h = self.conv(x)
            return self.head(h.mean((2, 3)))

    with pytest.raises(FunctionalCallError, match=r"calls `mean`.*nn.AdaptiveAvgPool2d\(1\) then nn.Flatten\(\)"):
        lrp_widgets.explain(GlobalMean(), torch.rand(1, 1, 5, 5), graph=False)
    # by default the mean is explained as average pooling, through the traced graph
    assert "mean" in lrp_widgets.explain(GlobalMean(), torch.rand(1, 1, 5, 5), layers=True).layers
