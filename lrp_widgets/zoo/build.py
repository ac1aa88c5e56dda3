"""What the zoo holds and how to retrain it: ``python -m lrp_widgets.zoo build [--only NAME]``.

Every zoo model is one :class:`Recipe` (architecture spec, data spec, training settings). Building a
recipe seeds torch, builds the model from its spec, trains it with :func:`lrp_widgets.train.train`,
saves the state_dict as ``weights/<name>.pt`` and records the recipe with its measured test
accuracy, sparsity and the file's SHA-256 in ``weights/manifest.json``.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from .. import data as datasets
from .. import models
from ..train import accuracy, sparsity, train

__all__ = ["Recipe", "RECIPES", "L1_SWEEP", "WEIGHTS_DIR", "MANIFEST", "SPARSITY_TOLERANCE", "build", "train_recipe"]

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
MANIFEST = "manifest.json"
# |w| below this counts as zero in the recorded sparsity (Adam with L1 shrinks weights, it rarely
# lands on exact zeros).
SPARSITY_TOLERANCE = 1e-3

# The widgets' default two_squares: 32x32, 250 samples a class, as in the paper otherwise.
TWO_SQUARES = {"loader": "two_squares", "n_per_class": 250, "size": 32, "noise": 0.1, "seed": 0}
# L1 coefficients of the sweep: 0 and log-spaced values up to the largest that still classifies
# the test set well for both architectures (measured, see the manifest).
L1_SWEEP = (0.0, 1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3)


@dataclass(frozen=True)
class Recipe:
    """How one zoo model is made.

    Attributes
    ----------
    architecture : dict
        ``{"architecture": "MLP" | "CNN" | "MiniVGG", **arguments}`` for :func:`lrp_widgets.models.build`.
    dataset : dict
        ``{"loader": ..., **arguments}`` for :func:`lrp_widgets.data.load`.
    epochs, l1, lr, batch_size, seed : training settings for :func:`lrp_widgets.train.train`
        (``seed`` also seeds the initial weights).
    description : str
        One line for ``info`` and the listing.
    """

    architecture: dict
    dataset: dict
    epochs: int
    l1: float = 0.0
    lr: float = 1e-3
    batch_size: int = 32
    seed: int = 0
    description: str = ""
    tags: tuple = field(default_factory=tuple)


def _l1_name(architecture: str, l1: float) -> str:
    return f"two_squares_{architecture}_l1_{'0' if l1 == 0 else f'{l1:.0e}'}"


def _recipes() -> dict[str, Recipe]:
    recipes: dict[str, Recipe] = {}
    for l1 in L1_SWEEP:
        recipes[_l1_name("mlp", l1)] = Recipe(
            architecture={"architecture": "MLP", "input_shape": [1, 32, 32], "n_classes": 2, "hidden": [32, 16]},
            dataset=TWO_SQUARES,
            epochs=15,
            l1=l1,
            description=f"MLP on 32x32 two_squares, L1 = {l1:g}",
            tags=("l1_sweep", "mlp"),
        )
        recipes[_l1_name("cnn", l1)] = Recipe(
            architecture={
                "architecture": "CNN",
                "in_channels": 1,
                "n_classes": 2,
                "input_size": 32,
                "channels": [4, 8],
                "hidden": 16,
            },
            dataset=TWO_SQUARES,
            epochs=15,
            l1=l1,
            description=f"CNN on 32x32 two_squares, L1 = {l1:g}",
            tags=("l1_sweep", "cnn"),
        )
    recipes["digits_cnn"] = Recipe(
        architecture={
            "architecture": "CNN",
            "in_channels": 1,
            "n_classes": 10,
            "input_size": 8,
            "channels": [16, 32],
            "hidden": 64,
        },
        dataset={"loader": "digits", "upsample": 1, "seed": 0},
        epochs=30,
        description="CNN on scikit-learn's 8x8 handwritten digits",
    )
    recipes["shapes_minivgg"] = Recipe(
        architecture={"architecture": "MiniVGG", "num_classes": 10, "width": 0.25, "inplace": False},
        dataset={"loader": "shapes", "n": 3000, "size": 32, "seed": 0},
        # 15 epochs at lr 1e-3 underfit (train 0.92 / test 0.89: the dropout of the slides slows it)
        epochs=20,
        lr=2e-3,
        description="narrow MiniVGG (the slides' architecture, width 0.25) on 32x32 coloured shapes",
    )
    recipes["enso_mlp"] = Recipe(
        architecture={"architecture": "MLP", "input_shape": [1, 18, 30], "n_classes": 2, "hidden": [32, 16]},
        dataset={"loader": "enso_fields", "n": 2000, "seed": 0, "n_modes": 20, "noise": 0.1},
        epochs=15,
        description="MLP on synthetic ENSO SST fields (La Nina / El Nino)",
    )
    recipes["enso_cnn"] = Recipe(
        architecture={
            "architecture": "CNN",
            "in_channels": 1,
            "n_classes": 2,
            "input_size": [18, 30],
            "channels": [8, 16],
            "hidden": 32,
        },
        dataset={"loader": "enso_fields", "n": 2000, "seed": 0, "n_modes": 20, "noise": 0.1},
        epochs=15,
        description="CNN on synthetic ENSO SST fields (La Nina / El Nino)",
    )
    for cell in ("LSTM", "GRU"):
        # Left to right: the informative square enters ~22 steps before the readout (the hard
        # direction for a recurrent memory). lr 3e-3 for 40 epochs: at 1e-2 the GRU stayed at chance.
        recipes[f"two_squares_{cell.lower()}"] = Recipe(
            architecture={"architecture": "ColumnRNN", "cell": cell, "input_shape": [1, 32, 32], "n_classes": 2,
                          "hidden": 16, "direction": "left_to_right"},
            dataset=TWO_SQUARES,
            epochs=40,
            lr=3e-3,
            description=f"{cell} (16 units) reading 32x32 two_squares column by column, left to right",
            tags=("recurrent", cell.lower()),
        )
    # issue 19: transformers explained with AttnLRP; each trains in under a minute on one thread
    recipes["shapes_vit"] = Recipe(
        architecture={"architecture": "TinyViT", "image_size": 24, "patch": 4, "in_channels": 3, "n_classes": 10,
                      "dim": 32, "heads": 2, "depth": 2, "hidden": 64},
        # 24x24 (36 patches of 4x4): at 32x32 with 8x8 patches it stayed at 35% test after 15 epochs
        dataset={"loader": "shapes", "n": 3000, "size": 24, "seed": 0},
        epochs=35,
        lr=3e-3,
        batch_size=64,
        description="tiny ViT (4x4 patches, 2 blocks, 2 heads, width 32) on 24x24 coloured shapes",
        tags=("transformer",),
    )
    recipes["planted_tokens_transformer"] = Recipe(
        architecture={"architecture": "TokenTransformer", "vocabulary": 32, "length": 16, "n_classes": 2, "dim": 16,
                      "heads": 2, "depth": 2, "hidden": 32},
        dataset={"loader": "planted_tokens", "n": 2000, "length": 16, "min_length": 8, "seed": 0},
        epochs=10,
        lr=3e-3,
        batch_size=64,
        description="token transformer (2 blocks, 2 heads, width 16) on planted-evidence token sequences",
        tags=("transformer",),
    )
    return recipes


RECIPES: dict[str, Recipe] = _recipes()


def train_recipe(name: str, progress: bool = True, data=None):
    """Train the zoo model ``name`` from scratch exactly as ``build`` does, without saving it.

    Parameters
    ----------
    name : str
        A key of ``RECIPES``.
    progress : bool
        Show the per-epoch progress bar.
    data : Dataset, optional
        The recipe's data set, if already loaded (saves rebuilding it).

    Returns
    -------
    model : nn.Module
        The trained model, in eval mode.
    record : dict
        The recipe plus the measured ``test_accuracy``, ``train_accuracy``, ``sparsity`` and
        ``n_parameters``.
    """
    if name not in RECIPES:
        raise KeyError(f"no zoo recipe named {name!r}; known: {', '.join(RECIPES)}")
    recipe = RECIPES[name]
    data = data if data is not None else datasets.load(recipe.dataset)
    torch.manual_seed(recipe.seed)  # fixes the initial weights
    model = models.build(recipe.architecture)
    start = time.perf_counter()
    history = train(
        model,
        data,
        epochs=recipe.epochs,
        l1=recipe.l1,
        seed=recipe.seed,
        progress=progress,
        lr=recipe.lr,
        batch_size=recipe.batch_size,
    )
    record = asdict(recipe)
    record["tags"] = list(recipe.tags)
    record.update(
        test_accuracy=accuracy(model, data.test.x, data.test.y),
        train_accuracy=accuracy(model, data.train.x, data.train.y),
        sparsity=sparsity(model, SPARSITY_TOLERANCE),
        sparsity_tolerance=SPARSITY_TOLERANCE,
        n_parameters=sum(p.numel() for p in model.parameters()),
        final_loss=history.loss[-1],
        train_seconds=round(time.perf_counter() - start, 1),
    )
    return model, record


def file_digest(path: Path) -> str:
    """SHA-256 of a file, hex."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def read_manifest(weights_dir: Path | str = WEIGHTS_DIR) -> dict:
    """The manifest as a dict name -> record (empty when it does not exist yet)."""
    path = Path(weights_dir) / MANIFEST
    if not path.is_file():
        return {}
    return json.loads(path.read_text())["models"]


def build(
    only: list[str] | None = None,
    progress: bool = True,
    weights_dir: Path | str = WEIGHTS_DIR,
    threads: int | None = 1,
) -> dict:
    """Retrain zoo models and write their weights and the manifest.

    Parameters
    ----------
    only : list of str, optional
        Names to rebuild; the others keep their weights and manifest entries. Default: all.
    progress : bool
        Progress bars (over models, and over each model's epochs).
    weights_dir : path
        Where to write ``<name>.pt`` and ``manifest.json`` (the package's ``weights/`` by default).
    threads : int, optional
        ``torch.set_num_threads`` during the build (restored afterwards); None leaves it alone. One
        thread by default: on a busy 2-core machine, two spinning OpenMP threads can run 10x slower.

    Returns
    -------
    dict
        The manifest's records of the models built.
    """
    from tqdm.auto import tqdm

    names = list(RECIPES) if not only else list(only)
    unknown = [name for name in names if name not in RECIPES]
    if unknown:
        raise KeyError(f"no zoo recipe named {', '.join(map(repr, unknown))}; known: {', '.join(RECIPES)}")
    weights_dir = Path(weights_dir)
    weights_dir.mkdir(parents=True, exist_ok=True)
    manifest = read_manifest(weights_dir)
    previous_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    built = {}
    cache: dict[str, object] = {}
    try:
        for name in tqdm(names, desc="building the zoo", disable=not progress):
            recipe = RECIPES[name]
            key = json.dumps(recipe.dataset, sort_keys=True)
            if key not in cache:
                cache[key] = datasets.load(recipe.dataset)
            model, record = train_recipe(name, progress=progress, data=cache[key])
            path = weights_dir / f"{name}.pt"
            torch.save(model.state_dict(), path)
            record["weights"] = path.name
            record["sha256"] = file_digest(path)
            manifest[name] = record
            built[name] = record
            # Written after every model, so an interrupted build keeps what it finished.
            _write_manifest(weights_dir, manifest)
    finally:
        torch.set_num_threads(previous_threads)
    return built


def _write_manifest(weights_dir: Path, manifest: dict) -> None:
    ordered = {name: manifest[name] for name in sorted(manifest, key=_order(manifest))}
    document = {
        "about": "lrp_widgets model zoo; rebuild with `python -m lrp_widgets.zoo build [--only NAME]`",
        "torch": torch.__version__,
        "models": ordered,
    }
    (weights_dir / MANIFEST).write_text(json.dumps(document, indent=1) + "\n")


def _order(manifest: dict):
    known = list(RECIPES)
    return lambda name: (known.index(name) if name in known else len(known), name)
