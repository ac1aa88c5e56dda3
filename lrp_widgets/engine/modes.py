"""Running a user's model without changing it: eval mode for the duration, flags restored."""
from __future__ import annotations

import contextlib

import torch
from torch import nn

from .checks import check_scores


@contextlib.contextmanager
def eval_mode(model: nn.Module):
    """Eval mode inside the block; every module's own train/eval flag restored after.

    ``model.train(flag)`` would not do: it sets one flag on all submodules, while a user's model
    may mix them (a frozen BatchNorm in a training model).
    """
    flags = [(module, module.training) for module in model.modules()]
    if not any(flag for _, flag in flags):  # in eval mode already (the usual case): nothing to set or restore
        yield model
        return
    model.eval()
    try:
        yield model
    finally:
        for module, flag in flags:
            module.training = flag


@contextlib.contextmanager
def evaluating(model: nn.Module):
    """:func:`eval_mode` and no gradients: for plain predictions."""
    with eval_mode(model), torch.no_grad():
        yield model


def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """The model's scores (N, classes) for ``x``, in batches, under :func:`evaluating`."""
    with evaluating(model):
        return torch.cat([check_scores(model(x[i : i + batch_size]), len(x[i : i + batch_size]))
                          for i in range(0, len(x), batch_size)])
