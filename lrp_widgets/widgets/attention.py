"""AttentionExplorer: AttnLRP, CP-LRP, gradient x input and attention rollout on a small transformer."""
from __future__ import annotations

from dataclasses import dataclass

import ipywidgets as widgets
import numpy as np
import torch

from .. import composites, explain
from ..engine.modes import evaluating
from ..plotting import relevance_map, to_numpy
from ..transformers import attention_maps, attention_rollout, encoder_layers
from .base import Explorer, State
from .common import check_model_and_data, class_name, log_slider, model_and_data, sample_slider
from .panels import HeatmapPanel, ImagePanel, PlotPanel, TextPanel

DEFAULT_MODEL = "shapes_vit"
#: rule control value -> composite name (None: not LRP)
RULES = {"AttnLRP": "attnlrp", "CP-LRP": "cp_lrp", "gradient x input": None, "attention rollout": None}


@dataclass(frozen=True)
class AttentionState(State):
    sample: int
    rule: str
    input: np.ndarray  # image (C, H, W) or token ids (1, T)
    heatmap: np.ndarray  # (H, W) per pixel, or (1, T) per token
    head_sums: np.ndarray  # (heads,) relevance through each head of the layer (AttnLRP/CP-LRP; else AttnLRP's)
    attention: np.ndarray  # (T, T) the head's attention weights (row: query)
    head_relevance: np.ndarray  # relevance through the head, to the tokens it reads: (1, T), or the patch grid
    target: int
    probability: float
    kept: float  # input relevance / explained logit


class AttentionExplorer(Explorer):
    """Explain a small transformer: which patches or tokens, which heads, and what the head attends to.

    Controls: ``sample``, ``rule`` (AttnLRP, CP-LRP, gradient x input, attention rollout), ``layer``,
    ``head``, ``epsilon`` (of the LRP rules). Panels: the input, its relevance (per pixel; per token
    for token ids), the relevance that passes through each head of the layer, the head's attention
    map and the relevance through that head per token. Attention is not explanation: compare the
    map with the relevance next to it.

    Parameters
    ----------
    model : nn.Module, optional
        A model with ``nn.TransformerEncoderLayer`` blocks; default the zoo's ``shapes_vit`` (then
        ``data`` defaults to its test set; ``zoo.load("planted_tokens_transformer")`` for tokens).
    data : optional
        Images (N, C, H, W) or token ids (N, T) (with ``.y``, ``.classes`` where known).
    """

    def __init__(self, model=None, data=None, n_samples: int = 32):
        super().__init__("Attention: AttnLRP, CP-LRP, gradient x input, rollout")
        model, data = model_and_data(model, data, DEFAULT_MODEL, "AttentionExplorer")
        data = data[:n_samples]
        check_model_and_data(model, data.x, None, "AttentionExplorer")
        self.model, self.data, self.x = model, data, data.x
        self.tokens = not self.x.is_floating_point()
        self.layers = encoder_layers(model)
        if not self.layers:
            raise ValueError("AttentionExplorer: the model has no nn.TransformerEncoderLayer")
        self.heads = self.layers[0][1].self_attn.num_heads
        self.out_proj = [f"{name}.self_attn.out_proj" for name, _ in self.layers]
        with evaluating(model):
            self.probabilities = torch.softmax(model(self.x), 1).detach()
            self.maps = attention_maps(model, self.x)  # (N, layers, heads, T, T)
        self.explanations = self.cache(128)
        controls = {
            "sample": sample_slider(len(self.x)),
            "rule": widgets.Dropdown(options=list(RULES), value="AttnLRP", description="rule"),
            "layer": widgets.IntSlider(value=len(self.layers) - 1, min=0, max=len(self.layers) - 1, description="layer"),
            "head": widgets.IntSlider(value=0, min=0, max=self.heads - 1, description="head"),
            "epsilon": log_slider(1e-6, -9, 0, 0.5, "epsilon"),
        }
        if self.tokens:
            words = self._words()
            self.input_panel = ImagePanel(["input"], title="tokens", cmap="tab20", caption=lambda input: " ".join(
                words(int(t)) for t in input[0] if t != 0))
        else:
            self.input_panel = ImagePanel(["input"], title="input")
        self.heatmap = HeatmapPanel(["heatmap"], title="relevance")
        self.bars = PlotPanel(["head_sums"], self._draw_heads, title="relevance through each head", figsize=(2.6, 2.3))
        self.map_panel = ImagePanel(["attention"], title="attention of the head", cmap="viridis", limits=(0, None))
        self.map_panel.limits = None
        self.head_panel = HeatmapPanel(["head_relevance"], title="via the head, to the tokens it reads")
        readout = TextPanel(["target", "probability", "kept", "rule"], self._readout)
        self.connect(controls, [[self.input_panel, self.heatmap, self.bars], [self.map_panel, self.head_panel]], readout)

    def _words(self):
        names = self.data.extra("vocabulary")
        return (lambda i: str(names[i])) if names is not None else str

    def _lrp(self, composite_name: str, epsilon: float, index: int):
        def run():
            composite = composites.NAMES[composite_name](epsilon=epsilon)
            result = explain(self.model, self.x[index : index + 1], composite=composite, layers=True)
            through = [result.layers[name][0] for name in self.out_proj]  # (T, E) at each out projection
            per_head = torch.stack([r.unflatten(-1, (self.heads, -1)).sum(-1) for r in through])  # (layers, T, heads)
            return result.relevance[0], per_head, int(result.target[0]), float(result.output[0, result.target[0]])

        return self.explanations.get((composite_name, epsilon, index), run)

    def _gradient_x_input(self, index: int, target: int):
        def run():
            with evaluating(self.model):
                if self.tokens:  # per token: gradient x input of the embedding output
                    embedding = next(m for m in self.model.modules() if isinstance(m, torch.nn.Embedding))
                    caught = []
                    # the embedding's output as a leaf (the zoo's parameters need no gradient)
                    handle = embedding.register_forward_hook(
                        lambda m, a, out: caught.append(out.detach().requires_grad_(True)) or caught[-1])
                    try:
                        with torch.enable_grad():
                            (gradient,) = torch.autograd.grad(self.model(self.x[index : index + 1])[0, target], caught)
                    finally:
                        handle.remove()
                    return (gradient * caught[0]).sum(-1)[0].detach()
                x = self.x[index : index + 1].clone().requires_grad_(True)
                with torch.enable_grad():
                    (gradient,) = torch.autograd.grad(self.model(x)[0, target], x)
                return (gradient * x)[0].detach()

        return self.explanations.get(("gradient x input", index, target), run)

    def _as_heatmap(self, relevance) -> np.ndarray:
        relevance = to_numpy(relevance)
        return relevance.reshape(1, -1) if self.tokens else relevance_map(relevance)

    def _rollout(self, index: int) -> np.ndarray:
        maps = self.maps[index : index + 1]
        if self.tokens:
            keep = self.x[index : index + 1] != 0
            rows = attention_rollout(maps, keep)[0][keep[0]].mean(0)  # mean over the tokens the head pools
            return (rows * keep[0]).numpy().reshape(1, -1)
        cls = attention_rollout(maps)[0, 0, 1:].numpy()  # the class token's row, over the patches
        side = int(round(np.sqrt(len(cls))))
        patch = self.x.shape[-1] // side
        return np.kron(cls.reshape(side, side), np.ones((patch, patch)))

    def _tokens_as_picture(self, values: np.ndarray) -> np.ndarray:
        """Per token: a strip (token ids), or the patches' grid (images; the class token left out)."""
        if self.tokens:
            return values.reshape(1, -1)
        side = int(round(np.sqrt(len(values) - 1)))
        return values[1:].reshape(side, side)

    def compute(self, values) -> AttentionState:
        index, rule, layer, head = values["sample"], values["rule"], values["layer"], values["head"]
        name = RULES[rule] or "attnlrp"
        relevance, per_head, target, logit = self._lrp(name, values["epsilon"], index)
        if rule == "gradient x input":
            shown = self._gradient_x_input(index, target)
            heatmap = self._as_heatmap(shown)
        elif rule == "attention rollout":
            shown, heatmap = None, self._rollout(index)
        else:
            shown, heatmap = relevance, self._as_heatmap(relevance)
        kept = float(shown.sum()) / logit if shown is not None and logit != 0 else float("nan")
        x = self.x[index]
        return AttentionState(
            sample=index, rule=rule,
            input=to_numpy(x).reshape(1, -1) if self.tokens else to_numpy(x),
            heatmap=heatmap,
            head_sums=per_head[layer].sum(0).numpy(),
            attention=self.maps[index, layer, head].numpy(),
            # relevance through the head at each query, passed on to the tokens it reads in proportion to
            # its attention (CP-LRP's split of the value path): in the last layer only the class token
            # queries, so per-query relevance alone would leave the patches blank
            head_relevance=self._tokens_as_picture(per_head[layer, :, head].numpy() @ self.maps[index, layer, head].numpy()),
            target=target, probability=float(self.probabilities[index, target]), kept=kept,
        )

    def _draw_heads(self, ax, head_sums):
        ax.clear()
        ax.bar(np.arange(len(head_sums)), head_sums, color=np.where(head_sums >= 0, "tab:red", "tab:blue"))
        ax.axhline(0, color="k", lw=0.5)
        ax.set_xticks(np.arange(len(head_sums)))
        ax.set_xlabel("head", fontsize=8)
        ax.tick_params(labelsize=7)

    def _readout(self, target, probability, kept, rule):
        return {
            "prediction": f"{class_name(self.data, target)} ({probability:.0%})",
            "rule": rule,
            "input relevance / logit": "n/a (a map, not a decomposition)" if np.isnan(kept) else f"{kept:.1%}",
        }
