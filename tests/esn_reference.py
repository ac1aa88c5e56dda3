"""Independent slow reference for ESN forward pass and LRP through time.

Explicit per-step matrices, one sample at a time, numpy float64. Never imported by the
package; it reads only the reservoir and readout arrays of an ESN, so a mistake in the
package's vectorized code (a transposed W, a wrong piece boundary, a share sent to the wrong
term) does not repeat here.

Every LRP step is written as a matrix of contributions ``C[k, j]`` (input j to output k) and
the eps rule ``R_j = sum_k C[k, j] / stab(z_k) * R_k``, ``stab(z) = z + eps * sign(z)``,
``sign(0) = +1``, ``0 / 0 = 0``.
"""
from __future__ import annotations

import numpy as np


def eps_rule(contributions, bias, relevance_out, epsilon):
    """Eps rule on one layer given explicitly.

    contributions : (K, J) array, ``C[k, j]`` the part of output k coming from input j
    bias : (K,) array
    relevance_out : (K,) array
    Returns the input relevance (J,) and the relevance kept by bias and stabilizer (scalar).
    """
    z = contributions.sum(axis=1) + bias
    denominator = z + epsilon * np.where(z >= 0, 1.0, -1.0)
    ratio = np.zeros_like(z)
    nonzero = denominator != 0
    ratio[nonzero] = relevance_out[nonzero] / denominator[nonzero]
    relevance_in = (contributions * ratio[:, None]).sum(axis=0)
    kept = relevance_out.sum() - relevance_in.sum()
    return relevance_in, kept


def pieces(n_steps, slices):
    """Consecutive pieces with the sizes of ``numpy.array_split``."""
    edges = np.cumsum([0] + [len(part) for part in np.array_split(np.arange(n_steps), slices)])
    return list(zip(edges[:-1], edges[1:]))


def run_sample(u, W_in, W, b, alpha):
    """States x(0..L) (L+1, units) and pre-activations (L, units) of one sequence u (L, F)."""
    units = W.shape[0]
    states = [np.zeros(units)]
    pres = []
    for t in range(u.shape[0]):
        pre = W_in @ u[t] + W @ states[-1] + b
        pres.append(pre)
        states.append((1 - alpha) * states[-1] + alpha * np.tanh(pre))
    return np.array(states), np.array(pres)


def reference_explain(params, X, target, epsilon):
    """LRP through time for every sample, one by one.

    params : dict with numpy float64 ``W_in`` (units, F), ``W`` (units, units), ``b`` (units,),
        ``V`` (outputs, slices*units), ``c`` (outputs,), ``alpha``, ``slices``.
    X : (N, T, F); target : (N,) ints.
    Returns relevance (N, T, F), kept (N,), outputs (N, outputs).
    """
    W_in, W, b, V, c = (np.asarray(params[key], dtype=np.float64) for key in ("W_in", "W", "b", "V", "c"))
    alpha, slices = params["alpha"], params["slices"]
    units, n_features = W_in.shape
    X = np.asarray(X, dtype=np.float64)
    n, n_steps, _ = X.shape
    relevance = np.zeros_like(X)
    kept = np.zeros(n)
    outputs = np.zeros((n, V.shape[0]))
    bounds = pieces(n_steps, slices)
    for i in range(n):
        runs = [run_sample(X[i, start:stop], W_in, W, b, alpha) for start, stop in bounds]
        final = np.concatenate([states[-1] for states, _ in runs])
        outputs[i] = V @ final + c
        k = int(target[i])
        # step 1: readout of output k only, its relevance is its value
        R_final, kept_readout = eps_rule((V[k] * final)[None, :], c[k:k + 1], outputs[i, k:k + 1], epsilon)
        kept[i] += kept_readout
        for piece, (start, stop) in enumerate(bounds):
            states, pres = runs[piece]
            R_x = R_final[piece * units:(piece + 1) * units]
            for t in range(stop - start - 1, -1, -1):
                x_prev, h = states[t], np.tanh(pres[t])
                # step 2: x(t) = (1-a) x(t-1) + a h(t), inputs [x(t-1), h(t)] with diagonal matrices
                C_leak = np.concatenate([np.diag((1 - alpha) * x_prev), np.diag(alpha * h)], axis=1)
                R_both, kept_leak = eps_rule(C_leak, np.zeros(units), R_x, epsilon)
                R_leak, R_h = R_both[:units], R_both[units:]
                # step 3: tanh passes relevance; step 4: inputs [u(t), x(t-1)], bias b
                u = X[i, start + t]
                C_pre = np.concatenate([W_in * u[None, :], W * x_prev[None, :]], axis=1)
                R_pre_in, kept_pre = eps_rule(C_pre, b, R_h, epsilon)
                relevance[i, start + t] = R_pre_in[:n_features]
                R_x = R_leak + R_pre_in[n_features:]
                kept[i] += kept_leak + kept_pre
    return relevance, kept, outputs


def params_of(esn):
    """The arrays of an ``lrp_widgets.ESN`` as the dict :func:`reference_explain` takes."""
    def as_numpy(tensor):
        return tensor.detach().cpu().double().numpy()

    return {
        "W_in": as_numpy(esn.input_weight),
        "W": as_numpy(esn.weight),
        "b": as_numpy(esn.bias),
        "V": as_numpy(esn.readout_weight),
        "c": as_numpy(esn.readout_bias),
        "alpha": esn.leak_rate,
        "slices": esn.slices,
    }
