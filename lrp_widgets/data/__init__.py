"""Data sets for the explorers: synthetic and bundled real data, all offline and deterministic.

Every image loader returns a :class:`Dataset` with ``x`` (N, C, H, W) float32 (finite: fill values
are masked), ``y`` (N,) int64, class names, a seeded stratified ``train`` / ``test`` split and its
own extras (``informative_mask``, ``masks``, ``ocean``...). :func:`sst_anomalies` returns the raw
real record instead, with NaN on land.
"""
from .dataset import Dataset, stratified_split
from .digits import digits
from .enso import enso_fields, enso_observed, preprocess_anomalies
from .shapes import SHAPE_NAMES, shapes
from .sst import SeaSurfaceTemperature, nino34_box, sst_anomalies
from .tokens import TOKEN_NAMES, planted_tokens
from .two_squares import two_squares

LOADERS = {
    "two_squares": two_squares,
    "digits": digits,
    "shapes": shapes,
    "enso_fields": enso_fields,
    "enso_observed": enso_observed,
    "planted_tokens": planted_tokens,
}


def load(spec: dict) -> Dataset:
    """Rebuild a data set from its ``spec`` (``{"loader": name, **keyword arguments}``).

    Every :class:`Dataset` records its own spec, so ``load(data.spec)`` gives the same data again.
    """
    spec = dict(spec)
    name = spec.pop("loader", None)
    if name not in LOADERS:
        raise ValueError(f"unknown data loader {name!r}; known loaders: {', '.join(LOADERS)}")
    return LOADERS[name](**spec)


__all__ = [
    "Dataset",
    "stratified_split",
    "two_squares",
    "planted_tokens",
    "TOKEN_NAMES",
    "digits",
    "shapes",
    "SHAPE_NAMES",
    "sst_anomalies",
    "SeaSurfaceTemperature",
    "nino34_box",
    "enso_fields",
    "enso_observed",
    "preprocess_anomalies",
    "load",
    "LOADERS",
]
