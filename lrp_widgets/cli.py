"""The ``lrp-widgets`` command: open the tutorials in JupyterLab, or render the widget gallery.

``lrp-widgets lab [--dir DIR] [JUPYTER OPTIONS]`` copies the tutorial notebooks to ``DIR`` (default
``./lrp_widgets_tutorials``; existing files are never overwritten, so your edits are safe) and
starts JupyterLab there; options it does not know (``--port 8899 --allow-root --no-browser``), and
everything after ``--``, go to JupyterLab as they are. ``lrp-widgets gallery --out DIR`` renders every explorer's default view,
and one changed state, to PNG files headless. ``lrp-widgets export NAME --out FILE.html`` (or ``--all
--out DIR``) writes an explorer as one self-contained HTML page that runs without a kernel.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

# Nothing heavy is imported at module level (no torch, matplotlib or widgets): ``lrp-widgets
# --help`` and ``--version`` answer at once; each command imports what it needs.

#: explorer -> the control changes for its "changed" picture. "largest" means the control's last
#: option (a selection) or its maximum (a slider).
GALLERY = {
    "RuleExplorer": {"composite": "epsilon_gamma_box", "gamma": 2.0},
    "L1Explorer": {"l1": "largest"},
    "LeakRateExplorer": {"leak_rate": 0.3},
    "RemovalExplorer": {"fraction": 0.3},
    "PathExplorer": {"k": 10},
    "AttentionExplorer": {"rule": "CP-LRP", "head": 1},
}


def __getattr__(name: str):
    # ``MODULES``: explorer -> its module in lrp_widgets.widgets (from the one explorer registry), read on
    # first use so that importing this module does not import the widgets
    if name == "MODULES":
        from .widgets.registry import EXPLORERS

        globals()["MODULES"] = {entry.class_name: entry.module.rsplit(".", 1)[1] for entry in EXPLORERS.values()}
        return globals()["MODULES"]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _modules() -> dict:
    return globals()["MODULES"] if "MODULES" in globals() else __getattr__("MODULES")


def tutorials_dir() -> Path:
    """Where the tutorial notebooks are: inside the installed package, or the source checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "tutorials", here.parent / "notebooks"):
        if candidate.is_dir() and any(candidate.glob("*.ipynb")):
            return candidate
    raise FileNotFoundError("the tutorial notebooks were not found next to the package; reinstall lrp_widgets")


def copy_tutorials(destination: Path) -> list[Path]:
    """Copy the notebooks into ``destination``; files already there are kept as they are."""
    destination.mkdir(parents=True, exist_ok=True)
    copied = []
    for notebook in sorted(tutorials_dir().glob("*.ipynb")):
        target = destination / notebook.name
        if not target.exists():
            shutil.copyfile(notebook, target)
            copied.append(target)
    return copied


def lab(args) -> int:
    destination = Path(args.dir).resolve()
    copied = copy_tutorials(destination)
    print(f"tutorials in {destination} ({len(copied)} copied, others kept as they were)")
    if args.no_browser_launch:
        return 0
    command = [sys.executable, "-m", "jupyterlab", "--notebook-dir", str(destination)]
    first = destination / "01_lrp_basics.ipynb"
    if first.exists():
        command.append(str(first))
    command += args.jupyter_args
    if hasattr(os, "geteuid") and os.geteuid() == 0 and "--allow-root" not in args.jupyter_args:
        print("running as root: JupyterLab refuses unless asked, e.g. `lrp-widgets lab --allow-root`", file=sys.stderr)
    try:
        return subprocess.call(command)
    except FileNotFoundError:  # pragma: no cover
        print("JupyterLab is not installed: pip install 'lrp_widgets[lab]'", file=sys.stderr)
        return 1


class GalleryError(RuntimeError):
    """Some explorers could not be rendered; the others were written (``.written``)."""

    def __init__(self, failures: dict, written: list):
        self.failures, self.written = failures, written
        super().__init__("; ".join(f"{name}: {reason}" for name, reason in failures.items()))


def explorer_class(name: str):
    """The explorer class called ``name``, or None when its module does not exist (yet).

    Any other import error is raised: a broken explorer must not vanish from the gallery quietly.
    """
    import importlib

    modules = _modules()
    if name not in modules:
        raise ValueError(f"unknown explorer {name!r}; known: {', '.join(modules)}")
    module = f"lrp_widgets.widgets.{modules[name]}"
    try:
        return getattr(importlib.import_module(module), name)
    except ModuleNotFoundError as error:
        if error.name == module:
            return None
        raise


def _control_value(widget, value):
    if value != "largest":
        return value
    options = getattr(widget, "options", None)
    if options:
        last = list(options)[-1]
        return last[1] if isinstance(last, tuple) else last
    return widget.max


def _plain_readout(explorer) -> str:
    import html
    import re

    return html.unescape(re.sub(r"<[^>]+>", "", explorer.readout.value)).replace("\xa0", " ")


def _save(explorer, path: Path, dpi: int) -> bytes:
    """The figure with its readout as a caption underneath, as PNG (``path`` and the bytes)."""
    import io

    figure = explorer.figure
    caption = _plain_readout(explorer)
    text = figure.text(0.01, 0.0, caption, va="top", ha="left", fontsize=8, color="0.25") if caption else None
    try:
        buffer = io.BytesIO()
        # no Software/date metadata: the same picture gives the same bytes
        figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight", pad_inches=0.08, facecolor="white", metadata={"Software": None})
    finally:
        if text is not None:
            text.remove()
    data = buffer.getvalue()
    path.write_bytes(data)
    return data


def render_one(name: str, out: Path, dpi: int = 100) -> list[Path]:
    """Render ``name``'s default view and one changed state (``GALLERY[name]``) to PNG files.

    Raises ValueError/RuntimeError with the reason when the explorer cannot be built, shows an
    error, lacks a control the gallery changes, or draws the same picture after the change.
    """
    cls = explorer_class(name)
    if cls is None:
        raise ModuleNotFoundError(f"{name}: lrp_widgets.widgets.{_modules()[name]} does not exist")
    explorer = cls()
    if explorer.last_error:
        raise RuntimeError(f"failed to draw its default view: {explorer.last_error}")
    default = out / f"{name}.png"
    before = _save(explorer, default, dpi)
    changes = GALLERY.get(name, {})
    missing = [control for control in changes if control not in explorer.controls]
    if missing:
        raise ValueError(f"has no control {', '.join(missing)} (its controls: {', '.join(explorer.controls)}); update cli.GALLERY")
    with explorer.hold():
        for control, value in changes.items():
            explorer.controls[control].value = _control_value(explorer.controls[control], value)
    if explorer.last_error:
        raise RuntimeError(f"failed after the change {changes}: {explorer.last_error}")
    changed = out / f"{name}_changed.png"
    after = _save(explorer, changed, dpi)
    if after == before:
        raise RuntimeError(f"the change {changes} left the picture as it was; choose another in cli.GALLERY")
    return [default, changed]


#: a tqdm progress bar's line (its percentage and bar)
_BAR = re.compile(r"\d+%\|")


@contextlib.contextmanager
def _quiet_progress_bars():
    """Progress bars written to stderr while explorers precompute are dropped (they would be
    interleaved with the gallery's own lines); anything else written there is passed on."""
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            yield
    finally:
        kept = [line for line in re.split(r"[\r\n]+", captured.getvalue()) if line.strip() and not _BAR.search(line)]
        if kept:
            print("\n".join(kept), file=sys.stderr)


def render_gallery(out: Path, names=None, progress: bool = True, dpi: int = 100) -> list[Path]:
    """Render each explorer's default view and one changed state to ``out/<Name>[_changed].png``.

    Headless (Agg canvases, no display needed). With ``names=None``, every explorer whose module
    exists; explorers named explicitly must exist. One explorer failing does not stop the others:
    their pictures are written, then :class:`GalleryError` names every failure.

    Example
    -------
    >>> render_gallery(Path("docs/gallery"), ["L1Explorer"])  # doctest: +SKIP
    [PosixPath('docs/gallery/L1Explorer.png'), PosixPath('docs/gallery/L1Explorer_changed.png')]
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    explicit = bool(names)
    names = list(names or GALLERY)
    modules = _modules()
    for name in names:
        if name not in modules:
            raise ValueError(f"unknown explorer {name!r}; known: {', '.join(modules)}")
    written, failures = [], {}
    for name in names:
        if not explicit and explorer_class(name) is None:
            if progress:
                print(f"{name}: skipped, lrp_widgets.widgets.{modules[name]} does not exist yet", file=sys.stderr)
            continue
        try:
            with _quiet_progress_bars():
                paths = render_one(name, out, dpi)
        except Exception as error:  # noqa: BLE001 - reported together at the end
            failures[name] = f"{type(error).__name__}: {error}"
            if progress:
                print(f"{name}: FAILED, {failures[name]}", file=sys.stderr)
            continue
        written.extend(paths)
        if progress:
            print(f"{name}: {', '.join(str(p) for p in paths)}")
    if failures:
        raise GalleryError(failures, written)
    return written


def gallery(args) -> int:
    try:
        written = render_gallery(Path(args.out), args.only or None, dpi=args.dpi)
    except GalleryError as error:
        print(f"wrote {len(error.written)} pictures to {Path(args.out).resolve()}; failed: {error}", file=sys.stderr)
        return 1
    print(f"wrote {len(written)} pictures to {Path(args.out).resolve()}")
    return 0

def _grid_value(text: str):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def parse_grid(items) -> dict:
    """``["leak_rate=0.01,0.1,0.5", "sample=0,1"]`` -> ``{"leak_rate": [0.01, 0.1, 0.5], "sample": [0, 1]}``."""
    grid = {}
    for item in items or []:
        name, sep, values = item.partition("=")
        if not sep or not name or not values:
            raise ValueError(f"--grid {item!r}: write CONTROL=VALUE,VALUE,... (e.g. leak_rate=0.01,0.1,0.5)")
        grid[name.strip()] = [_grid_value(v.strip()) for v in values.split(",") if v.strip()]
    return grid


def export(args) -> int:
    from .widgets.export import export_explorers, export_html
    from .widgets.registry import EXPLORERS, lookup

    try:
        grid = parse_grid(args.grid)
        if args.all:
            if args.name or grid:
                raise ValueError("--all exports every explorer with its default grid: give no NAME and no --grid")
            start = time.perf_counter()
            reports = export_explorers(list(EXPLORERS), args.out)
            total = sum(r.size for r in reports)
            print(f"wrote {len(reports)} pages and index.html to {Path(args.out).resolve()}: {total / 1e6:.2f} MB in "
                  f"{time.perf_counter() - start:.0f} s")
            return 0
        if not args.name:
            raise ValueError("name an explorer (" + ", ".join(EXPLORERS) + ") or pass --all")
        entry = lookup(args.name)
        report = export_html(entry.load()(), args.out, grid or None, samples=args.samples)
    except (KeyError, ValueError, TypeError) as error:
        print(f"lrp-widgets export: {error.args[0] if error.args else error}", file=sys.stderr)
        return 2
    print(report)
    return 0


def _parser() -> argparse.ArgumentParser:
    # allow_abbrev=False: `--no-browser` (JupyterLab's) must not match our `--no-browser-launch`
    parser = argparse.ArgumentParser(prog="lrp-widgets", description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--version", action="version", version=f"lrp-widgets {_version()}")
    commands = parser.add_subparsers(dest="command", required=True)
    lab_parser = commands.add_parser(
        "lab",
        help="copy the tutorials to a folder and open JupyterLab there",
        description="Copy the tutorials to a folder and open JupyterLab there. Options not listed here "
        "(e.g. --port 8899 --allow-root --no-browser), and everything after --, are passed to JupyterLab.",
        allow_abbrev=False,
    )
    lab_parser.add_argument("--dir", default="lrp_widgets_tutorials", help="folder for the notebooks")
    lab_parser.add_argument("--no-browser-launch", action="store_true", help="only copy the notebooks; start nothing")
    lab_parser.set_defaults(run=lab, forwards=True)
    gallery_parser = commands.add_parser("gallery", help="render every explorer to PNG files", allow_abbrev=False)
    gallery_parser.add_argument("--out", required=True, help="output folder")
    gallery_parser.add_argument("--only", nargs="*", choices=list(GALLERY), help="just these explorers")
    gallery_parser.add_argument("--dpi", type=int, default=100, help="resolution of the pictures (default 100)")
    gallery_parser.set_defaults(run=gallery, forwards=False)
    export_parser = commands.add_parser(
        "export", help="write an explorer as one self-contained HTML page (no kernel needed)", allow_abbrev=False,
        description="Precompute an explorer's pictures over a grid of control values and write one HTML page that "
        "works without a kernel or network (course pages, nbviewer). NAME: rule, l1, leak_rate, removal, path.")
    export_parser.add_argument("name", nargs="?", help="the explorer (rule, l1, leak_rate, removal, path)")
    export_parser.add_argument("--out", required=True, help="the HTML file (with --all: a folder, with index.html)")
    export_parser.add_argument("--all", action="store_true", help="every explorer, and an index page")
    export_parser.add_argument("--grid", action="append", metavar="CONTROL=V1,V2,...",
                               help="the values of one control (repeatable), e.g. --grid leak_rate=0.01,0.1,0.5")
    export_parser.add_argument("--samples", type=int, default=None, help="how many samples the sample slider offers")
    export_parser.set_defaults(run=export, forwards=False)
    return parser


def _version() -> str:
    from . import __version__

    return __version__


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # everything after a bare `--` belongs to JupyterLab, whatever it looks like
    cut = argv.index("--") if "--" in argv else len(argv)
    parser = _parser()
    args, unknown = parser.parse_known_args(argv[:cut])
    passed = unknown + argv[cut + 1:]
    if passed and not args.forwards:
        parser.error(f"unrecognized arguments: {' '.join(passed)}")
    args.jupyter_args = passed
    return args.run(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
