"""The arithmetic of LRP through LSTM and GRU layers: the kept forward quantities and the backward.

Formulas: :mod:`lrp_widgets.engine.recurrent` (REFERENCE.md section 6). Everything here is time
first, ``(T, N, .)``. Three choices keep the cost near a forward pass:

* the forward quantities come from the hidden sequences torch's fused kernel computed, so the
  gates of all steps are one matrix product per gate on ``[x_t, h_{t-1}, 1]``, not a loop (only
  LSTM's cell state ``c_t``, which torch does not return, takes one element-wise op per step);
  the LSTM's output gate, which takes no relevance, is not recomputed;
* ``tanh(p)`` is computed as ``2 sigmoid(2p) - 1`` (for the LSTM inside the gates' one sigmoid, its
  g rows doubled, which is exact): torch's CPU tanh costs ~3.5x its sigmoid. In float32 this moves
  ``g`` by up to ~1e-7 absolute, the size of the rounding already in the recomputed ``c_t``;
* every epsilon split is a fixed per-unit factor once the forward is known
  (``R_part = part / stab(z) * R``), so the factors are computed for all steps at once and the
  backward loop is one (N, H) x (H, H) product and two element-wise ops per step, written into
  preallocated buffers through per-step views made by ``unbind``; what does not feed the next
  step (the hidden-state relevance of the LSTM) is computed after the loop, for all steps at once.

What bounds the cost (benchmarks/rnn.py): the products above are the forward's own
multiply-adds again (3/4 of them for the LSTM); the rest is memory-bound element-wise passes over
(T, N, H) and, per step, the fixed cost of launching a few small ops and making their views.
"""
from __future__ import annotations

import math

import torch
from torch import nn


def parameters(module: nn.Module, layer: int):
    """``(weight_ih, weight_hh, bias_ih, bias_hh)`` of one layer, detached (biases None without bias)."""
    weight_ih = getattr(module, f"weight_ih_l{layer}").detach()
    weight_hh = getattr(module, f"weight_hh_l{layer}").detach()
    bias_ih = getattr(module, f"bias_ih_l{layer}").detach() if module.bias else None
    bias_hh = getattr(module, f"bias_hh_l{layer}").detach() if module.bias else None
    return weight_ih, weight_hh, bias_ih, bias_hh


def _affine(x, weight, bias=None):
    """``x W^T (+ b)`` over all steps in one matrix product: (T, N, F) -> (T, N, G)."""
    flat = x.reshape(-1, x.shape[-1])
    out = flat @ weight.T if bias is None else torch.addmm(bias, flat, weight.T)
    return out.reshape(*x.shape[:-1], -1)


def _factors(z, epsilon, out):
    """``(1 / stab(z), share kept by the stabilizer)`` per unit, ``stab(z) = z + eps sign(z)``, sign(0) = +1.

    With eps = 0 a zero ``z`` passes nothing (0/0 := 0) and keeps all its relevance. Written into
    ``out`` (2, *z.shape); the callers update both in place.
    """
    inverse, keep = out.unbind()
    if epsilon:
        # copysign takes -0.0 as negative, but a z of -0.0 is a sum of signed zeros only, so every
        # share divided by it is a (signed) zero whichever sign eps takes there
        torch.copysign(z.new_tensor(epsilon), z, out=keep)
        torch.add(z, keep, out=inverse).reciprocal_()
        keep.mul_(inverse)
        return inverse, keep
    torch.eq(z, 0, out=keep)
    torch.reciprocal(z, out=inverse).masked_fill_(keep.bool(), 0)
    return inverse, keep


def hidden_sequences(module, x, h0, c0, top):
    """Each layer's hidden sequence (T, N, H): the lower layers by torch's kernel, the top given."""
    sequences, inputs = [], x
    lstm = isinstance(module, nn.LSTM)
    for layer in range(module.num_layers - 1):
        weights = [w for w in parameters(module, layer) if w is not None]
        if lstm:
            inputs = torch.lstm(inputs, (h0[layer:layer + 1], c0[layer:layer + 1]), weights, module.bias, 1, 0.0, False, False, False)[0]
        else:
            inputs = torch.gru(inputs, h0[layer:layer + 1], weights, module.bias, 1, 0.0, False, False, False)[0]
        sequences.append(inputs)
    return sequences + [top]


def lstm_trace(x, h, h0, c0, weights, epsilon):
    """What the LSTM rule needs for one layer: ``x`` its input, ``h`` its hidden sequence (T, N, H)."""
    weight_ih, weight_hh, bias_ih, bias_hh = weights
    steps, batch, H = h.shape
    unit = (steps, batch, H)
    bias = bias_ih is not None
    # G: the gates i, f, then i g, pre_g, c_1 .. c_T (the backward reuses it as scratch); factors: 1 / stab
    # and the stabilizers' share of pre_g and c
    joined, G, factors, pair = _carve(x, (steps, batch, x.shape[2] + H + bias), (5, *unit), (2, 2, *unit), (2, *unit))
    # [x_t, h_{t-1}, 1] @ [W_ih, W_hh, b]^T, one product per gate into its own contiguous block, for the
    # gates i, f and g only (the gate o takes no relevance). The g rows are doubled (exact in floating
    # point), so that a sigmoid gives tanh(p) = 2 sigmoid(2p) - 1: torch's tanh costs ~3.5x its sigmoid.
    _joined(x, h, h0, joined)
    parts = [weight_ih[:3 * H], weight_hh[:3 * H]]
    if bias:
        parts.append((bias_ih[:3 * H] + bias_hh[:3 * H])[:, None])
    weight = torch.cat(parts, dim=1)
    weight[2 * H:].mul_(2)
    i, f, ig, pre_g, c = G.unbind()
    _gates(joined.view(steps * batch, -1), weight, (i, f, pre_g))
    G[:2].sigmoid_()
    torch.sigmoid(pre_g, out=ig).mul_(2).sub_(1).mul_(i)  # i tanh(pre_g)
    pre_g.mul_(0.5)
    ig_steps, f_steps, c_steps = ig.unbind(), f.unbind(), c.unbind()
    torch.addcmul(ig_steps[0], f_steps[0], c0, out=c_steps[0])
    for t in range(1, steps):  # torch returns c_T only
        torch.addcmul(ig_steps[t], f_steps[t], c_steps[t - 1], out=c_steps[t])
    inverse, keep = _factors(G[3:], epsilon, factors)  # of pre_g and c at once
    (inv_g, inv_c), (keep_g, keep_c) = inverse.unbind(), keep.unbind()
    # per unit of R_c(t): [s_g = R_g / stab(pre_g), the share of R_c(t-1)], as (2, T, N, H) so that the
    # backward loop takes both in one multiplication
    to_g = ig.mul_(inv_c)  # R_g = i g / stab(c) R_c (signal-take-all: the gate i gets none)
    torch.mul(to_g, inv_g, out=pair[0])
    torch.mul(f[0], c0, out=pair[1, 0])
    torch.mul(f[1:], c[:-1], out=pair[1, 1:])
    pair[1].mul_(inv_c)  # R_c(t-1) = f c_{t-1} / stab(c_t) R_c(t)
    return {
        "x": x, "h": h, "h0": h0,  # h_{t-1}: h[t - 1], and h0 at t = 0
        "pair": pair,
        "keep": keep_c.addcmul_(to_g, keep_g),  # stabilizers' share, per unit of R_c(t)
        "scratch": G,  # dead once the trace is made: the backward's buffers
    }


def _carve(like, *shapes):
    """Views of one new buffer, one per shape: a trace's many temporaries in one allocation.

    Fewer, larger allocations are ones the allocator keeps for reuse: with a dozen separate buffers,
    glibc gave the memory back after every explanation and the next one page-faulted it in again
    (~1000 faults, ~2.4 ms of a ~9 ms LSTM explanation, measured by switching glibc's trimming).
    """
    sizes = [-(-math.prod(shape) // 16) * 16 for shape in shapes]  # each view 64-byte aligned (float32)
    buffer = like.new_empty(sum(sizes))
    views, start = [], 0
    for shape, size in zip(shapes, sizes):
        views.append(buffer[start:start + math.prod(shape)].view(shape))
        start += size
    return views


def _gates(flat, weight, blocks):
    """``flat @ weight^T`` by blocks of H rows, each into its own contiguous (T, N, H) block of ``blocks``."""
    H = blocks[0].shape[-1]
    for gate, block in enumerate(blocks):
        torch.mm(flat, weight[gate * H:(gate + 1) * H].T, out=block.view(-1, H))


def _joined(x, h, h0, out):
    """``[x_t, h_{t-1}, 1]`` into ``out`` (T, N, F + H + 1; no column of ones without biases): the gates' operand."""
    F, H = x.shape[2], h.shape[2]
    out[..., :F] = x
    out[0, :, F:F + H] = h0
    out[1:, :, F:F + H] = h[:-1]
    if out.shape[2] > F + H:
        out[..., F + H] = 1
    return out


def gru_trace(x, h, h0, weights, epsilon):
    """What the GRU rule needs for one layer."""
    weight_ih, weight_hh, bias_ih, bias_hh = weights
    steps, batch, H = h.shape
    F = x.shape[2]
    unit = (steps, batch, H)
    bias = bias_ih is not None
    # G: r, z (pre-activations, then gates), W_in x + b_in (then pre_n), h_t, W_hn h + b_hn (then R_n per
    # unit of R_h(t)), n (then s_n per unit of R_h(t))
    joined, G, factors, shares = _carve(x, (steps, batch, F + H + bias), (6, *unit), (2, 2, *unit), (steps, 2, batch, H))
    flat, h_prev = _joined(x, h, h0, joined).view(steps * batch, -1), joined[..., F:F + H]
    parts = [weight_ih[:2 * H], weight_hh[:2 * H]] + ([(bias_ih[:2 * H] + bias_hh[:2 * H])[:, None]] if bias else [])
    _gates(flat, torch.cat(parts, dim=1), G[:2])
    if bias:
        torch.addmm(bias_ih[2 * H:], flat[:, :F], weight_ih[2 * H:].T, out=G[2].view(-1, H))
        torch.mm(flat[:, F:], torch.cat([weight_hh[2 * H:], bias_hh[2 * H:, None]], dim=1).T, out=G[4].view(-1, H))
    else:
        torch.mm(flat[:, :F], weight_ih[2 * H:].T, out=G[2].view(-1, H))
        torch.mm(flat[:, F:], weight_hh[2 * H:].T, out=G[4].view(-1, H))
    r, z, pre_n, h_now, to_n, n = G.unbind()
    G[:2].sigmoid_()
    pre_n.addcmul_(r, to_n)
    torch.mul(pre_n, 2, out=n).sigmoid_().mul_(2).sub_(1)  # tanh(p) = 2 sigmoid(2p) - 1: torch's tanh is ~3.5x slower
    torch.lerp(n, h_prev, z, out=h_now)  # (1 - z) n + z h_{t-1}, the denominator of the first split
    inverse, keep = _factors(G[2:4], epsilon, factors)  # of pre_n and h_t at once
    (inv_n, inv_h), (keep_n, keep_h) = inverse.unbind(), keep.unbind()
    torch.mul(z, -1, out=to_n).add_(1).mul_(n).mul_(inv_h)  # R_n per unit of R_h(t)
    to_pre_n = torch.mul(to_n, inv_n, out=n)
    # per step, [r s_n, R_h(t-1) direct share] per unit of R_h(t): one multiplication in the backward loop
    torch.mul(r, to_pre_n, out=shares[:, 0])  # r s_n: the gate scales the signal W_hn h + b_hn, which takes all
    torch.mul(z, inv_h, out=shares[:, 1])  # h_{t-1} z / stab(h_t) R_h(t)
    return {
        "x": x, "h": h, "h0": h0,  # h_{t-1}: h[t - 1], and h0 at t = 0
        "shares": shares,
        "to_pre_n": to_pre_n,  # s_n per unit of R_h(t)
        "keep": keep_h.addcmul_(to_n, keep_n),
    }


def lstm_backward(trace, weights, R_seq, R_h_final, R_c_final):
    """One LSTM layer backwards. Returns R_x, hidden and cell relevance (T, N, H), (R_h0, R_c0), kept (N,)."""
    weight_ih, weight_hh, bias_ih, bias_hh = weights
    H = weight_hh.shape[1]
    W_ig, W_hg = weight_ih[2 * H:3 * H], weight_hh[2 * H:3 * H]
    pair, h = trace["pair"], trace["h"]
    last = R_seq.shape[0] - 1
    # P[:, t] = [s_g(t), R(t-1) + f c_{t-1} / stab(c_t) R_c(t)]: R_c(t-1) is P[1, t] plus what comes
    # back through the gate g, h_{t-1} (s_g(t) W_hg); three ops a step, all factors from the trace
    P, back = trace["scratch"][:2], trace["scratch"][2]  # the trace's buffers, no new allocation
    P[0].zero_()
    P[1, 0].zero_()
    P[1, 1:] = R_seq[:-1]
    cell = R_seq.new_empty(R_seq.shape)  # time first, whatever R_seq's layout
    hidden_last = R_seq[last] + R_h_final
    torch.add(hidden_last, R_c_final, out=cell[last])  # the gate o takes none
    # per-step views made in one call each (indexing in the loop costs as much as the arithmetic)
    P_steps, pair_steps, s_g_steps, carry_steps = P.unbind(1), pair.unbind(1), P[0].unbind(), P[1].unbind()
    cell_steps, back_steps, h_steps = cell.unbind(), back.unbind(), h.unbind()
    for t in range(last, 0, -1):
        P_steps[t].addcmul_(pair_steps[t], cell_steps[t])
        torch.mm(s_g_steps[t], W_hg, out=back_steps[t])
        torch.addcmul(carry_steps[t], h_steps[t - 1], back_steps[t], out=cell_steps[t - 1])
    P_steps[0].addcmul_(pair_steps[0], cell_steps[0])
    torch.mm(s_g_steps[0], W_hg, out=back_steps[0])
    hidden = torch.empty_like(cell)
    torch.addcmul(R_seq[:-1], h[:-1], back[1:], out=hidden[:-1])  # all that reaches h_t
    hidden[last] = hidden_last
    first = (trace["h0"] * back[0], P[1, 0])
    kept = trace["keep"].mul_(cell).sum(dim=(0, 2))  # the trace is used once
    s_g = P[0]
    if bias_ih is None:
        R_x = trace["x"] * _affine(s_g, W_ig.T)
    else:  # s_g W_ig and s_g b_g in one product
        bias = (bias_ih[2 * H:3 * H] + bias_hh[2 * H:3 * H])[:, None]
        mapped = _affine(s_g, torch.cat([W_ig, bias], dim=1).T)
        R_x = trace["x"] * mapped[..., :-1]
        kept = kept + mapped[..., -1].sum(dim=0)
    return R_x, hidden, cell, first, kept


def gru_backward(trace, weights, R_seq, R_h_final):
    """One GRU layer backwards. Returns R_x, hidden relevance (T, N, H), (R_h0,), kept (N,)."""
    weight_ih, weight_hh, bias_ih, bias_hh = weights
    H = weight_hh.shape[1]
    W_in, W_hn = weight_ih[2 * H:3 * H], weight_hh[2 * H:3 * H]
    shares = trace["shares"]
    last = R_seq.shape[0] - 1
    hidden = R_seq.new_empty(R_seq.shape)
    pair, back = R_seq.new_empty(2, *R_seq.shape[1:]), R_seq.new_empty(R_seq.shape[1:])
    reset_part, direct_part = pair.unbind()
    R_steps, h_steps, share_steps, hidden_steps = R_seq.unbind(), trace["h"].unbind(), shares.unbind(), hidden.unbind()
    torch.add(R_steps[last], R_h_final, out=hidden_steps[last])
    for t in range(last, 0, -1):  # three ops a step
        torch.mul(share_steps[t], hidden_steps[t], out=pair)
        torch.addmm(direct_part, reset_part, W_hn, out=back)
        torch.addcmul(R_steps[t - 1], h_steps[t - 1], back, out=hidden_steps[t - 1])
    torch.mul(share_steps[0], hidden_steps[0], out=pair)
    first = (trace["h0"] * torch.addmm(direct_part, reset_part, W_hn),)
    s_n = trace["to_pre_n"].mul_(hidden)  # the trace is used once
    kept = trace["keep"].mul_(hidden).sum(dim=(0, 2))
    if bias_ih is None:
        R_x = trace["x"] * _affine(s_n, W_in.T)
    else:  # s_n W_in and s_n b_in in one product
        mapped = _affine(s_n, torch.cat([W_in, bias_ih[2 * H:, None]], dim=1).T)
        R_x = trace["x"] * mapped[..., :-1]
        kept = kept + mapped[..., -1].sum(dim=0) + (shares[:, 0] * hidden).sum(dim=0) @ bias_hh[2 * H:]
    return R_x, hidden, None, first, kept


def traces(module, x, hx, top, epsilon):
    """Per layer, the trace of :func:`lstm_trace` / :func:`gru_trace`; ``x`` and ``top`` time first."""
    layers, batch, H = module.num_layers, x.shape[1], module.hidden_size
    lstm = isinstance(module, nn.LSTM)
    if hx is None:
        h0 = c0 = x.new_zeros(layers, batch, H)
    elif lstm:
        h0, c0 = (state.detach().to(x.dtype) for state in hx)
    else:
        h0, c0 = hx.detach().to(x.dtype), None
    sequences = hidden_sequences(module, x, h0, c0, top)
    result, inputs = [], x
    for layer in range(layers):
        weights = parameters(module, layer)
        if lstm:
            result.append(lstm_trace(inputs, sequences[layer], h0[layer], c0[layer], weights, epsilon))
        else:
            result.append(gru_trace(inputs, sequences[layer], h0[layer], weights, epsilon))
        inputs = sequences[layer]
    return result


def relevance(module, layer_traces, R_out, R_states):
    """Relevance through every layer, top down; ``R_out`` (T, N, H), ``R_states`` (h_n[, c_n]).

    Returns the input relevance (T, N, F), per-layer hidden (and cell) relevance (layers, T, N, H),
    the initial states' relevance (layers, N, H) each, and the kept relevance (N,).
    """
    lstm = isinstance(module, nn.LSTM)
    R_seq, kept = R_out, 0
    hidden, cell, initial = [], [], [[], []]
    for layer in range(module.num_layers - 1, -1, -1):
        weights = parameters(module, layer)
        if lstm:
            R_seq, h_rel, c_rel, first, leak = lstm_backward(
                layer_traces[layer], weights, R_seq, R_states[0][layer], R_states[1][layer])
            cell.append(c_rel)
        else:
            R_seq, h_rel, _, first, leak = gru_backward(layer_traces[layer], weights, R_seq, R_states[0][layer])
        hidden.append(h_rel)
        kept = kept + leak
        for index, state in enumerate(first):
            initial[index].append(state)
    def stack(tensors):  # collected top down; layers are numbered bottom up
        return tensors[0][None] if len(tensors) == 1 else torch.stack(tensors[::-1])

    hidden = stack(hidden)
    cell = stack(cell) if lstm else None
    initial = tuple(stack(states) for states in initial if states)
    return R_seq, hidden, cell, initial, kept
