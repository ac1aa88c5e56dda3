"""The lrp-widgets command as a new user meets it (issue 16): options JupyterLab needs pass
through, ``--version`` answers, and ``--help`` imports nothing heavy."""
import subprocess
import sys
from pathlib import Path

import pytest

from lrp_widgets import cli

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def launched(monkeypatch):
    """The command lines `lab` would run, captured instead of starting JupyterLab."""
    commands = []
    monkeypatch.setattr(cli.subprocess, "call", lambda command: commands.append(command) or 0)
    return commands


def test_lab_passes_options_it_does_not_know_to_jupyterlab(tmp_path, launched):
    assert cli.main(["lab", "--dir", str(tmp_path), "--port", "8899", "--allow-root", "--no-browser"]) == 0
    (command,) = launched
    assert command[1:3] == ["-m", "jupyterlab"]
    assert command[-4:] == ["--port", "8899", "--allow-root", "--no-browser"]
    # `--no-browser` is JupyterLab's: it did not turn into our --no-browser-launch (nothing started)
    assert (tmp_path / "01_lrp_basics.ipynb").exists()


def test_everything_after_a_double_dash_goes_to_jupyterlab(tmp_path, launched):
    assert cli.main(["lab", "--dir", str(tmp_path), "--", "--dir", "elsewhere", "--ServerApp.ip=0.0.0.0"]) == 0
    (command,) = launched
    assert command[-3:] == ["--dir", "elsewhere", "--ServerApp.ip=0.0.0.0"]
    assert command[command.index("--notebook-dir") + 1] == str(tmp_path.resolve())


def test_our_own_options_are_never_abbreviated(tmp_path, launched):
    # only the full --no-browser-launch skips JupyterLab
    assert cli.main(["lab", "--dir", str(tmp_path), "--no-browser-launch"]) == 0
    assert launched == []
    assert cli.main(["lab", "--dir", str(tmp_path), "--no-browser-l"]) == 0
    assert launched[0][-1] == "--no-browser-l"


def test_gallery_still_rejects_unknown_options(tmp_path, capsys):
    with pytest.raises(SystemExit) as raised:
        cli.main(["gallery", "--out", str(tmp_path), "--bogus"])
    assert raised.value.code == 2
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err


def _run_command(*argv):
    """Run ``lrp-widgets ARGV`` as the console script does; report which heavy modules it imported."""
    script = (
        "import sys\n"
        f"sys.argv = ['lrp-widgets', *{list(argv)!r}]\n"
        "from lrp_widgets.cli import main\n"
        "try:\n    code = main()\nexcept SystemExit as stop:\n    code = stop.code\n"
        "heavy = sorted(m for m in ('torch', 'numpy', 'matplotlib', 'ipywidgets', 'scipy', 'sklearn') if m in sys.modules)\n"
        "print('HEAVY', heavy, 'CODE', code)\n"
    )
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=120)


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["lab", "--help"]])
def test_help_and_version_import_nothing_heavy(argv):
    done = _run_command(*argv)
    assert "HEAVY [] CODE 0" in done.stdout, done.stdout + done.stderr


def test_version_names_the_package_version():
    import lrp_widgets

    done = _run_command("--version")
    assert f"lrp-widgets {lrp_widgets.__version__}" in done.stdout


def test_the_gallery_output_has_no_progress_bars_but_keeps_other_messages(tmp_path, monkeypatch, capsys):
    from tqdm.auto import tqdm

    from tests.test_gallery import TinyExplorer

    class BusyExplorer(TinyExplorer):
        def __init__(self):
            for _ in tqdm(range(3), desc="precomputing"):
                pass
            print("note: something worth reading", file=sys.stderr)
            super().__init__()

    monkeypatch.setattr(cli, "GALLERY", {"BusyExplorer": {"shift": 4}})
    monkeypatch.setattr(cli, "MODULES", {"BusyExplorer": "busy"})
    monkeypatch.setattr(cli, "explorer_class", lambda name: BusyExplorer)
    assert cli.main(["gallery", "--out", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert "precomputing" not in captured.err and "%|" not in captured.err
    assert "note: something worth reading" in captured.err
    assert "BusyExplorer:" in captured.out and "wrote 2 pictures" in captured.out
