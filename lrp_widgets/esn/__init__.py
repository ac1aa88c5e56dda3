"""Echo state networks (leaky reservoirs) with LRP through time.

An echo state network (ESN) is a fixed random recurrent "reservoir" plus a linear readout that
is fitted in closed form (ridge regression). Images are fed column by column: time steps are
the image columns and the features of a step are the pixels of that column
(:func:`image_to_sequence`). The explanation (:func:`explain_esn`) unfolds the reservoir in
time, one "layer" per step, and moves relevance from the readout back to every input pixel
with the epsilon rule or, with ``rule="zplus"``, the paper's z+ rule (REFERENCE.md section 2).

Forward pass (leaky ESN), ``x(0) = 0``::

    x(t) = (1 - alpha) x(t-1) + alpha tanh(W_in u(t) + W x(t-1) + b)

Readout on the final state: ``y = V [x(T), 1]``; with ``slices = S`` the T columns are cut into
S consecutive pieces, each piece runs from a reset state, and the readout sees the S final
states side by side.

Time decay: measured rate versus the leak-only theory
-----------------------------------------------------
If relevance travelled back only along the leak path ``(1 - alpha) x(t-1)``, every step back
would multiply it by ``1 - alpha``, so the relevance of a column ``k`` steps before the end of
its sequence would scale as ``(1 - alpha)^k = exp(-k * (-log(1 - alpha)))``: a decay rate of
``-log(1 - alpha)`` per step (about ``alpha`` for small ``alpha``; memory about ``1/alpha``
steps). :attr:`ESNExplanation.decay_rate` measures the rate instead: the least-squares slope
``d`` of ``log m(t) = c - d k(t)``, where ``m(t)`` is the mean over samples of
``|time_profile[:, t]|`` and ``k(t)`` is the lag of column t (steps before the last column of
its sequence, or of its slice). The measured rate grows with ``alpha`` but stays far below
``-log(1 - alpha)`` (two_squares 32x32, 300 units, left to right: 0.006 at alpha 0.5 against
0.69, 0.15 at 0.9 against 2.30), for three reasons:

* the recurrent weights carry relevance too. LRP splits relevance, it does not shrink it: the
  share ``alpha h(t)`` that leaves the leak path enters the pre-activation
  ``W_in u(t) + W x(t-1) + b``, and only the parts given to ``u(t)`` and ``b`` leave the
  chain; the part on ``W x(t-1)`` goes back to ``x(t-1)``. How much leaves per step depends on
  the sizes of ``W_in u(t)`` and ``W x(t-1)`` (``input_scale``, ``spectral_radius``, the data),
  not on ``alpha`` alone. The leak-only theory counts all of ``alpha h(t)`` as gone;
* the readout is fitted to the task: if the label sits far back, the readout amplifies the
  faint memory of it, and relevance goes where the readout looks;
* the profile contains the data: columns that carry information get more relevance than
  noise columns whatever their lag. Fed left to right, two_squares has its informative square
  about 22 of 32 steps back, so at small ``alpha`` relevance *grows* with lag (negative rates,
  -0.06 at alpha 0.01) until the decay overtakes it.

``benchmarks/esn.py`` prints the measured rates beside the theory for both directions.

Forgetting and accuracy: fed left to right, two_squares puts the informative square far back
in time, so a fast leak should forget it. Measured with the paper's settings (300 units, ridge
1e-6): at 32x32 (square ~22 steps back) test accuracy stays 1.0 up to alpha 0.5 (0.97 at 0.7,
0.61 at 0.9), because the recurrent weights keep a faint echo that the ridge readout finds; at
100x100 (~70 steps back) it falls to 0.53 at 0.3 and 0.43 at 0.5 while the training accuracy
stays at 0.96-0.98 (the readout fits noise). The drop comes at smaller alpha with a larger ridge,
more noise or fewer units (100 units at 32x32: 0.83 at 0.5); float32 and float64 give the same
accuracies. Fed right to left, the square enters last and accuracy stays 1.0.

Gateway artifact and slicing: fed as one long sequence at a large leak rate, relevance piles
up at the last columns (where information enters the reservoir last) whatever the data says.
With ``slices = S`` each piece needs only about ``T/S`` steps of memory, and the relevance
follows the informative region again.

Masked data (land on sea-surface maps): fill masked inputs with 0 before fitting or
explaining. With the epsilon rule an input that is exactly 0 receives exactly 0 relevance, and
:func:`sequence_to_image` with ``mask=`` puts NaN on masked points, so they are drawn as
masked, not as zero relevance.
"""
from __future__ import annotations

from .lrp import ESNExplanation, _divide, _lrp_readout, _lrp_through_time, _resolve_target, _stabilize, _stabilizer_term, explain_esn, measure_decay_rate
from .model import ESN, _Trace, _check_leak_rate, _TASKS
from .sequences import (
    _DIRECTIONS,
    _FILL_THRESHOLD,
    _as_tensor,
    _check_direction,
    _check_finite,
    _check_sequences,
    _piece_bounds,
    _piece_groups,
    image_to_sequence,
    leak_only_decay_rate,
    leak_only_profile,
    piece_bounds,
    piece_lags,
    sequence_to_image,
)
from .memory import effective_radius, memory_steps, suggest_leak_rate
from .zplus import readout_leak

__all__ = [
    "ESN",
    "ESNExplanation",
    "explain_esn",
    "image_to_sequence",
    "sequence_to_image",
    "suggest_leak_rate",
    "effective_radius",
    "memory_steps",
    "readout_leak",
    "measure_decay_rate",
    "piece_bounds",
    "piece_lags",
    "leak_only_profile",
    "leak_only_decay_rate",
]
