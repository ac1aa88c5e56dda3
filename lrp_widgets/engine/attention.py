"""Attention explained with AttnLRP (Achtibat et al., ICML 2024) or CP-LRP (Ali et al., ICML 2022).

``nn.MultiheadAttention``, ``nn.TransformerEncoderLayer`` and ``nn.TransformerEncoder`` run fused
kernels that hooks cannot see into. The traced graph (``graph.py``) therefore traces them through a
functional re-expression of their forward (:func:`forward_of`), written with operations that have
rules (REFERENCE.md §7, §8):

==========================================  =================================================================
operation                                   relevance (AttnLRP)
==========================================  =================================================================
q, k, v projections ``F.linear``            epsilon: ``R_x = x * W^T (R / stabilize(z))`` (one ``F.linear`` for
                                            the three in self-attention: the same relevance)
``q @ k^T`` (:class:`AttentionScores`)      epsilon on the bilinear form, then uniform: half of each term
                                            ``q_i k_j R / z`` to each factor
``softmax``                                 linearised at its input: ``R_x = x * (R_s - s * sum(R_s))``
``weights @ v`` (:class:`AttentionValues`)  uniform, as ``q @ k^T`` (CP-LRP: ``Gated(signal=1)``, the weights
                                            held constant, ``R_v = v * weights^T (R / stabilize(z))``)
out projection (``nn.Linear``)              epsilon
residual ``x + f(x)``                       epsilon, split in proportion to the terms
LayerNorm                                   the std held constant (identity rule on the division), epsilon
                                            on ``(x - mean) / std * w + b``
GELU / ReLU                                 identity: relevance passes
==========================================  =================================================================

The scale ``1/sqrt(head_dim)`` is folded into the query projection (the same numbers), so no
operation moves relevance by a constant factor. A ``key_padding_mask`` is read as "true (or
nonzero) = masked": the masked scores are filled with a large negative number (:data:`MASKED`), so
they get weight 0 and no relevance. Other options (``attn_mask``, ``is_causal``, ``bias_k``,
``add_zero_attn``) are a clear :class:`~lrp_widgets.engine.errors.UnsupportedConfigurationError`
naming the module. ``nn.TransformerEncoder``'s nested-tensor fast path is not taken: padded positions
keep their computed values instead of zeros.

Composites: ``"attnlrp"`` and ``"cp_lrp"`` (:func:`~lrp_widgets.engine.composites.attnlrp`).
"""
from __future__ import annotations

import functools

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from . import operations
from .errors import UnsupportedConfigurationError

__all__ = ["forward_of", "attention_scores", "attention_values", "MASKED"]

#: the score of a masked key (finite, so the softmax rule's ``x * (R - s sum R)`` stays 0 there)
MASKED = -1e30


def attention_scores(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """``q @ k^T`` over the last two axes (one node of kind :class:`~.operations.AttentionScores`)."""
    return torch.matmul(q, k.transpose(-1, -2))


def attention_values(weights: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``weights @ v`` (one node of kind :class:`~.operations.AttentionValues`)."""
    return torch.matmul(weights, v)


# one node each in the traced graph, so composites can give them rules by kind
fx.wrap("attention_scores")
fx.wrap("attention_values")
operations.TABLE[attention_scores] = operations.AttentionScores
operations.TABLE[attention_values] = operations.AttentionValues


def _refuse(name: str, module: nn.Module, what: str):
    raise UnsupportedConfigurationError(
        f"module '{name}' (torch.nn.{type(module).__name__}) is called with {what}, which lrp_widgets cannot explain "
        "yet: attention is supported with key_padding_mask only (no attn_mask, is_causal, bias_k or "
        "add_zero_attn). Call it without that option, or explain the part of the model before it."
    )


def _projections(module: nn.MultiheadAttention):
    """The q, k, v weights and biases, with the scale folded into q (computed from parameters: constants)."""
    E = module.embed_dim
    scale = float(module.head_dim) ** -0.5
    if module._qkv_same_embed_dim:
        w = module.in_proj_weight
        weights = [w[:E], w[E:2 * E], w[2 * E:]]
    else:
        weights = [module.q_proj_weight, module.k_proj_weight, module.v_proj_weight]
    b = module.in_proj_bias
    biases = [None] * 3 if b is None else [b[:E], b[E:2 * E], b[2 * E:]]
    weights[0] = weights[0] * scale
    if biases[0] is not None:
        biases[0] = biases[0] * scale
    return weights, biases


def _fused_projection(module: nn.MultiheadAttention, x):
    """q, k, v of self-attention from one ``F.linear`` of ``x``, each (N, heads, T, head_dim).

    The epsilon rule stabilizes each output unit on its own, so on the stacked weights it sends ``x``
    the sum of what the three projections would send it (the same relevance, summed in another order),
    with one linear map instead of three in the forward and in the relevance pass, and no sum of three
    relevances at ``x``. The three are apart again by ``unbind``, which follows the data as gradients do.
    """
    (wq, wk, wv), (bq, bk, bv) = _projections(module)
    weight, bias = torch.cat([wq, wk, wv]), None if bq is None else torch.cat([bq, bk, bv])
    qkv = F.linear(x, weight, bias).unflatten(-1, (3, module.num_heads, module.head_dim)).permute(2, 0, 3, 1, 4)
    parts = qkv.unbind(0)  # a tuple under fx: indexed, not unpacked
    return parts[0], parts[1], parts[2]


def multihead_attention(module: nn.MultiheadAttention, name: str, query, key, value, key_padding_mask=None,
                        need_weights=True, attn_mask=None, average_attn_weights=True, is_causal=False):
    """``nn.MultiheadAttention.forward`` written with operations that have AttnLRP rules.

    Returns ``(output, weights)`` as the module does (``weights`` averaged over heads unless
    ``average_attn_weights=False``; None with ``need_weights=False``).
    """
    if attn_mask is not None:
        _refuse(name, module, "attn_mask")
    if is_causal:
        _refuse(name, module, "is_causal=True")
    if module.bias_k is not None or module.bias_v is not None:
        _refuse(name, module, "bias_k/bias_v")
    if module.add_zero_attn:
        _refuse(name, module, "add_zero_attn=True")
    self_attention = query is key and key is value
    if not module.batch_first:  # (T, N, E) -> (N, T, E)
        if self_attention:  # one tensor (one node) for the three
            query = key = value = query.transpose(0, 1)
        else:
            query, key, value = query.transpose(0, 1), key.transpose(0, 1), value.transpose(0, 1)
    heads, head_dim = module.num_heads, module.head_dim

    def split(t):  # (N, T, E) -> (N, heads, T, head_dim)
        return t.unflatten(-1, (heads, head_dim)).transpose(1, 2)

    if self_attention:  # one projection to q, k and v (see _fused_projection)
        q, k, v = _fused_projection(module, query)
    else:
        (wq, wk, wv), (bq, bk, bv) = _projections(module)
        q, k, v = split(F.linear(query, wq, bq)), split(F.linear(key, wk, bk)), split(F.linear(value, wv, bv))
    scores = attention_scores(q, k)
    if key_padding_mask is not None:
        scores = scores.masked_fill(key_padding_mask.to(torch.bool)[:, None, None, :], MASKED)
    weights = F.softmax(scores, dim=-1)
    if module.training and module.dropout > 0:
        weights = F.dropout(weights, p=module.dropout, training=True)
    out = module.out_proj(attention_values(weights, v).transpose(1, 2).flatten(2))
    if not module.batch_first:
        out = out.transpose(0, 1)
    if not need_weights:
        return out, None
    return out, (weights.mean(1) if average_attn_weights else weights)


def encoder_layer(layer: nn.TransformerEncoderLayer, name: str, src, src_mask=None, src_key_padding_mask=None,
                  is_causal=False):
    """``nn.TransformerEncoderLayer.forward`` (post-norm, or pre-norm with ``norm_first``), its attention
    through :func:`multihead_attention`."""
    if src_mask is not None:
        _refuse(name, layer, "src_mask")
    if is_causal:
        _refuse(name, layer, "is_causal=True")

    def attend(h):
        return layer.dropout1(layer.self_attn(h, h, h, key_padding_mask=src_key_padding_mask, need_weights=False)[0])

    def feed_forward(h):
        return layer.dropout2(layer.linear2(layer.dropout(layer.activation(layer.linear1(h)))))

    x = src
    if layer.norm_first:
        x = x + attend(layer.norm1(x))
        return x + feed_forward(layer.norm2(x))
    x = layer.norm1(x + attend(x))
    return layer.norm2(x + feed_forward(x))


def encoder(module: nn.TransformerEncoder, name: str, src, mask=None, src_key_padding_mask=None, is_causal=None):
    """``nn.TransformerEncoder.forward``: its layers in turn, then its norm (no nested-tensor fast path)."""
    if mask is not None:
        _refuse(name, module, "mask")
    if is_causal:
        _refuse(name, module, "is_causal=True")
    x = src
    for layer in module.layers:
        x = layer(x, src_key_padding_mask=src_key_padding_mask)
    return x if module.norm is None else module.norm(x)


_FORWARDS = ((nn.MultiheadAttention, multihead_attention), (nn.TransformerEncoderLayer, encoder_layer),
             (nn.TransformerEncoder, encoder))


def forward_of(module: nn.Module, name: str):
    """The functional re-expression of ``module``'s forward (``name``: its path, for error messages)."""
    for cls, forward in _FORWARDS:
        if isinstance(module, cls):
            return functools.partial(forward, module, name or type(module).__name__)
    raise TypeError(f"no functional re-expression for {type(module).__name__}")
