"""The z+ rule for LRP through time in an echo state network (REFERENCE.md section 2).

The fact-or-artifact paper redistributes relevance "based on positive pre-activations and
weights". ``explain_esn(model, x, rule="zplus")`` is that variant (the default ``rule="epsilon"``
is in :mod:`lrp_widgets.esn.lrp`); both return the same :class:`~lrp_widgets.esn.ESNExplanation`.
Per time step t, backwards, with ``(v)+ = max(v, 0)``:

1. readout ``z_k = V_k x(T) + c_k``, ``R_k = z_k``: ``R_x(T)_j = (V_kj x_j)+ R_k / D``,
   ``D = sum_j (V_kj x_j)+ + (c_k)+ + eps``;
2. leaky sum ``x(t) = (1-a) x(t-1) + a h(t)``: ``R_x(t)`` is split between ``((1-a) x(t-1))+`` and
   ``(a h(t))+`` in proportion (denominator their sum + eps);
3. tanh: relevance passes;
4. ``z = W_in u(t) + W x(t-1) + b``: ``R_z`` is split among the positive contributions
   ``(W_in_jd u_d)+`` (-> pixel ``u_d``) and ``(W_jk x_k(t-1))+`` (-> state ``x_k(t-1)``); ``b+``
   joins the denominator only, so its share leaks.

``leaked`` holds what the readout bias, the reservoir biases and the ``eps`` stabilizers keep,
plus all of a unit's relevance when it has no positive contribution (possible only with
``eps = 0``); ``relevance.sum() + leaked == explained output`` up to rounding.

Cost: ``(w u)+ = w+ u+ + w- u-`` (``w- = min(w, 0)``), so every sum over positive contributions is
two matrix products; one step costs four ``(N, units) @ (units, units)`` products, never an
``(N, units, units)`` tensor.

"""
from __future__ import annotations

import torch

from ..engine.checks import InputError
from .model import ESN
from .sequences import piece_bounds

__all__ = ["readout_leak"]


def _safe_ratio(numerator: torch.Tensor, denominator: torch.Tensor):
    """``numerator / denominator`` with ``x / 0 := 0``; returns the ratio and the numerator lost on zeros."""
    zero = denominator == 0
    if not bool(zero.any()):
        return numerator / denominator, numerator.new_zeros(numerator.shape[0])
    ratio = (numerator / denominator.masked_fill(zero, 1.0)).masked_fill(zero, 0.0)
    lost = (numerator * zero).reshape(numerator.shape[0], -1).sum(dim=1)
    return ratio, lost


def _positive_sum(a: torch.Tensor, weight_pos: torch.Tensor, weight_neg: torch.Tensor) -> torch.Tensor:
    """``sum_d (w_jd a_d)+`` for every j: (N, D) x (J, D) -> (N, J)."""
    return a.clamp(min=0) @ weight_pos.T + a.clamp(max=0) @ weight_neg.T


def _positive_back(a: torch.Tensor, s: torch.Tensor, weight_pos: torch.Tensor, weight_neg: torch.Tensor) -> torch.Tensor:
    """``R_d = sum_j (w_jd a_d)+ s_j``: (N, D), (N, J) -> (N, D)."""
    return a.clamp(min=0) * (s @ weight_pos) + a.clamp(max=0) * (s @ weight_neg)


def readout_leak(output: torch.Tensor, features: torch.Tensor, esn: ESN, target: torch.Tensor,
                 rule: str = "epsilon", epsilon: float = 1e-6) -> torch.Tensor:
    """(N,) relevance the readout step keeps (its bias and stabilizer), for either rule.

    Used to split ``leaked`` into the readout's part and the reservoir's part (biases and
    stabilizers through time). ``rule`` is ``"epsilon"`` (as :func:`explain_esn`) or ``"zplus"``.
    """
    z = output.gather(1, target[:, None])[:, 0]
    weight = esn.readout_weight[target].to(features.dtype)
    bias = esn.readout_bias[target].to(features.dtype)
    if rule == "epsilon":
        denominator = z + epsilon * torch.where(z + 0.0 >= 0, 1.0, -1.0).to(z.dtype)
        contributions = features * weight
    elif rule == "zplus":
        contributions = (features * weight).clamp(min=0)
        denominator = contributions.sum(dim=1) + bias.clamp(min=0) + epsilon
    else:
        raise InputError(f"rule must be 'epsilon' or 'zplus', got {rule!r}")
    ratio, _ = _safe_ratio(z, denominator)
    return z - (contributions * ratio[:, None]).sum(dim=1)


def zplus_through_time(esn: ESN, X: torch.Tensor, states: torch.Tensor, output: torch.Tensor,
                       target: torch.Tensor, epsilon: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Relevance (N, T, F) and leaked (N,) of the z+ rule (module docstring, steps 1-4).

    ``X`` are checked sequences in the ESN's dtype, ``states`` the ESN's states for them (reset at
    the start of every piece), ``output`` the readout outputs, ``target`` resolved indices.
    """
    n, n_steps, _ = X.shape
    units, a = esn.n_reservoir, esn.leak_rate
    bounds = piece_bounds(n_steps, esn.slices)
    features = torch.cat([states[:, stop - 1] for _, stop in bounds], dim=1)

    # step 1: readout
    weight = esn.readout_weight[target]
    contributions = (features * weight).clamp(min=0)
    z = output.gather(1, target[:, None])[:, 0]
    ratio, _ = _safe_ratio(z, contributions.sum(dim=1) + esn.readout_bias[target].clamp(min=0) + epsilon)
    R_features = contributions * ratio[:, None]
    leaked = z - R_features.sum(dim=1)

    W, W_in, b = esn.weight, esn.input_weight, esn.bias
    W_pos, W_neg = W.clamp(min=0), W.clamp(max=0)
    W_in_pos, W_in_neg = W_in.clamp(min=0), W_in.clamp(max=0)
    b_pos = b.clamp(min=0)
    relevance = torch.zeros_like(X)
    for piece, (start, stop) in enumerate(bounds):
        R_x = R_features[:, piece * units:(piece + 1) * units]
        for t in range(stop - 1, start - 1, -1):
            x_prev = states[:, t - 1] if t > start else states.new_zeros(n, units)
            u = X[:, t]
            pre = u @ W_in.T + x_prev @ W.T + b
            # step 2: leaky sum, positive parts of (1-a) x(t-1) and a h(t)
            leak_part = ((1 - a) * x_prev).clamp(min=0)
            new_part = (a * torch.tanh(pre)).clamp(min=0)
            s_leak, lost = _safe_ratio(R_x, leak_part + new_part + epsilon)
            leaked += lost
            R_h = new_part * s_leak  # step 3: tanh passes
            # step 4: positive contributions of the pre-activation; b+ only in the denominator
            denominator = _positive_sum(u, W_in_pos, W_in_neg) + _positive_sum(x_prev, W_pos, W_neg) + b_pos + epsilon
            s, lost = _safe_ratio(R_h, denominator)
            leaked += lost
            R_u = _positive_back(u, s, W_in_pos, W_in_neg)
            relevance[:, t] = R_u
            R_x = leak_part * s_leak + _positive_back(x_prev, s, W_pos, W_neg)
            # what the stabilizers (step 2 and 4) and b+ (step 4) keep at this step
            leaked += epsilon * s_leak.sum(dim=1) + s @ (b_pos + epsilon)
    return relevance, leaked
