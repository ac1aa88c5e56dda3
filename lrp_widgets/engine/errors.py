"""Errors the engine raises. Each names the problem and the fix."""
from __future__ import annotations


class LRPError(Exception):
    """Base class of the errors raised by lrp_widgets' engine."""


class UnsupportedModuleError(LRPError, TypeError):
    """A module the engine has no rule for was called in the model's forward pass."""


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
