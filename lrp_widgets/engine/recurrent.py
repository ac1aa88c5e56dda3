"""LRP through time for ``nn.LSTM`` and ``nn.GRU`` (REFERENCE.md section 6, Arras et al. 2017/2019).

Design
------
A recurrent module is one stage of the engine, like a Linear layer: the engine's hooks see the
module's call, not its time steps. Its forward output is the module's own output, unchanged;
the hook recomputes what the rule needs (gates, cell states, pre-activations) from the hidden
sequences torch computed (``recurrent_cells.py``), and wraps the module's outputs in one autograd
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
(an :class:`UnsupportedConfigurationError`, a kind of :class:`UnsupportedModuleError`, naming the
module path and type): bidirectional modules, ``proj_size > 0``, packed sequences, unbatched input. Rules: Epsilon or Zero only (the
composite's rule for the module's type or name; by default the rule the composite gives
``nn.Linear``, else ``Epsilon()``).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from . import recurrent_cells, rules
from .errors import UnsupportedConfigurationError
from .results import ConservationTable
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

    def conservation(self) -> ConservationTable:
        """Relevance arriving at the module's outputs, reaching its inputs (and initial states), leaked.

        ``conservation().residual()`` is ``input + initial states + leaked - arriving``, zero up to
        rounding.
        """
        reached = self.relevance.sum(dim=(1, 2))
        for state in self.initial_state:
            reached = reached + state.sum(dim=(0, 2))
        sums = torch.stack([self.arriving, reached]).detach().cpu().double().numpy()
        return ConservationTable(["arriving", "input and initial states"], sums,
                                 leaked=self.leaked.detach().cpu().double().numpy())

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
                f"max |conservation residual| {abs(self.conservation().residual()).max():.2g}")

    def to_dict(self) -> dict:
        """Every field, plus the time profile and the conservation residual."""
        fields = {name: getattr(self, name) for name in self.__dataclass_fields__}
        return {**fields, "time_profile": self.time_profile, "conservation": self.conservation().to_dict()}


# -- checks -------------------------------------------------------------------------------------
def check_call(module: nn.Module, name: str, args: tuple) -> None:
    """Refuse configurations the rules do not cover, naming the module and the fix."""
    where = f"module '{name}' ({type(module).__module__}.{type(module).__name__})"
    if getattr(module, "bidirectional", False):
        raise UnsupportedConfigurationError(
            f"{where} is bidirectional; LRP through time supports unidirectional LSTM/GRU only. "
            "Use bidirectional=False, or two unidirectional modules (one on the flipped sequence) joined by torch.cat."
        )
    if getattr(module, "proj_size", 0):
        raise UnsupportedConfigurationError(
            f"{where} has proj_size={module.proj_size}; LSTMs with projections are not supported. "
            "Use proj_size=0 and an nn.Linear on the output instead."
        )
    if type(module) not in RECURRENT:
        raise UnsupportedConfigurationError(f"{where}: only nn.LSTM and nn.GRU themselves are supported, not subclasses")
    data = args[0] if args else None
    if isinstance(data, nn.utils.rnn.PackedSequence):
        raise UnsupportedConfigurationError(
            f"{where} received a PackedSequence; LRP through time needs a padded tensor (N, T, F). "
            "Pass equal-length (padded) sequences, or explain each length group separately."
        )
    if not isinstance(data, torch.Tensor) or data.dim() != 3:
        shape = tuple(data.shape) if isinstance(data, torch.Tensor) else type(data).__name__
        raise UnsupportedConfigurationError(
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
        dtype = module.weight_hh_l0.dtype
        # time-first views, not copies: the trace copies what it needs into its own buffers
        time_first = self.x.transpose(0, 1) if self.batch_first else self.x
        top = outputs[0].transpose(0, 1) if self.batch_first else outputs[0]
        # no autograd, and no functional-call watch: this is the engine's own arithmetic
        with torch.no_grad(), torch._C.DisableTorchFunction():
            self.traces = recurrent_cells.traces(module, time_first.to(dtype), hx, top.to(dtype), epsilon)
        self.outputs = outputs

    def backward(self, R_out, R_states):
        session, call, module = self.session, self.call, self.module
        mask = session.masks.get(call.name)
        if mask is not None:  # conditional relevance on the output sequence
            R_out = mask(R_out) if callable(mask) else R_out * mask.to(R_out.dtype)
        dtype = self.traces[0]["x"].dtype
        R_seq = (R_out.transpose(0, 1) if self.batch_first else R_out).to(dtype)  # a view: read per step
        R_states = tuple(R.to(dtype) for R in R_states)
        with torch.no_grad():
            R_x, hidden, cell, initial, kept = recurrent_cells.relevance(module, self.traces, R_seq, R_states)
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
