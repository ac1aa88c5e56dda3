"""Run the benchmarks and write their output into README.md's performance section.

Each benchmark in ``BENCHMARKS`` runs as ``python benchmarks/<name>.py [arguments]`` in its own
process; what it prints goes, verbatim, between that benchmark's markers in README.md
(``<!-- benchmark:NAME start -->`` ... ``<!-- benchmark:NAME end -->``), under a line with the
date, the machine (CPU model, cores, OS), Python, torch and the load average before and after
the run: timings on a shared machine are only as good as the quiet they were taken in.

Run: ``python benchmarks/run_all.py`` (every benchmark; several minutes on 2 cores) or
``python benchmarks/run_all.py engine widgets`` (just those; the other blocks stay as they are).
``--dry-run`` prints the new section instead of writing README.md. A benchmark that fails keeps
its old block; the command then exits with status 1. On a busy machine (a load average above
``--max-load``, by default half the cores) it refuses to start: such timings are noise.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

#: name -> (title, extra arguments), in README order
BENCHMARKS = {
    "engine": ("Engine", []),
    "graph": ("Graph path (models as written) against the hook path", []),
    "esn": ("Echo state network", ["--timing"]),
    "rnn": ("LSTM/GRU", []),
    "attention": ("Attention (AttnLRP on the tiny ViT)", []),
    "removal": ("Removal curves", []),
    "paths": ("Paths", []),
    "widgets": ("Widgets (kernel side)", []),
    "browser_latency": ("In the browser: key press -> changed pixels in JupyterLab + Chromium", []),
}


def markers(name: str) -> tuple[str, str]:
    return f"<!-- benchmark:{name} start -->", f"<!-- benchmark:{name} end -->"


def machine() -> str:
    """CPU model, logical cores, OS, Python and torch versions, as one line."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import torch

        torch_version = torch.__version__
    except ImportError:
        torch_version = "not installed"
    return (
        f"{cpu}, {os.cpu_count()} logical cores, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, torch {torch_version}"
    )


def load() -> str:
    try:
        return f"{os.getloadavg()[0]:.1f}"
    except OSError:
        return "unknown"


def run(name: str) -> tuple[bool, str]:
    """Run one benchmark; ``(ok, the README block for it)``."""
    title, arguments = BENCHMARKS[name]
    command = [sys.executable, str(ROOT / "benchmarks" / f"{name}.py"), *arguments]
    before, start = load(), time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    seconds, after = time.perf_counter() - start, load()
    shown = " ".join(["python", f"benchmarks/{name}.py", *arguments])
    today = datetime.date.today().isoformat()
    block = (
        f"**{title}** (`{shown}`), run by `python benchmarks/run_all.py` on {today} in {seconds:.0f} s; "
        f"{machine()}; load average {before} before, {after} after.\n\n"
        f"```text\n{done.stdout.rstrip()}\n```"
    )
    if done.returncode != 0:
        print(f"{name}: FAILED (exit {done.returncode})\n{done.stderr[-3000:]}", file=sys.stderr)
    return done.returncode == 0, block


def replace_block(text: str, name: str, block: str) -> str:
    start, end = markers(name)
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
    if not pattern.search(text):
        raise SystemExit(f"README.md has no markers for {name!r}: add a line {start} and a line {end}")
    return pattern.sub(lambda _: f"{start}\n{block}\n{end}", text, count=1)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"benchmarks to run: {', '.join(BENCHMARKS)} (default: all)")
    parser.add_argument("--dry-run", action="store_true", help="print the blocks instead of writing README.md")
    parser.add_argument("--max-load", type=float, default=(os.cpu_count() or 2) / 2,
                        help="refuse to run above this 1-minute load average (default: half the cores)")
    args = parser.parse_args(argv)
    unknown = [name for name in args.names if name not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    names = args.names or list(BENCHMARKS)
    text = README.read_text()
    for name in names:  # fail before hours of benchmarks, not after
        replace_block(text, name, "")
    busy = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    if busy > args.max_load:
        print(f"load average {busy:.1f} is above {args.max_load:g}: other jobs would distort the timings. "
              "Run when the machine is quiet (or raise --max-load).", file=sys.stderr)
        return 2
    failed = []
    for name in names:
        print(f"running benchmarks/{name}.py ...", flush=True)
        ok, block = run(name)
        if not ok:
            failed.append(name)
            continue
        if args.dry_run:
            print(block)
        text = replace_block(text, name, block)
    if not args.dry_run:
        README.write_text(text)
        print(f"README.md: performance blocks rewritten for {', '.join(n for n in names if n not in failed) or 'none'}")
    if failed:
        print(f"failed (blocks kept as they were): {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
