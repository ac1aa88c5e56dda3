"""The leaky echo state network: reservoir, unrolling in time and the closed-form ridge readout."""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from ..engine.checks import InputError, check_positive_int
from .sequences import _as_tensor, _check_finite, _check_sequences, _piece_bounds, _piece_groups

_TASKS = (None, "classification", "regression")  # ESN.task_code indexes this


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
            check_positive_int(value, name)
        for name, value, valid, allowed in (
            ("density", density, 0 < density <= 1, "in (0, 1]"),
            ("spectral_radius", spectral_radius, spectral_radius >= 0, ">= 0"),
            ("input_scale", input_scale, input_scale >= 0, ">= 0"),
            ("ridge", ridge, ridge >= 0, ">= 0"),
        ):
            if not valid:
                raise InputError(f"{name} must be {allowed}, got {value!r}")
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
