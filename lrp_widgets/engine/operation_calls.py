"""Operations of a model's forward as calls that move relevance: the rule of each one, chosen once.

:class:`OperationCall` is to an operation what ``propagation._Call`` is to a module call: it holds the
rule and the linear map the composite chose (:func:`configure`) and moves relevance from the
operation's output to its activations. :func:`apply` runs one operation in the forward pass and puts
its call on the autograd graph, through the same autograd function as the module calls. The kinds and
their rules are in :mod:`~lrp_widgets.engine.operations`; the graph path (``graph.py``) calls
:func:`apply` for each operation node.
"""
from __future__ import annotations

import functools
import inspect
import operator

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.graph import get_gradient_edge
from torch.fx.node import map_aggregate

from . import ops, rules
from .errors import CompositeError
from .operations import (
    DIVIDE, SUBTRACT, Activation, Add, AttentionScores, AttentionValues, FunctionalConv, FunctionalConvOp,
    FunctionalLinear, Gated, MatMul, MatMulOp, MatMulPairOp, MaxPool, Mean, Move, Product, Scale, Shape, Softmax,
    SoftmaxOp, Split, TensorsOp, Uniform,
)
from .propagation import _Propagate
from .records import Recorder

__all__ = ["OperationCall", "configure", "apply", "accepts", "rule_for"]


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
    if issubclass(kind, MatMul):  # AttentionScores/AttentionValues too
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
            if cls is not None and _names(key, cls):
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


@functools.lru_cache(maxsize=1024)
def _names(key, cls: type) -> bool:
    """Whether a ``layer_rules`` key (a type or a tuple of them) names ``cls`` or a base class of it (a graph
    runs this for every operation and entry: remembered, as keys and kinds are few)."""
    keys = key if isinstance(key, tuple) else (key,)
    return any(isinstance(k, type) and issubclass(cls, k) for k in keys)


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
        if isinstance(self.op, SoftmaxOp):  # its linearisation, written out
            return (self.op.relevance(inputs[0], R),)
        return (self.rule.relevance(self.op, inputs[0], R, z=self.z),)


def configure(call: OperationCall, composite, first_done: bool, target, args, kwargs, gate=None) -> bool:
    """Choose ``call``'s rule and linear map; ``args``/``kwargs`` are the call's own (activations included).

    ``gate``: the position of the factor that is a gate (products), if the graph found one. Returns
    whether the call used the composite's first-layer rule slot (a functional Linear/Conv).
    """
    operation, name, output = call.operation, call.name, call.output
    n = len(call.positions)
    function = call.function
    if issubclass(operation, Move):  # (most moves of one activation ride on autograd instead: _moved)
        call.op = TensorsOp(function)
        rule_for(composite, name, operation)  # only checks an exact name's rule
    elif operation is Add:
        subtract, alpha = target in SUBTRACT, kwargs.get("alpha", 1)
        call.coefficients = [1 if position in (0, "input", "self") else (-alpha if subtract else alpha)
                             for position in call.positions]
        call.rule = rule_for(composite, name, Add) or rules.Epsilon()
        call.z = output
    elif operation is Product and n == 2 or issubclass(operation, MatMul) and n == 2:
        if target in DIVIDE:  # a / b: the denominator is held constant, a gate
            gate = 1
        default = Gated(signal=1 - call.positions.index(gate)) if gate in call.positions[:2] else Uniform()
        call.rule = rule_for(composite, name, operation, like=operation) or default
        if not isinstance(call.rule, (Gated, Uniform)):
            raise CompositeError(f"the operation '{name}' multiplies two activations; it takes Gated or Uniform")
        call.op, call.z = call.op or TensorsOp(function), output  # call.op: a MatMulPairOp that computed the output
    elif operation is Product:  # a product with (division by) a constant: a linear map, as BatchNorm's scale
        if target in DIVIDE and call.positions[0] not in (0, "input", "self"):
            return None  # 1 / x is not linear: no rule
        call.op = ops.FunctionOp(function)
        call.rule, call.z = rule_for(composite, name, Scale, like=Scale) or rules.Epsilon(), output
    elif issubclass(operation, MatMul):  # one factor is a constant: a linear layer without bias
        (position,) = call.positions
        weight = _argument(args, kwargs, 1 - position if isinstance(position, int) else 0, "other")
        call.op = MatMulOp(weight.detach(), left=position in (1, "other"))
        call.rule, call.z = rule_for(composite, name, MatMul) or rules.Epsilon(), output
    elif operation is Softmax:
        rule_for(composite, name, Softmax)
        if not call.final and target in (F.log_softmax, torch.log_softmax, "log_softmax"):
            return None  # log_softmax inside a model: no rule
        call.op, call.rule, call.z = _softmax_op(target, function, output, call.positions, args, kwargs), rules.Zero(), output
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


#: matmuls of two activations whose vjp :class:`MatMulPairOp` writes out (else autograd's, by :class:`TensorsOp`)
_MATMULS = {operator.matmul, torch.matmul, torch.bmm, "matmul", "bmm", "__matmul__"}


def _pair_op(operation, target, function, positions, args, kwargs, tensors):
    """A :class:`MatMulPairOp` for a product of the two activations ``tensors`` (the call's only arguments)
    that it can compute (the output and its vjp), else None."""
    if operation is None or not issubclass(operation, MatMul) or positions != [0, 1] or len(args) != 2 or kwargs:
        return None
    if not MatMulPairOp.fits(*tensors):
        return None
    if operation is AttentionScores:  # q @ k^T
        return MatMulPairOp(function, transposed=True)
    if operation is AttentionValues or target in _MATMULS:
        return MatMulPairOp(function)
    return None


def _softmax_op(target, function, output, positions, args, kwargs):
    """``softmax``'s linear map: a :class:`SoftmaxOp` (its linearisation written out, from the output) where
    the output has the input's dtype, else autograd's vjp with the Zero rule."""
    dim = _argument(args, kwargs, 1, "dim")
    direct = target in (F.softmax, torch.softmax, "softmax") and positions == [0] and isinstance(dim, int)
    if direct and output.dtype == args[0].dtype:
        return SoftmaxOp(function, output, dim)
    return ops.FunctionOp(function)


#: what :func:`apply` returns for an operation without a rule (the caller names it in its error)
NO_RULE = object()


def apply(session, name: str, operation, call, target, slots: list, positions: list, args, kwargs,
          gate=None, final: bool = False):
    """Run one operation of the forward pass on its activations ``slots`` and attach its rule.

    ``call(*tensors)`` computes the operation (constants bound); ``args``/``kwargs`` are its
    arguments with the activations in place, ``positions`` where each activation sits. Returns the
    output, on the autograd graph through ``propagation._Propagate`` (relevance then moves by the
    rule), or :data:`NO_RULE`.
    """
    with session._hook():  # the functional-call watch lets these calls through
        if operation is not None and issubclass(operation, Shape):
            return call(*slots)
        if operation is Split:  # several outputs: they follow the data as gradients do
            return call(*slots)
        if operation is not None and issubclass(operation, Move) and len(slots) == 1 and name not in session.masks:
            output = _moved(session, name, operation, call, slots[0])
            if output is not None:
                return output
        tensors = [t.detach() for t in slots]
        pair = _pair_op(operation, target, call, positions, args, kwargs, tensors) if len(slots) == 2 else None
        with torch.no_grad():  # a product of two activations keeps the operands its vjp needs (no second copy)
            output = pair.forward(*tensors) if pair is not None else call(*tensors)
        if operation is None or not isinstance(output, torch.Tensor):
            return output if not _carries_data(output) else NO_RULE  # argmax, comparisons: no relevance there
        record = OperationCall(session, name, operation, len(session.calls), call, positions)
        record.output, record.op = output, pair
        record.final = final and operation is Softmax
        used_first = configure(record, session.composite, session.first_done, target, args, kwargs, gate=gate)
        if used_first is None:
            return NO_RULE
        session.first_done = session.first_done or used_first
        session.calls.append(record)
        # _Propagate returns an alias: the output the rule keeps (z) stays off the autograd graph (else z -> its
        # grad_fn -> the call -> z, a reference cycle that keeps every tensor of the call alive until gc runs)
        record.output = output.detach()
        return _Propagate.apply(record, *slots)


def _moved(session, name: str, operation, call, activation: torch.Tensor):
    """Run a move (reshape, transpose, indexing, ...) of one activation with autograd recording it, or return
    None where its output is not the work of one new autograd node reading ``activation`` (``.contiguous()``
    of a contiguous tensor returns it): the caller then runs it as an :class:`OperationCall`.

    A move's rule is its vector-Jacobian product, so autograd's own backward of the move is the rule, with the
    same kernels (the relevance is bit-identical). A hook on the move's node records it (the node's gradient
    at its input). No rule object, no Python backward: on the tiny ViT (a dozen moves per call) AttnLRP takes
    ~2% less time (in-process A/B). The node may also read constants (``torch.cat([x, self.extra])`` with a
    parameter): they get no relevance, as in an OperationCall, which passes the activation only; and it may read
    the activation through a copy (``flatten`` of a transposed tensor clones it first: the gradient at the
    copy is the activation's). Masked nodes keep the OperationCall (the mask acts on the relevance at the
    output)."""
    rule_for(session.composite, name, operation)  # an exact name's rule must suit a move
    output = call(activation)
    node = output.grad_fn if isinstance(output, torch.Tensor) else None
    if node is None or output is activation:
        return None
    # where the activation's gradient goes: its grad_fn, or a leaf's accumulator (get_gradient_edge, slower)
    source = (activation.grad_fn, activation.output_nr) if activation.grad_fn is not None else \
        tuple(get_gradient_edge(activation))[:2]
    reads = [i for i, edge in enumerate(node.next_functions) if _reads(edge, source)]
    if len(reads) != 1:
        return None
    moved = Recorder(name, len(session.calls), session.records, reads[0])
    session.calls.append(moved)
    node.register_hook(moved)
    return output


def _reads(edge: tuple, source: tuple) -> bool:
    """Whether the autograd edge ``edge`` leads to ``source`` (an activation's node and output), directly or
    through a copy (``CloneBackward0``, whose gradient is its input's)."""
    function, number = edge
    if function is None:
        return False
    if function is source[0] and number == source[1]:
        return True
    return function.name() == "CloneBackward0" and len(function.next_functions) == 1 and \
        function.next_functions[0][0] is source[0] and function.next_functions[0][1] == source[1]


def _carries_data(value) -> bool:
    found = []
    map_aggregate(value, lambda v: found.append(v) if isinstance(v, torch.Tensor) and v.is_floating_point() else None)
    return bool(found)
