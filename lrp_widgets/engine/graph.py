"""Explaining models as they are written: the model's operations as a ``torch.fx`` graph.

The hook path (``propagation.py``) sees modules only; ``x + y`` or ``h.mean(2)`` in a ``forward``
stops it with a :class:`~lrp_widgets.engine.errors.FunctionalCallError`. Here the model is traced
once with ``torch.fx`` (supported modules stay whole, as leaves; everything else is traced through)
and then *run node by node*: module nodes get exactly the rules of the hook path, from the same
session code the hooks run (``Session.call_leaf`` runs it around the module's forward, with no hooks
attached), and every other operation on the data gets the rule of its kind
(:mod:`~lrp_widgets.engine.operations`) through the same autograd function. One rule implementation
serves both paths, and on a model both can explain they give the same relevance.

When ``explain`` uses the graph (its ``graph`` argument):

* ``None`` (default): the hook path; where it stops (a functional call, or a user's module without a
  rule), the model is explained as written, and remembered (later calls go there at once). A model
  the hook path explains keeps exactly its results and its speed, and is never traced.
* ``True``: always as written.
* ``False``: never (the hook path's error names the functional call).

"As written" is the traced graph; where fx cannot trace the model (an ``if`` on the data, unpacking
``a, b = x.chunk(2, 1)``), its operations are caught as they run instead (``eager.py``), with the
same rules (``torch.export`` would not help here: it inlines the modules, whose rules are the hook
path's).

Traces are cached per model object (at most :data:`CACHE_SIZE` models, least recently used dropped),
and traced again when the model's modules change (a module replaced, added or removed). Python values a
forward reads (``self.scale = 2.0``, a flag) are baked into the trace: call :func:`clear_cache` after
changing one. The model is never changed: constants created in ``forward`` are kept in the trace,
not set on the model.
"""
from __future__ import annotations

import inspect
import weakref

import torch
import torch.fx as fx
from torch import nn
from torch.fx.node import map_aggregate, map_arg

from . import attention, eager, operation_calls, operations, types
from .cache import BoundedCache
from .errors import (
    FunctionalCallError, GraphTraceError, UnsupportedConfigurationError, UnsupportedModuleError, UnsupportedOperationError,
)

__all__ = ["trace", "Traced", "forward", "clear_cache", "CACHE_SIZE"]

#: How many models' traces are kept.
CACHE_SIZE = 16


class _Tracer(fx.Tracer):
    """Supported modules are leaves; tensor constants stay with the trace (never set on the model)."""

    def __init__(self, stack_traces: bool = False):
        super().__init__()
        # source lines cost ~1 s the first time in a process: recorded only to name an unsupported operation's line
        self.record_stack_traces = stack_traces
        self.constants: dict = {}

    def is_leaf_module(self, module: nn.Module, qualified_name: str) -> bool:
        # modules with rules stay whole; so do torch's own (one without a rule keeps the hook path's clear
        # error); a user's module is traced through, so its operations get rules
        if isinstance(module, types.ATTENTION):  # traced through its functional re-expression
            return False
        return types.kind_of(module) is not None or isinstance(module, types.NOT_YET) or super().is_leaf_module(module, qualified_name)

    def call_module(self, module, forward, args, kwargs):
        # modules traced through run their forward without hooks: explain's own hooks are attached
        # while it traces, and a hook of a module without a rule would stop the trace
        if isinstance(module, types.ATTENTION):
            forward = attention.forward_of(module, self.path_of_module(module))
        elif not self.is_leaf_module(module, ""):
            forward = module.forward
        return super().call_module(module, forward, args, kwargs)

    def create_arg(self, a):
        if isinstance(a, torch.Tensor) and not isinstance(a, nn.Parameter) and a not in self.tensor_attrs:
            if not any(a is buffer for buffer in self.root.buffers()):
                name = f"_lrp_constant_{len(self.constants)}"
                self.constants[name] = a
                self.tensor_attrs[a] = name
                return self.create_node("get_attr", name, (), {})
        return super().create_arg(a)


class Traced:
    """A model's traced graph, with what explaining it needs to know about each node.

    Attributes
    ----------
    graph : torch.fx.Graph
        The operations (``graph.print_tabular()`` lists node names, which composites can address).
    activations : set of str
        Nodes that depend on the model's input (the others are constants and parameters).
    """

    def __init__(self, model: nn.Module, graph: fx.Graph, constants: dict):
        self.graph, self.constants = graph, constants
        self.nodes = list(graph.nodes)
        self.activations = set()
        first = True
        for node in self.nodes:
            if node.op == "placeholder":
                if first:
                    self.activations.add(node.name)
                first = False
            elif node.op != "get_attr" and any(n.name in self.activations for n in node.all_input_nodes):
                self.activations.add(node.name)
        self.kinds = {n.name: operations.classify(n.op, n.target) for n in self.nodes if n.op in ("call_function", "call_method")}
        modules = dict(model.named_modules())
        self.gates = {n.name: self._gate_position(n, modules) for n in self.nodes if self.kinds.get(n.name) is operations.Product}
        output = next(n for n in reversed(self.nodes) if n.op == "output")
        self.final = {n.name for n in output.all_input_nodes}
        self.plans = {n.name: _Plan(n, self) for n in self.nodes if n.op in ("call_function", "call_method")}
        self.modules: dict = {}  # call_module node name -> weak reference to its module

    def module(self, model: nn.Module, node: fx.Node) -> nn.Module:
        """The module a ``call_module`` node calls, looked up once per trace (a trace is of these very
        modules: replacing one traces again); held weakly, so the cache keeps no module alive."""
        reference = self.modules.get(node.name)
        module = reference() if reference is not None else None
        if module is None:
            module = model.get_submodule(node.target)
            self.modules[node.name] = weakref.ref(module)
        return module

    def _gate_position(self, node: fx.Node, modules) -> int | None:
        """The position of the factor computed by a sigmoid (seen through reshapes), if exactly one is."""
        gates = [i for i, arg in enumerate(node.args[:2]) if isinstance(arg, fx.Node) and self._is_gate(arg, modules)]
        return gates[0] if len(gates) == 1 else None

    def _is_gate(self, node: fx.Node, modules) -> bool:
        while self.kinds.get(node.name) is operations.Move and isinstance(node.args[0], fx.Node):
            node = node.args[0]
        if node.op == "call_module":
            return isinstance(modules.get(node.target), operations.GATE_MODULES)
        return node.op in ("call_function", "call_method") and node.target in operations.GATES

    def run(self, session, model: nn.Module, x):
        """The model's output for ``x``, with relevance rules attached to every operation (in ``session``)."""
        return _Run(self, session, model).run(x)


class _Plan:
    """What running one operation node takes, worked out once per trace (not once per node per run).

    ``args``/``kwargs`` hold the node's constants; ``refs`` say where each node it reads goes, whether
    it is an activation (depends on the input) and so may carry relevance. Arguments that nest nodes
    (``torch.cat([a, b])``) take the general path (``nested``).
    """

    __slots__ = ("node", "name", "method", "target", "kind", "gate", "final", "in_place", "args", "kwargs", "refs",
                 "nested")

    def __init__(self, node: fx.Node, traced: Traced):
        self.node, self.name = node, node.name
        self.method = node.op == "call_method"
        self.target = operations.out_of_place(node.op, node.target)
        self.kind = traced.kinds.get(node.name)
        self.gate, self.final = traced.gates.get(node.name), node.name in traced.final
        self.in_place = node.args[0].name if _in_place(node) else None
        self.args, self.kwargs, self.refs = list(node.args), dict(node.kwargs), []
        if "inplace" in self.kwargs:
            self.kwargs["inplace"] = False
        self.nested = False
        for key, value in list(enumerate(node.args)) + list(node.kwargs.items()):
            if isinstance(value, fx.Node):
                self.refs.append((key, value.name, value.name in traced.activations))
            elif _has_node(value):
                self.nested = True


def _has_node(value) -> bool:
    found = []
    map_arg(value, found.append)
    return bool(found)


class _Slot:
    """Where an activation sits in a call's arguments."""

    __slots__ = ("index",)

    def __init__(self, index):
        self.index = index


class _Run:
    """One forward pass through a traced graph."""

    def __init__(self, traced: Traced, session, model: nn.Module):
        self.traced, self.session, self.model = traced, session, model

    def run(self, x):
        with self.session.unwatched():  # every node is known here: the functional-call watch only costs time
            return self._run(x)

    def _run(self, x):
        env = {}
        traced = self.traced
        first = True
        for node in traced.nodes:
            if node.op == "placeholder":
                env[node.name] = x if first else (node.args[0] if node.args else None)
                first = False
            elif node.op == "get_attr":
                env[node.name] = traced.constants.get(node.target) if node.target in traced.constants else _attribute(self.model, node.target)
            elif node.op == "call_module":
                args, kwargs = map_arg((node.args, node.kwargs), lambda n: env[n.name])
                module = traced.module(self.model, node)
                output = self.session.call_leaf(module, args, kwargs)  # a leaf nobody hooks: no hooks needed
                if output is None:
                    self.session.hook_modules()
                    with self.session.watching(module):  # a container called whole: its forward is not in the graph
                        output = module(*args, **kwargs)
                env[node.name] = output
            elif node.op == "output":
                return map_arg(node.args[0], lambda n: env[n.name])
            else:
                plan = traced.plans[node.name]
                env[node.name] = result = self._nested(node, env) if plan.nested else self._operation(plan, env)
                if plan.in_place is not None:  # ran out of place: later uses of its input see the result, as in place
                    env[plan.in_place] = result
        raise GraphTraceError("the traced graph has no output node")

    def _operation(self, plan: _Plan, env: dict):
        """Run one operation node whose arguments are nodes or constants (none nested), with its rule."""
        args, kwargs = list(plan.args), dict(plan.kwargs)
        slots, positions = [], []
        for key, name, activation in plan.refs:
            value = env[name]
            if activation and isinstance(value, torch.Tensor) and value.requires_grad:
                slots.append(value)
                positions.append(key)
            if type(key) is int:
                args[key] = value
            else:
                kwargs[key] = value
        method, target = plan.method, plan.target

        def call(*tensors):
            a, k = list(args), dict(kwargs)
            for key, tensor in zip(positions, tensors):
                if type(key) is int:
                    a[key] = tensor
                else:
                    k[key] = tensor
            return getattr(a[0], target)(*a[1:], **k) if method else target(*a, **k)

        return self._apply(plan, call, slots, positions, tuple(args), kwargs)

    def _apply(self, plan: _Plan, call, slots, positions, args, kwargs):
        if not slots:
            with self.session._hook():  # constants and parameters: as written
                return call()
        result = operation_calls.apply(self.session, plan.name, plan.kind, call, plan.target, slots, positions, args,
                                       kwargs, gate=plan.gate, final=plan.final)
        if result is operation_calls.NO_RULE:
            why = "has no LRP rule" if plan.kind is None else "has no LRP rule for these arguments"
            raise _unsupported(self.model, plan.node, why)
        return result

    def _nested(self, node: fx.Node, env: dict):
        """Run one operation node with nodes nested in its arguments (``torch.cat([a, b])``), with its rule."""
        traced, plan = self.traced, self.traced.plans[node.name]
        slots, positions = [], []

        def value(n, position):
            v = env[n.name]
            if n.name in traced.activations and isinstance(v, torch.Tensor) and v.requires_grad:
                slots.append(v)
                positions.append(position)
                return _Slot(len(slots) - 1)
            return v

        args = tuple(map_arg(a, lambda n, i=i: value(n, i)) for i, a in enumerate(plan.args))
        kwargs = {k: map_arg(a, lambda n, k=k: value(n, k)) for k, a in plan.kwargs.items()}
        method, target = plan.method, plan.target

        def call(*tensors):
            a, k = map_aggregate((args, kwargs), lambda v: tensors[v.index] if isinstance(v, _Slot) else v)
            return getattr(a[0], target)(*a[1:], **k) if method else target(*a, **k)

        concrete = map_aggregate((args, kwargs), lambda v: slots[v.index] if isinstance(v, _Slot) else v)
        return self._apply(plan, call, slots, positions, *concrete)


def _in_place(node: fx.Node) -> bool:
    method = node.op == "call_method" and node.target.endswith("_") and not node.target.endswith("__")
    return (method or node.kwargs.get("inplace") is True) and bool(node.args) and isinstance(node.args[0], fx.Node)


def _attribute(model: nn.Module, target: str):
    value = model
    for part in target.split("."):
        value = getattr(value, part)
    return value


def _describe(node: fx.Node) -> str:
    target = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", str(node.target))
    call = f".{target}()" if node.op == "call_method" else f"{target}"
    module = getattr(node.target, "__module__", None) or ""
    if node.op == "call_function" and module.startswith("torch"):
        call = f"{module.replace('torch.nn.functional', 'F').replace('torch._C._nn', 'F')}.{target}"
    return call


def _source_line(model: nn.Module, name: str) -> str:
    """Where the model's code does the operation of node ``name`` (traced again, with source lines)."""
    try:
        traced = _trace(model, stack_traces=True)
        node = next(n for n in traced.nodes if n.name == name)
    except Exception:  # the error message is still clear without the line
        return ""
    lines = [line.strip() for line in (node.stack_trace or "").strip().splitlines()]
    # (frame, its code line); the code is missing where the source is not on disk (e.g. stdin)
    frames = [(line, lines[i + 1] if i + 1 < len(lines) and not lines[i + 1].startswith("File ") else "")
              for i, line in enumerate(lines) if line.startswith("File ")]
    # the model's own line: the innermost frame outside torch and this engine
    frames = [f for f in frames if "/torch/" not in f[0] and "/lrp_widgets/engine/" not in f[0]]
    if not frames:
        return ""
    frame, code = frames[-1]
    return f" ({frame}: `{code}`)" if code else f" ({frame})"


def _unsupported(model: nn.Module, node: fx.Node, why: str) -> UnsupportedOperationError:
    where = _source_line(model, node.name)
    supported = sorted({k.__name__ for k in set(operations.TABLE.values())} - {"Shape"})
    return UnsupportedOperationError(
        f"the operation `{_describe(node)}` at graph node '{node.name}'{where} {why}. Operations with rules: "
        f"{', '.join(supported)} (see lrp_widgets.engine.operations). Do it with a module instead (e.g. nn.GELU, "
        "nn.LayerNorm), or explain the part of the model before it."
    )


# -- tracing, cached per model ---------------------------------------------------------------------
_CACHE = BoundedCache(CACHE_SIZE)  # id(model) -> [weak reference, signature, Traced or the trace error, needed]


def _signature(model: nn.Module) -> tuple:
    return (type(model).forward, model.__dict__.get("forward"),
            tuple((name, id(m), type(m)) for name, m in model.named_modules()))


def trace(model: nn.Module) -> Traced:
    """The model's :class:`Traced` graph, traced once and cached (see the module's docstring).

    Raises
    ------
    GraphTraceError
        ``torch.fx`` cannot trace the model (e.g. control flow that depends on the data).
    """
    key, signature = id(model), _signature(model)
    entry = _CACHE.lookup(key)
    if entry is None or entry[0]() is not model or entry[1] != signature:
        entry = [weakref.ref(model), signature, _trace(model), False]
        _CACHE.put(key, entry)
    if isinstance(entry[2], GraphTraceError):
        raise entry[2]
    return entry[2]


def _trace(model: nn.Module, stack_traces: bool = False):
    tracer = _Tracer(stack_traces)
    try:  # arguments with defaults (mask=None) are traced with their defaults
        parameters = list(inspect.signature(model.forward).parameters.values())[1:]
        concrete = {p.name: p.default for p in parameters if p.default is not inspect.Parameter.empty}
        graph = tracer.trace(model, concrete_args=concrete or None)
    except UnsupportedConfigurationError:  # an attention option we refuse (attention.py): not a trace failure
        raise
    except Exception as error:  # fx raises many kinds (TraceError, TypeError, NotImplementedError, ...)
        return GraphTraceError(
            f"torch.fx cannot trace {type(model).__name__}: {type(error).__name__}: {error}. Typical causes: an "
            "`if` or loop that depends on the data's values, or Python-level operations on tensors."
        )
    return Traced(model, graph, tracer.constants)


def clear_cache() -> None:
    """Forget every trace (after changing a Python value the model's forward reads)."""
    _CACHE.clear()


def forward(model: nn.Module, session, x, graph: bool | None = None):
    """Run ``model`` on ``x`` for ``session``: through its modules' hooks, or as it is written.

    Called by ``explain`` inside ``session.attached()``; ``graph`` as in ``explain`` (see the module's
    docstring). As written: through the traced graph, or, where fx cannot trace the model, with its
    operations caught as they run (``eager.py``).
    """
    if graph is False:
        session.hook_modules()
        return model(x)
    if graph is None:
        entry = _CACHE.lookup(id(model))
        known = entry is not None and entry[0]() is model and entry[3] and entry[1] == _signature(model)
        if known:  # the entry was just checked: no second look-up (a walk over the model's modules)
            return _run_traced(session, model, x, entry[2])
        session.hook_modules()
        try:
            return model(x)
        except UnsupportedConfigurationError:  # packed sequences, attention, ...: the graph would not help
            raise
        except (FunctionalCallError, UnsupportedModuleError):  # a call or a module without a rule
            _restart(session)
            return _as_written(session, model, x, needed=True)
    return _as_written(session, model, x)


def _as_written(session, model: nn.Module, x, needed: bool = False):
    session.leaf_depth += 1  # tracing calls no module with a rule, but keep the watch quiet
    try:
        traced = trace(model)
    except GraphTraceError:
        traced = None
    finally:
        session.leaf_depth -= 1
    if needed:  # later calls go here at once, without a hook-path attempt
        _CACHE.lookup(id(model))[3] = True
    return _run_traced(session, model, x, traced)


def _run_traced(session, model: nn.Module, x, traced):
    """Run ``traced`` (a :class:`Traced`, or where fx could not trace the model, its error or None)."""
    if isinstance(traced, Traced):
        return traced.run(session, model, x)
    session.hook_modules()  # the model's own forward runs: its modules are seen by their hooks
    return eager.run(session, model, x)


def _restart(session) -> None:
    """Forget what the stopped hook-path forward pass recorded (the hooks stay attached)."""
    tokens = session.tokens
    torch._C._set_grad_enabled(True)  # as explain runs the forward (a recurrent module's call turns it off)
    session.__init__(session.model, session.composite, session.record_layers, session.masks)
    session.tokens = tokens
