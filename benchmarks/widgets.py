"""Widget latency benchmark: construction time, and per control the latency of a change
(state updated and the figure drawn with ``figure.canvas.draw()``), median and 95th percentile
over at least 20 changes, with the ratio to a bare redraw of the same figure.

Changes cycle through each control's values, so after the first pass the explorer's caches
answer (as they do for a student sliding back and forth); the first-visit latency is printed
separately because it includes computing.

Run: ``python benchmarks/widgets.py [ExplorerName ...]``
"""
from __future__ import annotations

import statistics
import sys
import time

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from lrp_widgets import widgets  # noqa: E402

EXPLORERS = ["RuleExplorer", "L1Explorer", "LeakRateExplorer", "RemovalExplorer", "PathExplorer"]


def control_values(control, count=6):
    """A few values a user could slide through."""
    if hasattr(control, "options") and control.options:
        options = [o[1] if isinstance(o, tuple) else o for o in control.options]
        return options[:count]
    if hasattr(control, "min") and hasattr(control, "max"):
        if type(control).__name__ == "FloatLogSlider":
            return list(control.base ** np.linspace(control.min, control.max, count))
        values = np.linspace(control.min, control.max, count)
        return [type(control.value)(v) for v in values]
    return [control.value]


def percentile(values, q):
    return float(np.percentile(np.asarray(values), q))


def measure(name, changes=24):
    start = time.perf_counter()
    explorer = getattr(widgets, name)()
    built = time.perf_counter() - start
    explorer.figure.canvas.draw()
    bare = []
    for _ in range(10):
        t = time.perf_counter()
        explorer.figure.canvas.draw()
        bare.append(time.perf_counter() - t)
    bare_median = statistics.median(bare)
    print(f"\n{name}: constructed in {built:.2f} s; bare redraw {bare_median * 1e3:.1f} ms")
    print(f"  {'control':<14} {'first visits ms':>16} {'median ms':>10} {'p95 ms':>8} {'x redraw':>9}")
    for control_name, control in explorer.controls.items():
        values = control_values(control)
        original = control.value
        cycle = [v for v in values if v != original] + [original]
        first, later = [], []
        seen = set()
        for i in range(max(changes, 2 * len(cycle))):
            value = cycle[i % len(cycle)]
            t = time.perf_counter()
            control.value = value
            explorer.figure.canvas.draw()
            elapsed = time.perf_counter() - t
            key = repr(value)
            (later if key in seen else first).append(elapsed)
            seen.add(key)
            if explorer.last_error:
                print(f"  {control_name}: error {explorer.last_error}")
                break
        all_times = first + later
        print(
            f"  {control_name:<14} {statistics.median(first) * 1e3 if first else float('nan'):>16.1f} "
            f"{statistics.median(all_times) * 1e3:>10.1f} {percentile(all_times, 95) * 1e3:>8.1f} "
            f"{statistics.median(all_times) / bare_median:>9.2f}"
        )
        control.value = original


def main(argv):
    torch.set_num_threads(2)
    names = argv or EXPLORERS
    for name in names:
        try:
            measure(name)
        except (AttributeError, ImportError, ModuleNotFoundError) as error:
            print(f"\n{name}: not available ({error})")


if __name__ == "__main__":
    main(sys.argv[1:])
