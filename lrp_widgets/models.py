"""Small models for the explorers, written with modules only.

Every model is an ``nn.Sequential`` (possibly nested), so its forward pass is the chain of its
modules and nothing else: the LRP engine sees every operation as a module (no functional calls such
as ``torch.flatten`` or ``F.relu`` hide in a ``forward``).
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

from torch import nn

from .transformers import TinyViT, TokenTransformer

__all__ = ["MLP", "CNN", "MiniVGG", "ColumnRNN", "VGG16_FEATURES", "vgg16", "build", "ARCHITECTURES"]


class MLP(nn.Sequential):
    """Fully connected ReLU network: Flatten, then Linear+ReLU per hidden layer, then Linear.

    Parameters
    ----------
    input_shape : tuple of int
        Shape of one sample, e.g. (1, 32, 32).
    n_classes : int
        Number of outputs.
    hidden : sequence of int
        Width of each hidden layer.

    Examples
    --------
    >>> model = MLP((1, 32, 32), 2, hidden=(64, 32))
    >>> model(torch.zeros(5, 1, 32, 32)).shape
    torch.Size([5, 2])
    """

    def __init__(self, input_shape: Sequence[int], n_classes: int, hidden: Sequence[int] = (64, 32)):
        n_inputs = 1
        for extent in input_shape:
            n_inputs *= int(extent)
        layers: list[nn.Module] = [nn.Flatten()]
        width = n_inputs
        for units in hidden:
            layers += [nn.Linear(width, units), nn.ReLU()]
            width = units
        layers.append(nn.Linear(width, n_classes))
        super().__init__(*layers)
        self.input_shape = tuple(int(extent) for extent in input_shape)
        self.n_classes = n_classes


class CNN(nn.Sequential):
    """Small convolutional network: blocks of Conv2d(3x3, same padding)+ReLU+MaxPool2d(2), then a classifier.

    Parameters
    ----------
    in_channels : int
        Input channels (1 for grey images and SST maps, 3 for colour).
    n_classes : int
        Number of outputs.
    input_size : int or (int, int)
        Height and width of the input; needed to size the first Linear layer.
    channels : sequence of int
        Output channels of each conv block; every block halves the spatial size (rounding down).
    hidden : int
        Width of the hidden Linear layer of the classifier (0: none, Linear straight to the classes).

    Examples
    --------
    >>> model = CNN(1, 2, input_size=32, channels=(8, 16))
    >>> model(torch.zeros(5, 1, 32, 32)).shape
    torch.Size([5, 2])
    """

    def __init__(
        self,
        in_channels: int,
        n_classes: int,
        input_size: int | Sequence[int],
        channels: Sequence[int] = (8, 16),
        hidden: int = 32,
    ):
        height, width = (input_size, input_size) if isinstance(input_size, int) else map(int, input_size)
        features: list[nn.Module] = []
        previous = in_channels
        for out in channels:
            features += [nn.Conv2d(previous, out, kernel_size=3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
            previous = out
            height, width = height // 2, width // 2
        if height < 1 or width < 1:
            raise ValueError(f"input_size {input_size} is too small for {len(channels)} pooling blocks")
        classifier: list[nn.Module] = [nn.Flatten()]
        flat = previous * height * width
        if hidden:
            classifier += [nn.Linear(flat, hidden), nn.ReLU(), nn.Linear(hidden, n_classes)]
        else:
            classifier.append(nn.Linear(flat, n_classes))
        super().__init__(OrderedDict(features=nn.Sequential(*features), classifier=nn.Sequential(*classifier)))
        self.n_classes = n_classes


def _vgg_block(c_in: int, c_mid: int, c_out: int, inplace: bool) -> list:
    """conv 3x3 - ReLU - dropout - conv 3x3 - ReLU - max pool 2x2: one block of the slides' MiniVGG."""
    return [
        nn.Conv2d(c_in, c_mid, kernel_size=3, padding=1), nn.ReLU(inplace=inplace), nn.Dropout(p=0.35),
        nn.Conv2d(c_mid, c_out, kernel_size=3, padding=1), nn.ReLU(inplace=inplace), nn.MaxPool2d(kernel_size=2, stride=2),
    ]


class MiniVGG(nn.Sequential):
    """The slides' MiniVGG for 32x32 colour images, with a width option.

    ``features``: Conv(3, c1)-ReLU-Dropout(.35)-Conv(c1, c2)-ReLU-MaxPool-Conv(c2, c3)-ReLU-Dropout(.35)-
    Conv(c3, c4)-ReLU-MaxPool; ``classifier``: Flatten-Linear(8*8*c4, hidden)-ReLU-Dropout(.45)-
    Linear(hidden, num_classes). With the default ``(32, 64, 128, 128)`` and ``hidden=256`` the
    parameter names match the slides' class, so its state_dict loads as is.

    Parameters
    ----------
    num_classes : int
        Number of outputs.
    width : float
        Multiplies every channel count and the hidden width (0.25 gives a model 16 times smaller).
    channels : tuple of 4 int, optional
        Explicit channel counts; overrides ``width`` for the convolutions.
    hidden : int, optional
        Explicit hidden width of the classifier; default ``256 * width``.
    in_channels : int
        Input channels (3 for RGB).
    input_size : int
        Input height and width (the slides: 32, i.e. 8x8 after two poolings).
    inplace : bool
        ReLU(inplace=True) as in the slides; False when a tool needs every activation kept.
    """

    def __init__(
        self,
        num_classes: int = 10,
        width: float = 1.0,
        channels: Sequence[int] | None = None,
        hidden: int | None = None,
        in_channels: int = 3,
        input_size: int = 32,
        inplace: bool = True,
    ):
        if channels is None:
            channels = tuple(max(1, int(round(c * width))) for c in (32, 64, 128, 128))
        if len(channels) != 4:
            raise ValueError(f"MiniVGG has 4 convolutions; got channels={tuple(channels)}")
        hidden = hidden if hidden is not None else max(1, int(round(256 * width)))
        c1, c2, c3, c4 = channels
        # two blocks conv-relu-dropout-conv-relu-maxpool, flat in one Sequential (features.0 ... features.11)
        features = nn.Sequential(*_vgg_block(in_channels, c1, c2, inplace), *_vgg_block(c2, c3, c4, inplace))
        side = input_size // 4
        classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(side * side * c4, hidden),
            nn.ReLU(inplace=inplace),
            nn.Dropout(p=0.45),
            nn.Linear(hidden, num_classes),
        )
        super().__init__(OrderedDict(features=features, classifier=classifier))
        self.n_classes = num_classes


# torchvision's VGG16 configuration "D": channel counts, "M" = 2x2 max pooling.
VGG16_FEATURES = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


def vgg16(num_classes: int = 1000, state_dict: dict | None = None) -> nn.Sequential:
    """VGG16 with torchvision's layout, built from plain modules; downloads nothing.

    The parameter names are torchvision's (``features.0.weight`` ... ``classifier.6.bias``), so a
    state_dict saved from ``torchvision.models.vgg16`` loads unchanged. The only difference is an
    ``nn.Flatten`` module named ``flatten`` between ``avgpool`` and ``classifier`` where torchvision
    calls ``torch.flatten`` in ``forward``; it has no parameters.

    Parameters
    ----------
    num_classes : int
        Outputs of the last Linear layer.
    state_dict : dict, optional
        Weights to load (strictly: every key must match).

    Returns
    -------
    nn.Sequential
        Children ``features``, ``avgpool`` (AdaptiveAvgPool2d((7, 7))), ``flatten``, ``classifier``;
        in eval mode when weights were given, else in train mode with random weights.
    """
    layers: list[nn.Module] = []
    previous = 3
    for entry in VGG16_FEATURES:
        if entry == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(previous, entry, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            previous = entry
    classifier = nn.Sequential(
        nn.Linear(512 * 7 * 7, 4096),
        nn.ReLU(inplace=True),
        nn.Dropout(p=0.5),
        nn.Linear(4096, 4096),
        nn.ReLU(inplace=True),
        nn.Dropout(p=0.5),
        nn.Linear(4096, num_classes),
    )
    model = nn.Sequential(
        OrderedDict(
            features=nn.Sequential(*layers),
            avgpool=nn.AdaptiveAvgPool2d((7, 7)),
            flatten=nn.Flatten(),
            classifier=classifier,
        )
    )
    if state_dict is not None:
        try:
            model.load_state_dict(state_dict)
        except RuntimeError as error:
            raise ValueError(
                "the state_dict does not match torchvision's VGG16 layout (features.N / classifier.N keys, "
                f"num_classes={num_classes}); pass the num_classes it was trained with. Details: {error}"
            ) from error
        model.eval()
    return model


class ColumnRNN(nn.Module):
    """An LSTM or GRU that reads an image column by column, then a Linear on its last hidden state.

    Time step t is image column t (``"left_to_right"``) or column W-1-t (``"right_to_left"``), the
    features of a step the column's pixels, channel by channel, top to bottom: the layout of
    :func:`lrp_widgets.esn.image_to_sequence`, so the explanation's ``.recurrent[\"rnn\"]`` relevance
    maps back to the image with ``sequence_to_image`` as an ESN's does, and ``.relevance`` is already
    image-shaped. The forward is the usual ``out, _ = self.rnn(x); self.fc(out[:, -1])``: reshapes and
    indexing only, which the LRP engine follows (engine/recurrent.py).

    Parameters
    ----------
    cell : {"LSTM", "GRU"}
    input_shape : (C, H, W)
    n_classes, hidden, layers : int
    direction : {"left_to_right", "right_to_left"}
    """

    def __init__(self, cell: str, input_shape: Sequence[int], n_classes: int, hidden: int = 16, layers: int = 1,
                 direction: str = "left_to_right"):
        super().__init__()
        cells = {"LSTM": nn.LSTM, "GRU": nn.GRU}
        if cell not in cells:
            raise ValueError(f"cell must be 'LSTM' or 'GRU', got {cell!r}")
        if direction not in ("left_to_right", "right_to_left"):
            raise ValueError(f"direction must be 'left_to_right' or 'right_to_left', got {direction!r}")
        channels, height, width = input_shape
        self.direction, self.width = direction, width
        self.rnn = cells[cell](channels * height, hidden, num_layers=layers, batch_first=True)
        self.fc = nn.Linear(hidden, n_classes)

    def forward(self, x):
        n, channels, height, width = x.shape
        sequence = x.permute(0, 3, 1, 2).reshape(n, width, channels * height)
        if self.direction == "right_to_left":
            sequence = sequence[:, list(range(width - 1, -1, -1))]
        out, _ = self.rnn(sequence)
        return self.fc(out[:, -1])


ARCHITECTURES = {"MLP": MLP, "CNN": CNN, "MiniVGG": MiniVGG, "ColumnRNN": ColumnRNN, "TinyViT": TinyViT,
                 "TokenTransformer": TokenTransformer}


def build(spec: dict) -> nn.Module:
    """Build a model from an architecture spec ``{"architecture": name, **keyword arguments}``.

    The zoo stores such a spec next to every weight file, so the weights always meet the exact
    architecture they were trained with. Lists in the spec (JSON has no tuples) are accepted.
    """
    spec = dict(spec)
    name = spec.pop("architecture", None)
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {name!r}; known: {', '.join(ARCHITECTURES)}")
    spec = {key: tuple(value) if isinstance(value, list) else value for key, value in spec.items()}
    return ARCHITECTURES[name](**spec)
