"""Deterministic training with an optional L1 penalty on the weights."""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import torch
from torch import nn

from .engine import types
from .engine.modes import predict as predict_scores

__all__ = ["History", "train", "accuracy", "sparsity", "weight_l1", "weight_parameters"]


@dataclass
class History:
    """What :func:`train` measured, one entry per epoch.

    Attributes
    ----------
    loss : list of float
        Mean training objective (cross-entropy plus the L1 term) over the epoch's batches.
    cross_entropy : list of float
        Mean cross-entropy alone.
    train_accuracy, test_accuracy : list of float
        Accuracy in [0, 1] after the epoch (test: empty when the data has no test part).
    l1 : float
        The L1 coefficient used.
    """

    loss: list = field(default_factory=list)
    cross_entropy: list = field(default_factory=list)
    train_accuracy: list = field(default_factory=list)
    test_accuracy: list = field(default_factory=list)
    l1: float = 0.0

    def as_dict(self) -> dict:
        """Deprecated alias of :meth:`to_dict`."""
        warnings.warn("History.as_dict() is deprecated; use .to_dict()", DeprecationWarning, stacklevel=2)
        return self.to_dict()

    def to_dict(self) -> dict:
        """Every measured list and the L1 coefficient."""
        return {
            "loss": self.loss,
            "cross_entropy": self.cross_entropy,
            "train_accuracy": self.train_accuracy,
            "test_accuracy": self.test_accuracy,
            "l1": self.l1,
        }


def weight_parameters(model: nn.Module) -> list[torch.Tensor]:
    """The weights of every Linear and Conv layer (biases and normalisation parameters excluded)."""
    return [
        module.weight
        for module in model.modules()
        if isinstance(module, types.LINEAR) and module.weight is not None
    ]


def weight_l1(model: nn.Module) -> torch.Tensor:
    """Sum of absolute weights of the Linear and Conv layers (the L1 penalty, without its coefficient)."""
    return sum(weight.abs().sum() for weight in weight_parameters(model))


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Predicted class of every sample (eval mode; every module's own flag restored afterwards)."""
    return predict_scores(model, x, batch_size).argmax(dim=1)


def accuracy(model: nn.Module, x, y: torch.Tensor | None = None, batch_size: int = 1024) -> float:
    """Share of samples classified correctly, in [0, 1].

    Parameters
    ----------
    model : nn.Module
        Classifier returning one score per class.
    x : torch.Tensor or Dataset
        Inputs (N, ...), or a data set (then ``y`` is taken from it).
    y : torch.Tensor, optional
        Labels (N,); required when ``x`` is a tensor.
    """
    if y is None:
        if not hasattr(x, "y"):
            raise TypeError("accuracy(model, x, y): give the labels y, or pass a Dataset as x")
        x, y = x.x, x.y
    if len(y) == 0:
        raise ValueError("accuracy of an empty set is undefined")
    return float((predict(model, x, batch_size) == y).float().mean())


@torch.no_grad()
def sparsity(model: nn.Module, tol: float = 1e-3) -> float:
    """Fraction of Linear/Conv weights with ``|w| < tol`` (biases excluded).

    Plain Adam with an L1 term drives weights towards zero but rarely to exactly zero, hence the
    tolerance.
    """
    weights = weight_parameters(model)
    if not weights:
        raise ValueError("the model has no Linear or Conv weights")
    small = sum(int((weight.abs() < tol).sum()) for weight in weights)
    return small / sum(weight.numel() for weight in weights)


def train(
    model: nn.Module,
    data,
    epochs: int,
    l1: float = 0.0,
    seed: int = 0,
    progress: bool = True,
    lr: float = 1e-3,
    batch_size: int = 32,
    weight_decay: float = 0.0,
) -> History:
    """Train a classifier with Adam on cross-entropy plus ``l1 * sum |weights|``.

    Deterministic: ``torch.manual_seed(seed)`` is set before training (dropout masks) and the batch
    order comes from a ``torch.Generator`` seeded with ``seed``; the model's initial weights are
    whatever it holds (seed torch before building it to fix those too).

    Parameters
    ----------
    model : nn.Module
        The classifier; trained in place and left in eval mode.
    data : Dataset
        A data set with a split (``data.train`` / ``data.test``), or one part (trained on as is,
        no test accuracy).
    epochs : int
        Passes over the training data.
    l1 : float
        Coefficient of the L1 penalty on the Linear/Conv weights (not the biases).
    seed : int
        Seed of the batch order and of dropout.
    progress : bool
        Show a ``tqdm.auto`` progress bar (one step per epoch, with loss and accuracies).
    lr, batch_size, weight_decay : float, int, float
        Adam's learning rate, the batch size, Adam's (L2) weight decay.

    Returns
    -------
    History
        Loss and train/test accuracy per epoch.

    Examples
    --------
    >>> data = two_squares(size=32)
    >>> torch.manual_seed(0); model = MLP(data.input_shape, data.n_classes)
    >>> history = train(model, data, epochs=5, progress=False)
    >>> history.test_accuracy[-1] > 0.9
    True
    """
    from tqdm.auto import tqdm

    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    if l1 < 0:
        raise ValueError(f"l1 must be non-negative, got {l1}")
    try:
        train_part, test_part = data.train, data.test
    except (ValueError, AttributeError):
        train_part, test_part = data, None
    x, y = train_part.x, train_part.y

    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    loss_function = nn.CrossEntropyLoss()
    history = History(l1=float(l1))
    bar = tqdm(range(epochs), desc=f"training {type(model).__name__}", disable=not progress, leave=False)
    for _ in bar:
        model.train()
        order = torch.randperm(len(y), generator=generator)
        total, total_ce, batches = 0.0, 0.0, 0
        for start in range(0, len(y), batch_size):
            index = order[start : start + batch_size]
            optimizer.zero_grad()
            cross_entropy = loss_function(model(x[index]), y[index])
            loss = cross_entropy + l1 * weight_l1(model) if l1 > 0 else cross_entropy
            loss.backward()
            optimizer.step()
            total += loss.item()
            total_ce += cross_entropy.item()
            batches += 1
        history.loss.append(total / batches)
        history.cross_entropy.append(total_ce / batches)
        history.train_accuracy.append(accuracy(model, x, y))
        postfix = {"loss": f"{history.loss[-1]:.3f}", "train": f"{history.train_accuracy[-1]:.3f}"}
        if test_part is not None:
            history.test_accuracy.append(accuracy(model, test_part.x, test_part.y))
            postfix["test"] = f"{history.test_accuracy[-1]:.3f}"
        bar.set_postfix(postfix)
    model.eval()
    return history
