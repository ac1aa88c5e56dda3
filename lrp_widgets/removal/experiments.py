"""The feature-removal paper's experiment table and dataset-level input pruning."""
from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch

from ..engine.checks import InputError, as_tensor, check_choice, check_finite, check_fraction, check_positive_int, resolve_target
from ..engine.results import Result
from ..engine.signatures import keyword_arguments
from .curves import _predict, _relevance
from .masking import _Units, _removed, _unit_rank, make_baseline, perturb
from .rankings import RANKINGS, input_importance


class _Table(Result):
    """A result whose summary is its table (its ``repr``)."""

    _rows: str  # the field whose values label the rows
    _columns: tuple  # the fields holding one value per row

    def summary(self) -> str:
        """The table as text (also the ``repr``)."""
        return repr(self)

    def to_dict(self) -> dict:
        """``{row: {column: value}}``, e.g. ``{"most relevant": {"accuracy": 0.4, ...}}``."""
        columns = {name: getattr(self, name) for name in self._columns}
        return {
            row: {name: None if values is None else values[i] for name, values in columns.items()}
            for i, row in enumerate(getattr(self, self._rows))
        }


# ----------------------------------------------------------------------------------------------
# the feature-removal paper's experiment
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RemovalExperiment(_Table):
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
    relevance: torch.Tensor | None = field(default=None, repr=False, compare=False)
    target: torch.Tensor | None = field(default=None, repr=False, compare=False)
    output: torch.Tensor | None = field(default=None, repr=False, compare=False)

    _rows = "conditions"
    _columns = ("accuracy", "confidence", "original_probability", "changed")

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


@keyword_arguments("fraction", "composite", "baseline", "patch", "seed", "relevance")
def removal_experiment(
    model: torch.nn.Module,
    data,
    *,
    fraction: float = 0.15,
    composite="epsilon_plus_flat",
    baseline="mean",
    patch: int = 1,
    seed: int = 0,
    relevance=None,
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
    x, y = check_finite(as_tensor(data.x, "data.x").detach(), "data.x"), as_tensor(data.y, "data.y")
    fraction = check_fraction(fraction)
    batch_size = check_positive_int(batch_size, "batch_size", "it is the number of images per forward pass")
    original = _predict(model, x, batch_size)
    y = resolve_target(y, original, "data.y")
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
        relevance=relevance,
        target=predicted,
        output=original,
    )


# ----------------------------------------------------------------------------------------------
# dataset-level input pruning
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class PruningResult(_Table):
    """Test accuracy of models retrained on the top input units of each ranking.

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
    accuracies : dict
        ranking -> tuple of test accuracies per fraction, for every ranking run (``"relevance"``
        is ``accuracy``, ``"random"`` is ``random_accuracy``).
    importances : dict
        ranking -> mean importance per unit (spatial shape); not for ``"random"``.
    masks : dict
        ranking -> bool (len(keep), *spatial), the positions each model saw.
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
    accuracies: dict = field(default_factory=dict, repr=False)
    importances: dict = field(default_factory=dict, repr=False)
    masks: dict = field(default_factory=dict, repr=False)

    @property
    def rankings(self) -> tuple:
        """The rankings compared, in the order they were run."""
        return tuple(self.accuracies)

    @property
    def relevance(self) -> torch.Tensor:
        """The ranking: mean |relevance| per unit over the training set (same as ``importance``)."""
        return self.importance

    #: No single class or output: the models were retrained on every class.
    target = None
    output = None

    _rows = "keep"
    _columns = ("kept_units", "input_size", "accuracy", "random_accuracy")

    def to_dict(self) -> dict:
        """One row per fraction kept: units, input size and the test accuracy of every ranking."""
        table = super().to_dict()
        for ranking, values in self.accuracies.items():
            for q, value in zip(self.keep, values):
                table[q][f"{ranking}_accuracy"] = value
        return table

    def __repr__(self) -> str:
        training = "custom fit" if self.epochs is None else f"{self.epochs} epochs per model"
        accuracies = self.accuracies or {"relevance": self.accuracy, **({"random": self.random_accuracy} if self.random_accuracy else {})}
        lines = [
            f"Input pruning: test accuracy after keeping the top units of each ranking (LRP {self.composite!r}, {training})",
            f"{'keep':>6}{'units':>11}{'input size':>17}" + "".join(f"{name:>18}" for name in accuracies),
        ]
        for i, q in enumerate(self.keep):
            size = f"{self.input_size[i]} ({self.input_size[i] / self.full_input_size:.0%})"
            line = f"{q:>6.0%}{f'{self.kept_units[i]}/{self.n_units}':>11}{size:>17}"
            lines.append(line + "".join(f"{values[i]:>18.3f}" for values in accuracies.values()))
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
        from ..train import train

        train(model, data, epochs=epochs, seed=seed, progress=False)

    return fit


@keyword_arguments("keep", "epochs", "composite", "seed", "progress", "rankings")
def prune_inputs(
    make_model: Callable,
    data,
    *,
    keep: Sequence[float] = (1.0, 0.5, 0.25, 0.1),
    epochs: int = 30,
    composite="epsilon",
    seed: int = 0,
    progress: bool = True,
    baseline="zero",
    compare_random: bool = True,
    fit: Callable | None = None,
    batch_size: int = 1024,
    rankings: Sequence[str] = ("relevance", "random"),
) -> PruningResult:
    """Rank input units by mean |relevance| over the training set, keep the top share, retrain.

    1. ``make_model(input_shape)`` is trained on all inputs of ``data.train``.
    2. LRP (``composite``, target: the true label) gives every training sample's relevance; the
       mean |relevance| per pixel (summed over channels) ranks the pixels.
    3. For every fraction in ``keep`` below 1, the other pixels are set to ``baseline`` in every
       sample (train and test), a fresh model is trained, and its test accuracy recorded.
    4. The same for every other ranking in ``rankings`` (see :mod:`lrp_widgets.removal.rankings`):
       ``"gradient"``, ``"gradient_x_input"`` (both of the model of step 1, true class, mean of the
       absolute value over the training set), ``"variance"`` (of each input over the training
       set) and ``"random"`` (a seeded random subset of the same size). A ranking that beats
       ``"random"`` may only be dropping the blank border; compare relevance with the others.

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
        Also train on random subsets of the same sizes (``False`` drops ``"random"`` from ``rankings``).
    fit : callable, optional
        ``fit(model, data)`` training ``model`` in place on ``data.train``; default
        ``lrp_widgets.train.train(model, data, epochs=epochs, seed=seed, progress=False)``.
    batch_size : int
        Samples per explanation / evaluation batch.
    rankings : sequence of str
        Rankings to compare, from ``"relevance"``, ``"gradient"``, ``"gradient_x_input"``,
        ``"variance"``, ``"random"``; ``"relevance"`` is always run (it is ``.accuracy``).

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

    keep = tuple(check_fraction(q, "keep") for q in np.atleast_1d(np.asarray(keep, dtype=float)))
    if not keep or min(keep) <= 0.0:
        raise InputError(f"keep must hold fractions in (0, 1] (the share of pixels kept), got {keep}")
    epochs = check_positive_int(epochs, "epochs", "every model needs at least one epoch of training")
    batch_size = check_positive_int(batch_size, "batch_size", "it is the number of samples per batch")
    rankings = tuple(dict.fromkeys(("relevance",) + tuple(check_choice(r, RANKINGS, "ranking") for r in rankings)))
    if not compare_random:
        rankings = tuple(r for r in rankings if r != "random")
    custom_fit = fit is not None
    fit = fit if custom_fit else _default_fit(epochs, seed)
    x = check_finite(as_tensor(data.x, "data.x").detach(), "data.x")
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
        predicted = _predict(model, test.x, batch_size).argmax(1)
        return float((predicted == test.y).float().mean())

    def retrained_accuracy(removed: torch.Tensor) -> float:
        inputs = torch.where(removed, fill, x)
        model = fresh_model()
        fit(model, _with_inputs(data, inputs))
        return test_accuracy(model, inputs)

    reduced = [q for q in keep if q < 1.0]
    bar = tqdm(total=1 + len(reduced) * len(rankings), disable=not progress, desc="prune_inputs")
    try:
        bar.set_postfix_str("all inputs")
        full_model = fresh_model()
        fit(full_model, data)
        bar.update()
        full_accuracy = test_accuracy(full_model, x)

        importances = {}
        for ranking in rankings:
            if ranking != "random":
                importances[ranking] = input_importance(full_model, train_x, data.train.y, ranking, composite=composite, batch_size=batch_size)
        importance = importances["relevance"]
        spread = units.unit_relevance(importance)
        if float(spread.max() - spread.min()) <= 1e-6 * float(spread.abs().max()):
            warnings.warn(
                f"composite {composite!r} gives every input unit the same mean |relevance|, so the "
                "ranking is random; a flat first-layer rule on a dense layer does this. Use "
                "composite='epsilon' (or another input-aware rule) to rank inputs.",
                stacklevel=2,
            )

        accuracies = {ranking: [] for ranking in rankings}
        masks = {ranking: [] for ranking in rankings}
        for ranking in rankings:
            # "random" keeps seed + 1: a subset independent of the permutation that breaks ties
            order, source = ("random", importance) if ranking == "random" else ("lerf", importances[ranking])
            for q in keep:
                removed = _keep_mask(source, q, units, order, seed + 1 if ranking == "random" else seed)
                masks[ranking].append(~removed[0, 0] if units.has_channels else ~removed[0])
                if q == 1.0:
                    accuracies[ranking].append(full_accuracy)
                    continue
                bar.set_postfix_str(f"keep {q:.0%} ({ranking})")
                accuracies[ranking].append(retrained_accuracy(removed))
                bar.update()
    finally:
        bar.close()

    kept_units = tuple(int(mask.sum()) for mask in masks["relevance"])
    channels = x.shape[1] if units.has_channels else 1
    return PruningResult(
        keep=keep,
        kept_units=kept_units,
        n_units=units.n_units,
        input_size=tuple(k * channels for k in kept_units),
        full_input_size=int(np.prod(input_shape)),
        accuracy=tuple(accuracies["relevance"]),
        random_accuracy=tuple(accuracies["random"]) if "random" in accuracies else None,
        importance=spread[0].reshape(units.spatial),
        keep_masks=torch.stack(masks["relevance"]),
        composite=composite if isinstance(composite, str) else type(composite).__name__,
        epochs=None if custom_fit else epochs,
        accuracies={ranking: tuple(values) for ranking, values in accuracies.items()},
        importances={ranking: units.unit_relevance(value)[0].reshape(units.spatial) for ranking, value in importances.items()},
        masks={ranking: torch.stack(value) for ranking, value in masks.items()},
    )
