"""LRP through time benchmark: a 32-step, 64-unit LSTM (and GRU) classifier on a batch of 64.

The goal (issue 18): explaining costs at most 4x the model's forward pass. Each round calls, back
to back, the forward pass alone (``torch.no_grad``, the strictest yardstick), gradient x input
(forward with autograd + one backward, for scale) and ``explain(..., composite="epsilon")``, so all
three see the same machine load; prints median times and the median (quartiles) of the per-round
ratios explain / forward, with 1 and with 2 threads (the project machine has 2 cores). Also one
and two layers, batch_first or not, and the GRU. The forward runs torch's fused LSTM/GRU kernel,
which does not return the gates; the explanation recomputes them for all steps at once from
torch's hidden sequence, runs the cell-state recursion, and walks the relevance back a few small
operations per step (``lrp_widgets/engine/recurrent_cells.py`` says what bounds the cost).

The ratio depends on the machine: the floor is torch's fused kernel (oneDNN), while much of the
explanation is Python-level work per step and per call. On an Intel Xeon with AVX-512, where the
kernel ran ~4x faster than on the AMD EPYC (AVX2) of the current README block, the ratio was
5.3-5.8 (measured before the speed-ups of issue 18, as separately timed medians; not re-measured
there since).

Run: ``python benchmarks/rnn.py`` (``--threads 2`` for one thread count only)
"""
from __future__ import annotations

import argparse
import statistics

import torch
from torch import nn

from lrp_widgets import explain
from timing import interleaved, ratio  # benchmarks/timing.py (the script's folder is on sys.path)


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
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()
    torch.manual_seed(0)
    steps, batch, features = 32, 64, 16
    x = torch.randn(batch, steps, features)
    print(f"{steps} steps x {features} features, batch {batch}, 64 hidden units, float32, torch {torch.__version__}; "
          f"medians of {args.rounds} interleaved rounds")
    print(f"{'model':<24} {'threads':>7} {'forward ms':>10} {'gxi ms':>8} {'explain ms':>10} "
          f"{'explain / forward (quartiles)':>30}")
    for threads in args.threads:
        torch.set_num_threads(threads)
        for cell, layers, batch_first in [(nn.LSTM, 1, True), (nn.LSTM, 1, False), (nn.LSTM, 2, True), (nn.GRU, 1, True)]:
            model = Classifier(cell, features=features, layers=layers, batch_first=batch_first).eval()

            def forward():
                with torch.no_grad():
                    model(x)

            times = interleaved({
                "forward": forward,
                "gradient": lambda: gradient_x_input(model, x),
                "explain": lambda: explain(model, x, composite="epsilon"),
            }, args.rounds)
            median, low, high = ratio(times["explain"], times["forward"])
            name = f"{cell.__name__} {layers} layer{'s' if layers > 1 else ''}{'' if batch_first else ' (T, N, F)'}"
            ms = [statistics.median(times[key]) * 1e3 for key in ("forward", "gradient", "explain")]
            print(f"{name:<24} {threads:>7} {ms[0]:>10.2f} {ms[1]:>8.2f} {ms[2]:>10.2f} "
                  f"{median:>14.2f} ({low:.2f}-{high:.2f})")


if __name__ == "__main__":
    main()
