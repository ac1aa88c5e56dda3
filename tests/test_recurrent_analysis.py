"""The ESN tools on LSTM/GRU explanations: column-wise image sequences, time profile, decay rate,
masked (land) points; and the zoo's recurrent models."""
import numpy as np
import pytest
import torch

from lrp_widgets import data as datasets
from lrp_widgets import explain, models, zoo
from lrp_widgets.esn import image_to_sequence, measure_decay_rate, sequence_to_image


@pytest.mark.parametrize("name", ["two_squares_lstm", "two_squares_gru"])
def test_zoo_recurrent_models_with_the_esn_tools(name):
    model = zoo.load(name)
    data = zoo.dataset(name)
    assert zoo.info(name)["test_accuracy"] >= 0.95
    x = data.test.x[:32]
    result = explain(model, x)
    assert result.relevance.shape == x.shape
    inner = result.recurrent["rnn"]
    # the model reads columns as image_to_sequence does: the two views of the relevance agree
    torch.testing.assert_close(image_to_sequence(result.relevance), inner.relevance)
    torch.testing.assert_close(sequence_to_image(inner.relevance), result.relevance)
    assert inner.time_profile.shape == (32, 32)
    rate = measure_decay_rate(inner.time_profile)
    assert np.isfinite(rate)
    # relevance finds the informative square: its share of |R| is far above its share of the area
    mask = data.informative_mask
    share = (result.relevance.abs()[:, 0][:, mask].sum() / result.relevance.abs().sum()).item()
    assert share > 5 * mask.float().mean().item()
    np.testing.assert_allclose(inner.conservation().residual(), 0.0, rtol=0, atol=1e-4)


@pytest.mark.parametrize("direction", ["left_to_right", "right_to_left"])
def test_column_rnn_directions_match_image_to_sequence(direction):
    torch.manual_seed(0)
    model = models.ColumnRNN("GRU", (1, 6, 5), n_classes=2, hidden=4, direction=direction).double().eval()
    x = torch.randn(3, 1, 6, 5, dtype=torch.float64)
    result = explain(model, x, composite="lrp0")
    inner = result.recurrent["rnn"]
    torch.testing.assert_close(image_to_sequence(result.relevance, direction), inner.relevance)
    torch.testing.assert_close(sequence_to_image(inner.relevance, direction=direction), result.relevance)


def test_enso_land_is_masked_not_zero():
    data = datasets.load({"loader": "enso_fields", "n": 40, "seed": 0, "n_modes": 20, "noise": 0.1})
    torch.manual_seed(0)
    model = models.ColumnRNN("LSTM", (1, 18, 30), n_classes=2, hidden=8).eval()
    x = data.test.x
    result = explain(model, x)
    land = ~data.ocean
    assert float(result.relevance[:, 0][:, land].abs().max()) == 0.0  # filled with 0: no relevance
    picture = sequence_to_image(result.recurrent["rnn"].relevance, mask=data.ocean)
    assert bool(torch.isnan(picture[:, 0][:, land]).all())
    assert bool(torch.isfinite(picture[:, 0][:, data.ocean]).all())
