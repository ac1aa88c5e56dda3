"""The benchmarks' timers."""
from __future__ import annotations

import statistics
import time


def timed(function, repeats: int) -> tuple[float, float]:
    """(median, minimum) seconds of ``function()`` over ``repeats`` calls after one warm-up call.

    On a shared machine the minimum is the steadier estimate; the median is what a user sees.
    """
    function()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times)


def interleaved(functions: dict, rounds: int) -> dict:
    """Seconds of each of ``functions`` (name -> callable) per round, all called once a round in turn.

    Calling them back to back within a round means every one sees the same machine load, so the
    per-round ratios (:func:`ratio`) are steadier than ratios of separately taken medians on a shared
    machine. One warm-up round first. Returns name -> list of ``rounds`` times.
    """
    for function in functions.values():
        function()
    times = {name: [] for name in functions}
    for _ in range(rounds):
        for name, function in functions.items():
            start = time.perf_counter()
            function()
            times[name].append(time.perf_counter() - start)
    return times


def ratio(numerator: list, denominator: list) -> tuple[float, float, float]:
    """(median, lower quartile, upper quartile) of the per-round ratios ``numerator / denominator``."""
    low, median, high = statistics.quantiles([a / b for a, b in zip(numerator, denominator)], n=4)
    return median, low, high


def once(function) -> float:
    """Seconds of one call of ``function()``, no warm-up (a first call: tracing, caches filled)."""
    start = time.perf_counter()
    function()
    return time.perf_counter() - start
