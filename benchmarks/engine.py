"""Engine benchmark: the slides' MiniVGG (32x32x3, random weights), batch 1 and 32, 2 threads.

Times, in one run: plain gradient x input (the floor: one forward, one backward to the input),
lrp_widgets' ``epsilon_plus_flat``, lrp_widgets' ``epsilon``, and Captum's LRP (epsilon rules;
it rejects ``nn.Flatten``, so it gets the same weights in a copy with a functional flatten
and plain ReLUs). Prints the median time of each and the ratios to the floor.

Run: ``python benchmarks/engine.py``
"""
from __future__ import annotations

import copy
import warnings

import torch
from torch import nn

from lrp_widgets import explain
from lrp_widgets.models import MiniVGG
from timing import timed  # benchmarks/timing.py (the script's folder is on sys.path)


class CaptumMiniVGG(nn.Module):
    """The same network with a functional flatten (Captum has no rule for nn.Flatten)."""

    def __init__(self, model: MiniVGG):
        super().__init__()
        self.features = copy.deepcopy(model.features)
        self.classifier = copy.deepcopy(model.classifier[1:])
        for module in list(self.features) + list(self.classifier):
            if isinstance(module, nn.ReLU):
                module.inplace = False

    def forward(self, x):
        return self.classifier(self.features(x).view(x.shape[0], -1))


def gradient_x_input(model, x, target):
    leaf = x.detach().requires_grad_(True)
    out = model(leaf)
    (grad,) = torch.autograd.grad(out.gather(1, target[:, None]).sum(), leaf)
    return grad * x


def main():
    torch.set_num_threads(2)
    torch.manual_seed(0)
    model = MiniVGG().eval()
    captum_model = CaptumMiniVGG(model).eval()
    from captum.attr import LRP

    warnings.filterwarnings("ignore", category=UserWarning)
    print(f"MiniVGG (slides' widths), random weights, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'batch':>5} {'method':<32} {'median ms':>10} {'x floor':>8}")
    for batch in (1, 32):
        x = torch.rand(batch, 3, 32, 32)
        target = model(x).argmax(1)
        repeats = 100 if batch == 1 else 20
        floor = timed(lambda: gradient_x_input(model, x, target), repeats)[0]
        rows = [
            ("gradient x input (floor)", floor),
            ("lrp_widgets epsilon_plus_flat", timed(lambda: explain(model, x, target=target, composite="epsilon_plus_flat"), repeats)[0]),
            ("lrp_widgets epsilon", timed(lambda: explain(model, x, target=target, composite="epsilon"), repeats)[0]),
            ("captum LRP (epsilon)", timed(lambda: LRP(captum_model).attribute(x, target=target), repeats)[0]),
        ]
        for name, seconds in rows:
            print(f"{batch:>5} {name:<32} {seconds * 1e3:>10.2f} {seconds / floor:>8.2f}")


if __name__ == "__main__":
    main()
