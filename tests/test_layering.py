"""Dependencies point one way (docs/ARCHITECTURE.md): kernels/ and profilers/ import nothing
of ours; tuner/ imports those two; runtime/ imports kernels/ (and the database reader);
reports/ reads run files; infertune/ wires them all; nothing imports the CLI."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OURS = {"infertune", "kernels", "tuner", "profilers", "runtime", "reports"}
ALLOWED = {
    "kernels": set(),
    "profilers": set(),
    "tuner": {"kernels", "profilers"},
    "runtime": {"kernels", "tuner"},  # tuner: only its database reader (tuner.database)
    "reports": set(),
    "infertune": OURS - {"infertune"},
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_what_it_may(package):
    for path in sorted((ROOT / package).rglob("*.py")):
        for name in _imports(path):
            top = name.split(".")[0]
            if top in OURS and top != package:
                assert top in ALLOWED[package], f"{path.relative_to(ROOT)} imports {name}"
            if package == "runtime" and top == "tuner":
                assert name.startswith("tuner.database"), f"{path.relative_to(ROOT)} imports {name}"


def test_nothing_imports_the_cli():
    for package in ALLOWED:
        for path in sorted((ROOT / package).rglob("*.py")):
            # infertune/__main__.py is `python -m infertune`: an entry point, like the console script
            if "cli" in path.relative_to(ROOT).parts or path.relative_to(ROOT) == Path("infertune/__main__.py"):
                continue
            for name in _imports(path):
                assert not name.startswith("infertune.cli"), f"{path.relative_to(ROOT)} imports {name}"
