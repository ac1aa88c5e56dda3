"""Small trained models shipped with the package.

>>> from lrp_widgets import zoo
>>> zoo.names()                      # what is there
>>> model = zoo.load("digits_cnn")  # nn.Module in eval mode
>>> test = zoo.dataset("digits_cnn").test
>>> zoo.info("digits_cnn")["test_accuracy"]
>>> zoo.l1_sweep("mlp")             # [(0.0, "two_squares_mlp_l1_0"), (1e-05, ...), ...]

The weights are state_dicts in ``weights/<name>.pt``; ``weights/manifest.json`` records, for each,
the architecture and data set specs, the training settings, the measured accuracies and sparsity,
and the file's SHA-256. Rebuild them with ``python -m lrp_widgets.zoo build [--only NAME]``.
"""
from __future__ import annotations

import copy
import functools
import json
from pathlib import Path

import torch
from torch import nn

from .. import data as datasets
from .. import models
from .build import MANIFEST, RECIPES, WEIGHTS_DIR, file_digest, read_manifest

__all__ = [
    "names",
    "info",
    "load",
    "dataset",
    "l1_sweep",
    "ZooError",
    "MissingWeightsError",
    "CorruptWeightsError",
    "WEIGHTS_DIR",
]

_REBUILD = "python -m lrp_widgets.zoo build --only {name}"


class ZooError(RuntimeError):
    """A zoo model cannot be loaded; the message says how to rebuild it."""


class MissingWeightsError(ZooError, FileNotFoundError):
    """The weight file or its manifest entry is missing."""


class CorruptWeightsError(ZooError):
    """The weight file exists but is damaged or does not fit the recorded architecture."""


def _manifest(weights_dir: Path | str | None = None) -> dict:
    weights_dir = Path(weights_dir) if weights_dir is not None else WEIGHTS_DIR
    path = weights_dir / MANIFEST
    try:
        return read_manifest(weights_dir)
    except (json.JSONDecodeError, KeyError) as error:
        raise CorruptWeightsError(
            f"the zoo manifest {path} is damaged ({error}); rebuild the zoo with `python -m lrp_widgets.zoo build`"
        ) from error


def names(weights_dir: Path | str | None = None) -> list[str]:
    """Names of the zoo models that have been built (listed in the manifest), in recipe order."""
    return list(_manifest(weights_dir))


def _record(name: str, weights_dir=None) -> dict:
    manifest = _manifest(weights_dir)
    if name in manifest:
        return manifest[name]
    if name in RECIPES:
        raise MissingWeightsError(
            f"zoo model {name!r} has not been built (no manifest entry); build it with `{_REBUILD.format(name=name)}`"
        )
    raise KeyError(f"no zoo model named {name!r}; available: {', '.join(manifest) or '(none built)'}")


def info(name: str, weights_dir: Path | str | None = None) -> dict:
    """Everything recorded about a zoo model.

    Returns
    -------
    dict
        ``architecture`` (spec for :func:`lrp_widgets.models.build`), ``dataset`` (spec for
        :func:`lrp_widgets.data.load`), ``l1``, ``epochs``, ``lr``, ``batch_size``, ``seed``,
        ``test_accuracy``, ``train_accuracy``, ``sparsity`` (fraction of weights with
        ``|w| < sparsity_tolerance``), ``n_parameters``, ``description``, ``weights``, ``sha256``.
    """
    return copy.deepcopy(_record(name, weights_dir))


def load(name: str, weights_dir: Path | str | None = None, verify: bool = True) -> nn.Module:
    """Build a zoo model from its recorded architecture and load its weights.

    Parameters
    ----------
    name : str
        One of :func:`names`.
    weights_dir : path, optional
        Folder with the weights and manifest; the package's ``weights/`` by default.
    verify : bool
        Check the file's SHA-256 against the manifest before loading.

    Returns
    -------
    nn.Module
        In eval mode.

    Raises
    ------
    MissingWeightsError, CorruptWeightsError
        With the command that rebuilds the model.
    """
    weights_dir = Path(weights_dir) if weights_dir is not None else WEIGHTS_DIR
    record = _record(name, weights_dir)
    rebuild = _REBUILD.format(name=name)
    path = weights_dir / record.get("weights", f"{name}.pt")
    if not path.is_file():
        raise MissingWeightsError(f"the weights of zoo model {name!r} are missing ({path}); rebuild them with `{rebuild}`")
    if verify and record.get("sha256") and file_digest(path) != record["sha256"]:
        raise CorruptWeightsError(
            f"the weights of zoo model {name!r} ({path}) do not match the checksum in the manifest: the file is "
            f"damaged or from another build; rebuild it with `{rebuild}`"
        )
    try:
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for damaged files
        raise CorruptWeightsError(
            f"the weights of zoo model {name!r} ({path}) cannot be read ({type(error).__name__}: {error}); "
            f"rebuild them with `{rebuild}`"
        ) from error
    model = models.build(record["architecture"])
    try:
        model.load_state_dict(state_dict)
    except (RuntimeError, TypeError, AttributeError) as error:
        raise CorruptWeightsError(
            f"the weights of zoo model {name!r} ({path}) do not fit its recorded architecture; "
            f"rebuild them with `{rebuild}`. Details: {error}"
        ) from error
    return model.eval()


@functools.lru_cache(maxsize=4)
def _dataset_from_key(key: str):
    return datasets.load(json.loads(key))


def dataset(name: str, weights_dir: Path | str | None = None):
    """The data set a zoo model was trained on (rebuilt from its recorded spec, split included).

    The result is cached (the last four specs); treat it as read-only.

    Examples
    --------
    >>> test = dataset("two_squares_cnn_l1_0").test
    """
    spec = _record(name, weights_dir)["dataset"]
    return _dataset_from_key(json.dumps(spec, sort_keys=True))


def l1_sweep(architecture: str = "mlp", weights_dir: Path | str | None = None) -> list[tuple[float, str]]:
    """The L1 sweep on two_squares for one architecture, ordered by L1.

    Parameters
    ----------
    architecture : {"mlp", "cnn"}

    Returns
    -------
    list of (float, str)
        ``(l1, name)`` pairs, smallest L1 (0) first; only models that have been built.
    """
    architecture = architecture.lower()
    if architecture not in ("mlp", "cnn"):
        raise ValueError(f"the L1 sweep exists for 'mlp' and 'cnn', not {architecture!r}")
    manifest = _manifest(weights_dir)
    sweep = [
        (float(record["l1"]), name)
        for name, record in manifest.items()
        if "l1_sweep" in record.get("tags", ()) and architecture in record.get("tags", ())
    ]
    return sorted(sweep)
