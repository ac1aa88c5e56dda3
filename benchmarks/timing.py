"""The benchmarks' one timer."""
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
