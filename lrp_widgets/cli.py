"""The ``lrp-widgets`` command: open the tutorials in JupyterLab, or render the widget gallery.

``lrp-widgets lab [--dir DIR]`` copies the tutorial notebooks to ``DIR`` (default
``./lrp_widgets_tutorials``; existing files are never overwritten, so your edits are safe) and
starts JupyterLab there. ``lrp-widgets gallery --out DIR`` renders every explorer's default view,
and one changed state, to PNG files headless.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

#: name -> (constructor keyword arguments, control changes for the "changed" picture)
GALLERY = {
    "RuleExplorer": {"composite": "epsilon_gamma_box", "gamma": 2.0},
    "L1Explorer": {"l1": "largest"},
    "LeakRateExplorer": {"leak_rate": 0.3},
    "RemovalExplorer": {"fraction": 0.3},
    "PathExplorer": {"k": 10},
}


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
    try:
        return subprocess.call(command)
    except FileNotFoundError:  # pragma: no cover
        print("JupyterLab is not installed: pip install 'lrp_widgets[lab]'", file=sys.stderr)
        return 1


def render_gallery(out: Path, names=None, progress: bool = True) -> list[Path]:
    """Render each explorer's default view and one changed state to ``out/<Name>[_changed].png``."""
    import matplotlib

    matplotlib.use("Agg")
    from . import widgets

    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name in names or GALLERY:
        explorer = getattr(widgets, name)()
        if explorer.last_error:
            raise RuntimeError(f"{name} failed to draw its default view: {explorer.last_error}")
        path = out / f"{name}.png"
        explorer.figure.savefig(path)
        written.append(path)
        with explorer.hold():
            for control, value in GALLERY[name].items():
                widget = explorer.controls[control]
                if value == "largest":
                    value = widget.options[-1][1] if isinstance(widget.options[-1], tuple) else widget.options[-1]
                widget.value = value
        if explorer.last_error:
            raise RuntimeError(f"{name} failed after a control change: {explorer.last_error}")
        path = out / f"{name}_changed.png"
        explorer.figure.savefig(path)
        written.append(path)
        if progress:
            print(f"{name}: {path.parent}")
    return written


def gallery(args) -> int:
    written = render_gallery(Path(args.out), args.only or None)
    print(f"wrote {len(written)} pictures to {Path(args.out).resolve()}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="lrp-widgets", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    lab_parser = commands.add_parser("lab", help="copy the tutorials to a folder and open JupyterLab there")
    lab_parser.add_argument("--dir", default="lrp_widgets_tutorials", help="folder for the notebooks")
    lab_parser.add_argument("--no-browser-launch", action="store_true", help="only copy the notebooks")
    lab_parser.set_defaults(run=lab)
    gallery_parser = commands.add_parser("gallery", help="render every explorer to PNG files")
    gallery_parser.add_argument("--out", required=True, help="output folder")
    gallery_parser.add_argument("--only", nargs="*", choices=list(GALLERY), help="just these explorers")
    gallery_parser.set_defaults(run=gallery)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
