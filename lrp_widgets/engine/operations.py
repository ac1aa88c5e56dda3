"""Rules for the operations of a traced graph (REFERENCE.md §8): ``x + y``, ``h.mean(2)``, ``a * b``, ...

A model traced by :mod:`~lrp_widgets.engine.graph` runs its modules through the same hooks as
always; every other operation on the data becomes an :class:`OperationCall`, which moves relevance
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

import inspect
import operator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from . import ops, rules, types
from .errors import CompositeError
from .layers import Sum

__all__ = [
    "Operation", "Add", "Mean", "Move", "Split", "Scale", "Product", "MatMul", "Softmax", "Activation",
    "FunctionalLinear", "FunctionalConv", "Pool", "MaxPool", "Shape", "Gated", "Uniform", "classify",
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
    return tuple(share * t * g if share else torch.zeros_like(t) for share, t, g in zip(shares, a, grads))


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


class MatMulOp:
    """``a @ weight`` (or ``weight @ a`` with ``left=True``) for a constant ``weight``: a linear layer."""

    bias = None

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


def _argument(args, kwargs, position, name, default=None):
    if name in kwargs:
        return kwargs[name]
    return args[position] if len(args) > position else default


def _average_of_max_pool(target, args, kwargs):
    """``F.max_pool*`` (``args`` without the input) as the average pooling over its windows."""
    if target in (F.adaptive_max_pool1d, F.adaptive_max_pool2d):
        pool = F.adaptive_avg_pool1d if target is F.adaptive_max_pool1d else F.adaptive_avg_pool2d
        size = _argument(args, kwargs, 0, "output_size")
        return lambda t: pool(t, size)
    bound = inspect.signature(F._max_pool2d).bind(None, *args, **kwargs).arguments
    if bound.get("dilation", 1) not in (1, (1,), (1, 1)):
        raise CompositeError("max pooling with dilation cannot be treated as average pooling (maxpool='average')")
    pool = F.avg_pool1d if target is F.max_pool1d else F.avg_pool2d
    kernel, stride = bound["kernel_size"], bound.get("stride") or bound["kernel_size"]
    padding, ceil_mode = bound.get("padding", 0), bound.get("ceil_mode", False)
    return lambda t: pool(t, kernel, stride, padding, ceil_mode, count_include_pad=True)


# -- choosing a rule --------------------------------------------------------------------------------
def accepts(kind: type, rule, exact: bool = True) -> bool:
    """Whether an operation of ``kind`` can take ``rule`` (``exact=False``: a glob's rule, which skips more)."""
    carry = isinstance(rule, (rules.Pass, rules.Gradient))
    bilinear = isinstance(rule, (Gated, Uniform))
    if kind in (Add, Scale):
        return isinstance(rule, rules.Epsilon)
    if issubclass(kind, (Mean, MaxPool)):
        return not isinstance(rule, rules.Pass) and not bilinear
    if kind is Product:
        return bilinear
    if kind is MatMul:
        return not carry
    if kind is Activation:
        return carry or (exact and not bilinear)
    if issubclass(kind, FunctionalLinear):
        return not carry and not bilinear
    if issubclass(kind, Move):
        return carry
    return False


def rule_for(composite, name: str, kind: type, like: type | None = None, first: bool = False):
    """The composite's rule for operation node ``name`` of ``kind``, or None (the kind's default).

    In this order: an exact node name or a glob (globs skip operations that cannot take their
    rule), the first-layer rule (``first``), a ``layer_rules`` entry naming the kind (or a base
    class of it), then an entry for the module type the operation behaves like.
    """
    rule = composite.named_rule(name, lambda r: accepts(kind, r, exact=False))
    if rule is None and first and composite.first is not None:
        rule = composite.first
    for cls in (kind, like or kind.like) if rule is None else ():
        for key, candidate in composite.layer_rules.items():
            keys = key if isinstance(key, tuple) else (key,)
            if cls is not None and any(isinstance(k, type) and issubclass(cls, k) for k in keys):
                rule = candidate
                break
        if rule is not None:
            break
    if rule is not None and not accepts(kind, rule):
        raise CompositeError(
            f"the composite gives {rule!r} to the operation '{name}' ({kind.__name__}), which cannot take it: "
            f"it takes {kind.takes}. Give that node another rule (or none); a glob pattern would skip it."
        )
    return rule


class OperationCall:
    """One operation of a traced graph in one forward pass; moves relevance like a module's call.

    Duck-typed as ``propagation._Call`` (``session``, ``name``, ``kind``, ``index``, ``output``,
    ``relevance(R, inputs)``), so the one autograd function of ``propagation.py`` carries it.
    """

    def __init__(self, session, name, operation, index, function, positions):
        self.session, self.name, self.operation, self.index = session, name, operation, index
        self.kind = "operation"  # for code that lists the session's calls by kind
        self.function = function  # the activations (in call order) -> the output, constants bound
        self.positions = positions  # where each activation sits in the call (index or keyword)
        self.rule = self.op = self.z = self.output = None
        self.coefficients = None  # Add: +1 / -alpha per activation
        self.final = False  # Softmax: the model's output

    def relevance(self, R, inputs):
        """Relevance at the activations ``inputs``, given relevance ``R`` at the output."""
        if self.operation is Add:  # as propagation's Sum: s = R / stabilize(z), R_i = c_i a_i s
            s = rules.divide(R, self.z, self.rule.epsilon)
            return tuple((a * s if c == 1 else c * a * s).sum_to_size(a.shape) for a, c in zip(inputs, self.coefficients))
        if isinstance(self.rule, (Gated, Uniform)):
            return self.rule.relevance(self.op, tuple(inputs), R, self.z)
        if issubclass(self.operation, Move):
            return self.op.vjp(tuple(inputs), None, R)
        if self.final:  # as a final nn.Softmax: each output's relevance moves to its logit
            return (inputs[0] * rules.divide(R, self.z, 0.0),)
        return (self.rule.relevance(self.op, inputs[0], R, z=self.z),)


def configure(call: OperationCall, composite, first_done: bool, target, args, kwargs, gate=None) -> bool:
    """Choose ``call``'s rule and linear map; ``args``/``kwargs`` are the call's own (activations included).

    ``gate``: the position of the factor that is a gate (products), if the graph found one. Returns
    whether the call used the composite's first-layer rule slot (a functional Linear/Conv).
    """
    operation, name, output = call.operation, call.name, call.output
    n = len(call.positions)
    function = call.function
    if issubclass(operation, Move):
        call.op = TensorsOp(function)
        rule_for(composite, name, operation)  # only checks an exact name's rule
    elif operation is Add:
        subtract, alpha = target in SUBTRACT, kwargs.get("alpha", 1)
        call.coefficients = [1 if position in (0, "input", "self") else (-alpha if subtract else alpha)
                             for position in call.positions]
        call.rule = rule_for(composite, name, Add) or rules.Epsilon()
        call.z = output
    elif operation is Product and n == 2 or operation is MatMul and n == 2:
        if target in DIVIDE:  # a / b: the denominator is held constant, a gate
            gate = 1
        default = Gated(signal=1 - call.positions.index(gate)) if gate in call.positions[:2] else Uniform()
        call.rule = rule_for(composite, name, operation, like=operation) or default
        if not isinstance(call.rule, (Gated, Uniform)):
            raise CompositeError(f"the operation '{name}' multiplies two activations; it takes Gated or Uniform")
        call.op, call.z = TensorsOp(function), output
    elif operation is Product:  # a product with (division by) a constant: a linear map, as BatchNorm's scale
        if target in DIVIDE and call.positions[0] not in (0, "input", "self"):
            return None  # 1 / x is not linear: no rule
        call.op = ops.FunctionOp(function)
        call.rule, call.z = rule_for(composite, name, Scale, like=Scale) or rules.Epsilon(), output
    elif operation is MatMul:  # one factor is a constant: a linear layer without bias
        (position,) = call.positions
        weight = _argument(args, kwargs, 1 - position if isinstance(position, int) else 0, "other")
        call.op = MatMulOp(weight.detach(), left=position in (1, "other"))
        call.rule, call.z = rule_for(composite, name, MatMul) or rules.Epsilon(), output
    elif operation is Softmax:
        rule_for(composite, name, Softmax)
        if not call.final and target in (F.log_softmax, torch.log_softmax, "log_softmax"):
            return None  # log_softmax inside a model: no rule
        call.op, call.rule, call.z = ops.FunctionOp(function), rules.Zero(), output
    elif operation is Activation:
        call.rule = rule_for(composite, name, Activation) or rules.Pass()
        call.op = ops.FunctionOp(function)
        call.z = output if isinstance(call.rule, rules.Epsilon) else None
    elif issubclass(operation, Mean):
        call.op = ops.FunctionOp(function)
        call.rule = rule_for(composite, name, operation) or composite.pool_rule()
        call.z = output if isinstance(call.rule, rules.Epsilon) else None
    elif operation is MaxPool:
        named = rule_for(composite, name, MaxPool, like=MaxPool)
        if named is None and composite.maxpool == "average":
            # the denominator is the average's output, computed by the rule
            call.op, call.rule = ops.FunctionOp(_average_of_max_pool(target, args[1:], kwargs)), composite.pool_rule()
        else:
            call.op, call.rule = ops.FunctionOp(function), named or rules.Gradient()
            call.z = output if isinstance(call.rule, rules.Epsilon) else None
    elif issubclass(operation, FunctionalLinear):
        if call.positions != [0] and call.positions != ["input"]:
            return None  # a weight computed from the data: no rule
        weight, bias = _argument(args, kwargs, 1, "weight"), _argument(args, kwargs, 2, "bias")
        weight, bias = weight.detach(), None if bias is None else bias.detach()
        if operation is FunctionalConv:
            dims = weight.dim() - 2
            settings = [_argument(args, kwargs, i, key, default)
                        for i, key, default in ((3, "stride", 1), (4, "padding", 0), (5, "dilation", 1), (6, "groups", 1))]
            call.op = FunctionalConvOp(dims, weight, bias, *settings)
            like = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[dims]
        else:
            call.op, like = ops.LinearOp(weight, bias), nn.Linear
        call.rule = rule_for(composite, name, operation, like=like, first=not first_done) or rules.Epsilon()
        call.z = output
        return True
    else:
        return None
    return False
