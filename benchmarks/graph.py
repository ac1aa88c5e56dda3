"""Graph-path benchmark: the zoo's MiniVGG explained through its traced graph vs the hook path.

The same model, input and composite (``epsilon_plus_flat``), batch 1 and 32, 1 thread. Each round
times one hook-path call (``graph=False``) and one graph-path call (``graph=True``, the trace cached)
back to back, so both see the same machine load; prints the median time of each, the median of the
per-round ratios graph/hook, and the one-time cost of tracing. Both paths give the same relevance
(checked here too).

Run: ``python benchmarks/graph.py [--rounds 60]``
"""
from __future__ import annotations

import argparse
import os
import statistics

import torch

from lrp_widgets import explain, zoo
from lrp_widgets.engine import graph
from timing import interleaved, once, ratio  # benchmarks/timing.py (the script's folder is on sys.path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=60, help="timed rounds per batch size (batch 32: a third)")
    arguments = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = zoo.load("shapes_minivgg")
    print(f"MiniVGG (zoo 'shapes_minivgg'), epsilon_plus_flat, torch {torch.__version__}, 1 thread, "
          f"load average {os.getloadavg()[0]:.2f}")
    graph.clear_cache()
    first = once(lambda: graph.trace(model))
    graph.clear_cache()
    again = once(lambda: graph.trace(model))
    cached = once(lambda: graph.trace(model))
    print(f"tracing (once per model): {first * 1e3:.1f} ms the first time in a process, {again * 1e3:.1f} ms "
          f"after; a cached trace: {cached * 1e6:.0f} us; {len(graph.trace(model).nodes)} graph nodes")
    print(f"{'batch':>5} {'hook ms':>9} {'graph ms':>9} {'graph/hook (median of rounds)':>31}")
    for batch in (1, 32):
        x = torch.rand(batch, 3, 32, 32)
        hook = explain(model, x, composite="epsilon_plus_flat", graph=False)
        through_graph = explain(model, x, composite="epsilon_plus_flat", graph=True)
        assert torch.allclose(hook.relevance, through_graph.relevance, rtol=0, atol=1e-6), "the paths disagree"
        rounds = arguments.rounds if batch == 1 else max(5, arguments.rounds // 3)
        times = interleaved({
            "hook": lambda: explain(model, x, composite="epsilon_plus_flat", graph=False),
            "graph": lambda: explain(model, x, composite="epsilon_plus_flat", graph=True),
        }, rounds)
        median, low, high = ratio(times["graph"], times["hook"])
        print(f"{batch:>5} {statistics.median(times['hook']) * 1e3:>9.2f} {statistics.median(times['graph']) * 1e3:>9.2f} "
              f"{median:>14.3f} (quartiles {low:.3f}-{high:.3f})")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
