"""Echo state networks (leaky reservoirs) with LRP through time.

An echo state network (ESN) is a fixed random recurrent "reservoir" plus a linear readout that
is fitted in closed form (ridge regression). Images are fed column by column: time steps are
the image columns and the features of a step are the pixels of that column
(:func:`image_to_sequence`). The explanation (:func:`explain_esn`) unfolds the reservoir in
time, one "layer" per step, and moves relevance from the readout back to every input pixel
with the epsilon rule (REFERENCE.md section 2, steps 1-4).

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

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from .display import RichDisplayMixin
from .engine.explain import FILL_VALUE_THRESHOLD

__all__ = [
    "ESN",
    "ESNExplanation",
    "explain_esn",
    "image_to_sequence",
    "sequence_to_image",
    "suggest_leak_rate",
    "measure_decay_rate",
    "leak_only_profile",
]

# Inputs larger than this are almost surely fill values for missing data (netCDF uses 1e20).
_FILL_THRESHOLD = FILL_VALUE_THRESHOLD
_DIRECTIONS = ("left_to_right", "right_to_left")
_TASKS = (None, "classification", "regression")  # ESN.task_code indexes this


# --------------------------------------------------------------------------------------------
# input checks
# --------------------------------------------------------------------------------------------
def _as_tensor(data, name: str) -> torch.Tensor:
    if isinstance(data, torch.Tensor):
        return data
    if isinstance(data, np.ma.MaskedArray):
        raise ValueError(
            f"{name} is a masked array; fill the masked points first, e.g. "
            f"{name}.filled(0), and pass the mask separately to sequence_to_image(mask=...)"
        )
    try:
        return torch.as_tensor(np.asarray(data))
    except (TypeError, ValueError) as error:
        raise TypeError(f"{name} must be a numpy array or a torch tensor, got {type(data).__name__}") from error


def _check_finite(values: torch.Tensor, name: str) -> None:
    if not values.is_floating_point() or values.numel() == 0:
        return
    # One pass in the common case: max(|x|) is NaN if any value is, and inf if any value is.
    if values.abs().max() <= _FILL_THRESHOLD:
        return
    if torch.isnan(values).any():
        raise ValueError(
            f"{name} contains NaN ({int(torch.isnan(values).sum())} values); mask missing values "
            "and fill them (e.g. with 0) before passing them to the ESN"
        )
    if torch.isinf(values).any():
        raise ValueError(f"{name} contains inf; replace or clip infinite values before passing them to the ESN")
    too_large = values.abs() > _FILL_THRESHOLD
    if too_large.any():
        raise ValueError(
            f"{name} contains {int(too_large.sum())} values with |x| > {_FILL_THRESHOLD:g} "
            f"(largest {values.abs().max().item():g}); these look like fill values for missing data "
            "(e.g. 1e20 on land). Mask them, fill with 0, and scale the data before using the ESN"
        )


def _check_sequences(X, n_inputs: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    X = _as_tensor(X, "X")
    if X.ndim != 3:
        hints = {2: " (one sequence? add a batch axis: X[None])", 4: " (images? convert them with image_to_sequence(images))"}
        hint = hints.get(X.ndim, "")
        raise ValueError(f"X must have shape (N, T, F) = (samples, time steps, features), got {tuple(X.shape)}{hint}")
    if X.shape[2] != n_inputs:
        raise ValueError(
            f"X has {X.shape[2]} features per time step but the ESN was built with n_inputs={n_inputs}; "
            "for images fed column by column n_inputs = channels * height"
        )
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"X is empty: shape {tuple(X.shape)}")
    if not (X.is_floating_point() or X.dtype in (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8, torch.bool)):
        raise TypeError(f"X must hold real numbers, got dtype {X.dtype}")
    _check_finite(X, "X")
    return X.to(device=device, dtype=dtype)


def _stabilizer_term(z: torch.Tensor, epsilon: float) -> torch.Tensor:
    """``epsilon * sign(z)`` with ``sign(0) = +1`` (REFERENCE.md section 1).

    ``z + 0.0`` turns -0.0 into +0.0, so both zeros count as positive; copysign is several times
    cheaper than torch.where on CPU.
    """
    return torch.copysign(z.new_tensor(epsilon), z + 0.0)


def _stabilize(z: torch.Tensor, epsilon: float) -> torch.Tensor:
    """``z + epsilon * sign(z)`` with ``sign(0) = +1``."""
    if epsilon == 0:
        return z
    return z + _stabilizer_term(z, epsilon)


def _divide(numerator: torch.Tensor, denominator: torch.Tensor, epsilon: float) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``numerator / denominator`` with ``x / 0 := 0``, and the numerator lost on zeros per row.

    A stabilized denominator is at least epsilon in size, so zeros (and the check for them) only
    occur with epsilon = 0; the lost part is None when there is none.
    """
    if epsilon > 0:
        return numerator / denominator, None
    zero = denominator == 0
    if not zero.any():
        return numerator / denominator, None
    quotient = (numerator / denominator.masked_fill(zero, 1.0)).masked_fill_(zero, 0.0)
    return quotient, (numerator * zero).sum(dim=1)


def _piece_bounds(n_steps: int, slices: int) -> list[tuple[int, int]]:
    """Consecutive near-equal pieces (``numpy.array_split`` sizes: the first ones one longer)."""
    if slices > n_steps:
        raise ValueError(f"slices={slices} is more than the {n_steps} time steps of X; use at most {n_steps}")
    base, extra = divmod(n_steps, slices)
    bounds, start = [], 0
    for index in range(slices):
        stop = start + base + (1 if index < extra else 0)
        bounds.append((start, stop))
        start = stop
    return bounds


def leak_only_profile(n_steps: int, leak_rate: float, slices: int = 1) -> np.ndarray:
    """Leak-only relevance per time step, ``alpha (1 - alpha)^lag``, normalised to max 1.

    The lag of step t counts the steps to the last step of its piece (:func:`_piece_bounds`, the
    same pieces the ESN and :func:`measure_decay_rate` use), so the profile resets where they do.
    """
    lags = np.concatenate([np.arange(stop - start - 1, -1, -1) for start, stop in _piece_bounds(n_steps, slices)])
    profile = leak_rate * (1 - leak_rate) ** lags.astype(float)
    return profile / profile.max()


def _piece_groups(n_steps: int, slices: int) -> list[list[int]]:
    """Indices of pieces that share a length, so that each group runs as one stacked batch."""
    groups: dict[int, list[int]] = {}
    for index, (start, stop) in enumerate(_piece_bounds(n_steps, slices)):
        groups.setdefault(stop - start, []).append(index)
    return list(groups.values())


# --------------------------------------------------------------------------------------------
# the model
# --------------------------------------------------------------------------------------------
class ESN(nn.Module):
    """Leaky echo state network with a closed-form ridge readout.

    ``x(t) = (1 - leak_rate) x(t-1) + leak_rate * tanh(W_in u(t) + W x(t-1) + b)``, ``x(0) = 0``,
    readout ``y = readout_weight @ [x(T)] + readout_bias``.

    Parameters
    ----------
    n_inputs : int
        Features per time step (for images fed by columns: channels * height).
    n_outputs : int
        Classes (classification) or regression targets.
    n_reservoir : int
        Reservoir units.
    leak_rate : float
        ``alpha`` in (0, 1]; memory is about ``1 / alpha`` steps (see :func:`suggest_leak_rate`).
    spectral_radius : float
        Largest absolute eigenvalue of ``W`` after rescaling.
    density : float
        Fraction of non-zero reservoir weights.
    input_scale : float
        ``W_in`` and ``b`` are uniform in ``[-input_scale, input_scale]`` (the bias drawn like
        the weight of a constant input 1: our choice, the paper gives no bias).
    ridge : float
        Ridge penalty on the readout weights (not on the readout bias), absolute (not scaled by N).
    slices : int
        Cut the T columns into this many consecutive near-equal pieces, run each from a reset
        state, and give the readout all final states side by side (REFERENCE.md section 2).
    seed : int
        Seed of the reservoir draw; same seed, same reservoir.

    Notes
    -----
    The reservoir (``W_in``, ``W``, ``b``) and the readout are buffers: nothing is trained by
    backpropagation. Buffers are float32 by default; ``esn.double()`` makes everything float64.
    The ridge system is always solved in float64. :meth:`with_leak_rate` gives a model on the same
    reservoir with another leak rate, without redrawing or rescaling ``W``.

    Examples
    --------
    >>> X = torch.randn(40, 10, 3)
    >>> y = (X[:, :, 0].sum(1) > 0).long()
    >>> esn = ESN(3, n_outputs=2, n_reservoir=50).fit(X, y)
    >>> esn.predict(X).shape
    torch.Size([40])
    """

    def __init__(
        self,
        n_inputs: int,
        n_outputs: int = 1,
        n_reservoir: int = 300,
        leak_rate: float = 0.05,
        spectral_radius: float = 0.8,
        density: float = 0.3,
        input_scale: float = 0.1,
        ridge: float = 1e-6,
        slices: int = 1,
        seed: int = 0,
    ):
        super().__init__()
        for name, value in (("n_inputs", n_inputs), ("n_outputs", n_outputs), ("n_reservoir", n_reservoir), ("slices", slices)):
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not 0 < density <= 1:
            raise ValueError(f"density must be in (0, 1], got {density!r}")
        if spectral_radius < 0:
            raise ValueError(f"spectral_radius must be >= 0, got {spectral_radius!r}")
        if input_scale < 0:
            raise ValueError(f"input_scale must be >= 0, got {input_scale!r}")
        if ridge < 0:
            raise ValueError(f"ridge must be >= 0, got {ridge!r}")
        self.n_inputs = int(n_inputs)
        self.n_outputs = int(n_outputs)
        self.n_reservoir = int(n_reservoir)
        self.leak_rate = _check_leak_rate(leak_rate)
        self.spectral_radius = float(spectral_radius)
        self.density = float(density)
        self.input_scale = float(input_scale)
        self.ridge = float(ridge)
        self.slices = int(slices)
        self.seed = int(seed)

        # Drawn in float64 so that a float32 and a float64 model with the same seed share
        # the same reservoir up to rounding.
        generator = torch.Generator().manual_seed(self.seed)
        shape = (self.n_reservoir, self.n_inputs)
        input_weight = (torch.rand(shape, generator=generator, dtype=torch.float64) * 2 - 1) * self.input_scale
        bias = (torch.rand(self.n_reservoir, generator=generator, dtype=torch.float64) * 2 - 1) * self.input_scale
        square = (self.n_reservoir, self.n_reservoir)
        weight = torch.rand(square, generator=generator, dtype=torch.float64) * 2 - 1
        weight = weight * (torch.rand(square, generator=generator, dtype=torch.float64) < self.density)
        radius = torch.linalg.eigvals(weight).abs().max().item() if self.n_reservoir > 0 else 0.0
        if radius > 0:
            weight = weight * (self.spectral_radius / radius)

        dtype = torch.get_default_dtype()
        self.register_buffer("input_weight", input_weight.to(dtype))
        self.register_buffer("weight", weight.to(dtype))
        self.register_buffer("bias", bias.to(dtype))
        self._reset_readout()

    # -- construction helpers ----------------------------------------------------------------
    def _reset_readout(self) -> None:
        dtype, device = self.weight.dtype, self.weight.device
        self.register_buffer("readout_weight", torch.zeros(self.n_outputs, self.n_reservoir * self.slices, dtype=dtype, device=device))
        self.register_buffer("readout_bias", torch.zeros(self.n_outputs, dtype=dtype, device=device))
        # A buffer, not a plain attribute, so that a saved state_dict restores a fitted model.
        self.register_buffer("task_code", torch.tensor(0, device=device))

    @property
    def task(self) -> str | None:
        """``"classification"``, ``"regression"``, or None before :meth:`fit`."""
        return _TASKS[int(self.task_code)]

    def with_leak_rate(self, leak_rate: float) -> "ESN":
        """A new, unfitted ESN on the same reservoir (shared ``W_in``, ``W``, ``b``) with another leak rate.

        Cheap: no redraw and no eigenvalue computation, so a slider can call it on every move and
        then :meth:`fit`.
        """
        return self._copy_reservoir(leak_rate=_check_leak_rate(leak_rate))

    def with_slices(self, slices: int) -> "ESN":
        """A new, unfitted ESN on the same reservoir with another number of slices."""
        if not isinstance(slices, (int, np.integer)) or slices < 1:
            raise ValueError(f"slices must be a positive integer, got {slices!r}")
        return self._copy_reservoir(slices=int(slices))

    def _copy_reservoir(self, **changes) -> "ESN":
        new = ESN.__new__(ESN)
        nn.Module.__init__(new)
        for name in ("n_inputs", "n_outputs", "n_reservoir", "leak_rate", "spectral_radius", "density",
                     "input_scale", "ridge", "slices", "seed"):
            setattr(new, name, changes.get(name, getattr(self, name)))
        # The reservoir is never modified in place, so sharing the tensors is safe.
        new.register_buffer("input_weight", self.input_weight)
        new.register_buffer("weight", self.weight)
        new.register_buffer("bias", self.bias)
        new._reset_readout()
        new.train(self.training)
        return new

    def extra_repr(self) -> str:
        return (f"n_inputs={self.n_inputs}, n_outputs={self.n_outputs}, n_reservoir={self.n_reservoir}, "
                f"leak_rate={self.leak_rate:g}, spectral_radius={self.spectral_radius:g}, density={self.density:g}, "
                f"input_scale={self.input_scale:g}, ridge={self.ridge:g}, slices={self.slices}, seed={self.seed}, "
                f"task={self.task}")

    # -- reservoir dynamics ------------------------------------------------------------------
    def _prepare(self, X) -> torch.Tensor:
        return _check_sequences(X, self.n_inputs, self.weight.dtype, self.weight.device)

    def _stack_pieces(self, X: torch.Tensor, pieces: list[int]) -> torch.Tensor:
        """(N, T, F) -> (L, P*N, F): equal-length pieces stacked on the batch axis, time first.

        Time first so that every step of the loop reads and writes contiguous (batch, units) blocks.
        """
        bounds = _piece_bounds(X.shape[1], self.slices)
        return torch.cat([X[:, bounds[index][0]:bounds[index][1]].transpose(0, 1) for index in pieces], dim=1).contiguous()

    def _unroll(self, U: torch.Tensor, keep: bool):
        """Run sequences ``U`` (L, B, F), time first, from a zero state.

        Returns the final state (B, units) and, when ``keep``, a :class:`_Trace` with everything
        LRP needs: states x(0..L) (L+1, B, units), pre-activations and tanh activations (L, B, units).
        """
        length, batch, _ = U.shape
        alpha = self.leak_rate
        # The input and bias terms of every step in one matrix product; only the recurrence loops.
        drive = torch.addmm(self.bias, U.reshape(-1, self.n_inputs), self.input_weight.T).reshape(length, batch, -1)
        recurrent_t = self.weight.T.contiguous()
        if keep:
            states = U.new_empty(length + 1, batch, self.n_reservoir)
            states[0] = 0
            pre_activations = U.new_empty(length, batch, self.n_reservoir)
            activations = U.new_empty(length, batch, self.n_reservoir)
            for t in range(length):
                torch.addmm(drive[t], states[t], recurrent_t, out=pre_activations[t])
                torch.tanh(pre_activations[t], out=activations[t])
                torch.lerp(states[t], activations[t], alpha, out=states[t + 1])  # (1-alpha) x + alpha h
            return states[length], _Trace(U, states, pre_activations, activations)
        x = U.new_zeros(batch, self.n_reservoir)
        for t in range(length):
            x = torch.lerp(x, torch.tanh(torch.addmm(drive[t], x, recurrent_t)), alpha)
        return x, None

    def _final_states(self, X: torch.Tensor, keep: bool = False):
        """Readout features (N, slices * units): the final state of every piece, side by side.

        With ``keep``, also the list of (piece indices, :class:`_Trace`) per group of equal pieces.
        """
        n = X.shape[0]
        finals = [None] * self.slices
        traces = []
        for pieces in _piece_groups(X.shape[1], self.slices):
            final, trace = self._unroll(self._stack_pieces(X, pieces), keep=keep)
            traces.append((pieces, trace))
            for position, index in enumerate(pieces):
                finals[index] = final[position * n:(position + 1) * n]
        features = torch.cat(finals, dim=1)
        return (features, traces) if keep else features

    @torch.no_grad()
    def final_states(self, X) -> torch.Tensor:
        """Readout features: (N, slices * n_reservoir), the final state of each piece side by side."""
        return self._final_states(self._prepare(X))

    @torch.no_grad()
    def states(self, X) -> torch.Tensor:
        """Reservoir state after every time step: (N, T, n_reservoir).

        With slices, the state is reset to 0 at the start of each piece, as in :meth:`forward`.
        """
        X = self._prepare(X)
        n = X.shape[0]
        bounds = _piece_bounds(X.shape[1], self.slices)
        out = X.new_empty(n, X.shape[1], self.n_reservoir)
        _, traces = self._final_states(X, keep=True)
        for pieces, trace in traces:
            for position, index in enumerate(pieces):
                start, stop = bounds[index]
                out[:, start:stop] = trace.states[1:, position * n:(position + 1) * n].transpose(0, 1)
        return out

    # -- readout -------------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if self.task is None:
            raise RuntimeError("this ESN has no readout yet: call esn.fit(X, y) first")

    def _targets(self, y, n: int) -> tuple[torch.Tensor, str]:
        y = _as_tensor(y, "y")
        if y.shape[0] != n:
            raise ValueError(f"y has {y.shape[0]} entries but X has {n} samples")
        if not y.is_floating_point():
            if y.ndim != 1:
                raise ValueError(f"integer labels y must have shape (N,), got {tuple(y.shape)}")
            if y.min() < 0 or y.max() >= self.n_outputs:
                raise ValueError(
                    f"class labels must lie in 0..{self.n_outputs - 1} for n_outputs={self.n_outputs}, got "
                    f"{int(y.min())}..{int(y.max())}; build the ESN with n_outputs={int(y.max()) + 1} "
                    "(one output per class)"
                )
            targets = torch.nn.functional.one_hot(y.long(), self.n_outputs).to(torch.float64)
            return targets, "classification"
        _check_finite(y, "y")
        targets = y.to(torch.float64)
        if targets.ndim == 1:
            targets = targets[:, None]
        if targets.ndim != 2 or targets.shape[1] != self.n_outputs:
            raise ValueError(
                f"regression targets must have shape (N,) or (N, {self.n_outputs}) for n_outputs={self.n_outputs}, "
                f"got {tuple(y.shape)}; for classification pass integer labels (int64)"
            )
        return targets, "regression"

    @torch.no_grad()
    def fit(self, X, y) -> "ESN":
        """Fit the readout in closed form: ridge regression on ``[final states, 1]``, in float64.

        Parameters
        ----------
        X : array or tensor, (N, T, F)
        y : integer labels (N,) in ``0..n_outputs-1`` (classification: one-hot targets, prediction
            by argmax) or floats (N,) / (N, n_outputs) (regression).

        Returns
        -------
        ESN
            ``self``, fitted.
        """
        X = self._prepare(X)
        targets, task = self._targets(y, X.shape[0])
        features = self._final_states(X).to(torch.float64)
        design = torch.cat([features, features.new_ones(features.shape[0], 1)], dim=1)
        gram = design.T @ design
        penalty = torch.full((design.shape[1],), self.ridge, dtype=torch.float64, device=design.device)
        penalty[-1] = 0.0  # the bias is not shrunk
        gram.diagonal().add_(penalty)
        rhs = design.T @ targets.to(design.device)
        try:
            solution = torch.linalg.solve(gram, rhs)
        except RuntimeError:  # singular (ridge = 0 and too few samples): minimum-norm solution
            solution = torch.linalg.lstsq(design, targets.to(design.device), driver="gelsd").solution
        self.readout_weight = solution[:-1].T.to(self.weight.dtype).contiguous()
        self.readout_bias = solution[-1].to(self.weight.dtype).contiguous()
        self.task_code = torch.tensor(_TASKS.index(task), device=self.weight.device)
        return self

    def forward(self, X) -> torch.Tensor:
        """Readout outputs (N, n_outputs): class scores (no softmax) or regression values."""
        self._check_fitted()
        with torch.no_grad():
            features = self._final_states(self._prepare(X))
            return torch.addmm(self.readout_bias, features, self.readout_weight.T)

    @torch.no_grad()
    def predict(self, X) -> torch.Tensor:
        """Class labels (N,) int64 for classification; outputs (N,) or (N, n_outputs) for regression."""
        out = self.forward(X)
        if self.task == "classification":
            return out.argmax(dim=1)
        return out[:, 0] if self.n_outputs == 1 else out

    @torch.no_grad()
    def score(self, X, y) -> float:
        """Accuracy (classification) or coefficient of determination R^2 (regression)."""
        prediction = self.predict(X)
        y = _as_tensor(y, "y").to(prediction.device)
        if self.task == "classification":
            return (prediction == y).double().mean().item()
        y = y.to(torch.float64).reshape(prediction.shape)
        residual = ((y - prediction.double()) ** 2).sum()
        total = ((y - y.mean(0)) ** 2).sum()
        return (1 - residual / total).item()


class _Trace(NamedTuple):
    """What one forward run through the reservoir leaves for LRP (all time first)."""

    inputs: torch.Tensor  # (L, B, F)
    states: torch.Tensor  # (L+1, B, units), states[0] = 0
    pre_activations: torch.Tensor  # (L, B, units)
    activations: torch.Tensor  # (L, B, units), tanh of the pre-activations


def _check_leak_rate(leak_rate: float) -> float:
    leak_rate = float(leak_rate)
    if not 0 < leak_rate <= 1:
        raise ValueError(f"leak_rate must be in (0, 1], got {leak_rate!r}")
    return leak_rate


# --------------------------------------------------------------------------------------------
# LRP through time
# --------------------------------------------------------------------------------------------
@dataclass(repr=False)
class ESNExplanation(RichDisplayMixin):
    """Result of :func:`explain_esn`.

    Attributes
    ----------
    relevance : tensor (N, T, F)
        Relevance of every input value (pixel), at its own column.
    time_profile : tensor (N, T)
        ``relevance`` summed over the features of each time step.
    leaked : tensor (N,)
        Relevance absorbed on the way (biases of the readout and of every step, and the epsilon
        stabilizers): ``relevance.sum((1, 2)) + leaked == explained_output`` up to rounding.
    decay_rate : float
        Measured per-step decay of the mean ``|time_profile|`` (:func:`measure_decay_rate`).
    output : tensor (N, n_outputs)
        Readout outputs.
    target : tensor (N,) int64
        The explained output of each sample.
    leak_rate, slices, epsilon
        The settings the explanation was computed with.
    """

    relevance: torch.Tensor
    time_profile: torch.Tensor
    leaked: torch.Tensor
    decay_rate: float
    output: torch.Tensor
    target: torch.Tensor
    leak_rate: float
    slices: int
    epsilon: float

    def __repr__(self):
        return (f"ESNExplanation({self.relevance.shape[0]} sequence(s) of {self.relevance.shape[1]} steps x "
                f"{self.relevance.shape[2]} features, leak_rate={self.leak_rate:g}, slices={self.slices}, "
                f"decay_rate={self.decay_rate:.3g})")

    @property
    def explained_output(self) -> torch.Tensor:
        """(N,) the output that was explained (the target's score, no softmax)."""
        return self.output.gather(1, self.target[:, None])[:, 0]

    def conservation(self) -> torch.Tensor:
        """(N,) ``sum(relevance) + leaked - explained_output``; zero up to rounding."""
        return self.relevance.sum(dim=(1, 2)) + self.leaked - self.explained_output

    @property
    def theory_decay_rate(self) -> float:
        """The leak-only decay per step, ``-log(1 - leak_rate)`` (infinite at leak rate 1)."""
        return math.inf if self.leak_rate >= 1 else -math.log1p(-self.leak_rate)


def _resolve_target(esn: ESN, output: torch.Tensor, target) -> torch.Tensor:
    n = output.shape[0]
    if target is None:
        if esn.task == "classification":
            return output.argmax(dim=1)
        if esn.n_outputs == 1:
            return torch.zeros(n, dtype=torch.long, device=output.device)
        raise ValueError(f"this regression ESN has {esn.n_outputs} outputs: pass target=<output index> to explain_esn")
    target = _as_tensor(target, "target")
    if target.is_floating_point():
        raise TypeError("target must be an integer output index or an int64 tensor of shape (N,)")
    target = target.to(device=output.device, dtype=torch.long)
    if target.ndim == 0:
        target = target.expand(n)
    if target.shape != (n,):
        raise ValueError(f"target must be one index or shape ({n},), got {tuple(target.shape)}")
    if (target < 0).any() or (target >= esn.n_outputs).any():
        raise ValueError(f"target indices must lie in 0..{esn.n_outputs - 1}")
    return target.contiguous()


def _lrp_readout(features: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, output: torch.Tensor,
                 target: torch.Tensor, epsilon: float):
    """Step 1: readout ``z = V_k h + c_k`` for the explained output k, eps rule.

    ``R_h = h * V_k * R_k / stab(z_k)`` with ``R_k = z_k`` (the output itself). Returns ``R_h``
    (N, slices*units) and the relevance the bias and the stabilizer keep (N,).
    """
    z = output.gather(1, target[:, None])[:, 0]
    s, _ = _divide(z, _stabilize(z, epsilon), epsilon)  # R_k / stab(z_k) with R_k = z_k; 0/0 := 0
    R_h = features * weight[target] * s[:, None]
    c = bias[target]
    # z - (z - c) * s = c * s (bias share) + (z - z s) (stabilizer share); written from z so that
    # it is not the difference of the propagated sums.
    kept = c * s + (z - z * s)
    return R_h, kept


def _lrp_through_time(esn: ESN, trace: _Trace, R_x: torch.Tensor, epsilon: float):
    """Steps 2-4 of REFERENCE.md section 2 for one forward ``trace`` (time first, x(0) = 0).

    Per step t (backwards), with ``R_x`` the relevance of ``x(t)`` and ``stab(z) = z + eps sign(z)``:

    2. leaky sum ``x(t) = (1-a) x(t-1) + a h(t)`` (no bias), ``s' = R_x / stab(x(t))``:
       ``R_leak = (1-a) x(t-1) s'``, ``R_h = a h(t) s'``;
    3. tanh: ``R_z = R_h``;
    4. ``z = W_in u(t) + W x(t-1) + b``, ``s = R_z / stab(z)``: ``R_u(t) = u(t) * (s W_in)``,
       ``R_rec = x(t-1) * (s W)``;

    then ``R_x(t-1) = R_leak + R_rec = x(t-1) * ((1-a) s' + s W)``: one matrix product per step
    over the batch, never a (B, units, units) tensor. What stays behind per step is
    ``R_x - x(t) s' = (stab(x(t)) - x(t)) s'`` and ``R_z - (z - b) s = (stab(z) - z + b) s``, plus
    the whole ``R`` of a unit whose denominator is exactly 0 (possible only with eps = 0; 0/0 := 0).

    Returns the input relevance (L, B, F) and the relevance kept by ``b`` and the stabilizers (B,).
    """
    a = esn.leak_rate
    W, W_in, b = esn.weight, esn.input_weight, esn.bias
    x, z, h = trace.states, trace.pre_activations, trace.activations
    length, batch = z.shape[:2]
    s_all = torch.empty_like(z)  # kept for one input matrix product after the loop
    kept = R_x.new_zeros(batch)
    # Per step, not batched over time: the (batch, units) blocks stay in cache between the
    # few element-wise products, which costs less than streaming (time, batch, units) arrays.
    if epsilon:
        kept_per_unit = torch.zeros_like(R_x)  # stabilizer shares, summed once after the loop
        for t in range(length - 1, -1, -1):
            term_x = _stabilizer_term(x[t + 1], epsilon)
            s_leak = R_x / (x[t + 1] + term_x)
            kept_per_unit.addcmul_(term_x, s_leak)
            term_z = _stabilizer_term(z[t], epsilon)
            s = torch.div(h[t] * s_leak, z[t] + term_z, out=s_all[t]).mul_(a)  # R_z / stab(z), R_z = a h s'
            kept_per_unit.addcmul_(term_z, s)
            R_x = torch.addmm(s_leak, s, W, beta=1 - a).mul_(x[t])
        kept += kept_per_unit.sum(dim=1)
    else:
        for t in range(length - 1, -1, -1):
            s_leak, lost = _divide(R_x, x[t + 1], epsilon)
            if lost is not None:
                kept += lost
            s, lost = _divide(a * h[t] * s_leak, z[t], epsilon)
            if lost is not None:
                kept += lost
            s_all[t] = s
            R_x = torch.addmm(s_leak, s, W, beta=1 - a).mul_(x[t])
    kept += s_all.sum(dim=0) @ b
    R_u = trace.inputs * (s_all.reshape(-1, esn.n_reservoir) @ W_in).reshape(length, batch, -1)
    return R_u, kept


def measure_decay_rate(time_profile, slices: int = 1) -> float:
    """Per-step decay of relevance with lag, fitted log-linearly.

    ``m(t) = mean_n |time_profile[n, t]|``; the lag ``k(t)`` of column t is the number of steps
    from t to the last column of its sequence (of its slice when ``slices > 1``, same near-equal
    pieces as :class:`ESN`). The decay rate is the least-squares slope ``d`` of
    ``log m(t) = c - d k(t)`` over the columns with ``m(t) > 0``; relevance then scales as
    ``exp(-d k)``, to compare with the leak-only ``-log(1 - alpha)``. NaN when fewer than two
    columns qualify.
    """
    profile = _as_tensor(time_profile, "time_profile").to(torch.float64)
    if profile.ndim == 1:
        profile = profile[None]
    mean_abs = profile.abs().mean(dim=0)
    lags = torch.empty(profile.shape[1], dtype=torch.float64)
    for start, stop in _piece_bounds(profile.shape[1], slices):
        lags[start:stop] = torch.arange(stop - start - 1, -1, -1, dtype=torch.float64)
    usable = mean_abs > 0
    if int(usable.sum()) < 2 or lags[usable].unique().numel() < 2:
        return float("nan")
    k, log_m = lags[usable], mean_abs[usable].log()
    k_centered = k - k.mean()
    slope = (k_centered * (log_m - log_m.mean())).sum() / (k_centered**2).sum()
    return float(-slope)


@torch.no_grad()
def explain_esn(esn: ESN, X, target=None, epsilon: float = 1e-6) -> ESNExplanation:
    """LRP through time for a fitted :class:`ESN` (REFERENCE.md section 2, steps 1-4, eps rule).

    Parameters
    ----------
    esn : ESN
        A fitted ESN.
    X : array or tensor, (N, T, F)
    target : None, int or int tensor (N,)
        Output to explain. None: the predicted class (classification) or the single output
        (regression).
    epsilon : float
        Stabilizer of every eps rule, ``z + epsilon * sign(z)`` with ``sign(0) = +1``.
        ``epsilon = 0`` is allowed (LRP-0; a zero denominator then passes no relevance).

    Returns
    -------
    ESNExplanation
        With slices, each piece is explained from its own final state and its relevance is
        placed at its own columns.

    Examples
    --------
    >>> X = torch.randn(20, 8, 2)
    >>> esn = ESN(2, n_outputs=2, n_reservoir=30).fit(X, (X.sum((1, 2)) > 0).long())
    >>> explanation = explain_esn(esn, X)
    >>> explanation.relevance.shape
    torch.Size([20, 8, 2])
    """
    if not isinstance(esn, ESN):
        raise TypeError(f"explain_esn needs an ESN, got {type(esn).__name__}; use lrp_widgets.explain for other models")
    esn._check_fitted()
    epsilon = float(epsilon)
    if epsilon < 0 or not math.isfinite(epsilon):
        raise ValueError(f"epsilon must be a finite number >= 0, got {epsilon!r}")
    X = esn._prepare(X)
    n, n_steps, _ = X.shape
    features, traces = esn._final_states(X, keep=True)
    output = torch.addmm(esn.readout_bias, features, esn.readout_weight.T)
    target = _resolve_target(esn, output, target)

    R_features, kept = _lrp_readout(features, esn.readout_weight, esn.readout_bias, output, target, epsilon)
    units = esn.n_reservoir
    relevance = torch.empty_like(X)
    bounds = _piece_bounds(n_steps, esn.slices)
    for pieces, trace in traces:
        # Equal-length pieces are explained together, stacked on the batch axis as in the forward pass.
        R_final = torch.cat([R_features[:, index * units:(index + 1) * units] for index in pieces], dim=0)
        R_u, kept_pieces = _lrp_through_time(esn, trace, R_final, epsilon)
        for position, index in enumerate(pieces):
            start, stop = bounds[index]
            rows = slice(position * n, (position + 1) * n)
            relevance[:, start:stop] = R_u[:, rows].transpose(0, 1)
            kept += kept_pieces[rows]

    time_profile = relevance.sum(dim=2)
    return ESNExplanation(
        relevance=relevance,
        time_profile=time_profile,
        leaked=kept,
        decay_rate=measure_decay_rate(time_profile, esn.slices),
        output=output,
        target=target,
        leak_rate=esn.leak_rate,
        slices=esn.slices,
        epsilon=epsilon,
    )


# --------------------------------------------------------------------------------------------
# images <-> sequences, leak-rate heuristic
# --------------------------------------------------------------------------------------------
def _check_direction(direction: str) -> None:
    if direction not in _DIRECTIONS:
        raise ValueError(f"direction must be one of {_DIRECTIONS}, got {direction!r}")


def image_to_sequence(images, direction: str = "left_to_right") -> torch.Tensor:
    """Images as sequences of columns: (N, C, H, W) or (N, H, W) -> (N, T=W, F=C*H).

    Time step t is image column t (``"left_to_right"``) or column W-1-t (``"right_to_left"``);
    the features of a step are the column's pixels, channel by channel, top to bottom.
    Missing values must be filled first (see the module notes on masked data).
    """
    _check_direction(direction)
    images = _as_tensor(images, "images")
    if images.ndim == 3:
        images = images[:, None]
    if images.ndim != 4:
        raise ValueError(f"images must have shape (N, C, H, W) or (N, H, W), got {tuple(images.shape)}")
    n, channels, height, width = images.shape
    sequence = images.permute(0, 3, 1, 2).reshape(n, width, channels * height)
    if direction == "right_to_left":
        sequence = sequence.flip(1)
    return sequence.contiguous()


def sequence_to_image(sequence, channels: int = 1, direction: str = "left_to_right", mask=None) -> torch.Tensor:
    """Inverse of :func:`image_to_sequence`: (N, T, F) -> (N, channels, F // channels, T).

    Use it to draw relevance as an image. ``mask`` (H, W) bool, True where data is valid (e.g.
    ``enso.ocean``): masked points become NaN so that plots show them as masked, not as zero.
    """
    _check_direction(direction)
    sequence = _as_tensor(sequence, "sequence")
    if sequence.ndim != 3:
        raise ValueError(f"sequence must have shape (N, T, F), got {tuple(sequence.shape)}")
    n, n_steps, n_features = sequence.shape
    if n_features % channels:
        raise ValueError(f"{n_features} features per step cannot be split into {channels} channels")
    if direction == "right_to_left":
        sequence = sequence.flip(1)
    images = sequence.reshape(n, n_steps, channels, n_features // channels).permute(0, 2, 3, 1).contiguous()
    if mask is not None:
        mask = _as_tensor(mask, "mask").to(device=images.device, dtype=torch.bool)
        if mask.shape != images.shape[2:]:
            raise ValueError(f"mask must have the image shape {tuple(images.shape[2:])}, got {tuple(mask.shape)}")
        if not images.is_floating_point():
            images = images.to(torch.get_default_dtype())
        images = images.masked_fill(~mask, float("nan"))
    return images


def suggest_leak_rate(n_steps: int, keep: float = 0.1) -> float:
    """Largest leak rate whose leak-only decay keeps a fraction ``keep`` at the first step.

    ``(1 - alpha)^(T - 1) >= keep``, i.e. ``alpha = 1 - keep ** (1 / (T - 1))`` for a sequence of
    ``T = n_steps`` steps (per slice when slicing). This heuristic is our choice (REFERENCE.md
    section 2), not the paper's formula.

    Examples
    --------
    >>> round(suggest_leak_rate(32), 4)
    0.0716
    """
    if not isinstance(n_steps, (int, np.integer)) or n_steps < 2:
        raise ValueError(f"n_steps must be an integer >= 2, got {n_steps!r}")
    if not 0 < keep < 1:
        raise ValueError(f"keep must be in (0, 1), got {keep!r}")
    return 1.0 - keep ** (1.0 / (n_steps - 1))
