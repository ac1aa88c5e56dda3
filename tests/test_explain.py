"""explain(): the worked example, Captum, gradient x input, conservation, BatchNorm folding,
the model left unchanged, layers and conservation tables, and clear errors."""
import copy

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import lrp_widgets
from lrp_widgets import Composite, Sum, composites, explain, rules
from lrp_widgets.engine.errors import FunctionalCallError, InputError, UnsupportedModuleError

from .reference import worked_example_network


def small_cnn(bias=True):
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1, bias=bias),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3, padding=1, bias=bias),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(24, 10, bias=bias),
        nn.ReLU(),
        nn.Dropout(0.3),
        nn.Linear(10, 5, bias=bias),
    ).double()


# -- the slides' worked example -----------------------------------------------------------------
def test_worked_example_from_the_slides():
    net, x, output_relevance = worked_example_network()
    result = explain(net, x, composite="lrp0", layers=True, initial_relevance=output_relevance)
    hidden = result.layers["2"][0]  # relevance at the input of the last layer = R(h1..h4)
    torch.testing.assert_close(hidden, torch.tensor([0.28, 0.27, 0.245, 0.205], dtype=torch.float64))
    # h1 alone: its 0.28 goes to x1 and x2 as 0.6 : 0.4
    only_h1 = torch.tensor([[0.28, 0.0, 0.0, 0.0]], dtype=torch.float64)
    first = explain(net[:1], x, composite="lrp0", initial_relevance=only_h1)
    torch.testing.assert_close(first.relevance[0], torch.tensor([0.168, 0.112], dtype=torch.float64))
    torch.testing.assert_close(result.relevance.sum(), torch.tensor(1.0, dtype=torch.float64))


# -- Captum --------------------------------------------------------------------------------------
def test_epsilon_composite_matches_captum():
    from captum.attr import LRP

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 5, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(5, 4, 3), nn.ReLU(),
        nn.AdaptiveAvgPool2d(3), nn.Conv2d(4, 8, 3), nn.ReLU(),
    ).double()

    class Head(nn.Module):  # Captum rejects nn.Flatten, so flatten by a view inside a container
        def __init__(self):
            super().__init__()
            self.body = model
            self.fc1 = nn.Linear(8, 6).double()
            self.relu = nn.ReLU()
            self.fc2 = nn.Linear(6, 4).double()

        def forward(self, x):
            return self.fc2(self.relu(self.fc1(self.body(x).view(x.shape[0], -1))))

    net = Head().eval()
    x = torch.randn(4, 3, 10, 10, dtype=torch.float64)
    target = torch.tensor([0, 1, 2, 3])
    ours = explain(net, x, target=target, composite=composites.epsilon(1e-9)).relevance
    theirs = LRP(copy.deepcopy(net)).attribute(x.clone(), target=target)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-10)


# -- LRP-0 = gradient x input, conservation -----------------------------------------------------
def test_lrp0_equals_gradient_times_input_on_bias_free_relu_nets():
    torch.manual_seed(3)
    model = small_cnn(bias=False)
    model[5] = nn.MaxPool2d(2)  # keep to ReLU and max pooling: average pooling is not gradient x input
    model[7] = nn.Linear(24, 10, bias=False).double()
    x = torch.rand(3, 3, 8, 8, dtype=torch.float64)
    result = explain(model, x, composite="lrp0")
    leaf = x.clone().requires_grad_(True)
    out = model.eval()(leaf)
    (grad,) = torch.autograd.grad(out.gather(1, result.target[:, None]).sum(), leaf)
    torch.testing.assert_close(result.relevance, grad * x, rtol=1e-10, atol=1e-12)
    logit = out.gather(1, result.target[:, None]).squeeze(1).detach()
    torch.testing.assert_close(result.relevance.sum((1, 2, 3)), logit, rtol=1e-8, atol=1e-12)


def test_conservation_table_lists_every_layer():
    torch.manual_seed(0)
    model = small_cnn(bias=False)
    result = explain(model, torch.rand(2, 3, 8, 8, dtype=torch.float64), composite="lrp0", layers=True)
    table = result.conservation()
    assert table.names[0] == "output" and table.names[-1] == "input"
    assert table.names[1:-1] == list(reversed(list(result.layers)))
    np.testing.assert_allclose(table.ratio(), 1.0, rtol=1e-8)
    assert "sample 0" in repr(table) and "<table>" in table._repr_html_()
    # with biases something is absorbed, and the table shows it
    biased = explain(small_cnn(bias=True), torch.rand(2, 3, 8, 8, dtype=torch.float64), composite="epsilon")
    assert not np.allclose(biased.conservation().ratio()[-1], 1.0)


def test_layers_are_in_forward_order_and_shaped_like_module_inputs():
    torch.manual_seed(0)
    model = small_cnn()
    x = torch.rand(2, 3, 8, 8, dtype=torch.float64)
    result = explain(model, x, layers=True)
    assert list(result.layers) == [str(i) for i in range(len(model))]
    assert result.layers["0"].shape == x.shape
    assert result.layers["7"].shape == (2, 24)
    torch.testing.assert_close(result.layers["0"], result.relevance)
    assert explain(model, x).layers is None


def test_residual_sum_module_conserves():
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = nn.Sequential(nn.Linear(6, 6, bias=False), nn.ReLU())
            self.add = Sum()
            self.head = nn.Linear(6, 3, bias=False)

        def forward(self, x):
            return self.head(self.add(x, self.inner(x)))

    torch.manual_seed(0)
    model = Block().double()
    x = torch.rand(5, 6, dtype=torch.float64)
    result = explain(model, x, composite="lrp0")
    logit = result.output.gather(1, result.target[:, None]).squeeze(1)
    torch.testing.assert_close(result.relevance.sum(1), logit, rtol=1e-6, atol=1e-9)


# -- BatchNorm -----------------------------------------------------------------------------------
def _trained_bn_model():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
        nn.Linear(4 * 25, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3),
    ).double()
    model.train()
    with torch.no_grad():
        for _ in range(5):
            model(torch.randn(16, 2, 5, 5, dtype=torch.float64) * 2 + 1)
    for module in model:
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.5, 0.5)
    return model.eval()


def test_batchnorm_folding_leaves_output_unchanged_and_equals_a_folded_copy():
    model = _trained_bn_model()
    x = torch.rand(3, 2, 5, 5, dtype=torch.float64)
    before = copy.deepcopy(model.state_dict())
    result = explain(model, x, composite="epsilon_plus")
    torch.testing.assert_close(result.output, model(x), rtol=0, atol=0)
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key])

    # an explicitly folded copy (written here, not with the library's code)
    folded = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(100, 8), nn.ReLU(), nn.Linear(8, 3)
    ).double()
    with torch.no_grad():
        for (layer, bn), target in [((model[0], model[1]), folded[0]), ((model[4], model[5]), folded[3])]:
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            shape = (-1,) + (1,) * (layer.weight.dim() - 1)
            target.weight.copy_(layer.weight * scale.reshape(shape))
            target.bias.copy_((layer.bias - bn.running_mean) * scale + bn.bias)
        folded[5].load_state_dict(model[7].state_dict())
    torch.testing.assert_close(folded(x), model(x))
    expected = explain(folded, x, composite="epsilon_plus")
    torch.testing.assert_close(result.relevance, expected.relevance, rtol=1e-9, atol=1e-12)


def test_unfolded_batchnorm_is_an_affine_epsilon_layer():
    model = nn.Sequential(nn.BatchNorm1d(4), nn.Linear(4, 2)).double().eval()
    model[0].running_mean.fill_(0.5)
    model[0].running_var.fill_(2.0)
    x = torch.rand(3, 4, dtype=torch.float64)
    result = explain(model, x, composite="epsilon")
    assert torch.isfinite(result.relevance).all()
    torch.testing.assert_close(result.output, model(x))


# -- the model is never changed ------------------------------------------------------------------
def _assert_untouched(model, before_state, before_flags):
    for key, value in model.state_dict().items():
        assert torch.equal(value, before_state[key]), key
    for module in model.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks and not module._backward_hooks
    assert [m.training for m in model.modules()] == before_flags
    assert all(p.grad is None for p in model.parameters())


def test_model_input_and_modes_unchanged():
    torch.manual_seed(0)
    model = small_cnn().train()
    model[3].eval()  # a mixed state must come back as it was
    flags = [m.training for m in model.modules()]
    state = copy.deepcopy(model.state_dict())
    x = torch.rand(2, 3, 8, 8, dtype=torch.float64)
    x_copy = x.clone()
    for name in composites.NAMES:
        explain(model, x, composite=name, layers=True)
    _assert_untouched(model, state, flags)
    assert torch.equal(x, x_copy) and not x.requires_grad
    x.requires_grad_(True)
    explain(model, x)
    assert x.requires_grad and x.grad is None


def test_hooks_removed_and_modes_restored_after_an_error():
    model = nn.Sequential(nn.Linear(4, 4), nn.Hardshrink()).train()
    flags = [m.training for m in model.modules()]
    state = copy.deepcopy(model.state_dict())
    with pytest.raises(UnsupportedModuleError):
        explain(model, torch.rand(2, 4))
    _assert_untouched(model, state, flags)


# -- clear errors ----------------------------------------------------------------------------------
def test_unsupported_module_named_with_path_type_and_supported_list():
    model = nn.Sequential(nn.Linear(4, 4), nn.Sequential(nn.ReLU(), nn.Hardshrink()))
    with pytest.raises(UnsupportedModuleError) as info:
        explain(model, torch.rand(2, 4))
    message = str(info.value)
    assert "'1.1'" in message and "Hardshrink" in message and "Supported layers" in message and "Conv2d" in message


def test_functional_addition_is_detected():
    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            return self.fc(x) + x

    with pytest.raises(FunctionalCallError, match=r"`add`.*Sum"):  # the hook path alone
        explain(Residual(), torch.rand(2, 4), graph=False)
    # by default the model is explained as written, through its traced graph (tests/test_graph.py)
    assert "add" in explain(Residual(), torch.rand(2, 4), layers=True).layers


def test_view_and_functional_relu_outside_modules_are_fine():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3)
            self.fc = nn.Linear(2 * 4 * 4, 3)

        def forward(self, x):
            return self.fc(torch.relu(self.conv(x)).view(x.size(0), -1))

    result = explain(Net(), torch.rand(2, 1, 6, 6))
    assert result.relevance.shape == (2, 1, 6, 6)


@pytest.mark.parametrize("bad,match", [(float("nan"), "NaN/inf"), (float("inf"), "NaN/inf"), (1e20, "fill value")])
def test_bad_values_in_x(bad, match):
    x = torch.rand(2, 4)
    x[1, 2] = bad
    with pytest.raises(InputError, match=match):
        explain(nn.Linear(4, 2), x)


def test_target_out_of_range_and_wrong_length():
    model = nn.Linear(4, 3)
    with pytest.raises(InputError, match="out of range.*0..2"):
        explain(model, torch.rand(2, 4), target=3)
    with pytest.raises(InputError, match="one class per sample"):
        explain(model, torch.rand(2, 4), target=[0, 1, 2])


def test_shape_the_model_rejects():
    with pytest.raises(InputError, match=r"rejected an input of shape \(2, 5\)"):
        explain(nn.Linear(4, 3), torch.rand(2, 5))


def test_targets_int_tensor_and_numpy():
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    x = torch.rand(3, 4)
    by_int = explain(model, x, target=1)
    assert by_int.target.tolist() == [1, 1, 1]
    by_list = explain(model, x, target=np.array([0, 1, 2]))
    assert by_list.target.tolist() == [0, 1, 2]
    predicted = explain(model, x)
    assert predicted.target.tolist() == model(x).argmax(1).tolist()


def test_maxpool_as_average_on_request():
    torch.manual_seed(0)
    model = nn.Sequential(nn.MaxPool2d(2), nn.Flatten()).double()
    x = torch.rand(1, 1, 2, 2, dtype=torch.float64)
    R = torch.ones(1, 1, dtype=torch.float64)
    winner = explain(model, x, initial_relevance=R).relevance.flatten()
    assert winner.count_nonzero() == 1 and winner[x.flatten().argmax()] == 1
    average = explain(model, x, composite=Composite({nn.AvgPool2d: rules.Zero()}, maxpool="average"), initial_relevance=R).relevance.flatten()
    torch.testing.assert_close(average, x.flatten() / x.sum())


def test_composite_by_name_glob_and_first_layer():
    model = small_cnn()
    x = torch.rand(2, 3, 8, 8, dtype=torch.float64)
    composite = Composite(layer_rules={nn.Conv2d: rules.ZPlus()}, name_rules={"1[0-9]": rules.Zero()}, first=rules.Flat())
    result = explain(model, x, composite=composite, layers=True)
    # the flat first layer spreads relevance independently of the pixel values: both samples'
    # maps are the same up to the relevance each received at the first layer's output
    first_out = result.layers["1"].flatten(1)
    assert result.relevance.shape == x.shape
    reference = explain(model[1:], model[0](x), composite=Composite(
        layer_rules={nn.Conv2d: rules.ZPlus()}, name_rules={"10": rules.Zero()}), layers=True)
    torch.testing.assert_close(reference.relevance.flatten(1), first_out)
    # a rule given to a module that cannot take it is the composite's error, naming both (issue 16)
    with pytest.raises(ValueError, match=r"Flatten.*cannot take it.*reshape takes Pass or Gradient"):
        explain(model, x, composite=Composite(name_rules={"6": rules.Zero()}))
    with pytest.raises(ValueError, match="unknown composite"):
        explain(model, x, composite="nope")


# -- property tests ---------------------------------------------------------------------------------
@st.composite
def relu_nets(draw):
    widths = draw(st.lists(st.integers(1, 6), min_size=1, max_size=4))
    activation = draw(st.sampled_from([nn.ReLU, nn.Tanh, nn.LeakyReLU]))
    n_in = draw(st.integers(1, 6))
    layers, previous = [], n_in
    for width in widths:
        layers += [nn.Linear(previous, width, bias=False), activation()]
        previous = width
    layers.append(nn.Linear(previous, draw(st.integers(1, 4)), bias=False))
    seed = draw(st.integers(0, 2**16))
    torch.manual_seed(seed)
    return nn.Sequential(*layers).double(), n_in, draw(st.integers(1, 4))


@settings(max_examples=40, deadline=None)
@given(relu_nets())
def test_properties_on_random_architectures(net_spec):
    model, n_in, batch = net_spec
    x = torch.rand(batch, n_in, dtype=torch.float64) + 0.1
    state = copy.deepcopy(model.state_dict())
    result = explain(model, x, composite="lrp0")
    again = explain(model, x, composite="lrp0")
    assert result.relevance.shape == x.shape and result.target.shape == (batch,)
    assert torch.equal(result.relevance, again.relevance)  # deterministic
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key])
    # bias-free, eps = 0: input relevance adds up to the target logit unless a denominator was 0
    table = result.conservation()
    denominators_fine = np.all(np.isfinite(table.sums))
    logit = result.output.gather(1, result.target[:, None]).squeeze(1).numpy()
    if denominators_fine and np.all(np.abs(logit) > 1e-6):
        zero_layer = np.any(np.abs(table.sums[1:]) < 1e-12, axis=0)
        np.testing.assert_allclose(table.sums[-1][~zero_layer], logit[~zero_layer], rtol=1e-6, atol=1e-9)


def test_numpy_input_and_dtype_follow_the_model():
    model = nn.Linear(4, 2)
    result = explain(model, np.random.rand(3, 4))
    assert result.relevance.dtype == torch.float32


def test_public_api_names():
    for name in ["explain", "Explanation", "rules", "composites", "Composite", "Sum"]:
        assert hasattr(lrp_widgets, name)
    for name in ["Zero", "Epsilon", "Gamma", "AlphaBeta", "ZPlus", "ZBox", "Flat", "WSquare", "Pass"]:
        assert hasattr(lrp_widgets.rules, name)
    for name in ["lrp0", "epsilon", "epsilon_plus", "epsilon_plus_flat", "epsilon_gamma_box", "epsilon_alpha2_beta1"]:
        assert isinstance(getattr(lrp_widgets.composites, name)(), Composite)


def test_masks_give_conditional_relevance_that_adds_up():
    """Masking complementary neuron sets at a layer splits the relevance map exactly (rules are linear in R)."""
    torch.manual_seed(0)
    model = small_cnn()
    x = torch.rand(2, 3, 8, 8, dtype=torch.float64)
    full = explain(model, x)
    keep = torch.zeros(1, 6, 1, 1, dtype=torch.float64)
    keep[:, :2] = 1
    part = explain(model, x, masks={"4": keep})
    rest = explain(model, x, masks={"4": 1 - keep})
    torch.testing.assert_close(part.relevance + rest.relevance, full.relevance)
    assert not torch.allclose(part.relevance, full.relevance)
    with pytest.raises(InputError, match="did not call"):
        explain(model, x, masks={"nope": keep})


def test_a_module_called_twice_gets_two_stages_and_conserves():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4, bias=False)
            self.act = nn.ReLU()
            self.head = nn.Linear(4, 2, bias=False)

        def forward(self, x):
            return self.head(self.act(self.fc(self.act(self.fc(x)))))

    torch.manual_seed(0)
    model = Twice().double()
    with torch.no_grad():
        model.fc.weight.abs_()  # positive weights keep the activations alive for the check
    x = torch.rand(3, 4, dtype=torch.float64)
    result = explain(model, x, composite="lrp0", layers=True)
    assert list(result.layers) == ["fc", "act", "fc#2", "act#2", "head"]
    logit = result.output.gather(1, result.target[:, None]).squeeze(1)
    torch.testing.assert_close(result.relevance.sum(1), logit)
