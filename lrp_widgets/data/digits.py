"""scikit-learn's bundled handwritten digits (real data, 8x8, no download)."""
from __future__ import annotations

import numpy as np

from .dataset import Dataset, make_dataset

__all__ = ["digits"]


def digits(upsample: int = 1, seed: int = 0) -> Dataset:
    """The 1797 handwritten digits bundled with scikit-learn, scaled to [0, 1].

    Parameters
    ----------
    upsample : int
        Integer factor by which each pixel is repeated along both axes (nearest neighbour), so the
        images are ``8 * upsample`` pixels wide; 1 keeps the original 8x8 images.
    seed : int
        Seed of the 80/20 stratified train/test split.

    Returns
    -------
    Dataset
        ``x`` (1797, 1, 8 * upsample, 8 * upsample) float32 in [0, 1], ``y`` the digit 0-9.

    Examples
    --------
    >>> data = digits(upsample=2)
    >>> data.x.shape
    torch.Size([1797, 1, 16, 16])
    """
    from sklearn.datasets import load_digits  # imported here: scikit-learn is slow to import

    if int(upsample) != upsample or upsample < 1:
        raise ValueError(f"upsample must be a positive integer, got {upsample!r}")
    upsample = int(upsample)
    bunch = load_digits()
    # The bundled pixel values are counts 0..16 (an 8x8 grid of 4x4 blocks of a 32x32 bitmap).
    images = bunch.images.astype(np.float32) / 16.0
    if upsample > 1:
        images = images.repeat(upsample, axis=1).repeat(upsample, axis=2)
    return make_dataset(
        images[:, None],
        bunch.target.astype(np.int64),
        classes=tuple(str(k) for k in range(10)),
        name="digits",
        spec={"loader": "digits", "upsample": upsample, "seed": seed},
        seed=seed,
    )
