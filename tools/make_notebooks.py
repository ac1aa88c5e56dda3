"""Build the tutorial notebooks from their sources in notebooks/src/ (no outputs).

A source is a Python file split into cells by ``# %%`` lines; ``# %% [markdown]`` starts a
markdown cell whose lines are comments (``# text``). Run: ``python tools/make_notebooks.py``.
Editing the .py sources keeps diffs readable; the .ipynb files are what users and nbval run.
"""
from __future__ import annotations

import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]


def cells_from_source(text: str):
    cells, kind, lines = [], None, []

    def flush():
        if kind is None:
            return
        body = "\n".join(lines).strip("\n")
        if kind == "markdown":
            body = "\n".join(line[2:] if line.startswith("# ") else line.lstrip("#") for line in body.splitlines())
            cells.append(nbformat.v4.new_markdown_cell(body))
        elif body.strip():
            cells.append(nbformat.v4.new_code_cell(body))

    for line in text.splitlines():
        if line.startswith("# %%"):
            flush()
            kind, lines = ("markdown" if "[markdown]" in line else "code"), []
        else:
            lines.append(line)
    flush()
    return cells


def build(source: Path, target_dir: Path) -> Path:
    notebook = nbformat.v4.new_notebook()
    notebook.cells = cells_from_source(source.read_text())
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    notebook.metadata["language_info"] = {"name": "python"}
    for index, cell in enumerate(notebook.cells):
        cell["id"] = f"{source.stem[:2]}-{index:02d}"  # stable ids: clean diffs when rebuilt
    target = target_dir / (source.stem + ".ipynb")
    nbformat.write(notebook, target)
    return target


def main(argv=None):
    sources = sorted((ROOT / "notebooks" / "src").glob("*.py"))
    for source in sources:
        print(build(source, ROOT / "notebooks").relative_to(ROOT))


if __name__ == "__main__":
    main(sys.argv[1:])
