"""Looking inside along paths: path heatmaps, activation maps, deconvolution."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..engine import types
from ..engine.checks import check_input
from ..engine.errors import InputError, UnsupportedModuleError
from ..engine.explain import explain
from ..engine.signatures import keyword_arguments
from ..engine.modes import eval_mode
from .chain import _leaf_chain
from .results import NeuronSelection, PathSet, _channel_mask, _neurons_of


@keyword_arguments("target", "composite")
def path_heatmap(model, x, paths, *, target=None, composite=None) -> torch.Tensor:
    """Input relevance when only the paths' neurons pass relevance at their layers.

    Parameters
    ----------
    model : nn.Module
        Any model ``explain`` handles (masks act by module name).
    x : tensor (N, ...)
    paths : PathSet, list of Path, or dict {layer: indices}
        Neurons to keep at each named layer (the union over paths); other neurons of those layers
        are masked (conditional relevance). Layers not named are unmasked.
    target : int, optional
        Default: the PathSet's target, else the predicted class.
    composite : Composite or str, optional
        Default: the PathSet's finder's composite, else ``"epsilon_plus_flat"``.

    Returns
    -------
    torch.Tensor
        Same shape as ``x``.
    """
    if isinstance(paths, PathSet):
        target = paths.target if target is None else target
        if composite is None and paths.finder is not None:
            composite = paths.finder.composite
    composite = "epsilon_plus_flat" if composite is None else composite
    x = check_input(x, model)
    neurons = _neurons_of(paths)
    shapes = _output_shapes(model, x, list(neurons))
    masks = {layer: _channel_mask(shapes[layer], indices, x.dtype, x.device) for layer, indices in neurons.items()}
    return explain(model, x, target=target, composite=composite, masks=masks).relevance


def _output_shapes(model, x, names) -> dict:
    """Output shape of each named module in one forward pass (first call of each)."""
    modules = dict(model.named_modules())
    missing = [name for name in names if name not in modules]
    if missing:
        raise InputError(f"modules {missing} are not in the model; names are those of model.named_modules()")
    shapes, handles = {}, []
    for name in names:
        def hook(module, inputs, output, name=name):
            shapes.setdefault(name, tuple(output.shape))
        handles.append(modules[name].register_forward_hook(hook))
    try:
        with eval_mode(model), torch.no_grad():
            model(x.clone())
    finally:
        for handle in handles:
            handle.remove()
    return shapes


def activation_heatmap(model, x, layer: str, channels, reduce: str = "sum") -> torch.Tensor:
    """The selected channels' activations at ``layer``'s output, upsampled (bilinear) to the input size.

    Parameters
    ----------
    model : nn.Module
    x : tensor (N, C, H, W)
    layer : str
        Module name; its output must be (N, C, h, w).
    channels : int, sequence of int, NeuronSelection or PathSet
        Channels of that output (a PathSet gives its neurons at ``layer``).
    reduce : {"sum", "mean"}
        How the selected channels combine.

    Returns
    -------
    torch.Tensor (N, H, W)
    """
    if reduce not in ("sum", "mean"):
        raise ValueError(f"reduce must be 'sum' or 'mean', got {reduce!r}")
    x = check_input(x, model)
    if x.dim() != 4:
        raise InputError(f"activation_heatmap needs images (N, C, H, W), got shape {tuple(x.shape)}")
    modules = dict(model.named_modules())
    if layer not in modules:
        raise InputError(f"module {layer!r} is not in the model; names are those of model.named_modules()")
    if isinstance(channels, PathSet):
        if layer not in channels.layers:
            raise InputError(f"the PathSet has no neurons at {layer!r}; its layers: {channels.layers}")
        channels = channels.neurons_by_layer()[layer]
    elif isinstance(channels, NeuronSelection):
        channels = channels.indices
    channels = [int(channels)] if np.ndim(channels) == 0 else [int(c) for c in channels]
    captured = {}

    def hook(module, inputs, output):
        # a clone: an in-place ReLU after a conv would overwrite the kept output
        captured.setdefault("output", output.detach().clone())

    handle = modules[layer].register_forward_hook(hook)
    try:
        with eval_mode(model), torch.no_grad():
            model(x.clone())
    finally:
        handle.remove()
    activation = captured["output"]
    if activation.dim() != 4:
        raise InputError(
            f"'{layer}' outputs shape {tuple(activation.shape)}; activation maps need (N, C, h, w): choose a convolutional layer"
        )
    if channels and (min(channels) < 0 or max(channels) >= activation.shape[1]):
        raise InputError(f"channels {channels} are out of range for '{layer}' with {activation.shape[1]} channels")
    picked = activation[:, channels] if channels else torch.zeros_like(activation[:, :1])
    combined = picked.sum(1, keepdim=True) if reduce == "sum" or not channels else picked.mean(1, keepdim=True)
    return F.interpolate(combined, size=tuple(x.shape[-2:]), mode="bilinear", align_corners=False)[:, 0]


_DECONV_PASS = types.DROPOUT + types.IDENTITY


def deconvolve(model, x, layer: str, channel: int) -> torch.Tensor:
    """Zeiler-Fergus deconvnet: one channel of ``layer``'s output, reconstructed in input space.

    Runs the modules up to ``layer`` forward (max pooling records its switches), keeps the
    channel's activation map and zeroes the others, then walks back: max pooling -> max-unpooling
    with the forward switches, ReLU -> ReLU, Conv2d -> transposed convolution with the same
    weights (no bias); dropout and identity pass.

    Parameters
    ----------
    model : nn.Module
        A Sequential-style model (or its feature stack, e.g. ``model.features``); the modules up
        to ``layer`` must be Conv2d, ReLU, MaxPool2d, Dropout or Identity.
    x : tensor (N, C, H, W)
    layer : str
        Module name (as in ``model.named_modules()``).
    channel : int
        Channel of ``layer``'s output.

    Returns
    -------
    torch.Tensor
        Same shape as ``x``.
    """
    x = check_input(x, model)
    chain = _leaf_chain(model, "deconvolve")
    names = [name for name, _ in chain]
    if layer not in names:
        raise InputError(f"{layer!r} is not a leaf module of the model; leaf modules: {names}")
    steps = chain[: names.index(layer) + 1]
    for name, module in steps:
        if not isinstance(module, types.DECONVNET):
            raise UnsupportedModuleError(
                f"deconvolve cannot reverse '{name}' ({type(module).__name__}): it walks back through Conv2d, ReLU, "
                "MaxPool2d, Dropout and Identity only. Choose a layer inside the convolutional feature stack."
            )
        if isinstance(module, nn.Conv2d) and (isinstance(module.padding, str) or module.padding_mode != "zeros"):
            raise UnsupportedModuleError(
                f"deconvolve needs numeric zero padding to transpose '{name}'; it has padding={module.padding!r}, "
                f"padding_mode={module.padding_mode!r}"
            )
    records = []
    with eval_mode(model), torch.no_grad():
        h = x.clone()
        for name, module in steps:
            shape = h.shape
            if isinstance(module, nn.MaxPool2d):
                h, switches = F.max_pool2d(
                    h, module.kernel_size, module.stride, module.padding, module.dilation, module.ceil_mode, return_indices=True
                )
            else:
                h, switches = module(h), None
            records.append((module, switches, shape))
        if not 0 <= int(channel) < h.shape[1]:
            raise InputError(f"channel {channel} is out of range: '{layer}' has {h.shape[1]} channels")
        y = torch.zeros_like(h)
        y[:, int(channel)] = h[:, int(channel)]
        for module, switches, shape in reversed(records):
            if isinstance(module, nn.MaxPool2d):
                y = F.max_unpool2d(y, switches, module.kernel_size, module.stride, module.padding, output_size=shape[-2:])
            elif isinstance(module, nn.ReLU):
                y = F.relu(y)
            elif isinstance(module, nn.Conv2d):
                y = _conv_transpose(module, y, shape)
    return y


def _conv_transpose(conv: nn.Conv2d, y: torch.Tensor, input_shape) -> torch.Tensor:
    """``conv_transpose2d`` with the conv's own weights (no bias), sized back to ``input_shape``."""
    padding, stride, dilation = conv.padding, conv.stride, conv.dilation
    extra = []
    for i in range(2):
        produced = (y.shape[2 + i] - 1) * stride[i] - 2 * padding[i] + dilation[i] * (conv.kernel_size[i] - 1) + 1
        extra.append(int(input_shape[2 + i]) - produced)
    return F.conv_transpose2d(y, conv.weight.detach(), None, stride, padding, tuple(extra), conv.groups, dilation)
