"""Paths benchmark: top_paths and path_fidelity for k = 1..20 on MiniVGG (32x32) and VGG16 (224x224).

What a widget pays, in three parts:

* once per (sample, target, layers, composite): ``PathFinder(...)`` (one forward pass, the messages
  between the chosen layers) and the full heatmap;
* per new ``k`` (the slider): ``finder.paths(k)`` (exact k-best search) + ``finder.heatmap(k)``
  (one masked LRP pass);
* per ``k`` it has seen before: a cache hit.

MiniVGG: the zoo's trained narrow model (``shapes_minivgg``) on a test image when the zoo has it,
and the slides' full-width MiniVGG with random weights. VGG16: random weights, batch 1, and only
the two hidden dense layers as path layers: between two 512-channel conv layers every message
needs one LRP pass per upper channel through the convolutions between, which takes minutes on 2
cores (PathFinder supports it; this benchmark stays bounded).

Run: ``python benchmarks/paths.py [--threads 1] [--skip-vgg16]``
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from lrp_widgets.models import MiniVGG, vgg16
from lrp_widgets.paths import PathFinder, default_layers, path_fidelity, top_paths

KS = list(range(1, 21))


def clock(function):
    start = time.perf_counter()
    result = function()
    return result, time.perf_counter() - start


def report(title, model, x, layers=None, batch_size=64):
    print(f"\n== {title}")
    layers = layers or default_layers(model)
    finder, build = clock(lambda: PathFinder(model, x, layers=layers, batch_size=batch_size))  # also warms up
    sizes = {layer: len(finder.relevance[layer]) for layer in finder.layers}
    print(f"layers (top first, neurons): {sizes}")
    print(f"PathFinder (forward + messages), first call:              {build * 1e3:9.1f} ms")
    _, once = clock(lambda: top_paths(model, x, k=5, layers=layers))
    print(f"top_paths(k=5) from scratch (forward, messages, search): {once * 1e3:9.1f} ms")
    _, full = clock(lambda: finder.full_heatmap)
    print(f"full heatmap (one LRP pass):                              {full * 1e3:9.1f} ms")
    search, heat, hit = [], [], []
    for k in KS:
        finder._search_cache.clear()  # time the search for this k itself, not a slice of an earlier one
        _, seconds = clock(lambda: finder.paths(k))
        search.append(seconds)
        _, seconds = clock(lambda: finder.heatmap(k))
        heat.append(seconds)
        _, seconds = clock(lambda: (finder.paths(k), finder.heatmap(k)))
        hit.append(seconds)
    slider = [s + h for s, h in zip(search, heat)]
    print(
        f"per new k (k = 1..20): search median {statistics.median(search) * 1e3:.2f} ms (max {max(search) * 1e3:.2f}), "
        f"heatmap median {statistics.median(heat) * 1e3:.1f} ms (max {max(heat) * 1e3:.1f}), "
        f"search + heatmap max {max(slider) * 1e3:.1f} ms; cached k: max {max(hit) * 1e3:.3f} ms"
    )
    finder._heatmaps.clear()
    curve, seconds = clock(lambda: path_fidelity(model, x, ks=KS, finder=finder))
    print(f"path_fidelity(k = 1..20) with the finder kept:            {seconds * 1e3:9.1f} ms")
    rises = int(np.sum(np.diff(curve.mse) > 1e-12 * max(curve.mse.max(), 1e-30)))
    print(f"  MSE  k=1 {curve.mse[0]:.3e}  k=5 {curve.mse[4]:.3e}  k=20 {curve.mse[-1]:.3e}  (rises between consecutive k: {rises})")
    print(f"  SMAPE k=1 {curve.smape[0]:.1f}%  k=5 {curve.smape[4]:.1f}%  k=20 {curve.smape[-1]:.1f}%")
    print(f"  neurons kept k=1..20: {curve.n_neurons.tolist()}")
    best = finder.paths(3)
    for path in best:
        print(f"  score {path.score:.3e}  relevance {path.relevance:+.3e}  {list(path.neurons)}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 avoids contention on a shared 2-core box)")
    parser.add_argument("--skip-vgg16", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)")
    torch.manual_seed(0)

    try:
        from lrp_widgets import zoo

        model = zoo.load("shapes_minivgg")
        data = zoo.dataset("shapes_minivgg")
        x = torch.as_tensor(np.asarray(data.test.x[:1]), dtype=torch.float32)
        report("MiniVGG width 0.25, trained (zoo: shapes_minivgg), 32x32", model, x)
    except Exception as error:  # noqa: BLE001 - the zoo is optional here; say why and go on
        print(f"\n(zoo model shapes_minivgg not available: {type(error).__name__}: {error}); using random weights")
        report("MiniVGG width 0.25, random weights, 32x32", MiniVGG(width=0.25).eval(), torch.rand(1, 3, 32, 32))
    report("MiniVGG full width (the slides), random weights, 32x32", MiniVGG().eval(), torch.rand(1, 3, 32, 32))

    if not args.skip_vgg16:
        model = vgg16(num_classes=1000)
        x = torch.rand(1, 3, 224, 224)
        report("VGG16, random weights, 224x224, batch 1", model, x, layers=["classifier.4", "classifier.1"], batch_size=256)


if __name__ == "__main__":
    main()
