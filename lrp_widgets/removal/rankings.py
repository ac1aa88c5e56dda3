"""Dataset-level input rankings for pruning: LRP relevance and the baselines it is compared with.

Each ranking gives one importance per input feature, averaged over a data set (one sample's
shape, channels kept); :func:`prune_inputs` then keeps the highest-ranked units. The baselines
answer "does relevance rank inputs better than something simpler?":

* ``"relevance"``: mean |LRP relevance| of the true class (the feature-removal paper's ranking);
* ``"gradient"``: mean |d f_y / d x| (sensitivity; large wherever the output would react, also
  on pixels that are always blank);
* ``"gradient_x_input"``: mean |x * d f_y / d x| (zero where the input is zero; on a ReLU network
  without biases it equals LRP-0);
* ``"variance"``: the variance of each input over the data set, model-free (a pixel that never
  changes carries no information);
* ``"random"``: no importance; a seeded random subset of the same size.
"""
from __future__ import annotations

import torch

from ..engine.checks import check_choice
from ..engine.modes import eval_mode
from .curves import _relevance

RANKINGS = ("relevance", "gradient", "gradient_x_input", "variance", "random")


def _gradients(model, x: torch.Tensor, target: torch.Tensor, batch_size: int) -> torch.Tensor:
    """``d f_target / d x`` per sample, in batches; only the input gets a gradient (the model's
    parameters are left untouched, no ``.grad`` written)."""
    parts = []
    with eval_mode(model):
        for start in range(0, len(x), batch_size):
            chunk = x[start : start + batch_size].detach().clone().requires_grad_(True)
            logits = model(chunk)
            picked = logits.gather(1, target[start : start + batch_size, None]).sum()
            (grad,) = torch.autograd.grad(picked, chunk)
            parts.append(grad.detach())
    return torch.cat(parts)


def input_importance(model, x: torch.Tensor, target: torch.Tensor, ranking: str, *, composite="epsilon", batch_size: int = 1024):
    """Mean importance of every input feature over ``x`` by ``ranking`` (module docstring).

    Parameters
    ----------
    model : torch.nn.Module
        The trained model (unused by ``"variance"``); not changed.
    x : torch.Tensor (N, ...)
        The samples the ranking averages over (e.g. the training set).
    target : torch.Tensor (N,)
        The class explained for each sample (the true label).
    ranking : {"relevance", "gradient", "gradient_x_input", "variance"}
    composite : str or Composite
        LRP rules for ``"relevance"``.
    batch_size : int

    Returns
    -------
    torch.Tensor
        Shape ``(1, *x.shape[1:])``, non-negative.
    """
    check_choice(ranking, RANKINGS[:-1], "ranking")
    if ranking == "relevance":
        values = _relevance(model, x, composite, target, batch_size).abs()
    elif ranking == "variance":
        return x.var(0, keepdim=True, unbiased=False)
    else:
        values = _gradients(model, x, target, batch_size)
        values = (values * x if ranking == "gradient_x_input" else values).abs()
    return values.mean(0, keepdim=True)
