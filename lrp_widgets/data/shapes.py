"""Coloured geometric shapes on a textured background, with the ground-truth mask of every object."""
from __future__ import annotations

import numpy as np
import torch

from .dataset import Dataset, make_dataset

__all__ = ["shapes", "SHAPE_NAMES"]

SHAPE_NAMES = ("circle", "square", "triangle", "plus", "ring", "diamond", "star", "crescent", "x", "frame")


def _shape_mask(name: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Inside-test of a shape in coordinates scaled so the shape spans roughly [-1, 1]^2."""
    radius = np.hypot(u, v)
    box = np.maximum(np.abs(u), np.abs(v))
    if name == "circle":
        return radius <= 1.0
    if name == "square":
        return box <= 0.8
    if name == "triangle":  # apex up, flat base
        return (v <= 0.8) & (np.abs(u) <= 0.55 * (v + 1.0))
    if name == "plus":
        return ((np.abs(u) <= 0.3) | (np.abs(v) <= 0.3)) & (box <= 1.0)
    if name == "ring":
        return (radius <= 1.0) & (radius >= 0.55)
    if name == "diamond":
        return np.abs(u) + np.abs(v) <= 1.0
    if name == "star":
        angle = np.arctan2(v, u)
        return radius <= 0.55 + 0.45 * np.cos(5 * angle + np.pi / 2)
    if name == "crescent":
        return (radius <= 1.0) & (np.hypot(u - 0.55, v) > 0.75)
    if name == "x":
        return ((np.abs(u - v) <= 0.4) | (np.abs(u + v) <= 0.4)) & (box <= 0.85)
    if name == "frame":
        return (box <= 0.85) & (box >= 0.5)
    raise ValueError(f"unknown shape {name!r}; known shapes: {', '.join(SHAPE_NAMES)}")


def _hsv_to_rgb(hue: float, saturation: float, value: float) -> np.ndarray:
    k = (np.array([5.0, 3.0, 1.0]) + hue * 6.0) % 6.0
    return value - value * saturation * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)


def _texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """A dark, smooth random texture (a few random plane waves per channel) plus pixel noise."""
    rows, cols = np.mgrid[0:size, 0:size] / size
    base = rng.uniform(0.1, 0.3)
    image = np.full((3, size, size), base)
    for channel in range(3):
        for _ in range(3):
            freq_r, freq_c = rng.uniform(-6, 6, size=2)
            phase = rng.uniform(0, 2 * np.pi)
            image[channel] += rng.uniform(0.02, 0.06) * np.sin(2 * np.pi * (freq_r * rows + freq_c * cols) + phase)
    image += rng.normal(0.0, 0.02, size=image.shape)
    return image


def shapes(n: int = 3000, size: int = 32, seed: int = 0) -> Dataset:
    """Ten kinds of coloured shapes at random positions, sizes and colours on a textured background.

    The classes are ``SHAPE_NAMES`` (circle, square, triangle, plus, ring, diamond, star, crescent,
    x, frame), balanced (``n // 10`` or one more each). The object's colour is a random bright,
    saturated colour; the background is a dark texture of random plane waves and pixel noise, so the
    class can only be read from the object's outline. Values lie in [0, 1], 3 channels.

    Parameters
    ----------
    n : int
        Number of images.
    size : int
        Image height and width.
    seed : int
        Seed of the images and of the 80/20 stratified split.

    Returns
    -------
    Dataset
        ``x`` (n, 3, size, size) float32, ``y`` the shape index, per-sample extra ``masks``
        (n, size, size) bool: where the object is.

    Examples
    --------
    >>> data = shapes(500)
    >>> data.x.shape, data.masks.shape
    (torch.Size([500, 3, 32, 32]), torch.Size([500, 32, 32]))
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if size < 12:
        raise ValueError(f"size must be at least 12 for the shapes to be recognisable, got {size}")
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % len(SHAPE_NAMES))
    images = np.empty((n, 3, size, size), dtype=np.float32)
    masks = np.empty((n, size, size), dtype=bool)
    # Pixel centres; the shape's half-width is 20-35% of the image.
    coordinates = np.arange(size) + 0.5
    for i, label in enumerate(labels):
        half_width = rng.uniform(0.2, 0.35) * size
        centre_row, centre_col = rng.uniform(half_width, size - half_width, size=2)
        v = (coordinates[:, None] - centre_row) / half_width
        u = (coordinates[None, :] - centre_col) / half_width
        mask = _shape_mask(SHAPE_NAMES[label], u, v)
        colour = _hsv_to_rgb(rng.uniform(), rng.uniform(0.6, 1.0), rng.uniform(0.75, 1.0))
        image = _texture(rng, size)
        image[:, mask] = colour[:, None] + rng.normal(0.0, 0.02, size=(3, int(mask.sum())))
        images[i] = np.clip(image, 0.0, 1.0)
        masks[i] = mask
    return make_dataset(
        images,
        labels,
        classes=SHAPE_NAMES,
        name="shapes",
        spec={"loader": "shapes", "n": n, "size": size, "seed": seed},
        sample_extras={"masks": torch.from_numpy(masks)},
        seed=seed,
    )
