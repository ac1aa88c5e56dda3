"""Where ``torch.fx`` cannot trace a model, its operations are caught as they run.

fx traces with stand-in values, so it stops at Python that needs real ones: an ``if`` on the data
(``if x.sum() > 0``), unpacking a tensor (``a, b = x.chunk(2, 1)``), ``len(x)``. Such a model is run
for real under :class:`Capture`, a ``TorchFunctionMode`` that sees every torch call the forward makes
outside modules (modules go through the session's hooks as always) and gives each operation on the data
the rule of its kind, through :func:`~lrp_widgets.engine.operation_calls.apply`: the same calls and
rules as the graph path, for the branch the forward takes on this input.

Operations are named as fx would name them, by function and count in call order (``add``, ``add_1``,
``mean``); the gate of a product is the factor computed by a sigmoid (a function or an ``nn.Sigmoid``,
possibly reshaped), as in the graph path.
"""
from __future__ import annotations

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten, tree_map

from . import operation_calls, operations, types
from .errors import UnsupportedOperationError

__all__ = ["Capture", "run"]


class _Slot:
    __slots__ = ("index",)

    def __init__(self, index):
        self.index = index


class Capture(TorchFunctionMode):
    """Gives rules to the operations a forward pass does on the data outside modules, as they run."""

    def __init__(self, session):
        super().__init__()
        self.session = session
        self.activations: dict = {}  # id -> tensor: outputs of operations (kept alive: ids stay unique)
        self.gates: set = set()  # ids of tensors computed by a sigmoid
        self.softmax: dict = {}  # id(output) -> (call, name, function)
        self.counts: dict = {}

    def is_activation(self, value) -> bool:
        if not isinstance(value, torch.Tensor) or not value.requires_grad:
            return False
        return id(value) in self.activations or id(value) in self.session.producer or value is self.session.input

    def _is_gate(self, value) -> bool:
        call = self.session.producer.get(id(value))
        return id(value) in self.gates or (call is not None and isinstance(call[0].module, types.GATE))

    def __torch_function__(self, func, types_=(), args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        session = self.session
        if session.leaf_depth or session.in_hook:
            return func(*args, **kwargs)
        slots, positions = [], []

        def mark(value, position):
            if self.is_activation(value):
                slots.append(value)
                positions.append(position)
                return _Slot(len(slots) - 1)
            return value

        args = tuple(tree_map(lambda v, i=i: mark(v, i), a) for i, a in enumerate(args))
        kwargs = {k: tree_map(lambda v, k=k: mark(v, k), a) for k, a in kwargs.items()}
        name = getattr(func, "__name__", str(func))
        method = getattr(func, "__qualname__", "").split(".")[0] in ("TensorBase", "Tensor")
        target = operations.out_of_place("call_method", name) if method else func
        operation = operations.classify("call_method" if method else "call_function", target)
        if "inplace" in kwargs:
            kwargs["inplace"] = False

        def call(*tensors):
            a, k = tree_map(lambda v: tensors[v.index] if isinstance(v, _Slot) else v, (args, kwargs))
            return getattr(a[0], target)(*a[1:], **k) if method else target(*a, **k)

        if not slots or name == "__get__":  # constants; attributes (.shape, .T follow the data as gradients do)
            with session._hook():
                return call(*slots)
        base = target if isinstance(target, str) else name
        count = self.counts.get(base, 0)
        self.counts[base] = count + 1
        node = base if count == 0 else f"{base}_{count}"
        gates = [p for p, t in zip(positions, slots) if self._is_gate(t)]
        concrete = tree_map(lambda v: slots[v.index] if isinstance(v, _Slot) else v, (args, kwargs))
        result = operation_calls.apply(session, node, operation, call, target, slots, positions, *concrete,
                                       gate=gates[0] if len(gates) == 1 else None, final=operation is operations.Softmax)
        if result is operation_calls.NO_RULE:
            where = session.stack[-1] if session.stack else "the model"
            raise UnsupportedOperationError(
                f"the forward of '{where}' calls `{name}` on the data (operation '{node}'), which has no LRP rule. "
                "Operations with rules: see lrp_widgets.engine.operations. Do it with a module instead (e.g. "
                "nn.GELU, nn.LayerNorm), or explain the part of the model before it."
            )
        for value in tree_flatten(result)[0]:
            if isinstance(value, torch.Tensor):
                self.activations[id(value)] = value
                if base in ("sigmoid", "hardsigmoid") or (operation is operations.Move and len(slots) == 1 and gates):
                    self.gates.add(id(value))
        if operation is operations.Softmax and isinstance(result, torch.Tensor):
            self.softmax[id(result)] = (session.calls[-1], node, base)
        return result

    def settle(self, output) -> None:
        """After the forward pass: a softmax is the model's last layer only where its output is returned."""
        returned = {id(v) for v in tree_flatten(output)[0] if isinstance(v, torch.Tensor)}
        for key, (call, node, base) in self.softmax.items():
            call.final = key in returned
            if not call.final and base == "log_softmax":
                raise UnsupportedOperationError(
                    f"the operation '{node}' (log_softmax) inside the model has no LRP rule; it is supported as the "
                    "model's last operation only"
                )


def run(session, model, x):
    """``model(x)`` with its operations on the data caught as they run (see the module's docstring)."""
    session.input = x
    capture = Capture(session)
    with capture:
        output = model(x)
    capture.settle(output)
    return output
