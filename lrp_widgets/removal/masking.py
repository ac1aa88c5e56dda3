"""Input checks, units (pixels or patches), ranking, baselines and the one masking step of every removal."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from ..engine.checks import (
    InputError,
    as_tensor,
    check_batch,
    check_choice,
    check_finite,
    check_fraction,
    check_positive_int,
)

ORDERS = ("morf", "lerf", "random")
BASELINES = ("zero", "mean", "sample_mean", "blur", "noise")
SCORES = ("probability", "logit")

# Separate random streams for the random order and the noise baseline: seeding both with the
# same number would make the noise value of a pixel a function of its random rank.
_STREAM_ORDER = 1
_STREAM_NOISE = 2


# ----------------------------------------------------------------------------------------------
# validation
# ----------------------------------------------------------------------------------------------
def _check_inputs(x, relevance) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate ``x`` and ``relevance``; return them as tensors (relevance detached, x's dtype)."""
    x = check_batch(x, "x")
    relevance = check_finite(as_tensor(relevance, "relevance").detach(), "relevance", fill_values=False)
    allowed = [tuple(x.shape)]
    if x.ndim >= 3:
        # relevance already summed over channels (keepdim) is fine: units span all channels anyway
        allowed.append((x.shape[0], 1, *x.shape[2:]))
    if tuple(relevance.shape) not in allowed:
        raise InputError(
            f"relevance has shape {tuple(relevance.shape)} but x has shape {tuple(x.shape)}; "
            f"pass the relevance of these inputs (Explanation.relevance has x's shape)"
            + (f" or its channel sum of shape {allowed[1]}" if len(allowed) > 1 else "")
        )
    return x, relevance.to(dtype=x.dtype, device=x.device)


# ----------------------------------------------------------------------------------------------
# units, ranking, baselines, masks: the one implementation every removal goes through
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Units:
    """How the features of one sample group into removable units (pixels or patches)."""

    spatial: tuple  # spatial shape of one sample ((D,) for flat inputs)
    has_channels: bool  # x is (N, C, *spatial) rather than (N, D)
    unit_of_position: torch.Tensor  # (prod(spatial),) long: the unit each spatial position belongs to
    n_units: int

    @classmethod
    def of(cls, shape: Sequence[int], patch: int, device=None) -> "_Units":
        has_channels = len(shape) >= 3
        spatial = tuple(shape[2:]) if has_channels else (shape[1],)
        # Block coordinates of every position; squares at the far border may be cut short.
        blocks = np.indices(spatial).reshape(len(spatial), -1) // patch
        n_blocks = tuple(-(-size // patch) for size in spatial)
        unit = np.ravel_multi_index(tuple(blocks), n_blocks)
        return cls(spatial, has_channels, torch.as_tensor(unit, device=device), int(np.prod(n_blocks)))

    def unit_relevance(self, relevance: torch.Tensor) -> torch.Tensor:
        """Relevance per unit, shape (N, n_units): summed over channels and over each patch."""
        per_position = relevance.sum(1) if self.has_channels else relevance
        per_position = per_position.reshape(relevance.shape[0], -1)
        out = per_position.new_zeros(relevance.shape[0], self.n_units)
        return out.index_add_(1, self.unit_of_position, per_position)

    def count(self, fraction: float) -> int:
        """Number of units removed at ``fraction`` (rounded half up, so 0 -> 0 and 1 -> all)."""
        return int(math.floor(fraction * self.n_units + 0.5))


def _generator(seed: int, stream: int, device) -> torch.Generator:
    # SeedSequence mixes (seed, stream) into independent, reproducible states.
    state = int(np.random.SeedSequence([int(seed), stream]).generate_state(1)[0])
    generator = torch.Generator(device=device)
    generator.manual_seed(state)
    return generator


def _unit_rank(unit_relevance: torch.Tensor, order: str, seed: int) -> torch.Tensor:
    """Removal position of every unit, shape (N, U): rank 0 is removed first.

    All three orders start from one seeded random permutation per sample: "random" is that
    permutation, "morf"/"lerf" stable-sort it by relevance, so ties (e.g. the many exact zeros of
    blank background) are broken at random instead of by position, and a constant relevance map
    gives exactly the random order.
    """
    n, n_units = unit_relevance.shape
    keys = torch.rand(n, n_units, generator=_generator(seed, _STREAM_ORDER, "cpu"))
    sequence = keys.argsort(dim=1).to(unit_relevance.device)
    if order != "random":
        by_relevance = unit_relevance.gather(1, sequence).argsort(dim=1, descending=(order == "morf"), stable=True)
        sequence = sequence.gather(1, by_relevance)
    positions = torch.arange(n_units, device=unit_relevance.device).expand(n, n_units)
    return torch.empty_like(sequence).scatter_(1, sequence, positions)


def rank_units(relevance, order: str = "morf", patch: int = 1, seed: int = 0) -> torch.Tensor:
    """Position of every unit (pixel or patch) in the removal order.

    Parameters
    ----------
    relevance : torch.Tensor
        Relevance of shape (N, D) or (N, C, *spatial); channels are summed, patches summed.
    order : {"morf", "lerf", "random"}
        Most relevant first, least relevant first, or a seeded random order (relevance unused).
    patch : int
        Side of the square units (1: single pixels).
    seed : int
        Seed of the random order.

    Returns
    -------
    torch.Tensor
        Long tensor (N, n_units): ``rank[i, u]`` is the step at which unit ``u`` of sample ``i``
        is removed (0 first). Units are numbered row-major over the patch grid.
    """
    relevance = check_finite(as_tensor(relevance, "relevance").detach(), "relevance", fill_values=False)
    check_choice(order, ORDERS, "order")
    patch = check_positive_int(patch, "patch", "use 1 for single pixels")
    units = _Units.of(relevance.shape, patch, relevance.device)
    return _unit_rank(units.unit_relevance(relevance), order, seed)


def _gaussian_blur(x: torch.Tensor, sigma: float, has_channels: bool) -> torch.Tensor:
    """Separable Gaussian blur over the spatial axes, borders replicated."""
    radius = max(1, int(math.ceil(3 * sigma)))
    offsets = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = (kernel / kernel.sum()).view(1, 1, -1)
    first_spatial = 2 if has_channels else 1
    out = x
    for axis in range(first_spatial, x.ndim):
        moved = out.movedim(axis, -1)
        shape = moved.shape
        line = moved.reshape(-1, 1, shape[-1])
        # replicate padding is defined for any length; reflect would need length > radius
        line = torch.nn.functional.pad(line, (radius, radius), mode="replicate")
        line = torch.nn.functional.conv1d(line, kernel)
        out = line.reshape(shape).movedim(-1, axis)
    return out


def make_baseline(
    x,
    baseline="mean",
    seed: int = 0,
    data_mean=None,
    blur_sigma: float = 1.0,
    data_range=None,
) -> torch.Tensor:
    """The values removed features are replaced with, one per feature of ``x``.

    Parameters
    ----------
    x : torch.Tensor
        Inputs, (N, D) or (N, C, *spatial).
    baseline : str or torch.Tensor
        - ``"zero"``: 0 everywhere.
        - ``"mean"``: the data mean. ``data_mean`` if given (anything broadcastable to ``x``, e.g. a
          per-pixel mean image of the training set); otherwise computed from the batch, per
          channel for images (over samples and positions: a flat, content-free value) and per
          feature for (N, D) inputs (features have their own scales).
        - ``"sample_mean"``: each sample's own mean, per channel for images.
        - ``"blur"``: a Gaussian blur of the sample (``blur_sigma`` in pixels): removes detail but
          keeps the local brightness, so removal creates fewer sharp edges.
        - ``"noise"``: seeded uniform noise in ``data_range`` (default: the batch's min and max).
        - a tensor broadcastable to ``x``.
    seed : int
        Seed of the noise baseline.
    data_mean : torch.Tensor or float, optional
        The mean for ``"mean"``.
    blur_sigma : float
        Standard deviation of the Gaussian blur, in pixels.
    data_range : (float, float), optional
        Range of the noise baseline.

    Returns
    -------
    torch.Tensor
        Shape of ``x`` (possibly an expanded view: do not write into it).
    """
    x = as_tensor(x, "x").detach()
    has_channels = x.ndim >= 3
    if isinstance(baseline, (torch.Tensor, np.ndarray)):
        value = check_finite(as_tensor(baseline, "baseline").detach().to(dtype=x.dtype, device=x.device), "baseline")
        try:
            return value.expand(x.shape)
        except RuntimeError:
            raise InputError(
                f"baseline tensor of shape {tuple(value.shape)} does not broadcast to x's shape "
                f"{tuple(x.shape)}; give one value per feature, per channel (C, 1, 1) or a scalar"
            ) from None
    check_choice(baseline, BASELINES, "baseline")
    if baseline == "zero":
        return torch.zeros((), dtype=x.dtype, device=x.device).expand(x.shape)
    if baseline == "mean":
        if data_mean is not None:
            return make_baseline(x, torch.as_tensor(data_mean, dtype=x.dtype))
        axes = [0, *range(2, x.ndim)] if has_channels else [0]
        return x.mean(dim=axes, keepdim=True).expand(x.shape)
    if baseline == "sample_mean":
        axes = list(range(2, x.ndim)) if has_channels else [1]
        return x.mean(dim=axes, keepdim=True).expand(x.shape)
    if baseline == "blur":
        if not blur_sigma > 0:
            raise InputError(f"blur_sigma must be > 0 pixels, got {blur_sigma!r}")
        return _gaussian_blur(x, float(blur_sigma), has_channels)
    # noise
    low, high = (float(x.min()), float(x.max())) if data_range is None else map(float, data_range)
    if not high >= low:
        raise InputError(f"data_range must be (low, high) with low <= high, got {data_range!r}")
    noise = torch.rand(x.shape, generator=_generator(seed, _STREAM_NOISE, "cpu"), dtype=x.dtype)
    return (low + (high - low) * noise).to(x.device)


def _removed(rank: torch.Tensor, counts: torch.Tensor, units: _Units) -> torch.Tensor:
    """Boolean mask of removed features for rows of ranks and their removal counts.

    ``rank`` (B, U), ``counts`` (B,) -> (B, 1, *spatial) for inputs with channels (broadcasts over
    them), (B, D) otherwise.
    """
    removed_units = rank < counts[:, None]
    removed = removed_units[:, units.unit_of_position].reshape(rank.shape[0], *units.spatial)
    return removed.unsqueeze(1) if units.has_channels else removed


def perturb(
    x,
    relevance,
    fraction: float,
    order: str = "morf",
    baseline="mean",
    patch: int = 1,
    seed: int = 0,
    data_mean=None,
    blur_sigma: float = 1.0,
    data_range=None,
) -> torch.Tensor:
    """The inputs with ``fraction`` of their units removed, as one step of a removal curve.

    Exactly the input :func:`removal_curve` feeds the model at that fraction (same ranking,
    same baseline, same rounding), for showing what the model saw.

    Parameters
    ----------
    x, relevance : torch.Tensor
        Inputs and their relevance (same shape, or relevance summed over channels with keepdim).
    fraction : float
        Share of units to remove, in [0, 1].
    order, baseline, patch, seed, data_mean, blur_sigma, data_range
        As in :func:`removal_curve` and :func:`make_baseline`.

    Returns
    -------
    torch.Tensor
        A new tensor of x's shape; ``x`` is not modified.

    Examples
    --------
    >>> half = perturb(x, explanation.relevance, 0.5, order="morf", baseline="zero")
    """
    x, relevance = _check_inputs(x, relevance)
    fraction = check_fraction(fraction)
    check_choice(order, ORDERS, "order")
    patch = check_positive_int(patch, "patch", "use 1 for single pixels")
    units = _Units.of(x.shape, patch, x.device)
    rank = _unit_rank(units.unit_relevance(relevance), order, seed)
    fill = make_baseline(x, baseline, seed, data_mean, blur_sigma, data_range)
    counts = torch.full((x.shape[0],), units.count(fraction), device=x.device)
    return torch.where(_removed(rank, counts, units), fill, x)
