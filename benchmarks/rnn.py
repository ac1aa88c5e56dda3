"""LRP through time benchmark: a 32-step, 64-unit LSTM (and GRU) classifier on a batch of 64.

The goal (issue 18): explaining costs at most 4x the model's forward pass. Times, in one run,
medians: the forward pass alone (``torch.no_grad``), gradient x input (forward with autograd +
one backward, for scale), and ``explain(..., composite="epsilon")``; prints the ratios to the
forward pass. Also one and two layers, batch_first or not, and the GRU. The forward runs
torch's fused LSTM/GRU kernel, which does not return the gates; the explanation recomputes them
for all steps at once from torch's hidden sequence, runs the cell-state recursion, and walks the
relevance back a few small operations per step (``lrp_widgets/engine/recurrent_cells.py`` says what
bounds the cost).

Run: ``python benchmarks/rnn.py`` (2 threads, as on the project machine; ``--threads 1`` for one)
"""
from __future__ import annotations

import argparse

import torch
from torch import nn

from lrp_widgets import explain
from timing import timed  # benchmarks/timing.py (the script's folder is on sys.path)


class Classifier(nn.Module):
    def __init__(self, cell, features=16, hidden=64, layers=1, classes=10, batch_first=True):
        super().__init__()
        self.batch_first = batch_first
        self.rnn = cell(features, hidden, num_layers=layers, batch_first=batch_first)
        self.fc = nn.Linear(hidden, classes)

    def forward(self, x):
        if self.batch_first:
            out, _ = self.rnn(x)
            return self.fc(out[:, -1])
        out, _ = self.rnn(x.transpose(0, 1))
        return self.fc(out[-1])


def gradient_x_input(model, x):
    leaf = x.detach().requires_grad_(True)
    out = model(leaf)
    (grad,) = torch.autograd.grad(out.max(1).values.sum(), leaf)
    return grad * x


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    steps, batch, features = 32, 64, 16
    x = torch.randn(batch, steps, features)
    print(f"{steps} steps x {features} features, batch {batch}, 64 hidden units, float32, "
          f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), medians of {args.repeats}")
    print("median (minimum) ms")
    print(f"{'model':<24} {'forward':>14} {'grad x input':>14} {'explain':>14} {'explain / forward':>20}")
    for cell, layers, batch_first in [(nn.LSTM, 1, True), (nn.LSTM, 1, False), (nn.LSTM, 2, True), (nn.GRU, 1, True)]:
        model = Classifier(cell, features=features, layers=layers, batch_first=batch_first).eval()

        def forward():
            with torch.no_grad():
                model(x)

        floor = timed(forward, args.repeats)
        gradient = timed(lambda: gradient_x_input(model, x), args.repeats)
        lrp = timed(lambda: explain(model, x, composite="epsilon"), args.repeats)
        name = f"{cell.__name__} {layers} layer{'s' if layers > 1 else ''}{'' if batch_first else ' (T, N, F)'}"
        cells = [f"{m * 1e3:.2f} ({low * 1e3:.2f})" for m, low in (floor, gradient, lrp)]
        ratio = f"{lrp[0] / floor[0]:.1f} ({lrp[1] / floor[1]:.1f})"
        print(f"{name:<24} {cells[0]:>14} {cells[1]:>14} {cells[2]:>14} {ratio:>20}")


if __name__ == "__main__":
    main()
