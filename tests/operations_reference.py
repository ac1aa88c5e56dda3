"""Slow, explicit references for the operations' rules (REFERENCE.md §7, §8), float64, one sample at a time.

Written from the formulas with loops and explicit index bookkeeping, never with the package's code
or autograd, so that a test comparing the two can fail.
"""
import torch
from torch import nn


class Op(nn.Module):
    """A model that is one function of its input, ``function(self, x)`` (traced through by torch.fx)."""

    def __init__(self, function, **modules):
        super().__init__()
        self.function = function
        for name, module in modules.items():
            self.add_module(name, module)

    def forward(self, x):
        return self.function(self, x)


def add(terms, R, signs=None, eps=0.0):
    """``z_k = sum_t sign_t a_tk`` (each term broadcast to ``R``'s shape): ``R_tk = sign_t a_tk / z_k R_k``,
    summed back over the positions a broadcast term was repeated at."""
    signs = signs or [1.0] * len(terms)
    expanded = [sign * torch.broadcast_to(a, R.shape) for sign, a in zip(signs, terms)]
    z = sum(expanded)
    out = []
    for a, e in zip(terms, expanded):
        share = torch.zeros_like(R)
        for k in range(R.numel()):
            zk = z.reshape(-1)[k]
            share.reshape(-1)[k] = e.reshape(-1)[k] / (zk + eps * (1 if zk >= 0 else -1)) * R.reshape(-1)[k]
        out.append(share.sum_to_size(a.shape))
    return out


def mean_rows(a, R):
    """``y_n = mean_j a_nj`` (or the sum): ``R_nj = a_nj / sum_j' a_nj' R_n`` (the 1/J cancels)."""
    out = torch.zeros_like(a)
    for n in range(a.shape[0]):
        total = sum(a[n, j] for j in range(a.shape[1]))
        for j in range(a.shape[1]):
            out[n, j] = a[n, j] / total * R[n]
    return out


def follow(function, shape, R):
    """Relevance that follows the data: run ``function`` on the *indices* of the input's elements to see
    where each output element comes from, then send each output's relevance to its source."""
    index = torch.arange(torch.Size(shape).numel(), dtype=torch.float64).reshape(shape)
    source = function(index).reshape(-1).long()
    out = torch.zeros(torch.Size(shape).numel(), dtype=R.dtype)
    for k, j in enumerate(source.tolist()):
        out[j] += R.reshape(-1)[k]
    return out.reshape(shape)


def _stabilized(z, eps):
    return z + eps * (2 * (z >= 0).to(z.dtype) - 1)


def product(a, b, R, shares, eps=1e-6):
    """``z = a * b`` elementwise: the term ``a_k b_k`` carries ``a_k b_k / (z_k + eps sign z_k) R_k`` (all of
    ``R_k`` up to the stabilizer); factor i gets ``shares[i]`` of it."""
    z = a * b
    return [share * a * b / _stabilized(z, eps) * R for share in shares]


def matmul_uniform(A, B, R, eps=1e-6):
    """``C_ik = sum_j A_ij B_jk``: term (i, j, k) carries ``A_ij B_jk / (C_ik + eps) R_ik``, half to each
    factor (C > 0 here)."""
    RA, RB = torch.zeros_like(A), torch.zeros_like(B)
    I, J = A.shape
    K = B.shape[1]
    for i in range(I):
        for k in range(K):
            C = sum(A[i, j] * B[j, k] for j in range(J)) + eps
            for j in range(J):
                term = A[i, j] * B[j, k] / C * R[i, k]
                RA[i, j] += term / 2
                RB[j, k] += term / 2
    return RA, RB


def linear_epsilon(a, W, b, R, eps):
    """``z_k = sum_j a_j W_kj + b_k``: ``R_j = sum_k a_j W_kj / (z_k + eps sign z_k) R_k``."""
    out = torch.zeros_like(a)
    for k in range(W.shape[0]):
        z = sum(a[j] * W[k, j] for j in range(W.shape[1])) + (0 if b is None else b[k])
        for j in range(W.shape[1]):
            out[j] += a[j] * W[k, j] / (z + eps * (1 if z >= 0 else -1)) * R[k]
    return out


def softmax_taylor(x, R):
    """``s = softmax(x)``: ``R_j = x_j (R_j - s_j sum_k R_k)`` (linearisation at the input)."""
    e = [float(torch.exp(v)) for v in x]
    s = [v / sum(e) for v in e]
    total = float(R.sum())
    return torch.tensor([float(x[j]) * (float(R[j]) - s[j] * total) for j in range(len(x))], dtype=x.dtype)
