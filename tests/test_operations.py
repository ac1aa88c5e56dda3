"""Each operation's rule (engine/operations.py) against an explicit float64 reference, and conservation."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lrp_widgets import composites, explain, rules
from lrp_widgets.engine import operations, ops
from tests import operations_reference as reference
from tests.operations_reference import Op

torch.set_num_threads(1)
N = 3


def relevance(function, x, R, composite="lrp0", **modules):
    result = explain(Op(function, **modules), x, composite=composite, initial_relevance=R, graph=True)
    return result.relevance


def data(*shape, seed=0, low=0.5):
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(*shape, generator=generator, dtype=torch.float64) + low


def conserved(Rx, R, rtol=1e-7):
    """Input relevance sums to output relevance (``rtol``: what a stabilizer of 1e-6 may absorb)."""
    torch.testing.assert_close(Rx.flatten(1).sum(1), R.flatten(1).sum(1), rtol=rtol, atol=1e-12)


def test_addition_splits_in_proportion_with_broadcasting():
    x, R = data(N, 4), data(N, 3, seed=1)
    Rx = relevance(lambda m, x: x[:, :3] + x[:, 3:], x, R)
    for n in range(N):
        Ra, Rb = reference.add([x[n, :3], x[n, 3:]], R[n])
        torch.testing.assert_close(Rx[n], torch.cat([Ra, Rb]))
    conserved(Rx, R)


def test_subtraction_and_in_place_addition():
    x, R = data(N, 6), data(N, 3, seed=1)

    def function(m, x):
        out = x[:, :3].clone()
        out += x[:, 3:]  # in place, as torchvision's `out += identity`
        return out - 0.5 * x[:, 3:].detach()  # a constant term absorbs its share, as a bias

    Rx = relevance(function, x, R)
    for n in range(N):
        a, b = x[n, :3], x[n, 3:]
        R_sum, _ = reference.add([a + b, 0.5 * b], R[n], signs=[1, -1])
        Ra, Rb = reference.add([a, b], R_sum)
        torch.testing.assert_close(Rx[n], torch.cat([Ra, Rb]))
    torch.testing.assert_close(Rx.sum(1), ((x[:, :3] + x[:, 3:]) / (x[:, :3] + 0.5 * x[:, 3:]) * R).sum(1))


@pytest.mark.parametrize("reduce", ["mean", "sum"])
def test_mean_and_sum_over_axes_are_average_pooling(reduce):
    x, R = data(N, 2, 5), data(N, 2, seed=1)
    Rx = relevance(lambda m, x: getattr(x, reduce)(-1), x, R)
    for c in range(2):
        torch.testing.assert_close(Rx[:, c], reference.mean_rows(x[:, c], R[:, c]))
    conserved(Rx, R)
    both = relevance(lambda m, x: getattr(torch, reduce)(x, (1, 2), keepdim=True).flatten(1), x, R[:, :1])
    torch.testing.assert_close(both.flatten(1), reference.mean_rows(x.flatten(1), R[:, 0]))


MOVES = {
    "permute+reshape": lambda x: x.permute(0, 2, 1).reshape(x.shape[0], -1),
    "flatten": lambda x: torch.flatten(x, 1),
    "cat+index": lambda x: torch.cat([x[:, 1], x[:, 0, 1:]], 1),
    "stack+split": lambda x: torch.stack([x.split([1, 1], dim=1)[1], x.split([1, 1], dim=1)[0]], 1).flatten(1),
    "transpose+view": lambda x: x.transpose(1, 2).contiguous().view(x.shape[0], 6),
    "chunk+unbind": lambda x: torch.cat([x.flatten(1).chunk(3, dim=1)[2], torch.unbind(x, 1)[0]], 1),
}


@pytest.mark.parametrize("name", list(MOVES))
def test_relevance_follows_the_data(name):
    move = MOVES[name]
    x = data(N, 2, 3)
    R = data(*move(x).shape, seed=1)
    Rx = relevance(lambda m, x: move(x), x, R)
    for n in range(N):
        torch.testing.assert_close(Rx[n], reference.follow(lambda t: move(t[None])[0], x.shape[1:], R[n]))
    if name != "cat+index":  # indexing drops x[:, 0, 0]: the rest is conserved
        conserved(Rx, R)


def test_gated_product_signal_takes_all():
    x, R = data(N, 6), data(N, 3, seed=1)
    Rx = relevance(lambda m, x: x[:, :3] * torch.sigmoid(x[:, 3:]), x, R)
    gate = torch.sigmoid(x[:, 3:])
    for n in range(N):
        Rs, Rg = reference.product(x[n, :3], gate[n], R[n], shares=[1.0, 0.0])
        torch.testing.assert_close(Rx[n], torch.cat([Rs, Rg]))
    assert Rx[:, 3:].abs().max() == 0
    conserved(Rx, R, rtol=1e-5)
    # the gate second or first, through a reshape and a module: the same choice
    swapped = relevance(lambda m, x: m.gate(x[:, 3:]).reshape(N, 3) * x[:, :3], x, R, gate=nn.Sigmoid())
    torch.testing.assert_close(swapped, Rx)


def test_product_of_two_activations_without_a_gate_is_uniform_and_explicit_rules_override():
    x, R = data(N, 6), data(N, 3, seed=1)
    Rx = relevance(lambda m, x: x[:, :3] * x[:, 3:], x, R)
    for n in range(N):
        Ra, Rb = reference.product(x[n, :3], x[n, 3:], R[n], shares=[0.5, 0.5])
        torch.testing.assert_close(Rx[n], torch.cat([Ra, Rb]))
    conserved(Rx, R, rtol=1e-5)
    second = composites.Composite(name_rules={"mul": operations.Gated(signal=1)})
    Rx = relevance(lambda m, x: x[:, :3] * x[:, 3:], x, R, composite=second)
    torch.testing.assert_close(Rx[:, 3:], R, rtol=1e-5, atol=1e-12)
    assert Rx[:, :3].abs().max() == 0


def test_division_holds_the_denominator_constant_and_constants_scale():
    x, R = data(N, 6), data(N, 3, seed=1)
    Rx = relevance(lambda m, x: x[:, :3] / x[:, 3:], x, R)
    torch.testing.assert_close(Rx, torch.cat([R, torch.zeros_like(R)], 1), rtol=1e-5, atol=1e-12)
    for function in (lambda m, x: 3.0 * x, lambda m, x: x / 2, lambda m, x: -x, lambda m, x: x * m.scale):
        scaled = Op(function)
        scaled.register_buffer("scale", torch.tensor([2.0, -1.0, 0.5], dtype=torch.float64))
        Rx = explain(scaled, x[:, :3], composite="lrp0", initial_relevance=R, graph=True).relevance
        torch.testing.assert_close(Rx, R, rtol=1e-5, atol=1e-12)


def test_matmul_of_two_activations_is_uniform():
    x = data(N, 12)
    R = data(N, 4, seed=1)
    Rx = relevance(lambda m, x: (x[:, :6].reshape(N, 2, 3) @ x[:, 6:].reshape(N, 3, 2)).flatten(1), x, R)
    for n in range(N):
        RA, RB = reference.matmul_uniform(x[n, :6].reshape(2, 3), x[n, 6:].reshape(3, 2), R[n].reshape(2, 2))
        torch.testing.assert_close(Rx[n], torch.cat([RA.flatten(), RB.flatten()]))
    conserved(Rx, R, rtol=1e-5)


def test_matmul_with_a_parameter_and_functional_linear_are_linear_layers():
    torch.manual_seed(0)
    W, b = torch.randn(3, 4, dtype=torch.float64), torch.randn(3, dtype=torch.float64)
    x, R = data(N, 4), data(N, 3, seed=1)
    eps = composites.epsilon(0.1)
    holder = nn.Linear(4, 3).double()
    holder.weight.data, holder.bias.data = W.clone(), b.clone()
    Rmatmul = relevance(lambda m, x: x @ m.fc.weight.T, x, R, composite=eps, fc=holder)
    Rlinear = relevance(lambda m, x: F.linear(x, m.fc.weight, m.fc.bias), x, R, composite=eps, fc=holder)
    for n in range(N):
        torch.testing.assert_close(Rmatmul[n], reference.linear_epsilon(x[n], W, None, R[n], 0.1))
        torch.testing.assert_close(Rlinear[n], reference.linear_epsilon(x[n], W, b, R[n], 0.1))


@pytest.mark.parametrize("composite", ["epsilon_plus_flat", "epsilon_gamma_box", "epsilon_alpha2_beta1", "lrp0"])
def test_functional_conv_and_linear_take_their_modules_rules(composite):
    torch.manual_seed(1)
    conv, fc = nn.Conv2d(2, 3, 3, stride=2, padding=1).double(), nn.Linear(12, 4).double()
    x = torch.rand(N, 2, 4, 4, dtype=torch.float64)

    def functional(m, x):
        h = F.relu(F.conv2d(x, m.conv.weight, m.conv.bias, 2, 1))
        return F.linear(F.max_pool2d(h, 1).flatten(1), m.fc.weight, m.fc.bias)

    def modules(m, x):
        return m.fc(m.flatten(m.pool(m.relu(m.conv(x)))))

    parts = dict(conv=conv, fc=fc)
    written = explain(Op(functional, **parts), x, composite=composite, graph=True)
    as_modules = explain(Op(modules, relu=nn.ReLU(), pool=nn.MaxPool2d(1), flatten=nn.Flatten(), **parts), x,
                         composite=composite, graph=False)
    torch.testing.assert_close(written.relevance, as_modules.relevance, rtol=0, atol=1e-10)


def test_functional_pooling_and_interpolation_take_their_modules_rules():
    x = data(N, 2, 4, 4)
    for maxpool in ("winner", "average"):
        composite = composites.Composite({nn.Linear: rules.Epsilon()}, maxpool=maxpool)
        pairs = [
            (lambda m, x: F.max_pool2d(x, 2).flatten(1), nn.MaxPool2d(2)),
            (lambda m, x: F.avg_pool2d(x, 2).flatten(1), nn.AvgPool2d(2)),
            (lambda m, x: F.adaptive_avg_pool2d(x, 1).flatten(1), nn.AdaptiveAvgPool2d(1)),
            (lambda m, x: F.interpolate(x, scale_factor=2).mean((2, 3)), None),
        ]
        for function, module in pairs:
            R = data(*function(None, x).shape, seed=2)
            Rx = relevance(function, x, R, composite=composite)
            conserved(Rx, R, rtol=1e-5)  # the composite's epsilon (1e-6) on the pooling
            if module is not None:
                hook = explain(nn.Sequential(module, nn.Flatten()), x, composite=composite, initial_relevance=R, graph=False)
                torch.testing.assert_close(Rx, hook.relevance, rtol=0, atol=1e-10)


def test_softmax_inside_is_linearised_at_the_input():
    x, R = data(N, 4, low=-0.5), data(N, 4, seed=1)
    Rx = relevance(lambda m, x: F.softmax(x, dim=1).flatten(1), x, R)
    for n in range(N):
        torch.testing.assert_close(Rx[n], reference.softmax_taylor(x[n], R[n]))
    # not conserved in general: sum R_x = sum x R - (sum x s)(sum R), as the formula says
    s = F.softmax(x, dim=1)
    torch.testing.assert_close(Rx.sum(1), (x * R).sum(1) - (x * s).sum(1) * R.sum(1))


def test_final_functional_softmax_equals_the_final_module():
    torch.manual_seed(3)
    fc = nn.Linear(4, 3).double()
    x = data(N, 4)
    written = explain(Op(lambda m, x: F.softmax(m.fc(x), dim=1), fc=fc), x, graph=True)
    as_module = explain(nn.Sequential(fc, nn.Softmax(dim=1)), x, graph=False)
    torch.testing.assert_close(written.relevance, as_module.relevance, rtol=0, atol=1e-12)


@pytest.mark.parametrize("activation", [F.relu, torch.tanh, F.gelu, F.silu, lambda t: F.leaky_relu(t, 0.1), F.dropout])
def test_elementwise_activations_pass_relevance(activation):
    x, R = data(N, 4, low=-0.5), data(N, 4, seed=1)
    Rx = relevance(lambda m, x: activation(x), x, R)
    torch.testing.assert_close(Rx, R, rtol=0, atol=0)


def test_silu_written_out_passes_like_the_module():
    x, R = data(N, 4, low=-0.5), data(N, 4, seed=1)
    Rx = relevance(lambda m, x: x * torch.sigmoid(x), x, R)
    torch.testing.assert_close(Rx, reference.product(x, torch.sigmoid(x), R, shares=[1.0])[0])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("transposed", [False, True])
def test_matmul_pair_op_vjp_is_autograds(dtype, transposed):
    # the written-out vjp of a product of two activations is autograd's, bit for bit, on attention's layouts
    # (heads split off by a transpose, so the factors are not contiguous)
    torch.manual_seed(0)
    x = torch.randn(8, 7, 3 * 12, dtype=dtype)
    q, k, v = (t.unflatten(-1, (3, 4)).transpose(1, 2) for t in x.split(12, -1))
    a, b = (q, k) if transposed else (torch.softmax(torch.randn(8, 3, 7, 7, dtype=dtype), -1), v)

    def function(t, u):
        return t @ (u.transpose(-1, -2) if transposed else u)

    op = operations.MatMulPairOp(function, transposed=transposed)
    assert op.fits(a, b)
    s = torch.randn_like(function(a, b))
    slow = operations.TensorsOp(function).vjp((a, b), None, s)
    assert torch.equal(op.forward(a, b), function(a, b))  # the product as torch.matmul computes it
    fast = op.vjp((a, b), None, s)  # from the operands the forward kept
    assert all(f.shape == t.shape and torch.equal(f, g) for f, g, t in zip(fast, slow, (a, b)))


def test_matmul_pair_op_fits_only_equal_batch_axes():
    assert not operations.MatMulPairOp.fits(torch.randn(3, 4), torch.randn(4, 5))
    assert not operations.MatMulPairOp.fits(torch.randn(2, 3, 4), torch.randn(4, 5))
    assert not operations.MatMulPairOp.fits(torch.randn(2, 3, 4), torch.randn(1, 4, 5))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("dim", [-1, 1])
def test_softmax_op_relevance_is_lrp0_on_the_jacobian(dtype, dim):
    """The written-out linearisation equals LRP-0 on autograd's softmax Jacobian (x * vjp(R / s)), also where
    a masked key's weight is 0 (its relevance is 0 there: the weight is one of its factors)."""
    a = torch.randn(4, 5, 6, dtype=dtype)
    a[0, :, 0] = -1e30  # a masked key: weight 0

    def function(t):
        return torch.softmax(t, dim)

    output = function(a)
    R = torch.randn(4, 5, 6, dtype=dtype) * output
    written = operations.SoftmaxOp(function, output, dim).relevance(a, R)
    by_jacobian = rules.Zero().relevance(ops.FunctionOp(function), a, R, z=output)
    torch.testing.assert_close(written, by_jacobian)
    assert written.isfinite().all()
