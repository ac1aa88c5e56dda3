"""The tutorial notebooks are committed clean and match their sources (nbval runs them)."""
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks():
    assert NOTEBOOKS, "no notebooks found in notebooks/"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_is_committed_without_outputs(path):
    notebook = json.loads(path.read_text())
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            assert cell.get("outputs", []) == [], f"{path.name}: a code cell carries outputs; strip them"
            assert cell.get("execution_count") is None, f"{path.name}: a code cell carries an execution count"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_opens_with_what_you_learn_and_ends_with_what_you_saw(path):
    cells = json.loads(path.read_text())["cells"]
    first, last = "".join(cells[0]["source"]), "".join(cells[-1]["source"])
    assert cells[0]["cell_type"] == "markdown" and "What you will learn" in first
    # It ends with "What you saw", optionally followed by the code that renders the findings table
    # (finding (paper) | measured here | verdict) from the computed numbers (issue 15).
    last_markdown = "".join(next(cell for cell in reversed(cells) if cell["cell_type"] == "markdown")["source"])
    assert "What you saw" in last_markdown
    assert cells[-1]["cell_type"] == "markdown" or "findings_table(" in last


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_matches_its_source(path, tmp_path):
    import sys

    sys.path.insert(0, str(ROOT / "tools"))
    try:
        from make_notebooks import build
    finally:
        sys.path.pop(0)
    source = ROOT / "notebooks" / "src" / (path.stem + ".py")
    if not source.exists():
        pytest.skip(f"{path.name} has no source in notebooks/src (edited as a notebook)")
    rebuilt = build(source, tmp_path)
    assert json.loads(rebuilt.read_text()) == json.loads(path.read_text()), (
        f"{path.name} differs from notebooks/src/{source.name}: run python tools/make_notebooks.py"
    )
