"""Rules for the operations of a traced graph (REFERENCE.md §8): ``x + y``, ``h.mean(2)``, ``a * b``, ...

A model traced by :mod:`~lrp_widgets.engine.graph` runs its modules through the same hooks as
always; every other operation on the data becomes an ``OperationCall`` (``operation_calls.py``), which moves relevance
with the rules of ``rules.py`` on the op/vjp interface of ``ops.py`` wherever an operation is a
linear map, and with the few rules below where it is not:

==============================  ==========================================================================
operation kind                  relevance
==============================  ==========================================================================
:class:`Add`                    ``a + b``, ``a - b``: split in proportion to the terms (epsilon), as ``Sum``
:class:`Mean`                   ``mean``/``sum`` over axes: like average pooling (the composite's rule)
:class:`Move`                   reshapes, ``cat``, ``stack``, ``split``, indexing, ``permute``: follows the data
:class:`Scale`                  product with (or division by) a constant: epsilon on the linear map
:class:`Product`                ``a * b`` of two activations: :class:`Gated` (signal takes all) or :class:`Uniform`
:class:`MatMul`                 ``a @ b`` of two activations: :class:`Uniform`; with a constant: a linear layer
:class:`AttentionScores`        ``q @ k^T``, ``weights @ v`` of a re-expressed attention (``attention.py``):
:class:`AttentionValues`        :class:`Uniform` (AttnLRP) or, for the values, ``Gated(signal=1)`` (CP-LRP)
:class:`Softmax`                linearisation at the input, ``R_x = x (R - s sum R)``; as the model's output:
                                like ``nn.Softmax`` last (the explanation starts from the logits)
:class:`Activation`             ``F.relu``, ``torch.tanh``, ``F.gelu``, dropout: identity (relevance passes)
:class:`FunctionalLinear`       ``F.linear``, ``F.conv1d/2d/3d``: the rules of ``nn.Linear`` / ``nn.ConvNd``
:class:`FunctionalConv`
:class:`Pool`, :class:`MaxPool` ``F.avg_pool2d``, ``F.interpolate``, ``F.max_pool2d``: as their modules
==============================  ==========================================================================

Constants and parameters get no relevance (like a bias, they absorb their share). Composites address
operations by kind (``Composite({operations.Add: rules.Epsilon(0.01)})``; a kind without an entry
takes the entry of the module it behaves like, e.g. ``Add`` that of ``Sum``) and by graph node name
(``name_rules={"add_3": rules.Zero(), "mul": operations.Gated(signal=1)}``).

Which factor of a product is the gate: the one computed by a sigmoid (``torch.sigmoid``,
``F.hardsigmoid``, ``nn.Sigmoid``, possibly reshaped), so ``x * torch.sigmoid(g)`` sends all of its
relevance to ``x`` (and SiLU written as ``x * sigmoid(x)`` passes relevance like ``nn.SiLU``). When
neither factor or both are such gates the product takes the uniform rule. A node-name entry
(``Gated(signal=0)`` or ``Uniform()``) overrides the choice. In ``a / b`` of two activations the
denominator is a gate (held constant, as the std in LayerNorm, REFERENCE.md §7).
"""
from __future__ import annotations

import operator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from . import ops, rules, types
from .layers import Sum

__all__ = [
    "Operation", "Add", "Mean", "Move", "Split", "Scale", "Product", "MatMul", "AttentionScores", "AttentionValues", "Softmax", "Activation",
    "FunctionalLinear", "FunctionalConv", "Pool", "MaxPool", "Shape", "Gated", "Uniform", "classify", "out_of_place",
]


# -- operation kinds: what composites address ----------------------------------------------------
class Operation:
    """Base of the operation kinds of a traced graph (never instantiated; a key of composites)."""

    #: the module type whose composite entry this kind takes when no entry names the kind itself
    like: type | None = None
    #: which rules it takes, for the composite's error message
    takes = "no rule: its treatment is fixed"


class Add(Operation):
    """``a + b``, ``a - b``, ``torch.add``: the epsilon rule on a sum (as :class:`~lrp_widgets.Sum`)."""

    like = Sum
    takes = "Epsilon or Zero"


class Mean(Operation):
    """``mean``/``sum`` over axes: a parameter-free linear map, like average pooling."""

    like = nn.AvgPool2d
    takes = "any rule but Pass"


class Pool(Mean):
    """``F.avg_pool*``, ``F.adaptive_avg_pool*``, ``F.interpolate``: like their modules."""


class MaxPool(Operation):
    """``F.max_pool*``: the winner takes all, or average pooling (the composite's ``maxpool``)."""

    like = nn.MaxPool2d
    takes = "any rule but Pass"


class Move(Operation):
    """Reshapes, ``cat``, ``stack``, indexing, ``permute``, ``to``: relevance follows the data."""


class Split(Move):
    """``split``, ``chunk``, ``unbind``: several outputs; relevance follows the data (as gradients do)."""


class Shape(Operation):
    """``x.size()``, ``x.shape``, ``x.dim()``, ``x.detach()``: no relevance flows there (a detached tensor
    is a constant)."""


class Scale(Operation):
    """A product with, or a division by, a constant (``2 * x``, ``x / 3``, ``-x``): a linear map (epsilon)."""

    takes = "Epsilon or Zero"


class Product(Operation):
    """``a * b`` (and ``a / b``) of two activations: :class:`Gated` or :class:`Uniform`."""

    takes = "Gated(signal=0|1) or Uniform"


class MatMul(Operation):
    """``a @ b``, ``torch.bmm``: :class:`Uniform` for two activations; a linear layer's rule with a constant."""

    like = nn.Linear
    takes = "Uniform (two activations) or a Linear layer's rule (a constant factor)"


class AttentionScores(MatMul):
    """``q @ k^T`` in an attention re-expressed by ``attention.py``: :class:`Uniform` (AttnLRP)."""


class AttentionValues(MatMul):
    """``weights @ v`` in an attention re-expressed by ``attention.py``: :class:`Uniform` (AttnLRP), or
    ``Gated(signal=1)`` (CP-LRP: the attention weights held constant, relevance flows through ``v``)."""


class Softmax(Operation):
    """``F.softmax``: linearisation at the input; as the model's output, the start is at the logits."""


class Activation(Operation):
    """Element-wise activations and dropout: relevance passes (the identity rule)."""

    takes = "Pass (the default), or any rule by exact node name (computed on the activation function)"


class FunctionalLinear(Operation):
    """``F.linear(x, weight, bias)``: the rule of an ``nn.Linear`` (first-layer rule included)."""

    like = nn.Linear
    takes = "Zero, Epsilon, Gamma, AlphaBeta, ZPlus, ZBox, Flat or WSquare"


class FunctionalConv(FunctionalLinear):
    """``F.conv1d/2d/3d``: the rule of the matching ``nn.ConvNd``."""

    like = nn.Conv2d


# -- rules of products ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Gated(rules.Rule):
    """Signal-take-all (REFERENCE.md §6): in ``gate * signal`` the signal gets all the relevance.

    ``signal`` is the factor's position in the call (0: first); the other factor gets none. With the
    epsilon rule on the product, ``R_signal = signal * gate * R / (z + eps)``, i.e. ``R`` itself.
    """

    signal: int = 0
    epsilon: float = rules.DEFAULT_EPSILON

    def relevance(self, op, a, R, z=None):
        return _bilinear(op, a, R, z, self.epsilon, [float(i == self.signal) for i in range(len(a))])


@dataclass(frozen=True)
class Uniform(rules.Rule):
    """The uniform rule (AttnLRP): epsilon on the bilinear form, half of each term to each factor."""

    epsilon: float = rules.DEFAULT_EPSILON

    def relevance(self, op, a, R, z=None):
        return _bilinear(op, a, R, z, self.epsilon, [1.0 / len(a)] * len(a))


def _bilinear(op, a: tuple, R, z, epsilon, shares):
    """``R_i = share_i * a_i * d(z . s)/d a_i`` with ``s = R / stabilize(z)``: each term ``a_i b_j`` of the
    product carries ``a_i b_j s``, of which factor ``i`` gets ``share_i``."""
    if z is None:
        z = op(*a)
    grads = op.vjp(a, None, rules.divide(R, z, epsilon))
    # (share * t) * g, the product written over the new tensor share * t: one allocation fewer
    return tuple((t * share).mul_(g) if share else torch.zeros_like(t) for share, t, g in zip(shares, a, grads))


# -- linear maps of operations (the op/vjp interface of ops.py) --------------------------------------
class TensorsOp:
    """A function of several tensors, with its vector-Jacobian product by autograd."""

    weight = None
    bias = None

    def __init__(self, function):
        self.function = function

    def __call__(self, *tensors):
        return self.function(*tensors)

    def vjp(self, tensors, weight, s):
        with torch.enable_grad():
            leaves = [t.detach().requires_grad_(True) for t in tensors]
            grads = torch.autograd.grad(self.function(*leaves), leaves, s, allow_unused=True)
        return tuple(torch.zeros_like(t) if g is None else g for t, g in zip(tensors, grads))


class MatMulPairOp(TensorsOp):
    """``a @ b`` of two activations (``a @ b^T`` with ``transposed``: ``q @ k^T``), both with the same batch
    axes (at least one): computed, and its vjp written out, as ``torch.matmul`` and autograd do it (the
    batch axes folded into one, ``bmm`` on the same layouts: bit-identical), without building a graph.
    :meth:`forward` keeps the folded operands (copies, where the factors are transposed views), so the
    vjp does not copy them again."""

    def __init__(self, function, transposed: bool = False):
        super().__init__(function)
        self.transposed = transposed
        self.folded = None  # (left, right) as bmm took them in the forward pass

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """The product, as ``torch.matmul`` computes it; keeps the folded operands for :meth:`vjp`."""
        if self.transposed:
            b = b.mT
        left, right = a.reshape(-1, *a.shape[-2:]), b.reshape(-1, *b.shape[-2:])
        self.folded = (left, right)
        return torch.bmm(left, right).view(*a.shape[:-1], b.shape[-1])

    @staticmethod
    def fits(a: torch.Tensor, b: torch.Tensor) -> bool:
        """Whether the product of ``a`` and ``b`` is one this op's vjp writes out (else: autograd)."""
        return a.dim() == b.dim() >= 3 and a.shape[:-2] == b.shape[:-2]

    def vjp(self, tensors, weight, s):
        a, b = tensors
        if self.transposed:
            b = b.mT
        left, right = self.folded  # kept by forward(), which computed this product
        s3 = s.reshape(-1, *s.shape[-2:])
        grad_a = torch.bmm(s3, right.mT).reshape(a.shape)
        grad_b = torch.bmm(left.mT, s3).reshape(b.shape)
        return grad_a, grad_b.mT if self.transposed else grad_b


class SoftmaxOp(ops.FunctionOp):
    """``softmax(a, dim)`` with its output ``s`` at hand: :meth:`relevance` is the linearisation at the input
    written out, without computing the softmax again."""

    def __init__(self, function, output: torch.Tensor, dim: int):
        super().__init__(function)
        self.output, self.dim = output, dim

    def relevance(self, a: torch.Tensor, R: torch.Tensor) -> torch.Tensor:
        """``R_x = x (R - s sum R)`` (REFERENCE.md §7). The same as LRP-0 on the softmax's Jacobian
        (``x * vjp(R / s)``, as :class:`~lrp_widgets.engine.rules.Zero` computes it), which divides ``R``
        by ``s`` only for the vjp to multiply it back, and needs a mask where ``s`` underflows to 0
        (there ``R = 0``: ``s`` is one of its factors)."""
        shares = self.output * R.sum(self.dim, keepdim=True)
        return torch.sub(R, shares, out=shares).mul_(a)  # written over the new tensor: one allocation


class MatMulOp:
    """``a @ weight`` (or ``weight @ a`` with ``left=True``) for a constant ``weight``: a linear layer."""

    bias = None
    fresh_vjp = True  # autograd's matmul backward: a new tensor

    def __init__(self, weight: torch.Tensor, left: bool):
        self.weight, self.left = weight, left

    def __call__(self, a, weight, bias=None):
        z = weight @ a if self.left else a @ weight
        return z if bias is None else z + bias

    def vjp(self, a, weight, s):
        return ops.autograd_vjp(lambda t: self(t, weight), a, s)


class FunctionalConvOp:
    """``F.convNd(a, weight, bias, stride, padding, dilation, groups)`` as a linear map."""

    _CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
    _INPUT_GRAD = {1: torch.nn.grad.conv1d_input, 2: torch.nn.grad.conv2d_input, 3: torch.nn.grad.conv3d_input}
    fresh_vjp = True  # a convolution's input gradient

    def __init__(self, dims, weight, bias, stride=1, padding=0, dilation=1, groups=1):
        self.dims, self.weight, self.bias = dims, weight, bias
        self.settings = (stride, padding, dilation, groups)

    def __call__(self, a, weight, bias=None):
        return self._CONV[self.dims](a, weight, bias, *self.settings)

    def vjp(self, a, weight, s):
        if isinstance(self.settings[1], str):  # "same"/"valid": autograd knows the padding
            return ops.autograd_vjp(lambda t: self(t, weight), a, s)
        return self._INPUT_GRAD[self.dims](a.shape, weight, s, *self.settings)


# -- which operation a graph node is ------------------------------------------------------------------
def _table():
    kinds = {
        Add: [operator.add, operator.iadd, operator.sub, operator.isub, torch.add, torch.sub, torch.subtract,
              "add", "sub", "subtract", "__add__", "__radd__", "__sub__"],
        Mean: [torch.mean, torch.sum, "mean", "sum"],
        Pool: [F.avg_pool1d, F.avg_pool2d, F.avg_pool3d, F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.interpolate],
        MaxPool: [F.max_pool1d, F.max_pool2d, F.adaptive_max_pool1d, F.adaptive_max_pool2d],
        Product: [operator.mul, operator.imul, torch.mul, torch.multiply, "mul", "multiply", "__mul__", "__rmul__",
                  operator.truediv, operator.itruediv, torch.div, torch.true_divide, "div", "true_divide",
                  "__truediv__", operator.neg, torch.neg, "neg"],
        MatMul: [operator.matmul, torch.matmul, torch.bmm, torch.mm, "matmul", "bmm", "mm", "__matmul__"],
        Softmax: [F.softmax, torch.softmax, "softmax", F.log_softmax, torch.log_softmax, "log_softmax"],
        Activation: [F.relu, torch.relu, "relu", F.relu6, F.leaky_relu, F.gelu, F.silu, F.elu, F.softplus,
                     F.hardtanh, F.mish, F.hardswish, torch.tanh, F.tanh, "tanh", torch.sigmoid, F.sigmoid,
                     "sigmoid", F.hardsigmoid, F.dropout, F.dropout1d, F.dropout2d, F.alpha_dropout],
        FunctionalLinear: [F.linear],
        FunctionalConv: [F.conv1d, F.conv2d, F.conv3d],
        Move: [operator.getitem, torch.flatten, torch.reshape, torch.permute, torch.transpose, torch.swapaxes,
               torch.squeeze, torch.unsqueeze, torch.cat, torch.concat, torch.concatenate, torch.stack,
               torch.narrow, torch.select, torch.movedim, torch.t, torch.roll, torch.flip, F.pad,
               "view", "reshape", "view_as", "reshape_as", "flatten", "unflatten", "permute", "transpose", "t",
               "swapaxes", "movedim", "squeeze", "unsqueeze", "contiguous", "narrow", "select", "expand",
               "expand_as", "repeat", "roll", "flip", "to", "float", "double", "type_as", "clone",
               "masked_fill", torch.masked_fill,
               "__getitem__"],
        Split: [torch.split, torch.chunk, torch.unbind, torch.tensor_split, "split", "chunk", "unbind",
                "tensor_split"],
        Shape: [getattr, len, "size", "dim", "numel", "__len__", "detach", torch.detach],
    }
    return {target: kind for kind, targets in kinds.items() for target in targets}


TABLE = _table()
#: the operations whose output is a gate of a product (see the module's docstring)
GATES = {torch.sigmoid, F.sigmoid, "sigmoid", F.hardsigmoid, "hardsigmoid"}
GATE_MODULES = types.GATE
SUBTRACT = {operator.sub, operator.isub, torch.sub, torch.subtract, "sub", "subtract", "__sub__"}
DIVIDE = {operator.truediv, operator.itruediv, torch.div, torch.true_divide, "div", "true_divide", "__truediv__"}
_OUT_OF_PLACE = {operator.iadd: operator.add, operator.isub: operator.sub, operator.imul: operator.mul,
                 operator.itruediv: operator.truediv}


def out_of_place(op_name: str, target):
    """The out-of-place version of an in-place call (``out += x``, ``x.add_(y)``): the rules read the
    inputs after the forward pass, so nothing may overwrite them."""
    if op_name == "call_method" and target.endswith("_") and not target.endswith("__") and hasattr(torch.Tensor, target[:-1]):
        return target[:-1]
    return _OUT_OF_PLACE.get(target, target)


def classify(op_name: str, target) -> type | None:
    """The operation kind of a ``call_function``/``call_method`` node, or None when it has no rule."""
    try:
        return TABLE.get(out_of_place(op_name, target))
    except TypeError:  # an unhashable target
        return None
