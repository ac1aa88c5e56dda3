"""Small helpers the explorers share: default data, sample sliders, user input checks."""
from __future__ import annotations

import ipywidgets as widgets
import torch
from torch import nn


def sample_slider(n: int, value: int = 0) -> widgets.IntSlider:
    return widgets.IntSlider(value=min(value, n - 1), min=0, max=max(n - 1, 0), description="sample", continuous_update=False)


def model_and_data(model, data, zoo_name: str, what: str, expects: str = "with .x"):
    """The zoo model ``zoo_name`` and its test set when no model is given, else the user's pair.

    A user's model without data is refused clearly (the zoo's data would not fit it).
    """
    if model is None:
        from .. import zoo

        model = zoo.load(zoo_name)
        data = zoo.dataset(zoo_name).test if data is None else data
    if data is None:
        raise ValueError(f"{what}: pass data ({expects}) along with your own model")
    return model, data


def check_model_and_data(model, x, y=None, what: str = "explorer"):
    """Clear errors for user-supplied models and data at construction."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"{what}: model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{what}: data.x must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim < 2 or x.shape[0] == 0:
        raise ValueError(f"{what}: data.x must be a non-empty batch (N, ...), got shape {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{what}: data.x contains NaN/inf; mask missing values and fill them (e.g. with 0) first")
    if y is not None and (not isinstance(y, torch.Tensor) or y.shape[0] != x.shape[0]):
        raise ValueError(f"{what}: data.y must be a tensor with one label per sample ({x.shape[0]})")


def class_name(data, index: int) -> str:
    classes = getattr(data, "classes", None)
    if classes is not None and 0 <= index < len(classes):
        return str(classes[index])
    return str(index)
