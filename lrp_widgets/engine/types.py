"""Layer families, defined once: which modules are weighted layers, activations, pooling, ...

Every part of the package that asks "what kind of layer is this" asks here (the engine's
propagation, the composites, the path search, training's weight penalty). Adding a layer type
to a family is a change in this file only.
"""
from __future__ import annotations

from torch import nn

from .layers import Sum

#: Convolutions: z+, gamma and alpha-beta rules apply here by default.
CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
#: Layers with a weight and a bias, written ``z = op(a; weight, bias)`` (Linear and Conv).
LINEAR = (nn.Linear,) + CONV
#: Element-wise activations: relevance passes them unchanged.
ACTIVATION = (nn.ReLU, nn.LeakyReLU, nn.Tanh, nn.Sigmoid)
#: Activations that end a block for the path search, though the engine has no rule for them yet.
OTHER_ACTIVATION = (nn.ELU, nn.GELU)
DROPOUT = (nn.Dropout, nn.Dropout1d, nn.Dropout2d)
IDENTITY = (nn.Identity,)
RESHAPE = (nn.Flatten, nn.Unflatten)
MAXPOOL = (nn.MaxPool1d, nn.MaxPool2d)
AVGPOOL = (nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d)
BATCHNORM = (nn.BatchNorm1d, nn.BatchNorm2d)
SUM = (Sum,)
#: Gated recurrent modules, explained through time by ``recurrent.py`` (one stage per call).
RECURRENT = (nn.LSTM, nn.GRU)

#: Modules the path search walks through without a choice to make (no neurons of their own).
TRANSPARENT = DROPOUT + IDENTITY + ACTIVATION + OTHER_ACTIVATION

#: What the Zeiler-Fergus deconvnet walks back through (``paths.deconvolve``).
DECONVNET = (nn.Conv2d, nn.ReLU, nn.MaxPool2d) + DROPOUT + IDENTITY

#: How the engine treats each family, checked in this order (the first match wins).
KINDS = (
    ("sum", SUM),
    ("recurrent", RECURRENT),
    ("linear", LINEAR),
    ("batchnorm", BATCHNORM),
    ("maxpool", MAXPOOL),
    ("pool", AVGPOOL),
    ("reshape", RESHAPE),
    ("pass", ACTIVATION + DROPOUT + IDENTITY),
)
#: Every module type the engine explains.
SUPPORTED = tuple(t for _, types in KINDS for t in types)


def kind_of(module: nn.Module) -> str | None:
    """The engine's treatment of ``module`` ("linear", "pass", ...), or None when it has no rule."""
    for kind, types in KINDS:
        if isinstance(module, types):
            return kind
    return None


def supported_names() -> str:
    """The supported module types, for error messages."""
    return ", ".join(sorted({t.__name__ for t in SUPPORTED}))
