"""The synthetic two-squares data of the fact-or-artifact paper (REFERENCE.md section 2)."""
from __future__ import annotations

import numpy as np
import torch

from .dataset import Dataset, make_dataset

__all__ = ["two_squares", "square_slices"]

# The paper's layout on its 100x100 grid: (row start, row stop, column start, column stop).
_FIXED_POSITIVE = (20, 30, 70, 80)
_FIXED_NEGATIVE = (70, 80, 70, 80)
_INFORMATIVE = (45, 55, 20, 30)


def _scale(index: int, size: int) -> int:
    # Round half up (Python's round() rounds half to even, which would shift squares unevenly).
    return int(np.floor(index * size / 100 + 0.5))


def square_slices(box: tuple, size: int) -> tuple[slice, slice]:
    """Row and column slices of a square given on the paper's 100x100 grid, scaled to ``size``.

    The scaled square always covers at least one pixel per axis, so the layout survives small sizes.
    """
    r0, r1, c0, c1 = (_scale(v, size) for v in box)
    return slice(r0, max(r1, r0 + 1)), slice(c0, max(c1, c0 + 1))


def two_squares(n_per_class: int = 250, size: int = 100, noise: float = 0.1, seed: int = 0) -> Dataset:
    """Two classes that differ only in the sign of one square on the left.

    Every image is zero with uniform noise ``U(-noise, noise)``; on the right half two fixed squares
    (rows 20-30 and 70-80, columns 70-80 of a 100x100 image) hold +0.5 and -0.5 in both classes, so they
    carry no class information. The informative square (rows 45-55, columns 20-30) holds +0.5 in class 0
    and -0.5 in class 1. For other sizes every index is scaled by ``size / 100``.

    Parameters
    ----------
    n_per_class : int
        Samples per class (the paper: 250).
    size : int
        Image height and width (the paper: 100; the widgets use 32).
    noise : float
        Half-width of the uniform noise.
    seed : int
        Seed of the noise, the sample order and the 80/20 stratified train/test split.

    Returns
    -------
    Dataset
        ``x`` (2 * n_per_class, 1, size, size) float32, ``y`` in {0, 1}, extras
        ``informative_mask`` (size, size) bool (the left square) and ``distractor_mask`` (the two
        fixed squares).

    Examples
    --------
    >>> data = two_squares(size=32)
    >>> data.x.shape, data.informative_mask.sum().item()
    (torch.Size([500, 1, 32, 32]), 16)
    """
    if n_per_class < 1:
        raise ValueError(f"n_per_class must be at least 1, got {n_per_class}")
    if size < 8:
        raise ValueError(f"size must be at least 8 so the three squares stay apart, got {size}")
    if noise < 0:
        raise ValueError(f"noise must be non-negative, got {noise}")
    rng = np.random.default_rng(seed)
    n = 2 * n_per_class
    labels = np.repeat(np.arange(2), n_per_class)
    images = rng.uniform(-noise, noise, size=(n, size, size)).astype(np.float32)

    rows, cols = square_slices(_FIXED_POSITIVE, size)
    images[:, rows, cols] += 0.5
    distractor = np.zeros((size, size), dtype=bool)
    distractor[rows, cols] = True
    rows, cols = square_slices(_FIXED_NEGATIVE, size)
    images[:, rows, cols] -= 0.5
    distractor[rows, cols] = True

    rows, cols = square_slices(_INFORMATIVE, size)
    sign = np.where(labels == 0, 0.5, -0.5).astype(np.float32)
    images[:, rows, cols] += sign[:, None, None]
    informative = np.zeros((size, size), dtype=bool)
    informative[rows, cols] = True

    # Shuffle so that batches and plots of the first samples show both classes.
    order = rng.permutation(n)
    spec = {"loader": "two_squares", "n_per_class": n_per_class, "size": size, "noise": noise, "seed": seed}
    return make_dataset(
        images[order, None],
        labels[order],
        classes=("left square +0.5", "left square -0.5"),
        name="two_squares",
        spec=spec,
        extras={
            "informative_mask": torch.from_numpy(informative),
            "distractor_mask": torch.from_numpy(distractor),
        },
        seed=seed,
    )
