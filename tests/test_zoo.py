"""The model zoo: listing, loading, manifest, reproducible rebuild, clear errors on bad files."""
import json
import shutil

import pytest
import torch

from lrp_widgets import zoo
from lrp_widgets.zoo.__main__ import main
from lrp_widgets.zoo.build import RECIPES, SPARSITY_TOLERANCE, train_recipe

torch.set_num_threads(1)


def test_every_recipe_is_built_and_small():
    assert zoo.names() == list(RECIPES)
    total = sum((zoo.WEIGHTS_DIR / zoo.info(name)["weights"]).stat().st_size for name in zoo.names())
    assert total < 5e6


def test_zoo_contents():
    for architecture in ("mlp", "cnn"):
        sweep = zoo.l1_sweep(architecture)
        values = [l1 for l1, _ in sweep]
        assert values[0] == 0 and len(values) >= 6 and values == sorted(values)
        nonzero = torch.tensor(values[1:])
        assert (nonzero[-1] / nonzero[0]) >= 100  # log-spaced over at least two decades
        largest = sweep[-1][1]
        assert zoo.info(largest)["test_accuracy"] >= 0.95  # the largest L1 still classifies well
    assert zoo.info("digits_cnn")["test_accuracy"] >= 0.95
    assert zoo.info("shapes_minivgg")["architecture"]["architecture"] == "MiniVGG"
    assert zoo.info("shapes_minivgg")["test_accuracy"] >= 0.8
    for name in ("enso_mlp", "enso_cnn"):
        assert zoo.info(name)["dataset"]["loader"] == "enso_fields"
        assert zoo.info(name)["test_accuracy"] >= 0.9


@pytest.mark.parametrize("name", ["digits_cnn", "enso_cnn", "enso_mlp"])
def test_load_gives_an_eval_model_that_reaches_its_recorded_accuracy(name):
    model = zoo.load(name)
    assert not model.training
    record = zoo.info(name)
    test = zoo.dataset(name).test
    measured = float((model(test.x).argmax(1) == test.y).float().mean())
    assert measured == pytest.approx(record["test_accuracy"], abs=1e-6)
    assert set(record) >= {"architecture", "dataset", "l1", "epochs", "test_accuracy", "sparsity", "sha256"}


def test_info_is_a_copy():
    record = zoo.info("digits_cnn")
    record["test_accuracy"] = -1
    assert zoo.info("digits_cnn")["test_accuracy"] > 0


def test_rebuilding_a_model_reproduces_its_recorded_accuracy():
    name = "two_squares_cnn_l1_1e-03"
    model, record = train_recipe(name, progress=False, data=zoo.dataset(name))
    recorded = zoo.info(name)
    assert abs(record["test_accuracy"] - recorded["test_accuracy"]) <= 0.02
    assert abs(record["sparsity"] - recorded["sparsity"]) <= 0.02
    assert record["sparsity_tolerance"] == SPARSITY_TOLERANCE


@pytest.fixture
def weights_copy(tmp_path):
    target = tmp_path / "weights"
    shutil.copytree(zoo.WEIGHTS_DIR, target)
    return target


def test_corrupted_weight_file_gives_a_clear_error(weights_copy):
    path = weights_copy / "enso_mlp.pt"
    data = bytearray(path.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = b"\x00" * 64
    path.write_bytes(bytes(data))
    with pytest.raises(zoo.CorruptWeightsError, match=r"python -m lrp_widgets\.zoo build --only enso_mlp"):
        zoo.load("enso_mlp", weights_dir=weights_copy)
    # without the checksum, torch's own failure is turned into the same clear error
    path.write_bytes(b"not a torch file")
    with pytest.raises(zoo.CorruptWeightsError, match="cannot be read"):
        zoo.load("enso_mlp", weights_dir=weights_copy, verify=False)


def test_weights_of_the_wrong_architecture_give_a_clear_error(weights_copy):
    shutil.copy(weights_copy / "enso_cnn.pt", weights_copy / "enso_mlp.pt")
    with pytest.raises(zoo.CorruptWeightsError, match="do not fit its recorded architecture"):
        zoo.load("enso_mlp", weights_dir=weights_copy, verify=False)


def test_missing_weights_and_unknown_names(weights_copy):
    (weights_copy / "digits_cnn.pt").unlink()
    with pytest.raises(zoo.MissingWeightsError, match="build --only digits_cnn"):
        zoo.load("digits_cnn", weights_dir=weights_copy)
    manifest = json.loads((weights_copy / "manifest.json").read_text())
    del manifest["models"]["digits_cnn"]
    (weights_copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(zoo.MissingWeightsError, match="has not been built"):
        zoo.load("digits_cnn", weights_dir=weights_copy)
    with pytest.raises(KeyError, match="no zoo model named 'resnet'"):
        zoo.load("resnet")
    with pytest.raises(ValueError, match="'mlp' and 'cnn'"):
        zoo.l1_sweep("vgg")


def test_damaged_manifest_gives_a_clear_error(weights_copy):
    (weights_copy / "manifest.json").write_text("{ not json")
    with pytest.raises(zoo.CorruptWeightsError, match="python -m lrp_widgets.zoo build"):
        zoo.names(weights_dir=weights_copy)


def test_command_line_lists_the_zoo(capsys):
    assert main(["list"]) == 0
    output = capsys.readouterr().out
    assert "shapes_minivgg" in output and "test accuracy" in output
    assert main(["build", "--only", "no_such_model", "--no-progress"]) == 2


@pytest.mark.parametrize("name", ["enso_mlp", "enso_cnn"])
def test_enso_models_trained_on_synthetic_fields_classify_the_real_winters(name):
    from lrp_widgets.data import enso_observed
    from lrp_widgets.train import accuracy

    # measured: all 35 El Nino / La Nina winters of 1963-2012 right for both models
    assert accuracy(zoo.load(name), enso_observed()) >= 0.9
