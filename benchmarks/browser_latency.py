"""Key press -> changed pixels, in JupyterLab and Debian's Chromium, for every slider of every explorer.

Starts JupyterLab on a temporary folder (``tests/e2e/lab.py``: loopback only, fresh settings),
opens one notebook per explorer (and one "floor" notebook: a single 32x32 map coloured in numpy
and sent as a PNG to one ``ipywidgets.Image``, the least a change can cost), runs it, and for each
slider presses arrow keys on its handle, wandering back and forth (so later presses revisit
cached states, as a student sliding does). Each press is timed in the page: from the ``keydown``
event to the first animation frame (``requestAnimationFrame``) in which any picture of the
explorer has different pixels. A press that changes no pixel within 3 s is counted, not timed.

Then, per slider, a drag: arrow-key events every ``1/DRAG_RATE`` s (as a held key repeats) for
``DRAG_SECONDS``, four steps right and four back, over and over, while the page counts the animation frames in which the pictures
changed: fresh states shown per second while the slider moves (the goal is at least 10), and the
time from the last key event until the pictures stop changing (the last value always lands).

A benchmark, not a test: the numbers depend on the machine and its load (printed with them).

Run: ``python benchmarks/browser_latency.py [--presses 20] [--markdown FILE] [Name ...]``
(``Name``: ``floor`` or an explorer; default all). Needs ``chromium`` and ``playwright``.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.e2e.lab import (  # noqa: E402
    CHROMIUM_ARGS, LabServer, NotebookPage, explorer_notebook, time_key_press, wait_until_still,
)

#: the sliders timed per notebook, and the key that first takes a slider where steps show
#: (epsilon near 1e-6 changes nothing visible: start from its top end and wander down)
SLIDERS = {
    "floor": {"shift": None},
    "RuleExplorer": {"epsilon": "End", "gamma": None, "sample": None},
    "L1Explorer": {"l1": None, "sample": None},
    "LeakRateExplorer": {"leak_rate": None, "sample": None},
    "RemovalExplorer": {"fraction": None, "sample": None},
    "PathExplorer": {"k": None, "sample": None},
    # layer and head have two positions each on the tiny ViT: a wander would mostly press past the end
    "AttentionExplorer": {"epsilon": None, "sample": None},
}
#: runs of presses: right 4, left 2, right 3, left 5, ... (never below the starting point)
WANDER = [4, -2, 3, -5, 2, -1, 3, -2, 2, -3, 4]
GOAL = "median <= 75 ms, p95 <= 150 ms; dragging >= 10 fresh states per second"
#: a held arrow key: events per second and how long it is held
DRAG_RATE, DRAG_SECONDS = 30, 2.0
#: counts frames whose pictures differ from the previous frame's, from start() until read()
DRAG_COUNTER = """() => {
  window.__drag = {changes: [], previous: null, running: true, t0: performance.now()};
  const tick = now => {
    const state = window.__drag;
    if (!state.running) return;
    window.__probe.arm();
    const current = JSON.stringify(window.__probe.base);
    if (state.previous !== null && current !== state.previous) state.changes.push(now - state.t0);
    state.previous = current;
    requestAnimationFrame(tick);
  };
  requestAnimationFrame(tick);
}"""


def measure_drag(page, selector: str) -> dict:
    """Hold an arrow key on the slider: fresh states per second while it moves, and the settle time."""
    page.locator(f"{selector} .noUi-handle").first.focus()
    page.evaluate(DRAG_COUNTER)
    started = time.perf_counter()
    presses = 0
    while time.perf_counter() - started < DRAG_SECONDS:
        # back and forth over four steps, so that every event moves the value (short sliders included)
        page.keyboard.press("ArrowRight" if (presses // 4) % 2 == 0 else "ArrowLeft")
        presses += 1
        time.sleep(max(0.0, started + presses / DRAG_RATE - time.perf_counter()))
    held_ms = (time.perf_counter() - started) * 1000
    wait_until_still(page, quiet_ms=500, timeout_ms=10_000)
    changes = page.evaluate("() => { window.__drag.running = false; return window.__drag.changes; }")
    during = [c for c in changes if c <= held_ms]
    return {"presses": presses, "fresh_per_second": len(during) / (held_ms / 1000),
            "settle_ms": (max(changes) - held_ms) if changes and max(changes) > held_ms else 0.0}


def wander(count: int, reverse: bool) -> list[str]:
    keys = []
    while len(keys) < count:
        for run in WANDER:
            right = (run > 0) != reverse
            keys += ["ArrowRight" if right else "ArrowLeft"] * abs(run)
    return keys[:count]


def percentile(values, q: float) -> float:
    values = sorted(values)
    position = (len(values) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (position - low)


def measure_notebook(context, server, name: str, presses: int) -> list[dict]:
    notebook = NotebookPage(context.new_page(), server, f"{name}.ipynb")
    try:
        notebook.open()
        notebook.run_all(timeout=300)
        errors = notebook.error_outputs()
        if errors:
            raise RuntimeError(f"{name}: {errors[0]}")
        page = notebook.page
        page.locator(".e2e-explorer img").first.wait_for(timeout=60_000)
        wait_until_still(page, quiet_ms=1000, timeout_ms=20_000)
        rows = []
        for slider, start in SLIDERS[name].items():
            selector = f".e2e-slider-{slider}"
            if start:
                time_key_press(page, selector, start)
                wait_until_still(page)
            times, unchanged = [], 0
            for key in wander(presses, reverse=start == "End"):
                latency = time_key_press(page, selector, key)
                if latency is None:
                    unchanged += 1
                else:
                    times.append(latency)
                wait_until_still(page, quiet_ms=250)
            drag = measure_drag(page, selector) if name != "floor" else None
            rows.append({"notebook": name, "slider": slider, "times": times, "unchanged": unchanged, "drag": drag})
            print(f"  {name} ({slider}): {len(times)} timed, {unchanged} without a visible change", file=sys.stderr)
        return rows
    finally:
        notebook.page.close()
        server.shutdown_kernels()


def table(rows: list[dict], load: str) -> str:
    lines = [
        f"Key press -> changed pixels in JupyterLab + Chromium (headless), ms; goal {GOAL}. Load: {load}.",
        "",
        "| explorer (slider) | presses timed | median | p95 | fastest | drag: fresh states/s | drag: settle after release |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        times = row["times"]
        label = "floor: one 32x32 PNG in an Image widget" if row["notebook"] == "floor" else f"{row['notebook']} ({row['slider']})"
        if not times:
            lines.append(f"| {label} | 0 | - | - | - | - | - |")
            continue
        drag = row.get("drag")
        dragged = f"{drag['fresh_per_second']:.1f} | {drag['settle_ms']:.0f} ms" if drag else "- | -"
        lines.append(f"| {label} | {len(times)} | {statistics.median(times):.0f} | {percentile(times, 95):.0f} | {min(times):.0f} | {dragged} |")
    return "\n".join(lines)


def load_average() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} cores"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="floor and/or explorer names (default: all)")
    parser.add_argument("--presses", type=int, default=20, help="presses per slider (>= 15)")
    parser.add_argument("--markdown", help="also write the table to this file")
    parser.add_argument("--json", help="also write every measured time to this file")
    args = parser.parse_args(argv)
    names = args.names or list(SLIDERS)
    chromium = shutil.which("chromium")
    if chromium is None:
        print("chromium is not on PATH (Debian: apt-get install chromium)", file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright

    os.environ.setdefault("PYTHONPATH", str(ROOT))  # the kernels import this checkout
    loads = [load_average()]
    rows = []
    with tempfile.TemporaryDirectory(prefix="browser-latency-") as folder:
        folder = Path(folder)
        sources = folder / "notebooks"
        sources.mkdir()
        for name in names:
            (sources / f"{name}.ipynb").write_text(json.dumps(explorer_notebook(name)))
        server = LabServer(folder / "lab", sorted(sources.glob("*.ipynb")))
        playwright = sync_playwright().start()
        try:
            context = playwright.chromium.launch_persistent_context(
                str(folder / "profile"), executable_path=chromium, headless=True, args=CHROMIUM_ARGS,
                viewport={"width": 1400, "height": 1000},
            )
            context.set_default_timeout(60_000)
            for name in names:
                started = time.monotonic()
                rows += measure_notebook(context, server, name, args.presses)
                print(f"{name}: {time.monotonic() - started:.0f} s", file=sys.stderr)
            context.close()
        finally:
            playwright.stop()
            server.stop()
    loads.append(load_average())
    text = table(rows, f"{loads[0]} before, {loads[1]} after")
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text + "\n")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
