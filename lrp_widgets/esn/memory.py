"""Memory of a leaky reservoir from its linearisation, and the leak-rate heuristic built on it.

One step of ``x(t) = (1-a) x(t-1) + a tanh(W_in u(t) + W x(t-1) + b)`` multiplies a small
perturbation of the state by ``J = (1-a) I + a D W`` with ``D = diag(tanh'(pre))`` (all <= 1).
The slowest mode of ``J`` decays by about ``1 - a (1 - rho_eff)`` per step, with ``rho_eff`` the
largest real eigenvalue of ``D W``, so the reservoir remembers about ``1 / (a (1 - rho_eff))``
steps, not the ``1 / a`` of the leak alone (REFERENCE.md section 2).

Heuristic (our choice, not the paper's formula): the largest ``a`` with
``(1 - a (1 - rho_eff))^(T-1) >= keep``, i.e. ``a = (1 - keep^(1/(T-1))) / (1 - rho_eff)``, capped at 1.
With ``rho_eff = 0`` it counts the leak only (the heuristic before the linearisation: 4-5x more
cautious on the reservoirs here, whose ``rho_eff`` is about 0.77).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ..engine.checks import InputError
from .model import ESN
from .sequences import piece_bounds

__all__ = ["effective_radius", "memory_steps", "suggest_leak_rate"]


@torch.no_grad()
def effective_radius(esn: ESN, X=None) -> float:
    """``rho_eff``: the largest real part among the eigenvalues of ``D W``.

    Parameters
    ----------
    esn : ESN
    X : (N, T, F), optional
        Sequences to linearise around: ``D`` is the mean of ``tanh'(pre-activation)`` per unit
        over samples and steps (the states the ESN actually visits). Without ``X``, ``D = I``
        (small inputs: the reservoir near 0), which gives the largest real eigenvalue of ``W``.

    Returns
    -------
    float
    """
    if not isinstance(esn, ESN):
        raise TypeError(f"effective_radius needs an ESN, got {type(esn).__name__}")
    W = esn.weight.detach().to(torch.float64).cpu()
    if X is not None:
        states = esn.states(X).to(torch.float64).cpu()  # (N, T, units); checks X
        X = torch.as_tensor(X).to(torch.float64).cpu()
        previous = torch.cat([torch.zeros_like(states[:, :1]), states[:, :-1]], dim=1)
        if esn.slices > 1:  # the state is reset at the start of every piece
            previous[:, [start for start, _ in piece_bounds(X.shape[1], esn.slices)]] = 0
        pre = X @ esn.input_weight.double().cpu().T + previous @ W.T + esn.bias.double().cpu()
        derivative = (1 - torch.tanh(pre) ** 2).mean(dim=(0, 1))
        W = derivative[:, None] * W
    return float(torch.linalg.eigvals(W).real.max())


def memory_steps(leak_rate: float, rho_eff: float) -> float:
    """Steps over which a perturbation falls by ``e``: about ``1 / (a (1 - rho_eff))``.

    Exactly ``-1 / log(1 - a (1 - rho_eff))`` (infinite when that factor is 1 or more).
    """
    factor = 1 - leak_rate * (1 - rho_eff)
    if factor <= 0:
        return 0.0
    if factor >= 1:
        return math.inf
    return -1.0 / math.log(factor)


def suggest_leak_rate(n_steps: int, keep: float = 0.1, rho_eff: float = 0.0) -> float:
    """Largest leak rate whose linearised memory keeps ``keep`` at the first of ``n_steps`` steps.

    ``(1 - a (1 - rho_eff))^(T - 1) >= keep`` gives ``a = (1 - keep^(1/(T-1))) / (1 - rho_eff)``,
    capped at 1. Pass ``rho_eff`` from :func:`effective_radius` of the fitted reservoir; the
    default 0 counts the leak alone (``(1 - a)^(T-1) >= keep``). Per slice when slicing
    (``n_steps`` = steps of one piece). Our heuristic (REFERENCE.md section 2), not the paper's.

    Examples
    --------
    >>> round(suggest_leak_rate(32), 4), round(suggest_leak_rate(32, rho_eff=0.75), 4)
    (0.0716, 0.2863)
    """
    if not isinstance(n_steps, (int, np.integer)) or n_steps < 2:
        raise InputError(f"n_steps must be an integer >= 2, got {n_steps!r}")
    if not 0 < keep < 1:
        raise InputError(f"keep must be in (0, 1), got {keep!r}")
    if not rho_eff < 1:
        raise InputError(f"rho_eff must be below 1 (a reservoir that forgets), got {rho_eff!r}")
    return min(1.0, (1.0 - keep ** (1.0 / (n_steps - 1))) / (1.0 - rho_eff))
