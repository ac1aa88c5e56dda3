"""BatchNorm folding, for the explanation only: the model's parameters are never touched."""
from __future__ import annotations

import torch
from torch import nn

from .errors import UnsupportedModuleError


def batchnorm_affine(bn: nn.modules.batchnorm._BatchNorm) -> tuple[torch.Tensor, torch.Tensor]:
    """``(scale, shift)`` with ``bn(x) = x * scale + shift`` per channel, in eval mode."""
    if bn.running_mean is None or bn.running_var is None:
        raise UnsupportedModuleError(
            f"{type(bn).__name__} without running statistics (track_running_stats=False) depends on the "
            "batch; LRP needs a fixed affine map. Train it with track_running_stats=True."
        )
    scale = torch.rsqrt(bn.running_var + bn.eps)
    shift = -bn.running_mean * scale
    if bn.weight is not None:
        scale = scale * bn.weight
        shift = shift * bn.weight + bn.bias
    return scale.detach(), shift.detach()


def fold_batchnorm(weight: torch.Tensor, bias: torch.Tensor | None, bn) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights and bias of ``bn(layer(x))`` as one layer: ``w' = w g/sqrt(var+e)``,
    ``b' = (b - mu) g/sqrt(var+e) + beta``."""
    scale, shift = batchnorm_affine(bn)
    shape = (-1,) + (1,) * (weight.dim() - 1)
    folded_weight = weight * scale.reshape(shape)
    folded_bias = shift if bias is None else bias * scale + shift
    return folded_weight, folded_bias
