"""Errors the engine raises. Each names the problem and the fix."""
from __future__ import annotations


class LRPError(Exception):
    """Base class of the errors raised by lrp_widgets' engine."""


class UnsupportedModuleError(LRPError, TypeError):
    """A module the engine has no rule for was called in the model's forward pass."""


class UnsupportedConfigurationError(UnsupportedModuleError):
    """A module the engine knows, used in a way it cannot explain (a bidirectional LSTM, packed
    sequences, attention): explaining the model as written (``explain(graph=...)``) would not help."""


class FunctionalCallError(LRPError):
    """A tensor operation outside any module, which the engine's hooks cannot see.

    Not a TypeError on purpose: torch turns a TypeError raised inside ``Tensor.__add__`` into
    ``NotImplemented``, which would hide this message.
    """


class InputError(LRPError, ValueError):
    """Input data, target or model output that the engine cannot explain."""


class LRPWarning(UserWarning):
    """A result that is computed as asked but is probably not what was meant."""


class CompositeError(LRPError, ValueError):
    """A composite gives a rule to a module that cannot take it (named in the message)."""


#: a functional call -> the module that does it visibly (named in the error)
MODULE_FOR_FUNCTION = {
    "mean": "nn.AdaptiveAvgPool2d(1) then nn.Flatten() for a global average over space (AdaptiveAvgPool1d(1) "
    "for sequences)",
    "sum": "nn.AdaptiveAvgPool2d(1) then nn.Flatten() (a sum over space is an average times a constant)",
    "amax": "nn.AdaptiveMaxPool2d(1) then nn.Flatten() for a global maximum over space",
    "max": "nn.AdaptiveMaxPool2d(1) then nn.Flatten() for a global maximum over space",
    "add": "lrp_widgets.Sum for residual additions",
    "__add__": "lrp_widgets.Sum for residual additions",
    "__iadd__": "lrp_widgets.Sum for residual additions",
    "softmax": "nn.Softmax as the model's last layer",
    "log_softmax": "nn.LogSoftmax as the model's last layer",
    "gelu": "nn.GELU",
    "silu": "nn.SiLU",
    "elu": "nn.ELU",
    "softplus": "nn.Softplus",
    "layer_norm": "nn.LayerNorm",
    "group_norm": "nn.GroupNorm",
    "interpolate": "nn.Upsample",
    "adaptive_avg_pool2d": "nn.AdaptiveAvgPool2d",
    "avg_pool2d": "nn.AvgPool2d",
    "linear": "nn.Linear",
    "conv2d": "nn.Conv2d",
}


class UnsupportedOperationError(FunctionalCallError):
    """An operation in a model's traced graph (``torch.fx``) has no LRP rule; the message names its node."""


class GraphTraceError(LRPError):
    """``torch.fx`` cannot trace the model (data-dependent control flow, ...); the message says why."""
