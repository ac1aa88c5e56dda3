"""``explain``: relevance of a model's decision, as a plain result object."""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from . import composites as _composites
from . import graph as _graph
from .checks import FILL_VALUE_THRESHOLD, _model_dtype_device, _model_tensors, check_input, resolve_target
from .errors import InputError, LRPError
from .modes import eval_mode
from .propagation import Session
from .results import ConservationTable, Result, listed, plural
from .signatures import keyword_arguments

__all__ = ["Explanation", "ConservationTable", "explain", "check_input", "FILL_VALUE_THRESHOLD"]


@dataclass(repr=False)
class Explanation(Result):
    """The result of :func:`explain`.

    Attributes
    ----------
    relevance : torch.Tensor
        Relevance of each input element, same shape as ``x``.
    output : torch.Tensor
        The model's output for ``x`` (N, classes).
    target : torch.Tensor
        The explained class of each sample (N,).
    layers : OrderedDict or None
        With ``layers=True``: module name -> relevance at that module's input, in forward order
        (and graph node name -> relevance at the operation's inputs, where the model was traced).
    composite : Composite
        The composite used.
    recurrent : dict
        Module name -> :class:`~lrp_widgets.engine.recurrent.RecurrentRelevance` for every call
        of an nn.LSTM / nn.GRU: input relevance per time step and feature, per-step relevance of
        the hidden (and cell) states, what biases and stabilizers kept. Empty for other models.
    """

    relevance: torch.Tensor
    output: torch.Tensor
    target: torch.Tensor
    layers: "OrderedDict[str, torch.Tensor] | None"
    composite: _composites.Composite
    stage_sums: list = field(default_factory=list, repr=False)
    recurrent: dict = field(default_factory=dict, repr=False)

    def conservation(self) -> ConservationTable:
        """Per layer, the relevance sum per sample (see :class:`ConservationTable`)."""
        names = [name for name, _ in self.stage_sums]
        sums = np.stack([s.detach().cpu().double().numpy() for _, s in self.stage_sums])
        return ConservationTable(names, sums)

    def __len__(self):
        return self.relevance.shape[0]

    def __repr__(self):
        shape = tuple(self.relevance.shape[1:])
        name = getattr(self.composite, "name", self.composite)
        return (f"Explanation({plural(len(self), 'sample')} of shape {shape}, composite {name!r}, "
                f"target {listed(self.target, '{}')})")

    def _numbers(self) -> dict:
        """Per-sample target, explained output, input relevance and their ratio, as numpy copies."""
        target = self.target.detach().cpu().numpy().astype(np.int64).reshape(-1)
        if self.stage_sums:
            table = self.conservation()
            output, kept = np.array(table.sums[0]), np.array(table.sums[-1])
        else:  # built by hand, without the engine's stage sums
            outputs = self.output.detach().cpu().double().numpy().reshape(len(target), -1)
            output = outputs[np.arange(len(target)), target]
            kept = self.relevance.detach().cpu().double().numpy().reshape(len(target), -1).sum(1)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = kept / output
        return {"target": target, "output": output, "input": kept, "ratio": ratio}

    def summary(self) -> str:
        """What was explained, the explained output, conservation (input/output relevance)."""
        numbers = self._numbers()
        n = len(self)
        name = getattr(self.composite, "name", self.composite)
        lines = [
            f"Explanation of {plural(n, 'sample')} of shape {tuple(self.relevance.shape[1:])}, composite {name}",
            f"target {listed(numbers['target'], '{}')}, explained output {listed(numbers['output'])}",
            f"conservation: input/output relevance = {listed(numbers['ratio'], '{:.3g}')}"
            + (f" (mean {np.nanmean(numbers['ratio']):.3g})" if n > 1 and np.isfinite(numbers["ratio"]).any() else ""),
        ]
        if self.layers:
            lines.append(f"relevance recorded at {plural(len(self.layers), 'layer')}: .layers")
        for name, inner in self.recurrent.items():
            lines.append(f"{inner.module_type} '{name}': leaked (biases, stabilizers) {listed(inner.leaked)}; "
                         f"per-step relevance in .recurrent[{name!r}]")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """``relevance``, ``output``, ``target``, ``layers``, ``composite`` (its name), ``conservation``."""
        return {
            "relevance": self.relevance,
            "output": self.output,
            "target": self.target,
            "layers": None if self.layers is None else dict(self.layers),
            "composite": getattr(self.composite, "name", self.composite),
            "conservation": self.conservation().to_dict() if self.stage_sums else None,
            "recurrent": {name: inner.to_dict() for name, inner in self.recurrent.items()},
        }


def _token_input(x, model: nn.Module):
    """``x`` as token indices when it holds integers and the model has an ``nn.Embedding``, else None."""
    if not any(isinstance(m, nn.Embedding) for m in model.modules()):
        return None
    if isinstance(x, np.ndarray) and np.issubdtype(x.dtype, np.integer):
        x = torch.as_tensor(x)
    if not isinstance(x, torch.Tensor) or x.dtype not in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
        return None
    if x.dim() == 0:
        raise InputError("x is a scalar; pass a batch of token sequences with the samples along the first axis, e.g. x[None]")
    device = _model_dtype_device(model)[1]
    return x.to(device=device) if device is not None else x


@keyword_arguments("target", "composite", "layers", "initial_relevance", "masks")
def explain(
    model: nn.Module,
    x,
    *,
    target=None,
    composite=None,
    layers: bool = False,
    initial_relevance: torch.Tensor | None = None,
    masks: dict | None = None,
    output=None,
    classes=None,
    graph: bool | None = None,
) -> Explanation:
    """Explain a model's output for a batch with Layer-wise Relevance Propagation.

    Parameters
    ----------
    model : nn.Module
        Any model built from supported modules (Linear, Conv, ReLU, pooling, BatchNorm,
        Flatten, Dropout, ... and :class:`lrp_widgets.Sum` for residual additions; nn.LSTM and
        nn.GRU explained through time, see :mod:`lrp_widgets.engine.recurrent`), also where its
        ``forward`` does operations outside modules (``out += identity``, ``h.mean(2)``; see
        ``graph``). It is never changed: parameters, hooks and train/eval mode are as before when
        this returns.
    x : tensor or array, shape (N, ...)
        A batch of inputs. NaN, inf and fill values (>= 1e10) are rejected.
    target : None, int, str or sequence of them
        The class to explain per sample; ``None`` explains the predicted class. A class name
        (``"cat"``) is looked up in ``classes``, else in the model's ``classes`` /
        ``class_names`` attribute or ``config.id2label`` (Hugging Face).
    composite : Composite, factory, str or None
        Which rule each layer gets, e.g. ``"epsilon_plus_flat"``, ``"epsilon"``, ``"lrp0"``,
        ``composites.epsilon_gamma_box(0, 1)``. ``None`` (default) chooses by the model
        (:func:`composites.default_for`): ``epsilon_plus_flat`` when the first Linear/Conv layer
        is a convolution, else ``epsilon_plus`` (flat on a dense first layer would give a
        constant map).
    layers : bool
        Also return the relevance at every module's input (``.layers``).
    initial_relevance : tensor, optional
        Relevance to start from at the output (same shape as the output). By default the
        target's logit: ``one_hot(target) * output``.
    masks : dict, optional
        Conditional relevance: module name -> tensor broadcastable to that module's output (or a
        function of the relevance there). The relevance arriving at the module's output is
        multiplied by it before the module's rule runs, so only the selected neurons pass
        relevance further down. Unknown names raise an error.

    output : None, str, int or callable
        Which of the model's outputs to explain when it returns a tuple, a dict or an object
        (Hugging Face style): a key or attribute (``output="logits"``), an index (``output=0``)
        or a function of the model's return value (``output=lambda out: out.logits[:, -1]``).
    classes : sequence of str, optional
        The names of the model's outputs, in order (e.g. ``data.classes``), for ``target`` names.
    graph : None or bool
        Explain the model as it is written, through its ``torch.fx`` graph (or, where fx cannot
        trace it, with its operations caught as they run), where its ``forward`` does arithmetic
        outside modules (``out += identity``, ``h.mean(2)``, ``torch.flatten``): ``None``
        (default) only where the module hooks alone cannot explain the model, ``True`` always,
        ``False`` never (the error then names the call). Operations get the rules of
        :mod:`lrp_widgets.engine.operations`, and ``.layers``, ``masks`` and the conservation
        table name them by graph node (``add``, ``add_1``; see :mod:`lrp_widgets.engine.graph`).

    Returns
    -------
    Explanation
        ``.relevance`` (shape of ``x``), ``.output``, ``.target``, ``.layers``, ``.conservation()``.

    Examples
    --------
    >>> import torch, lrp_widgets
    >>> model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    >>> result = lrp_widgets.explain(model, torch.rand(5, 4), composite="epsilon")
    >>> result.relevance.shape
    torch.Size([5, 4])
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    _check_not_meta(model, x)
    composite = _composites.default_for(model) if composite is None else _composites.get(composite)
    tokens = _token_input(x, model)
    x = check_input(x, model) if tokens is None else tokens
    session = Session(model, composite, record_layers=layers, masks=masks)
    with eval_mode(model):
        with torch.enable_grad():
            if tokens is None:
                leaf = x.detach().clone().requires_grad_(True)
            else:  # token indices: their relevance arrives on a float leaf of the same shape
                leaf = torch.zeros(tokens.shape, dtype=_model_dtype_device(model)[0], device=tokens.device, requires_grad=True)
                session.tokens = (tokens, leaf)
            with session.attached():
                try:
                    raw = _graph.forward(model, session, leaf if tokens is None else tokens, graph)
                except LRPError:
                    raise
                except Exception as error:
                    if session.hook_failed:  # raised by our own code, not by the model: as it is
                        raise
                    raise InputError(
                        f"the model rejected an input of shape {tuple(x.shape)}: {type(error).__name__}: {error}. "
                        "Pass a batch shaped as the model expects, with the samples along the first axis."
                    ) from error
                scores = _select_output(raw, output)
                session.check_softmax_last(scores)
            scores = _check_output(scores)
            target_index = resolve_target(_class_indices(target, classes, model), scores.detach())
            if initial_relevance is None:
                start = torch.zeros_like(scores)
                start.scatter_(1, target_index[:, None], scores.detach().gather(1, target_index[:, None]))
            else:
                start = torch.as_tensor(initial_relevance, dtype=scores.dtype, device=scores.device)
                if start.shape != scores.shape:
                    raise InputError(
                        f"initial_relevance has shape {tuple(start.shape)}, the output {tuple(scores.shape)}; they must match"
                    )
            if tokens is not None and not any(call.kind == "embedding" for call in session.calls):
                raise InputError(
                    "x holds integers (token ids) but no nn.Embedding read x itself; token ids are explained where "
                    "an nn.Embedding looks them up (pass x to it unchanged), other inputs must be floats"
                )
            if not scores.requires_grad:
                raise InputError("the model's output does not depend on x through any module; nothing to explain")
            try:
                (relevance,) = torch.autograd.grad(scores, leaf, start, allow_unused=True)
            finally:
                session.folding.remove()
            if relevance is None:
                relevance = torch.zeros_like(leaf)
    if masks:
        called = {call.name for call in session.calls}
        unknown = sorted(set(masks) - called)
        if unknown:
            raise InputError(f"masks name modules the forward pass did not call: {unknown}; called: {sorted(called)}")
    session.calls.clear()  # the calls refer to the session: without the cycle, their tensors go now, not at the next gc
    stage_sums = [("output", start.detach().sum(1)), *session.records.stage_sums(),
                  ("input", relevance.detach().flatten(1).sum(1))]
    layer_map = OrderedDict(session.records.layers()) if layers else None
    return Explanation(
        relevance=relevance.detach(),
        output=scores.detach(),
        target=target_index,
        layers=layer_map,
        composite=composite,
        stage_sums=stage_sums,
        recurrent=dict(session.recurrent),
    )


def _check_not_meta(model: nn.Module, x) -> None:
    """Tensors on the ``meta`` device have shapes but no values: nothing to explain."""
    if any(t.is_meta for t in _model_tensors(model)):
        raise InputError(
            "the model's parameters are on the 'meta' device: they have shapes but no values (the model was built "
            "under torch.device('meta') or an empty-weights context). Load its weights first, e.g. "
            "model.to_empty(device='cpu') then model.load_state_dict(state)."
        )
    if isinstance(x, torch.Tensor) and x.device.type == "meta":
        raise InputError("x is on the 'meta' device: it has a shape but no values. Pass real data, e.g. on the CPU.")


def _class_names(classes, model: nn.Module):
    if classes is not None:
        return list(classes)
    for attribute in ("classes", "class_names"):
        names = getattr(model, attribute, None)
        if isinstance(names, (list, tuple)) and names and all(isinstance(n, str) for n in names):
            return list(names)
    id2label = getattr(getattr(model, "config", None), "id2label", None)
    if isinstance(id2label, dict) and id2label:
        return [id2label[i] for i in sorted(id2label)]
    return None


def _class_indices(target, classes, model: nn.Module):
    """``target`` with class names replaced by their indices."""
    is_name = isinstance(target, str) or (
        isinstance(target, (list, tuple, np.ndarray)) and len(target) > 0 and all(isinstance(t, (str, np.str_)) for t in target)
    )
    if not is_name:
        return target
    names = _class_names(classes, model)
    if names is None:
        raise InputError(
            f"target {target!r} is a class name, but there are no class names to look it up in: pass "
            "classes=data.classes (the names in output order) or the class index, e.g. target=3"
        )
    wanted = [target] if isinstance(target, str) else [str(t) for t in target]
    unknown = [t for t in wanted if t not in names]
    if unknown:
        raise InputError(f"target {unknown[0]!r} is not a class name; the classes are: {', '.join(map(str, names))}")
    indices = [names.index(t) for t in wanted]
    return indices[0] if isinstance(target, str) else indices


def _select_output(raw, output):
    """The scores to explain from what the model returned (see ``explain``'s ``output``)."""
    if output is None:
        if isinstance(raw, torch.Tensor):
            return raw
        if isinstance(raw, dict):
            hint = f"pass output= one of {list(raw)} (e.g. output={next(iter(raw))!r})"
        elif isinstance(raw, (tuple, list)):
            hint = f"pass output=0 (an index into the {len(raw)} returned values) or output=a function"
        else:
            hint = "pass output='logits' (an attribute) or output=a function of what the model returns"
        raise InputError(f"the model returned {type(raw).__name__}, not a tensor of scores; {hint}")
    try:
        if callable(output):
            return output(raw)
        if isinstance(output, str) and not isinstance(raw, dict):
            return getattr(raw, output)
        return raw[output]
    except (KeyError, IndexError, AttributeError, TypeError) as error:
        raise InputError(f"output={output!r} selects nothing from the model's {type(raw).__name__}: {error}") from error


def _check_output(output) -> torch.Tensor:
    if not isinstance(output, torch.Tensor):
        raise InputError(f"the model returned {type(output).__name__}; explain needs a tensor of scores (N, classes)")
    if output.dim() == 1:
        output = output[:, None]
    if output.dim() != 2:
        raise InputError(
            f"the model's output has shape {tuple(output.shape)}; explain needs (N, classes) scores. "
            "Flatten or select the scores to explain in the model."
        )
    if not bool(torch.isfinite(output).all()):
        raise InputError("the model's output contains NaN/inf; check the model's weights and the input's scale")
    return output
