"""The transformer zoo models (lrp_widgets/transformers.py) explained with AttnLRP and CP-LRP."""
import pytest
import torch

import lrp_widgets
from lrp_widgets import data as datasets
from lrp_widgets import zoo
from lrp_widgets.transformers import ClassToken, PatchEmbedding, PositionalEmbedding, TinyViT


def test_vit_parts_shapes_and_errors():
    x = torch.randn(2, 3, 8, 8)
    tokens = PatchEmbedding(3, 6, 4)(x)
    assert tokens.shape == (2, 4, 6)
    with_class = ClassToken(6)(tokens)
    assert with_class.shape == (2, 5, 6)
    assert PositionalEmbedding(5, 6)(with_class).shape == (2, 5, 6)
    with pytest.raises(ValueError, match="multiple of patch"):
        TinyViT(image_size=10, patch=4)


def test_shapes_vit_attnlrp_is_per_pixel_and_keeps_most_relevance():
    model = zoo.load("shapes_vit")
    data = zoo.dataset("shapes_vit")
    x = data.test.x[:8]
    result = lrp_widgets.explain(model, x, composite="attnlrp")
    assert result.relevance.shape == x.shape
    assert torch.isfinite(result.relevance).all()
    explained = result.output.gather(1, result.target[:, None])[:, 0]
    kept = result.relevance.sum((1, 2, 3))
    # biases, the class token, the positional embedding and the softmax's Taylor term take the rest:
    # measured, not exact; the sign of the explanation matches the logit's
    assert (torch.sign(kept) == torch.sign(explained)).float().mean() >= 0.75
    cp = lrp_widgets.explain(model, x, composite="cp_lrp")
    assert not torch.allclose(cp.relevance, result.relevance)


@pytest.mark.parametrize("composite", ["attnlrp", "cp_lrp"])
def test_token_model_finds_the_planted_evidence(composite):
    model = zoo.load("planted_tokens_transformer")
    data = zoo.dataset("planted_tokens_transformer")
    test = data.test
    x, informative = test.x[:100], test.informative_mask[:100]
    result = lrp_widgets.explain(model, x, target=test.y[:100], composite=composite)
    assert result.relevance.shape == x.shape
    assert torch.all(result.relevance[x == 0] == 0)  # padding is masked out: no relevance
    top = result.relevance.abs().argmax(1)
    hit = informative[torch.arange(len(x)), top].float().mean()
    assert hit >= 0.9, f"the evidence token is the most relevant in only {hit:.0%} of sequences"


def test_planted_tokens_data():
    data = datasets.planted_tokens(n=50, seed=3)
    assert data.x.dtype == torch.int64 and data.x.shape == (50, 16)
    assert data.informative_mask.sum(1).eq(1).all() and data.distractor_mask.sum(1).eq(1).all()
    evidence = data.x[data.informative_mask]
    assert torch.equal((evidence >= 4).long(), data.y)  # ids 1-3: class 0, 4-6: class 1
    with pytest.raises(ValueError, match="min_length"):
        datasets.planted_tokens(min_length=20)
