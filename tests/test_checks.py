"""One input check for every public function: NaN, inf and fill values give the same error type."""
from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import lrp_widgets
from lrp_widgets import InputError
from lrp_widgets.engine import checks
from lrp_widgets.esn import ESN, explain_esn
from lrp_widgets.paths import path_fidelity, top_paths
from lrp_widgets.removal import removal_curve

BAD_VALUES = [float("nan"), float("inf"), -float("inf"), 1e20]


def small_cnn():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 6 * 6, 4), nn.ReLU(), nn.Linear(4, 3))


def with_bad(x, value):
    x = x.clone()
    x.view(-1)[5] = value
    return x


def esn_and_sequences():
    generator = torch.Generator().manual_seed(0)
    X = torch.rand(12, 6, 2, generator=generator)
    return ESN(2, n_outputs=2, n_reservoir=10).fit(X, (X.sum((1, 2)) > 6).long()), X


CALLS = {
    "explain": lambda x: lrp_widgets.explain(small_cnn(), x),
    "explain_esn": lambda x: explain_esn(esn_and_sequences()[0], x.reshape(1, 6, 6)[:, :, :2].expand(2, 6, 2).clone()),
    "removal_curve": lambda x: removal_curve(small_cnn(), x, steps=2),
    "removal_curve with relevance": lambda x: removal_curve(small_cnn(), x, relevance=torch.ones_like(x), steps=2),
    "top_paths": lambda x: top_paths(small_cnn(), x[:1], k=2, layers=["4", "1"]),
    "path_fidelity": lambda x: path_fidelity(small_cnn(), x[:1], ks=[1], layers=["4", "1"]),
}


@pytest.mark.parametrize("value", BAD_VALUES, ids=["nan", "inf", "-inf", "fill_1e20"])
@pytest.mark.parametrize("name", list(CALLS))
def test_bad_values_give_one_error_type(name, value):
    x = torch.rand(2, 1, 6, 6)
    if name == "explain_esn":
        x = torch.rand(2, 6, 2).reshape(-1)
        x[5] = value
        esn, _ = esn_and_sequences()
        with pytest.raises(InputError, match="NaN/inf|fill value") as info:
            explain_esn(esn, x.reshape(2, 6, 2))
    else:
        with pytest.raises(InputError, match="NaN/inf|fill value") as info:
            CALLS[name](with_bad(x, value))
    assert isinstance(info.value, ValueError)  # InputError is a ValueError: old except clauses still catch it
    assert "fill" in str(info.value)  # the message says how to fix it


def _explorer_calls():
    from lrp_widgets.widgets import L1Explorer, LeakRateExplorer, PathExplorer, RemovalExplorer, RuleExplorer

    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    return {
        "RuleExplorer": lambda x: RuleExplorer(small_cnn(), (x, labels)),
        "RemovalExplorer": lambda x: RemovalExplorer(small_cnn(), (x, labels), progress=False),
        "PathExplorer": lambda x: PathExplorer(small_cnn(), (x, labels), progress=False),
        "L1Explorer": lambda x: L1Explorer({"cnn": {0.0: small_cnn()}}, (x, labels), progress=False),
        "LeakRateExplorer": lambda x: LeakRateExplorer({"train": (x, labels), "test": (x, labels)}, n_reservoir=10, progress=False),
    }


@pytest.mark.parametrize("value", BAD_VALUES, ids=["nan", "inf", "-inf", "fill_1e20"])
@pytest.mark.parametrize("name", ["RuleExplorer", "RemovalExplorer", "PathExplorer", "L1Explorer", "LeakRateExplorer"])
def test_explorer_constructors_give_the_same_error_type(name, value):
    x = torch.rand(6, 1, 6, 6)
    with pytest.raises(InputError, match="NaN/inf|fill value") as info:
        _explorer_calls()[name](with_bad(x, value))
    assert "fill" in str(info.value)


def test_the_fill_threshold_is_one_number():
    x = torch.zeros(1, 4)
    x[0, 1] = checks.FILL_VALUE_THRESHOLD * 0.999
    checks.check_finite(x, "x")  # just below: data
    x[0, 1] = checks.FILL_VALUE_THRESHOLD
    with pytest.raises(InputError, match="fill values"):
        checks.check_finite(x, "x")
    # computed values (relevance) may be large; NaN/inf are still refused
    checks.check_finite(x, "relevance", fill_values=False)
    with pytest.raises(InputError, match="NaN/inf"):
        checks.check_finite(torch.tensor([float("nan")]), "relevance", fill_values=False)


def test_one_target_resolution():
    output = torch.tensor([[0.0, 2.0, 1.0], [3.0, 0.0, 1.0]])
    assert checks.resolve_target(None, output).tolist() == [1, 0]
    assert checks.resolve_target(2, output).tolist() == [2, 2]
    assert checks.resolve_target(np.array([0, 2]), output).tolist() == [0, 2]
    assert checks.resolve_target(torch.tensor([1.0, 2.0]), output).tolist() == [1, 2]
    with pytest.raises(InputError, match=r"out of range.*0\.\.2"):
        checks.resolve_target(3, output)
    with pytest.raises(InputError, match="one class per sample"):
        checks.resolve_target([0, 1, 2], output)
    with pytest.raises(InputError, match="integers"):
        checks.resolve_target([0.5, 1.0], output)
    # every analysis function uses it: the same message for the same mistake
    model = nn.Linear(4, 3)
    for call in (lambda: lrp_widgets.explain(model, torch.rand(2, 4), target=3),
                 lambda: removal_curve(model, torch.rand(2, 4), relevance=torch.rand(2, 4), target=3)):
        with pytest.raises(InputError, match=r"out of range.*0\.\.2"):
            call()
    esn, X = esn_and_sequences()
    with pytest.raises(InputError, match=r"out of range.*0\.\.1"):
        explain_esn(esn, X, target=2)


def test_old_positional_calls_still_work_with_a_deprecation_warning():
    model, x = nn.Linear(4, 3), torch.rand(2, 4)
    new = lrp_widgets.explain(model, x, target=1, composite="epsilon")
    with pytest.warns(DeprecationWarning, match="target, composite by position"):
        old = lrp_widgets.explain(model, x, 1, "epsilon")
    torch.testing.assert_close(old.relevance, new.relevance)
    esn, X = esn_and_sequences()
    with pytest.warns(DeprecationWarning, match="'esn' is now called 'model'"):
        renamed = explain_esn(esn=esn, X=X)
    torch.testing.assert_close(renamed.relevance, explain_esn(esn, X).relevance)
    relevance = new.relevance
    with pytest.warns(DeprecationWarning, match="relevance, order by position"):
        curve = removal_curve(model, x, relevance, "lerf", steps=2)
    assert torch.equal(curve.scores, removal_curve(model, x, relevance=relevance, order="lerf", steps=2).scores)
    with pytest.raises(TypeError, match="multiple values"):
        removal_curve(model, x, relevance, relevance=relevance)


def test_every_result_follows_the_protocol():
    model, x = small_cnn(), torch.rand(2, 1, 6, 6)
    esn, X = esn_and_sequences()
    finder_paths = top_paths(model, x[:1], k=2, layers=["4", "1"])
    results = [
        lrp_widgets.explain(model, x),
        explain_esn(esn, X),
        removal_curve(model, x, steps=2),
        finder_paths,
        path_fidelity(model, x[:1], ks=[1, 2], layers=["4", "1"]),
    ]
    for result in results:
        assert isinstance(result.summary(), str) and result.summary()
        assert isinstance(result.to_dict(), dict)
        assert hasattr(result, "target") and hasattr(result, "output")
        bundle = result._repr_mimebundle_(include=["text/plain"])
        assert bundle["text/plain"] == result.summary()
    # maps are input-shaped
    assert results[0].relevance.shape == x.shape
    assert results[1].relevance.shape == X.shape
    assert results[2].relevance.shape == x.shape
    assert results[3].relevance.shape == x[:1].shape
    assert results[4].relevance.shape == x[:1].shape
    with pytest.warns(DeprecationWarning, match="to_dict"):
        assert results[0].as_dict().keys() == results[0].to_dict().keys()


def test_conservation_is_one_table_everywhere():
    from lrp_widgets.engine.results import ConservationTable

    model, x = small_cnn(), torch.rand(2, 1, 6, 6)
    esn, X = esn_and_sequences()
    torch.manual_seed(0)
    lstm = nn.LSTM(3, 4, batch_first=True)

    class Last(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm, self.fc = lstm, nn.Linear(4, 2)

        def forward(self, sequences):
            out, _ = self.lstm(sequences)
            return self.fc(out[:, -1])

    recurrent = lrp_widgets.explain(Last(), torch.rand(2, 5, 3)).recurrent["lstm"]
    tables = [lrp_widgets.explain(model, x).conservation(), explain_esn(esn, X).conservation(), recurrent.conservation()]
    for table in tables:
        assert isinstance(table, ConservationTable)
        assert table.sums.ndim == 2 and table.names[0] in ("output", "arriving")
    for table in tables[1:]:  # where leaked relevance is tracked, the bookkeeping closes
        np.testing.assert_allclose(table.residual(), 0.0, atol=1e-5)
        assert "leaked" in table.to_dict()
    with pytest.raises(ValueError, match="ratio"):
        tables[0].residual()


def test_layer_families_are_defined_once():
    """Only engine/types.py spells out tuples of torch layer types."""
    package = Path(lrp_widgets.__file__).parent
    for path in package.rglob("*.py"):
        if path.name == "types.py" and path.parent.name == "engine":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Tuple) and len(node.elts) >= 2:
                layer_types = [e for e in node.elts if isinstance(e, ast.Attribute) and isinstance(e.value, ast.Name)
                               and e.value.id == "nn" and e.attr[:1].isupper()]
                assert len(layer_types) < 2, f"{path.relative_to(package)}:{node.lineno} lists layer types; use engine/types.py"


def test_model_tensors_are_parameters_then_buffers_each_once():
    shared = nn.Linear(3, 3)
    model = nn.Sequential(shared, nn.BatchNorm1d(3), nn.Sequential(shared, nn.Linear(3, 2, bias=False)), nn.ReLU())
    expected = list(model.parameters()) + list(model.buffers())
    found = list(checks._model_tensors(model))
    assert len(found) == len(expected) and all(a is b for a, b in zip(found, expected))


def test_eval_mode_restores_mixed_flags_and_leaves_eval_models_alone():
    from lrp_widgets.engine.modes import eval_mode

    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2), nn.Dropout()).train()
    model[1].eval()  # a frozen BatchNorm in a training model
    with eval_mode(model):
        assert not any(m.training for m in model.modules())
    assert [m.training for m in model.modules()] == [True, True, False, True]
    model.eval()
    with eval_mode(model):
        assert not any(m.training for m in model.modules())
    assert not any(m.training for m in model.modules())
