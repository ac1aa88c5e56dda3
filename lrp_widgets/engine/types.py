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
#: Transposed convolutions: the same rules, on the transposed map (BatchNorm is not folded into them).
CONV_TRANSPOSE = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
#: Layers with a weight and a bias, written ``z = op(a; weight, bias)`` (Linear and Conv).
LINEAR = (nn.Linear,) + CONV + CONV_TRANSPOSE
#: Piecewise-linear and saturating activations: relevance passes them unchanged.
ACTIVATION = (nn.ReLU, nn.LeakyReLU, nn.Tanh, nn.Sigmoid)
#: Smooth activations: relevance passes by default (the identity rule, as in AttnLRP); any rule
#: given by exact name or layer type is computed on the activation function.
SMOOTH_ACTIVATION = (nn.GELU, nn.SiLU, nn.ELU, nn.Softplus)
DROPOUT = (nn.Dropout, nn.Dropout1d, nn.Dropout2d)
IDENTITY = (nn.Identity,)
RESHAPE = (nn.Flatten, nn.Unflatten)
ADAPTIVE_MAXPOOL = (nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d)
MAXPOOL = (nn.MaxPool1d, nn.MaxPool2d) + ADAPTIVE_MAXPOOL
AVGPOOL = (nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d)
#: Parameter-free linear maps treated like average pooling.
UPSAMPLE = (nn.Upsample,)
BATCHNORM = (nn.BatchNorm1d, nn.BatchNorm2d)
#: Normalisations seen as linear maps with their standard deviation held constant (REFERENCE.md §7).
NORM = (nn.LayerNorm, nn.GroupNorm) + ((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ())
#: A lookup: the linear map of the one-hot token, explained when it reads the model's integer input.
EMBEDDING = (nn.Embedding,)
#: Supported as the model's last layer only: the explanation starts from their input (the logits).
SOFTMAX = (nn.Softmax, nn.LogSoftmax)
SUM = (Sum,)
#: torch's own modules that need rules of their own: a clear "not supported yet".
NOT_YET = (nn.RNNBase,)
#: Attention modules explained through a functional re-expression of their forward in the traced
#: graph, with the AttnLRP rules on its operations (``attention.py``); the hook path hands them over.
ATTENTION = (nn.MultiheadAttention, nn.TransformerEncoderLayer, nn.TransformerEncoder)
#: Gated recurrent modules, explained through time by ``recurrent.py`` (one stage per call).
RECURRENT = (nn.LSTM, nn.GRU)

#: Activations whose output gates a product in a traced graph (``x * sigmoid(g)``: the gate gets none).
GATE = (nn.Sigmoid, nn.Hardsigmoid)

#: Modules the path search walks through without a choice to make (no neurons of their own).
TRANSPARENT = DROPOUT + IDENTITY + ACTIVATION + SMOOTH_ACTIVATION

#: What the Zeiler-Fergus deconvnet walks back through (``paths.deconvolve``).
DECONVNET = (nn.Conv2d, nn.ReLU, nn.MaxPool2d) + DROPOUT + IDENTITY

#: How the engine treats each family, checked in this order (the first match wins).
KINDS = (
    ("sum", SUM),
    ("recurrent", RECURRENT),
    ("linear", LINEAR),
    ("batchnorm", BATCHNORM),
    ("maxpool", MAXPOOL),
    ("pool", AVGPOOL + UPSAMPLE),
    ("reshape", RESHAPE),
    ("pass", ACTIVATION + SMOOTH_ACTIVATION + DROPOUT + IDENTITY),
    ("norm", NORM),
    ("softmax", SOFTMAX),
    ("embedding", EMBEDDING),
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
