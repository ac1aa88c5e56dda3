"""The functional-call watch: names tensor arithmetic a forward does outside modules, where hooks cannot see it.

Reshapes, concatenation and indexing move relevance correctly as gradients do; arithmetic does not
(``x + y`` would copy the relevance to both terms), so while the hook path runs the model,
:class:`Watch` (a ``TorchFunctionMode``) stops at such a call with a
:class:`~lrp_widgets.engine.errors.FunctionalCallError` naming it and the module whose forward made
it; ``explain`` then explains the model as written (``graph.py``).
"""
from __future__ import annotations

import torch
from torch.overrides import TorchFunctionMode

from .errors import MODULE_FOR_FUNCTION, FunctionalCallError, UnsupportedConfigurationError

__all__ = ["Watch"]

# Functions a forward may call outside modules: they move relevance as gradients should.
_SAFE_FUNCTIONS = {
    "__get__", "size", "dim", "numel", "__len__", "__format__", "__repr__", "stride", "is_contiguous",
    "is_floating_point", "element_size", "data_ptr", "storage_offset", "__bool__",
    "view", "reshape", "view_as", "reshape_as", "flatten", "unflatten", "permute", "transpose", "t",
    "squeeze", "unsqueeze", "contiguous", "__getitem__", "narrow", "select", "expand", "expand_as",
    "cat", "concat", "concatenate", "stack", "split", "chunk", "unbind", "tensor_split",
    "relu", "max_pool1d", "max_pool2d", "max_pool1d_with_indices", "max_pool2d_with_indices",
    "dropout", "identity", "to", "float", "double", "clone", "detach", "type",
}


class Watch(TorchFunctionMode):
    """Names tensor arithmetic done outside any module during the forward pass."""

    def __init__(self, session):
        super().__init__()
        self.session = session

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        session = self.session
        if session.leaf_depth == 0 and not session.in_hook:
            name = getattr(func, "__name__", str(func))
            if name not in _SAFE_FUNCTIONS and _tracks_relevance(args, kwargs):
                where = session.stack[-1] if session.stack else "the model"
                module = session.stack_types[-1] if session.stack_types else type(session.model).__name__
                fix = MODULE_FOR_FUNCTION.get(name)
                fix = f"use {fix} instead" if fix else (
                    "Do it with a module instead: lrp_widgets.Sum for residual additions, nn.ReLU, nn.Flatten, "
                    "nn.Linear, ..."
                )
                if "pack" in name:  # pack_padded_sequence & co.: say what to do instead
                    raise UnsupportedConfigurationError(
                        f"the forward of '{where}' ({module}) packs the data (`{name}`); packed sequences are not "
                        "supported by LRP through time. Pass equal-length (padded) sequences (N, T, F) to the LSTM/GRU."
                    )
                raise FunctionalCallError(
                    f"the forward of '{where}' ({module}) calls `{name}` on the data outside any module. "
                    f"LRP's hooks cannot see such a call, so relevance through it would be wrong: {fix} "
                    "(reshapes, indexing, torch.cat and F.relu are fine)."
                )
        return func(*args, **kwargs)


def _tracks_relevance(args, kwargs) -> bool:
    for value in list(args) + list(kwargs.values()):
        if isinstance(value, torch.Tensor) and value.requires_grad:
            return True
        if isinstance(value, (list, tuple)) and any(isinstance(v, torch.Tensor) and v.requires_grad for v in value):
            return True
    return False
