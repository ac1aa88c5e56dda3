"""The neuron-path graph panel: layers as columns of dots, the paths' edges drawn by relevance."""
from __future__ import annotations

import numpy as np
from matplotlib.collections import LineCollection
from matplotlib.patches import Rectangle

from .panels import PlotPanel

OUTPUT = "output"


def short_name(layer: str) -> str:
    """``features.4`` -> ``conv 4``, ``classifier.1`` -> ``dense 1`` (labels stay short)."""
    return layer.replace("features.", "conv ").replace("classifier.", "dense ")


class PathGraphPanel(PlotPanel):
    """Columns from the layer nearest the input (left) to the output (right); edge width is the
    relevance flowing along the edge; the selected layer's column is shaded.

    Shows the state fields ``edges`` ((upper, lower) nodes; a node is ``("output", target)`` or
    ``(layer, index)``), ``edge_relevance``, ``paths`` and ``layer``.
    """

    def __init__(self, layers, sizes: dict, title: str = "top-k paths (width: relevance)", figsize=(6.2, 2.6)):
        super().__init__(["edges", "edge_relevance", "paths", "layer"], self._update, title=title, figsize=figsize)
        self.layers, self.sizes = list(layers), dict(sizes)  # layers: top (nearest the output) first
        self.columns = {layer: column for column, layer in enumerate(reversed(self.layers))}
        ax = self.ax
        ax.figure.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=0.98)
        dots = np.array([self.node_xy((layer, i)) for layer in self.layers for i in range(self.sizes[layer])])
        ax.scatter(dots[:, 0], dots[:, 1], s=5, c="0.7", linewidths=0, zorder=2)
        ax.scatter([len(self.layers)], [0.5], s=30, c="k", zorder=3)
        self.layer_box = Rectangle((-0.25, -0.03), 0.5, 1.06, facecolor="tab:orange", alpha=0.15, edgecolor="none", zorder=0)
        ax.add_patch(self.layer_box)
        # one LineCollection for all edges: each draw sets its segments and widths in place
        self.edge_lines = LineCollection([], colors="tab:red", alpha=0.75, zorder=1, capstyle="round")
        ax.add_collection(self.edge_lines)
        self.path_nodes = ax.scatter(np.empty(0), np.empty(0), s=18, c="tab:red", zorder=4, linewidths=0)
        for column, name in enumerate([short_name(layer) for layer in reversed(self.layers)] + ["output"]):
            ax.text(column, -0.05, name, fontsize=7, ha="center", va="top")
        ax.set_xlim(-0.4, len(self.layers) + 0.4)
        ax.set_ylim(-0.12, 1.04)
        ax.set_axis_off()

    def node_xy(self, node):
        layer, index = node
        if layer == OUTPUT:
            return len(self.layers), 0.5
        return self.columns[layer], (index + 0.5) / self.sizes[layer]

    def _update(self, ax, edges, edge_relevance, paths, layer):
        flow = np.asarray(edge_relevance, dtype=float)
        self.edge_lines.set_segments([[self.node_xy(upper), self.node_xy(lower)] for upper, lower in edges])
        self.edge_lines.set_linewidths(0.6 + 5.4 * flow / flow.max() if flow.size and flow.max() > 0 else [])
        nodes = {node for path in paths for node in path}
        self.path_nodes.set_offsets(np.array([self.node_xy(n) for n in sorted(nodes)]).reshape(-1, 2))
        self.layer_box.set_x(self.columns[layer] - 0.25)


def path_edges(path_set):
    """Distinct edges of the paths (upper node, lower node), top first, and the relevance on each
    (the sum of the relevances of the paths that use it)."""
    flow: dict = {}
    for path in path_set:
        nodes = [(OUTPUT, path_set.target)] + list(path.neurons)
        for upper, lower in zip(nodes[:-1], nodes[1:]):
            flow[(upper, lower)] = flow.get((upper, lower), 0.0) + path.relevance
    return list(flow), np.array(list(flow.values()), dtype=float)
