"""Removal (pixel-flipping) curves, the feature-removal experiment and dataset-level input pruning.

REFERENCE.md §3. Input features are ranked by relevance and replaced by a baseline step by step;
the model's score for the originally predicted class is recorded after every step:

- MoRF (most relevant first) should make the score fall fastest, LeRF (least relevant first)
  slowest, a random order in between. AOPC, the area over the perturbation curve,
  ``mean_k (f(x) - f(x^(k)))`` over the steps ``k = 0..L``, summarises a curve in one number.
- :func:`removal_experiment` is the feature-removal paper's table: accuracy and confidence with
  nothing, the least relevant 15 %, the most relevant 15 % and a random 15 % removed.
- :func:`prune_inputs` is the paper's efficiency claim: rank pixels by mean |relevance| over the
  training set, keep the top fraction for every sample, retrain, and compare with other rankings
  (gradient, gradient x input, input variance: :mod:`.rankings`) and a random keep.

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


from .curves import RemovalCurve, _logits, _predict, _relevance, _scores, removal_curve
from .rankings import RANKINGS, input_importance
from .experiments import PruningResult, RemovalExperiment, _default_fit, _keep_mask, _with_inputs, prune_inputs, removal_experiment
from .masking import (
    BASELINES,
    ORDERS,
    SCORES,
    _STREAM_NOISE,
    _STREAM_ORDER,
    _Units,
    _check_inputs,
    _gaussian_blur,
    _generator,
    _removed,
    _unit_rank,
    make_baseline,
    perturb,
    rank_units,
)

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
    "RANKINGS",
    "input_importance",
    "perturb",
    "rank_units",
    "make_baseline",
]
