"""Kernel-side cost of a widget change: construction time, and per control the time of
``control.value = v`` (the new state computed or looked up, the panels whose fields changed
rendered or taken from their caches, their pictures handed to the widgets), split into first
visits and revisited (cached) states. Goal for cached states: median <= 15 ms.

Changes cycle through each control's values, so after the first pass the explorer's caches
answer (as they do for a student sliding back and forth). What the browser adds on top (the
transport, decoding, painting) is measured by ``benchmarks/browser_latency.py``.

Run: ``python benchmarks/widgets.py [ExplorerName ...]``
"""
from __future__ import annotations

import os
import statistics
import sys
import time

import numpy as np
import torch

from lrp_widgets import widgets

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
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def median(values):
    return statistics.median(values) if values else float("nan")


def measure(name, changes=24):
    start = time.perf_counter()
    explorer = getattr(widgets, name)(progress=False) if name != "RuleExplorer" else getattr(widgets, name)()
    built = time.perf_counter() - start
    print(f"\n{name}: constructed in {built:.2f} s")
    print(f"  {'control':<14} {'first visits ms':>16} {'cached median ms':>17} {'cached p95 ms':>14} {'panels sent':>12}")
    for control_name, control in explorer.controls.items():
        values = control_values(control)
        original = control.value
        cycle = [v for v in values if v != original] + [original]
        first, cached, sent = [], [], []
        seen = {repr(original)}
        for i in range(max(changes, 2 * len(cycle))):
            value = cycle[i % len(cycle)]
            t = time.perf_counter()
            control.value = value
            elapsed = time.perf_counter() - t
            (cached if repr(value) in seen else first).append(elapsed * 1e3)
            seen.add(repr(value))
            sent.append(explorer.timings.get("sent", 0))
            if explorer.last_error:
                print(f"  {control_name}: error {explorer.last_error}")
                break
        print(f"  {control_name:<14} {median(first):>16.1f} {median(cached):>17.2f} {percentile(cached, 95):>14.2f} {median(sent):>12.0f}")
        control.value = original


def main(argv):
    torch.set_num_threads(2)
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    for name in argv or EXPLORERS:
        try:
            measure(name)
        except (AttributeError, ImportError, ModuleNotFoundError) as error:
            print(f"\n{name}: not available ({error})")


if __name__ == "__main__":
    main(sys.argv[1:])
