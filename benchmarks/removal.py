"""Benchmark: removal curves against the bare forward passes they need.

Curves for 256 test images x 20 steps x 3 orders (MoRF, LeRF, random) on a zoo model; the floor
is the same 256 x 21 x 3 images pushed through the model in the same batch sizes, with the
inputs already built. The goal is a curve time within 2x of the floor.

Run: ``python benchmarks/removal.py [model_name] [--batch-size N] [--repeats R]``
(default model: ``shapes_minivgg`` if the zoo has it, else ``digits_cnn``).
"""
from __future__ import annotations

import argparse
import time

import torch

import lrp_widgets
from lrp_widgets import zoo
from lrp_widgets.removal import ORDERS, removal_curve

N_IMAGES, STEPS = 256, 20


def best_of(functions, repeats: int) -> list[float]:
    """Fastest of ``repeats`` runs of each function, the runs interleaved.

    The machine is shared: interleaving exposes every function to the same background load, and
    the minimum is the least disturbed run.
    """
    times = [[] for _ in functions]
    for _ in range(repeats):
        for function, record in zip(functions, times):
            start = time.perf_counter()
            function()
            record.append(time.perf_counter() - start)
    return [min(record) for record in times]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = "shapes_minivgg" if "shapes_minivgg" in zoo.names() else "digits_cnn"
    parser.add_argument("model", nargs="?", default=default)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    model = zoo.load(args.model)
    test = zoo.dataset(args.model).test
    x = test.x[:N_IMAGES]
    relevance = lrp_widgets.explain(model, x, composite="epsilon_plus_flat").relevance

    def curves():
        return [removal_curve(model, x, relevance=relevance, order=order, baseline="mean", steps=STEPS, batch_size=args.batch_size) for order in ORDERS]

    # The floor: what removal_curve feeds the model, in the same batches: the N unperturbed
    # images, then the 20 x N perturbed ones packed into batches of batch_size.
    n = len(x)
    perturbed = x.repeat(STEPS, 1, 1, 1)
    batches = [x] + [perturbed[i : i + args.batch_size] for i in range(0, len(perturbed), args.batch_size)]

    def floor():
        with torch.no_grad():
            for _ in ORDERS:
                for batch in batches:
                    model(batch)

    model.eval()
    curves(), floor()  # warm-up (allocator, lazy init)
    curve_time, floor_time = best_of([curves, floor], args.repeats)
    results = curves()

    images = n * (STEPS + 1) * len(ORDERS)
    print(f"model {args.model!r}, {n} images x {STEPS} steps x {len(ORDERS)} orders = {images} forward images")
    print(f"batch size {args.batch_size}, {args.threads} threads, best of {args.repeats}")
    print(f"curves: {curve_time * 1e3:8.1f} ms  ({curve_time / images * 1e6:.1f} us per image)")
    print(f"floor:  {floor_time * 1e3:8.1f} ms  ({floor_time / images * 1e6:.1f} us per image)")
    print(f"ratio curves / floor: {curve_time / floor_time:.2f}  (goal <= 2)")
    print("AOPC: " + ", ".join(f"{curve.order} {curve.aopc:.3f}" for curve in results))


if __name__ == "__main__":
    main()
