"""The lrp-widgets command: `lab` copies the tutorials without touching the user's edits."""
import json

from lrp_widgets import cli


def test_lab_copies_the_tutorials_and_keeps_existing_files(tmp_path, capsys):
    target = tmp_path / "tutorials"
    target.mkdir()
    mine = target / "01_lrp_basics.ipynb"
    mine.write_text("my edits")
    assert cli.main(["lab", "--dir", str(target), "--no-browser-launch"]) == 0
    copied = sorted(p.name for p in target.glob("*.ipynb"))
    shipped = sorted(p.name for p in cli.tutorials_dir().glob("*.ipynb"))
    assert copied == shipped and "09_your_own_model.ipynb" in copied
    assert mine.read_text() == "my edits"  # never overwritten
    json.loads((target / "02_rules_and_composites.ipynb").read_text())  # a real notebook
    assert "tutorials in" in capsys.readouterr().out
