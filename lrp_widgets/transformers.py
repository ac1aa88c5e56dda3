"""Small transformers that ``explain`` can take apart (AttnLRP, :mod:`lrp_widgets.engine.attention`).

The ViT parts are modules of ours because a parameter used in ``forward`` (a class token
concatenated, a positional embedding added) is arithmetic a hook cannot see; as modules they are
traced through, and their operations get rules: the class token and the positional embedding are
constants (they absorb their share of the relevance, like a bias), the patches carry the rest.

* :class:`PatchEmbedding`: an ``nn.Conv2d`` with stride = kernel = patch size, then the patches as tokens.
* :class:`ClassToken`: a learned token put first.
* :class:`PositionalEmbedding`: a learned vector added to each position.
* :class:`TinyViT`: the three, ``nn.TransformerEncoderLayer`` blocks (pre-norm, GELU), a LayerNorm and a
  Linear head on the class token.
* :class:`TokenTransformer`: ``nn.Embedding`` (token 0 is padding, masked in attention), positional
  embedding, encoder blocks, a Linear head on the mean of the tokens that are not padding.
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["PatchEmbedding", "ClassToken", "PositionalEmbedding", "TinyViT", "TokenTransformer"]


class PatchEmbedding(nn.Module):
    """Image (N, C, H, W) -> tokens (N, H/patch * W/patch, dim), by a Conv2d with stride = patch size."""

    def __init__(self, in_channels: int, dim: int, patch: int):
        super().__init__()
        self.patch = patch
        self.conv = nn.Conv2d(in_channels, dim, kernel_size=patch, stride=patch)

    def forward(self, x):
        return self.conv(x).flatten(2).transpose(1, 2)


class ClassToken(nn.Module):
    """Puts a learned token before the others: (N, T, dim) -> (N, T + 1, dim)."""

    def __init__(self, dim: int):
        super().__init__()
        self.token = nn.Parameter(torch.zeros(1, 1, dim))
        nn.init.normal_(self.token, std=0.02)

    def forward(self, x):
        return torch.cat([self.token.expand(x.shape[0], -1, -1), x], dim=1)


class PositionalEmbedding(nn.Module):
    """Adds a learned vector per position: (N, T, dim) -> (N, T, dim), T <= ``length``."""

    def __init__(self, length: int, dim: int):
        super().__init__()
        self.embedding = nn.Parameter(torch.zeros(1, length, dim))
        nn.init.normal_(self.embedding, std=0.02)

    def forward(self, x):
        return x + self.embedding[:, : x.shape[1]]


def _blocks(dim: int, heads: int, depth: int, hidden: int) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=hidden, dropout=0.0, activation="gelu",
                                       batch_first=True, norm_first=True)
    return nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)


class TinyViT(nn.Module):
    """A vision transformer small enough to train on a CPU in seconds.

    Parameters
    ----------
    image_size, patch : int
        Square images of ``image_size`` pixels cut into ``patch`` x ``patch`` patches.
    in_channels, n_classes, dim, heads, depth, hidden : int
        Channels of the image, classes, token width, attention heads, encoder blocks, MLP width.
    """

    def __init__(self, image_size: int = 32, patch: int = 8, in_channels: int = 3, n_classes: int = 10,
                 dim: int = 32, heads: int = 2, depth: int = 2, hidden: int = 64):
        super().__init__()
        if image_size % patch:
            raise ValueError(f"image_size ({image_size}) must be a multiple of patch ({patch})")
        self.patch = patch
        self.patches = PatchEmbedding(in_channels, dim, patch)
        self.class_token = ClassToken(dim)
        self.position = PositionalEmbedding((image_size // patch) ** 2 + 1, dim)
        self.encoder = _blocks(dim, heads, depth, hidden)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, n_classes)

    def forward(self, x):
        h = self.encoder(self.position(self.class_token(self.patches(x))))
        return self.head(self.norm(h)[:, 0])


class TokenTransformer(nn.Module):
    """A text classifier on token ids (N, T); id 0 is padding (masked in attention and in the mean)."""

    def __init__(self, vocabulary: int = 32, length: int = 16, n_classes: int = 2, dim: int = 16, heads: int = 2,
                 depth: int = 2, hidden: int = 32):
        super().__init__()
        self.embedding = nn.Embedding(vocabulary, dim)
        self.position = PositionalEmbedding(length, dim)
        self.encoder = _blocks(dim, heads, depth, hidden)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, n_classes)

    def forward(self, tokens):
        padding = tokens == 0
        h = self.encoder(self.position(self.embedding(tokens)), src_key_padding_mask=padding)
        keep = (~padding).unsqueeze(-1).to(h.dtype)
        pooled = (self.norm(h) * keep).sum(1) / keep.sum(1)
        return self.head(pooled)


# -- what the attention does (for the explorer and notebook 11) ------------------------------------
def encoder_layers(model: nn.Module) -> list:
    """``(name, layer)`` of every ``nn.TransformerEncoderLayer`` in ``model``, in module order."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, nn.TransformerEncoderLayer)]


@torch.no_grad()
def attention_maps(model: nn.Module, x) -> torch.Tensor:
    """The attention weights of every encoder layer and head for ``x``: (N, layers, heads, T, T).

    Each layer's input is caught on the way (a pre-hook, removed afterwards) and its attention is
    computed again with ``need_weights=True``; the model is not changed.
    """
    layers = encoder_layers(model)
    if not layers:
        raise ValueError(f"{type(model).__name__} has no nn.TransformerEncoderLayer: no attention maps to show")
    seen: list = []
    handles = [layer.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append((module, args[0] if args else kwargs["src"],
                                                  kwargs.get("src_key_padding_mask"))), with_kwargs=True)
        for _, layer in layers]
    was_training = model.training
    try:
        model.eval()
        model(x)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    maps = []
    for layer, h, mask in seen:
        h = layer.norm1(h) if layer.norm_first else h
        _, weights = layer.self_attn(h, h, h, key_padding_mask=mask, need_weights=True, average_attn_weights=False)
        maps.append(weights)
    return torch.stack(maps, 1)


def attention_rollout(maps: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
    """Attention rollout (Abnar & Zuidema 2020): ``prod_l (0.5 A_l + 0.5 I)`` with ``A_l`` the heads'
    mean, rows renormalised; maps (N, layers, heads, T, T) -> (N, T, T), row i: how much token i
    draws on each input token. ``keep`` (N, T) bool: tokens that count (padding excluded)."""
    n, _, _, t, _ = maps.shape
    eye = torch.eye(t, dtype=maps.dtype)
    rollout = eye.expand(n, t, t)
    for layer in range(maps.shape[1]):
        a = 0.5 * maps[:, layer].mean(1) + 0.5 * eye
        if keep is not None:
            a = a * keep[:, None, :].to(a.dtype)
        rollout = (a / a.sum(-1, keepdim=True)) @ rollout
    return rollout
