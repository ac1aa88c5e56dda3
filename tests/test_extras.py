"""Every tutorial runs after exactly the README's tutorial install, ``pip install -e ".[lab]"``
(issue 16): each package the notebooks import, directly or through lrp_widgets, is installed by the
package's dependencies plus the ``lab`` extra (or by what those require in turn)."""
import ast
import json
import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
#: what a line magic needs that no import statement names
MAGIC_NEEDS = {r"%matplotlib\s+(widget|ipympl)": "ipympl"}


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _top_level_imports(source: str) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def notebook_imports(path: Path) -> set[str]:
    found = set()
    for cell in json.loads(path.read_text())["cells"]:
        if cell["cell_type"] != "code":
            continue
        source = "".join(cell["source"])
        for pattern, module in MAGIC_NEEDS.items():
            if re.search(pattern, source):
                found.add(module)
        # magics and shell lines are not Python
        code = "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())
        found |= _top_level_imports(code)
    return found


def library_imports() -> set[str]:
    found = set()
    for path in (ROOT / "lrp_widgets").rglob("*.py"):
        found |= _top_level_imports(path.read_text())
    return found


def installed_closure(requirements: list[str]) -> set[str]:
    """The distributions pip installs for ``requirements``, read from the installed metadata."""
    seen, todo = set(), [Requirement(r) for r in requirements]
    while todo:
        requirement = todo.pop()
        name = _canonical(requirement.name)
        if name in seen or (requirement.marker is not None and not requirement.marker.evaluate({"extra": ""})):
            continue
        seen.add(name)
        try:
            todo += [Requirement(r) for r in metadata.requires(requirement.name) or []]
        except metadata.PackageNotFoundError:
            pass
    return seen


def test_the_lab_extra_covers_every_import_of_the_tutorials():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    installed = installed_closure(project["dependencies"] + project["optional-dependencies"]["lab"])
    distributions = metadata.packages_distributions()
    needed = set().union(*(notebook_imports(p) for p in NOTEBOOKS)) | library_imports()
    missing = {}
    for module in sorted(needed - set(sys.stdlib_module_names) - {"lrp_widgets", "__future__"}):
        names = distributions.get(module)
        assert names, f"{module} is imported by the tutorials or the library but is not installed here"
        if not any(_canonical(n) in installed for n in names):
            missing[module] = names
    assert not missing, f"not installed by pip install '.[lab]': {missing}; add them to the lab extra"


def test_the_check_sees_what_the_tutorials_import():
    # guards the test above against reading nothing
    imports = set().union(*(notebook_imports(p) for p in NOTEBOOKS))
    assert {"torch", "numpy", "matplotlib", "lrp_widgets", "captum", "ipympl"} <= imports
