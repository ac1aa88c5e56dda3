"""Independent slow references for the LRP rules: explicit matrix forms, float64.

Never imported by the package. A Linear or Conv layer becomes an explicit matrix ``M`` (K, J)
(built by applying the layer to the unit vectors, so it shares no code with the engine's
gradient trick) and a bias ``b`` (K,); each rule is then its formula from REFERENCE.md §1,
written out over the contribution matrix ``Z[k, j]``.
"""
from __future__ import annotations

import torch
from torch import nn


def dense_matrix(layer: nn.Module, in_shape, weight=None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(M, b)`` with ``layer(a).flatten() == M @ a.flatten() + b`` for one sample of ``in_shape``."""
    weight = layer.weight.detach() if weight is None else weight
    n_in = int(torch.tensor(in_shape).prod())
    basis = torch.eye(n_in, dtype=torch.float64).reshape(n_in, *in_shape)
    with torch.no_grad():
        if isinstance(layer, nn.Linear):
            columns = basis @ weight.T
            bias_out = layer.bias.detach() if layer.bias is not None else torch.zeros(weight.shape[0], dtype=torch.float64)
        else:
            columns = layer._conv_forward(basis, weight, None)
            out_shape = columns.shape[1:]
            if layer.bias is not None:
                bias_out = layer.bias.detach().reshape(-1, *([1] * (len(out_shape) - 1))).expand(out_shape).flatten()
            else:
                bias_out = torch.zeros(out_shape.numel(), dtype=torch.float64)
    return columns.reshape(n_in, -1).T.contiguous(), bias_out


def _stab(z, eps):
    return z + eps * torch.where(z >= 0, 1.0, -1.0).double()


def _redistribute(Z, z, R, eps):
    """R_j = sum_k Z[k, j] / stab(z_k) R_k, written as loops over k to stay independent."""
    out = torch.zeros(Z.shape[1], dtype=torch.float64)
    for k in range(Z.shape[0]):
        if eps == 0 and z[k] == 0:
            continue
        out += Z[k] * (R[k] / _stab(z[k], eps))
    return out


def reference_rule(rule: str, layer: nn.Module, a: torch.Tensor, R: torch.Tensor, **p) -> torch.Tensor:
    """Relevance at the input of ``layer`` for ONE sample ``a`` (unbatched) and output relevance ``R``."""
    in_shape = tuple(a.shape)
    M, b = dense_matrix(layer, in_shape)
    av = a.flatten().double()
    Rv = R.flatten().double()
    eps = p.get("epsilon", 1e-6)
    if rule in ("zero", "epsilon"):
        eps = 0.0 if rule == "zero" else eps
        Z = M * av[None, :]
        result = _redistribute(Z, Z.sum(1) + b, Rv, eps)
    elif rule == "gamma":
        g = p["gamma"]
        Mg, bg = M + g * M.clamp(min=0), b + g * b.clamp(min=0)
        Z = Mg * av[None, :]
        result = _redistribute(Z, Z.sum(1) + bg, Rv, eps)
    elif rule in ("alphabeta", "zplus"):
        alpha, beta = (1.0, 0.0) if rule == "zplus" else (p["alpha"], p["beta"])
        Z = M * av[None, :]
        Zp, Zn = Z.clamp(min=0), Z.clamp(max=0)
        result = alpha * _redistribute(Zp, Zp.sum(1) + b.clamp(min=0), Rv, eps)
        if beta:
            result = result - beta * _redistribute(Zn, Zn.sum(1) + b.clamp(max=0), Rv, eps)
    elif rule == "zbox":
        low = torch.full_like(av, p["low"])
        high = torch.full_like(av, p["high"])
        Z = M * av[None, :] - M.clamp(min=0) * low[None, :] - M.clamp(max=0) * high[None, :]
        result = _redistribute(Z, Z.sum(1), Rv, eps)
    elif rule == "flat":
        ones_weight = torch.ones_like(layer.weight.detach())
        Mf, _ = dense_matrix(layer, in_shape, weight=ones_weight)
        result = _redistribute(Mf, Mf.sum(1), Rv, eps)
    elif rule == "wsquare":
        M2 = M**2
        b2 = b**2
        result = _redistribute(M2, M2.sum(1) + b2, Rv, eps)
    else:
        raise ValueError(rule)
    return result.reshape(in_shape)


def worked_example_network() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """The slides' 2-4-3 example as a bias-free ReLU network, with the contributions the slides give.

    Hidden activations are all 1, so ``Z[h_j, o_k] = W2[k, j]``. Column sums are 2, 1, 2
    (the slides' denominators for o1, o2, o3) and row h1 is (0.8, 0.1, 0.5), as on the slide;
    rows h2-h4 are chosen to give R(h2..h4) = 0.27, 0.245, 0.205. From the input (1, 1),
    h1's contributions are 0.6 (x1) and 0.4 (x2).
    """
    net = nn.Sequential(nn.Linear(2, 4, bias=False), nn.ReLU(), nn.Linear(4, 3, bias=False)).double()
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[0.6, 0.4], [0.5, 0.5], [0.3, 0.7], [0.9, 0.1]]))
        net[2].weight.copy_(
            torch.tensor([[0.8, 0.4, 0.5, 0.3], [0.1, 0.5, 0.2, 0.2], [0.5, 0.2, 0.6, 0.7]])
        )
    x = torch.ones(1, 2, dtype=torch.float64)
    output_relevance = torch.tensor([[0.5, 0.3, 0.2]], dtype=torch.float64)
    return net, x, output_relevance
