"""Echo state networks and LRP through time (lrp_widgets/esn.py, REFERENCE.md section 2).

Sizes are small where the claim allows; the two_squares claims use the paper's settings
(300 units, spectral radius 0.8, density 0.3, input scale 0.1, ridge 1e-6), since the results
depend on them.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lrp_widgets import ESN, ESNExplanation, explain_esn, image_to_sequence, suggest_leak_rate
from lrp_widgets.esn import measure_decay_rate, sequence_to_image

from .esn_reference import params_of, reference_explain


def random_task(n=24, steps=9, features=3, seed=0, dtype=torch.float64):
    generator = torch.Generator().manual_seed(seed)
    X = torch.rand(n, steps, features, generator=generator, dtype=dtype) * 2 - 1
    y = (X[:, : steps // 2, 0].sum(1) > 0).long()
    return X, y


def informative_share(relevance_images: torch.Tensor, mask: torch.Tensor) -> float:
    """Fraction of the total |relevance| that falls on the masked pixels, pooled over samples."""
    magnitude = relevance_images.abs()
    return (magnitude[:, 0][:, mask].sum() / magnitude.sum()).item()


# --------------------------------------------------------------------------------------------
# fixtures shared by the two_squares claims (fitting is the expensive part)
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def squares32():
    from lrp_widgets.data import two_squares

    return two_squares(size=32)


@pytest.fixture(scope="module")
def squares100():
    from lrp_widgets.data import two_squares

    return two_squares(size=100)


def fit_and_score(data, leak_rate, direction="left_to_right", slices=1, **options):
    X_train = image_to_sequence(data.train.x, direction)
    X_test = image_to_sequence(data.test.x, direction)
    size = data.x.shape[-2]
    esn = ESN(size, n_outputs=2, leak_rate=leak_rate, slices=slices, **options).fit(X_train, data.train.y)
    return esn, esn.score(X_test, data.test.y), X_test


# --------------------------------------------------------------------------------------------
# conservation and the independent reference
# --------------------------------------------------------------------------------------------
@settings(max_examples=25, deadline=None)
@given(
    leak_rate=st.floats(0.01, 1.0),
    slices=st.integers(1, 4),
    steps=st.integers(4, 11),
    seed=st.integers(0, 10_000),
)
def test_conservation_with_epsilon_zero(leak_rate, slices, steps, seed):
    X, y = random_task(n=10, steps=steps, features=3, seed=seed)
    esn = ESN(3, n_outputs=2, n_reservoir=20, leak_rate=leak_rate, slices=slices, seed=seed).double().fit(X, y)
    explanation = explain_esn(esn, X, epsilon=0.0)
    total = explanation.relevance.sum(dim=(1, 2)) + explanation.leaked
    output = explanation.explained_output
    assert torch.allclose(total, output, rtol=1e-6, atol=1e-12 * output.abs().max().item())
    # the relevance does reach the inputs: this is not a model whose bias absorbs everything
    assert explanation.relevance.abs().sum() > 0.1 * output.abs().sum()


def test_conservation_with_stabilizer_counts_what_epsilon_absorbs():
    X, y = random_task()
    esn = ESN(3, n_outputs=2, n_reservoir=15, leak_rate=0.2).double().fit(X, y)
    small, large = explain_esn(esn, X, epsilon=1e-9), explain_esn(esn, X, epsilon=0.1)
    for explanation in (small, large):
        assert abs(explanation.conservation().residual()).max() < 1e-10
    # a large epsilon absorbs visibly more than a tiny one
    assert (large.leaked - small.leaked).abs().max() > 1e-3


@pytest.mark.parametrize("slices, steps", [(1, 7), (2, 8), (3, 8), (4, 6)])
@pytest.mark.parametrize("epsilon", [0.0, 1e-3, 0.3])
def test_matches_slow_reference(slices, steps, epsilon):
    X, y = random_task(n=7, steps=steps, features=3, seed=slices)
    esn = ESN(3, n_outputs=2, n_reservoir=8, leak_rate=0.35, input_scale=0.6, slices=slices, seed=3).double().fit(X, y)
    target = torch.tensor([0, 1, 1, 0, 1, 0, 0])
    explanation = explain_esn(esn, X, target=target, epsilon=epsilon)
    relevance, kept, outputs = reference_explain(params_of(esn), X.numpy(), target.numpy(), epsilon)
    # With epsilon = 0 a state near 0 (here down to ~3e-5) divides the relevance and amplifies
    # rounding in both implementations (how much depends on the BLAS thread count), so relevance
    # and the bias/stabilizer total agree to ~1e-10 only; a stabilizer bounds
    # |R / stab(z)| <= |R| / epsilon and restores 1e-10.
    tolerance = 1e-10 if epsilon else 1e-9
    np.testing.assert_allclose(explanation.output.numpy(), outputs, rtol=0, atol=1e-10)
    np.testing.assert_allclose(explanation.relevance.numpy(), relevance, rtol=0, atol=tolerance)
    np.testing.assert_allclose(explanation.leaked.numpy(), kept, rtol=0, atol=tolerance)


def test_zero_denominators_with_epsilon_zero_match_reference():
    # An all-zero sample and zero biases make pre-activations and states exactly 0 (0/0 := 0).
    X, y = random_task(n=5, steps=6, features=3, seed=7)
    X[0] = 0
    esn = ESN(3, n_outputs=2, n_reservoir=8, leak_rate=0.4, input_scale=0.5).double()
    esn.bias[:4] = 0
    esn.fit(X, y)
    explanation = explain_esn(esn, X, epsilon=0.0)
    assert torch.isfinite(explanation.relevance).all()
    relevance, kept, _ = reference_explain(params_of(esn), X.numpy(), explanation.target.numpy(), 0.0)
    np.testing.assert_allclose(explanation.relevance.numpy(), relevance, rtol=0, atol=1e-10)
    np.testing.assert_allclose(explanation.leaked.numpy(), kept, rtol=0, atol=1e-10)
    assert abs(explanation.conservation().residual()).max() < 1e-12


def test_batch_explained_like_single_samples():
    X, y = random_task(n=6, steps=8, seed=4)
    esn = ESN(3, n_outputs=2, n_reservoir=12, leak_rate=0.3, slices=2).double().fit(X, y)
    batch = explain_esn(esn, X)
    for i in range(len(X)):
        single = explain_esn(esn, X[i : i + 1])
        torch.testing.assert_close(single.relevance[0], batch.relevance[i], rtol=1e-12, atol=1e-14)


# --------------------------------------------------------------------------------------------
# targets, regression, result object
# --------------------------------------------------------------------------------------------
def test_targets_none_int_and_per_sample():
    X, y = random_task(n=8)
    esn = ESN(3, n_outputs=3, n_reservoir=15).double().fit(X, y)  # class 2 never occurs: still fine
    default = explain_esn(esn, X)
    assert torch.equal(default.target, esn.predict(X))
    one = explain_esn(esn, X, target=1)
    assert torch.equal(one.target, torch.ones(8, dtype=torch.long))
    mixed = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    per_sample = explain_esn(esn, X, target=mixed)
    torch.testing.assert_close(per_sample.explained_output, esn(X).gather(1, mixed[:, None])[:, 0])
    assert not torch.allclose(one.relevance, per_sample.relevance)
    with pytest.raises(ValueError, match="0..2"):
        explain_esn(esn, X, target=3)


def test_regression_fit_predict_and_explain():
    generator = torch.Generator().manual_seed(1)
    X = torch.rand(200, 12, 2, generator=generator, dtype=torch.float64) * 2 - 1
    y = X[:, -3:, 0].mean(1)  # recent inputs: easy for a reservoir
    esn = ESN(2, n_reservoir=60, leak_rate=0.5, input_scale=0.5).double().fit(X, y)
    assert esn.task == "regression"
    assert esn.predict(X).shape == (200,)
    assert esn.score(X, y) > 0.9
    explanation = explain_esn(esn, X, epsilon=0.0)
    assert torch.equal(explanation.target, torch.zeros(200, dtype=torch.long))
    assert abs(explanation.conservation().residual()).max() < 1e-9
    # the last three steps carry the target, so they carry most of the relevance
    profile = explanation.time_profile.abs().mean(0)
    assert profile[-3:].sum() > profile[:-3].sum()


def test_multi_output_regression_needs_a_target():
    X, _ = random_task(n=30)
    esn = ESN(3, n_outputs=2, n_reservoir=10).double().fit(X, X[:, -1, :2])
    assert esn.predict(X).shape == (30, 2)
    with pytest.raises(ValueError, match="target"):
        explain_esn(esn, X)
    assert explain_esn(esn, X, target=1).relevance.shape == X.shape


def test_explanation_fields():
    X, y = random_task(n=5, steps=8)
    esn = ESN(3, n_outputs=2, n_reservoir=10, slices=2).fit(X, y)  # float32 model, float64 input
    explanation = explain_esn(esn, X)
    assert isinstance(explanation, ESNExplanation)
    assert explanation.relevance.shape == (5, 8, 3) and explanation.relevance.dtype == torch.float32
    torch.testing.assert_close(explanation.time_profile, explanation.relevance.sum(2))
    assert explanation.leaked.shape == (5,) and explanation.output.shape == (5, 2)
    assert explanation.slices == 2 and explanation.leak_rate == esn.leak_rate
    assert explanation.theory_decay_rate == pytest.approx(-math.log(1 - esn.leak_rate))


# --------------------------------------------------------------------------------------------
# the model: fit, slices, leak-rate changes, input checks
# --------------------------------------------------------------------------------------------
def test_numpy_and_torch_inputs_agree_and_fit_is_deterministic():
    X, y = random_task(n=30, dtype=torch.float32)
    first = ESN(3, n_outputs=2, n_reservoir=20).fit(X, y)
    second = ESN(3, n_outputs=2, n_reservoir=20).fit(X.numpy(), y.numpy())
    torch.testing.assert_close(first(X), second(X.numpy()))
    other_seed = ESN(3, n_outputs=2, n_reservoir=20, seed=1).fit(X, y)
    assert not torch.allclose(first.weight, other_seed.weight)


def test_state_dict_restores_a_fitted_model():
    X, y = random_task(n=30)
    esn = ESN(3, n_outputs=2, n_reservoir=12, leak_rate=0.2, seed=5).fit(X, y)
    restored = ESN(3, n_outputs=2, n_reservoir=12, leak_rate=0.2, seed=9)
    restored.load_state_dict(esn.state_dict())
    assert restored.task == "classification"
    torch.testing.assert_close(restored(X), esn(X))


def test_reservoir_has_requested_spectral_radius_and_density():
    esn = ESN(4, n_reservoir=200, spectral_radius=0.8, density=0.3)  # float32 buffers
    assert torch.linalg.eigvals(esn.weight.double()).abs().max().item() == pytest.approx(0.8, rel=1e-6)
    assert (esn.weight != 0).double().mean().item() == pytest.approx(0.3, abs=0.02)
    assert esn.input_weight.abs().max() <= 0.1


def test_with_leak_rate_shares_the_reservoir_and_equals_a_fresh_model():
    X, y = random_task(n=40, steps=10)
    base = ESN(3, n_outputs=2, n_reservoir=25, leak_rate=0.05).double().fit(X, y)
    before = base(X).clone()
    changed = base.with_leak_rate(0.4).fit(X, y)
    assert changed.weight is base.weight and changed.leak_rate == 0.4
    torch.testing.assert_close(base(X), before)  # the original keeps its readout
    fresh = ESN(3, n_outputs=2, n_reservoir=25, leak_rate=0.4).double().fit(X, y)
    torch.testing.assert_close(changed(X), fresh(X), rtol=1e-9, atol=1e-12)
    assert base.with_slices(2).fit(X, y).readout_weight.shape == (2, 50)


def test_states_reset_at_every_slice():
    X, _ = random_task(n=4, steps=10)
    esn = ESN(3, n_reservoir=12, leak_rate=0.3, slices=3).double()  # pieces of 4, 3, 3 steps
    states = esn.states(X)
    assert states.shape == (4, 10, 12)
    alone = ESN(3, n_reservoir=12, leak_rate=0.3).double().states(X[:, 4:7])
    torch.testing.assert_close(states[:, 4:7], alone)
    final = esn.final_states(X)
    torch.testing.assert_close(final, torch.cat([states[:, 3], states[:, 6], states[:, 9]], dim=1))


def test_classification_labels_must_fit_n_outputs():
    X, y = random_task(n=20)
    with pytest.raises(ValueError, match="n_outputs=2"):
        ESN(3, n_reservoir=10).fit(X, y)


@pytest.mark.parametrize(
    "bad, message",
    [(float("nan"), "NaN"), (float("inf"), "inf"), (1e20, "fill value")],
)
def test_rejects_missing_and_fill_values(bad, message):
    X, y = random_task(n=10)
    esn = ESN(3, n_outputs=2, n_reservoir=10)
    X[3, 2, 1] = bad
    with pytest.raises(ValueError, match=message):
        esn.fit(X, y)
    X[3, 2, 1] = 0
    esn.fit(X, y)
    X[3, 2, 1] = bad
    with pytest.raises(ValueError, match=message):
        explain_esn(esn, X)


def test_rejects_wrong_shapes_with_a_hint():
    esn = ESN(3, n_outputs=2, n_reservoir=10)
    with pytest.raises(ValueError, match="image_to_sequence"):
        esn.fit(torch.zeros(5, 1, 3, 4), torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match="n_inputs=3"):
        esn.fit(torch.zeros(5, 4, 2), torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match="samples"):
        esn.fit(torch.zeros(5, 4, 3), torch.zeros(6, dtype=torch.long))
    with pytest.raises(RuntimeError, match="fit"):
        esn.predict(torch.zeros(5, 4, 3))
    with pytest.raises(ValueError, match="slices"):
        ESN(3, slices=5, n_reservoir=5).states(torch.zeros(2, 4, 3))


# --------------------------------------------------------------------------------------------
# images <-> sequences, heuristic, decay-rate measurement
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("direction", ["left_to_right", "right_to_left"])
def test_image_sequence_round_trip(direction):
    images = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).reshape(2, 3, 4, 5)
    sequence = image_to_sequence(images, direction)
    assert sequence.shape == (2, 5, 12)
    column = 0 if direction == "left_to_right" else 4
    torch.testing.assert_close(sequence[:, 0], images[:, :, :, column].reshape(2, 12))
    torch.testing.assert_close(sequence_to_image(sequence, channels=3, direction=direction), images)
    torch.testing.assert_close(image_to_sequence(images[:, 0]), image_to_sequence(images[:, :1]))


def test_suggest_leak_rate():
    alpha = suggest_leak_rate(32, keep=0.1)
    assert alpha == pytest.approx(1 - 0.1 ** (1 / 31))
    assert (1 - alpha) ** 31 == pytest.approx(0.1)
    assert suggest_leak_rate(8) > suggest_leak_rate(32)  # shorter sequences (slices) allow faster leaks
    with pytest.raises(ValueError):
        suggest_leak_rate(1)


def test_measure_decay_rate_recovers_an_exponential():
    lags = torch.arange(9, -1, -1, dtype=torch.float64)
    profile = torch.stack([torch.exp(-0.3 * lags), -2 * torch.exp(-0.3 * lags)])
    assert measure_decay_rate(profile) == pytest.approx(0.3, rel=1e-12)
    sliced = torch.cat([torch.exp(-0.5 * torch.arange(4, -1, -1, dtype=torch.float64))] * 3)  # 3 pieces of 5 steps
    assert measure_decay_rate(sliced, slices=3) == pytest.approx(0.5, rel=1e-12)


# --------------------------------------------------------------------------------------------
# two_squares: the paper's claims, measured
# --------------------------------------------------------------------------------------------
def test_two_squares_accuracy_against_leak_rate(squares32, squares100):
    # Small leak rates remember the left square at both sizes.
    for data in (squares32, squares100):
        assert fit_and_score(data, 0.02)[1] >= 0.9
    # At the paper's size (100 columns, the square ~70 steps back) a leak rate of 0.5 forgets it...
    assert fit_and_score(squares100, 0.5)[1] <= 0.7
    # ...while fed right to left (the square enters last) it does not: the drop is memory.
    assert fit_and_score(squares100, 0.5, direction="right_to_left")[1] >= 0.9
    # At 32x32 (~22 steps back) the recurrent weights keep the square up to 0.5; it takes 0.9.
    assert fit_and_score(squares32, 0.5)[1] >= 0.9
    assert fit_and_score(squares32, 0.9)[1] <= 0.75


def test_decay_rate_grows_with_leak_rate_and_stays_below_leak_only_theory(squares32):
    for direction, leak_rates in (
        ("left_to_right", (0.3, 0.5, 0.7, 0.9)),
        ("right_to_left", (0.05, 0.2, 0.5, 0.9)),
    ):
        rates = []
        for leak_rate in leak_rates:
            esn, _, X_test = fit_and_score(squares32, leak_rate, direction)
            rates.append(explain_esn(esn, X_test).decay_rate)
        assert all(later > earlier for earlier, later in zip(rates, rates[1:])), (direction, rates)
        # the recurrent weights carry relevance back too, so it decays slower than the leak alone
        assert all(rate < -math.log(1 - alpha) for rate, alpha in zip(rates, leak_rates)), (direction, rates)


def test_slicing_removes_the_gateway_artifact(squares32):
    leak_rate = 0.6
    mask = squares32.informative_mask
    unsliced, accuracy_unsliced, X_test = fit_and_score(squares32, leak_rate)
    sliced, accuracy_sliced, _ = fit_and_score(squares32, leak_rate, slices=4)
    relevance_unsliced = sequence_to_image(explain_esn(unsliced, X_test).relevance)
    relevance_sliced = sequence_to_image(explain_esn(sliced, X_test).relevance)
    # the artifact is there: the last column gets far more |relevance| than the first
    per_column = relevance_unsliced.abs().sum(dim=(0, 1, 2))
    assert per_column[-1] > 5 * per_column[0]
    assert informative_share(relevance_sliced, mask) > informative_share(relevance_unsliced, mask) + 0.1
    assert accuracy_sliced >= accuracy_unsliced


# --------------------------------------------------------------------------------------------
# masked (land) inputs
# --------------------------------------------------------------------------------------------
def test_masked_points_get_zero_relevance_and_nan_in_maps():
    from lrp_widgets.data import enso_fields

    data = enso_fields(n=120, seed=0)
    ocean = data.ocean
    assert (data.x[:, 0][:, ~ocean] == 0).all()  # land is filled with 0 before the model sees it
    X = image_to_sequence(data.x)  # columns = longitudes
    esn = ESN(X.shape[2], n_outputs=2, n_reservoir=60, leak_rate=0.1, slices=3).fit(X, data.y)
    explanation = explain_esn(esn, X)
    relevance = sequence_to_image(explanation.relevance)
    assert (relevance[:, 0][:, ~ocean] == 0).all()
    assert (relevance[:, 0][:, ocean] != 0).any()
    shown = sequence_to_image(explanation.relevance, mask=ocean)
    assert torch.isnan(shown[:, 0][:, ~ocean]).all()
    assert torch.isfinite(shown[:, 0][:, ocean]).all()
    with pytest.raises(ValueError, match="mask"):
        sequence_to_image(explanation.relevance, mask=ocean[:-1])
    masked_input = np.ma.masked_array(data.x.numpy(), mask=np.broadcast_to(~ocean.numpy(), data.x.shape))
    with pytest.raises(ValueError, match="filled"):
        image_to_sequence(masked_input)
