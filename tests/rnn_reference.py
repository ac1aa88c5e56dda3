"""Independent slow reference for LRP through LSTM and GRU cells (REFERENCE.md section 6), float64.

Never imported by the package, and written without the engine's code paths: numpy, one sample
at a time, one time step at a time. Every linear map of a step becomes an explicit contribution
matrix ``Z[j, k]`` (input j's share of output unit k, biases as extra rows) and relevance moves by
the epsilon rule written over it: ``R_j = sum_k Z[j, k] / stab(sum_j Z[j, k]) R_k``. Gates get
no relevance (signal-take-all). Bias rows and stabilizers are what "leaks"; the reference counts
that share itself.
"""
from __future__ import annotations

import numpy as np


def _sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def _stab(z, eps):
    return z + eps * np.where(z >= 0, 1.0, -1.0)


def epsilon_split(Z, R, eps):
    """``R_j = sum_k Z[j, k] / stab(z_k) R_k`` with ``z_k = sum_j Z[j, k]``, loops over k.

    Returns the relevance of every row j and what stays behind (the stabilizer's share).
    With eps = 0 a unit with z_k = 0 passes nothing and keeps its R_k.
    """
    rows, units = Z.shape
    out = np.zeros(rows)
    kept = 0.0
    for k in range(units):
        z = Z[:, k].sum()
        if eps == 0 and z == 0:
            kept += R[k]
            continue
        share = Z[:, k] * (R[k] / _stab(z, eps))
        out += share
        kept += R[k] - share.sum()
    return out, kept


def _params(module, layer):
    p = {name: value.detach().double().numpy() for name, value in module.named_parameters()}
    H = module.hidden_size
    gates = 4 if module.mode == "LSTM" else 3
    w_ih, w_hh = p[f"weight_ih_l{layer}"], p[f"weight_hh_l{layer}"]
    b_ih = p.get(f"bias_ih_l{layer}", np.zeros(gates * H))
    b_hh = p.get(f"bias_hh_l{layer}", np.zeros(gates * H))
    return w_ih, w_hh, b_ih, b_hh


def forward(module, x):
    """Per layer, the per-step quantities of one sample ``x`` (T, F); zero initial states."""
    H, lstm = module.hidden_size, module.mode == "LSTM"
    layers, inputs = [], x
    for layer in range(module.num_layers):
        w_ih, w_hh, b_ih, b_hh = _params(module, layer)
        h, c = np.zeros(H), np.zeros(H)
        steps = []
        for t in range(inputs.shape[0]):
            a = inputs[t]
            if lstm:
                pre = w_ih @ a + b_ih + w_hh @ h + b_hh
                i, f, g, o = _sigmoid(pre[:H]), _sigmoid(pre[H:2 * H]), np.tanh(pre[2 * H:3 * H]), _sigmoid(pre[3 * H:])
                c_new = f * c + i * g
                h_new = o * np.tanh(c_new)
                steps.append(dict(x=a, h_prev=h, c_prev=c, i=i, f=f, g=g, o=o, c=c_new, h=h_new))
                c = c_new
            else:
                gx, gh = w_ih @ a + b_ih, w_hh @ h + b_hh
                r, z = _sigmoid(gx[:H] + gh[:H]), _sigmoid(gx[H:2 * H] + gh[H:2 * H])
                n = np.tanh(gx[2 * H:] + r * gh[2 * H:])
                h_new = (1 - z) * n + z * h
                steps.append(dict(x=a, h_prev=h, r=r, z=z, n=n, h=h_new))
            h = h_new
        layers.append(steps)
        inputs = np.stack([s["h"] for s in steps])
    return layers


def lstm_step(module, layer, step, R_h, R_c_next, eps):
    """One LSTM step backwards: returns R_x, R_h_prev, R_c_prev, R_c (of this step), leaked."""
    H = module.hidden_size
    w_ih, w_hh, b_ih, b_hh = _params(module, layer)
    R_c = R_h + R_c_next  # o gates h = o tanh(c): the signal tanh(c) takes all, tanh passes
    # c = f c_prev + i g: two contributions per unit (rows: c_prev units, g units)
    Z = np.zeros((2 * H, H))
    for k in range(H):
        Z[k, k] = step["f"][k] * step["c_prev"][k]
        Z[H + k, k] = step["i"][k] * step["g"][k]
    R_rows, leaked = epsilon_split(Z, R_c, eps)
    R_c_prev, R_g = R_rows[:H], R_rows[H:]
    # pre_g = W_ig x + W_hg h_prev + (b_ig + b_hg): rows x features, h_prev units, one bias row
    F = step["x"].shape[0]
    Zg = np.zeros((F + H + 1, H))
    for k in range(H):
        for j in range(F):
            Zg[j, k] = w_ih[2 * H + k, j] * step["x"][j]
        for m in range(H):
            Zg[F + m, k] = w_hh[2 * H + k, m] * step["h_prev"][m]
        Zg[F + H, k] = b_ih[2 * H + k] + b_hh[2 * H + k]
    R_rows, stabilizer = epsilon_split(Zg, R_g, eps)
    leaked += stabilizer + R_rows[F + H]
    return R_rows[:F], R_rows[F:F + H], R_c_prev, R_c, leaked


def gru_step(module, layer, step, R_h, eps):
    """One GRU step backwards: returns R_x, R_h_prev, leaked."""
    H = module.hidden_size
    w_ih, w_hh, b_ih, b_hh = _params(module, layer)
    # h = (1 - z) n + z h_prev: rows n units, h_prev units
    Z = np.zeros((2 * H, H))
    for k in range(H):
        Z[k, k] = (1 - step["z"][k]) * step["n"][k]
        Z[H + k, k] = step["z"][k] * step["h_prev"][k]
    R_rows, leaked = epsilon_split(Z, R_h, eps)
    R_n, R_h_prev = R_rows[:H], R_rows[H:].copy()
    # pre_n = W_in x + b_in + r (W_hn h_prev + b_hn): the gate r scales, the signal takes all
    F = step["x"].shape[0]
    Zn = np.zeros((F + H + 2, H))
    r = step["r"]
    for k in range(H):
        for j in range(F):
            Zn[j, k] = w_ih[2 * H + k, j] * step["x"][j]
        for m in range(H):
            Zn[F + m, k] = r[k] * w_hh[2 * H + k, m] * step["h_prev"][m]
        Zn[F + H, k] = b_ih[2 * H + k]
        Zn[F + H + 1, k] = r[k] * b_hh[2 * H + k]
    R_rows, stabilizer = epsilon_split(Zn, R_n, eps)
    leaked += stabilizer + R_rows[F + H] + R_rows[F + H + 1]
    return R_rows[:F], R_h_prev + R_rows[F:F + H], leaked


def through_time(module, x, R_out, R_hn, R_cn=None, eps=1e-6):
    """LRP through a whole (multi-layer) LSTM/GRU for one sample.

    ``x`` (T, F); ``R_out`` (T, H) relevance at the top layer's output sequence; ``R_hn``/``R_cn``
    (layers, H) relevance at the final states. Returns R_x (T, F), hidden relevance
    (layers, T, H), and the leaked total.
    """
    lstm = module.mode == "LSTM"
    trace = forward(module, x)
    T, L, H = x.shape[0], module.num_layers, module.hidden_size
    hidden = np.zeros((L, T, H))
    leaked = 0.0
    R_seq = R_out
    for layer in range(L - 1, -1, -1):
        steps = trace[layer]
        R_inputs = np.zeros((T, steps[0]["x"].shape[0]))
        R_carry = R_hn[layer].copy()
        R_cell = R_cn[layer].copy() if lstm else None
        for t in range(T - 1, -1, -1):
            R_h = R_seq[t] + R_carry
            hidden[layer, t] = R_h
            if lstm:
                R_x, R_carry, R_cell, _, leak = lstm_step(module, layer, steps[t], R_h, R_cell, eps)
            else:
                R_x, R_carry, leak = gru_step(module, layer, steps[t], R_h, eps)
            R_inputs[t] = R_x
            leaked += leak
        R_seq = R_inputs
    return R_seq, hidden, leaked


def linear_epsilon(weight, bias, a, R, eps):
    """The epsilon rule of one Linear layer for one sample, as a contribution matrix; with leaked."""
    K, J = weight.shape
    Z = np.zeros((J + 1, K))
    for k in range(K):
        Z[:J, k] = weight[k] * a
        Z[J, k] = 0.0 if bias is None else bias[k]
    rows, stabilizer = epsilon_split(Z, R, eps)
    return rows[:J], stabilizer + rows[J]


def final_states(module, x):
    """(h_n, c_n or None), each (layers, H), for one sample."""
    trace = forward(module, x)
    h_n = np.stack([steps[-1]["h"] for steps in trace])
    c_n = np.stack([steps[-1]["c"] for steps in trace]) if module.mode == "LSTM" else None
    return h_n, c_n
