"""AttentionExplorer, headless: controls change the state; errors are shown, not lost."""
import numpy as np
import pytest
import torch

from lrp_widgets import zoo
from lrp_widgets.transformers import attention_maps, attention_rollout
from lrp_widgets.widgets import AttentionExplorer
from lrp_widgets.widgets.registry import lookup


@pytest.fixture(scope="module")
def vit_explorer():
    return AttentionExplorer(n_samples=4)


def test_rules_give_different_maps_and_lrp_matches_explain(vit_explorer):
    e = vit_explorer
    maps = {}
    for rule in ("AttnLRP", "CP-LRP", "gradient x input", "attention rollout"):
        e.controls["rule"].value = rule
        assert e.last_error is None, e.last_error
        assert e.state.heatmap.shape == (24, 24)
        maps[rule] = e.state.heatmap
    assert not np.allclose(maps["AttnLRP"], maps["CP-LRP"])
    assert (maps["attention rollout"] >= 0).all()
    import lrp_widgets
    direct = lrp_widgets.explain(e.model, e.x[:1], composite="attnlrp")
    np.testing.assert_allclose(maps["AttnLRP"], direct.relevance[0].sum(0).numpy(), rtol=1e-5, atol=1e-6)


def test_layer_and_head_choose_the_attention_map(vit_explorer):
    e = vit_explorer
    e.controls["rule"].value = "AttnLRP"
    e.controls["layer"].value, e.controls["head"].value = 0, 1
    np.testing.assert_allclose(e.state.attention, e.maps[0, 0, 1].numpy())
    np.testing.assert_allclose(e.state.attention.sum(1), 1, atol=1e-5)
    assert e.state.head_sums.shape == (2,) and e.state.head_relevance.shape == (6, 6)
    before = e.bars.sends
    e.controls["head"].value = 0  # the per-head bars do not change with the head: not sent again
    assert e.bars.sends == before


def test_token_explorer_and_registry():
    model = zoo.load("planted_tokens_transformer")
    data = zoo.dataset("planted_tokens_transformer").test
    e = AttentionExplorer(model, data, n_samples=4)
    assert e.state.heatmap.shape == (1, 16)
    assert "great" in e.input_panel.caption.value or "awful" in e.input_panel.caption.value or \
        any(w in e.input_panel.caption.value for w in ("dull", "boring", "superb", "lovely"))
    e.controls["rule"].value = "gradient x input"
    assert e.last_error is None and e.state.heatmap.shape == (1, 16)
    assert lookup("attention").class_name == "AttentionExplorer"


def test_rollout_rows_are_distributions():
    maps = torch.softmax(torch.randn(2, 3, 2, 5, 5), -1)
    rollout = attention_rollout(maps)
    torch.testing.assert_close(rollout.sum(-1), torch.ones(2, 5))
    with pytest.raises(ValueError, match="no nn.TransformerEncoderLayer"):
        attention_maps(torch.nn.Linear(3, 2), torch.randn(1, 3))


def test_bad_model_is_a_clear_error():
    with pytest.raises(ValueError, match="no nn.TransformerEncoderLayer"):
        AttentionExplorer(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 2)), torch.randn(4, 3, 2, 2))
