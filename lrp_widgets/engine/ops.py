"""Layers seen as linear maps ``z = op(a; weight, bias)``, with the input-gradient of each.

Rules (``rules.py``) are written against this small interface, so one rule serves Linear,
Conv1d/2d/3d and parameter-free linear layers (average pooling) alike:

* ``op(a, weight, bias)`` computes the layer with any (modified) parameters;
* ``op.vjp(a, weight, s)`` computes ``c = (dz/da)^T s`` for ``z = op(a; weight, 0)``;
* ``op.fresh_vjp``: whether that ``c`` is always a new tensor (not a view of ``s``), which the rules
  may then overwrite with ``a * c`` (:func:`~lrp_widgets.engine.rules.times_input`).
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

    fresh_vjp = True  # a matmul's output

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None):
        self.weight = weight
        self.bias = bias

    def __call__(self, a, weight, bias=None):
        return F.linear(a, weight, bias)

    def vjp(self, a, weight, s):
        return s @ weight


class ConvOp:
    """A ConvNd layer with the module's stride, padding, dilation and groups."""

    fresh_vjp = True  # a convolution's input gradient

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
        # the closed-form vjp of a normalization computes new tensors; autograd's may hand back s (identity)
        self.fresh_vjp = hasattr(function, "_lrp_vjp")

    def __call__(self, a, weight=None, bias=None):
        return self.function(a)

    def vjp(self, a, weight, s):
        closed_form = getattr(self.function, "_lrp_vjp", None)  # set by normalization()
        return closed_form(s) if closed_form is not None else autograd_vjp(self.function, a, s)


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


class ConvTransposeOp:
    """A ConvTransposeNd layer: a linear map with the module's stride, padding, output padding,
    groups and dilation (the output size of the forward pass is kept)."""

    _FUNCTIONS = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}

    def __init__(self, module: nn.modules.conv._ConvTransposeNd, weight, bias, output_padding):
        self.module, self.weight, self.bias = module, weight, bias
        self.output_padding = output_padding
        self.function = self._FUNCTIONS[len(module.kernel_size)]

    def __call__(self, a, weight, bias=None):
        m = self.module
        return self.function(a, weight, bias, m.stride, m.padding, self.output_padding, m.groups, m.dilation)

    def vjp(self, a, weight, s):
        return autograd_vjp(lambda t: self(t, weight, None), a, s)


def conv_transpose_output_padding(module: nn.modules.conv._ConvTransposeNd, a: torch.Tensor, output: torch.Tensor):
    """The output padding the forward pass used (it differs from ``module.output_padding`` when the
    forward was given ``output_size``)."""
    dims = len(module.kernel_size)
    padding = []
    for i in range(dims):
        natural = (
            (a.shape[-dims + i] - 1) * module.stride[i]
            - 2 * module.padding[i]
            + module.dilation[i] * (module.kernel_size[i] - 1)
            + 1
        )
        padding.append(output.shape[-dims + i] - natural)
    return tuple(padding)


def normalization(module: nn.Module, a: torch.Tensor):
    """LayerNorm/GroupNorm/RMSNorm as a linear map of the input: the standard deviation (RMS) of
    ``a`` is held constant (REFERENCE.md §7, AttnLRP's identity rule on the division), the mean
    subtraction and the affine part stay as they are. Returns the map without its bias (the bias
    is constant, so the rules see it only through the layer's output ``z``)."""
    if isinstance(module, nn.GroupNorm):
        n, c = a.shape[:2]
        grouped = a.detach().reshape(n, module.num_groups, -1)
        std = torch.sqrt(grouped.var(-1, unbiased=False, keepdim=True) + module.eps)
        shape = (1, c) + (1,) * (a.dim() - 2)

        def function(t):
            g = t.reshape(n, module.num_groups, -1)
            out = ((g - g.mean(-1, keepdim=True)) / std).reshape(t.shape)
            return out * module.weight.detach().reshape(shape) if module.weight is not None else out

        return function
    dims = tuple(range(-len(module.normalized_shape), 0))
    weight = None if module.weight is None else module.weight.detach()
    if isinstance(module, nn.LayerNorm):
        # the variance in two passes (mean, then mean of squared deviations): as accurate as Tensor.var (equal
        # to ~1e-16 in float64), ~8x faster on short rows (a transformer's tokens), where var's kernel is slow
        deviation = a.detach() - a.detach().mean(dims, keepdim=True)
        std = torch.sqrt((deviation * deviation).mean(dims, keepdim=True) + module.eps)

        def centre(t):
            return t - t.mean(dims, keepdim=True)

    else:  # RMSNorm: no mean subtraction, no bias
        eps = module.eps if module.eps is not None else torch.finfo(a.dtype).eps
        std = torch.sqrt(a.detach().pow(2).mean(dims, keepdim=True) + eps)

        def centre(t):
            return t

    def function(t):
        out = centre(t) / std
        return out * weight if weight is not None else out

    count = 1
    for d in dims:
        count *= a.shape[d]
    centred = isinstance(module, nn.LayerNorm)

    def vjp(s):
        # autograd's backward of ``function``, step by step in its order (so bit-identical), without
        # building a graph: mul by the weight, div by std, then the mean's share (-g summed, over count)
        # (in place where the operand is a new tensor of ours: the same values, fewer allocations)
        g = (s * weight).div_(std) if weight is not None else s / std
        return g.add_((-g).sum(dims, keepdim=True) / count) if centred else g

    function._lrp_vjp = vjp
    return function


def adaptive_max_pool_as_average(module: nn.Module):
    """The adaptive average pooling with an adaptive max pooling's output size."""
    pool = F.adaptive_avg_pool1d if isinstance(module, nn.AdaptiveMaxPool1d) else F.adaptive_avg_pool2d
    return lambda a: pool(a, module.output_size)
