"""Neuron selection, the k most relevant paths, path and activation heatmaps, deconvolution.

Our reading of the neuron-selection paper (REFERENCE.md §4; the paper gives no code).

Neurons
    The neurons of a layer are the units of the named module's **output**: one per channel for a
    4-D (N, C, H, W) output, one per unit for a 2-D (N, units) output. A neuron's relevance is the
    relevance arriving at that output, summed over space for a channel. This is where
    ``explain(masks=...)`` acts, so a selection can be fed back as conditional relevance. Pick the
    activations (ReLU modules): their input and output carry the same relevance, so "the ReLU's
    output" and "the activation map" are one thing.

Messages
    For two consecutive chosen layers, upper ``U`` (nearer the output) and lower ``L``, the message
    ``M[j, k] = R_{j<-k}`` is the relevance that reaches neuron ``j`` of ``L`` when only neuron ``k``
    of ``U`` passes relevance (all other neurons of ``U`` masked), through whatever modules lie
    between, with the composite's rules. Rules are linear in the output relevance, so
    ``sum_k M[j, k] = R_j`` exactly, and ``sum_j M[j, k] = R_k`` when the rules between conserve.

Shares and path scores (our choice)
    ``share(j <- k) = M[j, k] / R_k``: the fraction of ``k``'s relevance that goes to ``j``. The
    first edge, from the explained output ``f`` (the target's logit) to neuron ``k`` of the top
    layer, has share ``R_k / f``. A path carries **positive** relevance only: an edge whose message
    or whose upper relevance is <= 0 has share 0 (negative relevance is counter-evidence, and a
    ratio of two negatives would pose as a positive share; near-zero ``R_k`` would blow up).
    ``score="product"`` multiplies the shares: the fraction of ``f`` that flows along the path when
    every neuron splits what it receives in the proportions of its messages, so
    ``path.relevance = f * product``, and on a network whose messages are all positive and
    conservative the relevances of all paths ending at ``j`` add up to ``R_j``.
    ``score="min"`` takes the smallest share (the bottleneck). Paths with score 0 carry no positive
    relevance and are never returned: fewer than ``k`` paths come back when fewer exist.

Search
    Exact k-best dynamic programming over the layered graph: each neuron keeps the ``k`` best
    partial paths from the output down to it. Both scores are monotone in the partial score
    (``s * w`` and ``min(s, w)`` with ``w >= 0``), so the ``k`` best complete paths extend the ``k``
    best partial paths of their nodes, and the result is the brute-force optimum.

Cost
    :class:`PathFinder` does the expensive part once (one forward pass, the messages: one batched
    LRP pass per pair of chosen layers through only the modules between them) and keeps it; a new
    ``k`` is then a small dynamic programme and one masked LRP pass (cached per ``k``). Widgets
    should hold one ``PathFinder`` per (model, sample, target, layers, composite).
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .engine import composites as _composites
from .engine.composites import LINEAR_TYPES, Composite
from .engine.errors import InputError, UnsupportedModuleError
from .engine.explain import Explanation, check_input, explain
from .engine.modes import eval_mode

__all__ = [
    "NeuronSelection",
    "Path",
    "PathSet",
    "PathFinder",
    "Fidelity",
    "select_neurons",
    "default_layers",
    "top_paths",
    "path_heatmap",
    "activation_heatmap",
    "deconvolve",
    "path_fidelity",
    "smape",
]

SCORES = ("product", "min")
ACTIVATION_TYPES = (nn.ReLU, nn.LeakyReLU, nn.Tanh, nn.Sigmoid, nn.ELU, nn.GELU)
TRANSPARENT_TYPES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Identity) + ACTIVATION_TYPES
POOL_TYPES = (nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d)
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


# -- neuron selection ----------------------------------------------------------------------------
@dataclass
class NeuronSelection:
    """The neurons GetOptimizer keeps at one layer.

    Attributes
    ----------
    layer : str
        Module name; the neurons are the units (channels) of its output.
    indices : np.ndarray
        Kept neurons, most relevant first.
    scores : np.ndarray
        Every neuron's score (relevance summed over space).
    threshold : float
        ``mean - std`` of the scores (population std); kept means ``score > threshold``.
    """

    layer: str
    indices: np.ndarray
    scores: np.ndarray
    threshold: float

    def __len__(self):
        return len(self.indices)

    def __iter__(self):
        return iter(int(i) for i in self.indices)

    @property
    def mask(self) -> np.ndarray:
        """Boolean array over all neurons of the layer, True where kept."""
        keep = np.zeros(len(self.scores), dtype=bool)
        keep[self.indices] = True
        return keep


def select_neurons(explanation, layer: str, sample: int = 0) -> NeuronSelection:
    """GetOptimizer: keep the neurons of ``layer`` whose relevance exceeds ``mean - std``.

    Parameters
    ----------
    explanation : Explanation or PathFinder
        An :func:`~lrp_widgets.explain` result made with ``layers=True``, or a :class:`PathFinder`
        (whose layers' output relevance is recorded exactly).
    layer : str
        Module name (as in ``model.named_modules()``). The neurons are the units of the module's
        **output** (channels for conv layers), as everywhere in this module. An Explanation
        records relevance at module *inputs*; the relevance at ``layer``'s output is the
        relevance at the input of the module called next, which is exact for models whose forward
        is the chain of their modules (nn.Sequential, all ``lrp_widgets.models``). For a ReLU it
        is also the ReLU's own entry, because relevance passes activations unchanged.
    sample : int
        Which sample of the batch.

    Returns
    -------
    NeuronSelection
        ``.indices`` (most relevant first), ``.scores``, ``.threshold``, ``.mask``.

    Examples
    --------
    >>> import torch, lrp_widgets
    >>> from lrp_widgets.models import MiniVGG
    >>> model = MiniVGG(width=0.25)
    >>> result = lrp_widgets.explain(model, torch.rand(1, 3, 32, 32), layers=True)
    >>> kept = lrp_widgets.select_neurons(result, "features.4")
    """
    if isinstance(explanation, PathFinder):
        if layer not in explanation.relevance_maps:
            raise InputError(f"layer {layer!r} is not one of the PathFinder's layers {explanation.layers}")
        relevance = explanation.relevance_maps[layer][0]
    elif isinstance(explanation, Explanation):
        if explanation.layers is None:
            raise InputError("select_neurons needs the per-layer relevance: call explain(..., layers=True)")
        names = list(explanation.layers)
        if layer not in names:
            raise InputError(f"layer {layer!r} is not a module the explanation recorded; recorded: {names}")
        position = names.index(layer)
        if position + 1 == len(names):
            raise InputError(
                f"'{layer}' is the last module: its output is the model's output, which has no neurons to "
                "select beyond the explained class. Choose an earlier layer (e.g. the last hidden ReLU)."
            )
        relevance = explanation.layers[names[position + 1]]
        if isinstance(relevance, tuple):
            raise InputError(f"the module after '{layer}' takes several inputs; select neurons at a layer inside a chain")
        if not 0 <= sample < relevance.shape[0]:
            raise InputError(f"sample {sample} is out of range for a batch of {relevance.shape[0]}")
        relevance = relevance[sample]
    else:
        raise TypeError(f"select_neurons takes an Explanation (layers=True) or a PathFinder, got {type(explanation).__name__}")
    scores = _neuron_scores(relevance)
    threshold = float(scores.mean() - scores.std())
    kept = np.flatnonzero(scores > threshold)
    kept = kept[np.argsort(-scores[kept], kind="stable")]
    return NeuronSelection(layer=layer, indices=kept, scores=scores, threshold=threshold)


# -- paths ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Path:
    """One chain of neurons, from the layer nearest the output down.

    Attributes
    ----------
    neurons : tuple of (layer, index)
        One neuron per chosen layer, top (nearest the output) first.
    score : float
        Product or minimum of ``shares`` (see the module docstring).
    shares : tuple of float
        ``shares[0] = R_k / f`` for the first neuron, then ``M[j, k] / R_k`` for each edge.
    relevance : float
        ``f * prod(shares)``: the relevance flowing along the path under proportional splitting.
    """

    neurons: tuple
    score: float
    shares: tuple
    relevance: float

    def __len__(self):
        return len(self.neurons)


@dataclass
class PathSet(Sequence):
    """The k best paths (a list of :class:`Path`, best first) and what they were found from.

    Attributes
    ----------
    paths : list of Path
    layers : list of str
        The chosen layers, top (nearest the output) first.
    score : {"product", "min"}
    target : int
        The explained class.
    output_relevance : float
        ``f``, the relevance at the explained output (the target's logit by default).
    relevance : dict
        layer -> relevance of each neuron (np.ndarray).
    messages : dict
        ``(upper, lower)`` -> ``M`` (n_lower, n_upper), ``M[j, k] = R_{j<-k}``.
    """

    paths: list
    layers: list
    score: str
    target: int
    output_relevance: float
    relevance: dict = field(repr=False)
    messages: dict = field(repr=False)
    finder: "PathFinder | None" = field(default=None, repr=False, compare=False)

    def __getitem__(self, index):
        return self.paths[index]

    def __len__(self):
        return len(self.paths)

    # Rich display in notebooks (lrp_widgets.display, imported on first use only).
    def _repr_mimebundle_(self, include=None, exclude=None):
        from .display import mimebundle

        return mimebundle(self, include=include, exclude=exclude)

    def _repr_png_(self):
        from .display import to_png

        return to_png(self)

    def neurons_by_layer(self) -> "OrderedDict[str, np.ndarray]":
        """layer -> sorted indices of the neurons that lie on at least one path (every layer listed)."""
        chosen = OrderedDict((layer, set()) for layer in self.layers)
        for path in self.paths:
            for layer, index in path.neurons:
                chosen[layer].add(index)
        return OrderedDict((layer, np.array(sorted(indices), dtype=np.int64)) for layer, indices in chosen.items())

    def heatmap(self) -> torch.Tensor:
        """Input relevance through these paths' neurons only (see :func:`path_heatmap`)."""
        if self.finder is None:
            raise InputError("this PathSet has no PathFinder; call path_heatmap(model, x, paths)")
        return self.finder.heatmap(paths=self)

    def to_networkx(self):
        """The paths as a ``networkx.DiGraph``, edges pointing from the output down.

        Nodes: ``"output"`` (attributes ``target``, ``relevance``) and ``(layer, index)`` (attributes
        ``layer``, ``index``, ``depth`` = position of the layer from the top, ``relevance``). Edges
        carry ``message`` (relevance units), ``share`` and ``paths`` (ranks of the paths using it).
        """
        import networkx as nx  # optional at import time: only this export needs it

        graph = nx.DiGraph()
        graph.add_node("output", target=self.target, relevance=self.output_relevance, depth=-1)
        for rank, path in enumerate(self.paths):
            previous = "output"
            for depth, ((layer, index), share) in enumerate(zip(path.neurons, path.shares)):
                node = (layer, index)
                if node not in graph:
                    graph.add_node(node, layer=layer, index=index, depth=depth, relevance=float(self.relevance[layer][index]))
                if graph.has_edge(previous, node):
                    graph.edges[previous, node]["paths"].append(rank)
                else:
                    if previous == "output":
                        message = float(self.relevance[layer][index])
                    else:
                        upper = self.layers[depth - 1]
                        message = float(self.messages[(upper, layer)][index, previous[1]])
                    graph.add_edge(previous, node, message=message, share=share, paths=[rank])
                previous = node
        return graph


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
        before = [m for _, m in chain[:position] if isinstance(m, LINEAR_TYPES)]
        after = [m for _, m in chain[position + 1:] if not isinstance(m, TRANSPARENT_TYPES)]
        if not before or not after:
            continue
        if isinstance(before[-1], nn.Linear) and isinstance(after[0], nn.Linear):
            chosen.append(name)
        elif not isinstance(before[-1], nn.Linear) and not isinstance(after[0], LINEAR_TYPES[1:]):
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
        if isinstance(module, LINEAR_TYPES):
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


class PathFinder:
    """Everything the k-path views need for one sample, computed once; a new ``k`` is cheap.

    Parameters
    ----------
    model : nn.Module
        A model whose forward is the chain of its modules (nested ``nn.Sequential``, as
        ``lrp_widgets.models.MiniVGG`` and ``vgg16``). It is not changed.
    x : tensor (1, ...)
        One sample, with its batch axis.
    target : int, optional
        Class to explain; default the predicted one.
    layers : list of str, optional
        Module names whose output neurons form the path layers (any order; sorted top-down).
        Default :func:`default_layers`.
    composite : Composite or str
        LRP rules, as for :func:`~lrp_widgets.explain`.
    batch_size : int
        Masked relevance maps propagated at once while computing the messages (memory bound).
    cache_size : int
        Heatmaps kept (by ``k`` and score), oldest dropped first.

    Attributes
    ----------
    layers : list of str
        Top (nearest the output) first.
    relevance : dict
        layer -> np.ndarray, relevance of each neuron (channel sums).
    relevance_maps : dict
        layer -> tensor (1, C, ...), relevance at the layer's output.
    messages : dict
        ``(upper, lower)`` -> np.ndarray (n_lower, n_upper), ``M[j, k] = R_{j<-k}``.
    output_relevance : float
        ``f``, the explained output's relevance (the target's logit).

    Examples
    --------
    >>> finder = PathFinder(model, x)              # doctest: +SKIP
    >>> finder.paths(5)                            # the 5 best paths   # doctest: +SKIP
    >>> finder.heatmap(5)                          # their input relevance, cached  # doctest: +SKIP
    """

    def __init__(
        self,
        model: nn.Module,
        x,
        target=None,
        layers: Iterable[str] | None = None,
        composite="epsilon_plus_flat",
        batch_size: int = 64,
        cache_size: int = 64,
    ):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.model = model
        self.composite = _composites.get(composite)
        self.x = _single_sample(x, model)
        self.batch_size = int(batch_size)
        self.cache_size = int(cache_size)
        chain = _leaf_chain(model, "PathFinder")
        positions = {name: i for i, (name, _) in enumerate(chain)}
        layers = default_layers(model) if layers is None else list(layers)
        if not layers:
            raise InputError("layers is empty; name at least one module, e.g. the last hidden ReLU")
        unknown = [layer for layer in layers if layer not in positions]
        if unknown:
            raise InputError(f"layers {unknown} are not leaf modules of the model; leaf modules: {list(positions)}")
        if len(set(layers)) != len(layers):
            raise InputError(f"layers lists a module twice: {layers}")
        last = len(chain) - 1
        if any(positions[layer] == last for layer in layers):
            raise InputError(f"'{chain[-1][0]}' is the output layer; paths start at the explained output, choose layers below it")
        self.layers = sorted(layers, key=lambda layer: -positions[layer])
        self._chain, self._positions = chain, positions
        first = [name for name, module in chain if isinstance(module, LINEAR_TYPES)]
        self._first_linear = first[0] if first else None

        activations = self._forward()
        self._activations = activations
        self.relevance_maps: "OrderedDict[str, torch.Tensor]" = OrderedDict()
        self.messages: dict = {}
        self.shapes = {layer: tuple(activations[layer].shape) for layer in self.layers}

        top = self.layers[0]
        head = self._run_segment(positions[top] + 1, len(chain), activations[top], target=target)
        self.target = int(head.target[0])
        self.output = head.output
        self.output_relevance = float(head.output[0, self.target])
        self.relevance_maps[top] = head.relevance
        for upper, lower in zip(self.layers[:-1], self.layers[1:]):
            full, messages = self._messages(upper, lower)
            self.relevance_maps[lower] = full
            self.messages[(upper, lower)] = messages
        self.relevance = OrderedDict((layer, _neuron_scores(r[0])) for layer, r in self.relevance_maps.items())
        self._search_cache: dict = {}
        self._heatmaps: "OrderedDict[tuple, torch.Tensor]" = OrderedDict()
        self._full_heatmap = None

    # -- the expensive part, once ------------------------------------------------------------
    def _forward(self):
        """One forward pass through the chain, keeping the chosen layers' outputs."""
        wanted = {self._positions[layer]: layer for layer in self.layers}
        activations = {}
        with eval_mode(self.model), torch.no_grad():
            h = self.x.clone()  # an in-place first module must not change the caller's x
            for position, (name, module) in enumerate(self._chain):
                h = module(h)
                if position in wanted:
                    # a clone: an in-place ReLU next would overwrite a conv output kept by reference
                    activations[wanted[position]] = h.clone()
            output = self.model(self.x.clone())
        if not torch.allclose(h, output, rtol=1e-4, atol=1e-5 * float(output.abs().max()) + 1e-8):
            raise UnsupportedModuleError(
                "running the model's modules one after another does not reproduce model(x): its forward does "
                "more than chain them. PathFinder needs a Sequential-style model."
            )
        return activations

    def _run_segment(self, start, stop, a, target=None, initial_relevance=None):
        """LRP through ``chain[start:stop]`` alone, with the rules those modules have in the full model."""
        modules = [module for _, module in self._chain[start:stop]]
        composite = _segment_composite(self.composite, self._chain, start, stop, self._first_linear)
        segment = nn.Sequential(*modules)
        if initial_relevance is not None and initial_relevance.dim() > 2:
            # explain explains (N, classes) outputs: flatten the segment's output and its relevance
            segment.append(nn.Flatten())
            initial_relevance = initial_relevance.flatten(1)
        return explain(segment, a, target=target, composite=composite, initial_relevance=initial_relevance)

    def _messages(self, upper, lower):
        """``M[j, k]`` for all neurons ``k`` of ``upper`` and ``j`` of ``lower``; and the full map at ``lower``.

        Each row of a batch carries the relevance of one upper neuron (the rest masked); one extra
        row carries it all (the unmasked relevance at ``lower``, needed for the next pair). Neurons
        whose relevance map is exactly zero send nothing (rules are linear), so they are skipped.
        """
        R = self.relevance_maps[upper]
        a = self._activations[lower]
        channels = R.shape[1]
        active = torch.nonzero(R[0].reshape(channels, -1).ne(0).any(1)).flatten().tolist()
        rows = [-1] + active
        n_lower = a.shape[1]
        messages = np.zeros((n_lower, channels), dtype=np.float64)
        full = None
        start, stop = self._positions[lower] + 1, self._positions[upper] + 1
        spatial = (1,) * (R.dim() - 2)
        for offset in range(0, len(rows), self.batch_size):
            chunk = torch.tensor(rows[offset:offset + self.batch_size], device=R.device)
            keep = (torch.arange(channels, device=R.device)[None, :] == chunk[:, None]) | (chunk[:, None] < 0)
            initial = R * keep.to(R.dtype).reshape(len(chunk), channels, *spatial)
            result = self._run_segment(start, stop, a.expand(len(chunk), *a.shape[1:]), initial_relevance=initial)
            relevance = result.relevance
            sums = relevance.reshape(len(chunk), n_lower, -1).sum(-1).double().cpu().numpy()
            for b, k in enumerate(chunk.tolist()):
                if k < 0:
                    full = relevance[b:b + 1].clone()
                else:
                    messages[:, k] = sums[b]
        return full, messages

    # -- shares and the k-best search --------------------------------------------------------
    def shares(self):
        """``(root, edges)``: root shares ``R_k / f`` of the top layer and, per pair of layers,
        ``S[j, k] = M[j, k] / R_k`` with 0 wherever the message or ``R_k`` is <= 0."""
        f = self.output_relevance
        top = self.relevance[self.layers[0]]
        root = np.where((top > 0) & (f > 0), top / f if f > 0 else 0.0, 0.0)
        edges = []
        for upper, lower in zip(self.layers[:-1], self.layers[1:]):
            M = self.messages[(upper, lower)]
            R = self.relevance[upper]
            positive = (M > 0) & (R > 0)[None, :]
            edges.append(np.where(positive, M / np.where(R > 0, R, 1.0)[None, :], 0.0))
        return root, edges

    def paths(self, k: int = 5, score: str = "product") -> PathSet:
        """The ``k`` best paths by ``score`` ("product" or "min"), best first (exact)."""
        if score not in SCORES:
            raise ValueError(f"score must be one of {SCORES}, got {score!r}")
        k = int(k)
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        # the k best are the first k of the K best (K >= k): search once for the largest k asked
        cached = self._search_cache.get(score)
        if cached is None or cached[0] < k:
            cached = (max(k, 20), self._search(max(k, 20), score))
            self._search_cache[score] = cached
        found = cached[1][:k]
        return PathSet(
            paths=found,
            layers=list(self.layers),
            score=score,
            target=self.target,
            output_relevance=self.output_relevance,
            relevance=self.relevance,
            messages=self.messages,
            finder=self,
        )

    def _search(self, k: int, score: str) -> list:
        root, edges = self.shares()
        combine = np.multiply if score == "product" else np.minimum
        best = np.zeros((root.size, k))  # best[node, r]: r-th best partial score; 0 = no path
        best[:, 0] = root
        pointers = []  # per edge layer: (n_lower, k) flat index node_upper * k + r into the previous best
        for S in edges:
            n_lower = S.shape[0]
            new = np.zeros((n_lower, k))
            pointer = np.zeros((n_lower, k), dtype=np.int64)
            upper = np.flatnonzero(best[:, 0] > 0)
            if upper.size:
                lower = np.flatnonzero((S[:, upper] > 0).any(1))
                partial = best[upper]  # (u, k)
                rows_per_block = max(1, _BLOCK // (upper.size * k))
                for offset in range(0, lower.size, rows_per_block):
                    rows = lower[offset:offset + rows_per_block]
                    candidates = combine(S[np.ix_(rows, upper)][:, :, None], partial[None]).reshape(rows.size, -1)
                    top = _top_k_rows(candidates, k)
                    new[rows] = np.take_along_axis(candidates, top, 1)
                    pointer[rows] = upper[top // k] * k + top % k
            best = new
            pointers.append(pointer)
        flat = best.ravel()
        order = np.argsort(-flat, kind="stable")[:k]
        order = order[flat[order] > 0]
        found = []
        for index in order:
            node, rank = divmod(int(index), k)
            nodes = [node]
            for pointer in reversed(pointers):
                node, rank = divmod(int(pointer[node, rank]), k)
                nodes.append(node)
            nodes.reverse()
            shares = [float(root[nodes[0]])]
            for S, (j, up) in zip(edges, zip(nodes[1:], nodes[:-1])):
                shares.append(float(S[j, up]))
            value = float(np.prod(shares)) if score == "product" else float(min(shares))
            found.append(
                Path(
                    neurons=tuple(zip(self.layers, nodes)),
                    score=value,
                    shares=tuple(shares),
                    relevance=self.output_relevance * float(np.prod(shares)),
                )
            )
        return found

    # -- heatmaps and fidelity ---------------------------------------------------------------
    def masks(self, neurons: dict) -> dict:
        """``explain`` masks that let only ``neurons`` ({layer: indices}) pass relevance at their layers."""
        result = {}
        for layer, indices in neurons.items():
            shape = self.shapes.get(layer)
            if shape is None:
                raise InputError(f"layer {layer!r} is not one of this PathFinder's layers {self.layers}")
            result[layer] = _channel_mask(shape, indices, self.x.dtype, self.x.device)
        return result

    @property
    def full_heatmap(self) -> torch.Tensor:
        """The unmasked input relevance (the full explanation), computed once."""
        if self._full_heatmap is None:
            self._full_heatmap = explain(self.model, self.x, target=self.target, composite=self.composite).relevance
        return self._full_heatmap

    def heatmap(self, k: int | None = None, score: str = "product", paths=None) -> torch.Tensor:
        """Input relevance when only the neurons of the ``k`` best paths (or of ``paths``) pass relevance.

        Cached by ``(k, score)``; ``paths`` may be a PathSet, a list of Path or {layer: indices}.
        """
        if paths is None:
            if k is None:
                raise ValueError("give k or paths")
            key = (int(k), score)
            if key in self._heatmaps:
                self._heatmaps.move_to_end(key)
                return self._heatmaps[key]
            paths = self.paths(k, score)
        else:
            key = None
        neurons = _neurons_of(paths, self.layers)
        relevance = explain(self.model, self.x, target=self.target, composite=self.composite, masks=self.masks(neurons)).relevance
        if key is not None:
            self._heatmaps[key] = relevance
            while len(self._heatmaps) > self.cache_size:
                self._heatmaps.popitem(last=False)
        return relevance

    def fidelity(self, ks: Iterable[int], score: str = "product") -> "Fidelity":
        """MSE and SMAPE between the k-path heatmap and the full heatmap for each ``k``."""
        ks = np.asarray(list(ks), dtype=np.int64)
        full = self.full_heatmap.double().cpu().numpy()
        mse, smapes, counts = [], [], []
        for k in ks:
            heat = self.heatmap(int(k), score).double().cpu().numpy()
            mse.append(float(np.mean((heat - full) ** 2)))
            smapes.append(smape(heat, full))
            counts.append(sum(len(v) for v in self.paths(int(k), score).neurons_by_layer().values()))
        return Fidelity(ks=ks, mse=np.array(mse), smape=np.array(smapes), n_neurons=np.array(counts))


def _top_k_rows(values: np.ndarray, k: int) -> np.ndarray:
    """Column indices of each row's ``k`` largest values, largest first (rows have >= k values)."""
    if values.shape[1] > k:
        part = np.argpartition(-values, k - 1, axis=1)[:, :k]
    else:
        part = np.broadcast_to(np.arange(values.shape[1]), values.shape).copy()
    order = np.argsort(-np.take_along_axis(values, part, 1), axis=1, kind="stable")
    return np.take_along_axis(part, order, 1)


def _channel_mask(shape, indices, dtype, device) -> torch.Tensor:
    """(1, C, 1, ...) ones at ``indices``, broadcastable to an output of ``shape``."""
    mask = torch.zeros((1, shape[1]) + (1,) * (len(shape) - 2), dtype=dtype, device=device)
    indices = torch.as_tensor(np.asarray(list(indices), dtype=np.int64), device=device)
    if indices.numel():
        if int(indices.min()) < 0 or int(indices.max()) >= shape[1]:
            raise InputError(f"neuron indices {indices.tolist()} are out of range for a layer with {shape[1]} neurons")
        mask[0, indices] = 1
    return mask


def _neurons_of(paths, layers=None) -> dict:
    """{layer: indices} from a PathSet, a list of Path, a NeuronSelection list or a dict."""
    if isinstance(paths, PathSet):
        return dict(paths.neurons_by_layer())
    if isinstance(paths, dict):
        return {layer: np.asarray(list(v.indices if isinstance(v, NeuronSelection) else v), dtype=np.int64) for layer, v in paths.items()}
    if isinstance(paths, NeuronSelection):
        return {paths.layer: paths.indices}
    chosen: dict = {layer: set() for layer in (layers or [])}
    for path in paths:
        if not isinstance(path, Path):
            raise TypeError(f"paths must be a PathSet, Paths or {{layer: indices}}, got an element {type(path).__name__}")
        for layer, index in path.neurons:
            chosen.setdefault(layer, set()).add(index)
    return {layer: np.array(sorted(v), dtype=np.int64) for layer, v in chosen.items()}


@dataclass
class Fidelity:
    """How close the k-path heatmaps come to the full one.

    Attributes
    ----------
    ks : np.ndarray
    mse : np.ndarray
        Mean squared difference to the full heatmap, per k.
    smape : np.ndarray
        ``100/n sum |F - A| / ((|A| + |F|) / 2)`` (0/0 counts as 0), per k, in percent.
    n_neurons : np.ndarray
        Neurons kept (the union of the k paths' neurons over all layers), per k.
    """

    ks: np.ndarray
    mse: np.ndarray
    smape: np.ndarray
    n_neurons: np.ndarray


# -- the public functions ------------------------------------------------------------------------
def top_paths(model, x, target=None, k: int = 5, layers=None, score: str = "product", composite="epsilon_plus_flat") -> PathSet:
    """The ``k`` chains of neurons with the largest path relevance (exact k-best search).

    Parameters
    ----------
    model : nn.Module
        A Sequential-style model (``lrp_widgets.models.MiniVGG``, ``vgg16``).
    x : tensor (1, ...)
        One sample with its batch axis.
    target : int, optional
        Class to explain; default the predicted one.
    k : int
        How many paths (fewer come back when fewer carry positive relevance).
    layers : list of str, optional
        Module names; their output neurons are the path layers. Default :func:`default_layers`.
    score : {"product", "min"}
        Product or minimum of the edge shares (module docstring).
    composite : Composite or str
        LRP rules.

    Returns
    -------
    PathSet
        List-like of :class:`Path` (``.neurons``, ``.score``, ``.shares``, ``.relevance``), with
        ``.layers``, ``.messages``, ``.relevance``, ``.to_networkx()``, ``.heatmap()``. For many
        values of ``k`` keep a :class:`PathFinder` instead: it computes the messages once.
    """
    return PathFinder(model, x, target=target, layers=layers, composite=composite).paths(k, score)


def path_heatmap(model, x, paths, target=None, composite=None) -> torch.Tensor:
    """Input relevance when only the paths' neurons pass relevance at their layers.

    Parameters
    ----------
    model : nn.Module
        Any model ``explain`` handles (masks act by module name).
    x : tensor (N, ...)
    paths : PathSet, list of Path, or dict {layer: indices}
        Neurons to keep at each named layer (the union over paths); other neurons of those layers
        are masked (conditional relevance). Layers not named are unmasked.
    target : int, optional
        Default: the PathSet's target, else the predicted class.
    composite : Composite or str, optional
        Default: the PathSet's finder's composite, else ``"epsilon_plus_flat"``.

    Returns
    -------
    torch.Tensor
        Same shape as ``x``.
    """
    if isinstance(paths, PathSet):
        target = paths.target if target is None else target
        if composite is None and paths.finder is not None:
            composite = paths.finder.composite
    composite = "epsilon_plus_flat" if composite is None else composite
    x = check_input(x, model)
    neurons = _neurons_of(paths)
    shapes = _output_shapes(model, x, list(neurons))
    masks = {layer: _channel_mask(shapes[layer], indices, x.dtype, x.device) for layer, indices in neurons.items()}
    return explain(model, x, target=target, composite=composite, masks=masks).relevance


def _output_shapes(model, x, names) -> dict:
    """Output shape of each named module in one forward pass (first call of each)."""
    modules = dict(model.named_modules())
    missing = [name for name in names if name not in modules]
    if missing:
        raise InputError(f"modules {missing} are not in the model; names are those of model.named_modules()")
    shapes, handles = {}, []
    for name in names:
        def hook(module, inputs, output, name=name):
            shapes.setdefault(name, tuple(output.shape))
        handles.append(modules[name].register_forward_hook(hook))
    try:
        with eval_mode(model), torch.no_grad():
            model(x.clone())
    finally:
        for handle in handles:
            handle.remove()
    return shapes


def activation_heatmap(model, x, layer: str, channels, reduce: str = "sum") -> torch.Tensor:
    """The selected channels' activations at ``layer``'s output, upsampled (bilinear) to the input size.

    Parameters
    ----------
    model : nn.Module
    x : tensor (N, C, H, W)
    layer : str
        Module name; its output must be (N, C, h, w).
    channels : int, sequence of int, NeuronSelection or PathSet
        Channels of that output (a PathSet gives its neurons at ``layer``).
    reduce : {"sum", "mean"}
        How the selected channels combine.

    Returns
    -------
    torch.Tensor (N, H, W)
    """
    if reduce not in ("sum", "mean"):
        raise ValueError(f"reduce must be 'sum' or 'mean', got {reduce!r}")
    x = check_input(x, model)
    if x.dim() != 4:
        raise InputError(f"activation_heatmap needs images (N, C, H, W), got shape {tuple(x.shape)}")
    modules = dict(model.named_modules())
    if layer not in modules:
        raise InputError(f"module {layer!r} is not in the model; names are those of model.named_modules()")
    if isinstance(channels, PathSet):
        if layer not in channels.layers:
            raise InputError(f"the PathSet has no neurons at {layer!r}; its layers: {channels.layers}")
        channels = channels.neurons_by_layer()[layer]
    elif isinstance(channels, NeuronSelection):
        channels = channels.indices
    channels = [int(channels)] if np.ndim(channels) == 0 else [int(c) for c in channels]
    captured = {}

    def hook(module, inputs, output):
        # a clone: an in-place ReLU after a conv would overwrite the kept output
        captured.setdefault("output", output.detach().clone())

    handle = modules[layer].register_forward_hook(hook)
    try:
        with eval_mode(model), torch.no_grad():
            model(x.clone())
    finally:
        handle.remove()
    activation = captured["output"]
    if activation.dim() != 4:
        raise InputError(
            f"'{layer}' outputs shape {tuple(activation.shape)}; activation maps need (N, C, h, w): choose a convolutional layer"
        )
    if channels and (min(channels) < 0 or max(channels) >= activation.shape[1]):
        raise InputError(f"channels {channels} are out of range for '{layer}' with {activation.shape[1]} channels")
    picked = activation[:, channels] if channels else torch.zeros_like(activation[:, :1])
    combined = picked.sum(1, keepdim=True) if reduce == "sum" or not channels else picked.mean(1, keepdim=True)
    return F.interpolate(combined, size=tuple(x.shape[-2:]), mode="bilinear", align_corners=False)[:, 0]


_DECONV_PASS = (nn.Dropout, nn.Dropout2d, nn.Identity)


def deconvolve(model, x, layer: str, channel: int) -> torch.Tensor:
    """Zeiler-Fergus deconvnet: one channel of ``layer``'s output, reconstructed in input space.

    Runs the modules up to ``layer`` forward (max pooling records its switches), keeps the
    channel's activation map and zeroes the others, then walks back: max pooling -> max-unpooling
    with the forward switches, ReLU -> ReLU, Conv2d -> transposed convolution with the same
    weights (no bias); dropout and identity pass.

    Parameters
    ----------
    model : nn.Module
        A Sequential-style model (or its feature stack, e.g. ``model.features``); the modules up
        to ``layer`` must be Conv2d, ReLU, MaxPool2d, Dropout or Identity.
    x : tensor (N, C, H, W)
    layer : str
        Module name (as in ``model.named_modules()``).
    channel : int
        Channel of ``layer``'s output.

    Returns
    -------
    torch.Tensor
        Same shape as ``x``.
    """
    x = check_input(x, model)
    chain = _leaf_chain(model, "deconvolve")
    names = [name for name, _ in chain]
    if layer not in names:
        raise InputError(f"{layer!r} is not a leaf module of the model; leaf modules: {names}")
    steps = chain[: names.index(layer) + 1]
    for name, module in steps:
        if not isinstance(module, (nn.Conv2d, nn.ReLU, nn.MaxPool2d) + _DECONV_PASS):
            raise UnsupportedModuleError(
                f"deconvolve cannot reverse '{name}' ({type(module).__name__}): it walks back through Conv2d, ReLU, "
                "MaxPool2d, Dropout and Identity only. Choose a layer inside the convolutional feature stack."
            )
        if isinstance(module, nn.Conv2d) and (isinstance(module.padding, str) or module.padding_mode != "zeros"):
            raise UnsupportedModuleError(
                f"deconvolve needs numeric zero padding to transpose '{name}'; it has padding={module.padding!r}, "
                f"padding_mode={module.padding_mode!r}"
            )
    records = []
    with eval_mode(model), torch.no_grad():
        h = x.clone()
        for name, module in steps:
            shape = h.shape
            if isinstance(module, nn.MaxPool2d):
                h, switches = F.max_pool2d(
                    h, module.kernel_size, module.stride, module.padding, module.dilation, module.ceil_mode, return_indices=True
                )
            else:
                h, switches = module(h), None
            records.append((module, switches, shape))
        if not 0 <= int(channel) < h.shape[1]:
            raise InputError(f"channel {channel} is out of range: '{layer}' has {h.shape[1]} channels")
        y = torch.zeros_like(h)
        y[:, int(channel)] = h[:, int(channel)]
        for module, switches, shape in reversed(records):
            if isinstance(module, nn.MaxPool2d):
                y = F.max_unpool2d(y, switches, module.kernel_size, module.stride, module.padding, output_size=shape[-2:])
            elif isinstance(module, nn.ReLU):
                y = F.relu(y)
            elif isinstance(module, nn.Conv2d):
                y = _conv_transpose(module, y, shape)
    return y


def _conv_transpose(conv: nn.Conv2d, y: torch.Tensor, input_shape) -> torch.Tensor:
    """``conv_transpose2d`` with the conv's own weights (no bias), sized back to ``input_shape``."""
    padding, stride, dilation = conv.padding, conv.stride, conv.dilation
    extra = []
    for i in range(2):
        produced = (y.shape[2 + i] - 1) * stride[i] - 2 * padding[i] + dilation[i] * (conv.kernel_size[i] - 1) + 1
        extra.append(int(input_shape[2 + i]) - produced)
    return F.conv_transpose2d(y, conv.weight.detach(), None, stride, padding, tuple(extra), conv.groups, dilation)


def path_fidelity(
    model,
    x,
    ks,
    target=None,
    layers=None,
    score: str = "product",
    composite="epsilon_plus_flat",
    finder: PathFinder | None = None,
) -> Fidelity:
    """MSE and SMAPE between the k-path heatmap and the full heatmap, for each ``k`` in ``ks``.

    The k-path heatmap is :func:`path_heatmap` of the union of the ``k`` best paths' neurons. The
    ``k`` best are the first ``k`` of one ranking, so the kept sets grow with ``k``. MSE then falls
    with ``k`` whenever the relevance flowing through the added neurons has the sign of the full
    heatmap (e.g. all-positive rules such as z+ with a flat or z+ first layer); where neurons with
    negative relevance (never on a path) shape the full map, it need not fall monotonically.

    Returns
    -------
    Fidelity
        ``.ks``, ``.mse``, ``.smape`` (percent), ``.n_neurons`` as arrays.
    """
    if finder is None:
        finder = PathFinder(model, x, target=target, layers=layers, composite=composite)
    return finder.fidelity(ks, score)
