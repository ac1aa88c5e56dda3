"""What the path functions return: neuron selections, paths, path sets and fidelity tables."""
from __future__ import annotations

import dataclasses
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch

from ..engine.errors import InputError
from ..engine.results import Result, plural

if TYPE_CHECKING:
    from .finder import PathFinder


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
class PathSet(Result, Sequence):
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
    neuron_relevance : dict
        layer -> relevance of each neuron (np.ndarray). (Before 0.2 this was ``.relevance``.)
    relevance : torch.Tensor
        Input relevance through these paths' neurons only (:meth:`heatmap`, computed on first use).
    output : torch.Tensor or None
        The model's scores for the sample.
    messages : dict
        ``(upper, lower)`` -> ``M`` (n_lower, n_upper), ``M[j, k] = R_{j<-k}``.
    through : {"all", "selected"}
        Whether the paths may use any neuron or only those GetOptimizer selects (the paper's mode).
    """

    paths: list
    layers: list
    score: str
    target: int
    output_relevance: float
    neuron_relevance: dict = field(repr=False)
    messages: dict = field(repr=False)
    finder: "PathFinder | None" = field(default=None, repr=False, compare=False)
    through: str = "all"

    def __getitem__(self, index):
        return self.paths[index]

    def __len__(self):
        return len(self.paths)

    @property
    def relevance(self) -> torch.Tensor:
        """Input relevance through these paths' neurons only (shape of the sample; see :meth:`heatmap`)."""
        return self.heatmap()

    @property
    def output(self) -> torch.Tensor | None:
        """The model's scores (1, classes) for the sample, when the PathSet has its PathFinder."""
        return None if self.finder is None else self.finder.output

    def summary(self) -> str:
        """The paths, best first, with scores, and the share of the explained output they carry."""
        lines = [
            f"PathSet: {plural(len(self), 'path')} to target {self.target}, score {self.score}, "
            f"explained output {self.output_relevance:.4g}, layers {list(self.layers)} (top first), "
            f"through {'the selected neurons (GetOptimizer)' if self.through == 'selected' else 'any neuron'}"
        ]
        if len(self) == 0:
            lines.append("no path carries positive relevance")
        covered = sum(path.relevance for path in self)
        if len(self) and self.output_relevance:
            lines.append(f"conservation: the paths carry {covered / self.output_relevance:.1%} of the explained output")
        for rank, path in enumerate(self.paths[:10]):
            chain = " -> ".join(f"{layer}[{index}]" for layer, index in path.neurons)
            lines.append(f"{rank + 1:>3}. {chain}  score {path.score:.3g}, relevance {path.relevance:.3g}")
        if len(self) > 10:
            lines.append(f"     ... {len(self) - 10} more")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """``paths`` (neurons, score, shares, relevance of each), ``layers``, ``score``, ``target``,
        ``output_relevance``, ``neuron_relevance``, ``messages``."""
        return {
            "paths": [dataclasses.asdict(path) for path in self.paths],
            "layers": list(self.layers),
            "score": self.score,
            "through": self.through,
            "target": self.target,
            "output_relevance": self.output_relevance,
            "neuron_relevance": dict(self.neuron_relevance),
            "messages": dict(self.messages),
        }

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
                    graph.add_node(node, layer=layer, index=index, depth=depth, relevance=float(self.neuron_relevance[layer][index]))
                if graph.has_edge(previous, node):
                    graph.edges[previous, node]["paths"].append(rank)
                else:
                    if previous == "output":
                        message = float(self.neuron_relevance[layer][index])
                    else:
                        upper = self.layers[depth - 1]
                        message = float(self.messages[(upper, layer)][index, previous[1]])
                    graph.add_edge(previous, node, message=message, share=share, paths=[rank])
                previous = node
        return graph


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
class Fidelity(Result):
    """How close the k-path heatmaps come to the full one (the project's definition of fidelity).

    The paper reports MSE and SMAPE without saying what they compare; here they compare the input
    relevance through the k paths' neurons with the full heatmap.

    Attributes
    ----------
    ks : np.ndarray
    mse : np.ndarray
        Mean squared difference to the full heatmap, per k.
    smape : np.ndarray
        ``100/n sum |F - A| / ((|A| + |F|) / 2)`` (0/0 counts as 0), per k, in percent.
    n_neurons : np.ndarray
        Neurons kept (the union of the k paths' neurons over all layers), per k.
    relevance : torch.Tensor
        The full heatmap the k-path heatmaps are compared with.
    target : int
    output : torch.Tensor
        The model's scores for the sample.
    """

    ks: np.ndarray
    mse: np.ndarray
    smape: np.ndarray
    n_neurons: np.ndarray
    relevance: torch.Tensor | None = field(default=None, repr=False)
    target: int | None = None
    output: torch.Tensor | None = field(default=None, repr=False)

    def summary(self) -> str:
        """MSE and SMAPE per k."""
        rows = [f"{int(k):>5}{m:>12.4g}{s:>10.3g}{n:>10}" for k, m, s, n in zip(self.ks, self.mse, self.smape, self.n_neurons)]
        return "\n".join([f"Fidelity of k-path heatmaps to the full heatmap (target {self.target})",
                          f"{'k':>5}{'MSE':>12}{'SMAPE %':>10}{'neurons':>10}", *rows])

    def to_dict(self) -> dict:
        """``ks``, ``mse``, ``smape``, ``n_neurons`` as arrays, ``target``."""
        return {"ks": self.ks, "mse": self.mse, "smape": self.smape, "n_neurons": self.n_neurons, "target": self.target}
