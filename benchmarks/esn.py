"""Echo state networks on two_squares: speed of refit + explain, and the paper's claims, measured.

Run: ``python benchmarks/esn.py`` (about two minutes on two cores; ``--quick`` skips the
100x100 tables and the sensitivity table). Prints:

1. timing: for each reservoir size and leak rate, one slider move (``with_leak_rate`` + ``fit``
   on 500 samples), a forward pass, ``explain_esn`` on the same 500 samples, and the
   explain/forward ratio (best of several wall-clock runs);
2. test accuracy against leak rate, both feeding directions, at 32x32 and 100x100 (train
   accuracy beside it: the ridge readout keeps fitting the training set long after the test
   accuracy has fallen);
3. measured decay rate of the time profile against the leak-only theory ``-log(1 - alpha)``;
4. slicing: share of |relevance| on the informative square, 1 versus 4 slices, with the
   last/first column ratio that shows the gateway artifact;
5. what the accuracy drop at 32x32 depends on (ridge, float64, noise, reservoir size).
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import time

import torch

from lrp_widgets import ESN, explain_esn, image_to_sequence
from lrp_widgets.data import two_squares
from lrp_widgets.esn import sequence_to_image

LEAK_RATES = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9)
DIRECTIONS = ("left_to_right", "right_to_left")


CLOCK = {"wall": time.perf_counter, "cpu": time.process_time}
clock = time.perf_counter


def best_seconds(function, repeats: int) -> float:
    """Fastest of ``repeats`` runs: on a shared machine the minimum is the run that other jobs
    disturbed least, so it is the best estimate of the cost itself."""
    times = []
    for _ in range(repeats):
        start = clock()
        function()
        times.append(clock() - start)
    return min(times)


def timing_table(data, reservoir_sizes, leak_rates, repeats):
    X, y = image_to_sequence(data.x), data.y
    print(f"\n1. timing: {len(X)} samples, {X.shape[1]} steps x {X.shape[2]} features, "
          f"{torch.get_num_threads()} threads, float32, best of {repeats}, {'CPU' if clock is time.process_time else 'wall'} time (ms)")
    print(f"{'units':>5} {'leak':>5} {'refit':>7} {'forward':>8} {'explain':>8} {'refit+explain':>14} {'explain/forward':>16}")
    for units in reservoir_sizes:
        base = ESN(X.shape[2], n_outputs=2, n_reservoir=units)
        ratios, totals = [], []
        for leak_rate in leak_rates:
            esn = base.with_leak_rate(leak_rate).fit(X, y)
            explain_esn(esn, X)  # warm-up
            refit = best_seconds(lambda: base.with_leak_rate(leak_rate).fit(X, y), repeats)
            forward = best_seconds(lambda: esn(X), repeats)
            explain = best_seconds(lambda: explain_esn(esn, X), repeats)
            ratios.append(explain / forward)
            totals.append(refit + explain)
            print(f"{units:>5} {leak_rate:>5} {refit * 1e3:>7.1f} {forward * 1e3:>8.1f} {explain * 1e3:>8.1f} "
                  f"{(refit + explain) * 1e3:>14.1f} {explain / forward:>16.2f}")
        print(f"{units:>5} {'all':>5} median refit+explain {statistics.median(totals) * 1e3:.1f} ms, "
              f"median explain/forward {statistics.median(ratios):.2f}")


def accuracy_table(data, leak_rates, units=300, **options):
    size = data.x.shape[-1]
    print(f"\n2. test accuracy (train accuracy) against leak rate, {size}x{size}, {units} units, "
          f"{len(data.train)} train / {len(data.test)} test, {options or 'paper defaults'}")
    print(f"{'direction':>14} " + " ".join(f"{rate:>11}" for rate in leak_rates))
    for direction in DIRECTIONS:
        X_train, X_test = image_to_sequence(data.train.x, direction), image_to_sequence(data.test.x, direction)
        base = ESN(X_train.shape[2], n_outputs=2, n_reservoir=units, **options)
        cells = []
        for leak_rate in leak_rates:
            esn = base.with_leak_rate(leak_rate).fit(X_train, data.train.y)
            cells.append(f"{esn.score(X_test, data.test.y):.2f} ({esn.score(X_train, data.train.y):.2f})")
        print(f"{direction:>14} " + " ".join(f"{cell:>11}" for cell in cells))


def decay_table(data, leak_rates, units=300):
    print(f"\n3. decay rate of mean |time profile| per step (test set, {units} units) against -log(1 - alpha)")
    print(f"{'leak':>5} {'theory':>7} {'left_to_right':>14} {'right_to_left':>14}")
    measured = {direction: [] for direction in DIRECTIONS}
    for direction in DIRECTIONS:
        X_train, X_test = image_to_sequence(data.train.x, direction), image_to_sequence(data.test.x, direction)
        base = ESN(X_train.shape[2], n_outputs=2, n_reservoir=units)
        for leak_rate in leak_rates:
            esn = base.with_leak_rate(leak_rate).fit(X_train, data.train.y)
            measured[direction].append(explain_esn(esn, X_test).decay_rate)
    for index, leak_rate in enumerate(leak_rates):
        print(f"{leak_rate:>5} {-math.log1p(-leak_rate):>7.3f} "
              + " ".join(f"{measured[direction][index]:>14.3f}" for direction in DIRECTIONS))


def slicing_table(data, leak_rates, units=300, slices=4):
    mask = data.informative_mask
    X_train, X_test = image_to_sequence(data.train.x), image_to_sequence(data.test.x)
    print(f"\n4. slicing, left to right, {units} units: share of |relevance| on the informative square "
          f"(test set), accuracy, and |relevance| of the last column / first column")
    print(f"{'leak':>5} {'share S=1':>10} {'share S=' + str(slices):>10} {'acc S=1':>8} {'acc S=' + str(slices):>8} "
          f"{'last/first S=1':>15} {'last/first S=' + str(slices):>15}")
    base = ESN(X_train.shape[2], n_outputs=2, n_reservoir=units)
    for leak_rate in leak_rates:
        row = []
        for pieces in (1, slices):
            esn = base.with_leak_rate(leak_rate).with_slices(pieces).fit(X_train, data.train.y)
            magnitude = sequence_to_image(explain_esn(esn, X_test).relevance).abs()
            share = (magnitude[:, 0][:, mask].sum() / magnitude.sum()).item()
            per_column = magnitude.sum(dim=(0, 1, 2))
            row.append((share, esn.score(X_test, data.test.y), (per_column[-1] / per_column[0]).item()))
        (share1, accuracy1, ratio1), (share_s, accuracy_s, ratio_s) = row
        print(f"{leak_rate:>5} {share1:>10.3f} {share_s:>10.3f} {accuracy1:>8.2f} {accuracy_s:>8.2f} {ratio1:>15.1f} {ratio_s:>15.1f}")


def sensitivity_table(leak_rates=(0.05, 0.3, 0.5, 0.7, 0.9)):
    print("\n5. what the accuracy drop depends on: test accuracy, left to right (defaults: 32x32, noise 0.1, "
          "300 units, ridge 1e-6, float32)")
    print(f"{'setting':>22} " + " ".join(f"{rate:>6}" for rate in leak_rates))
    settings = [
        ("defaults", {}, {}),
        ("float64", {"double": True}, {}),
        ("ridge 1e-3", {"ridge": 1e-3}, {}),
        ("ridge 1", {"ridge": 1.0}, {}),
        ("noise 0.3", {}, {"noise": 0.3}),
        ("noise 0.5", {}, {"noise": 0.5}),
        ("100 units", {"n_reservoir": 100}, {}),
        ("50 units", {"n_reservoir": 50}, {}),
        ("size 100", {}, {"size": 100}),
    ]
    for name, model_options, data_options in settings:
        data = two_squares(**{"size": 32, **data_options})
        model_options = dict(model_options)
        double = model_options.pop("double", False)
        X_train, X_test = image_to_sequence(data.train.x), image_to_sequence(data.test.x)
        base = ESN(X_train.shape[2], n_outputs=2, **model_options)
        if double:
            base, X_train, X_test = base.double(), X_train.double(), X_test.double()
        cells = [base.with_leak_rate(rate).fit(X_train, data.train.y).score(X_test, data.test.y) for rate in leak_rates]
        print(f"{name:>22} " + " ".join(f"{cell:>6.2f}" for cell in cells))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="only 32x32 tables, no sensitivity table")
    parser.add_argument("--timing", action="store_true", help="only the timing table")
    parser.add_argument("--clock", choices=tuple(CLOCK), default="wall",
                        help="cpu: process time, robust on a busy machine with --threads 1")
    args = parser.parse_args()
    global clock
    clock = CLOCK[args.clock]
    torch.set_num_threads(args.threads)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"torch {torch.__version__}, {args.threads} threads, load average {load:.1f} (other jobs slow the timings)")

    small = two_squares(size=32)
    timing_table(small, (300, 100), LEAK_RATES[::2], args.repeats)
    if args.timing:
        return
    accuracy_table(small, LEAK_RATES)
    accuracy_table(small, LEAK_RATES, units=100)
    if not args.quick:
        accuracy_table(two_squares(size=100), LEAK_RATES)
    decay_table(small, LEAK_RATES)
    slicing_table(small, (0.02, 0.05, 0.2, 0.3, 0.5, 0.6, 0.7, 0.9))
    if not args.quick:
        sensitivity_table()


if __name__ == "__main__":
    main()
