"""Composites: which rule each layer gets, by layer type, by module name, and for the first layer.

A composite is resolved layer by layer while the model runs: the first matching entry wins,
in this order: ``name_rules`` (exact module name or a glob such as ``"features.*"``), then
``first`` (the first Linear/Conv layer the input reaches), then ``layer_rules`` (by
``isinstance``, in the order given). Linear/Conv and average-pooling layers no entry matches get the epsilon rule.
Activations, dropout, reshapes and pooling have fixed treatments (see ``propagation.py``)
unless a name or type entry says otherwise.

A rule given to a module that cannot take it (``Pass`` to a Linear, ``Epsilon`` to a Flatten, ...)
is a :class:`~lrp_widgets.engine.errors.CompositeError` naming the rule and the module. Glob
patterns are the exception: a glob gives its rule only to the modules under it that take that
rule and skips the others, so ``"classifier.*": Epsilon(0.01)`` reaches the Linear layers of the
classifier and leaves its Flatten, ReLU and Dropout as they are.

Examples
--------
>>> from torch import nn
>>> from lrp_widgets import rules
>>> mine = Composite(
...     layer_rules={nn.Conv2d: rules.Gamma(0.5), nn.Linear: rules.Epsilon(0.01)},
...     name_rules={"classifier.4": rules.Zero()},
...     first=rules.Flat(),
... )
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field

from torch import nn

from . import operations, rules, types

__all__ = [
    "Composite",
    "lrp0",
    "epsilon",
    "epsilon_plus",
    "epsilon_plus_flat",
    "epsilon_gamma_box",
    "epsilon_alpha2_beta1",
    "attnlrp",
    "cp_lrp",
    "NAMES",
    "register_composite",
    "get",
    "default_for",
]

#: name -> factory; filled by :func:`register_composite`.
NAMES: dict = {}


def register_composite(name: str):
    """Register a composite factory under ``name`` (a decorator), so ``composite="name"`` finds it.

    Every factory has the same shape: keyword parameters with defaults, returning a
    :class:`Composite`. ``get(name)`` calls it without arguments.

    Examples
    --------
    >>> @register_composite("all_flat")  # doctest: +SKIP
    ... def all_flat() -> Composite:
    ...     return Composite({types.LINEAR: rules.Flat()}, name="all_flat")
    """

    def register(factory):
        if name in NAMES and NAMES[name] is not factory:
            raise ValueError(f"a composite is already registered as {name!r}; choose another name")
        NAMES[name] = factory
        return factory

    return register

# Old names of the layer families in ``types.py``, kept importable.
CONV_TYPES = types.CONV
CONV_TRANSPOSE_TYPES = types.CONV_TRANSPOSE
LINEAR_TYPES = types.LINEAR
#: Average pooling, upsampling (nearest, linear, bilinear, ...) and residual sums are linear and have
#: no parameters; every factory gives them the composite's epsilon.
POOL_TYPES = types.AVGPOOL + types.UPSAMPLE + types.SUM


@dataclass(frozen=True)
class Composite:
    """A mapping from the model's layers to LRP rules.

    Parameters
    ----------
    layer_rules : dict
        Layer type (or tuple of types) -> rule, matched with ``isinstance`` in order.
    name_rules : dict
        Module name (as in ``model.named_modules()``) or glob pattern -> rule.
    first : Rule, optional
        Rule for the first Linear/Conv layer of the forward pass (the pixel layer).
    maxpool : {"winner", "average"}
        Max pooling sends relevance to the winning input (the gradient), or is treated as
        average pooling with the epsilon rule (the Montavon tutorial's choice).
    fold_batchnorm : bool
        Fold BatchNorm into the preceding Linear/Conv for the explanation (the model is never
        changed). When off, or with no such layer, BatchNorm is an affine layer with epsilon.
    name : str
        A label used in displays.
    """

    layer_rules: dict = field(default_factory=dict)
    name_rules: dict = field(default_factory=dict)
    first: rules.Rule | None = None
    maxpool: str = "winner"
    fold_batchnorm: bool = True
    name: str = "custom"

    def __post_init__(self):
        if self.maxpool not in ("winner", "average"):
            raise ValueError(f"maxpool must be 'winner' or 'average', got {self.maxpool!r}")
        for key, rule in list(self.layer_rules.items()) + list(self.name_rules.items()) + [(None, self.first)]:
            if rule is not None and not isinstance(rule, rules.Rule):
                raise TypeError(f"composite entry {key!r} maps to {rule!r}, which is not an lrp_widgets rule")

    def named_rule(self, name: str, accepts=None) -> rules.Rule | None:
        """The rule a name entry gives the module called ``name``, if any.

        An exact name always gives its rule. A glob pattern gives it only where ``accepts(rule)``
        (when given) is true: globs skip the modules their rule does not apply to.
        """
        if name in self.name_rules:
            return self.name_rules[name]
        for pattern, rule in self.name_rules.items():
            if fnmatch.fnmatchcase(name, pattern) and (accepts is None or accepts(rule)):
                return rule
        return None

    def typed_rule(self, module: nn.Module) -> rules.Rule | None:
        """The rule the first ``layer_rules`` entry matching ``module``'s type gives, if any."""
        for layer_types, rule in self.layer_rules.items():
            if isinstance(module, layer_types):
                return rule
        return None

    def rule_for(self, name: str, module: nn.Module, is_first: bool, accepts=None) -> rules.Rule:
        """The rule of a Linear/Conv (or pooling) layer."""
        rule = self.named_rule(name, accepts)
        if rule is not None:
            return rule
        if is_first and self.first is not None:
            return self.first
        rule = self.typed_rule(module)
        return rules.Epsilon() if rule is None else rule


    def pool_rule(self) -> rules.Rule:
        """The rule average pooling gets (also max pooling treated as average)."""
        for layer_types, rule in self.layer_rules.items():
            layer_types = layer_types if isinstance(layer_types, tuple) else (layer_types,)
            if any(issubclass(nn.AvgPool2d, t) for t in layer_types):
                return rule
        return rules.Epsilon()


@register_composite("lrp0")
def lrp0() -> Composite:
    """LRP-0 on every Linear/Conv layer."""
    return Composite({LINEAR_TYPES + POOL_TYPES: rules.Zero()}, name="lrp0")


@register_composite("epsilon")
def epsilon(epsilon: float = 1e-6) -> Composite:
    """LRP-epsilon on every Linear/Conv layer."""
    return Composite({LINEAR_TYPES + POOL_TYPES: rules.Epsilon(epsilon)}, name=f"epsilon({epsilon:g})")


@register_composite("epsilon_plus")
def epsilon_plus(epsilon: float = 1e-6) -> Composite:
    """z+ on convolutions, epsilon on dense layers."""
    return Composite({CONV_TYPES: rules.ZPlus(), nn.Linear: rules.Epsilon(epsilon), POOL_TYPES: rules.Epsilon(epsilon)}, name="epsilon_plus")


@register_composite("epsilon_plus_flat")
def epsilon_plus_flat(epsilon: float = 1e-6) -> Composite:
    """Flat on the first layer, z+ on the other convolutions, epsilon on dense layers.

    The composite the slides use (Zennit's ``EpsilonPlusFlat``).
    """
    return Composite(
        {CONV_TYPES: rules.ZPlus(), nn.Linear: rules.Epsilon(epsilon), POOL_TYPES: rules.Epsilon(epsilon)},
        first=rules.Flat(),
        name="epsilon_plus_flat",
    )


@register_composite("epsilon_gamma_box")
def epsilon_gamma_box(low=None, high=None, epsilon: float = 1e-6, gamma: float = 0.25) -> Composite:
    """zB on the first layer, gamma on the other convolutions, epsilon on dense layers.

    ``low``/``high`` bound the input (numbers or tensors broadcastable to it); ``None`` takes the
    batch's smallest/largest value.
    """
    return Composite(
        {CONV_TYPES: rules.Gamma(gamma), nn.Linear: rules.Epsilon(epsilon), POOL_TYPES: rules.Epsilon(epsilon)},
        first=rules.ZBox(low, high),
        name="epsilon_gamma_box",
    )


@register_composite("epsilon_alpha2_beta1")
def epsilon_alpha2_beta1(epsilon: float = 1e-6) -> Composite:
    """alpha=2, beta=1 on convolutions, epsilon on dense layers."""
    return Composite(
        {CONV_TYPES: rules.AlphaBeta(2.0, 1.0), nn.Linear: rules.Epsilon(epsilon), POOL_TYPES: rules.Epsilon(epsilon)},
        name="epsilon_alpha2_beta1",
    )


@register_composite("attnlrp")
def attnlrp(epsilon: float = 1e-6) -> Composite:
    """AttnLRP (Achtibat et al. 2024; REFERENCE.md §7): epsilon on linear maps, LayerNorm and residual sums;
    the softmax linearised at its input, ``R_x = x (R_s - s sum R_s)``; both attention products
    (``q @ k^T``, ``weights @ v``) by the uniform rule, half of each term to each factor; GELU and the
    other element-wise nonlinearities pass relevance (identity). See :mod:`lrp_widgets.engine.attention`.
    """
    return Composite(
        {LINEAR_TYPES + POOL_TYPES + types.NORM + types.EMBEDDING: rules.Epsilon(epsilon),
         operations.AttentionScores: operations.Uniform(epsilon), operations.AttentionValues: operations.Uniform(epsilon)},
        name="attnlrp",
    )


@register_composite("cp_lrp")
def cp_lrp(epsilon: float = 1e-6) -> Composite:
    """CP-LRP (Ali et al. 2022): as :func:`attnlrp`, but the attention weights are held constant:
    ``weights @ v`` is a linear map of ``v`` (``Gated(signal=1)``: ``R_v = v weights^T R / stabilize(z)``),
    so no relevance flows through the queries and keys.
    """
    return Composite(
        {LINEAR_TYPES + POOL_TYPES + types.NORM + types.EMBEDDING: rules.Epsilon(epsilon),
         operations.AttentionScores: operations.Uniform(epsilon), operations.AttentionValues: operations.Gated(1, epsilon)},
        name="cp_lrp",
    )


def default_for(model: nn.Module) -> Composite:
    """The composite ``explain`` uses when none is given: chosen by the model's first layer.

    ``epsilon_plus_flat`` when the model's first Linear/Conv module (in ``model.modules()`` order,
    which is the forward order of a Sequential) is a convolution: flat spreads relevance over each
    filter's small receptive field. Otherwise ``epsilon_plus`` (epsilon on dense layers, z+ on
    convolutions): on a dense first layer every neuron sees the whole input, so flat would give
    every input element the same relevance, a constant map.
    """
    for module in model.modules():
        if isinstance(module, LINEAR_TYPES):
            return epsilon_plus_flat() if isinstance(module, CONV_TYPES) else epsilon_plus()
    return epsilon_plus()


def get(composite) -> Composite:
    """A composite from itself, a factory, or a factory's name."""
    if isinstance(composite, Composite):
        return composite
    if isinstance(composite, str):
        if composite not in NAMES:
            raise ValueError(f"unknown composite {composite!r}; choose one of {sorted(NAMES)} or pass a Composite")
        return NAMES[composite]()
    if callable(composite):
        result = composite()
        if isinstance(result, Composite):
            return result
    raise TypeError(f"composite must be a Composite, a factory or one of {sorted(NAMES)}, got {composite!r}")
