"""LRP through time for ``nn.LSTM`` and ``nn.GRU`` (REFERENCE.md section 6, Arras et al. 2017/2019).

Design
------
A recurrent module is one stage of the engine, like a Linear layer: the engine's hooks see the
module's call, not its time steps. Its forward output is the module's own output, unchanged;
the hook re-runs the recurrence once (explicitly, in the module's dtype) to keep what the rule
needs (gates, cell states, pre-activations), and wraps the module's outputs in one autograd
function whose backward maps the relevance arriving at *all* outputs — the output sequence and
the final states ``h_n`` (and ``c_n``) — to the module's input (and to the initial states when
the model passes them). The usual user code therefore works as written::

    out, _ = self.lstm(x)             # tuple unpacking: plain Python
    return self.fc(out[:, -1])        # indexing: relevance follows the data, as gradients do

and so do ``self.fc(h_n[-1])``, ``torch.cat`` of several steps, and an LSTM whose initial state
comes from another module (relevance then flows on into that module). Arithmetic on the outputs
outside modules (``out.mean(1)``, ``out * mask``) is refused by the engine as for any model.

Rules (signal-take-all, epsilon on the linear maps; ``stab(z) = z + eps sign(z)``, sign(0)=+1)
--------------------------------------------------------------------------------------------
LSTM (torch gate order i, f, g, o): ``c_t = f c_{t-1} + i g``, ``h_t = o tanh(c_t)``.

* ``R_c(t) = R_h(t) + R_c``-from-step-t+1 (the gate ``o`` takes none, tanh passes);
* ``s = R_c(t) / stab(c_t)``: ``R_c(t-1) = f c_{t-1} s``, ``R_g = i g s`` (gates take none);
* ``g = tanh(W_ig x_t + W_hg h_{t-1} + b_ig + b_hg)``, ``s' = R_g / stab(pre_g)``:
  ``R_x(t) = x_t * (s' W_ig)``, ``R_h(t-1) += h_{t-1} * (s' W_hg)``; the biases keep theirs.

GRU: ``h_t = (1 - z) n + z h_{t-1}``, ``n = tanh(W_in x + b_in + r (W_hn h_{t-1} + b_hn))``.

* ``s = R_h(t) / stab(h_t)``: ``R_h(t-1) += z h_{t-1} s``, ``R_n = (1 - z) n s``;
* ``s' = R_n / stab(pre_n)``: ``R_x(t) = x_t * (s' W_in)``,
  ``R_h(t-1) += h_{t-1} * ((r s') W_hn)``; ``b_in`` and ``r b_hn`` keep theirs.
  The reset gate scales the signal ``W_hn h + b_hn``, which takes all of that term's relevance:
  one epsilon split over ``x``, ``r (W_hn h)`` and the biases (our choice: with eps = 0 it equals
  a second split of the term ``r (W_hn h + b_hn)``; a second stabilizer would only add leaks).

With several layers, the relevance at layer l's input sequence is the relevance of layer l-1's
hidden sequence. With no biases and eps = 0, relevance is conserved exactly; otherwise the
biases and stabilizers keep a share, reported as :attr:`RecurrentRelevance.leaked`.

Supported: ``nn.LSTM`` and ``nn.GRU``, batch_first or not, any number of layers, with or without
biases, batched input ``(N, T, F)`` (or ``(T, N, F)``), optional initial states. Not supported
(an :class:`UnsupportedModuleError` naming the module path and type): bidirectional modules,
``proj_size > 0``, packed sequences, unbatched input. Rules: Epsilon or Zero only (the
composite's rule for the module's type or name; by default the rule the composite gives
``nn.Linear``, else ``Epsilon()``).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from . import rules
from .errors import UnsupportedModuleError
from .types import RECURRENT

__all__ = ["RECURRENT", "RecurrentRelevance", "check_call", "attach"]


@dataclass(repr=False)
class RecurrentRelevance:
    """Relevance inside one call of a recurrent module (part of an :class:`Explanation`).

    Attributes
    ----------
    name, module_type : str
        The module's path in the model and its type (``"LSTM"``, ``"GRU"``).
    relevance : tensor (N, T, F)
        Relevance of the module's input, batch first whatever the module's layout.
    hidden : tensor (layers, N, T, H)
        Relevance of each hidden state ``h_t`` (all that reaches it: from the outputs and from
        step t+1), per layer.
    cell : tensor (layers, N, T, H) or None
        LSTM: relevance of each cell state ``c_t``.
    initial_state : tuple of tensors (layers, N, H)
        Relevance of ``h_0`` (and ``c_0``); zero when the initial state is zero.
    arriving : tensor (N,)
        Relevance that arrived at the module's outputs (sequence and final states).
    leaked : tensor (N,)
        Relevance the biases and the stabilizers kept inside the module.
    epsilon : float
        The stabilizer used.
    """

    name: str
    module_type: str
    relevance: torch.Tensor
    hidden: torch.Tensor
    cell: torch.Tensor | None
    initial_state: tuple
    arriving: torch.Tensor
    leaked: torch.Tensor
    epsilon: float

    @property
    def time_profile(self) -> torch.Tensor:
        """(N, T) input relevance summed over the features of each step."""
        return self.relevance.sum(dim=2)

    @property
    def hidden_profile(self) -> torch.Tensor:
        """(layers, N, T) relevance of the hidden state at each step, summed over units."""
        return self.hidden.sum(dim=3)

    def conservation(self) -> torch.Tensor:
        """(N,) ``input + initial states + leaked - arriving``: zero up to rounding."""
        kept = self.relevance.sum(dim=(1, 2)) + self.leaked - self.arriving
        for state in self.initial_state:
            kept = kept + state.sum(dim=(0, 2))
        return kept

    def __repr__(self):
        n, steps, features = self.relevance.shape
        return (f"RecurrentRelevance('{self.name}' ({self.module_type}), {n} sample(s) x {steps} steps x "
                f"{features} features, {self.hidden.shape[0]} layer(s), epsilon={self.epsilon:g})")

    def summary(self) -> str:
        """Shapes, what arrived, what reached the input, what biases and stabilizers kept."""
        arriving = self.arriving.double()
        kept = self.relevance.sum(dim=(1, 2)).double()
        with torch.no_grad():
            ratio = (kept / arriving).mean().item()
        return (f"{self!r}\nmean input/arriving relevance {ratio:.3g}, mean leaked {self.leaked.double().mean().item():.3g}, "
                f"max |conservation residual| {self.conservation().abs().max().item():.2g}")

    def to_dict(self) -> dict:
        """Every field, plus the time profile and the conservation residual."""
        fields = {name: getattr(self, name) for name in self.__dataclass_fields__}
        return {**fields, "time_profile": self.time_profile, "conservation": self.conservation()}


# -- checks -------------------------------------------------------------------------------------
def check_call(module: nn.Module, name: str, args: tuple) -> None:
    """Refuse configurations the rules do not cover, naming the module and the fix."""
    where = f"module '{name}' ({type(module).__module__}.{type(module).__name__})"
    if getattr(module, "bidirectional", False):
        raise UnsupportedModuleError(
            f"{where} is bidirectional; LRP through time supports unidirectional LSTM/GRU only. "
            "Use bidirectional=False, or two unidirectional modules (one on the flipped sequence) joined by torch.cat."
        )
    if getattr(module, "proj_size", 0):
        raise UnsupportedModuleError(
            f"{where} has proj_size={module.proj_size}; LSTMs with projections are not supported. "
            "Use proj_size=0 and an nn.Linear on the output instead."
        )
    if type(module) not in RECURRENT:
        raise UnsupportedModuleError(f"{where}: only nn.LSTM and nn.GRU themselves are supported, not subclasses")
    data = args[0] if args else None
    if isinstance(data, nn.utils.rnn.PackedSequence):
        raise UnsupportedModuleError(
            f"{where} received a PackedSequence; LRP through time needs a padded tensor (N, T, F). "
            "Pass equal-length (padded) sequences, or explain each length group separately."
        )
    if not isinstance(data, torch.Tensor) or data.dim() != 3:
        shape = tuple(data.shape) if isinstance(data, torch.Tensor) else type(data).__name__
        raise UnsupportedModuleError(
            f"{where} received input {shape}; LRP through time needs a batched 3-d input "
            f"({'(N, T, F) with batch_first=True' if module.batch_first else '(T, N, F)'})."
        )


def _rule(session, name: str, module: nn.Module) -> rules.Epsilon:
    """The module's rule: by name, by its type, else the composite's nn.Linear rule, else Epsilon()."""
    composite = session.composite
    rule = composite.named_rule(name)
    if rule is None:
        rule = next((r for t, r in composite.layer_rules.items() if isinstance(module, t)), None)
    if rule is None:
        linear = next((r for t, r in composite.layer_rules.items()
                       if issubclass(nn.Linear, t if isinstance(t, tuple) else (t,)) or
                       (isinstance(t, tuple) and nn.Linear in t)), None)
        rule = linear if isinstance(linear, rules.Epsilon) else rules.Epsilon()
    if not isinstance(rule, rules.Epsilon):
        raise ValueError(
            f"'{name}' ({type(module).__name__}) takes an Epsilon or Zero rule (epsilon on its linear maps, "
            f"signal-take-all on its gates), got {rule!r}"
        )
    return rule


# -- the recurrence, kept for the rules ---------------------------------------------------------
def _parameters(module, layer):
    weight_ih = getattr(module, f"weight_ih_l{layer}").detach()
    weight_hh = getattr(module, f"weight_hh_l{layer}").detach()
    bias_ih = getattr(module, f"bias_ih_l{layer}").detach() if module.bias else None
    bias_hh = getattr(module, f"bias_hh_l{layer}").detach() if module.bias else None
    return weight_ih, weight_hh, bias_ih, bias_hh


def _input_drive(x, weight, bias):
    """``x W^T + b`` for all steps in one matrix product: (T, N, F) -> (T, N, G)."""
    steps, batch, features = x.shape
    flat = x.reshape(steps * batch, features)
    drive = flat @ weight.T if bias is None else torch.addmm(bias, flat, weight.T)
    return drive.reshape(steps, batch, -1)


def _lstm_layer(x, weights, h0, c0):
    """Run one LSTM layer over (T, N, F); keep h, c (T+1 each), the gates and g's pre-activation."""
    weight_ih, weight_hh, bias_ih, bias_hh = weights
    H = weight_hh.shape[1]
    bias = None if bias_ih is None else bias_ih + bias_hh
    drive = _input_drive(x, weight_ih, bias)
    steps = x.shape[0]
    h = x.new_empty(steps + 1, *h0.shape)
    c = x.new_empty(steps + 1, *h0.shape)
    gates = x.new_empty(steps, h0.shape[0], 4 * H)
    pre_g = x.new_empty(steps, *h0.shape)
    h[0], c[0] = h0, c0
    recurrent = weight_hh.T
    for t in range(steps):
        pre = torch.addmm(drive[t], h[t], recurrent)
        pre_g[t] = pre[:, 2 * H:3 * H]
        act = torch.sigmoid(pre, out=gates[t])
        act[:, 2 * H:3 * H] = pre_g[t].tanh()
        i, f, g, o = act.split(H, dim=1)
        torch.addcmul(i * g, f, c[t], out=c[t + 1])
        torch.mul(o, c[t + 1].tanh(), out=h[t + 1])
    return {"h": h, "c": c, "gates": gates, "pre_g": pre_g}


def _gru_layer(x, weights, h0):
    """Run one GRU layer over (T, N, F); keep h (T+1), r, z, n and n's pre-activation."""
    weight_ih, weight_hh, bias_ih, bias_hh = weights
    H = weight_hh.shape[1]
    drive = _input_drive(x, weight_ih, bias_ih)
    steps = x.shape[0]
    h = x.new_empty(steps + 1, *h0.shape)
    r, z, n, pre_n = (x.new_empty(steps, *h0.shape) for _ in range(4))
    h[0] = h0
    recurrent = weight_hh.T
    for t in range(steps):
        hidden = h[t] @ recurrent if bias_hh is None else torch.addmm(bias_hh, h[t], recurrent)
        dr, dz, dn = drive[t].split(H, dim=1)
        hr, hz, hn = hidden.split(H, dim=1)
        torch.sigmoid(dr + hr, out=r[t])
        torch.sigmoid(dz + hz, out=z[t])
        torch.addcmul(dn, r[t], hn, out=pre_n[t])
        torch.tanh(pre_n[t], out=n[t])
        torch.lerp(n[t], h[t], z[t], out=h[t + 1])  # (1 - z) n + z h
    return {"h": h, "r": r, "z": z, "n": n, "pre_n": pre_n}


def _trace(module, x, hx):
    """Every layer's trace, time first; ``x`` (T, N, F), ``hx`` the initial states or None."""
    layers, batch, H = module.num_layers, x.shape[1], module.hidden_size
    lstm = isinstance(module, nn.LSTM)
    if hx is None:
        zeros = x.new_zeros(layers, batch, H)
        h0, c0 = zeros, (zeros if lstm else None)
    elif lstm:
        h0, c0 = (state.detach().to(x.dtype) for state in hx)
    else:
        h0, c0 = hx.detach().to(x.dtype), None
    traces, inputs = [], x
    for layer in range(layers):
        weights = _parameters(module, layer)
        trace = _lstm_layer(inputs, weights, h0[layer], c0[layer]) if lstm else _gru_layer(inputs, weights, h0[layer])
        trace["x"] = inputs
        traces.append(trace)
        inputs = trace["h"][1:]
    return traces


# -- relevance, backwards in time ---------------------------------------------------------------
def _split(R, z, epsilon, kept):
    """``s = R / stab(z)`` and what the stabilizer keeps, ``R - z s``, added to ``kept`` (N, H).

    With eps = 0 a zero denominator passes nothing (0/0 := 0) and keeps all of ``R``.
    """
    if epsilon:
        term = torch.copysign(z.new_tensor(epsilon), z + 0.0)  # eps sign(z), sign(0) = +1
        s = R / (z + term)
        kept.addcmul_(term, s)
        return s
    zero = z == 0
    s = rules.divide(R, z, 0.0)
    if bool(zero.any()):
        kept.add_(R * zero)
    return s


def _lstm_backward(trace, weights, R_seq, R_h_final, R_c_final, epsilon):
    """Relevance of the input sequence, per-step h and c relevance, initial states, kept (N,)."""
    weight_ih, weight_hh, bias_ih, bias_hh = weights
    H = weight_hh.shape[1]
    W_ig, W_hg = weight_ih[2 * H:3 * H], weight_hh[2 * H:3 * H]
    h, c, gates, pre_g = trace["h"], trace["c"], trace["gates"], trace["pre_g"]
    steps = R_seq.shape[0]
    hidden, cell, s_all = torch.empty_like(R_seq), torch.empty_like(R_seq), torch.empty_like(R_seq)
    kept = torch.zeros_like(R_seq[0])
    R_cell, R_carry = R_c_final, R_h_final
    for t in range(steps - 1, -1, -1):
        i, f, g, _ = gates[t].split(H, dim=1)
        R_h = torch.add(R_seq[t], R_carry, out=hidden[t])
        R_c = torch.add(R_h, R_cell, out=cell[t])  # o gates, tanh passes
        s = _split(R_c, c[t + 1], epsilon, kept)
        R_cell = f * c[t] * s
        s_all[t] = _split(i * g * s, pre_g[t], epsilon, kept)
        R_carry = h[t] * (s_all[t] @ W_hg)
    bias_kept = kept.sum(dim=1)
    if bias_ih is not None:
        bias_kept = bias_kept + s_all.sum(dim=0) @ (bias_ih[2 * H:3 * H] + bias_hh[2 * H:3 * H])
    R_x = trace["x"] * _input_drive(s_all, W_ig.T, None)
    return R_x, hidden, cell, (R_carry, R_cell), bias_kept


def _gru_backward(trace, weights, R_seq, R_h_final, epsilon):
    """As :func:`_lstm_backward`, for a GRU layer (no cell)."""
    weight_ih, weight_hh, bias_ih, bias_hh = weights
    H = weight_hh.shape[1]
    W_in, W_hn = weight_ih[2 * H:3 * H], weight_hh[2 * H:3 * H]
    h, r, z, n, pre_n = trace["h"], trace["r"], trace["z"], trace["n"], trace["pre_n"]
    steps = R_seq.shape[0]
    hidden, s_all = torch.empty_like(R_seq), torch.empty_like(R_seq)
    r_s_sum = torch.zeros_like(R_seq[0])
    kept = torch.zeros_like(R_seq[0])
    R_carry = R_h_final
    for t in range(steps - 1, -1, -1):
        R_h = torch.add(R_seq[t], R_carry, out=hidden[t])
        s = _split(R_h, h[t + 1], epsilon, kept)
        s_n = s_all[t] = _split((1 - z[t]) * n[t] * s, pre_n[t], epsilon, kept)
        r_s = r[t] * s_n  # the reset gate scales the signal W_hn h + b_hn, which takes all
        r_s_sum += r_s
        R_carry = h[t] * (torch.addcmul(r_s @ W_hn, z[t], s))
    bias_kept = kept.sum(dim=1)
    if bias_ih is not None:
        bias_kept = bias_kept + s_all.sum(dim=0) @ bias_ih[2 * H:3 * H] + r_s_sum @ bias_hh[2 * H:3 * H]
    R_x = trace["x"] * _input_drive(s_all, W_in.T, None)
    return R_x, hidden, None, (R_carry,), bias_kept


def relevance(module, traces, R_out, R_states, epsilon):
    """Relevance through every layer, top down; ``R_out`` (T, N, H), ``R_states`` (h_n[, c_n]).

    Returns the input relevance (T, N, F), per-layer hidden (and cell) relevance (layers, T, N, H),
    the initial states' relevance (layers, N, H) each, and the kept relevance (N,).
    """
    lstm = isinstance(module, nn.LSTM)
    R_seq, kept = R_out, 0
    hidden, cell, initial = [], [], [[], []]
    for layer in range(module.num_layers - 1, -1, -1):
        weights = _parameters(module, layer)
        if lstm:
            R_seq, h_rel, c_rel, first, leak = _lstm_backward(
                traces[layer], weights, R_seq, R_states[0][layer], R_states[1][layer], epsilon)
            cell.append(c_rel)
        else:
            R_seq, h_rel, _, first, leak = _gru_backward(traces[layer], weights, R_seq, R_states[0][layer], epsilon)
        hidden.append(h_rel)
        kept = kept + leak
        for index, state in enumerate(first):
            initial[index].append(state)
    order = slice(None, None, -1)  # collected top down; layers are numbered bottom up
    hidden = torch.stack(hidden[order])
    cell = torch.stack(cell[order]) if lstm else None
    initial = tuple(torch.stack(states[order]) for states in initial if states)
    return R_seq, hidden, cell, initial, kept


# -- the autograd stage ---------------------------------------------------------------------------
class _PropagateRecurrent(torch.autograd.Function):
    """Outputs: the module's outputs; backward: LRP through time to the input and initial states."""

    @staticmethod
    def forward(ctx, stage, x, *states):
        ctx.stage = stage
        outputs, stage.outputs = stage.outputs, None
        return outputs

    @staticmethod
    def backward(ctx, R_out, *R_states):
        stage = ctx.stage
        ctx.stage = None
        return (None, *stage.backward(R_out, R_states))


class _Stage:
    """One call of a recurrent module: its trace, rule and where its results go."""

    def __init__(self, session, call, module, x, hx, outputs, epsilon):
        self.session, self.call, self.module = session, call, module
        self.batch_first, self.epsilon, self.hx = module.batch_first, epsilon, hx
        self.x = x.detach()
        time_first = self.x.transpose(0, 1) if self.batch_first else self.x
        dtype = module.weight_hh_l0.dtype
        with torch.no_grad():
            self.traces = _trace(module, time_first.to(dtype), hx)
        self.outputs = outputs

    def backward(self, R_out, R_states):
        session, call, module = self.session, self.call, self.module
        mask = session.masks.get(call.name)
        if mask is not None:  # conditional relevance on the output sequence
            R_out = mask(R_out) if callable(mask) else R_out * mask.to(R_out.dtype)
        dtype = self.traces[0]["h"].dtype
        R_seq = (R_out.transpose(0, 1) if self.batch_first else R_out).to(dtype)
        R_states = tuple(R.to(dtype) for R in R_states)
        with torch.no_grad():
            R_x, hidden, cell, initial, kept = relevance(module, self.traces, R_seq, R_states, self.epsilon)
        self.traces = None
        arriving = R_seq.sum(dim=(0, 2)) + sum(R.sum(dim=(0, 2)) for R in R_states)

        def to_batch(t):  # (layers, T, N, H) -> (layers, N, T, H)
            return t.transpose(1, 2)

        session.recurrent[call.name] = RecurrentRelevance(
            name=call.name, module_type=type(module).__name__, relevance=R_x.transpose(0, 1).detach(),
            hidden=to_batch(hidden), cell=None if cell is None else to_batch(cell), initial_state=initial,
            arriving=arriving, leaked=kept, epsilon=self.epsilon,
        )
        R_input = (R_x.transpose(0, 1) if self.batch_first else R_x).to(self.x.dtype)
        session.record_input(call, R_input, batch_dim=0 if self.batch_first else 1)
        if self.hx is None:
            return (R_input,)
        return (R_input, *(R.to(self.x.dtype) for R in initial))


def attach(session, call, args: tuple, output):
    """Wrap the module's ``output`` so that its backward is LRP through time; same structure back."""
    module = call.module
    rule = _rule(session, call.name, module)
    session.first_done = True  # the first-layer rule (e.g. Flat) is for Linear/Conv, not for this module
    x = args[0]
    hx = args[1] if len(args) > 1 else None
    sequence, final = output
    lstm = isinstance(module, nn.LSTM)
    finals = tuple(final) if lstm else (final,)
    stage = _Stage(session, call, module, x, hx, (sequence.detach(), *(f.detach() for f in finals)), rule.epsilon)
    states = () if hx is None else (tuple(hx) if lstm else (hx,))
    results = _PropagateRecurrent.apply(stage, x, *states)
    return (results[0], tuple(results[1:])) if lstm else (results[0], results[1])
