"""The one container every loader returns: tensors, class names, a split and data-specific extras."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

__all__ = ["Dataset", "stratified_split"]


def stratified_split(labels: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split sample indices into train and test, keeping each class's share in both.

    Parameters
    ----------
    labels : np.ndarray
        Integer class label of every sample, shape (N,).
    test_fraction : float
        Share of each class that goes to the test set (rounded, at least one sample per class
        when a class has two or more samples).
    seed : int
        Seed of the permutation, so the same data always gives the same split.

    Returns
    -------
    train_index, test_index : np.ndarray
        Sorted int64 indices.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie strictly between 0 and 1, got {test_fraction}")
    rng = np.random.default_rng(seed)
    train, test = [], []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        members = members[rng.permutation(len(members))]
        n_test = int(round(test_fraction * len(members)))
        if len(members) >= 2:
            n_test = min(max(n_test, 1), len(members) - 1)
        test.append(members[:n_test])
        train.append(members[n_test:])
    return np.sort(np.concatenate(train)).astype(np.int64), np.sort(np.concatenate(test)).astype(np.int64)


@dataclass
class Dataset:
    """Images and labels with a fixed train/test split and data-specific extras.

    Attributes
    ----------
    x : torch.Tensor
        Inputs, shape (N, C, H, W), float32, finite (fill values are masked by the loaders).
    y : torch.Tensor
        Class labels, shape (N,), int64.
    classes : tuple of str
        Name of each class; ``classes[k]`` names label ``k``.
    name : str
        Short name of the data set (``"two_squares"``, ``"digits"``...).
    spec : dict
        The loader and keyword arguments that rebuild exactly this data set
        (``{"loader": "two_squares", "size": 32, ...}``); the zoo records it next to the weights.
    extras : dict
        Extras shared by all samples (``informative_mask``, ``ocean``, ``lat``...), readable as
        attributes: ``data.informative_mask``.
    sample_extras : dict
        Per-sample extras whose first axis is the sample axis (``masks``, ``nino34``...); subsets
        index them along with ``x`` and ``y``. Also readable as attributes.
    train_index, test_index : np.ndarray or None
        The split; ``None`` on a subset (a split is not split again).

    Examples
    --------
    >>> data = two_squares(size=32)
    >>> data.train.x.shape, data.test.y.shape, data.informative_mask.shape
    """

    x: torch.Tensor
    y: torch.Tensor
    classes: tuple
    name: str = ""
    spec: dict = field(default_factory=dict)
    extras: dict = field(default_factory=dict)
    sample_extras: dict = field(default_factory=dict)
    train_index: np.ndarray | None = None
    test_index: np.ndarray | None = None
    part: str = "all"

    def __post_init__(self):
        tokens = self.x.ndim == 2 and not self.x.is_floating_point()  # token ids (N, T), e.g. planted_tokens
        if self.x.ndim != 4 and not tokens:
            raise ValueError(f"x must have shape (N, C, H, W) (or (N, T) integer token ids), got {tuple(self.x.shape)}")
        if self.y.shape != (self.x.shape[0],):
            raise ValueError(f"y must have shape ({self.x.shape[0]},), got {tuple(self.y.shape)}")
        if not torch.isfinite(self.x).all():
            raise ValueError(f"{self.name or 'data set'}: x holds NaN or inf; mask fill values before building it")
        for key, value in self.sample_extras.items():
            if len(value) != len(self.y):
                raise ValueError(f"sample extra {key!r} has {len(value)} entries for {len(self.y)} samples")
        self.classes = tuple(self.classes)

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def __getattr__(self, key: str) -> Any:
        # Only called when normal lookup fails: expose extras as attributes (data.ocean, data.masks).
        if key.startswith("__"):
            raise AttributeError(key)
        for store in ("extras", "sample_extras"):
            values = self.__dict__.get(store, {})
            if key in values:
                return values[key]
        raise AttributeError(f"{type(self).__name__} {self.__dict__.get('name', '')!r} has no attribute or extra {key!r}")

    @property
    def n_classes(self) -> int:
        """Number of classes (``len(classes)``)."""
        return len(self.classes)

    @property
    def input_shape(self) -> tuple:
        """Shape of one sample, (C, H, W)."""
        return tuple(self.x.shape[1:])

    def subset(self, index, part: str = "subset") -> "Dataset":
        """The samples at ``index`` (array of ints or bool mask), extras carried along, no split."""
        index = torch.as_tensor(np.asarray(index))
        if index.dtype == torch.bool:
            index = torch.nonzero(index).flatten()
        index = index.long()
        sample_extras = {key: _take(value, index) for key, value in self.sample_extras.items()}
        return Dataset(
            x=self.x[index],
            y=self.y[index],
            classes=self.classes,
            name=self.name,
            spec=dict(self.spec),
            extras=dict(self.extras),
            sample_extras=sample_extras,
            part=part,
        )

    @property
    def train(self) -> "Dataset":
        """The training part of the split (a subset without a split of its own)."""
        return self.subset(self._split()[0], part="train")

    @property
    def test(self) -> "Dataset":
        """The test part of the split (a subset without a split of its own)."""
        return self.subset(self._split()[1], part="test")

    def _split(self):
        if self.train_index is None or self.test_index is None:
            # ValueError, not AttributeError: the latter would be swallowed by __getattr__.
            raise ValueError(
                f"this is the {self.part!r} part of {self.name!r} and has no split of its own; "
                "take .train / .test from the full data set"
            )
        return self.train_index, self.test_index

    def __repr__(self) -> str:
        extras = ", ".join(list(self.extras) + list(self.sample_extras))
        return (
            f"Dataset({self.name!r}, part={self.part!r}, x={tuple(self.x.shape)}, "
            f"classes={self.n_classes}, extras=[{extras}])"
        )


def _take(value, index: torch.Tensor):
    if isinstance(value, torch.Tensor):
        return value[index]
    if isinstance(value, np.ndarray):
        return value[index.numpy()]
    return [value[i] for i in index.tolist()]


def make_dataset(x, y, classes, name, spec, extras=None, sample_extras=None, test_fraction=0.2, seed=0) -> Dataset:
    """Build a :class:`Dataset` from arrays with a stratified, seeded split (internal helper)."""
    x = torch.as_tensor(np.ascontiguousarray(x), dtype=torch.float32)
    y = torch.as_tensor(np.asarray(y), dtype=torch.int64)
    train_index, test_index = stratified_split(y.numpy(), test_fraction, seed)
    return Dataset(
        x=x,
        y=y,
        classes=tuple(classes),
        name=name,
        spec=dict(spec),
        extras=dict(extras or {}),
        sample_extras=dict(sample_extras or {}),
        train_index=train_index,
        test_index=test_index,
    )
