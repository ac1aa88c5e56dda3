"""LRP through time for an :class:`~lrp_widgets.esn.ESN` (REFERENCE.md section 2, steps 1-4)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..engine.checks import InputError, resolve_target
from ..engine.results import ConservationTable, Result, listed, plural
from ..engine.signatures import keyword_arguments
from .model import ESN, _Trace
from .sequences import _as_tensor, leak_only_decay_rate, piece_bounds, piece_lags
from .zplus import zplus_through_time

_RULES = ("epsilon", "zplus")


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


@dataclass(repr=False)
class ESNExplanation(Result):
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
    leak_rate, slices, epsilon, rule
        The settings the explanation was computed with (``rule``: ``"epsilon"`` or ``"zplus"``).
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
    rule: str = "epsilon"

    def __repr__(self):
        return (f"ESNExplanation({self.relevance.shape[0]} sequence(s) of {self.relevance.shape[1]} steps x "
                f"{self.relevance.shape[2]} features, leak_rate={self.leak_rate:g}, slices={self.slices}, "
                f"decay_rate={self.decay_rate:.3g})")

    @property
    def explained_output(self) -> torch.Tensor:
        """(N,) the output that was explained (the target's score, no softmax)."""
        return self.output.gather(1, self.target[:, None])[:, 0]

    def conservation(self) -> ConservationTable:
        """Explained output and input relevance per sample, with ``leaked``.

        ``conservation().residual()`` is ``sum(relevance) + leaked - explained_output``, zero up
        to rounding.
        """
        def numpy(tensor):
            return tensor.detach().cpu().double().numpy().reshape(len(self.target), -1).sum(1)

        return ConservationTable(["output", "input"], np.stack([numpy(self.explained_output), numpy(self.relevance)]),
                                 leaked=numpy(self.leaked))

    @property
    def theory_decay_rate(self) -> float:
        """The leak-only decay per step, ``-log(1 - leak_rate)`` (infinite at leak rate 1)."""
        return leak_only_decay_rate(self.leak_rate)

    def _numbers(self) -> dict:
        """Per-sample target, explained output, input relevance, leaked relevance, as numpy copies."""
        target = self.target.detach().cpu().numpy().astype(np.int64)
        output = self.explained_output.detach().cpu().double().numpy()
        kept = self.relevance.detach().cpu().double().numpy().reshape(len(target), -1).sum(1)
        leaked = self.leaked.detach().cpu().double().numpy().reshape(-1)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = kept / output
        return {"target": target, "output": output, "input": kept, "leaked": leaked, "ratio": ratio,
                "residual": kept + leaked - output}

    def summary(self) -> str:
        """Settings, target and output, conservation (with what biases and stabilizers kept), decay."""
        numbers = self._numbers()
        n, steps, features = self.relevance.shape
        return "\n".join([
            f"ESN explanation of {plural(n, 'sample')} of {steps} time steps x {features} features, "
            f"leak rate {self.leak_rate:g}, {plural(self.slices, 'slice')}, epsilon {self.epsilon:g}",
            f"target {listed(numbers['target'], '{}')}, explained output {listed(numbers['output'])}",
            f"conservation: input/output relevance = {listed(numbers['ratio'], '{:.3g}')}, "
            f"leaked (biases, stabilizers) {listed(numbers['leaked'])}, "
            f"max |input + leaked - output| = {np.max(np.abs(numbers['residual'])):.2g}",
            f"decay rate per step: measured {self.decay_rate:.3g}, leak-only theory {self.theory_decay_rate:.3g}",
        ])

    def to_dict(self) -> dict:
        """Every field, plus ``conservation`` (the table as a dict: output, input, leaked)."""
        fields = {name: getattr(self, name) for name in self.__dataclass_fields__}
        return {**fields, "conservation": self.conservation().to_dict()}


def _resolve_target(esn: ESN, output: torch.Tensor, target) -> torch.Tensor:
    """The engine's target resolution; a regression ESN's default is its single output."""
    if target is None and esn.task != "classification":
        if esn.n_outputs != 1:
            raise InputError(f"this regression ESN has {esn.n_outputs} outputs: pass target=<output index> to explain_esn")
        target = 0
    return resolve_target(target, output).contiguous()


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
    lags = torch.as_tensor(piece_lags(profile.shape[1], slices), dtype=torch.float64)
    usable = mean_abs > 0
    if int(usable.sum()) < 2 or lags[usable].unique().numel() < 2:
        return float("nan")
    k, log_m = lags[usable], mean_abs[usable].log()
    k_centered = k - k.mean()
    slope = (k_centered * (log_m - log_m.mean())).sum() / (k_centered**2).sum()
    return float(-slope)


@keyword_arguments("target", "epsilon", "rule", renamed={"esn": "model", "X": "x"})
@torch.no_grad()
def explain_esn(model: ESN, x, *, target=None, epsilon: float = 1e-6, rule: str = "epsilon") -> ESNExplanation:
    """LRP through time for a fitted :class:`ESN` (REFERENCE.md section 2, steps 1-4).

    Parameters
    ----------
    model : ESN
        A fitted ESN (formerly ``esn=``).
    x : array or tensor, (N, T, F)
        Sequences (formerly ``X=``). NaN, inf and fill values (>= 1e10) are rejected.
    target : None, int or int tensor (N,)
        Output to explain. None: the predicted class (classification) or the single output
        (regression).
    epsilon : float
        Stabilizer of every eps rule, ``z + epsilon * sign(z)`` with ``sign(0) = +1``.
        ``epsilon = 0`` is allowed (LRP-0; a zero denominator then passes no relevance).
        With ``rule="zplus"`` it is added to every (non-negative) z+ denominator.
    rule : {"epsilon", "zplus"}
        ``"epsilon"``: the epsilon rule at every step; about half of each output stays in the
        readout bias. ``"zplus"``: the paper's rule, "based on positive pre-activations and
        weights" (:mod:`lrp_widgets.esn.zplus`); its measured decay follows ``exp(-a (T - t))``
        for ``a >= 0.2`` (notebook 04).

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
    esn = model
    if not isinstance(esn, ESN):
        raise TypeError(f"explain_esn needs an ESN, got {type(esn).__name__}; use lrp_widgets.explain for other models")
    esn._check_fitted()
    epsilon = float(epsilon)
    if epsilon < 0 or not math.isfinite(epsilon):
        raise InputError(f"epsilon must be a finite number >= 0, got {epsilon!r}")
    if rule not in _RULES:
        raise InputError(f"rule must be one of {_RULES}, got {rule!r}")
    X = esn._prepare(x)
    n, n_steps, _ = X.shape
    features, traces = esn._final_states(X, keep=True)
    output = torch.addmm(esn.readout_bias, features, esn.readout_weight.T)
    target = _resolve_target(esn, output, target)
    if rule == "zplus":
        relevance, kept = zplus_through_time(esn, X, esn.states(X), output, target, epsilon)
        return _explanation(esn, relevance, kept, output, target, epsilon, rule)

    R_features, kept = _lrp_readout(features, esn.readout_weight, esn.readout_bias, output, target, epsilon)
    units = esn.n_reservoir
    relevance = torch.empty_like(X)
    bounds = piece_bounds(n_steps, esn.slices)
    for pieces, trace in traces:
        # Equal-length pieces are explained together, stacked on the batch axis as in the forward pass.
        R_final = torch.cat([R_features[:, index * units:(index + 1) * units] for index in pieces], dim=0)
        R_u, kept_pieces = _lrp_through_time(esn, trace, R_final, epsilon)
        for position, index in enumerate(pieces):
            start, stop = bounds[index]
            rows = slice(position * n, (position + 1) * n)
            relevance[:, start:stop] = R_u[:, rows].transpose(0, 1)
            kept += kept_pieces[rows]

    return _explanation(esn, relevance, kept, output, target, epsilon, rule)


def _explanation(esn, relevance, leaked, output, target, epsilon, rule) -> ESNExplanation:
    time_profile = relevance.sum(dim=2)
    return ESNExplanation(
        relevance=relevance,
        time_profile=time_profile,
        leaked=leaked,
        decay_rate=measure_decay_rate(time_profile, esn.slices),
        output=output,
        target=target,
        leak_rate=esn.leak_rate,
        slices=esn.slices,
        epsilon=epsilon,
        rule=rule,
    )
