"""Small helpers the explorers share: the one data normaliser, default models, sample sliders,
user input checks."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import ipywidgets as widgets
import numpy as np
import torch
from torch import nn

from ..engine.checks import InputError, check_finite

#: what every explorer's ``data`` argument may be (quoted in their docstrings)
DATA_FORMS = "a tensor x, an (x, y) tuple, a mapping {'x': ..., 'y': ...}, or an object with .x (and .y)"


@dataclass
class Data:
    """Data in one shape: ``x`` (a tensor, N first), ``y`` (tensor or None), ``classes``, and the
    object it came from (``source``) for extras such as ``informative_mask`` or ``ocean``."""

    x: torch.Tensor
    y: torch.Tensor | None = None
    classes: list | None = None
    source: object = None

    def extra(self, name: str):
        """An optional extra of the original data (attribute or mapping key), or None."""
        if isinstance(self.source, Mapping):
            return self.source.get(name)
        return getattr(self.source, name, None)

    def __getitem__(self, index) -> "Data":
        """The first samples, e.g. ``data[:64]``."""
        return Data(self.x[index], None if self.y is None else self.y[index], self.classes, self.source)


def _tensor(value, what: str, name: str):
    if value is None or isinstance(value, torch.Tensor):
        return value
    if isinstance(value, np.ndarray):
        return torch.as_tensor(value)
    raise TypeError(f"{what}: data {name} must be a torch.Tensor (or numpy array), got {type(value).__name__}")


def as_data(data, what: str = "explorer") -> Data:
    """Normalise ``data`` (:data:`DATA_FORMS`) to :class:`Data`; a clear error otherwise."""
    if isinstance(data, Data):
        return data
    if isinstance(data, (torch.Tensor, np.ndarray)):
        x, y = data, None
    elif isinstance(data, tuple) and len(data) == 2:
        x, y = data
    elif isinstance(data, Mapping):
        if "x" not in data:
            raise TypeError(f"{what}: a data mapping needs the key 'x' (and optionally 'y'); it has {list(data)}")
        x, y = data["x"], data.get("y")
    elif hasattr(data, "x"):
        x, y = data.x, getattr(data, "y", None)
    else:
        raise TypeError(f"{what}: data must be {DATA_FORMS}; got {type(data).__name__}")
    classes = data.get("classes") if isinstance(data, Mapping) else getattr(data, "classes", None)
    return Data(_tensor(x, what, "x"), _tensor(y, what, "y"), classes, data)


def sample_slider(n: int, value: int = 0) -> widgets.IntSlider:
    return widgets.IntSlider(value=min(value, n - 1), min=0, max=max(n - 1, 0), description="sample", continuous_update=True)


def model_and_data(model, data, zoo_name: str, what: str) -> tuple[nn.Module, Data]:
    """The zoo model ``zoo_name`` and its test set when no model is given, else the user's pair,
    with the data normalised by :func:`as_data`. A user's model without data is refused clearly."""
    if model is None:
        from .. import zoo

        model = zoo.load(zoo_name)
        data = zoo.dataset(zoo_name).test if data is None else data
    if data is None:
        raise ValueError(f"{what}: pass data ({DATA_FORMS}) along with your own model")
    return model, as_data(data, what)


def check_model_and_data(model, x, y=None, what: str = "explorer"):
    """Clear errors for user-supplied models and data at construction."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"{what}: model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{what}: data.x must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim < 2 or x.shape[0] == 0:
        raise InputError(f"{what}: data.x must be a non-empty batch (N, ...), got shape {tuple(x.shape)}")
    check_finite(x, f"{what}: data.x")  # NaN, inf and fill values, as every public function checks them
    if y is not None and (not isinstance(y, torch.Tensor) or y.shape[0] != x.shape[0]):
        raise InputError(f"{what}: data.y must be a tensor with one label per sample ({x.shape[0]})")


def class_name(data, index: int) -> str:
    classes = getattr(data, "classes", None)
    if classes is not None and 0 <= index < len(classes):
        return str(classes[index])
    return str(index)


def log_slider(value: float, low: int, high: int, step: float, description: str, **options) -> widgets.FloatLogSlider:
    """A continuous FloatLogSlider (exponents ``low..high``) opening on the grid point nearest
    ``value``: the browser snaps an off-grid value and sends it back, which would change the
    state right after it is first shown."""
    exponent = low + round((np.log10(value) - low) / step) * step
    return widgets.FloatLogSlider(value=float(10.0 ** exponent), base=10, min=low, max=high, step=step, description=description,
                                  continuous_update=True, **options)
