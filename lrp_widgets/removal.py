"""Removal (pixel-flipping) curves, the feature-removal experiment and dataset-level input pruning.

REFERENCE.md §3. Input features are ranked by relevance and replaced by a baseline step by step;
the model's score for the originally predicted class is recorded after every step:

- MoRF (most relevant first) should make the score fall fastest, LeRF (least relevant first)
  slowest, a random order in between. AOPC, the area over the perturbation curve,
  ``mean_k (f(x) - f(x^(k)))`` over the steps ``k = 0..L``, summarises a curve in one number.
- :func:`removal_experiment` is the feature-removal paper's table: accuracy and confidence with
  nothing, the least relevant 15 %, the most relevant 15 % and a random 15 % removed.
- :func:`prune_inputs` is the paper's efficiency claim: rank pixels by mean |relevance| over the
  training set, keep the top fraction for every sample, retrain, and compare with a random keep.

Everything that removes features goes through one ranking (:func:`rank_units`) and one masking
step (:func:`perturb` / the curve's batched loop share ``_removed``), so a curve, the widget's
"show me the input at 30 %" view and the experiment can never disagree.

Conventions (our choices, REFERENCE.md is silent on them):

- ``x`` of shape ``(N, C, *spatial)`` is an image (or a sequence) with channels: one *unit* is a
  spatial position, removed in every channel at once, ranked by its relevance summed over channels.
  ``x`` of shape ``(N, D)`` is a plain feature vector: one unit is one feature.
- ``patch = p > 1`` groups units into ``p x p`` squares (``p``-long segments for 1-D inputs),
  ranked by their summed relevance; squares at the border may be smaller. Fractions then count
  patches, not pixels.
- MoRF ranks by signed relevance (most positive first), LeRF the reverse, so LeRF removes the
  evidence *against* the class first. Ties are broken by a seeded random order (not by position:
  blank background would otherwise be removed top row first), so every curve is reproducible.
- ``k = round(fraction * n_units)`` units are removed at a fraction.
"""
from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch

from .engine.modes import evaluating

__all__ = [
    "ORDERS",
    "BASELINES",
    "SCORES",
    "RemovalCurve",
    "RemovalExperiment",
    "PruningResult",
    "removal_curve",
    "removal_experiment",
    "prune_inputs",
    "perturb",
    "rank_units",
    "make_baseline",
]

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
def _as_tensor(value, name: str) -> torch.Tensor:
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(value)
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor (or numpy array), got {type(value).__name__}")
    return value


def _check_finite(tensor: torch.Tensor, name: str) -> None:
    if tensor.is_floating_point() and not torch.isfinite(tensor).all():
        bad = int((~torch.isfinite(tensor)).sum())
        raise ValueError(
            f"{name} holds {bad} NaN or inf value(s); removal curves need finite numbers "
            f"(replace or mask them first, e.g. torch.nan_to_num({name}))"
        )


def _check_choice(value, choices: Sequence[str], name: str) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"unknown {name} {value!r}; choose one of {', '.join(map(repr, choices))}")
    return value


def _check_inputs(x, relevance) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate ``x`` and ``relevance``; return them as tensors (relevance detached, x's dtype)."""
    x = _as_tensor(x, "x").detach()
    if x.ndim < 2:
        raise ValueError(
            f"x must be a batch: shape (N, D) or (N, C, *spatial), got {tuple(x.shape)}; "
            "add the batch axis with x.unsqueeze(0)"
        )
    if not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor, got {x.dtype}")
    relevance = _as_tensor(relevance, "relevance").detach()
    allowed = [tuple(x.shape)]
    if x.ndim >= 3:
        # relevance already summed over channels (keepdim) is fine: units span all channels anyway
        allowed.append((x.shape[0], 1, *x.shape[2:]))
    if tuple(relevance.shape) not in allowed:
        raise ValueError(
            f"relevance has shape {tuple(relevance.shape)} but x has shape {tuple(x.shape)}; "
            f"pass the relevance of these inputs (Explanation.relevance has x's shape)"
            + (f" or its channel sum of shape {allowed[1]}" if len(allowed) > 1 else "")
        )
    _check_finite(x, "x")
    _check_finite(relevance, "relevance")
    return x, relevance.to(dtype=x.dtype, device=x.device)


def _check_fraction(fraction, name: str = "fraction") -> float:
    try:
        value = float(fraction)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number in [0, 1], got {fraction!r}") from None
    if not 0.0 <= value <= 1.0 or math.isnan(value):
        raise ValueError(f"{name} must lie in [0, 1] (a share of the input features), got {fraction!r}")
    return value


def _check_positive_int(value, name: str, hint: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}; {hint}")
    return int(value)


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
    relevance = _as_tensor(relevance, "relevance").detach()
    _check_choice(order, ORDERS, "order")
    patch = _check_positive_int(patch, "patch", "use 1 for single pixels")
    _check_finite(relevance, "relevance")
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
    x = _as_tensor(x, "x").detach()
    has_channels = x.ndim >= 3
    if isinstance(baseline, (torch.Tensor, np.ndarray)):
        value = _as_tensor(baseline, "baseline").detach().to(dtype=x.dtype, device=x.device)
        _check_finite(value, "baseline")
        try:
            return value.expand(x.shape)
        except RuntimeError:
            raise ValueError(
                f"baseline tensor of shape {tuple(value.shape)} does not broadcast to x's shape "
                f"{tuple(x.shape)}; give one value per feature, per channel (C, 1, 1) or a scalar"
            ) from None
    _check_choice(baseline, BASELINES, "baseline")
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
            raise ValueError(f"blur_sigma must be > 0 pixels, got {blur_sigma!r}")
        return _gaussian_blur(x, float(blur_sigma), has_channels)
    # noise
    low, high = (float(x.min()), float(x.max())) if data_range is None else map(float, data_range)
    if not high >= low:
        raise ValueError(f"data_range must be (low, high) with low <= high, got {data_range!r}")
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
    fraction = _check_fraction(fraction)
    _check_choice(order, ORDERS, "order")
    patch = _check_positive_int(patch, "patch", "use 1 for single pixels")
    units = _Units.of(x.shape, patch, x.device)
    rank = _unit_rank(units.unit_relevance(relevance), order, seed)
    fill = make_baseline(x, baseline, seed, data_mean, blur_sigma, data_range)
    counts = torch.full((x.shape[0],), units.count(fraction), device=x.device)
    return torch.where(_removed(rank, counts, units), fill, x)


# ----------------------------------------------------------------------------------------------
# model evaluation
# ----------------------------------------------------------------------------------------------
def _logits(model: torch.nn.Module, batch: torch.Tensor) -> torch.Tensor:
    out = model(batch)
    if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[0] != batch.shape[0]:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(
            f"the model must return class scores of shape (batch, classes), got {shape}; "
            "wrap it so that it does (e.g. flatten or select the classifier output)"
        )
    return out


def _predict(model, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Logits for ``x`` in batches of ``batch_size``."""
    return torch.cat([_logits(model, x[i : i + batch_size]) for i in range(0, len(x), batch_size)])


def _scores(logits: torch.Tensor, target: torch.Tensor, score: str) -> torch.Tensor:
    values = logits.softmax(dim=1) if score == "probability" else logits
    return values.gather(1, target[:, None]).squeeze(1)


def _check_target(target, n: int, n_classes: int, device, name: str = "target") -> torch.Tensor:
    target = torch.as_tensor(target, device=device)
    if target.is_floating_point() or target.is_complex():
        raise TypeError(f"{name} must hold integer class indices, got dtype {target.dtype}")
    target = target.long().expand(n) if target.ndim == 0 else target.long()
    if target.shape != (n,):
        raise ValueError(f"{name} must be one class index or one per sample ({n},), got shape {tuple(target.shape)}")
    if n and (target.min() < 0 or target.max() >= n_classes):
        raise ValueError(f"{name} holds class indices outside 0..{n_classes - 1} (the model has {n_classes} outputs)")
    return target


# ----------------------------------------------------------------------------------------------
# removal curves
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RemovalCurve:
    """One removal (pixel-flipping) curve per sample, and their summary.

    Attributes
    ----------
    fractions : torch.Tensor
        (steps + 1,) float64 share of units removed at each step, from 0 to 1 (float64 so that
        ``perturb(x, relevance, fraction)`` rounds to the same number of units).
    scores : torch.Tensor
        (N, steps + 1) score of ``target`` (probability or logit) at each step.
    correct : torch.Tensor
        (N, steps + 1) bool: the prediction equals ``labels`` (if given) or else ``target``
        (i.e. the original prediction survived).
    predictions : torch.Tensor
        (N, steps + 1) predicted class at each step.
    target : torch.Tensor
        (N,) class whose score is tracked: the original prediction unless one was given.
    labels : torch.Tensor or None
        (N,) true labels, when given.
    order, baseline, score : str
        How the curve was made (``baseline`` is ``"tensor"`` for a user tensor).
    patch, n_units : int
        Patch side and number of removable units per sample.
    """

    fractions: torch.Tensor
    scores: torch.Tensor
    correct: torch.Tensor
    predictions: torch.Tensor
    target: torch.Tensor
    labels: torch.Tensor | None
    order: str
    baseline: str
    score: str
    patch: int
    n_units: int

    @property
    def drops(self) -> torch.Tensor:
        """(N, steps + 1) ``f(x) - f(x^(k))``: how far the score has fallen at each step."""
        return self.scores[:, :1] - self.scores

    @property
    def aopc_per_sample(self) -> torch.Tensor:
        """(N,) area over the perturbation curve of each sample, mean over k = 0..L of the drop."""
        return self.drops.mean(dim=1)

    @property
    def aopc(self) -> float:
        """AOPC: mean over samples of mean over k = 0..L of ``f(x) - f(x^(k))``."""
        return float(self.aopc_per_sample.mean())

    @property
    def mean_scores(self) -> torch.Tensor:
        """(steps + 1,) score averaged over samples: the curve to plot."""
        return self.scores.mean(dim=0)

    @property
    def accuracy(self) -> torch.Tensor:
        """(steps + 1,) share of samples still correct at each step."""
        return self.correct.float().mean(dim=0)

    @property
    def label(self) -> str:
        """Legend text naming order, baseline and score, e.g. ``"MoRF, baseline 'mean'"``."""
        names = {"morf": "MoRF", "lerf": "LeRF", "random": "random"}
        text = f"{names[self.order]}, baseline {self.baseline!r}"
        return text + (f", {self.patch}x{self.patch} patches" if self.patch > 1 else "")

    def __repr__(self) -> str:
        return (
            f"RemovalCurve(order={self.order!r}, baseline={self.baseline!r}, score={self.score!r}, "
            f"samples={self.scores.shape[0]}, steps={len(self.fractions) - 1}, patch={self.patch}, "
            f"aopc={self.aopc:.4f})"
        )

    # Rich display in notebooks (lrp_widgets.display, imported on first use only).
    def _repr_mimebundle_(self, include=None, exclude=None):
        from .display import mimebundle

        return mimebundle(self, include=include, exclude=exclude)

    def _repr_png_(self):
        from .display import to_png

        return to_png(self)


def removal_curve(
    model: torch.nn.Module,
    x,
    relevance,
    order: str = "morf",
    baseline="mean",
    steps: int = 20,
    score: str = "probability",
    patch: int = 1,
    target=None,
    seed: int = 0,
    data_mean=None,
    *,
    labels=None,
    fractions=None,
    blur_sigma: float = 1.0,
    data_range=None,
    batch_size: int = 1024,
) -> RemovalCurve:
    """Remove input units step by step in relevance order and record the model's score.

    Parameters
    ----------
    model : torch.nn.Module
        Classifier returning (batch, classes) logits. Run in eval mode without gradients; its
        training flags are restored afterwards and nothing else about it changes.
    x : torch.Tensor
        Inputs (N, D) or (N, C, *spatial). Not modified.
    relevance : torch.Tensor
        Relevance of ``x`` (same shape, or summed over channels with keepdim), e.g.
        ``explain(model, x).relevance``.
    order : {"morf", "lerf", "random"}
        Most relevant first, least relevant first, or a seeded random order.
    baseline : {"zero", "mean", "sample_mean", "blur", "noise"} or torch.Tensor
        What removed units are replaced with; see :func:`make_baseline`.
    steps : int
        Number of removal steps L >= 1; the curve has L + 1 points, fractions ``k / L``.
    score : {"probability", "logit"}
        Softmax probability or logit of ``target``.
    patch : int
        Side of square units (1: single pixels); see the module docstring.
    target : int or torch.Tensor, optional
        Class (one, or one per sample) whose score is tracked; default: the model's prediction on
        the unperturbed input.
    seed : int
        Seed of the random order and the noise baseline.
    data_mean : torch.Tensor or float, optional
        Mean for ``baseline="mean"`` (default: computed from ``x``).
    labels : torch.Tensor, optional
        True labels; ``correct`` then compares predictions with them instead of with ``target``.
    fractions : sequence of float, optional
        Explicit removal fractions instead of ``steps``: increasing, in [0, 1], starting at 0
        (the unperturbed input is AOPC's reference).
    blur_sigma, data_range
        Parameters of the ``"blur"`` and ``"noise"`` baselines.
    batch_size : int
        Images per forward pass. Steps are packed together (all samples of several steps in one
        batch), so a batch is full even when N is small; it bounds memory.

    Returns
    -------
    RemovalCurve

    Examples
    --------
    >>> explanation = explain(model, x)
    >>> morf = removal_curve(model, x, explanation.relevance, order="morf")
    >>> lerf = removal_curve(model, x, explanation.relevance, order="lerf")
    >>> morf.aopc > lerf.aopc
    True
    """
    x, relevance = _check_inputs(x, relevance)
    _check_choice(order, ORDERS, "order")
    _check_choice(score, SCORES, "score")
    patch = _check_positive_int(patch, "patch", "use 1 for single pixels")
    batch_size = _check_positive_int(batch_size, "batch_size", "it is the number of images per forward pass")
    if fractions is None:
        steps = _check_positive_int(steps, "steps", "a curve needs at least the points 0 and 1")
        fraction_values = torch.linspace(0.0, 1.0, steps + 1, dtype=torch.float64)
    else:
        values = [_check_fraction(f, "fractions") for f in np.atleast_1d(np.asarray(fractions, dtype=object))]
        if not values or values[0] != 0.0 or any(b <= a for a, b in zip(values, values[1:])):
            raise ValueError(
                f"fractions must increase strictly and start at 0 (the unperturbed input), got {list(values)}"
            )
        fraction_values = torch.tensor(values, dtype=torch.float64)

    n = x.shape[0]
    units = _Units.of(x.shape, patch, x.device)
    rank = _unit_rank(units.unit_relevance(relevance), order, seed)
    fill = make_baseline(x, baseline, seed, data_mean, blur_sigma, data_range)
    counts = torch.tensor([units.count(float(f)) for f in fraction_values], device=x.device)
    n_points = len(fraction_values)

    with evaluating(model):
        # Step 0 is the unperturbed input: it fixes the target before the other steps run.
        logits0 = _predict(model, x, batch_size)
        n_classes = logits0.shape[1]
        target = logits0.argmax(1) if target is None else _check_target(target, n, n_classes, x.device)
        if labels is not None:
            labels = _check_target(labels, n, n_classes, x.device, "labels")
        scores = torch.empty(n, n_points, dtype=logits0.dtype, device=x.device)
        predictions = torch.empty(n, n_points, dtype=torch.long, device=x.device)
        scores[:, 0] = _scores(logits0, target, score)
        predictions[:, 0] = logits0.argmax(1)

        # Pack (step, sample) pairs of the remaining steps into full batches: pair j is
        # step 1 + j // n of sample j % n. One batch can span several steps.
        total = (n_points - 1) * n
        for start in range(0, total, batch_size):
            pair = torch.arange(start, min(start + batch_size, total), device=x.device)
            step, sample = 1 + pair // n, pair % n
            removed = _removed(rank[sample], counts[step], units)
            logits = _logits(model, torch.where(removed, fill[sample], x[sample]))
            scores[sample, step] = _scores(logits, target[sample], score)
            predictions[sample, step] = logits.argmax(1)

    reference = target if labels is None else labels
    return RemovalCurve(
        fractions=fraction_values,
        scores=scores,
        correct=predictions == reference[:, None],
        predictions=predictions,
        target=target,
        labels=labels,
        order=order,
        baseline="tensor" if isinstance(baseline, (torch.Tensor, np.ndarray)) else baseline,
        score=score,
        patch=patch,
        n_units=units.n_units,
    )


# ----------------------------------------------------------------------------------------------
# the feature-removal paper's experiment
# ----------------------------------------------------------------------------------------------
def _relevance(model, x: torch.Tensor, composite, target, batch_size: int) -> torch.Tensor:
    """LRP relevance of ``x`` in batches (``target`` None: the predicted class)."""
    from .engine.explain import explain

    parts = []
    for start in range(0, len(x), batch_size):
        chunk_target = None if target is None else target[start : start + batch_size]
        explanation = explain(model, x[start : start + batch_size], target=chunk_target, composite=composite)
        parts.append(explanation.relevance.detach())
    return torch.cat(parts)


@dataclass(frozen=True)
class RemovalExperiment:
    """The feature-removal table: one row per condition.

    Attributes
    ----------
    conditions : tuple of str
        ``"none"``, ``"least relevant"``, ``"most relevant"``, ``"random"``.
    accuracy : tuple of float
        Share of samples classified correctly (against the true labels).
    confidence : tuple of float
        Mean softmax probability of the class predicted *after* removal (the paper's confidence).
    original_probability : tuple of float
        Mean softmax probability of the class predicted on the intact input.
    changed : tuple of float
        Share of samples whose prediction changed.
    fraction : float
        Share of units removed.
    baseline, composite : str
        What removed units were replaced with and which LRP composite ranked them.
    n_samples : int
    """

    conditions: tuple
    accuracy: tuple
    confidence: tuple
    original_probability: tuple
    changed: tuple
    fraction: float
    baseline: str
    composite: str
    n_samples: int

    def to_dict(self) -> dict:
        """``{condition: {"accuracy", "confidence", "original_probability", "changed"}}``."""
        return {
            condition: {
                "accuracy": self.accuracy[i],
                "confidence": self.confidence[i],
                "original_probability": self.original_probability[i],
                "changed": self.changed[i],
            }
            for i, condition in enumerate(self.conditions)
        }

    def __getitem__(self, condition: str) -> dict:
        return self.to_dict()[condition]

    def __repr__(self) -> str:
        share = f"{self.fraction:.0%}"
        lines = [
            f"Feature removal: {share} of the input removed (baseline {self.baseline!r}, "
            f"ranked by LRP {self.composite!r}, {self.n_samples} samples)",
            f"{'removed':<22}{'accuracy':>10}{'confidence':>12}{'p(original)':>13}{'changed':>9}",
        ]
        for i, condition in enumerate(self.conditions):
            name = "nothing" if condition == "none" else f"{condition} {share}"
            lines.append(
                f"{name:<22}{self.accuracy[i]:>10.3f}{self.confidence[i]:>12.3f}"
                f"{self.original_probability[i]:>13.3f}{self.changed[i]:>9.3f}"
            )
        return "\n".join(lines)


def removal_experiment(
    model: torch.nn.Module,
    data,
    fraction: float = 0.15,
    composite="epsilon_plus_flat",
    baseline="mean",
    patch: int = 1,
    seed: int = 0,
    relevance=None,
    *,
    data_mean=None,
    batch_size: int = 1024,
) -> RemovalExperiment:
    """The feature-removal paper's table: remove the least / most relevant / a random share.

    For every sample, LRP relevance of the predicted class ranks the pixels; then ``fraction`` of
    them is removed (a) least relevant first, (b) most relevant first, (c) in a random order, and
    the model classifies the result. A faithful explanation makes (b) hurt far more than (a).

    Parameters
    ----------
    model : torch.nn.Module
        Trained classifier (not modified; training flags restored).
    data : object with ``.x`` and ``.y``
        Inputs and true labels, e.g. ``digits().test``.
    fraction : float
        Share of units removed in each condition (the paper: 0.15).
    composite : str or Composite
        LRP composite for the relevance (ignored when ``relevance`` is given).
    baseline : str or torch.Tensor
        Replacement values, see :func:`make_baseline`; ``"mean"`` uses ``data.x``'s mean.
    patch, seed, data_mean, batch_size
        As in :func:`removal_curve`.
    relevance : torch.Tensor, optional
        Precomputed relevance of ``data.x`` (skips the explanation).

    Returns
    -------
    RemovalExperiment
        ``repr`` is a readable table; ``to_dict()`` the numbers.

    Examples
    --------
    >>> removal_experiment(zoo.load("digits_cnn"), digits().test)
    """
    x, y = _as_tensor(data.x, "data.x").detach(), _as_tensor(data.y, "data.y")
    fraction = _check_fraction(fraction)
    batch_size = _check_positive_int(batch_size, "batch_size", "it is the number of images per forward pass")
    with evaluating(model):
        original = _predict(model, x, batch_size)
    y = _check_target(y, len(x), original.shape[1], x.device, "data.y")
    if relevance is None:
        relevance = _relevance(model, x, composite, None, batch_size)

    conditions = ("none", "least relevant", "most relevant", "random")
    orders = (None, "lerf", "morf", "random")
    predicted = original.argmax(1)
    table = {"accuracy": [], "confidence": [], "original_probability": [], "changed": []}
    for order in orders:
        if order is None:
            logits = original
        else:
            inputs = perturb(x, relevance, fraction, order, baseline, patch, seed, data_mean)
            with evaluating(model):
                logits = _predict(model, inputs, batch_size)
        probability = logits.softmax(1)
        now = logits.argmax(1)
        table["accuracy"].append(float((now == y).float().mean()))
        table["confidence"].append(float(probability.max(1).values.mean()))
        table["original_probability"].append(float(probability.gather(1, predicted[:, None]).mean()))
        table["changed"].append(float((now != predicted).float().mean()))
    return RemovalExperiment(
        conditions=conditions,
        **{key: tuple(values) for key, values in table.items()},
        fraction=fraction,
        baseline="tensor" if isinstance(baseline, (torch.Tensor, np.ndarray)) else baseline,
        composite=composite if isinstance(composite, str) else type(composite).__name__,
        n_samples=len(x),
    )


# ----------------------------------------------------------------------------------------------
# dataset-level input pruning
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PruningResult:
    """Test accuracy of models retrained on the most relevant (and on random) input units.

    Attributes
    ----------
    keep : tuple of float
        Fractions of units kept.
    kept_units : tuple of int
        Units (pixels) kept at each fraction, out of ``n_units``.
    input_size : tuple of int
        Input values the model still needs per sample (kept units times channels), out of
        ``full_input_size``: the saved input size.
    accuracy : tuple of float
        Test accuracy with the most relevant units kept.
    random_accuracy : tuple of float or None
        Test accuracy with a random subset of the same size kept (``None`` if not run).
    importance : torch.Tensor
        Mean |relevance| per unit over the training set (spatial shape): the ranking.
    keep_masks : torch.Tensor
        Bool (len(keep), *spatial): which positions each relevance-ranked model saw.
    composite : str
    epochs : int or None
        Epochs per model, ``None`` when a custom ``fit`` trained them.
    """

    keep: tuple
    kept_units: tuple
    n_units: int
    input_size: tuple
    full_input_size: int
    accuracy: tuple
    random_accuracy: tuple | None
    importance: torch.Tensor = field(repr=False)
    keep_masks: torch.Tensor = field(repr=False)
    composite: str = "epsilon"
    epochs: int | None = None

    def to_dict(self) -> dict:
        """``{keep: {"kept_units", "input_size", "accuracy", "random_accuracy"}}``."""
        return {
            q: {
                "kept_units": self.kept_units[i],
                "input_size": self.input_size[i],
                "accuracy": self.accuracy[i],
                "random_accuracy": None if self.random_accuracy is None else self.random_accuracy[i],
            }
            for i, q in enumerate(self.keep)
        }

    def __repr__(self) -> str:
        training = "custom fit" if self.epochs is None else f"{self.epochs} epochs per model"
        lines = [
            f"Input pruning by mean |relevance| over the training set (LRP {self.composite!r}, {training})",
            f"{'keep':>6}{'units':>11}{'input size':>17}{'accuracy':>10}"
            + (f"{'random keep':>13}" if self.random_accuracy is not None else ""),
        ]
        for i, q in enumerate(self.keep):
            size = f"{self.input_size[i]} ({self.input_size[i] / self.full_input_size:.0%})"
            line = f"{q:>6.0%}{f'{self.kept_units[i]}/{self.n_units}':>11}{size:>17}{self.accuracy[i]:>10.3f}"
            if self.random_accuracy is not None:
                line += f"{self.random_accuracy[i]:>13.3f}"
            lines.append(line)
        return "\n".join(lines)


def _with_inputs(data, x: torch.Tensor):
    """A copy of ``data`` with new inputs, split and labels unchanged."""
    if not dataclasses.is_dataclass(data):
        raise TypeError(
            f"prune_inputs needs a lrp_widgets Dataset (with .x, .y, .train, .test), got {type(data).__name__}; "
            "build one with lrp_widgets.data"
        )
    return dataclasses.replace(data, x=x)


def _keep_mask(importance: torch.Tensor, keep: float, units: _Units, order: str, seed: int) -> torch.Tensor:
    """Removed-feature mask (broadcastable over samples) keeping ``keep`` of the units.

    Keeping the most important share is removing the least important rest (``order="lerf"``), so
    this is the same ranking and masking a removal curve uses; ``order="random"`` keeps a seeded
    random subset. ``importance`` has one sample, so every sample gets the same mask.
    """
    rank = _unit_rank(units.unit_relevance(importance), order, seed)
    counts = torch.tensor([units.count(1.0 - keep)], device=importance.device)
    return _removed(rank, counts, units)


def _default_fit(epochs: int, seed: int) -> Callable:
    def fit(model, data):
        from .train import train

        train(model, data, epochs=epochs, seed=seed, progress=False)

    return fit


def prune_inputs(
    make_model: Callable,
    data,
    keep: Sequence[float] = (1.0, 0.5, 0.25, 0.1),
    epochs: int = 30,
    composite="epsilon",
    seed: int = 0,
    progress: bool = True,
    *,
    baseline="zero",
    compare_random: bool = True,
    fit: Callable | None = None,
    batch_size: int = 1024,
) -> PruningResult:
    """Rank input units by mean |relevance| over the training set, keep the top share, retrain.

    1. ``make_model(input_shape)`` is trained on all inputs of ``data.train``.
    2. LRP (``composite``, target: the true label) gives every training sample's relevance; the
       mean |relevance| per pixel (summed over channels) ranks the pixels.
    3. For every fraction in ``keep`` below 1, the other pixels are set to ``baseline`` in every
       sample (train and test), a fresh model is trained, and its test accuracy recorded. With
       ``compare_random``, the same is done with a seeded random subset of the same size.

    A constant input carries no information, so the value of ``baseline`` hardly matters after
    retraining; the point is the input size a model needs, reported per fraction.

    Parameters
    ----------
    make_model : callable
        ``make_model(input_shape) -> torch.nn.Module``, a fresh untrained model for inputs of
        shape ``input_shape`` (one sample, e.g. ``(1, 8, 8)``) returning ``data.n_classes`` logits.
        Called under ``torch.manual_seed(seed)`` (global RNG state restored after), so every
        model starts from the same weights.
    data : lrp_widgets Dataset
        With ``.x``, ``.y``, ``.train`` and ``.test`` (e.g. ``lrp_widgets.data.digits()``).
    keep : sequence of float
        Fractions of pixels to keep, in (0, 1]. 1 is the model of step 1 (not retrained).
    epochs : int
        Training epochs of every model (with the default ``fit``).
    composite : str or Composite
        LRP composite of the ranking. Default ``"epsilon"``: its input relevance is zero where the
        input is zero and so follows where the data is. A *flat* first layer (as in
        ``"epsilon_plus_flat"``) spreads relevance over the receptive field whatever the input
        values; after a dense first layer every pixel then gets the same mean |relevance| and the
        ranking is meaningless (a warning says so).
    seed : int
        Seed of model initialisation, training, ties in the ranking and the random subsets.
    progress : bool
        Show a tqdm progress bar over the models trained.
    baseline : str or torch.Tensor
        Value of the removed pixels (see :func:`make_baseline`; ``"mean"`` uses the training mean).
    compare_random : bool
        Also train on random subsets of the same sizes.
    fit : callable, optional
        ``fit(model, data)`` training ``model`` in place on ``data.train``; default
        ``lrp_widgets.train.train(model, data, epochs=epochs, seed=seed, progress=False)``.
    batch_size : int
        Samples per explanation / evaluation batch.

    Returns
    -------
    PruningResult
        ``repr`` is a readable table.

    Examples
    --------
    >>> from lrp_widgets import data, models
    >>> prune_inputs(lambda shape: models.MLP(shape, 10), data.digits(), keep=(1.0, 0.5))
    """
    from tqdm.auto import tqdm

    keep = tuple(_check_fraction(q, "keep") for q in np.atleast_1d(np.asarray(keep, dtype=float)))
    if not keep or min(keep) <= 0.0:
        raise ValueError(f"keep must hold fractions in (0, 1] (the share of pixels kept), got {keep}")
    epochs = _check_positive_int(epochs, "epochs", "every model needs at least one epoch of training")
    batch_size = _check_positive_int(batch_size, "batch_size", "it is the number of samples per batch")
    custom_fit = fit is not None
    fit = fit if custom_fit else _default_fit(epochs, seed)
    x = _as_tensor(data.x, "data.x").detach()
    _check_finite(x, "data.x")
    input_shape = tuple(x.shape[1:])
    units = _Units.of(x.shape, 1, x.device)
    train_x = data.train.x
    fill = make_baseline(x, baseline, seed, data_mean=train_x.mean(0) if isinstance(baseline, str) and baseline == "mean" else None)

    def fresh_model() -> torch.nn.Module:
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            return make_model(input_shape)

    def test_accuracy(model, inputs) -> float:
        test = _with_inputs(data, inputs).test
        with evaluating(model):
            predicted = _predict(model, test.x, batch_size).argmax(1)
        return float((predicted == test.y).float().mean())

    def retrained_accuracy(removed: torch.Tensor) -> float:
        inputs = torch.where(removed, fill, x)
        model = fresh_model()
        fit(model, _with_inputs(data, inputs))
        return test_accuracy(model, inputs)

    reduced = [q for q in keep if q < 1.0]
    bar = tqdm(total=1 + len(reduced) * (2 if compare_random else 1), disable=not progress, desc="prune_inputs")
    try:
        bar.set_postfix_str("all inputs")
        full_model = fresh_model()
        fit(full_model, data)
        bar.update()
        full_accuracy = test_accuracy(full_model, x)

        relevance = _relevance(full_model, train_x, composite, data.train.y, batch_size)
        importance = relevance.abs().mean(0, keepdim=True)
        spread = units.unit_relevance(importance)
        if float(spread.max() - spread.min()) <= 1e-6 * float(spread.abs().max()):
            warnings.warn(
                f"composite {composite!r} gives every input unit the same mean |relevance|, so the "
                "ranking is random; a flat first-layer rule on a dense layer does this. Use "
                "composite='epsilon' (or another input-aware rule) to rank inputs.",
                stacklevel=2,
            )

        accuracy, random_accuracy, masks = [], [], []
        for q in keep:
            removed = _keep_mask(importance, q, units, "lerf", seed)
            masks.append(~removed[0, 0] if units.has_channels else ~removed[0])
            if q == 1.0:
                accuracy.append(full_accuracy)
                random_accuracy.append(full_accuracy)
                continue
            bar.set_postfix_str(f"keep {q:.0%} (relevance)")
            accuracy.append(retrained_accuracy(removed))
            bar.update()
            if compare_random:
                # seed + 1: a subset independent of the permutation that broke ties above
                bar.set_postfix_str(f"keep {q:.0%} (random)")
                random_accuracy.append(retrained_accuracy(_keep_mask(importance, q, units, "random", seed + 1)))
                bar.update()
    finally:
        bar.close()

    kept_units = tuple(int(mask.sum()) for mask in masks)
    channels = x.shape[1] if units.has_channels else 1
    return PruningResult(
        keep=keep,
        kept_units=kept_units,
        n_units=units.n_units,
        input_size=tuple(k * channels for k in kept_units),
        full_input_size=int(np.prod(input_shape)),
        accuracy=tuple(accuracy),
        random_accuracy=tuple(random_accuracy) if compare_random else None,
        importance=spread[0].reshape(units.spatial),
        keep_masks=torch.stack(masks),
        composite=composite if isinstance(composite, str) else type(composite).__name__,
        epochs=None if custom_fit else epochs,
    )
