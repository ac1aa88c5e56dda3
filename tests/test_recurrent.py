"""LRP through time for nn.LSTM and nn.GRU (engine/recurrent.py): against the independent slow
reference (tests/rnn_reference.py), conservation, the model left unchanged, clear errors."""
import copy

import numpy as np
import pytest
import torch
from torch import nn

from lrp_widgets import Composite, composites, explain, rules
from lrp_widgets.engine.errors import FunctionalCallError, InputError, UnsupportedModuleError

from . import rnn_reference as ref

FEATURES, HIDDEN, STEPS, CLASSES = 3, 4, 5, 3


class Classifier(nn.Module):
    """The usual user model: recurrent module, then a Linear on the last step / sequence / states."""

    def __init__(self, cell, batch_first=True, layers=1, bias=True, readout="last"):
        super().__init__()
        self.batch_first, self.readout = batch_first, readout
        self.rnn = cell(FEATURES, HIDDEN, num_layers=layers, batch_first=batch_first, bias=bias)
        width = {"last": HIDDEN, "sequence": HIDDEN * STEPS, "states": HIDDEN * (2 if cell is nn.LSTM else 1)}[readout]
        self.fc = nn.Linear(width, CLASSES, bias=bias)

    def forward(self, x):
        if not self.batch_first:
            x = x.transpose(0, 1)
        out, final = self.rnn(x)
        if not self.batch_first:
            out = out.transpose(0, 1)
        if self.readout == "last":
            return self.fc(out[:, -1])
        if self.readout == "sequence":
            return self.fc(out.reshape(out.shape[0], -1))
        if isinstance(final, tuple):  # LSTM: (h_n, c_n)
            return self.fc(torch.cat([final[0][-1], final[1][-1]], dim=1))
        return self.fc(final[-1])


def make(cell, seed=0, **kwargs):
    torch.manual_seed(seed)
    model = Classifier(cell, **kwargs).double().eval()
    with torch.no_grad():  # larger weights than the default init: gates away from 0.5, sharper test
        for parameter in model.parameters():
            parameter.mul_(2.0)
    return model


def reference_explanation(model, x, target, eps):
    """Per sample: R_x (T, F), hidden relevance (layers, T, H), leaked in the RNN and the readout."""
    rnn, fc = model.rnn, model.fc
    L, H = rnn.num_layers, rnn.hidden_size
    weight = fc.weight.detach().numpy()
    bias = None if fc.bias is None else fc.bias.detach().numpy()
    results = []
    for n in range(x.shape[0]):
        xs = x[n].numpy()
        trace = ref.forward(rnn, xs)
        sequence = np.stack([s["h"] for s in trace[-1]])
        h_n, c_n = ref.final_states(rnn, xs)
        a = {"last": sequence[-1], "sequence": sequence.reshape(-1),
             "states": np.concatenate([h_n[-1]] + ([c_n[-1]] if c_n is not None else []))}[model.readout]
        logits = weight @ a + (0 if bias is None else bias)
        R_logit = np.zeros(CLASSES)
        R_logit[target[n]] = logits[target[n]]
        R_a, leaked_fc = ref.linear_epsilon(weight, bias, a, R_logit, eps)
        R_out, R_hn = np.zeros((STEPS, H)), np.zeros((L, H))
        R_cn = np.zeros((L, H)) if c_n is not None else None
        if model.readout == "last":
            R_out[-1] = R_a
        elif model.readout == "sequence":
            R_out = R_a.reshape(STEPS, H)
        else:
            R_hn[-1] = R_a[:H]
            if R_cn is not None:
                R_cn[-1] = R_a[H:]
        R_x, hidden, leaked_rnn = ref.through_time(rnn, xs, R_out, R_hn, R_cn, eps)
        results.append(dict(R_x=R_x, hidden=hidden, leaked_rnn=leaked_rnn, leaked_fc=leaked_fc, logit=logits[target[n]]))
    return results


CASES = [
    (cell, batch_first, layers, readout)
    for cell in (nn.LSTM, nn.GRU)
    for batch_first, layers, readout in [(True, 1, "last"), (False, 1, "last"), (True, 2, "last"),
                                         (False, 2, "sequence"), (True, 2, "states"), (True, 1, "sequence")]
]


@pytest.mark.parametrize("cell, batch_first, layers, readout", CASES)
def test_explain_equals_the_slow_reference(cell, batch_first, layers, readout):
    model = make(cell, batch_first=batch_first, layers=layers, readout=readout)
    x = torch.randn(3, STEPS, FEATURES, dtype=torch.float64)
    eps = 1e-3  # large enough that the stabilizer's share is visible in the comparison
    result = explain(model, x, composite=composites.epsilon(eps))
    inner = result.recurrent["rnn"]
    expected = reference_explanation(model, x, result.target.numpy(), eps)
    for n, want in enumerate(expected):
        np.testing.assert_allclose(result.relevance[n].numpy(), want["R_x"], rtol=0, atol=1e-10)
        np.testing.assert_allclose(inner.hidden[:, n].numpy(), want["hidden"], rtol=0, atol=1e-10)
        np.testing.assert_allclose(inner.leaked[n].item(), want["leaked_rnn"], rtol=0, atol=1e-10)
    # what the model leaks in all (readout and RNN), as the reference counts it, closes the books
    logit = np.array([w["logit"] for w in expected])
    leaked = np.array([w["leaked_rnn"] + w["leaked_fc"] for w in expected])
    np.testing.assert_allclose(result.relevance.sum((1, 2)).numpy() + leaked, logit, rtol=0, atol=1e-10)
    assert np.abs(leaked).max() > 1e-3  # biases take a real share: this comparison is not vacuous


@pytest.mark.parametrize("cell", [nn.LSTM, nn.GRU])
@pytest.mark.parametrize("layers", [1, 3])
def test_conserved_exactly_without_biases_and_epsilon(cell, layers):
    model = make(cell, layers=layers, bias=False, readout="sequence")
    x = torch.randn(6, STEPS, FEATURES, dtype=torch.float64)
    result = explain(model, x, composite="lrp0")
    explained = result.output.gather(1, result.target[:, None])[:, 0]
    torch.testing.assert_close(result.relevance.sum((1, 2)), explained, rtol=0, atol=1e-12)
    inner = result.recurrent["rnn"]
    assert inner.epsilon == 0.0
    torch.testing.assert_close(inner.leaked, torch.zeros_like(inner.leaked), rtol=0, atol=1e-12)
    table = result.conservation()
    assert table.names == ["output", "fc", "rnn", "input"]
    np.testing.assert_allclose(table.ratio(), 1.0, atol=1e-10)


@pytest.mark.parametrize("cell", [nn.LSTM, nn.GRU])
def test_leaked_share_closes_the_books_with_biases(cell):
    model = make(cell, layers=2, batch_first=False)
    x = torch.randn(5, STEPS, FEATURES, dtype=torch.float64)
    result = explain(model, x, composite=composites.epsilon(0.01))
    inner = result.recurrent["rnn"]
    np.testing.assert_allclose(inner.conservation().residual(), 0.0, rtol=0, atol=1e-12)
    table = result.conservation().to_dict()
    # the RNN stage: what reached its outputs = its input relevance + what it kept
    torch.testing.assert_close(torch.as_tensor(table["fc"]), inner.arriving, rtol=0, atol=1e-12)
    torch.testing.assert_close(torch.as_tensor(table["rnn"]) + inner.leaked, inner.arriving, rtol=0, atol=1e-12)
    assert inner.leaked.abs().max() > 1e-3


def test_epsilon_to_zero_approaches_exact_conservation():
    model = make(nn.LSTM, layers=2, bias=False)
    x = torch.randn(4, STEPS, FEATURES, dtype=torch.float64)
    gaps = []
    for eps in (1e-2, 1e-4, 1e-6, 0.0):
        result = explain(model, x, composite=composites.epsilon(eps) if eps else "lrp0")
        explained = result.output.gather(1, result.target[:, None])[:, 0]
        gaps.append((result.relevance.sum((1, 2)) - explained).abs().max().item())
    assert gaps[-1] < 1e-12
    assert gaps[0] > gaps[1] > gaps[2]


def test_recurrent_details_shapes_and_profiles():
    model = make(nn.LSTM, layers=2)
    x = torch.randn(4, STEPS, FEATURES, dtype=torch.float64)
    result = explain(model, x)
    inner = result.recurrent["rnn"]
    assert inner.relevance.shape == (4, STEPS, FEATURES)
    assert inner.hidden.shape == inner.cell.shape == (2, 4, STEPS, HIDDEN)
    assert [s.shape for s in inner.initial_state] == [(2, 4, HIDDEN)] * 2
    torch.testing.assert_close(inner.time_profile, result.relevance.sum(2))
    assert inner.hidden_profile.shape == (2, 4, STEPS)
    # zero initial states get no relevance (their contributions are zero)
    assert all(float(s.abs().max()) == 0.0 for s in inner.initial_state)
    assert "LSTM 'rnn'" in result.summary()
    assert set(result.to_dict()["recurrent"]["rnn"]) >= {"relevance", "hidden", "leaked", "time_profile"}
    assert "max |conservation residual|" in inner.summary()


def test_first_layer_rule_does_not_reach_the_readout():
    """epsilon_plus_flat's Flat rule is for the first Linear/Conv; after an LSTM the readout keeps epsilon."""
    model = make(nn.GRU)
    x = torch.randn(3, STEPS, FEATURES, dtype=torch.float64)
    default = explain(model, x).relevance  # epsilon_plus_flat
    plain = explain(model, x, composite=composites.epsilon(1e-6)).relevance
    torch.testing.assert_close(default, plain)


def test_rule_by_name_and_type_and_wrong_rule():
    model = make(nn.LSTM)
    x = torch.randn(2, STEPS, FEATURES, dtype=torch.float64)
    by_name = explain(model, x, composite=Composite({nn.Linear: rules.Epsilon(1e-6)}, name_rules={"rnn": rules.Zero()}))
    assert by_name.recurrent["rnn"].epsilon == 0.0
    by_type = explain(model, x, composite=Composite({nn.LSTM: rules.Epsilon(0.5)}))
    assert by_type.recurrent["rnn"].epsilon == 0.5
    with pytest.raises(ValueError, match="'rnn' \\(LSTM\\) takes an Epsilon or Zero rule"):
        explain(model, x, composite=Composite(name_rules={"rnn": rules.ZPlus()}))


def test_initial_state_from_another_module_gets_relevance():
    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.init = nn.Linear(2, HIDDEN)
            self.tanh = nn.Tanh()
            self.rnn = nn.GRU(FEATURES, HIDDEN, batch_first=True)
            self.fc = nn.Linear(HIDDEN, CLASSES)

        def forward(self, x):
            sequence, context = x[:, :, :FEATURES], x[:, 0, FEATURES:]
            h0 = self.tanh(self.init(context))[None]
            out, _ = self.rnn(sequence, h0)
            return self.fc(out[:, -1])

    torch.manual_seed(1)
    model = Encoder().double().eval()
    x = torch.randn(4, STEPS, FEATURES + 2, dtype=torch.float64)
    result = explain(model, x, composite="lrp0")
    context_relevance = result.relevance[:, 0, FEATURES:]
    assert context_relevance.abs().sum() > 0
    inner = result.recurrent["rnn"]
    np.testing.assert_allclose(inner.conservation().residual(), 0.0, rtol=0, atol=1e-12)
    # the relevance of h0 is what reaches the Tanh that made it (tanh passes relevance)
    at_tanh = explain(model, x, composite="lrp0", layers=True).layers["tanh"]
    torch.testing.assert_close(inner.initial_state[0][0], at_tanh, rtol=0, atol=1e-12)


def test_float32_model_matches_float64():
    model = make(nn.LSTM, layers=2)
    x = torch.randn(4, STEPS, FEATURES, dtype=torch.float64)
    single = explain(copy.deepcopy(model).float(), x.float()).relevance
    double = explain(model, x).relevance
    assert single.dtype == torch.float32
    torch.testing.assert_close(single.double(), double, rtol=1e-4, atol=1e-5)


def test_model_left_unchanged():
    model = make(nn.GRU, layers=2).train()
    before = copy.deepcopy(model.state_dict())
    explain(model, torch.randn(2, STEPS, FEATURES, dtype=torch.float64))
    assert model.training and model.rnn.training
    assert not model.rnn._forward_hooks and not model.rnn._forward_pre_hooks
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key])


def test_output_is_the_models_own():
    model = make(nn.LSTM, layers=2)
    x = torch.randn(3, STEPS, FEATURES, dtype=torch.float64)
    with torch.no_grad():
        expected = model(x)
    torch.testing.assert_close(explain(model, x).output, expected, rtol=0, atol=0)


# -- clear errors ---------------------------------------------------------------------------------
class Wrapper(nn.Module):
    def __init__(self, rnn, pack=False):
        super().__init__()
        self.body = nn.Sequential()
        self.body.add_module("rnn", rnn)
        self.fc = nn.Linear(rnn.hidden_size * (2 if rnn.bidirectional else 1), 2)
        self.pack = pack

    def forward(self, x):
        if self.pack:
            x = nn.utils.rnn.pack_padded_sequence(x, torch.full((x.shape[0],), x.shape[1]), batch_first=True)
        out, _ = self.body.rnn(x)
        return self.fc(out[:, -1])


@pytest.mark.parametrize("rnn, message", [
    (nn.LSTM(3, 4, batch_first=True, bidirectional=True), r"'body.rnn' \(torch.nn.modules.rnn.LSTM\) is bidirectional"),
    (nn.GRU(3, 4, batch_first=True, bidirectional=True), r"'body.rnn' \(torch.nn.modules.rnn.GRU\) is bidirectional"),
    (nn.LSTM(3, 4, batch_first=True, proj_size=2), r"'body.rnn' .*proj_size=2"),
    (nn.RNN(3, 4, batch_first=True), r"'body.rnn' is torch.nn.RNN, which lrp_widgets does not support yet"),
])
def test_unsupported_configurations_name_the_module(rnn, message):
    model = Wrapper(rnn)
    if rnn.proj_size:
        model.fc = nn.Linear(2, 2)
    with pytest.raises(UnsupportedModuleError, match=message):
        explain(model, torch.randn(2, 5, 3))


def test_packed_sequences_are_refused():
    model = Wrapper(nn.LSTM(3, 4, batch_first=True), pack=True)
    with pytest.raises(UnsupportedModuleError, match="packs the data .*packed sequences are not supported"):
        explain(model, torch.randn(2, 5, 3))


def test_unbatched_input_is_refused():
    class Unbatched(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = nn.GRU(3, 4)
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            out, _ = self.rnn(x[0])  # one (T, F) sequence
            return self.fc(out[-1:])

    with pytest.raises(UnsupportedModuleError, match=r"'rnn' .*received input \(5, 3\).*batched 3-d input"):
        explain(Unbatched(), torch.randn(1, 5, 3))


def test_bad_input_names_the_problem():
    model = make(nn.LSTM)
    x = torch.randn(2, STEPS, FEATURES, dtype=torch.float64)
    x[1, 2, 0] = float("nan")
    with pytest.raises(InputError, match="NaN"):
        explain(model, x)
    with pytest.raises(InputError, match="rejected an input of shape"):
        explain(model, torch.randn(2, STEPS, FEATURES + 1, dtype=torch.float64))
    with pytest.raises(InputError, match="out of range"):
        explain(model, torch.randn(2, STEPS, FEATURES, dtype=torch.float64), target=7)


def test_arithmetic_on_the_outputs_is_named():
    class Mean(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = nn.LSTM(3, 4, batch_first=True)
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            out, _ = self.rnn(x)
            return self.fc(out.mean(1))

    model, x = Mean(), torch.randn(2, 5, 3)
    with pytest.raises(FunctionalCallError, match="`mean`"):  # the hook path names the call
        explain(model, x, graph=False)
    # as written (the traced graph): the mean over time is average pooling, the LSTM its own stage
    result = explain(model, x, composite="lrp0")
    assert result.relevance.shape == x.shape and "lstm" not in result.recurrent
    assert "rnn" in result.recurrent
    np.testing.assert_allclose(result.recurrent["rnn"].conservation().residual(), 0.0, atol=1e-5)


@pytest.mark.parametrize("grad_enabled", [True, False])
def test_grad_mode_is_the_callers_after_explain(grad_enabled):
    # the recurrent kernel runs with autograd recording off inside explain; the caller's mode comes back,
    # also when the module raises in the middle of the forward pass
    model = make(nn.LSTM)
    good = torch.randn(2, STEPS, FEATURES, dtype=torch.float64)
    bad = torch.randn(2, STEPS, FEATURES + 1, dtype=torch.float64)
    with torch.set_grad_enabled(grad_enabled):
        result = explain(model, good)
        assert torch.is_grad_enabled() is grad_enabled
        assert result.relevance.shape == good.shape and result.relevance.abs().sum() > 0
        with pytest.raises(InputError, match="rejected an input of shape"):
            explain(model, bad)
        assert torch.is_grad_enabled() is grad_enabled
        again = explain(model, good)  # and the next explanation is unaffected
        torch.testing.assert_close(again.relevance, result.relevance, rtol=0, atol=0)
