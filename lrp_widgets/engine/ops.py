"""Layers seen as linear maps ``z = op(a; weight, bias)``, with the input-gradient of each.

Rules (``rules.py``) are written against this small interface, so one rule serves Linear,
Conv1d/2d/3d and parameter-free linear layers (average pooling) alike:

* ``op(a, weight, bias)`` computes the layer with any (modified) parameters;
* ``op.vjp(a, weight, s)`` computes ``c = (dz/da)^T s`` for ``z = op(a; weight, 0)``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

_CONV_INPUT_GRAD = {
    1: torch.nn.grad.conv1d_input,
    2: torch.nn.grad.conv2d_input,
    3: torch.nn.grad.conv3d_input,
}


class LinearOp:
    """A Linear layer, ``z = a W^T + b``."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None):
        self.weight = weight
        self.bias = bias

    def __call__(self, a, weight, bias=None):
        return F.linear(a, weight, bias)

    def vjp(self, a, weight, s):
        return s @ weight


class ConvOp:
    """A ConvNd layer with the module's stride, padding, dilation and groups."""

    def __init__(self, module: nn.modules.conv._ConvNd, weight, bias):
        self.module = module
        self.weight = weight
        self.bias = bias
        self.dims = len(module.kernel_size)
        # The closed-form input gradient handles numeric zero padding; other padding modes
        # and string paddings fall back to autograd on the module's own conv function.
        self._closed_form = module.padding_mode == "zeros" and not isinstance(module.padding, str)

    def __call__(self, a, weight, bias=None):
        return self.module._conv_forward(a, weight, bias)

    def vjp(self, a, weight, s):
        m = self.module
        if self._closed_form:
            return _CONV_INPUT_GRAD[self.dims](a.shape, weight, s, m.stride, m.padding, m.dilation, m.groups)
        return autograd_vjp(lambda t: m._conv_forward(t, weight, None), a, s)


class FunctionOp:
    """A parameter-free linear layer (average pooling, max pooling seen as average)."""

    weight = None
    bias = None

    def __init__(self, function):
        self.function = function

    def __call__(self, a, weight=None, bias=None):
        return self.function(a)

    def vjp(self, a, weight, s):
        return autograd_vjp(self.function, a, s)


def autograd_vjp(function, a: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """``(d function / d a)^T s`` by autograd, usable inside a backward pass."""
    with torch.enable_grad():
        leaf = a.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(function(leaf), leaf, s)
    return grad


def max_pool_as_average(module: nn.Module):
    """The average pooling with a max pooling's window (the Montavon tutorial's choice)."""
    if isinstance(module, nn.MaxPool1d):
        pool = F.avg_pool1d
    else:
        pool = F.avg_pool2d
    if module.dilation not in (1, (1,), (1, 1)):
        raise ValueError("max pooling with dilation cannot be treated as average pooling")
    return lambda a: pool(a, module.kernel_size, module.stride, module.padding, module.ceil_mode, count_include_pad=True)
