"""The model as a chain of leaf modules: walking it, choosing default path layers, running a segment."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..engine import types
from ..engine.checks import check_input
from ..engine.composites import Composite
from ..engine.errors import InputError, UnsupportedModuleError

SCORES = ("product", "min")
# Which neurons a path may use: "all" (any neuron of a chosen layer) or "selected" (only those
# GetOptimizer keeps, the paper's mode: paths are built through the selected neurons).
THROUGH = ("all", "selected")


def _check_through(through) -> None:
    if through not in THROUGH:
        raise ValueError(
            f"through must be one of {THROUGH}, got {through!r}: 'selected' builds paths only through the neurons "
            "select_neurons keeps (the paper's mode), 'all' through any neuron"
        )
# Old names of the layer families (``engine/types.py``), kept importable.
ACTIVATION_TYPES = types.ACTIVATION + types.SMOOTH_ACTIVATION
TRANSPARENT_TYPES = types.TRANSPARENT
POOL_TYPES = types.MAXPOOL + types.AVGPOOL
#: The k-best search evaluates candidates in blocks of at most this many numbers (bounds memory).
_BLOCK = 2_000_000


# -- helpers -------------------------------------------------------------------------------------
def _leaf_chain(model: nn.Module, purpose: str) -> list:
    """``[(name, module), ...]``: the model's leaf modules in order, for nested ``nn.Sequential``.

    Only for a Sequential is the forward pass known to be the chain of its children; any other
    container may branch, so walking it would silently compute something else.
    """
    chain: list = []

    def walk(module, prefix):
        children = list(module.named_children())
        if not children:
            chain.append((prefix, module))
            return
        if not isinstance(module, nn.Sequential):
            where = f"'{prefix}'" if prefix else "the model"
            raise UnsupportedModuleError(
                f"{purpose} walks the model as a chain of modules, but {where} is a "
                f"{type(module).__name__}, whose forward may branch. Use a model built from nn.Sequential "
                "containers (all lrp_widgets.models are), or pass the Sequential part (e.g. model.features)."
            )
        for name, child in children:
            walk(child, f"{prefix}.{name}" if prefix else name)

    walk(model, "")
    if chain and chain[0][0] == "":
        raise UnsupportedModuleError(f"{purpose} needs a container of modules, got a single {type(model).__name__}")
    return chain


def _single_sample(x, model) -> torch.Tensor:
    x = check_input(x, model)
    if x.shape[0] != 1:
        raise InputError(
            f"paths are found for one sample at a time; x has {x.shape[0]} samples. Pass x[i:i + 1] (keep the batch axis)."
        )
    return x


def _neuron_scores(relevance: torch.Tensor) -> np.ndarray:
    """Per neuron of one sample's relevance (C, ...): the channel's relevance summed over space."""
    return relevance.detach().reshape(relevance.shape[0], -1).sum(1).double().cpu().numpy()


def smape(forecast, actual) -> float:
    """``100/n sum |F - A| / ((|A| + |F|) / 2)``, where an element with ``A = F = 0`` counts as 0."""
    forecast = np.asarray(forecast, dtype=np.float64).ravel()
    actual = np.asarray(actual, dtype=np.float64).ravel()
    denominator = (np.abs(actual) + np.abs(forecast)) / 2
    difference = np.abs(forecast - actual)
    ratio = np.divide(difference, denominator, out=np.zeros_like(difference), where=denominator > 0)
    return float(100.0 * ratio.mean())


def default_layers(model: nn.Module) -> list:
    """The activations that end each conv block and follow each hidden dense layer, top first.

    An activation (ReLU, ...) is chosen when a Conv/Linear layer comes before it and the next
    layer that does something (skipping dropout, identity and activations) is not a convolution:
    a pooling layer or the classifier ends a conv block; a Linear after a dense layer's activation
    makes it a hidden layer. MiniVGG gives ``classifier.2, features.10, features.4``; VGG16 the five
    block ends and the two hidden dense layers.
    """
    chain = _leaf_chain(model, "default_layers")
    chosen = []
    for position, (name, module) in enumerate(chain):
        if not isinstance(module, ACTIVATION_TYPES):
            continue
        before = [m for _, m in chain[:position] if isinstance(m, types.LINEAR)]
        after = [m for _, m in chain[position + 1:] if not isinstance(m, types.TRANSPARENT)]
        if not before or not after:
            continue
        if isinstance(before[-1], nn.Linear) and isinstance(after[0], nn.Linear):
            chosen.append(name)
        elif not isinstance(before[-1], nn.Linear) and not isinstance(after[0], types.CONV):
            chosen.append(name)
    if not chosen:
        raise InputError("no activation ends a conv block or a hidden dense layer in this model; pass layers=[...] explicitly")
    return chosen[::-1]


def _segment_composite(composite: Composite, chain, start: int, stop: int, first_linear: str | None) -> Composite:
    """The composite for ``chain[start:stop]`` run alone, giving every module the rule it has in the full model.

    Modules of a sub-Sequential are named "0", "1", ...; each Linear/Conv gets its resolved rule by
    that name (the "first layer" rule included), other modules keep any rule their full name had.
    """
    name_rules = {}
    for offset, (name, module) in enumerate(chain[start:stop]):
        if isinstance(module, types.LINEAR):
            rule = composite.rule_for(name, module, is_first=name == first_linear)
        else:
            rule = composite.named_rule(name)
        if rule is not None:
            name_rules[str(offset)] = rule
    return Composite(
        layer_rules=dict(composite.layer_rules),
        name_rules=name_rules,
        first=None,
        maxpool=composite.maxpool,
        fold_batchnorm=composite.fold_batchnorm,
        name=f"{composite.name} (segment)",
    )
