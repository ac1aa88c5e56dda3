"""Small modules that make operations visible to the engine's hooks."""
from __future__ import annotations

import torch
from torch import nn


class Sum(nn.Module):
    """Element-wise sum of its inputs, for residual additions.

    A ``x + y`` written in a ``forward`` is invisible to LRP hooks (the gradient would copy the
    relevance to both branches and double it). ``Sum()(x, y)`` does the same addition as a
    module, and the engine splits the relevance between the terms in proportion to their
    contributions (the epsilon rule on a sum).

    Examples
    --------
    >>> class Residual(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.body = nn.Sequential(nn.Linear(4, 4), nn.ReLU())
    ...         self.add = Sum()
    ...     def forward(self, x):
    ...         return self.add(x, self.body(x))
    """

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        if len(tensors) == 0:
            raise ValueError("Sum needs at least one tensor")
        total = tensors[0]
        for tensor in tensors[1:]:
            total = total + tensor
        return total
