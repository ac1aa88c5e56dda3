"""Removal (pixel-flipping) curves and AOPC."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..engine.checks import InputError, as_tensor, check_batch, check_choice, check_fraction, check_positive_int, check_scores, resolve_target
from ..engine.explain import explain
from ..engine.modes import evaluating, predict as _predict_batches
from ..engine.results import Result, listed, plural
from ..engine.signatures import keyword_arguments
from .masking import ORDERS, SCORES, _Units, _check_inputs, _removed, _unit_rank, make_baseline


def _logits(model: torch.nn.Module, batch: torch.Tensor) -> torch.Tensor:
    return check_scores(model(batch), batch.shape[0])


def _predict(model, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Logits for ``x`` in batches of ``batch_size`` (eval mode, flags restored)."""
    return _predict_batches(model, x, batch_size)


def _scores(logits: torch.Tensor, target: torch.Tensor, score: str) -> torch.Tensor:
    values = logits.softmax(dim=1) if score == "probability" else logits
    return values.gather(1, target[:, None]).squeeze(1)


def _relevance(model, x: torch.Tensor, composite, target, batch_size: int) -> torch.Tensor:
    """LRP relevance of ``x`` in batches (``target`` None: the predicted class)."""
    parts = []
    for start in range(0, len(x), batch_size):
        chunk_target = target if target is None or np.ndim(target) == 0 else as_tensor(target, "target").reshape(-1)[start : start + batch_size]
        explanation = explain(model, x[start : start + batch_size], target=chunk_target, composite=composite)
        parts.append(explanation.relevance.detach())
    return torch.cat(parts)


# ----------------------------------------------------------------------------------------------
# removal curves
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RemovalCurve(Result):
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
    relevance : torch.Tensor or None
        The relevance that ranked the units (x's shape, or its channel sum).
    output : torch.Tensor or None
        (N, classes) the model's scores for the unperturbed input.
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
    relevance: torch.Tensor | None = None
    output: torch.Tensor | None = None

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

    def summary(self) -> str:
        """Order, baseline, score, samples, steps; the mean score from start to end, and AOPC."""
        mean = self.mean_scores.detach().double().cpu().numpy()
        n = self.scores.shape[0]
        return "\n".join([
            f"RemovalCurve: {self.label}, score {self.score}, {plural(n, 'sample')}, "
            f"{plural(len(self.fractions) - 1, 'step')} of {self.n_units} units",
            f"  target {listed(self.target, '{}')}, mean score {mean[0]:.3g} -> {mean[-1]:.3g}, "
            f"still correct at the end {float(self.accuracy[-1]):.0%}, AOPC {self.aopc:.4g}",
        ])

    def to_dict(self) -> dict:
        """Every field, plus ``aopc`` and ``mean_scores``."""
        fields = {name: getattr(self, name) for name in self.__dataclass_fields__}
        return {**fields, "aopc": self.aopc, "mean_scores": self.mean_scores}


@keyword_arguments("relevance", "order", "baseline", "steps", "score", "patch", "target", "seed", "data_mean")
def removal_curve(
    model: torch.nn.Module,
    x,
    *,
    relevance=None,
    target=None,
    composite="epsilon_plus_flat",
    labels=None,
    order: str = "morf",
    baseline="mean",
    data_mean=None,
    blur_sigma: float = 1.0,
    data_range=None,
    steps: int = 20,
    fractions=None,
    score: str = "probability",
    patch: int = 1,
    seed: int = 0,
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
    relevance : torch.Tensor, optional
        Relevance of ``x`` (same shape, or summed over channels with keepdim), e.g.
        ``explain(model, x).relevance``. Default: computed with ``composite`` for ``target``.
    target : int or torch.Tensor, optional
        Class (one, or one per sample) whose score is tracked; default: the model's prediction on
        the unperturbed input.
    composite : str or Composite
        LRP composite of the relevance when ``relevance`` is not given.
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
    >>> morf = removal_curve(model, x, relevance=explanation.relevance, order="morf")
    >>> lerf = removal_curve(model, x, relevance=explanation.relevance, order="lerf")
    >>> morf.aopc > lerf.aopc
    True
    """
    check_choice(order, ORDERS, "order")
    check_choice(score, SCORES, "score")
    patch = check_positive_int(patch, "patch", "use 1 for single pixels")
    batch_size = check_positive_int(batch_size, "batch_size", "it is the number of images per forward pass")
    if relevance is None:
        x = check_batch(x, "x")
        relevance = _relevance(model, x, composite, target, batch_size)
    x, relevance = _check_inputs(x, relevance)
    if fractions is None:
        steps = check_positive_int(steps, "steps", "a curve needs at least the points 0 and 1")
        fraction_values = torch.linspace(0.0, 1.0, steps + 1, dtype=torch.float64)
    else:
        values = [check_fraction(f, "fractions") for f in np.atleast_1d(np.asarray(fractions, dtype=object))]
        if not values or values[0] != 0.0 or any(b <= a for a, b in zip(values, values[1:])):
            raise InputError(
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
        target = resolve_target(target, logits0)
        if labels is not None:
            labels = resolve_target(labels, logits0, "labels")
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
        relevance=relevance,
        output=logits0,
    )
