"""The z+ rule of LRP through time (lrp_widgets/esn/zplus.py) against a slow per-step reference."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lrp_widgets import ESN, explain_esn
from lrp_widgets.esn import piece_bounds, readout_leak

from .esn_reference import params_of
from .esn_zplus_reference import reference_explain_zplus, zplus_rule


def random_task(n=12, steps=9, features=3, seed=0):
    generator = torch.Generator().manual_seed(seed)
    X = torch.rand(n, steps, features, generator=generator, dtype=torch.float64) * 2 - 1
    return X, (X[:, : steps // 2, 0].sum(1) > 0).long()


def fitted(slices=1, seed=0, leak_rate=0.3, **options):
    X, y = random_task(seed=seed)
    esn = ESN(3, n_outputs=2, n_reservoir=20, leak_rate=leak_rate, slices=slices, seed=seed, input_scale=0.5, **options)
    return esn.double().fit(X, y), X


@pytest.mark.parametrize("slices", [1, 2, 4])
@pytest.mark.parametrize("epsilon", [1e-6, 0.1, 0.0])
def test_matches_slow_reference(slices, epsilon):
    esn, X = fitted(slices=slices)
    explanation = explain_esn(esn, X, epsilon=epsilon, rule="zplus")
    relevance, kept, outputs = reference_explain_zplus(params_of(esn), X.numpy(), explanation.target.numpy(), epsilon)
    np.testing.assert_allclose(explanation.output.numpy(), outputs, atol=1e-10)
    np.testing.assert_allclose(explanation.relevance.numpy(), relevance, atol=1e-10, rtol=1e-10)
    np.testing.assert_allclose(explanation.leaked.numpy(), kept, atol=1e-10, rtol=1e-10)


def test_other_target_matches_reference():
    esn, X = fitted()
    target = torch.tensor([0, 1] * 6)
    explanation = explain_esn(esn, X, target=target, rule="zplus")
    relevance, kept, _ = reference_explain_zplus(params_of(esn), X.numpy(), target.numpy(), 1e-6)
    np.testing.assert_allclose(explanation.relevance.numpy(), relevance, atol=1e-10)
    np.testing.assert_allclose(explanation.leaked.numpy(), kept, atol=1e-10)


@pytest.mark.parametrize("slices", [1, 3])
def test_conservation(slices):
    esn, X = fitted(slices=slices, seed=1)
    explanation = explain_esn(esn, X, rule="zplus")
    np.testing.assert_allclose(explanation.conservation().residual(), 0.0, atol=1e-10)
    assert explanation.leaked.abs().max() > 1e-3  # z+ does leak on signed states: the test is not vacuous


def test_no_bias_and_positive_everything_conserves_exactly():
    # All inputs, weights and states positive, no biases, eps = 0: z+ = LRP-0 and nothing leaks.
    esn, _ = fitted()
    esn.input_weight = esn.input_weight.abs()
    esn.weight = esn.weight.abs() * 0.5
    esn.bias = torch.zeros_like(esn.bias)
    X = torch.rand(6, 7, 3, dtype=torch.float64) + 0.1
    esn.fit(X, torch.tensor([0, 1] * 3))
    esn.readout_weight = esn.readout_weight.abs()
    esn.readout_bias = torch.zeros_like(esn.readout_bias)
    explanation = explain_esn(esn, X, epsilon=0.0, rule="zplus")
    np.testing.assert_allclose(explanation.leaked.numpy(), 0.0, atol=1e-12)
    np.testing.assert_allclose(explanation.relevance.sum((1, 2)).numpy(), explanation.explained_output.numpy(), rtol=1e-12)
    # and then it equals the epsilon rule at eps = 0
    epsilon_rule = explain_esn(esn, X, epsilon=0.0)
    np.testing.assert_allclose(explanation.relevance.numpy(), epsilon_rule.relevance.numpy(), atol=1e-12)


def test_zplus_rule_reference_on_a_small_layer():
    # Two outputs, three inputs: by hand.
    C = np.array([[1.0, -2.0, 3.0], [-1.0, -1.0, 0.0]])
    relevance, kept = zplus_rule(C, np.array([1.0, 0.0]), np.array([5.0, 2.0]), 0.0)
    np.testing.assert_allclose(relevance, [5.0 * 1 / 5, 0.0, 5.0 * 3 / 5])
    assert kept == pytest.approx(1.0 + 2.0)  # the bias share of output 0, all of output 1


def test_readout_leak_matches_explanations():
    esn, X = fitted(seed=2)
    output, features = esn(X), esn.final_states(X)
    for rule in ("epsilon", "zplus"):
        explanation = explain_esn(esn, X, rule=rule)
        part = readout_leak(output, features, esn, explanation.target, rule=rule)
        assert part.shape == (X.shape[0],)
        assert (part.abs() <= explanation.leaked.abs() + explanation.explained_output.abs()).all()
    with pytest.raises(ValueError, match="rule"):
        readout_leak(output, features, esn, explanation.target, rule="gamma")


def test_piece_bounds_like_array_split():
    assert piece_bounds(10, 3) == [(0, 4), (4, 7), (7, 10)]


def test_bad_input():
    esn, X = fitted()
    with pytest.raises(TypeError, match="ESN"):
        explain_esn(torch.nn.Linear(2, 2), X, rule="zplus")
    with pytest.raises(ValueError, match="epsilon"):
        explain_esn(esn, X, epsilon=-1, rule="zplus")
    with pytest.raises(ValueError, match="NaN"):
        explain_esn(esn, X.masked_fill(X > 0.9, float("nan")), rule="zplus")


def test_unknown_rule_is_named():
    esn, X = fitted()
    with pytest.raises(ValueError, match="rule must be one of"):
        explain_esn(esn, X, rule="alpha_beta")
