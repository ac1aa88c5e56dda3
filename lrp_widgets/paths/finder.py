"""PathFinder: messages between chosen layers once, the exact k-best path search; neuron selection."""
from __future__ import annotations

from collections import OrderedDict
from typing import Iterable

import numpy as np
import torch
from torch import nn

from ..engine import composites as _composites
from ..engine import types
from ..engine.cache import BoundedCache
from ..engine.checks import check_input
from ..engine.errors import InputError, UnsupportedModuleError
from ..engine.explain import Explanation, explain
from ..engine.modes import eval_mode
from ..engine.signatures import keyword_arguments
from .chain import SCORES, _BLOCK, _check_through, _leaf_chain, _neuron_scores, _segment_composite, _single_sample, default_layers, smape
from .results import Fidelity, NeuronSelection, Path, PathSet, _channel_mask, _neurons_of


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

    @keyword_arguments("target", "layers", "composite", "batch_size", "cache_size")
    def __init__(
        self,
        model: nn.Module,
        x,
        *,
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
        first = [name for name, module in chain if isinstance(module, types.LINEAR)]
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
        self._selections = None
        self._heatmaps = BoundedCache(self.cache_size)
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

    def selections(self) -> "OrderedDict[str, NeuronSelection]":
        """layer -> :class:`NeuronSelection`: the neurons GetOptimizer keeps (score > mean - std), top first."""
        if self._selections is None:
            self._selections = OrderedDict((layer, select_neurons(self, layer)) for layer in self.layers)
        return self._selections

    def paths(self, k: int = 5, score: str = "product", through: str = "all") -> PathSet:
        """The ``k`` best paths by ``score`` ("product" or "min"), best first (exact).

        ``through="selected"`` is the paper's mode: a path may only use the neurons that
        :func:`select_neurons` (GetOptimizer, relevance above ``mean - std`` of its layer) keeps at
        every chosen layer; ``through="all"`` searches over every neuron.
        """
        if score not in SCORES:
            raise ValueError(f"score must be one of {SCORES}, got {score!r}")
        _check_through(through)
        k = int(k)
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        # the k best are the first k of the K best (K >= k): search once for the largest k asked
        cached = self._search_cache.get((score, through))
        if cached is None or cached[0] < k:
            cached = (max(k, 20), self._search(max(k, 20), score, through))
            self._search_cache[(score, through)] = cached
        found = cached[1][:k]
        return PathSet(
            paths=found,
            layers=list(self.layers),
            score=score,
            target=self.target,
            output_relevance=self.output_relevance,
            neuron_relevance=self.relevance,
            messages=self.messages,
            finder=self,
            through=through,
        )

    def _search(self, k: int, score: str, through: str = "all") -> list:
        root, edges = self.shares()
        if through == "selected":
            # a neuron GetOptimizer drops can neither start a path (top layer) nor be reached
            keep = [selection.mask for selection in self.selections().values()]
            root = np.where(keep[0], root, 0.0)
            edges = [np.where(mask[:, None], S, 0.0) for S, mask in zip(edges, keep[1:])]
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

    def heatmap(self, k: int | None = None, score: str = "product", paths=None, through: str = "all") -> torch.Tensor:
        """Input relevance when only the neurons of the ``k`` best paths (or of ``paths``) pass relevance.

        Cached by ``(k, score, through)``; ``paths`` may be a PathSet, a list of Path or {layer: indices}.
        """
        if paths is None:
            if k is None:
                raise ValueError("give k or paths")
            key = (int(k), score, through)
            if key in self._heatmaps:
                return self._heatmaps.lookup(key)
            paths = self.paths(k, score, through)
        else:
            key = None
        neurons = _neurons_of(paths, self.layers)
        relevance = explain(self.model, self.x, target=self.target, composite=self.composite, masks=self.masks(neurons)).relevance
        if key is not None:
            self._heatmaps.put(key, relevance)
        return relevance

    def fidelity(self, ks: Iterable[int], score: str = "product", through: str = "all") -> "Fidelity":
        """MSE and SMAPE between the k-path heatmap and the full heatmap for each ``k``.

        These two numbers are the project's definition of fidelity (REFERENCE.md section 4): the
        paper names MSE and SMAPE but not what they compare; here they compare the input relevance
        through the k paths' neurons with the full explanation.
        """
        ks = np.asarray(list(ks), dtype=np.int64)
        full = self.full_heatmap.double().cpu().numpy()
        mse, smapes, counts = [], [], []
        for k in ks:
            heat = self.heatmap(int(k), score, through=through).double().cpu().numpy()
            mse.append(float(np.mean((heat - full) ** 2)))
            smapes.append(smape(heat, full))
            counts.append(sum(len(v) for v in self.paths(int(k), score, through).neurons_by_layer().values()))
        return Fidelity(ks=ks, mse=np.array(mse), smape=np.array(smapes), n_neurons=np.array(counts),
                        relevance=self.full_heatmap, target=self.target, output=self.output)


def _top_k_rows(values: np.ndarray, k: int) -> np.ndarray:
    """Column indices of each row's ``k`` largest values, largest first (rows have >= k values)."""
    if values.shape[1] > k:
        part = np.argpartition(-values, k - 1, axis=1)[:, :k]
    else:
        part = np.broadcast_to(np.arange(values.shape[1]), values.shape).copy()
    order = np.argsort(-np.take_along_axis(values, part, 1), axis=1, kind="stable")
    return np.take_along_axis(part, order, 1)


@keyword_arguments("target", "k", "layers", "score", "composite", "through")
def top_paths(
    model, x, *, target=None, composite="epsilon_plus_flat", k: int = 5, layers=None, score: str = "product", through: str = "all"
) -> PathSet:
    """The ``k`` chains of neurons with the largest path relevance (exact k-best search).

    ``through="selected"`` is the neuron-selection paper's mode: first GetOptimizer
    (:func:`select_neurons`, relevance above ``mean - std``) picks the neurons of every chosen
    layer, then the k best paths are searched through those neurons only. ``through="all"`` (the
    default, unchanged since 0.1) lets a path use any neuron; it can route a path through a neuron
    whose own relevance is low when that neuron passes on a large share of what it receives.

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
    through : {"all", "selected"}
        Neurons a path may use: any, or only those GetOptimizer selects (the paper's mode).

    Returns
    -------
    PathSet
        List-like of :class:`Path` (``.neurons``, ``.score``, ``.shares``, ``.relevance``), with
        ``.layers``, ``.messages``, ``.relevance``, ``.to_networkx()``, ``.heatmap()``. For many
        values of ``k`` keep a :class:`PathFinder` instead: it computes the messages once.
    """
    return PathFinder(model, x, target=target, layers=layers, composite=composite).paths(k, score, through)


@keyword_arguments("ks", "target", "layers", "score", "composite", "finder", "through")
def path_fidelity(
    model,
    x,
    *,
    ks=(1, 2, 5, 10, 20),
    target=None,
    layers=None,
    score: str = "product",
    composite="epsilon_plus_flat",
    finder: PathFinder | None = None,
    through: str = "all",
) -> Fidelity:
    """MSE and SMAPE between the k-path heatmap and the full heatmap, for each ``k`` in ``ks``.

    This fidelity is the project's own definition: the paper evaluates with MSE and SMAPE but does
    not say between what; here it is between the input relevance through the k paths' neurons and
    the full explanation (REFERENCE.md section 4). ``through`` as in :func:`top_paths`.

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
    else:
        check_input(x, model)  # the finder has its own sample; still refuse bad data passed alongside
    return finder.fidelity(ks, score, through)
