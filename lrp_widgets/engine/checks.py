"""The one module that checks user input. Every public function of the package goes through it.

Bad input raises :class:`InputError` (a ``ValueError``), with a message that names the problem and
the fix. One threshold tells data from fill values (:data:`FILL_VALUE_THRESHOLD`), one function
resolves targets, so ``explain``, ``explain_esn``, the removal curves and the path search cannot
disagree about what they accept.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from torch import nn

from .errors import InputError

__all__ = [
    "FILL_VALUE_THRESHOLD",
    "InputError",
    "as_tensor",
    "check_finite",
    "check_input",
    "check_batch",
    "resolve_target",
    "check_choice",
    "check_fraction",
    "check_positive_int",
    "check_scores",
]

#: Magnitudes at or above this are fill values (1e20 marks land or missing data), not data.
FILL_VALUE_THRESHOLD = 1e10


def as_tensor(value, name: str) -> torch.Tensor:
    """``value`` as a tensor (numpy arrays and nested lists converted, tensors as they are)."""
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, np.ma.MaskedArray):
        raise InputError(
            f"{name} is a masked array; fill the masked points first, e.g. {name}.filled(0) (and pass the mask "
            "separately where a function takes one, e.g. sequence_to_image(mask=...))"
        )
    try:
        return torch.as_tensor(np.asarray(value))
    except (TypeError, ValueError, RuntimeError) as error:
        raise InputError(f"{name} must be a tensor or an array, got {type(value).__name__}") from error


def check_finite(values: torch.Tensor, name: str, fill_values: bool = True) -> torch.Tensor:
    """``values`` unchanged, or an :class:`InputError` for NaN, inf or fill values (``>= 1e10``).

    ``fill_values=False`` checks for NaN and inf only (for computed values such as relevance,
    which have no fill values but may be large).
    """
    if not values.is_floating_point() or values.numel() == 0:
        return values
    # One pass in the common case: max(|x|) is NaN if any value is, and inf if any value is.
    largest = values.detach().abs().max()
    if bool(largest < FILL_VALUE_THRESHOLD) or (not fill_values and bool(torch.isfinite(largest))):
        return values
    bad = ~torch.isfinite(values)
    if bool(bad.any()):
        first = tuple(int(i) for i in bad.nonzero()[0])
        raise InputError(
            f"{name} contains {int(bad.sum())} NaN/inf value(s) (first at index {first}). Mask missing values and "
            "fill them (e.g. with 0) first; lrp_widgets.data loaders do this."
        )
    big = values.abs() >= FILL_VALUE_THRESHOLD
    first = tuple(int(i) for i in big.nonzero()[0])
    raise InputError(
        f"{name} contains {int(big.sum())} value(s) of magnitude >= {FILL_VALUE_THRESHOLD:g} (first at index "
        f"{first}, value {values[first].item():g}): these look like fill values marking missing data (1e20 marks "
        "land in netCDF files). Mask them and fill with 0 first."
    )


def _model_tensors(model: nn.Module):
    """Every parameter, then every buffer, of ``model`` (shared ones once, in ``model.parameters()`` order).

    Read from each module's own dicts: ``model.parameters()`` builds a prefixed name for every tensor,
    ~5x the cost on a transformer's few dozen modules, and explain asks on every call.
    """
    modules = list(model.modules())
    seen = set()
    for kind in ("_parameters", "_buffers"):
        for module in modules:
            for tensor in getattr(module, kind).values():
                if tensor is not None and id(tensor) not in seen:
                    seen.add(id(tensor))
                    yield tensor


def _model_dtype_device(model: nn.Module):
    for tensor in _model_tensors(model):
        if tensor.is_floating_point():
            return tensor.dtype, tensor.device
    return None, None


def check_input(x, model: nn.Module | None = None, name: str = "x") -> torch.Tensor:
    """``x`` as a finite float tensor on the model's device and dtype, or a clear error."""
    x = as_tensor(x, name)
    dtype, device = _model_dtype_device(model) if model is not None else (None, None)
    if not x.is_floating_point():
        x = x.to(dtype or torch.get_default_dtype())
    if x.dim() == 0:
        raise InputError(f"{name} is a scalar; pass a batch with the samples along the first axis, e.g. x[None]")
    check_finite(x, name)
    if dtype is not None:
        x = x.to(dtype=dtype, device=device)
    return x


def check_batch(x, name: str = "x", min_dims: int = 2) -> torch.Tensor:
    """A finite floating-point batch ``(N, ...)`` with at least ``min_dims`` axes, detached."""
    x = as_tensor(x, name).detach()
    if x.ndim < min_dims:
        raise InputError(
            f"{name} must be a batch: shape (N, D) or (N, C, *spatial), got {tuple(x.shape)}; "
            f"add the batch axis with {name}.unsqueeze(0)"
        )
    if not x.is_floating_point():
        raise InputError(f"{name} must hold floating-point numbers, got {x.dtype}; convert it with {name}.float()")
    return check_finite(x, name)


def resolve_target(target, output: torch.Tensor, name: str = "target") -> torch.Tensor:
    """The explained class of each sample, ``(N,)`` int64 on the output's device.

    Parameters
    ----------
    target : None, int, sequence or tensor
        ``None``: the predicted class (``argmax`` of ``output``); one index for every sample; or
        one index per sample (floats are accepted when they are whole numbers).
    output : tensor (N, n_outputs)
        The model's scores.
    name : str
        How the message calls the argument (``"target"``, ``"labels"``, ``"data.y"``).
    """
    n, n_outputs = output.shape
    if target is None:
        return output.argmax(1)
    if isinstance(target, (bool, np.bool_)):
        raise InputError(f"{name} must be a class index (int), got {target!r}")
    if isinstance(target, (int, np.integer)):
        index = torch.full((n,), int(target), dtype=torch.long, device=output.device)
    else:
        index = as_tensor(target, name)
        if index.is_floating_point() or index.is_complex():
            if index.is_complex() or not bool((index == index.round()).all()):
                raise InputError(f"{name} must hold class indices (integers), got {index}")
        index = index.to(torch.long, copy=True).to(output.device).reshape(-1)
        if index.numel() == 1:
            index = index.expand(n).clone()
        if index.numel() != n:
            raise InputError(f"{name} has {index.numel()} entries for {n} samples; give one class per sample (or one for all)")
    if n and bool(((index < 0) | (index >= n_outputs)).any()):
        shown = index.tolist() if index.numel() < 20 else "[...]"
        raise InputError(
            f"{name} {shown} is out of range: the model has {n_outputs} output(s), so classes are 0..{n_outputs - 1}"
        )
    return index


def check_choice(value, choices: Sequence[str], name: str) -> str:
    """``value`` if it is one of ``choices``."""
    if not isinstance(value, str) or value not in choices:
        raise InputError(f"unknown {name} {value!r}; choose one of {', '.join(map(repr, choices))}")
    return value


def check_fraction(fraction, name: str = "fraction") -> float:
    """A number in [0, 1]."""
    try:
        value = float(fraction)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number in [0, 1], got {fraction!r}") from None
    if not 0.0 <= value <= 1.0 or math.isnan(value):
        raise InputError(f"{name} must lie in [0, 1] (a share of the input features), got {fraction!r}")
    return value


def check_positive_int(value, name: str, hint: str = "") -> int:
    """An integer >= 1 (bools refused)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InputError(f"{name} must be an integer >= 1, got {value!r}" + (f"; {hint}" if hint else ""))
    return int(value)


def check_scores(output, n: int) -> torch.Tensor:
    """``output`` if it is a (n, classes) tensor of scores, or an error saying how to get one."""
    if not isinstance(output, torch.Tensor) or output.ndim != 2 or output.shape[0] != n:
        shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
        raise InputError(
            f"the model must return class scores of shape (batch, classes), got {shape}; "
            "wrap it so that it does (e.g. flatten or select the classifier output)"
        )
    return output
