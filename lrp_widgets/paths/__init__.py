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

Paper mode
    The paper first keeps the neurons of every layer that GetOptimizer selects (relevance above
    ``mean - std`` of the layer, :func:`select_neurons`) and builds the paths through those.
    ``top_paths(..., through="selected")`` (and ``PathFinder.paths/heatmap/fidelity`` with the same
    keyword) does that: the same exact search with every unselected neuron removed from the graph.
    ``through="all"`` (the default) searches over every neuron.

Fidelity (our definition)
    The paper evaluates with MSE and SMAPE but does not say between what. Here they compare the
    k-path heatmap (input relevance when only the neurons of the k best paths pass relevance) with
    the full heatmap; :func:`path_fidelity` gives both as curves over k.

Cost
    :class:`PathFinder` does the expensive part once (one forward pass, the messages: one batched
    LRP pass per pair of chosen layers through only the modules between them) and keeps it; a new
    ``k`` is then a small dynamic programme and one masked LRP pass (cached per ``k``). Widgets
    should hold one ``PathFinder`` per (model, sample, target, layers, composite).
"""
from __future__ import annotations


from .chain import (
    ACTIVATION_TYPES,
    POOL_TYPES,
    SCORES,
    THROUGH,
    TRANSPARENT_TYPES,
    _BLOCK,
    _leaf_chain,
    _neuron_scores,
    _segment_composite,
    _single_sample,
    default_layers,
    smape,
)
from .finder import PathFinder, _top_k_rows, path_fidelity, select_neurons, top_paths
from .probes import _DECONV_PASS, _conv_transpose, _output_shapes, activation_heatmap, deconvolve, path_heatmap
from .results import Fidelity, NeuronSelection, Path, PathSet, _channel_mask, _neurons_of

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
