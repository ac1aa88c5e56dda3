"""The IPython extension: %lrp_explain and %lrp_explore on the user's objects, in an in-process
shell; what they display, and the UsageErrors for missing names and objects of the wrong kind."""
import types

import pytest
import torch
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from torch import nn
from traitlets.config import Config

import lrp_widgets
from lrp_widgets import explain, magics
from lrp_widgets.esn import ESN, ESNExplanation
from lrp_widgets.widgets import L1Explorer, RuleExplorer


def cnn(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 3))


@pytest.fixture(scope="module")
def shell():
    config = Config()
    config.HistoryManager.hist_file = ":memory:"
    shell = InteractiveShell.instance(config=config)
    shell.run_line_magic("load_ext", "lrp_widgets")
    torch.manual_seed(1)
    x = torch.randn(6, 3, 8, 8)
    sequences = torch.randn(20, 5, 2)
    shell.user_ns.update(
        model=cnn(),
        data=types.SimpleNamespace(x=x, y=torch.tensor([0, 1, 2, 0, 1, 2]), classes=("a", "b", "c")),
        x=x,
        esn=ESN(2, n_outputs=2, n_reservoir=10).fit(sequences, (sequences.sum((1, 2)) > 0).long()),
        sequences=sequences,
        small=lrp_widgets.composites.epsilon(0.5),
    )
    yield shell
    magics.unload_ipython_extension(shell)
    InteractiveShell.clear_instance()


def shown(shell, cell):
    """Run ``cell``; return its value and the bundle the display hook published for it."""
    published = []
    original = shell.displayhook.write_format_data
    shell.displayhook.write_format_data = lambda data, metadata=None: published.append(data)
    try:
        result = shell.run_cell(cell)
    finally:
        shell.displayhook.write_format_data = original
    result.raise_error()
    return result.result, published


def fails(shell, magic, line, *fragments):
    with pytest.raises(UsageError) as error:
        shell.run_line_magic(magic, line)
    for fragment in fragments:
        assert fragment in str(error.value), str(error.value)
    return str(error.value)


# -- %lrp_explain ----------------------------------------------------------------------------------
def test_explain_shows_the_explanation_of_the_named_objects(shell):
    result, published = shown(shell, "%lrp_explain model data.x[:4]")
    expected = explain(shell.user_ns["model"], shell.user_ns["x"][:4])
    assert isinstance(result, lrp_widgets.Explanation)
    assert torch.equal(result.relevance, expected.relevance) and torch.equal(result.target, expected.target)
    (bundle,) = published
    assert bundle["image/png"][:8] == b"\x89PNG\r\n\x1a\n"
    assert bundle["text/plain"].startswith("Explanation of 4 samples") and "conservation" in bundle["text/plain"]


def test_explain_options_and_expressions(shell):
    result = shell.run_line_magic("lrp_explain", "model x[0:2, :] --composite epsilon --target [2, 1]")
    expected = explain(shell.user_ns["model"], shell.user_ns["x"][:2], target=[2, 1], composite="epsilon")
    assert result.target.tolist() == [2, 1] and result.composite.name.startswith("epsilon(")
    assert torch.equal(result.relevance, expected.relevance)
    custom = shell.run_line_magic("lrp_explain", "model x[:1] -c small -t 0")
    assert custom.composite is shell.user_ns["small"] and custom.target.tolist() == [0]
    arrays = shell.run_line_magic("lrp_explain", "model x[:2].numpy()")  # numpy inputs are fine
    assert arrays.relevance.shape == (2, 3, 8, 8)


def test_explain_an_esn_gives_the_esn_explanation(shell):
    result = shell.run_line_magic("lrp_explain", "esn sequences[:3]")
    assert isinstance(result, ESNExplanation) and result.relevance.shape == (3, 5, 2)
    fails(shell, "lrp_explain", "esn sequences --composite epsilon", "drop --composite")


def test_explain_fails_clearly(shell):
    fails(shell, "lrp_explain", "modell x", "MODEL 'modell'", "not defined", "Define it in the notebook")
    fails(shell, "lrp_explain", "model nothing[:2]", "X 'nothing[:2]'", "not defined")
    fails(shell, "lrp_explain", "x model", "MODEL 'x' is a Tensor, not a torch.nn.Module", "the model first")
    fails(shell, "lrp_explain", "model data", "is a data set", "data.x[:4]")
    fails(shell, "lrp_explain", "model 'text'", "pass a tensor or an array")
    fails(shell, "lrp_explain", "model x --composite bogus", "unknown composite 'bogus'", "epsilon_plus_flat")
    fails(shell, "lrp_explain", "model x --composite data", "--composite 'data' is a SimpleNamespace")
    fails(shell, "lrp_explain", "model x --target 7", "out of range")
    fails(shell, "lrp_explain", "model x[:2", "unbalanced brackets")
    fails(shell, "lrp_explain", "model", "required: x")
    fails(shell, "lrp_explain", "model x[0][0]", "lrp_explain: the model rejected an input")


# -- %lrp_explore ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["rule", "RULE", "RuleExplorer", "rule_explorer", "rules"])
def test_explorer_names_are_case_insensitive(name):
    assert magics.explorer_class(name) is RuleExplorer
    assert magics.explorer_class("l1") is L1Explorer


def test_explore_opens_the_explorer_on_the_users_objects(shell):
    explorer, published = shown(shell, "%lrp_explore rule model data n_samples=3")
    assert isinstance(explorer, RuleExplorer) and explorer.last_error is None
    assert explorer.model is shell.user_ns["model"] and torch.equal(explorer.x, shell.user_ns["x"][:3])
    assert len(published) == 1  # the widget is what the cell shows


def test_explore_takes_dicts_and_keywords(shell):
    shell.user_ns.update(dense=cnn(1), sparse=cnn(2))
    explorer = shell.run_line_magic(
        "lrp_explore", 'L1Explorer {"CNN": {0.0: dense, 1e-3: sparse}} data n_samples=4 progress=False'
    )
    assert isinstance(explorer, L1Explorer) and sorted(explorer.sweeps["CNN"]) == [0.0, 1e-3]
    assert explorer.x.shape[0] == 4 and explorer.last_error is None


def test_explore_takes_every_documented_input(shell):
    """A tensor of inputs for the model-based explorers, a bundled data set's name for the ESN's."""
    rule = shell.run_line_magic("lrp_explore", "rule model x n_samples=3")
    assert isinstance(rule, RuleExplorer) and rule.last_error is None and torch.equal(rule.x, shell.user_ns["x"][:3])
    removal = shell.run_line_magic("lrp_explore", "removal model x n_samples=2 steps=2 progress=False")
    assert type(removal).__name__ == "RemovalExplorer" and removal.last_error is None
    leak = shell.run_line_magic("lrp_explore", "leak_rate enso n_reservoir=10 n_explain=2 progress=False")
    assert type(leak).__name__ == "LeakRateExplorer" and leak.last_error is None
    assert getattr(leak.data, "ocean", None) is not None  # the ENSO fields, land masked


def test_magics_and_cli_share_one_explorer_registry():
    from lrp_widgets import cli
    from lrp_widgets.widgets import registry

    assert set(cli.MODULES) == {entry.class_name for entry in registry.EXPLORERS.values()}
    assert magics.EXPLORERS == {name: entry.class_name for name, entry in registry.EXPLORERS.items()}
    for entry in registry.EXPLORERS.values():
        assert magics.explorer_class(entry.name) is entry.load()
        assert cli.explorer_class(entry.class_name) is entry.load()


def test_explore_fails_clearly(shell):
    fails(shell, "lrp_explore", "", "usage: %lrp_explore EXPLORER")
    fails(shell, "lrp_explore", "rulez", "unknown explorer 'rulez'", "rule (RuleExplorer)", "path (PathExplorer)")
    fails(shell, "lrp_explore", "rule modell data", "'modell'", "not defined")
    fails(shell, "lrp_explore", "rule data model", "model 'data' is a SimpleNamespace, not a torch.nn.Module",
          "data goes after the model")
    fails(shell, "lrp_explore", "rule model 3", "data '3' is int 3, not a data set")
    fails(shell, "lrp_explore", "leak_rate 3", "data '3' is int 3, not a data set", "two_squares, enso")
    fails(shell, "lrp_explore", "l1 model data", "models 'model' is a Sequential", "{architecture: {l1: model}}")
    fails(shell, "lrp_explore", "rule model data data data data", "takes at most")
    fails(shell, "lrp_explore", "rule model data colour=1", "has no argument 'colour'", "n_samples")
    fails(shell, "lrp_explore", "rule n_samples=2 model", "after the positional ones")
    fails(shell, "lrp_explore", "rule model", "RuleExplorer could not be built", "pass data")


def test_unload_removes_the_magics_and_load_brings_them_back(shell):
    magics.unload_ipython_extension(shell)
    assert not {"lrp_explain", "lrp_explore"} & set(shell.magics_manager.magics["line"])
    magics.load_ipython_extension(shell)
    assert {"lrp_explain", "lrp_explore"} <= set(shell.magics_manager.magics["line"])
