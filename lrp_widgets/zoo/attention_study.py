"""Removal curves over ViT patches, over seeds (notebook 11): ``python -m lrp_widgets.zoo study vit_removal``.

Seed ``s`` draws the shapes data set (``shapes(n=3000, size=24, seed=s)``) and the initial
weights and batch order of the ``shapes_vit`` recipe; seed 0 is the shipped zoo model itself. A
seed whose model does not train (test accuracy below ``min_accuracy``) is recorded without
numbers and the next seed is tried, until ``n_models`` models have trained. Per trained seed,
over the first ``n_images`` test images of its own data set and the predicted class: the removal
AOPC (mean logit drop over ``steps`` patches removed, most relevant first) of each ranking, and
the median share of the logit that reaches the pixels for AttnLRP and CP-LRP.

The ranking and AOPC functions here are the ones notebook 11 uses, so notebook and study agree.
"""
from __future__ import annotations

import torch

from ..transformers import attention_maps, attention_rollout
from .path_study import over_trained_seeds, trained_seed

METHODS = ("AttnLRP", "CP-LRP", "gradient x input", "attention rollout", "random")
COMPOSITE = {"AttnLRP": "attnlrp", "CP-LRP": "cp_lrp"}


def trained_vit(seed: int):
    """The shapes_vit recipe with seed ``seed`` (see :func:`~.path_study.trained_seed`); seed 0 is the zoo model."""
    return trained_seed("shapes_vit", seed)


def patch_scores(model, x, target, method: str, seed: int = 0) -> torch.Tensor:
    """One score per patch (N, P) of a ViT with ``model.patch``-sized patches, by ``method`` (one of
    :data:`METHODS`): pixel relevance (or gradient x input) summed per patch; the rollout scores
    patches directly (the class token's row); ``random`` draws from a generator seeded ``seed``."""
    from ..engine.explain import explain

    patch = model.patch
    if method in COMPOSITE:
        relevance = explain(model, x, target=target, composite=COMPOSITE[method]).relevance
    elif method == "gradient x input":
        inputs = x.clone().requires_grad_(True)
        with torch.enable_grad():
            (gradient,) = torch.autograd.grad(model(inputs).gather(1, target[:, None]).sum(), inputs)
        relevance = gradient * x
    elif method == "attention rollout":
        return attention_rollout(attention_maps(model, x))[:, 0, 1:]
    elif method == "random":
        return torch.rand(len(x), (x.shape[-1] // patch) ** 2, generator=torch.Generator().manual_seed(seed))
    else:
        raise ValueError(f"unknown ranking {method!r}; use one of {', '.join(METHODS)}")
    # the sum per patch, up to the constant patch area (which does not change the order)
    return torch.nn.functional.avg_pool2d(relevance.sum(1, keepdim=True), patch).flatten(1).detach()


@torch.no_grad()
def patch_aopc(model, x, target, scores, steps: int = 6) -> float:
    """Mean drop of the ``target`` logit over ``steps`` patches removed in the order of ``scores``
    (highest first); a removed patch becomes the image's mean colour."""
    patch = model.patch
    order = scores.argsort(1, descending=True)
    start = model(x).gather(1, target[:, None])[:, 0]
    side, fill = x.shape[-1] // patch, x.mean((2, 3))
    removed, drops = x.clone(), []
    for k in range(steps):
        for i, j in enumerate(order[:, k].tolist()):
            r, c = divmod(j, side)
            removed[i, :, r * patch : (r + 1) * patch, c * patch : (c + 1) * patch] = fill[i, :, None, None]
        drops.append(start - model(removed).gather(1, target[:, None])[:, 0])
    return torch.stack(drops, 1).mean().item()


def vit_seed_numbers(model, x, seed: int, steps: int = 6) -> dict:
    """AOPC of every ranking and the median input relevance / logit of each composite, on ``x``
    explained for the predicted class."""
    from ..engine.explain import explain

    with torch.no_grad():
        target = model(x).argmax(1)
    aopc = {method: patch_aopc(model, x, target, patch_scores(model, x, target, method, seed), steps) for method in METHODS}
    kept = {}
    for method, composite in COMPOSITE.items():
        result = explain(model, x, target=target, composite=composite)
        logit = result.output.gather(1, target[:, None])[:, 0]
        kept[method] = (result.relevance.sum((1, 2, 3)) / logit).median().item()
    return {"aopc": aopc, "kept": kept}


def vit_removal(n_models: int = 3, max_seed: int = 5, min_accuracy: float = 0.5, n_images: int = 192, steps: int = 6) -> dict:
    """Per seed of the shapes_vit recipe: test accuracy and (if it trained) :func:`vit_seed_numbers`
    on the first ``n_images`` test images. One row per seed tried."""
    def measure(model, data, seed):
        return vit_seed_numbers(model, data.test.x[:n_images], seed, steps)

    return {"rows": over_trained_seeds(trained_vit, measure, n_models, max_seed, min_accuracy)}
