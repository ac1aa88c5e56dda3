"""Synthetic El Nino / La Nina fields with the spatial structure of the real SST anomalies."""
from __future__ import annotations

import numpy as np
import torch

from .dataset import Dataset, make_dataset
from .sst import SeaSurfaceTemperature, sst_anomalies

__all__ = ["enso_fields", "enso_observed", "preprocess_anomalies", "ENSO_THRESHOLD", "ANOMALY_CAP"]

# Standardized Nino 3.4 thresholds: El Nino above +0.5, La Nina below -0.5, neutral in between.
ENSO_THRESHOLD = 0.5
# Anomalies are capped at +-5 K before scaling: real winter anomalies stay within about 4.5 K, so
# the cap only guards against outliers (and anything that slipped past the fill-value mask).
ANOMALY_CAP = 5.0


def preprocess_anomalies(values: np.ndarray, ocean: np.ndarray, scale: float) -> np.ndarray:
    """Model inputs from SST anomalies (REFERENCE.md section 2): mask, fill 0, cap, scale.

    Parameters
    ----------
    values : np.ndarray
        Anomalies in K (..., lat, lon); land may hold NaN, inf or a fill value such as 1e20.
    ocean : np.ndarray
        (lat, lon) bool, True on sea cells.
    scale : float
        Divisor that brings anomalies to unit scale (the real record's standard deviation, in K).

    Returns
    -------
    np.ndarray
        float32: land and non-finite cells 0, sea cells ``clip(values, -5, 5) / scale``.
    """
    values = np.asarray(values, dtype=np.float64)
    keep = np.broadcast_to(ocean, values.shape) & np.isfinite(values) & (np.abs(values) < 1e19)
    capped = np.clip(np.where(keep, values, 0.0), -ANOMALY_CAP, ANOMALY_CAP)
    return (capped / scale).astype(np.float32)


def enso_fields(
    n: int = 2000,
    seed: int = 0,
    n_modes: int = 20,
    noise: float = 0.1,
    sst: SeaSurfaceTemperature | None = None,
) -> Dataset:
    """Synthetic winter SST anomaly maps labelled El Nino (1) or La Nina (0).

    How they are made:

    1. Take the 50 real winters of :func:`sst_anomalies` (18x30 Pacific grid) at the ocean cells,
       remove the mean and compute the EOFs (spatial patterns) and principal components by SVD.
    2. Fit a Gaussian to the principal components of the leading ``n_modes`` EOFs (they are
       uncorrelated, so this is one variance per mode) and draw new coefficients from it.
    3. A sample is the mean field plus the coefficients times the EOFs, plus independent Gaussian
       noise of ``noise`` times the record's standard deviation at every ocean cell; land stays land.
    4. Label by the Nino 3.4 index (mean anomaly over 5N-5S, 170W-120W), standardized with the exact
       mean and standard deviation of the generating distribution: El Nino (> 0.5) is class 1, La Nina
       (< -0.5) class 0, neutral samples are discarded. Drawing continues until both classes are
       full (``n // 2`` La Nina, the rest El Nino).
    5. Preprocess as in REFERENCE.md section 2 (:func:`preprocess_anomalies`): land filled with 0,
       anomalies capped to [-5, 5] K and divided by the real record's standard deviation (extra
       ``scale``, about 0.5 K).

    Parameters
    ----------
    n : int
        Number of samples (after discarding neutral ones).
    seed : int
        Seed of the draws and of the 80/20 stratified split.
    n_modes : int
        Number of leading EOFs resampled (at most 49: 50 winters minus the removed mean).
    noise : float
        Standard deviation of the per-cell noise, relative to the record's standard deviation.
    sst : SeaSurfaceTemperature, optional
        The real record to imitate; :func:`sst_anomalies` by default.

    Returns
    -------
    Dataset
        ``x`` (n, 1, 18, 30) float32 (land 0), ``y`` in {0: La Nina, 1: El Nino}; extras ``ocean``
        (lat, lon) bool, ``nino34_mask``, ``lat``, ``lon``, ``scale`` (K per input unit: the
        anomaly is ``x * scale`` on the ocean); per sample ``nino34`` (the standardized index that
        decided the label).
    """
    if n < 2:
        raise ValueError(f"n must be at least 2 (one sample per class), got {n}")
    sst = sst if sst is not None else sst_anomalies()
    ocean = sst.ocean
    box = sst.nino34_mask[ocean]  # Nino 3.4 cells among the ocean cells
    record = sst.values[:, ocean]  # (time, ocean cells), finite by construction
    max_modes = record.shape[0] - 1
    if not 1 <= n_modes <= max_modes:
        raise ValueError(f"n_modes must lie in [1, {max_modes}], got {n_modes}")

    mean = record.mean(axis=0)
    _, singular, patterns = np.linalg.svd(record - mean, full_matrices=False)
    patterns = patterns[:n_modes]  # (modes, ocean cells), orthonormal rows
    mode_std = singular[:n_modes] / np.sqrt(record.shape[0] - 1)  # std of each principal component
    scale = float(record.std())
    noise_std = noise * scale

    # The index is linear in the coefficients, so its mean and variance are exact.
    box_weights = box / box.sum()
    index_mean = float(mean @ box_weights)
    loading = patterns @ box_weights
    index_std = float(np.sqrt(np.sum((mode_std * loading) ** 2) + noise_std**2 * np.sum(box_weights**2)))

    rng = np.random.default_rng(seed)
    wanted = {0: n // 2, 1: n - n // 2}
    kept = {0: [], 1: []}
    counts = {0: 0, 1: 0}
    while counts[0] < wanted[0] or counts[1] < wanted[1]:
        batch = max(256, 2 * n)
        coefficients = rng.standard_normal((batch, n_modes)) * mode_std
        fields = mean + coefficients @ patterns + rng.normal(0.0, noise_std, size=(batch, len(mean)))
        index = (fields @ box_weights - index_mean) / index_std
        for label, chosen in ((1, index > ENSO_THRESHOLD), (0, index < -ENSO_THRESHOLD)):
            take = min(int(chosen.sum()), wanted[label] - counts[label])
            if take > 0:
                rows = np.flatnonzero(chosen)[:take]
                kept[label].append((fields[rows], index[rows]))
                counts[label] += take

    fields = np.concatenate([f for label in (0, 1) for f, _ in kept[label]])
    index = np.concatenate([i for label in (0, 1) for _, i in kept[label]])
    labels = np.repeat([0, 1], [wanted[0], wanted[1]])
    order = rng.permutation(n)
    fields, index, labels = fields[order], index[order], labels[order]

    maps = np.full((n,) + ocean.shape, np.nan)
    maps[:, ocean] = fields
    x = preprocess_anomalies(maps, ocean, scale)[:, None]
    spec = {"loader": "enso_fields", "n": n, "seed": seed, "n_modes": n_modes, "noise": noise}
    return make_dataset(
        x,
        labels,
        classes=("La Nina", "El Nino"),
        name="enso_fields",
        spec=spec,
        extras={
            "ocean": torch.from_numpy(ocean.copy()),
            "nino34_mask": torch.from_numpy(sst.nino34_mask.copy()),
            "lat": sst.lat.copy(),
            "lon": sst.lon.copy(),
            "scale": scale,
        },
        sample_extras={"nino34": torch.from_numpy(index.astype(np.float32))},
        seed=seed,
    )


def enso_observed(sst: SeaSurfaceTemperature | None = None) -> Dataset:
    """The real winters of :func:`sst_anomalies` that were El Nino or La Nina, preprocessed like
    :func:`enso_fields` (same scale), for checking models trained on the synthetic fields.

    The label comes from the record's own standardized Nino 3.4 index (> 0.5 El Nino, < -0.5 La
    Nina); neutral winters are left out. The split (80/20, stratified) exists for uniformity, but with
    about 30 winters the whole set is the natural test set.

    Returns
    -------
    Dataset
        ``x`` (winters, 1, 18, 30), ``y`` in {0: La Nina, 1: El Nino}; extras as in
        :func:`enso_fields` plus per sample ``time`` (the winter's date).
    """
    sst = sst if sst is not None else sst_anomalies()
    index = sst.nino34_index(standardize=True)
    chosen = np.abs(index) > ENSO_THRESHOLD
    scale = float(sst.values[:, sst.ocean].std())
    x = preprocess_anomalies(sst.values[chosen], sst.ocean, scale)[:, None]
    return make_dataset(
        x,
        (index[chosen] > ENSO_THRESHOLD).astype(np.int64),
        classes=("La Nina", "El Nino"),
        name="enso_observed",
        spec={"loader": "enso_observed"},
        extras={
            "ocean": torch.from_numpy(sst.ocean.copy()),
            "nino34_mask": torch.from_numpy(sst.nino34_mask.copy()),
            "lat": sst.lat.copy(),
            "lon": sst.lon.copy(),
            "scale": scale,
        },
        sample_extras={
            "nino34": torch.from_numpy(index[chosen].astype(np.float32)),
            "time": sst.time[chosen],
        },
    )
