"""Which rules a module of each kind (``types.kind_of``) can take, and what to say when it cannot."""
from __future__ import annotations

from . import rules

__all__ = ["TAKES", "accepts"]

#: kind -> what its modules take, for the composite's error message
TAKES = {
    "linear": "a layer with weights takes Zero, Epsilon, Gamma, AlphaBeta, ZPlus, ZBox, Flat or WSquare",
    "embedding": "an Embedding takes Zero, Epsilon, Gamma, AlphaBeta, ZPlus, ZBox, Flat or WSquare",
    "pool": "a pooling or upsampling layer takes any rule but Pass",
    "maxpool": "a pooling layer takes any rule but Pass",
    "sum": "a Sum takes Epsilon or Zero",
    "pass": "an element-wise activation, dropout or identity takes Pass (the default) or Gradient from a glob, "
    "and any rule by exact name or layer type (computed on the activation function)",
    "reshape": "a reshape takes Pass or Gradient",
    "norm": "a normalisation takes Epsilon/Zero (by default the composite's epsilon for pooling, with the std "
    "held constant), or Pass or Gradient by exact name or layer type",
    "softmax": "a final Softmax/LogSoftmax has a fixed treatment (the explanation starts from its input, the logits)",
}


def accepts(kind: str, rule, exact: bool = True) -> bool:
    """Whether a module of ``kind`` can take ``rule``; ``exact=False`` for a glob's rule, which
    reaches fewer modules (a glob's epsilon is meant for the layers with weights under it)."""
    carry = isinstance(rule, (rules.Pass, rules.Gradient))
    if kind in ("linear", "embedding"):
        return not carry
    if kind in ("pool", "maxpool"):
        return not isinstance(rule, rules.Pass)
    if kind == "sum":
        return isinstance(rule, rules.Epsilon)
    if kind == "pass":
        return carry or exact
    if kind == "reshape":
        return carry
    if kind == "norm":
        return isinstance(rule, rules.Epsilon) or (exact and carry)
    return False
