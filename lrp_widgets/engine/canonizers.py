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


class BatchNormFolding:
    """Canonizer: each BatchNorm that directly follows a Linear/Conv layer is folded into it.

    Folding happens for one explanation only and never touches the model's parameters:
    :meth:`apply` notes a (layer call, BatchNorm) pair as the forward pass finds it,
    :meth:`parameters` gives the folded weight and bias when the layer's rule needs them, and
    :meth:`remove` forgets every pair once the explanation is done.
    """

    def __init__(self):
        self.folded: dict = {}  # id(layer call) -> (layer call, BatchNorm)

    def apply(self, layer, batchnorm: nn.Module) -> bool:
        """Fold ``batchnorm`` into ``layer``; False when ``layer`` already has one folded in."""
        if id(layer) in self.folded:
            return False
        self.folded[id(layer)] = (layer, batchnorm)
        return True

    def parameters(self, layer, weight: torch.Tensor, bias: torch.Tensor | None):
        """``layer``'s weight and bias, with its BatchNorm folded in when there is one."""
        entry = self.folded.get(id(layer))
        return (weight, bias) if entry is None else fold_batchnorm(weight, bias, entry[1])

    def remove(self) -> None:
        """Undo every fold (the layers get their own parameters back)."""
        self.folded.clear()
