"""Every rule against the explicit matrix form (tests/reference.py), float64, to 1e-10."""
import zlib

import pytest
import torch
from torch import nn

from lrp_widgets import Composite, explain, rules
from lrp_widgets.engine import ops

from .reference import reference_rule

RULES = [
    ("zero", rules.Zero(), {}),
    ("epsilon", rules.Epsilon(0.1), {"epsilon": 0.1}),
    ("gamma", rules.Gamma(0.25), {"gamma": 0.25}),
    ("gamma", rules.Gamma(2.0, epsilon=1e-3), {"gamma": 2.0, "epsilon": 1e-3}),
    ("alphabeta", rules.AlphaBeta(2.0, 1.0), {"alpha": 2.0, "beta": 1.0}),
    ("alphabeta", rules.AlphaBeta(1.5, 0.5), {"alpha": 1.5, "beta": 0.5}),
    ("zplus", rules.ZPlus(), {}),
    ("zbox", rules.ZBox(-1.5, 2.0), {"low": -1.5, "high": 2.0}),
    ("flat", rules.Flat(), {}),
    ("wsquare", rules.WSquare(), {}),
]

LAYERS = {
    "linear": (lambda: nn.Linear(6, 4), (6,)),
    "linear_nobias": (lambda: nn.Linear(5, 3, bias=False), (5,)),
    "conv2d": (lambda: nn.Conv2d(2, 3, 3, padding=1), (2, 5, 5)),
    "conv2d_strided": (lambda: nn.Conv2d(2, 2, 3, stride=2, padding=1, bias=False), (2, 6, 6)),
    "conv1d": (lambda: nn.Conv1d(2, 3, 3, dilation=2), (2, 9)),
}


def _single_layer(layer):
    return nn.Sequential(layer, nn.Flatten()).double()


@pytest.mark.parametrize("layer_name", list(LAYERS))
@pytest.mark.parametrize("rule_name,rule,params", RULES, ids=[f"{r[0]}-{i}" for i, r in enumerate(RULES)])
@pytest.mark.parametrize("positive_input", [True, False])
def test_rule_matches_explicit_matrix_form(layer_name, rule_name, rule, params, positive_input):
    torch.manual_seed(zlib.crc32(f"{layer_name}-{rule_name}".encode()))
    make, in_shape = LAYERS[layer_name]
    layer = make().double()
    model = _single_layer(layer)
    x = torch.randn(3, *in_shape, dtype=torch.float64)
    if positive_input:
        x = x.abs()
    if rule_name == "zbox":
        x = x.clamp(-1.5, 2.0)
    n_out = model(x).shape[1]
    R = torch.randn(3, n_out, dtype=torch.float64)
    result = explain(model, x, composite=Composite(name_rules={"0": rule}), initial_relevance=R)
    for n in range(3):
        expected = reference_rule(rule_name, layer, x[n], R[n], **params)
        torch.testing.assert_close(result.relevance[n], expected, rtol=1e-10, atol=1e-10)


def test_pass_rule_keeps_relevance():
    model = nn.Sequential(nn.Tanh(), nn.Identity()).double()
    x = torch.randn(4, 5, dtype=torch.float64)
    R = torch.randn(4, 5, dtype=torch.float64)
    result = explain(model, x, initial_relevance=R)
    torch.testing.assert_close(result.relevance, R, rtol=0, atol=0)


def test_gradient_rule_on_tanh_is_the_gradient():
    model = nn.Sequential(nn.Tanh()).double()
    x = torch.randn(2, 3, dtype=torch.float64)
    R = torch.ones(2, 3, dtype=torch.float64)
    result = explain(model, x, composite=Composite(name_rules={"0": rules.Gradient()}), initial_relevance=R)
    torch.testing.assert_close(result.relevance, 1 - torch.tanh(x) ** 2)


def test_alpha_beta_requires_alpha_minus_beta_one():
    with pytest.raises(ValueError, match="alpha - beta = 1"):
        rules.AlphaBeta(2.0, 2.0)


@pytest.mark.parametrize("rule", [rules.Zero(), rules.ZPlus(), rules.ZBox(0.0, 1.0), rules.Flat(), rules.AlphaBeta(2, 1)])
def test_bias_free_rules_conserve_per_layer(rule):
    """Without bias these rules redistribute exactly what arrives (stabilizer aside)."""
    torch.manual_seed(1)
    layer = nn.Conv2d(3, 4, 3, padding=1, bias=False).double()
    model = _single_layer(layer)
    x = torch.rand(2, 3, 6, 6, dtype=torch.float64)
    R = torch.rand(2, 4 * 36, dtype=torch.float64)
    result = explain(model, x, composite=Composite(name_rules={"0": rule}), initial_relevance=R)
    torch.testing.assert_close(result.relevance.sum((1, 2, 3)), R.sum(1), rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("module", [
    nn.LayerNorm(6), nn.LayerNorm(6, elementwise_affine=False), nn.LayerNorm((5, 6)), nn.RMSNorm(6),
    nn.RMSNorm((5, 6), elementwise_affine=False),
])
def test_normalization_closed_form_vjp_is_autograds(module):
    # LayerNorm/RMSNorm move relevance back by their backward written out; it must be autograd's, bit for bit
    torch.manual_seed(0)
    with torch.no_grad():
        if getattr(module, "weight", None) is not None:
            module.weight.uniform_(-2, 2)
    a, s = torch.randn(4, 5, 6), torch.randn(4, 5, 6)
    function = ops.normalization(module, a)
    assert torch.equal(ops.FunctionOp(function).vjp(a, None, s), ops.autograd_vjp(function, a, s))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_stabilize_and_divide_equal_their_where_forms(dtype):
    # the fast forms must give the where forms' numbers bit for bit, zeros of both signs, inf and nan included
    z = torch.tensor([0.0, -0.0, 1e-9, -1e-9, 2.5, -3.0, float("inf"), float("-inf"), float("nan")], dtype=dtype)
    R = torch.tensor([1.0, -2.0, 0.5, 3.0, -1.5, 0.0, 1.0, 2.0, 1.0], dtype=dtype)
    eps = 1e-6
    slow = torch.where(z >= 0, z + eps, z - eps)
    assert torch.equal(rules.stabilize(z, eps).isnan(), slow.isnan())
    assert torch.equal(rules.stabilize(z, eps)[:-1], slow[:-1])
    assert torch.equal(rules.divide(R, z, eps)[:-1], (R / slow)[:-1])  # written over the stabilizer's buffer
    zero = torch.where(z == 0, torch.zeros_like(z), R / torch.where(z == 0, torch.ones_like(z), z))
    fast = rules.divide(R, z, 0.0)
    assert torch.equal(fast[:-1], zero[:-1]) and fast[-1].isnan() and zero[-1].isnan()
    assert torch.equal(fast[:2].signbit(), zero[:2].signbit())  # +0, not -0, where z is 0
