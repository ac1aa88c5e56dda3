"""The one mechanism that moves relevance through a model.

Relevance travels backwards as the "gradient" of one autograd pass (as in Zennit). While the
model runs forward, a hook on every leaf module replaces the module's output by the output of
``_Propagate``, an autograd function whose backward asks the module's rule for the relevance
at the module's input. Nothing is stored on the model: hooks live only inside
``Session.attached()`` and are removed on the way out, even when the forward pass raises. (A traced
graph calls its modules itself, the hooks' work done by ``Session.call_leaf``: no hooks at all.)

Operations outside modules cannot be seen by hooks. Reshapes, concatenation and indexing move
relevance correctly as gradients do; arithmetic does not (``x + y`` would copy the relevance
to both terms), so a ``TorchFunctionMode`` (``watch.py``) watches the forward pass and names such calls.
"""
from __future__ import annotations

import contextlib
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from . import ops, recurrent, rules, types
from .canonizers import BatchNormFolding, batchnorm_affine
from .composites import Composite
from .errors import CompositeError, LRPWarning, UnsupportedConfigurationError, UnsupportedModuleError
from .module_rules import TAKES, accepts
from .records import Records
from .watch import Watch

def _is_leaf(module: nn.Module) -> bool:
    return isinstance(module, types.SUPPORTED + types.NOT_YET + types.ATTENTION) or len(module._modules) == 0


class _Call:
    """One call of one leaf module in the forward pass, and how to send relevance back through it."""

    def __init__(self, session, module, name, kind, index):
        self.session, self.module, self.name, self.kind, self.index = session, module, name, kind, index
        self.rule = None
        self.op = None
        self.z = None  # the layer's output as the rule's denominator sees it (None: recompute)
        self.output = None  # handed to _Propagate.forward, then dropped
        self.graph = None  # (output, input) of the module's own autograd graph, for Gradient
        self.output_padding = None  # ConvTranspose: the output padding of the forward pass
        self.tokens = None  # Embedding: the token indices it looked up

    def relevance(self, R, inputs):
        """Relevance at the inputs, given relevance ``R`` at the output."""
        if self.kind == "sum":
            s = rules.divide(R, self.z, getattr(self.rule, "epsilon", rules.DEFAULT_EPSILON))
            return tuple((a * s).sum_to_size(a.shape) for a in inputs)
        (a,) = inputs
        if self.kind == "softmax":  # each output's relevance moves to its logit: R_x = x R / y
            return (a * rules.divide(R, self.z, 0.0),)
        if self.kind == "embedding":
            # the lookup is the linear map one_hot(token) @ W: the rule runs on the one-hot input (N, ..., V),
            # and a token's relevance is the sum over the vocabulary (only its own entry, for rules R = a c)
            weight = self.module.weight.detach()
            one_hot = F.one_hot(self.tokens, weight.shape[0]).to(R.dtype)
            return (self.rule.relevance(ops.LinearOp(weight.T, None), one_hot, R, z=self.z).sum(-1),)
        op = self.op
        if self.graph is not None:  # the module's own backward, no recomputation
            output, original = self.graph
            self.graph = None
            with torch.enable_grad():
                (grad,) = torch.autograd.grad(output, original, R)
            return (grad,)
        if self.kind == "linear":
            weight, bias = self.module.weight, self.module.bias
            weight, bias = self.session.folding.parameters(self, weight, bias)
            weight = weight.detach()
            bias = None if bias is None else bias.detach()
            if isinstance(self.module, nn.Linear):
                op = ops.LinearOp(weight, bias)
            elif isinstance(self.module, types.CONV_TRANSPOSE):
                op = ops.ConvTransposeOp(self.module, weight, bias, self.output_padding)
            else:
                op = ops.ConvOp(self.module, weight, bias)
        return (self.rule.relevance(op, a, R, z=self.z),)


def _held(tensor):
    return tensor.detach() if tensor.requires_grad else tensor


class _Propagate(torch.autograd.Function):
    @staticmethod
    def forward(ctx, call, *inputs):
        ctx.call = call
        ctx.save_for_backward(*inputs)
        output, call.output = call.output, None
        return output

    @staticmethod
    def backward(ctx, R):
        call = ctx.call
        inputs = ctx.saved_tensors
        mask = call.session.masks.get(call.name)
        if mask is not None:  # conditional relevance: only the selected neurons pass relevance
            R = mask(R) if callable(mask) else R * mask.to(R.dtype)
        relevance = call.relevance(R, inputs)
        call.session.record(call, relevance)
        return (None, *relevance)


class _InHook:
    """The engine's own code is running (the watch lets its calls through); an error there is ours.

    A class, not a generator-based context manager: it is entered a few times per module call, and
    ``contextlib`` costs ~2 us more per entry.
    """

    __slots__ = ("session",)

    def __init__(self, session):
        self.session = session

    def __enter__(self):
        self.session.in_hook = True

    def __exit__(self, kind, error, traceback):
        if kind is not None:
            self.session.hook_failed = True  # our error, not the model's: explain must not relabel it
        self.session.in_hook = False
        return False


class Session:
    """The state of one explanation: hooks, the calls seen in the forward pass, recorded relevance."""

    def __init__(self, model: nn.Module, composite: Composite, record_layers: bool, masks=None):
        self.model = model
        self.masks = dict(masks or {})
        self.kinds: dict = {}  # module -> its kind, looked up once per module, not per call
        self.composite = composite
        self.record_layers = record_layers
        self.names = {}
        for name, module in model.named_modules():
            self.names.setdefault(module, name or type(model).__name__)
        self.calls: list[_Call] = []
        self.seen_names: dict[str, int] = {}
        self.producer: dict[int, tuple[_Call, torch.Tensor]] = {}
        self.pending: list = []
        self.stack: list[str] = []
        self.stack_types: list[str] = []
        self.leaf_depth = 0
        self.in_hook = False
        self.watch = getattr(self, "watch", None)  # the attached Watch (kept when graph.py restarts a session)
        self.handles = getattr(self, "handles", [])  # the module hooks of hook_modules (kept likewise)
        self.watch_off = getattr(self, "watch_off", False)
        self.hook_failed = False
        self.tokens = None  # (token indices given to the model, the float leaf their relevance goes to)
        self.first_done = False
        self.records = Records(keep=record_layers)
        self.recurrent: dict = {}  # call name -> RecurrentRelevance (recurrent.py)
        self.folding = BatchNormFolding()  # canonizer; removed by explain once relevance is back

    # -- recording ------------------------------------------------------------------------
    def record(self, call: _Call, relevance: tuple):
        # references, no copies (relevance computed in a backward pass carries no graph: detached only where it does)
        tensors = _held(relevance[0]) if len(relevance) == 1 else tuple(_held(r) for r in relevance)
        self.records.add(call.index, call.name, tensors)

    def record_input(self, call: _Call, relevance: torch.Tensor, batch_dim: int = 0):
        """Record one input's relevance whose samples lie along ``batch_dim`` (a time-first RNN: 1)."""
        self.records.add(call.index, call.name, relevance.detach(), batch_dim)

    # -- hooks ----------------------------------------------------------------------------
    def _hook(self) -> "_InHook":
        """``with session._hook():`` around the engine's own work inside the model's forward pass."""
        return _InHook(self)  # made per use: one kept on the session would be a reference cycle

    @contextlib.contextmanager
    def unwatched(self):
        """The functional-call watch off, while a traced graph runs node by node.

        There every operation is a node with its rule and leaf modules keep the watch quiet anyway, so
        the watch would only add a Python call to every torch call; :meth:`watching` turns it back on
        around a module the graph calls whole but the hooks walk into. Only this session's watch on top
        of the mode stack is taken off (a user's mode above it stays, and so does the watch).
        """
        if self.watch is None or self.watch_off or torch.overrides._get_current_function_mode() is not self.watch:
            yield
            return
        self.watch_off = True
        try:
            with torch.overrides._pop_mode_temporarily():
                yield
        finally:
            self.watch_off = False

    @contextlib.contextmanager
    def watching(self, module: nn.Module):
        """The watch back on for the call of ``module`` if it is a container (not a leaf with hooks)."""
        if not self.watch_off or _is_leaf(module):
            yield
            return
        self.watch_off = False
        try:
            with self.watch:
                yield
        finally:
            self.watch_off = True

    def _enter(self, module, args):
        with self._hook():
            self.stack.append(self.names.get(module, "?"))
            self.stack_types.append(type(module).__name__)

    def _leave(self, module, args, output):
        with self._hook():
            if self.stack:
                self.stack.pop()
                self.stack_types.pop()

    def _leaf_enter(self, module, args):
        with self._hook():
            self.stack.append(self.names.get(module, "?"))
            self.stack_types.append(type(module).__name__)
            self.leaf_depth += 1
            kind = self.kinds.get(module) or self.kinds.setdefault(module, types.kind_of(module))
            if kind is None and isinstance(module, types.ATTENTION):
                raise UnsupportedModuleError(
                    f"module '{self.stack[-1]}' (torch.nn.{type(module).__name__}) is explained through its operations "
                    "(AttnLRP rules, lrp_widgets.engine.attention) in the traced graph: call explain with graph=None "
                    "(the default) or graph=True, on a model torch.fx can trace"
                )
            if kind is None and isinstance(module, types.NOT_YET):
                raise UnsupportedConfigurationError(
                    f"module '{self.stack[-1]}' is torch.nn.{type(module).__name__}, which lrp_widgets does not "
                    "support yet: it needs LRP rules of its own (attention, gated recurrence). Explain the part of "
                    "the model before it."
                )
            if kind is None:
                raise UnsupportedModuleError(
                    f"module '{self.stack[-1]}' of type {type(module).__module__}.{type(module).__name__} has no LRP "
                    f"rule. Supported layers: {types.supported_names()}, and containers whose forward composes them. "
                    "Rewrite it with supported modules (or explain the part of the model before it)."
                )
            if kind == "recurrent":
                recurrent.check_call(module, self.stack[-1], args)
            tracked = any(isinstance(a, torch.Tensor) and a.requires_grad for a in args)
            if kind == "embedding" and self.tokens is not None and args and args[0] is self.tokens[0]:
                if module.max_norm is not None:
                    raise UnsupportedModuleError(
                        f"module '{self.stack[-1]}' (Embedding with max_norm) renormalises its weights in place when "
                        "called, which would change the model; explain a copy with max_norm=None"
                    )
                tracked = True
            if not tracked:
                self.pending.append(None)
                return None
            self.pending.append(args)
            if kind == "recurrent":
                # its output is taken as data (recurrent.py gives it its own backward): torch's kernel runs
                # without recording autograd; _leaf_leave turns recording back on (explain's enable_grad
                # does, should the module raise)
                torch._C._set_grad_enabled(False)
            if getattr(module, "inplace", False):
                # run the in-place op on a copy: the original input must stay intact for the rules
                return tuple(a.clone() if isinstance(a, torch.Tensor) else a for a in args)
            return None

    def _leaf_leave(self, module, args, output):
        with self._hook():
            self.leaf_depth -= 1
            name = self.stack.pop()
            self.stack_types.pop()
            original = self.pending.pop()
            if original is None:
                return None
            if self.kinds[module] == "recurrent":  # one stage with several outputs (recurrent.py)
                torch._C._set_grad_enabled(True)  # off since _leaf_enter; explain runs with grad enabled
                return recurrent.attach(self, self._new_call(module, name), original, output)
            if not isinstance(output, torch.Tensor):
                raise UnsupportedModuleError(
                    f"module '{name}' ({type(module).__name__}) returns {type(output).__name__}; LRP needs a single "
                    "tensor (for max pooling, use return_indices=False)."
                )
            call = self._new_call(module, name)
            inputs = tuple(a for a in original if isinstance(a, torch.Tensor))
            if call.kind == "embedding":  # relevance flows to the token leaf, one value per token
                call.tokens, inputs = inputs[0], (self.tokens[1],)
            self._configure(call, inputs, output)
            call.output = output.detach()
            result = _Propagate.apply(call, *inputs)
            # keep the tensor alive so that its id is not reused while we look it up
            self.producer[id(result)] = (call, result)
            return result

    def _new_call(self, module, name: str) -> _Call:
        count = self.seen_names.get(name, 0) + 1
        self.seen_names[name] = count
        call = _Call(self, module, name if count == 1 else f"{name}#{count}", self.kinds[module], len(self.calls))
        self.calls.append(call)
        return call

    def _configure(self, call: _Call, inputs, output):
        """Choose the rule and the linear map of one call."""
        module, composite, kind = call.module, self.composite, call.kind
        named = composite.named_rule(call.name, lambda rule: accepts(kind, rule, exact=False))
        z = output.detach()
        if kind in ("linear", "embedding"):
            call.rule = composite.rule_for(call.name, module, not self.first_done, lambda r: accepts(kind, r, False))
            self.first_done = True
            call.z = z
            if isinstance(module, types.CONV_TRANSPOSE):
                call.output_padding = ops.conv_transpose_output_padding(module, inputs[0], output)
            if isinstance(call.rule, rules.Flat) and isinstance(module, nn.Linear) and module.in_features > 1:
                warnings.warn(
                    f"the flat rule on the dense layer '{call.name}' gives all {module.in_features} of its inputs the "
                    "same relevance (every neuron sees every input), so the map there is constant. Leave composite "
                    "unset to choose by the model, or use 'epsilon_plus' / 'epsilon'.",
                    LRPWarning,
                    stacklevel=2,
                )
        elif kind == "sum":
            # the epsilon rule on a sum; the composite may set its epsilon (Zero, Epsilon(e))
            call.rule = composite.rule_for(call.name, module, False, lambda r: accepts(kind, r, False))
            call.z = z
        elif kind == "batchnorm":
            previous = self.producer.get(id(inputs[0]))
            linear = previous[0] if previous is not None else None
            # a ConvTranspose keeps its output channels on the weight's second axis: not folded
            foldable = linear is not None and linear.kind == "linear" and not isinstance(linear.module, types.CONV_TRANSPOSE)
            if composite.fold_batchnorm and foldable and self.folding.apply(linear, module):
                linear.z = z  # the folded layer's output is the BatchNorm's output
                call.rule, call.op = rules.Pass(), None
            else:
                scale, shift = batchnorm_affine(module)
                shape = (1, -1) + (1,) * (inputs[0].dim() - 2)
                call.op = ops.FunctionOp(lambda t, scale=scale.reshape(shape): t * scale)
                call.rule, call.z = rules.Epsilon(), z
            return
        elif kind == "pool":
            call.op = ops.FunctionOp(module)
            call.rule = composite.rule_for(call.name, module, False, lambda r: accepts(kind, r, False))
            call.z = z if isinstance(call.rule, rules.Epsilon) else None
        elif kind == "maxpool":
            if named is not None:
                call.op, call.rule = ops.FunctionOp(module), named
            elif composite.maxpool == "average":
                adaptive = isinstance(module, types.ADAPTIVE_MAXPOOL)
                average = ops.adaptive_max_pool_as_average(module) if adaptive else ops.max_pool_as_average(module)
                call.op, call.rule = ops.FunctionOp(average), composite.pool_rule()
            else:
                call.op, call.rule = ops.FunctionOp(module), rules.Gradient()
                call.graph = (output, inputs[0])
        elif kind == "norm":
            call.op = ops.FunctionOp(ops.normalization(module, inputs[0]))
            # by default the epsilon the composite gives parameter-free linear maps (average pooling)
            default = composite.pool_rule()
            call.rule = named or composite.typed_rule(module) or (default if isinstance(default, rules.Epsilon) else rules.Epsilon())
            call.z = z if isinstance(call.rule, rules.Epsilon) else None
        elif kind == "softmax":
            if call.name in composite.name_rules:  # a rule by exact name: refused below
                call.rule = composite.name_rules[call.name]
            else:
                a = inputs[0]
                if a.dim() != 2 or module.dim not in (1, -1):
                    raise UnsupportedModuleError(
                        f"module '{call.name}' ({type(module).__name__}, dim={module.dim}) on an input of shape "
                        f"{tuple(a.shape)}: supported only as the model's last layer, over the classes of (N, classes) "
                        "scores"
                    )
                call.z = z
                return
        else:  # pass (activations, dropout, identity), reshape
            # an in-place activation must not write into the input the rules read
            call.op = ops.FunctionOp((lambda t: module(t.clone())) if getattr(module, "inplace", False) else module)
            call.rule = named or composite.typed_rule(module) or rules.Pass()
            call.z = z if isinstance(call.rule, rules.Epsilon) else None
        if not accepts(kind, call.rule):
            raise CompositeError(
                f"the composite gives {call.rule!r} to '{call.name}' ({type(module).__name__}), which cannot take it: "
                f"{TAKES[kind]}. Give that module another rule (or none); a glob pattern would skip it."
            )

    def check_softmax_last(self, output) -> None:
        """A Softmax/LogSoftmax is supported only where its output is the model's output."""
        last = self.producer.get(id(output))
        for call in self.calls:
            if call.kind == "softmax" and (last is None or last[0] is not call):
                raise UnsupportedModuleError(
                    f"module '{call.name}' ({type(call.module).__name__}) is supported only as the model's last "
                    "layer (the explanation then starts from its input, the logits); inside a model (attention) "
                    "it is not supported yet"
                )

    @contextlib.contextmanager
    def attached(self):
        """The functional-call watch, and the module hooks :meth:`hook_modules` attaches; removed on the way out."""
        try:
            self.watch = Watch(self)
            with self.watch:
                yield self
        finally:
            self.watch = None
            for handle in self.handles:
                handle.remove()
            self.handles.clear()
            self.producer.clear()
            self.pending.clear()

    def hook_modules(self) -> None:
        """Hooks on every module (once per explanation), for a forward that runs the model's own code.

        The traced graph needs none: it calls each module itself (:meth:`call_leaf`). Inside
        :meth:`attached` only: that removes them.
        """
        if self.handles:
            return
        for module in self.model.modules():
            if _is_leaf(module):
                self.handles.append(module.register_forward_pre_hook(self._leaf_enter))
                self.handles.append(module.register_forward_hook(self._leaf_leave))
            else:
                self.handles.append(module.register_forward_pre_hook(self._enter))
                self.handles.append(module.register_forward_hook(self._leave))

    def call_leaf(self, module: nn.Module, args: tuple, kwargs: dict):
        """``module(*args, **kwargs)`` for a leaf module that nobody hooks, its hooks' work done here, or None
        where the module must be called with hooks (a container, or a module with hooks of its own, whose
        order with ours must stay; the caller then attaches ours, :meth:`hook_modules`).

        The traced graph calls each module itself; attaching and removing two hooks per module and
        running them through ``nn.Module.__call__`` took ~6% of explaining the tiny ViT (in-process A/B).
        """
        if not _is_leaf(module) or _hooked(module):
            return None
        changed = self._leaf_enter(module, args)
        if changed is not None:
            args = changed
        output = module.forward(*args, **kwargs)
        result = self._leaf_leave(module, args, output)
        return output if result is None else result


def _hooked(module: nn.Module) -> bool:
    """Whether calling ``module`` runs hooks (its own, or global ones) besides its forward."""
    hooks = torch.nn.modules.module
    return bool(module._forward_hooks or module._forward_pre_hooks or module._backward_hooks
                or module._backward_pre_hooks or hooks._global_forward_hooks or hooks._global_forward_pre_hooks
                or hooks._global_backward_hooks or hooks._global_backward_pre_hooks)
