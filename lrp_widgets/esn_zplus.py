"""The z+ rule for LRP through time in an echo state network (REFERENCE.md section 2).

The fact-or-artifact paper redistributes relevance "based on positive pre-activations and
weights". :func:`explain_esn_zplus` is that variant of :func:`lrp_widgets.esn.explain_esn`
(which uses the epsilon rule); it returns the same :class:`~lrp_widgets.esn.ESNExplanation`.
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

Only the ESN's public attributes (``input_weight``, ``weight``, ``bias``, ``readout_weight``,
``readout_bias``, ``leak_rate``, ``slices``) and :meth:`ESN.states` are used; a later phase moves
this module into ``lrp_widgets/esn/``.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .esn import ESN, ESNExplanation, measure_decay_rate

__all__ = ["explain_esn_zplus", "piece_bounds", "readout_leak"]


def piece_bounds(n_steps: int, slices: int) -> list[tuple[int, int]]:
    """Consecutive pieces with the sizes of ``numpy.array_split`` (the ESN's slicing)."""
    sizes = [len(part) for part in np.array_split(np.arange(n_steps), slices)]
    edges = np.cumsum([0] + sizes)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]


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
        raise ValueError(f"rule must be 'epsilon' or 'zplus', got {rule!r}")
    ratio, _ = _safe_ratio(z, denominator)
    return z - (contributions * ratio[:, None]).sum(dim=1)


def _resolve_target(esn: ESN, output: torch.Tensor, target) -> torch.Tensor:
    n = output.shape[0]
    if target is None:
        if esn.task == "classification" or esn.n_outputs == 1:
            return output.argmax(dim=1) if esn.task == "classification" else torch.zeros(n, dtype=torch.long)
        raise ValueError(f"this regression ESN has {esn.n_outputs} outputs: pass target=<output index>")
    target = torch.as_tensor(target)
    if target.is_floating_point():
        raise TypeError("target must be an integer output index or an int64 tensor of shape (N,)")
    target = target.to(torch.long)
    if target.ndim == 0:
        target = target.expand(n)
    if target.shape != (n,):
        raise ValueError(f"target must be one index or shape ({n},), got {tuple(target.shape)}")
    if (target < 0).any() or (target >= esn.n_outputs).any():
        raise ValueError(f"target indices must lie in 0..{esn.n_outputs - 1}")
    return target.contiguous()


@torch.no_grad()
def explain_esn_zplus(esn: ESN, X, target=None, epsilon: float = 1e-6) -> ESNExplanation:
    """LRP through time with the z+ rule (module docstring); same result type as ``explain_esn``.

    Parameters
    ----------
    esn : ESN
        A fitted ESN.
    X : array or tensor, (N, T, F)
    target : None, int or int tensor (N,)
        Output to explain; None: the predicted class (classification) or the single output.
    epsilon : float
        Added to every (non-negative) z+ denominator; ``0`` allowed (a unit with no positive
        contribution then passes nothing on and its relevance counts as leaked).

    Returns
    -------
    ESNExplanation
        ``epsilon`` records the stabilizer; the rule is z+.

    Examples
    --------
    >>> X = torch.randn(20, 8, 2)
    >>> esn = ESN(2, n_outputs=2, n_reservoir=30).fit(X, (X.sum((1, 2)) > 0).long())
    >>> explain_esn_zplus(esn, X).relevance.shape
    torch.Size([20, 8, 2])
    """
    if not isinstance(esn, ESN):
        raise TypeError(f"explain_esn_zplus needs an ESN, got {type(esn).__name__}")
    epsilon = float(epsilon)
    if epsilon < 0 or not math.isfinite(epsilon):
        raise ValueError(f"epsilon must be a finite number >= 0, got {epsilon!r}")
    output = esn(X)  # checks the input and that the ESN is fitted
    states = esn.states(X)  # (N, T, units), reset at the start of every piece
    X = torch.as_tensor(X).to(dtype=states.dtype, device=states.device)
    n, n_steps, _ = X.shape
    units, a = esn.n_reservoir, esn.leak_rate
    target = _resolve_target(esn, output, target)
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
    time_profile = relevance.sum(dim=2)
    return ESNExplanation(
        relevance=relevance,
        time_profile=time_profile,
        leaked=leaked,
        decay_rate=measure_decay_rate(time_profile, esn.slices),
        output=output,
        target=target,
        leak_rate=a,
        slices=esn.slices,
        epsilon=epsilon,
    )
