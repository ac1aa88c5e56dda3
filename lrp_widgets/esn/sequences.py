"""Images as sequences of columns and back, the near-equal pieces of slicing, and the leak-only theory.

Leak-only theory: if relevance travelled back only along the leak path ``(1 - alpha) x(t-1)``,
a column ``k`` steps before the end of its piece would keep ``(1 - alpha)^k`` of it, a decay of
``-log(1 - alpha)`` per step (see the notes of :mod:`lrp_widgets.esn` for why the measured decay
is far smaller). Everything here that needs the pieces uses :func:`piece_bounds`.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ..engine.checks import FILL_VALUE_THRESHOLD, InputError, as_tensor as _as_tensor, check_finite as _check_finite

# Kept under its old name; the one threshold lives in lrp_widgets.engine.checks.
_FILL_THRESHOLD = FILL_VALUE_THRESHOLD
_DIRECTIONS = ("left_to_right", "right_to_left")


def _check_sequences(X, n_inputs: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    X = _as_tensor(X, "X")
    if X.ndim != 3:
        hints = {2: " (one sequence? add a batch axis: X[None])", 4: " (images? convert them with image_to_sequence(images))"}
        hint = hints.get(X.ndim, "")
        raise InputError(f"X must have shape (N, T, F) = (samples, time steps, features), got {tuple(X.shape)}{hint}")
    if X.shape[2] != n_inputs:
        raise InputError(
            f"X has {X.shape[2]} features per time step but the ESN was built with n_inputs={n_inputs}; "
            "for images fed column by column n_inputs = channels * height"
        )
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise InputError(f"X is empty: shape {tuple(X.shape)}")
    if not (X.is_floating_point() or X.dtype in (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8, torch.bool)):
        raise InputError(f"X must hold real numbers, got dtype {X.dtype}")
    _check_finite(X, "X")
    return X.to(device=device, dtype=dtype)


def piece_bounds(n_steps: int, slices: int = 1) -> list[tuple[int, int]]:
    """``[(start, stop), ...]``: ``n_steps`` cut into ``slices`` consecutive near-equal pieces.

    ``numpy.array_split`` sizes (the first pieces one longer). The ESN, the decay measurement and
    the leak-only profile all cut sequences with this function.
    """
    if slices > n_steps:
        raise InputError(f"slices={slices} is more than the {n_steps} time steps of X; use at most {n_steps}")
    base, extra = divmod(n_steps, slices)
    bounds, start = [], 0
    for index in range(slices):
        stop = start + base + (1 if index < extra else 0)
        bounds.append((start, stop))
        start = stop
    return bounds


_piece_bounds = piece_bounds  # old name


def piece_lags(n_steps: int, slices: int = 1) -> np.ndarray:
    """(n_steps,) int: how many steps each column lies before the last column of its piece."""
    lags = np.empty(n_steps, dtype=np.int64)
    for start, stop in piece_bounds(n_steps, slices):
        lags[start:stop] = np.arange(stop - start - 1, -1, -1)
    return lags


def leak_only_decay_rate(leak_rate: float) -> float:
    """The leak-only decay per step, ``-log(1 - leak_rate)`` (infinite at leak rate 1)."""
    return math.inf if leak_rate >= 1 else -math.log1p(-leak_rate)


def leak_only_profile(n_steps: int, leak_rate: float, slices: int = 1) -> np.ndarray:
    """``alpha (1 - alpha)^lag`` per column (lag within its piece, :func:`piece_lags`), max 1.

    The time profile relevance would have if it travelled back along the leak path only.
    """
    profile = leak_rate * (1 - leak_rate) ** piece_lags(n_steps, slices).astype(float)
    return profile / profile.max()


def _piece_groups(n_steps: int, slices: int) -> list[list[int]]:
    """Indices of pieces that share a length, so that each group runs as one stacked batch."""
    groups: dict[int, list[int]] = {}
    for index, (start, stop) in enumerate(_piece_bounds(n_steps, slices)):
        groups.setdefault(stop - start, []).append(index)
    return list(groups.values())


def _check_direction(direction: str) -> None:
    if direction not in _DIRECTIONS:
        raise ValueError(f"direction must be one of {_DIRECTIONS}, got {direction!r}")


def image_to_sequence(images, direction: str = "left_to_right") -> torch.Tensor:
    """Images as sequences of columns: (N, C, H, W) or (N, H, W) -> (N, T=W, F=C*H).

    Time step t is image column t (``"left_to_right"``) or column W-1-t (``"right_to_left"``);
    the features of a step are the column's pixels, channel by channel, top to bottom.
    Missing values must be filled first (see the module notes on masked data).
    """
    _check_direction(direction)
    images = _as_tensor(images, "images")
    if images.ndim == 3:
        images = images[:, None]
    if images.ndim != 4:
        raise ValueError(f"images must have shape (N, C, H, W) or (N, H, W), got {tuple(images.shape)}")
    n, channels, height, width = images.shape
    sequence = images.permute(0, 3, 1, 2).reshape(n, width, channels * height)
    if direction == "right_to_left":
        sequence = sequence.flip(1)
    return sequence.contiguous()


def sequence_to_image(sequence, channels: int = 1, direction: str = "left_to_right", mask=None) -> torch.Tensor:
    """Inverse of :func:`image_to_sequence`: (N, T, F) -> (N, channels, F // channels, T).

    Use it to draw relevance as an image. ``mask`` (H, W) bool, True where data is valid (e.g.
    ``enso.ocean``): masked points become NaN so that plots show them as masked, not as zero.
    """
    _check_direction(direction)
    sequence = _as_tensor(sequence, "sequence")
    if sequence.ndim != 3:
        raise ValueError(f"sequence must have shape (N, T, F), got {tuple(sequence.shape)}")
    n, n_steps, n_features = sequence.shape
    if n_features % channels:
        raise ValueError(f"{n_features} features per step cannot be split into {channels} channels")
    if direction == "right_to_left":
        sequence = sequence.flip(1)
    images = sequence.reshape(n, n_steps, channels, n_features // channels).permute(0, 2, 3, 1).contiguous()
    if mask is not None:
        mask = _as_tensor(mask, "mask").to(device=images.device, dtype=torch.bool)
        if mask.shape != images.shape[2:]:
            raise ValueError(f"mask must have the image shape {tuple(images.shape[2:])}, got {tuple(mask.shape)}")
        if not images.is_floating_point():
            images = images.to(torch.get_default_dtype())
        images = images.masked_fill(~mask, float("nan"))
    return images
