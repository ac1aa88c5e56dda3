"""An independent AttnLRP reference built from LXT's explicit functional rules (``lxt.explicit.functional``).

LXT's functions compute relevance in their backward pass: running a model written with them and
calling ``output.backward(R)`` leaves the input's relevance in ``x.grad``. Here a stack of
``nn.TransformerEncoderLayer`` (batch_first, GELU or ReLU, post- or pre-norm) is written with
``linear_epsilon``, ``matmul``, ``softmax``, ``add2`` and ``layer_norm``; reshapes and indexing are
autograd's own (relevance follows the data). LXT stabilises ``z + epsilon`` (the engine:
``z + epsilon * sign(z)``), so comparisons use a tiny epsilon. Never imported by the package.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from lxt.explicit import functional as lf


class _Identity(torch.autograd.Function):
    """An element-wise nonlinearity with the identity rule: relevance passes unchanged."""

    @staticmethod
    def forward(ctx, x, function):
        return function(x)

    @staticmethod
    def backward(ctx, R):
        return R, None


def _activation(layer, h):
    function = layer.activation
    return _Identity.apply(h, function if callable(function) else F.gelu)


def _layer_norm(norm, h, epsilon):
    return lf.layer_norm_grad_fn.apply(h, norm.weight, norm.bias, norm.eps, epsilon)


def attention(mha, h, epsilon):
    """``mha(h, h, h)[0]`` (batch_first) with LXT's rules; the scale folded into the query projection."""
    E, heads, d = mha.embed_dim, mha.num_heads, mha.head_dim
    w, b = mha.in_proj_weight, mha.in_proj_bias
    scale = d ** -0.5
    q = lf.linear_epsilon(h, w[:E] * scale, b[:E] * scale, epsilon)
    k = lf.linear_epsilon(h, w[E:2 * E], b[E:2 * E], epsilon)
    v = lf.linear_epsilon(h, w[2 * E:], b[2 * E:], epsilon)
    n, t = h.shape[:2]
    q, k, v = (a.reshape(n, t, heads, d).transpose(1, 2) for a in (q, k, v))
    scores = lf.matmul(q, k.transpose(-1, -2), False, epsilon)
    weights = lf.softmax(scores, -1)
    out = lf.matmul(weights, v, False, epsilon).transpose(1, 2).reshape(n, t, E)
    return lf.linear_epsilon(out, mha.out_proj.weight, mha.out_proj.bias, epsilon)


def encoder_layer(layer, h, epsilon):
    def feed_forward(a):
        a = _activation(layer, lf.linear_epsilon(a, layer.linear1.weight, layer.linear1.bias, epsilon))
        return lf.linear_epsilon(a, layer.linear2.weight, layer.linear2.bias, epsilon)

    if layer.norm_first:
        h = lf.add2(h, attention(layer.self_attn, _layer_norm(layer.norm1, h, epsilon), epsilon), False, epsilon)
        return lf.add2(h, feed_forward(_layer_norm(layer.norm2, h, epsilon)), False, epsilon)
    h = _layer_norm(layer.norm1, lf.add2(h, attention(layer.self_attn, h, epsilon), False, epsilon), epsilon)
    return _layer_norm(layer.norm2, lf.add2(h, feed_forward(h), False, epsilon), epsilon)


def relevance(model, x, target, epsilon):
    """Input relevance of ``model`` (``.layers``: encoder layers, ``.head``: Linear on token 0) for ``target``."""
    x = x.detach().clone().requires_grad_(True)
    h = x
    for layer in model.layers:
        h = encoder_layer(layer, h, epsilon)
    out = lf.linear_epsilon(h[:, 0], model.head.weight, model.head.bias, epsilon)
    start = torch.zeros_like(out)
    rows = torch.arange(len(out))
    start[rows, target] = out[rows, target].detach()
    out.backward(start)
    return x.grad, out.detach()
