"""LRP rules as data: each rule is a frozen dataclass and one short ``relevance`` method.

A rule maps the relevance ``R`` at a layer's output to the relevance at its input, given the
layer as a linear map (``ops.py``) and the layer's input ``a``. All rules use the efficient
form of REFERENCE.md §1: ``z = op_rho(a)``, ``s = R / stabilize(z)``, ``c = (dz/da)^T s``,
``R_in = a * c``. No rule knows how layers are walked; ``propagation.py`` does that.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field

import torch

__all__ = ["Rule", "Zero", "Epsilon", "Gamma", "AlphaBeta", "ZPlus", "ZBox", "Flat", "WSquare", "Pass", "Gradient"]

DEFAULT_EPSILON = 1e-6


def stabilize(z: torch.Tensor, epsilon: float) -> torch.Tensor:
    """``z + epsilon * sign(z)`` with ``sign(0) = +1``."""
    if z.dtype in (torch.float32, torch.float64):
        # ±epsilon as (z >= 0) * 2 eps - eps: bit-identical to the torch.where form (2 eps is exact in
        # binary, and z + (-eps) == z - eps) and ~3x faster, the where being the slow part of every rule;
        # the comparison written straight into a float tensor (out=): a bool result converted is ~5x slower
        held = z.detach() if z.requires_grad else z
        zero, twice, once = _scalars(z.dtype, z.device, epsilon)
        return torch.ge(held, zero, out=torch.empty_like(held)).mul_(twice).sub_(once).add_(held)
    return torch.where(z >= 0, z + epsilon, z - epsilon)  # half types: 2 eps may round differently


@functools.lru_cache(maxsize=64)
def _scalars(dtype: torch.dtype, device: torch.device, epsilon: float) -> tuple:
    """0, 2 eps and eps as 0-dim tensors of ``dtype``: a Python number in an in-place op is converted to a
    tensor on every call (three conversions per stabilize, ~1/3 of its time on a transformer's small tensors).
    The same numbers: the op casts a Python number to the tensor's dtype too."""
    return tuple(torch.tensor(value, dtype=dtype, device=device) for value in (0.0, 2 * epsilon, epsilon))


def divide(relevance: torch.Tensor, z: torch.Tensor, epsilon: float) -> torch.Tensor:
    """``relevance / stabilize(z)``; with ``epsilon = 0`` a zero denominator gives 0, not NaN."""
    if epsilon == 0:  # the quotient's inf/NaN at z == 0 overwritten: as torch.where(z == 0, 0, R / z), 2x faster
        return (relevance / z).masked_fill_(z == 0, 0)
    denominator = stabilize(z, epsilon)
    if denominator.shape == relevance.shape and denominator.dtype == relevance.dtype and not (
            relevance.requires_grad or denominator.requires_grad):
        # written over the stabilized denominator, a buffer of our own: the same values, one allocation fewer
        # (a fresh buffer is written cold: ~1/3 of the division's time on a ViT-sized tensor, microbenchmark)
        return torch.div(relevance, denominator, out=denominator)
    return relevance / denominator


def times_input(op, a: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """``a * c`` for ``c = op.vjp(...)``; written over ``c`` where the op says its vjp returns a new tensor
    (``op.fresh_vjp``): the same values (``a * c == c * a``), one allocation fewer."""
    if getattr(op, "fresh_vjp", False) and c.shape == a.shape and c.dtype == a.dtype and not c.requires_grad:
        return c.mul_(a)
    return a * c


def _positive(t):
    return None if t is None else t.clamp(min=0)


def _negative(t):
    return None if t is None else t.clamp(max=0)


@dataclass(frozen=True)
class Rule:
    """Base class: ``relevance(op, a, R, z=None)`` returns the relevance at the layer's input.

    ``z`` is the layer's unmodified output when the caller already has it (saves a forward).
    """

    def relevance(self, op, a: torch.Tensor, R: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError


@dataclass(frozen=True)
class Epsilon(Rule):
    """LRP-epsilon: ``R_j = sum_k a_j w_jk / (z_k + eps sign(z_k)) R_k``, ``z_k`` with its bias."""

    epsilon: float = DEFAULT_EPSILON

    def relevance(self, op, a, R, z=None):
        if z is None:
            z = op(a, op.weight, op.bias)
        return times_input(op, a, op.vjp(a, op.weight, divide(R, z, self.epsilon)))


@dataclass(frozen=True)
class Zero(Epsilon):
    """LRP-0: the epsilon rule with ``eps = 0`` (a zero denominator sends no relevance)."""

    epsilon: float = field(default=0.0, init=False)


@dataclass(frozen=True)
class Gamma(Rule):
    """LRP-gamma: ``rho(w) = w + gamma w+``, ``rho(b) = b + gamma b+`` (favours positive evidence)."""

    gamma: float = 0.25
    epsilon: float = DEFAULT_EPSILON

    def relevance(self, op, a, R, z=None):
        weight = None if op.weight is None else op.weight + self.gamma * op.weight.clamp(min=0)
        bias = None if op.bias is None else op.bias + self.gamma * op.bias.clamp(min=0)
        s = divide(R, op(a, weight, bias), self.epsilon)
        return times_input(op, a, op.vjp(a, weight, s))


@dataclass(frozen=True)
class AlphaBeta(Rule):
    """LRP-alpha-beta: ``R_j = sum_k (alpha (a w)+_jk / z+_k - beta (a w)-_jk / z-_k) R_k``.

    ``(a w)+ = a+ w+ + a- w-`` with ``b+`` joining ``z+``, and ``(a w)- = a+ w- + a- w+`` with
    ``b-`` joining ``z-``. Requires ``alpha - beta = 1`` so that relevance is conserved.
    """

    alpha: float = 2.0
    beta: float = 1.0
    epsilon: float = DEFAULT_EPSILON

    def __post_init__(self):
        if abs(self.alpha - self.beta - 1.0) > 1e-9:
            raise ValueError(f"AlphaBeta needs alpha - beta = 1, got alpha={self.alpha}, beta={self.beta}")

    def _part(self, op, a_pos, a_neg, w_same, w_other, bias, R):
        # contributions a+ w_same + a- w_other (+ bias), then the matching backward pieces
        z = op(a_pos, w_same, bias)
        if a_neg is not None:
            z = z + op(a_neg, w_other, None)
        s = divide(R, z, self.epsilon)
        out = times_input(op, a_pos, op.vjp(a_pos, w_same, s))
        if a_neg is not None:
            out = out + a_neg * op.vjp(a_neg, w_other, s)
        return out

    def relevance(self, op, a, R, z=None):
        # after a ReLU the input has no negative part: skip its (zero) terms
        if bool(a.amin() < 0):
            a_pos, a_neg = a.clamp(min=0), a.clamp(max=0)
        else:
            a_pos, a_neg = a, None
        w_pos, w_neg = _positive(op.weight), _negative(op.weight)
        if op.weight is None:  # parameter-free linear layer: all "weights" are positive
            w_pos, w_neg = None, None
        result = self.alpha * self._part(op, a_pos, a_neg, w_pos, w_neg, _positive(op.bias), R)
        if self.beta:
            result = result - self.beta * self._part(op, a_pos, a_neg, w_neg, w_pos, _negative(op.bias), R)
        return result


@dataclass(frozen=True)
class ZPlus(AlphaBeta):
    """LRP-z+: only positive contributions ``(a_j w_jk)+``; ``b+`` joins the denominator."""

    alpha: float = field(default=1.0, init=False)
    beta: float = field(default=0.0, init=False)


@dataclass(frozen=True)
class ZBox(Rule):
    """LRP-zB for inputs bounded in ``[low, high]`` (the pixel layer).

    ``z = a w - l w+ - h w-`` (no bias), ``R = a c - l c+ - h c-`` with ``c+``/``c-`` computed
    from ``w+``/``w-``. ``low``/``high`` are numbers or tensors broadcastable to the input;
    ``None`` takes the smallest/largest value of the batch being explained.
    """

    low: float | torch.Tensor | None = None
    high: float | torch.Tensor | None = None
    epsilon: float = DEFAULT_EPSILON

    def relevance(self, op, a, R, z=None):
        low = a.amin() if self.low is None else torch.as_tensor(self.low, dtype=a.dtype, device=a.device)
        high = a.amax() if self.high is None else torch.as_tensor(self.high, dtype=a.dtype, device=a.device)
        low, high = torch.broadcast_to(low, a.shape), torch.broadcast_to(high, a.shape)
        w_pos, w_neg = _positive(op.weight), _negative(op.weight)
        z = op(a, op.weight, None) - op(low, w_pos, None) - op(high, w_neg, None)
        s = divide(R, z, self.epsilon)
        return a * op.vjp(a, op.weight, s) - low * op.vjp(a, w_pos, s) - high * op.vjp(a, w_neg, s)


@dataclass(frozen=True)
class Flat(Rule):
    """Flat: all weights 1, bias 0, inputs 1: relevance spread uniformly over the receptive field."""

    epsilon: float = DEFAULT_EPSILON

    def relevance(self, op, a, R, z=None):
        ones = torch.ones_like(a)
        weight = None if op.weight is None else torch.ones_like(op.weight)
        # z depends on shapes only: every sample gets the same, so compute it for one sample
        z = op(ones[:1], weight, None)
        return op.vjp(ones, weight, divide(R, z, self.epsilon))


@dataclass(frozen=True)
class WSquare(Rule):
    """w^2: weights and bias squared, inputs 1 (input-independent)."""

    epsilon: float = DEFAULT_EPSILON

    def relevance(self, op, a, R, z=None):
        ones = torch.ones_like(a)
        weight = None if op.weight is None else op.weight**2
        bias = None if op.bias is None else op.bias**2
        s = divide(R, op(ones, weight, bias), self.epsilon)
        return op.vjp(ones, weight, s)


@dataclass(frozen=True)
class Pass(Rule):
    """Relevance passes unchanged (element-wise activations, dropout, identity)."""

    def relevance(self, op, a, R, z=None):
        return R.reshape(a.shape)


@dataclass(frozen=True)
class Gradient(Rule):
    """Relevance moves as the gradient does: winner-takes-all max pooling, reshapes."""

    def relevance(self, op, a, R, z=None):
        return op.vjp(a, None, R)
