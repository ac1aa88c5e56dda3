"""Attention benchmark: AttnLRP on the zoo's tiny ViT against gradient x input, batch 32, 1 thread.

Each round times one AttnLRP explanation (``explain(..., composite="attnlrp")``, through the traced
graph, the trace cached) and one gradient x input (one autograd backward pass of the same logits)
back to back, so both see the same machine load; prints the median of each, the median of the
per-round ratios AttnLRP / gradient x input (goal: <= 2) with quartiles, and CP-LRP the same way.

Run: ``python benchmarks/attention.py [--rounds 30] [--batch 32]``
"""
from __future__ import annotations

import argparse
import os
import statistics

import torch

from lrp_widgets import explain, zoo
from timing import interleaved, once, ratio  # benchmarks/timing.py (the script's folder is on sys.path)


def gradient_x_input(model, x, target):
    x = x.detach().clone().requires_grad_(True)
    output = model(x)
    (gradient,) = torch.autograd.grad(output.gather(1, target[:, None]).sum(), x)
    return gradient * x


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--batch", type=int, default=32)
    arguments = parser.parse_args()
    torch.set_num_threads(1)
    model = zoo.load("shapes_vit")
    x = zoo.dataset("shapes_vit").test.x[: arguments.batch]
    with torch.no_grad():
        target = model(x).argmax(1)
    print(f"TinyViT (zoo 'shapes_vit', {x.shape[-1]}x{x.shape[-1]}, {sum(p.numel() for p in model.parameters())} "
          f"parameters), batch {len(x)}, torch {torch.__version__}, 1 thread, load average {os.getloadavg()[0]:.2f}")
    first = once(lambda: explain(model, x, target=target, composite="attnlrp"))
    print(f"first AttnLRP call (hook-path attempt, trace, explain): {first * 1e3:.0f} ms")
    print(f"{'method':>8} {'ms':>8} {'gxi ms':>8} {'ratio (median of rounds)':>26}")
    for composite in ("attnlrp", "cp_lrp"):
        times = interleaved({
            "explain": lambda: explain(model, x, target=target, composite=composite),
            "gxi": lambda: gradient_x_input(model, x, target),
        }, arguments.rounds)
        median, low, high = ratio(times["explain"], times["gxi"])
        print(f"{composite:>8} {statistics.median(times['explain']) * 1e3:>8.2f} "
              f"{statistics.median(times['gxi']) * 1e3:>8.2f} {median:>12.2f} (quartiles {low:.2f}-{high:.2f})")


if __name__ == "__main__":
    main()
