"""Independent slow reference for the z+ rule of LRP through time in an ESN.

One sample at a time, numpy float64, every step written as an explicit matrix of contributions
``C[k, j]`` (input j to output k) and the z+ rule
``R_j = sum_k C[k, j]+ / (sum_j' C[k, j']+ + b_k+ + eps) * R_k`` (``0 / 0 = 0``). Never imported by
the package; it reads only the ESN's arrays (:func:`esn_reference.params_of`).
"""
from __future__ import annotations

import numpy as np

from .esn_reference import pieces, run_sample


def zplus_rule(contributions, bias, relevance_out, epsilon):
    """z+ on one layer given explicitly; returns input relevance (J,) and what bias/stabilizer keep."""
    positive = np.maximum(contributions, 0.0)
    denominator = positive.sum(axis=1) + np.maximum(bias, 0.0) + epsilon
    ratio = np.zeros_like(denominator)
    nonzero = denominator != 0
    ratio[nonzero] = relevance_out[nonzero] / denominator[nonzero]
    relevance_in = (positive * ratio[:, None]).sum(axis=0)
    return relevance_in, relevance_out.sum() - relevance_in.sum()


def reference_explain_zplus(params, X, target, epsilon):
    """Relevance (N, T, F), kept (N,), outputs (N, outputs) with the z+ rule at every step."""
    W_in, W, b, V, c = (np.asarray(params[key], dtype=np.float64) for key in ("W_in", "W", "b", "V", "c"))
    alpha, slices = params["alpha"], params["slices"]
    units, n_features = W_in.shape
    X = np.asarray(X, dtype=np.float64)
    n, n_steps, _ = X.shape
    relevance, kept, outputs = np.zeros_like(X), np.zeros(n), np.zeros((n, V.shape[0]))
    bounds = pieces(n_steps, slices)
    for i in range(n):
        runs = [run_sample(X[i, start:stop], W_in, W, b, alpha) for start, stop in bounds]
        final = np.concatenate([states[-1] for states, _ in runs])
        outputs[i] = V @ final + c
        k = int(target[i])
        R_final, kept_readout = zplus_rule((V[k] * final)[None, :], c[k:k + 1], outputs[i, k:k + 1], epsilon)
        kept[i] += kept_readout
        for piece, (start, stop) in enumerate(bounds):
            states, pres = runs[piece]
            R_x = R_final[piece * units:(piece + 1) * units]
            for t in range(stop - start - 1, -1, -1):
                x_prev, h = states[t], np.tanh(pres[t])
                C_leak = np.concatenate([np.diag((1 - alpha) * x_prev), np.diag(alpha * h)], axis=1)
                R_both, kept_leak = zplus_rule(C_leak, np.zeros(units), R_x, epsilon)
                R_leak, R_h = R_both[:units], R_both[units:]
                u = X[i, start + t]
                C_pre = np.concatenate([W_in * u[None, :], W * x_prev[None, :]], axis=1)
                R_pre_in, kept_pre = zplus_rule(C_pre, b, R_h, epsilon)
                relevance[i, start + t] = R_pre_in[:n_features]
                R_x = R_leak + R_pre_in[n_features:]
                kept[i] += kept_leak + kept_pre
    return relevance, kept, outputs
